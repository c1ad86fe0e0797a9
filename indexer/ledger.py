"""Pure: fold decoded events into share deltas, supply counters and the multiplier schedule.

The share ledger is the truth. A holder's balance in token units at block B is
``floor(shares * M(B) / 1e18)`` where ``M(B)`` is the multiplier in force at B; supply is the
same on total shares. Summing Transfer values is wrong as soon as M moves, so nothing here does.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .models import ONE, ZERO_ADDRESS, MultiplierChange, TokenEvent, Transfer


def balance(shares: int, multiplier: int) -> int:
    """Token units for ``shares`` at ``multiplier`` (floor, as the contract rounds)."""
    return shares * multiplier // ONE


def shares_for(amount: int, multiplier: int) -> int:
    """Shares the contract moves for ``amount`` token units (floor)."""
    return amount * ONE // multiplier


@dataclass(slots=True)
class HolderDelta:
    shares: int = 0
    last_block: int = 0


@dataclass(slots=True)
class TokenDelta:
    shares: int = 0  # change of total shares (mints minus burns)
    minted_raw: int = 0
    burned_raw: int = 0
    mints: int = 0
    burns: int = 0
    transfers: int = 0


@dataclass(slots=True)
class LedgerBatch:
    holders: dict[tuple[str, str], HolderDelta] = field(default_factory=dict)
    tokens: dict[str, TokenDelta] = field(default_factory=dict)


def fold(transfers: Iterable[Transfer]) -> LedgerBatch:
    """Net share change per (token, holder) and per-token supply counters for one batch.

    The zero address is never a holder: a mint credits only the receiver, a burn debits only
    the sender. A self transfer nets to zero but still marks the holder as touched."""
    batch = LedgerBatch()
    tokens = batch.tokens
    by_token: dict[str, dict[str, HolderDelta]] = {}  # keyed by holder alone: no tuple per lookup
    zero = ZERO_ADDRESS
    token_of, counters = "", TokenDelta()
    mine: dict[str, HolderDelta] = {}
    for token, block, _, _, _, frm, to, amount, shares in transfers:
        if token != token_of:
            token_of = token
            counters = tokens.get(token) or tokens.setdefault(token, TokenDelta())
            mine = by_token.setdefault(token, {})
        if frm == zero:
            if to == zero:
                continue  # nothing moves
            counters.shares += shares
            counters.minted_raw += amount
            counters.mints += 1
        else:
            if to == zero:
                counters.shares -= shares
                counters.burned_raw += amount
                counters.burns += 1
            else:
                counters.transfers += 1
            delta = mine.get(frm)
            if delta is None:
                mine[frm] = HolderDelta(-shares, block)
            else:
                delta.shares -= shares
                if block > delta.last_block:
                    delta.last_block = block
        if to != zero:
            delta = mine.get(to)
            if delta is None:
                mine[to] = HolderDelta(shares, block)
            else:
                delta.shares += shares
                if block > delta.last_block:
                    delta.last_block = block
    holders = batch.holders
    for token, of_token in by_token.items():
        for holder, moved in of_token.items():
            holders[(token, holder)] = moved
    return batch


def event_samples(events: Iterable[TokenEvent]) -> dict[str, dict[int, int]]:
    """Multiplier values the chain told us: token -> {block: value of the last MultiplierUpdated
    in that block}. A MultiplierUpdated says what M is at the end of its block."""
    out: dict[str, dict[int, int]] = {}
    for event in events:
        if event.name == "MultiplierUpdated":
            out.setdefault(event.token, {})[event.block_number] = int(str(event.args["value"]))
    return out


Probe = Callable[[int], Awaitable[int]]


async def find_changes(
    token: str,
    samples: Sequence[tuple[int, int]],
    probe: Probe,
    block_time: Callable[[int], Awaitable[int]],
    event_blocks: set[int],
) -> list[MultiplierChange]:
    """Locate every block where the multiplier changes, given known (block, value) samples in
    ascending block order (the first is the value already in force before the batch).

    Between two samples with different values, bisect with ``probe(block)`` (the chain's
    ``getCurrentMultiplier`` at that block) down to the first block that has the new value: that
    is where a silent activation took effect, even when the event comes blocks later. Equal
    neighbouring samples are taken as no change between them; MultiplierUpdated events inside the
    range are samples too, so an up-then-back-down within one batch is still seen at the events.
    """
    changes: list[MultiplierChange] = []
    for (lo, lo_val), (hi, hi_val) in itertools.pairwise(samples):
        await _bisect(token, lo, lo_val, hi, hi_val, probe, block_time, event_blocks, changes)
    return changes


async def _bisect(
    token: str, lo: int, lo_val: int, hi: int, hi_val: int, probe: Probe,
    block_time: Callable[[int], Awaitable[int]], event_blocks: set[int], out: list[MultiplierChange],
) -> None:
    if lo_val == hi_val:
        return
    if hi - lo <= 1:
        source = "event" if hi in event_blocks else "observed"
        out.append(MultiplierChange(token, hi, await block_time(hi), hi_val, source))
        return
    mid = (lo + hi) // 2
    mid_val = await probe(mid)
    await _bisect(token, lo, lo_val, mid, mid_val, probe, block_time, event_blocks, out)
    await _bisect(token, mid, mid_val, hi, hi_val, probe, block_time, event_blocks, out)
