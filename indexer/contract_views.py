"""Pure: calldata for the contract views the indexer reads, and decoding of their answers.

``None`` stands for a revert or an empty answer (no code at the address, or the view does not
exist: the sign of a plain ERC-20 when asking for ``getCurrentMultiplier``).
"""

from __future__ import annotations

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.crypto import keccak


def selector(signature: str) -> str:
    return "0x" + keccak(text=signature)[:4].hex()


GET_CURRENT_MULTIPLIER = selector("getCurrentMultiplier()")
TOTAL_SUPPLY = selector("totalSupply()")
SYMBOL = selector("symbol()")
NAME = selector("name()")
DECIMALS = selector("decimals()")
_BALANCE_OF = selector("balanceOf(address)")
_SHARES_OF = selector("sharesOf(address)")

# The multiplier's whole state (multiplier.State), in this order; lastFeeTime() is how our
# first contract version named lastTimeFeeApplied().
STATE_VIEWS = (
    GET_CURRENT_MULTIPLIER, selector("multiplier()"), selector("newMultiplier()"),
    selector("newMultiplierActivationTime()"), selector("hasPendingSchedule()"), selector("feePerPeriod()"),
    selector("periodLength()"), selector("lastTimeFeeApplied()"), selector("lastFeeTime()"),
)


def balance_of(holder: str) -> str:
    return _BALANCE_OF + holder[2:].lower().rjust(64, "0")


def shares_of(holder: str) -> str:
    return _SHARES_OF + holder[2:].lower().rjust(64, "0")


def as_uint(answer: bytes | None) -> int | None:
    if answer is None or len(answer) < 32:
        return None
    return int.from_bytes(answer[:32], "big")


def as_multiplier(answer: bytes | None) -> int | None:
    """getCurrentMultiplier() -> (multiplier, periodsPassed, nonce): the multiplier, or None
    when the contract does not have the view."""
    if answer is None or len(answer) != 96:
        return None
    value = int.from_bytes(answer[:32], "big")
    return value if value > 0 else None


def as_text(answer: bytes | None) -> str | None:
    """An ABI string, or a bytes32 right-padded with zeros (older tokens)."""
    if answer is None:
        return None
    if len(answer) == 32:
        return answer.rstrip(b"\0").decode("utf-8", "replace") or None
    try:
        (value,) = abi_decode(["string"], answer)
    except (DecodingError, ValueError, OverflowError):
        return None
    text = str(value).strip()
    return text or None
