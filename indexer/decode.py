"""Pure: raw logs -> typed events.

Transfer and TransferShares are decoded on a fast path (topics are fixed-width words, the data
is one uint256); every other event goes through eth-abi. ``tests/test_decode.py`` checks the
fast path against eth-abi for every event kind.

An xStock move is a Transfer immediately followed (same transaction, next log index) by its
TransferShares; the pair becomes one :class:`Transfer` with ``amount_raw`` from the first and
``shares`` from the second. For a plain ERC-20 ``shares = amount_raw``. A log that does not fit
its event's layout (an ERC-721 Transfer, a truncated data field, an xStock Transfer with no
TransferShares) is skipped and counted, with a warning: it must not stop the indexer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.crypto import keccak

from . import logs
from .models import Decoded, NewToken, RawLog, TokenEvent, TokenKind, Transfer

log = logs.get("decode")


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


def word_address(topic: str) -> str:
    """A 32-byte topic holding an address -> lowercase 0x address. Upper 12 bytes must be 0."""
    if len(topic) != 66 or topic[2:26] != "0" * 24:
        raise Malformed(f"topic {topic[:18]}... is not an address")
    return "0x" + topic[26:]


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
    raws: Sequence[RawLog],
    kinds: Mapping[str, TokenKind],
    factories: Iterable[str] = (),
    block_times: Mapping[int, int] | None = None,
) -> Decoded:
    """Decode logs (in chain order) of tokens whose kinds are known and of factories.

    ``block_times`` supplies timestamps for nodes that do not put ``blockTimestamp`` on logs.
    Logs of unknown addresses are ignored (not counted as skipped)."""
    factory_set = set(factories)
    times = block_times or {}
    out = Decoded()
    skipped = 0
    pending: RawLog | None = None  # an xStock Transfer waiting for its TransferShares
    for raw in raws:
        if pending is not None and not _pairs(pending, raw):
            skipped += _warn(pending, "xStock Transfer without TransferShares")
            pending = None
        try:
            if raw.address in factory_set:
                _factory_log(raw, out, times)
                continue
            kind = kinds.get(raw.address)
            if kind is None:
                continue
            topic0 = raw.topics[0] if raw.topics else ""
            if topic0 == TRANSFER_TOPIC:
                if kind is TokenKind.XSTOCK:
                    decode_move(raw)  # validate now, pair on the next log
                    pending = raw
                else:
                    frm, to, value = decode_move(raw)
                    out.transfers.append(_transfer(raw, frm, to, value, value, times))
            elif topic0 == TRANSFER_SHARES_TOPIC:
                if pending is None:
                    if kind is TokenKind.XSTOCK:
                        skipped += _warn(raw, "TransferShares without a Transfer before it")
                    continue
                frm, to, amount = decode_move(pending)
                sfrm, sto, shares = decode_move(raw)
                if (sfrm, sto) != (frm, to):
                    skipped += _warn(pending, "Transfer parties differ from its TransferShares")
                    skipped += _warn(raw, "TransferShares parties differ from its Transfer")
                else:
                    out.transfers.append(_transfer(pending, frm, to, amount, shares, times))
                pending = None
            elif topic0 in _OTHER_BY_TOPIC:
                spec = _OTHER_BY_TOPIC[topic0]
                out.events.append(_event(raw, spec.name, decode_event(spec, raw), times))
        except Malformed as exc:
            skipped += _warn(raw, str(exc))
            if pending is raw:
                pending = None
    if pending is not None:
        skipped += _warn(pending, "xStock Transfer without TransferShares")
    return Decoded(out.transfers, out.events, out.new_tokens, skipped)


def _pairs(transfer: RawLog, raw: RawLog) -> bool:
    return (
        raw.address == transfer.address
        and raw.tx_hash == transfer.tx_hash
        and raw.log_index == transfer.log_index + 1
        and bool(raw.topics)
        and raw.topics[0] == TRANSFER_SHARES_TOPIC
    )


def _time(raw: RawLog, times: Mapping[int, int]) -> int:
    if raw.block_time is not None:
        return raw.block_time
    try:
        return times[raw.block_number]
    except KeyError:
        raise Malformed(f"no timestamp known for block {raw.block_number}") from None


def _transfer(raw: RawLog, frm: str, to: str, amount: int, shares: int, times: Mapping[int, int]) -> Transfer:
    return Transfer(raw.address, raw.block_number, _time(raw, times), raw.tx_hash, raw.log_index,
                    frm, to, amount, shares)


def _event(raw: RawLog, name: str, args: dict[str, object], times: Mapping[int, int]) -> TokenEvent:
    return TokenEvent(raw.address, raw.block_number, _time(raw, times), raw.tx_hash, raw.log_index, name, args)


def _factory_log(raw: RawLog, out: Decoded, times: Mapping[int, int]) -> None:
    if not raw.topics or raw.topics[0] != NEW_TOKEN_TOPIC:
        return
    args = decode_event(NEW_TOKEN, raw)
    token = str(args["newToken"])
    out.new_tokens.append(NewToken(raw.address, token, str(args["name"]), str(args["symbol"]), raw.block_number))
    out.events.append(_event(raw, "NewToken", args, times))


def _warn(raw: RawLog, why: str) -> int:
    log.warning("log_skipped", token=raw.address, block=raw.block_number, tx=raw.tx_hash,
                log_index=raw.log_index, reason=why)
    return 1
