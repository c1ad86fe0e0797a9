"""Pure: raw logs -> typed events (place: chain -> fetch -> **decode** -> follow / ledger -> store).

Transfer and TransferShares are decoded on a fast path that reads the logs as the answer's parse
left them (wire.Log: the node's hex strings as struct fields): a topic word is turned into an
address once per distinct word (remembered from range to range), the data word is one
``int(data, 16)`` (one per move when TransferShares carries the same word, at a multiplier of
1.0), block numbers and times are parsed once per block; an xStock Transfer takes the next log
as its TransferShares at once. Every other event goes through indexer.abi (the same answers as
eth-abi, tested; importing eth-abi costs 0.2 s).
``tests/test_decode.py`` checks ``decode()`` itself against eth-abi on random logs.

An xStock move is a Transfer immediately followed (same transaction, next log index) by its
TransferShares; the pair becomes one :class:`Transfer` with ``amount_raw`` from the first and
``shares`` from the second. For a plain ERC-20 ``shares = amount_raw``.

Nothing is skipped in silence (it would leave balances wrong): a followed log that does not fit
its event (an ERC-721 Transfer, truncated data), an xStock Transfer not directly followed by its
TransferShares (or with other parties), a lone TransferShares, or one from a token indexed as a
plain ERC-20 raises ``UnindexableLog`` naming token, block, tx and log index; the batch stops.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from . import abi
from .errors import UnindexableLog
from .models import Decoded, NewToken, RawLog, TokenEvent, TokenKind, Transfer, Wire
from .wire import as_wire


@dataclass(frozen=True)
class EventSpec:
    name: str
    indexed: tuple[tuple[str, str], ...]  # (name, abi type) of the indexed arguments
    data: tuple[tuple[str, str], ...]  # (name, abi type) of the data arguments
    topic: str  # keccak of the signature (written out: hashing at import costs start-up; tested)

    @property
    def signature(self) -> str:
        # Every event below lists its indexed arguments first, as the contracts declare them.
        return f"{self.name}({','.join(t for _, t in self.indexed + self.data)})"


def _spec(name: str, topic: str, indexed: Iterable[tuple[str, str]] = (),
          data: Iterable[tuple[str, str]] = ()) -> EventSpec:
    return EventSpec(name, tuple(indexed), tuple(data), "0x" + topic)


_MOVE = [("from", "address"), ("to", "address")]
TRANSFER = _spec("Transfer", "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
                 _MOVE, [("value", "uint256")])
TRANSFER_SHARES = _spec("TransferShares", "9d9c909296d9c674451c0c24f02cb64981eb3b727f99865939192f880a755dcb",
                        _MOVE, [("value", "uint256")])
NEW_TOKEN = _spec("NewToken", "c3d0a20a44bb0f367823c0b8747497ad98c62f65bc0a1ddf9d6db910ad9fbd41",
                  [("newToken", "address")], [("name", "string"), ("symbol", "string")])

# Events stored in token_events (the multiplier story, roles, pause, terms, upgrades).
OTHER_EVENTS: tuple[EventSpec, ...] = (
    _spec("MultiplierUpdated", "4dbe4840d7465bd162f67814cea0b519567a2e0e578bcde61e7f4ced361e5a3d",
          data=[("value", "uint256")]),
    _spec("MultiplierScheduled", "0fc82f15d800f52869be69bb6dec5615511ff09b246f46c6fe20618c2a845d20",
          data=[("newMultiplier", "uint256"), ("activationTime", "uint256")]),
    _spec("MultiplierScheduleOverridden", "58b46712c260c156927373112c5a0eac6c69c7b7a8eec19de939fb590a6037f7", data=[
        ("oldMultiplier", "uint256"), ("oldActivationTime", "uint256"),
        ("newMultiplier", "uint256"), ("newActivationTime", "uint256"),
    ]),
    _spec("NewMinter", "6adffd5c93085d835dac6f3b40adf7c242ca4b3284048d20c3d8a501748dc973", [("minter", "address")]),
    _spec("NewBurner", "5bb1db06eeb30d85c1e53ae2285b460ce83e4318c623bd1ca51df912f64c45a4", [("burner", "address")]),
    _spec("NewPauser", "4f68150eb56c53cc9373649e35bc37dd235a0c86e10aa23b8a835378136ac6a0", [("pauser", "address")]),
    _spec("NewMultiplierUpdater", "352ee13cfd2e4909f0a0c7b78a6079921377f6377d8af594509ff9aaf4f925da",
          [("multiplierUpdater", "address")]),
    _spec("NewSanctionsList", "eff538eaa91b9b5384df4354f3841681487784258ac4b209182aef0755f9e0be",
          [("sanctionsList", "address")]),
    _spec("PauseModeChange", "b9bcdd890b4d4c213bab99cf96dc1adb9ede36bb2a54610c91a86de844b05fb8",
          data=[("paused", "bool")]),
    _spec("NewTerms", "9c1e1a17a78053ad78b3801837ad5e515d429987252f2e1371b7b50fa8ff8bec", data=[("terms", "string")]),
    _spec("OwnershipTransferred", "8be0079c531659141344cd1fd0a4f28419497f9722a3daafe3b4186f6b6457e0",
          [("previousOwner", "address"), ("newOwner", "address")]),
    _spec("Upgraded", "bc7cd75a20ee27fd9adebab32041f755214dbc6bffa90cc0225b39da2e5c2d3b",
          [("implementation", "address")]),
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
_is_hex = re.compile(r"[0-9a-fA-F]*").fullmatch
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_WORDS: dict[str, str] = {}  # topic word -> address, kept from range to range (each met its holders afresh)


def word_address(topic: str) -> str:
    """A 32-byte topic holding an address -> lowercase 0x address. Upper 12 bytes must be 0."""
    if len(topic) != 66 or not topic.startswith(_ADDRESS_PAD) or not _is_hex(topic[26:]):
        raise Malformed(f"topic {topic[:18]}... is not an address")
    return "0x" + topic[26:].lower()


def data_uint(data: str) -> int:
    """Data that is exactly one uint256 word -> int."""
    if len(data) != 66 or data[:2] != "0x" or not _is_hex(data, 2):
        raise Malformed(_data_length(data))
    return int(data, 16)


def _data_length(data: str) -> str:
    if len(data) == 66:
        return f"data {data[:10]}... is not one hex word"
    return f"data has {max(0, (len(data) - 2) // 2)} bytes, expected 32"


def decode_event(spec: EventSpec, raw: RawLog) -> dict[str, object]:
    """General path (indexer.abi, checked against eth-abi) for any event in OTHER_EVENTS or
    NewToken. Ints become strings so that the args survive JSON with no loss."""
    if len(raw.topics) != 1 + len(spec.indexed):
        raise Malformed(f"{spec.name}: {len(raw.topics)} topics, expected {1 + len(spec.indexed)}")
    args: dict[str, object] = {}
    for (name, typ), topic in zip(spec.indexed, raw.topics[1:], strict=True):
        try:
            args[name] = _jsonable(abi.decode([typ], bytes.fromhex(topic[2:]))[0])
        except ValueError as exc:
            raise Malformed(f"{spec.name}: topic {name}: {exc}") from None
    if spec.data:
        try:
            values = abi.decode([t for _, t in spec.data], bytes.fromhex(raw.data[2:]))
        except ValueError as exc:
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


def decode(logs: Sequence[Wire] | Sequence[RawLog], kinds: Mapping[str, TokenKind], factories: Iterable[str] = (),
           block_times: Mapping[int, int] | None = None, starts: Mapping[str, int] | None = None) -> Decoded:
    """Decode logs (in chain order, as eth_getLogs returns them) of tokens whose kinds are known
    and of factories. This is the hot path of a backfill: it reads wire.Log fields directly
    (dicts, as tests write logs, are turned into them first).

    ``block_times`` supplies timestamps for nodes that do not put ``blockTimestamp`` on logs;
    ``starts`` drops a token's logs below its start block. Logs of unknown addresses are
    ignored; any other log that cannot be accounted for raises ``UnindexableLog``."""
    wire = as_wire(logs)
    factory_set = set(factories)
    known = block_times or {}
    out = Decoded()
    append = out.transfers.append
    new = tuple.__new__  # Transfer(...) runs a Python-level __new__: 3x slower than this
    xstock, transfer_topic, shares_topic = TokenKind.XSTOCK, TRANSFER_TOPIC, TRANSFER_SHARES_TOPIC
    words = _WORDS  # topic word -> address, checked once per distinct word
    blocks: dict[str, tuple[int, int]] = {}  # hex block number -> (number, time)
    tx_raw = tx = ""
    stream = iter(wire)
    for item in stream:
        address = item.address
        kind = kinds.get(address)
        if kind is None and address not in factory_set:
            address = address.lower()
            kind = kinds.get(address)
        try:
            topics = item.topics
            topic0 = topics[0] if topics else ""
            if kind is None:
                if address in factory_set:
                    _factory_log(parse_wire(item), out, known)
                continue
            number = item.block_number
            if starts and address in starts and int(number, 16) < starts[address]:
                continue
            at = blocks.get(number) or _block(blocks, item.block_timestamp, number, known)
            if topic0 == transfer_topic:
                if len(topics) != 3:
                    raise Malformed(f"{len(topics)} topics, expected 3")
                word1, word2 = topics[1], topics[2]
                frm = words.get(word1) or _word(words, word1)
                to = words.get(word2) or _word(words, word2)
                data = item.data
                if len(data) != 66 or data[1] != "x" or data[0] != "0" or "_" in data or data[-1] not in _HEX_DIGITS:
                    raise Malformed(_data_length(data))
                amount = int(data, 16)
                raw_tx = item.transaction_hash
                if raw_tx != tx_raw:  # the logs of one transaction come together
                    tx_raw, tx = raw_tx, raw_tx.lower()
                index = int(item.log_index, 16)
                if kind is not xstock:
                    append(new(Transfer, (address, at[0], at[1], tx, index, frm, to, amount, amount)))
                    continue
                # An xStock Transfer: its TransferShares must be the very next log.
                first, item = item, next(stream, None)  # type: ignore[assignment]
                if item is None:
                    _stop(first, "xStock Transfer not directly followed by its TransferShares")
                topics = item.topics
                if not (topics and topics[0] == shares_topic and item.transaction_hash == raw_tx
                        and int(item.log_index, 16) == index + 1
                        and (item.address == first.address or item.address.lower() == address)):
                    _stop(first, "xStock Transfer not directly followed by its TransferShares")
                if len(topics) != 3:
                    raise Malformed(f"{len(topics)} topics, expected 3")
                # Same words, same parties (the usual case); else compare them decoded.
                if (topics[1] != word1 or topics[2] != word2) and (
                        _word(words, topics[1]) != frm or _word(words, topics[2]) != to):
                    _stop(item, "TransferShares parties differ from its Transfer")
                if item.data == data:  # shares = amount (a multiplier of 1.0): the same int, checked once
                    append(new(Transfer, (address, at[0], at[1], tx, index, frm, to, amount, amount)))
                    continue
                data = item.data
                if len(data) != 66 or data[1] != "x" or data[0] != "0" or "_" in data or data[-1] not in _HEX_DIGITS:
                    raise Malformed(_data_length(data))
                append(new(Transfer, (address, at[0], at[1], tx, index, frm, to, amount, int(data, 16))))
            elif topic0 == shares_topic:
                _stop(item, "TransferShares without a Transfer before it" if kind is xstock
                      else "TransferShares from a token indexed as a plain ERC-20 (upgraded to a share token?)")
            else:
                spec = _OTHER_BY_TOPIC.get(topic0.lower())
                if spec is not None:
                    raw = parse_wire(item)
                    out.events.append(TokenEvent(raw.address, raw.block_number, at[1], raw.tx_hash, raw.log_index,
                                                 spec.name, decode_event(spec, raw)))
        except (Malformed, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            _stop(item, str(exc) if isinstance(exc, Malformed) else f"malformed log: {exc!r}")
    return out


def _word(words: dict[str, str], word: str) -> str:
    """The address in a topic word (checked), remembered for the next ones (up to 20k words)."""
    address = words.get(word)
    if address is None:
        if len(words) >= 20_000:
            words.clear()
        address = words[word] = word_address(word)
    return address


def _block(blocks: dict[str, tuple[int, int]], stamp: str | None, number: str,
           known: Mapping[int, int]) -> tuple[int, int]:
    """(number, time) of a log's block, kept for its other logs; the time from its blockTimestamp
    (``stamp``) or headers."""
    block = int(number, 16)
    if stamp:
        return blocks.setdefault(number, (block, int(stamp, 16)))
    if block not in known:
        raise Malformed(f"no timestamp known for block {block}")
    return blocks.setdefault(number, (block, known[block]))


def parse_wire(item: Wire) -> RawLog:
    """One eth_getLogs dict -> RawLog (lowercased, ints parsed). Off the hot path."""
    ts = item.block_timestamp
    return RawLog(item.address.lower(), tuple([t.lower() for t in item.topics]), item.data,
                  int(item.block_number, 16), item.block_hash.lower(), int(ts, 16) if ts else None,
                  item.transaction_hash.lower(), int(item.log_index, 16))


def _factory_log(raw: RawLog, out: Decoded, known: Mapping[int, int]) -> None:
    if not raw.topics or raw.topics[0] != NEW_TOKEN_TOPIC:
        return
    args = decode_event(NEW_TOKEN, raw)
    token = str(args["newToken"])
    out.new_tokens.append(NewToken(raw.address, token, str(args["name"]), str(args["symbol"]), raw.block_number))
    time = raw.block_time if raw.block_time is not None else _block({}, None, hex(raw.block_number), known)[1]
    out.events.append(TokenEvent(raw.address, raw.block_number, time, raw.tx_hash, raw.log_index, "NewToken", args))


def _stop(item: Wire, why: str) -> NoReturn:
    """Raise UnindexableLog for ``item``, naming whatever of it can be read."""
    raise UnindexableLog(f"token {_field(item, 'address')} block {_field(item, 'blockNumber')} "
                         f"tx {_field(item, 'transactionHash')} log index {_field(item, 'logIndex')}: {why}; "
                         f"the batch stopped and nothing of it was stored")


def _field(item: Wire, key: str) -> str:
    value = str(item.get(key, "?")) if hasattr(item, "get") else "?"
    if key in ("blockNumber", "logIndex") and value.startswith("0x") and value[2:] and _is_hex(value, 2):
        return str(int(value, 16))
    return value.lower()
