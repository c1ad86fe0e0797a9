"""Pure: calldata for the contract views the indexer reads, and decoding of their answers.

``None`` stands for a revert or an empty answer (no code at the address, or the view does not
exist: the sign of a plain ERC-20 when asking for ``getCurrentMultiplier``).
"""

from __future__ import annotations

from . import abi


def selector(signature: str) -> str:
    from eth_hash.auto import keccak

    return "0x" + keccak(signature.encode()).hex()[:8]


# Selectors written out: hashing them at import put eth_utils on every command's start-up
# (tests/test_contract_views.py checks each against its signature).
GET_CURRENT_MULTIPLIER = "0x2b63c300"  # getCurrentMultiplier()
TOTAL_SUPPLY = "0x18160ddd"  # totalSupply()
SYMBOL = "0x95d89b41"  # symbol()
NAME = "0x06fdde03"  # name()
DECIMALS = "0x313ce567"  # decimals()
_BALANCE_OF = "0x70a08231"  # balanceOf(address)
_SHARES_OF = "0xf5eb42dc"  # sharesOf(address)

# The multiplier's whole state (multiplier.State), in this order; lastFeeTime() is how our
# first contract version named lastTimeFeeApplied().
STATE_SIGNATURES = (
    "getCurrentMultiplier()", "multiplier()", "newMultiplier()", "newMultiplierActivationTime()",
    "hasPendingSchedule()", "feePerPeriod()", "periodLength()", "lastTimeFeeApplied()", "lastFeeTime()",
)
STATE_VIEWS = ("0x2b63c300", "0x1b3ed722", "0x60638067", "0x5416d876", "0xd00aa552", "0xf00c1dff",
               "0xd2ca2115", "0x3dfa34cd", "0x66b5ae1f")


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
        text = str(abi.decode(["string"], answer)[0]).strip()
    except abi.AbiError:
        return None
    return text or None
