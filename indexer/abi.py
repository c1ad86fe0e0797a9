"""Pure: the few ABI types the indexer reads (uint256, address, bool, string, bytes[]) from event
data, topics and view answers, and the one call it encodes (the view reader's
``read(address[],bytes[])``). Used by decode (events other than moves), contract_views (names)
and multicall.

Written here rather than imported from eth-abi, whose import (with eth_utils and pydantic under
it) costs about 0.2 s of every command's start-up. It refuses what eth-abi's strict decoder
refuses: a pointer into the head or past the end, short data, non-zero padding, a bool other
than 0 or 1, invalid UTF-8; ``tests/test_abi.py`` compares the two on random and mutated input.
"""

from __future__ import annotations

from collections.abc import Sequence

STATIC = ("uint256", "address", "bool")


class AbiError(ValueError):
    """The bytes are not an encoding of the types asked."""


def decode(types: Sequence[str], data: bytes) -> tuple[object, ...]:
    """ABI-decode ``data`` as the tuple ``types``; raises AbiError as eth-abi would refuse.
    Addresses come back lowercase."""
    head = 32 * len(types)
    out: list[object] = []
    for i, typ in enumerate(types):
        word = data[32 * i:32 * i + 32]
        if len(word) < 32:
            raise AbiError(f"{len(data)} bytes are too short for {len(types)} values")
        if typ in ("string", "bytes[]"):
            offset = int.from_bytes(word, "big")
            if offset < head or offset >= len(data):
                raise AbiError(f"value {i}: pointer {offset} outside the data")
            out.append(_string(data, offset) if typ == "string" else _bytes_array(data, offset))
        else:
            out.append(_static(typ, word))
    return tuple(out)


def decode_bytes_array(data: bytes) -> tuple[bytes, ...]:
    """``decode(["bytes[]"], data)[0]``, typed."""
    (items,) = decode(["bytes[]"], data)
    return items  # type: ignore[return-value]


def _static(typ: str, word: bytes) -> object:
    if typ == "uint256":
        return int.from_bytes(word, "big")
    if typ == "address":
        if any(word[:12]):
            raise AbiError("address with non-zero padding")
        return "0x" + word[12:].hex()
    if typ == "bool":
        value = int.from_bytes(word, "big")
        if value > 1:
            raise AbiError("bool other than 0 or 1")
        return value == 1
    raise AbiError(f"unsupported type {typ}")


def _bytes_at(data: bytes, offset: int) -> bytes:
    word = data[offset:offset + 32]
    if len(word) < 32:
        raise AbiError("length cut off")
    length = int.from_bytes(word, "big")
    start, padded = offset + 32, -(-length // 32) * 32
    if start + padded > len(data):
        raise AbiError(f"{length} bytes past the end of the data")
    if any(data[start + length:start + padded]):
        raise AbiError("non-zero padding")
    return data[start:start + length]


def _string(data: bytes, offset: int) -> str:
    try:
        return _bytes_at(data, offset).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AbiError(f"string is not UTF-8: {exc}") from None


def _bytes_array(data: bytes, offset: int) -> tuple[bytes, ...]:
    """A ``bytes[]`` at ``offset``: its length, then one pointer per item (from after the length
    word, each past the pointers and inside the data), each to a length and the bytes."""
    word = data[offset:offset + 32]
    if len(word) < 32:
        raise AbiError("array length cut off")
    base, n = offset + 32, int.from_bytes(word, "big")
    if base + 32 * n > len(data):
        raise AbiError(f"array of {n} items past the end of the data")
    items = []
    for i in range(n):
        at = base + int.from_bytes(data[base + 32 * i:base + 32 * i + 32], "big")
        if at < base + 32 * n or at >= len(data):
            raise AbiError(f"item {i}: pointer outside the array")
        items.append(_bytes_at(data, at))
    return tuple(items)


def encode_reads(targets: Sequence[str], calls: Sequence[bytes]) -> bytes:
    """The arguments of ``read(address[],bytes[])``: as eth-abi encodes them (tested)."""
    addresses = [bytes.fromhex(t[2:]) for t in targets]
    if any(len(a) != 20 for a in addresses) or any(not t.startswith("0x") for t in targets):
        raise AbiError("an address is not 20 bytes of 0x-prefixed hex")
    first = _word(len(addresses)) + b"".join(a.rjust(32, b"\0") for a in addresses)
    tails = [_word(len(call)) + call.ljust(-(-len(call) // 32) * 32, b"\0") for call in calls]
    pointers, at = [], 32 * len(calls)
    for tail in tails:
        pointers.append(_word(at))
        at += len(tail)
    second = _word(len(calls)) + b"".join(pointers) + b"".join(tails)
    return _word(64) + _word(64 + len(first)) + first + second


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")
