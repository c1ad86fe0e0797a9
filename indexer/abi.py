"""Pure: the few ABI types the indexer reads (uint256, address, bool, string) from event data,
topics and view answers. Used by decode (events other than moves) and contract_views (names).

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
        if typ == "string":
            offset = int.from_bytes(word, "big")
            if offset < head or offset >= len(data):
                raise AbiError(f"value {i}: pointer {offset} outside the data")
            out.append(_string(data, offset))
        else:
            out.append(_static(typ, word))
    return tuple(out)


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


def _string(data: bytes, offset: int) -> str:
    word = data[offset:offset + 32]
    if len(word) < 32:
        raise AbiError("string length cut off")
    length = int.from_bytes(word, "big")
    start, padded = offset + 32, -(-length // 32) * 32
    if start + padded > len(data):
        raise AbiError(f"string of {length} bytes past the end of the data")
    if any(data[start + length:start + padded]):
        raise AbiError("string with non-zero padding")
    try:
        return data[start:start + length].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AbiError(f"string is not UTF-8: {exc}") from None
