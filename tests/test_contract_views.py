"""calls: calldata of the views the indexer reads, and decoding of their answers."""

from __future__ import annotations

import eth_abi
import pytest
from eth_utils import keccak

from indexer import contract_views as views


def keccak_selector(signature: str) -> str:
    return "0x" + keccak(text=signature)[:4].hex()


@pytest.mark.parametrize(
    ("constant", "signature", "known"),
    [
        (views.TOTAL_SUPPLY, "totalSupply()", "0x18160ddd"),
        (views.SYMBOL, "symbol()", "0x95d89b41"),
        (views.NAME, "name()", "0x06fdde03"),
        (views.DECIMALS, "decimals()", "0x313ce567"),
        (views.GET_CURRENT_MULTIPLIER, "getCurrentMultiplier()", None),
        (views._BALANCE_OF, "balanceOf(address)", "0x70a08231"),
        (views._SHARES_OF, "sharesOf(address)", None),
        *[(view, signature, None) for view, signature in zip(views.STATE_VIEWS, views.STATE_SIGNATURES, strict=True)],
    ],
)
def test_selectors_are_keccak_of_the_signature(constant: str, signature: str, known: str | None) -> None:
    assert constant == keccak_selector(signature)
    assert len(constant) == 10
    if known is not None:
        assert constant == known


def test_selector_helper() -> None:
    assert views.selector("balanceOf(address)") == "0x70a08231"
    assert views.selector("transfer(address,uint256)") == "0xa9059cbb"


@pytest.mark.parametrize(
    "holder",
    ["0x" + "00" * 20, "0x" + "ff" * 20, "0x" + "AbCdEf0123" * 4, "0x" + "00" * 19 + "01"],
)
def test_balance_of_encoding(holder: str) -> None:
    data = views.balance_of(holder)
    assert data == "0x70a08231" + eth_abi.encode(["address"], [holder.lower()]).hex()
    assert len(data) == 2 + 8 + 64
    assert data == data.lower()


def test_as_uint() -> None:
    assert views.as_uint(None) is None
    assert views.as_uint(b"") is None
    assert views.as_uint(b"\x01" * 31) is None
    assert views.as_uint(eth_abi.encode(["uint256"], [12345])) == 12345
    assert views.as_uint(eth_abi.encode(["uint256"], [2**256 - 1])) == 2**256 - 1
    assert views.as_uint(eth_abi.encode(["uint8"], [18])) == 18


def multiplier_answer(multiplier: int, periods: int = 3, nonce: int = 7) -> bytes:
    return eth_abi.encode(["uint256", "uint256", "uint256"], [multiplier, periods, nonce])


@pytest.mark.parametrize("value", [1, 10**18, 15 * 10**17, 2**256 - 1])
def test_as_multiplier_reads_the_first_of_three_words(value: int) -> None:
    answer = multiplier_answer(value)
    assert len(answer) == 96
    assert views.as_multiplier(answer) == value


@pytest.mark.parametrize("size", [0, 32, 64, 95, 97, 128])
def test_as_multiplier_needs_exactly_96_bytes(size: int) -> None:
    answer = (multiplier_answer(10**18) * 2)[:size]
    assert views.as_multiplier(answer) is None


def test_as_multiplier_of_nothing_or_zero_is_none() -> None:
    assert views.as_multiplier(None) is None
    assert views.as_multiplier(multiplier_answer(0)) is None


@pytest.mark.parametrize("text", ["TSLAx", "Tesla xStock", "A" * 32, "A" * 33, "ünïcode"])
def test_as_text_decodes_abi_strings(text: str) -> None:
    assert views.as_text(eth_abi.encode(["string"], [text])) == text


def test_as_text_strips_whitespace_and_empty_is_none() -> None:
    assert views.as_text(eth_abi.encode(["string"], ["  MKR \n"])) == "MKR"
    assert views.as_text(eth_abi.encode(["string"], [""])) is None
    assert views.as_text(eth_abi.encode(["string"], ["   "])) is None


@pytest.mark.parametrize(("raw", "text"), [(b"MKR", "MKR"), (b"Maker", "Maker"), (b"X" * 32, "X" * 32)])
def test_as_text_decodes_right_padded_bytes32(raw: bytes, text: str) -> None:
    assert views.as_text(raw.ljust(32, b"\0")) == text


def test_as_text_of_nothing() -> None:
    assert views.as_text(None) is None
    assert views.as_text(b"\0" * 32) is None


@pytest.mark.parametrize(
    "answer",
    [
        eth_abi.encode(["uint256", "uint256"], [2**64, 5]),  # offset far beyond the data
        eth_abi.encode(["uint256", "uint256"], [32, 100]),  # length beyond the data
        b"\x00" * 63,
    ],
    ids=["bad-offset", "bad-length", "odd-size"],
)
def test_as_text_of_garbage_is_none(answer: bytes) -> None:
    assert views.as_text(answer) is None


def eth_abi_string(answer: bytes) -> str | None:
    try:
        return str(eth_abi.decode(["string"], answer)[0])
    except Exception:  # any refusal of eth-abi is "not a string"
        return None


def test_abi_string_agrees_with_eth_abi_on_random_answers() -> None:
    """as_text's string reader (indexer.abi: no eth-abi import at start-up) against eth-abi: valid
    encodings, then the same with a byte changed, cut or extended."""
    import random

    local = random.Random(15)
    for _ in range(3000):
        text = "".join(local.choice(["a", "Z", " ", "é", "€", "\0", "x" * 31]) for _ in range(local.randint(0, 12)))
        answer = bytearray(eth_abi.encode(["string"], [text]))
        change = local.choice(["none", "byte", "cut", "extend", "offset"])
        if change == "byte":
            answer[local.randrange(len(answer))] = local.randrange(256)
        elif change == "cut":
            answer = answer[:local.randrange(len(answer))]
        elif change == "extend":
            answer += bytes(local.choice([1, 32, 64]))
        elif change == "offset":
            answer[:32] = local.choice([0, 1, 31, 33, 64, 96, 2**255]).to_bytes(32, "big")
        if len(answer) == 32:
            continue  # read as a bytes32 name, not a string
        expected = eth_abi_string(bytes(answer))
        assert views.as_text(bytes(answer)) == ((expected or "").strip() or None), (change, bytes(answer).hex())
