"""indexer.abi against eth-abi: the same values for every valid encoding, a refusal wherever
eth-abi refuses, on random values and on encodings with a byte changed, cut, extended or a
pointer moved."""

from __future__ import annotations

import random

import eth_abi
import pytest

from indexer import abi

TUPLES = [["uint256"], ["address"], ["bool"], ["string"], ["string", "string"], ["address", "string", "string"],
          ["uint256", "uint256", "uint256", "uint256"], ["bool", "string"], ["string", "uint256"], ["bytes[]"]]


def value(typ: str, local: random.Random) -> object:
    if typ == "uint256":
        return local.choice([0, 1, 2**256 - 1, local.getrandbits(local.randint(1, 256))])
    if typ == "address":
        return "0x" + local.getrandbits(160).to_bytes(20, "big").hex()
    if typ == "bool":
        return local.random() < 0.5
    if typ == "bytes[]":
        return [local.randbytes(local.choice([0, 1, 31, 32, 33, 96])) for _ in range(local.randint(0, 4))]
    return "".join(local.choice(["a", "Z", " ", "é", "€", "\0", "x" * 31]) for _ in range(local.randint(0, 9)))


def mutate(data: bytearray, local: random.Random) -> bytearray:
    change = local.choice(["none", "byte", "byte", "cut", "extend", "pointer"])
    if change == "byte" and data:
        data[local.randrange(len(data))] = local.randrange(256)
    elif change == "cut":
        data = data[:local.randrange(len(data) + 1)]
    elif change == "extend":
        data += bytes(local.choice([1, 31, 32, 64]))
    elif change == "pointer" and len(data) >= 32:
        word = 32 * local.randrange(len(data) // 32)
        data[word:word + 32] = local.choice([0, 1, 31, 32, 33, 64, 95, 96, 128, 2**255]).to_bytes(32, "big")
    return data


def eth_abi_or_none(types: list[str], data: bytes) -> tuple[object, ...] | None:
    try:
        values = eth_abi.decode(types, data)
    except Exception:  # any refusal of eth-abi
        return None
    return tuple(v.lower() if t == "address" else v for t, v in zip(types, values, strict=True))


def ours_or_none(types: list[str], data: bytes) -> tuple[object, ...] | None:
    try:
        return abi.decode(types, data)
    except abi.AbiError:
        return None


@pytest.mark.parametrize("types", TUPLES, ids=",".join)
def test_agrees_with_eth_abi(types: list[str]) -> None:
    local = random.Random(",".join(types))
    refused = 0
    for _ in range(1500):
        data = mutate(bytearray(eth_abi.encode(types, [value(t, local) for t in types])), local)
        expected = eth_abi_or_none(types, bytes(data))
        assert ours_or_none(types, bytes(data)) == expected, bytes(data).hex()
        refused += expected is None
    assert 0 < refused < 1500  # both sides were exercised


def test_an_unsupported_type_is_refused() -> None:
    with pytest.raises(abi.AbiError):
        abi.decode(["int8"], bytes(32))


def test_the_readers_call_is_encoded_as_eth_abi_does() -> None:
    local = random.Random(7)
    for _ in range(300):
        n = local.randint(0, 6)
        targets = ["0x" + local.randbytes(20).hex() for _ in range(n)]
        calls = [local.randbytes(local.choice([0, 4, 36, 68, 100])) for _ in range(n + local.choice([0, 1]))]
        assert abi.encode_reads(targets, calls) == eth_abi.encode(["address[]", "bytes[]"], [targets, calls])


@pytest.mark.parametrize("target", ["0x" + "11" * 19, "11" * 20, "0x" + "11" * 21])
def test_the_readers_call_refuses_what_is_not_an_address(target: str) -> None:
    with pytest.raises(abi.AbiError):
        abi.encode_reads([target], [b""])
