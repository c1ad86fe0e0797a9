"""The shape of an eth_getLogs answer (place: rpc -> **wire** -> chain -> fetch -> decode).

An answer is parsed straight into :class:`Log` structs (msgspec): nine fields kept, every other
one skipped without being built, each checked to be a string (``removed`` false: a log a
reorg removed, which eth_getLogs does not send, takes the plain path below). That costs
less than half of building the node's dicts (orjson), and a struct's fields are read faster than
a dict's keys on the hot path (decode.py). An answer that does not fit (a field missing or of
another type, an error object) is parsed as plain JSON, as before, and each of its logs is held
in a :class:`DictLog`: the same attributes over the node's dict, raising ``KeyError`` for a
missing field as ``dict[key]`` does, so decode.py names the fault exactly as it always did.

Both kinds answer ``log.get(key)`` and ``log[key]`` with the node's camelCase keys, for the
code off the hot path (upgrades, error messages).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec
import orjson

from .models import RawLog, Wire

# JSON key -> attribute, for get() / [] (Log is declared with camelCase renaming)
_ATTRIBUTE = {"address": "address", "topics": "topics", "data": "data", "blockNumber": "block_number",
              "blockHash": "block_hash", "transactionHash": "transaction_hash", "logIndex": "log_index",
              "blockTimestamp": "block_timestamp", "removed": "removed"}


class Log(msgspec.Struct, rename="camel", gc=False):
    """One log of an answer that parsed to the expected shape (hex strings, as the node sent them)."""

    address: str
    topics: tuple[str, ...]
    data: str
    block_number: str
    block_hash: str
    transaction_hash: str
    log_index: str
    block_timestamp: str | None = None
    removed: Literal[False] = False  # a removed log (a node's reorg notice) makes the answer plain JSON

    def get(self, key: str, default: Any = None) -> Any:
        name = _ATTRIBUTE.get(key)
        value = getattr(self, name) if name is not None else None
        return default if value is None else value

    def __getitem__(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value


class DictLog:
    """A log as the node's dict, for answers that did not parse to :class:`Log`: the same
    attributes, each a ``dict[key]`` (so a missing field raises KeyError naming it)."""

    __slots__ = ("raw",)

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw

    address = property(lambda self: self.raw["address"])
    topics = property(lambda self: self.raw["topics"])
    data = property(lambda self: self.raw["data"])
    block_number = property(lambda self: self.raw["blockNumber"])
    block_hash = property(lambda self: self.raw["blockHash"])
    transaction_hash = property(lambda self: self.raw["transactionHash"])
    log_index = property(lambda self: self.raw["logIndex"])
    block_timestamp = property(lambda self: self.raw.get("blockTimestamp"))
    removed = property(lambda self: self.raw.get("removed", False))

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DictLog) and other.raw == self.raw

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"DictLog({self.raw!r})"


AnyLog = Log | DictLog


class _Answer(msgspec.Struct, gc=False):
    id: Any = None
    result: list[Log] | None = None
    error: Any = None


_DECODER = msgspec.json.Decoder(_Answer)


def parse_answer(body: bytes) -> Any:
    """An eth_getLogs answer's body -> ``{"id", "result": [Log, ...]}``; anything else (an
    error, a log of another shape) is parsed as plain JSON (orjson errors propagate)."""
    try:
        answer = _DECODER.decode(body)
    except msgspec.DecodeError:  # also a log of another shape (ValidationError)
        return orjson.loads(body)
    if answer.result is None or answer.error is not None:
        return orjson.loads(body)
    return {"id": answer.id, "result": answer.result}


def typed(items: Any) -> list[AnyLog]:
    """A result's logs as structs: a typed list as it is; a list of dicts each as a
    :class:`Log` when they all fit, else each as a :class:`DictLog`. TypeError when ``items``
    is not a list of objects."""
    if not isinstance(items, list):
        raise TypeError("not a list")
    if not items or type(items[0]) is Log:
        return items
    if not all(isinstance(r, dict) for r in items):
        raise TypeError("an item is not an object")
    try:
        return msgspec.convert(items, list[Log])  # type: ignore[no-any-return]
    except msgspec.ValidationError:
        return [DictLog(r) for r in items]


def as_wire(logs: Sequence[Any]) -> Sequence[Wire]:
    """Logs for decode.py: structs as they are; RawLogs and the node's dicts (as tests write
    logs) as :func:`typed` makes them."""
    if logs and isinstance(logs[0], RawLog):
        return typed([r.wire() for r in logs])
    if logs and isinstance(logs[0], dict):
        return typed(list(logs))
    return logs
