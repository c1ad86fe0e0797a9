"""Pure: raw logs -> typed events.

Transfer and TransferShares are decoded on a fast path (topics are fixed-width words, the data
is one uint256); every other event goes through eth-abi. ``tests/test_decode.py`` checks the
fast path against eth-abi for every event kind.

An xStock move is a Transfer immediately followed (same transaction, next log index) by its
TransferShares; the pair becomes one :class:`Transfer` with ``amount_raw`` from the first and
``shares`` from the second. For a plain ERC-20 ``shares = amount_raw``.

Nothing is skipped in silence (it would leave balances wrong): a followed log that does not fit
its event (an ERC-721 Transfer, truncated data), an xStock Transfer not directly followed by its
TransferShares (or with other parties), a lone TransferShares, or one from a token indexed as a
plain ERC-20 raises ``UnindexableLog`` naming token, block, tx and log index; the batch stops.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.crypto import keccak

from .errors import UnindexableLog
from .models import Decoded, NewToken, RawLog, TokenEvent, TokenKind, Transfer, Wire


@dataclass(frozen=True)
class EventSpec:
    name: str
    indexed: tuple[tuple[str, str], ...]  # (name, abi type) of the indexed arguments
    data: tuple[tuple[str, str], ...]  # (name, abi type) of the data arguments

    @property
    def signature(self) -> str:
        types = [t for _, t in self._ordered()]
        return f"{self.name}({','.join(types)})"

    def _ordered(self) -> tuple[tuple[str, str], ...]:
        # Every event below lists its indexed arguments first, as the contracts declare them.
        return self.indexed + self.data

    @property
    def topic(self) -> str:
        return "0x" + keccak(text=self.signature).hex()


def _spec(name: str, indexed: Iterable[tuple[str, str]] = (), data: Iterable[tuple[str, str]] = ()) -> EventSpec:
    return EventSpec(name, tuple(indexed), tuple(data))


TRANSFER = _spec("Transfer", [("from", "address"), ("to", "address")], [("value", "uint256")])
TRANSFER_SHARES = _spec("TransferShares", [("from", "address"), ("to", "address")], [("value", "uint256")])
NEW_TOKEN = _spec("NewToken", [("newToken", "address")], [("name", "string"), ("symbol", "string")])

# Events stored in token_events (the multiplier story, roles, pause, terms, upgrades).
OTHER_EVENTS: tuple[EventSpec, ...] = (
    _spec("MultiplierUpdated", data=[("value", "uint256")]),
    _spec("MultiplierScheduled", data=[("newMultiplier", "uint256"), ("activationTime", "uint256")]),
    _spec("MultiplierScheduleOverridden", data=[
        ("oldMultiplier", "uint256"), ("oldActivationTime", "uint256"),
        ("newMultiplier", "uint256"), ("newActivationTime", "uint256"),
    ]),
    _spec("NewMinter", [("minter", "address")]),
    _spec("NewBurner", [("burner", "address")]),
    _spec("NewPauser", [("pauser", "address")]),
    _spec("NewMultiplierUpdater", [("multiplierUpdater", "address")]),
    _spec("NewSanctionsList", [("sanctionsList", "address")]),
    _spec("PauseModeChange", data=[("paused", "bool")]),
    _spec("NewTerms", data=[("terms", "string")]),
    _spec("OwnershipTransferred", [("previousOwner", "address"), ("newOwner", "address")]),
    _spec("Upgraded", [("implementation", "address")]),
)

TRANSFER_TOPIC = TRANSFER.topic
TRANSFER_SHARES_TOPIC = TRANSFER_SHARES.topic
NEW_TOKEN_TOPIC = NEW_TOKEN.topic
_OTHER_BY_TOPIC = {spec.topic: spec for spec in OTHER_EVENTS}
MULTIPLIER_UPDATED_TOPIC = OTHER_EVENTS[0].topic

TOKEN_TOPICS: tuple[str, ...] = (TRANSFER_TOPIC, TRANSFER_SHARES_TOPIC, *_OTHER_BY_TOPIC)
FACTORY_TOPICS: tuple[str, ...] = (NEW_TOKEN_TOPIC,)


class Malformed(ValueError):
    """A log does not fit the layout of the event its topic0 names."""


_ADDRESS_PAD = "0x" + "0" * 24


def word_address(topic: str) -> str:
    """A 32-byte topic holding an address -> lowercase 0x address. Upper 12 bytes must be 0."""
    if len(topic) != 66 or not topic.startswith(_ADDRESS_PAD):
        raise Malformed(f"topic {topic[:18]}... is not an address")
    return "0x" + topic[26:].lower()


def data_uint(data: str) -> int:
    """Data that is exactly one uint256 word -> int."""
    if len(data) != 66:
        raise Malformed(f"data has {max(0, (len(data) - 2) // 2)} bytes, expected 32")
    return int(data, 16)


def decode_move(raw: RawLog) -> tuple[str, str, int]:
    """Fast path for Transfer/TransferShares: (from, to, value)."""
    if len(raw.topics) != 3:
        raise Malformed(f"{len(raw.topics)} topics, expected 3")
    return word_address(raw.topics[1]), word_address(raw.topics[2]), data_uint(raw.data)


def decode_event(spec: EventSpec, raw: RawLog) -> dict[str, object]:
    """General path (eth-abi) for any event in OTHER_EVENTS or NewToken. Ints become strings
    so that the args survive JSON with no loss."""
    if len(raw.topics) != 1 + len(spec.indexed):
        raise Malformed(f"{spec.name}: {len(raw.topics)} topics, expected {1 + len(spec.indexed)}")
    args: dict[str, object] = {}
    for (name, typ), topic in zip(spec.indexed, raw.topics[1:], strict=True):
        try:
            args[name] = _jsonable(abi_decode([typ], bytes.fromhex(topic[2:]))[0])
        except (DecodingError, ValueError, OverflowError) as exc:
            raise Malformed(f"{spec.name}: topic {name}: {exc}") from None
    if spec.data:
        try:
            values = abi_decode([t for _, t in spec.data], bytes.fromhex(raw.data[2:]))
        except (DecodingError, ValueError, OverflowError) as exc:
            raise Malformed(f"{spec.name}: {exc}") from None
        for (name, _), value in zip(spec.data, values, strict=True):
            args[name] = _jsonable(value)
    return args


def _jsonable(value: object) -> object:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return value.lower()
    return value


def decode(
    logs: Sequence[Wire] | Sequence[RawLog],
    kinds: Mapping[str, TokenKind],
    factories: Iterable[str] = (),
    block_times: Mapping[int, int] | None = None,
    starts: Mapping[str, int] | None = None,
) -> Decoded:
    """Decode logs (in chain order, as eth_getLogs returns them) of tokens whose kinds are known
    and of factories. This is the hot path of a backfill: it reads the JSON-RPC dicts directly.

    ``block_times`` supplies timestamps for nodes that do not put ``blockTimestamp`` on logs;
    ``starts`` drops a token's logs below its start block. Logs of unknown addresses are
    ignored; any other log that cannot be accounted for raises ``UnindexableLog``."""
    wire: Sequence[Wire] = [r.wire() for r in logs] if logs and isinstance(logs[0], RawLog) else logs  # type: ignore[assignment,union-attr]
    factory_set = set(factories)
    times = _Times(block_times)
    out = Decoded()
    # An xStock Transfer waiting for its TransferShares: the log, its token, log index, topics
    # and (from, to, amount).
    pending: Wire | None = None
    pending_token, pending_index = "", -1
    pending_topics: Sequence[str] = ()
    move: tuple[str, str, int] = ("", "", 0)
    append = out.transfers.append
    for item in wire:
        address = item["address"]
        kind = kinds.get(address)
        if kind is None and address not in factory_set:
            address = address.lower()
            kind = kinds.get(address)
        try:
            topics = item["topics"]
            topic0 = topics[0] if topics else ""
            if pending is not None:
                if (topic0 == TRANSFER_SHARES_TOPIC and address == pending_token
                        and item["transactionHash"] == pending["transactionHash"]
                        and int(item["logIndex"], 16) == pending_index + 1):
                    if len(topics) != 3:
                        raise Malformed(f"{len(topics)} topics, expected 3")
                    frm, to, amount = move
                    shares = data_uint(item["data"])
                    # Same words, same parties (the usual case); else compare them decoded.
                    if (topics[1] != pending_topics[1] or topics[2] != pending_topics[2]) and (
                            word_address(topics[1]) != frm or word_address(topics[2]) != to):
                        _stop(item, "TransferShares parties differ from its Transfer")
                    append(_transfer(pending, address, frm, to, amount, shares, times))
                    pending = None
                    continue
                _stop(pending, "xStock Transfer not directly followed by its TransferShares")
            if kind is None:
                if address in factory_set:
                    _factory_log(parse_wire(item), out, times)
                continue
            if starts and address in starts and int(item["blockNumber"], 16) < starts[address]:
                continue
            if topic0 == TRANSFER_TOPIC:
                move = _wire_move(topics, item["data"])
                if kind is TokenKind.XSTOCK:  # pair it with the next log
                    pending_token, pending_index, pending_topics = address, int(item["logIndex"], 16), topics
                    pending = item
                else:
                    append(_transfer(item, address, *move, move[2], times))
            elif topic0 == TRANSFER_SHARES_TOPIC:
                _stop(item, "TransferShares without a Transfer before it" if kind is TokenKind.XSTOCK
                      else "TransferShares from a token indexed as a plain ERC-20 (upgraded to a share token?)")
            else:
                spec = _OTHER_BY_TOPIC.get(topic0.lower())
                if spec is not None:
                    raw = parse_wire(item)
                    out.events.append(_event(raw, spec.name, decode_event(spec, raw), times))
        except (Malformed, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            _stop(item, str(exc) if isinstance(exc, Malformed) else f"malformed log: {exc!r}")
    if pending is not None:
        _stop(pending, "xStock Transfer not directly followed by its TransferShares")
    return Decoded(out.transfers, out.events, out.new_tokens, 0)


class _Times:
    """Block timestamps: from the log's blockTimestamp (parsed once per distinct value) or the
    caller's map of header times."""

    def __init__(self, known: Mapping[int, int] | None) -> None:
        self.known = known or {}
        self.parsed: dict[str, int] = {}
        self.numbers: dict[str, int] = {}  # hex block number -> int, for the logs' blockNumber

    def of(self, item: Wire) -> int:
        stamp = item.get("blockTimestamp")
        if stamp:
            value = self.parsed.get(stamp)
            if value is None:
                value = self.parsed[stamp] = int(stamp, 16)
            return value
        number = int(item["blockNumber"], 16)
        try:
            return self.known[number]
        except KeyError:
            raise Malformed(f"no timestamp known for block {number}") from None


def _wire_move(topics: Sequence[str], data: str) -> tuple[str, str, int]:
    if len(topics) != 3:
        raise Malformed(f"{len(topics)} topics, expected 3")
    return word_address(topics[1]), word_address(topics[2]), data_uint(data)


def parse_wire(item: Wire) -> RawLog:
    """One eth_getLogs dict -> RawLog (lowercased, ints parsed). Off the hot path."""
    ts = item.get("blockTimestamp")
    return RawLog(item["address"].lower(), tuple([t.lower() for t in item["topics"]]), item["data"],
                  int(item["blockNumber"], 16), item["blockHash"].lower(), int(ts, 16) if ts else None,
                  item["transactionHash"].lower(), int(item["logIndex"], 16))


_new_transfer = tuple.__new__  # Transfer(...) runs a Python-level __new__: 3x slower on the hot path


def _transfer(item: Wire, token: str, frm: str, to: str, amount: int, shares: int, times: _Times) -> Transfer:
    number = item["blockNumber"]
    block = times.numbers.get(number)
    if block is None:
        block = times.numbers[number] = int(number, 16)
    return _new_transfer(Transfer, (token, block, times.of(item), item["transactionHash"].lower(),
                                    int(item["logIndex"], 16), frm, to, amount, shares))


def _event(raw: RawLog, name: str, args: dict[str, object], times: _Times) -> TokenEvent:
    time = raw.block_time if raw.block_time is not None else times.of(raw.wire())
    return TokenEvent(raw.address, raw.block_number, time, raw.tx_hash, raw.log_index, name, args)


def _factory_log(raw: RawLog, out: Decoded, times: _Times) -> None:
    if not raw.topics or raw.topics[0] != NEW_TOKEN_TOPIC:
        return
    args = decode_event(NEW_TOKEN, raw)
    token = str(args["newToken"])
    out.new_tokens.append(NewToken(raw.address, token, str(args["name"]), str(args["symbol"]), raw.block_number))
    out.events.append(_event(raw, "NewToken", args, times))


def _stop(item: Wire, why: str) -> NoReturn:
    """Raise UnindexableLog for ``item``, naming whatever of it can be read."""
    raise UnindexableLog(f"token {_field(item, 'address')} block {_field(item, 'blockNumber')} "
                         f"tx {_field(item, 'transactionHash')} log index {_field(item, 'logIndex')}: {why}; "
                         f"the batch stopped and nothing of it was stored")


def _field(item: Wire, key: str) -> str:
    value = str(item.get(key, "?")) if isinstance(item, Mapping) else "?"
    if key in ("blockNumber", "logIndex") and value.startswith("0x"):
        return str(int(value, 16)) if value[2:] and all(c in "0123456789abcdefABCDEF" for c in value[2:]) else value
    return value.lower()
