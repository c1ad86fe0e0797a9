"""ledger: the share ledger, the contract's rounding, batch folding and multiplier change finding."""

from __future__ import annotations

import bisect
import math
import random
from fractions import Fraction

import pytest

from indexer.ledger import LedgerBatch, balance, event_samples, find_changes, fold, shares_for
from indexer.models import ONE, ZERO_ADDRESS, MultiplierChange, TokenEvent, Transfer

TOKEN = "0x" + "a1" * 20
OTHER_TOKEN = "0x" + "b2" * 20
ALICE = "0x" + "11" * 20
BOB = "0x" + "22" * 20
CAROL = "0x" + "33" * 20
TX = "0x" + "cd" * 32


def floor_div(numerator: int, denominator: int) -> int:
    """Reference floor, computed with exact rationals rather than the operator under test."""
    return math.floor(Fraction(numerator, denominator))


def t(frm: str, to: str, amount: int, shares: int | None = None, block: int = 1, token: str = TOKEN) -> Transfer:
    return Transfer(token, block, 1_000 + block, TX, 0, frm, to, amount, amount if shares is None else shares)


# --- rounding exactly like the contract -------------------------------------------------------


@pytest.mark.parametrize(
    ("shares", "multiplier", "expected"),
    [
        (0, ONE, 0),
        (0, 3 * ONE, 0),
        (1, ONE, 1),
        (10**18, ONE, 10**18),
        (3, 15 * 10**17, 4),  # 4.5 floors to 4
        (1, 15 * 10**17, 1),  # 1.5 floors to 1
        (1, 5 * 10**17, 0),  # M < 1: 0.5 floors to 0
        (3, 5 * 10**17, 1),  # 1.5 floors to 1
        (10**18, 10**18 + 1, 10**18 + 1),
        (10**18 - 1, 10**18 + 1, 10**18 - 1),  # 1e18 - 1e-18 floors to 1e18 - 1
        (7, 999_999_999_999_999_999, 6),  # just below 1.0: 6.99999... floors to 6
        (2**200, 2 * ONE, 2**201),
    ],
)
def test_balance_floors_like_the_contract(shares: int, multiplier: int, expected: int) -> None:
    assert balance(shares, multiplier) == expected
    assert balance(shares, multiplier) == floor_div(shares * multiplier, 10**18)


@pytest.mark.parametrize(
    ("amount", "multiplier", "expected"),
    [
        (0, ONE, 0),
        (1, ONE, 1),
        (1, 15 * 10**17, 0),  # a 1-wei mint at M = 1.5 moves no shares
        (2, 15 * 10**17, 1),
        (3, 15 * 10**17, 2),
        (1, 5 * 10**17, 2),  # M < 1
        (1, 3 * 10**17, 3),  # 3.33... floors to 3
        (10**18, 2 * ONE, 5 * 10**17),
        (5, 10**18 + 1, 4),  # 4.99999... floors to 4
    ],
)
def test_shares_for_floors_like_the_contract(amount: int, multiplier: int, expected: int) -> None:
    assert shares_for(amount, multiplier) == expected
    assert shares_for(amount, multiplier) == floor_div(amount * 10**18, multiplier)


def test_rounding_against_exact_rationals_for_random_values() -> None:
    rng = random.Random(1)
    for _ in range(2_000):
        multiplier = rng.choice([ONE, rng.randrange(1, 10 * ONE), rng.randrange(ONE // 10, ONE)])
        shares = rng.getrandbits(rng.choice([1, 8, 64, 160]))
        amount = rng.getrandbits(rng.choice([1, 8, 64, 160]))
        assert balance(shares, multiplier) == floor_div(shares * multiplier, ONE)
        assert shares_for(amount, multiplier) == floor_div(amount * ONE, multiplier)
        # a move of `amount` never credits more than `amount`, and loses less than one share's worth
        back = balance(shares_for(amount, multiplier), multiplier)
        assert back <= amount
        assert amount - back <= multiplier // ONE + 1


def test_multiplier_one_is_the_identity() -> None:
    for value in (0, 1, 12345, 2**255):
        assert balance(value, ONE) == value
        assert shares_for(value, ONE) == value


# --- fold -------------------------------------------------------------------------------------


def test_mint_credits_only_the_receiver() -> None:
    batch = fold([t(ZERO_ADDRESS, ALICE, 110, 100, block=5)])
    assert {k: (d.shares, d.last_block) for k, d in batch.holders.items()} == {(TOKEN, ALICE): (100, 5)}
    token = batch.tokens[TOKEN]
    assert (token.shares, token.minted_raw, token.burned_raw, token.mints, token.burns, token.transfers) == (
        100, 110, 0, 1, 0, 0
    )


def test_burn_debits_only_the_sender() -> None:
    batch = fold([t(ALICE, ZERO_ADDRESS, 55, 50, block=8)])
    assert {k: (d.shares, d.last_block) for k, d in batch.holders.items()} == {(TOKEN, ALICE): (-50, 8)}
    token = batch.tokens[TOKEN]
    assert (token.shares, token.minted_raw, token.burned_raw, token.mints, token.burns, token.transfers) == (
        -50, 0, 55, 0, 1, 0
    )


def test_transfer_moves_shares_between_holders() -> None:
    batch = fold([t(ALICE, BOB, 20, 18, block=3)])
    assert {k: d.shares for k, d in batch.holders.items()} == {(TOKEN, ALICE): -18, (TOKEN, BOB): 18}
    token = batch.tokens[TOKEN]
    assert (token.shares, token.minted_raw, token.burned_raw, token.transfers) == (0, 0, 0, 1)


def test_self_transfer_nets_zero_but_touches_the_holder() -> None:
    batch = fold([t(ZERO_ADDRESS, ALICE, 10, 10, block=1), t(ALICE, ALICE, 4, 4, block=9)])
    delta = batch.holders[(TOKEN, ALICE)]
    assert (delta.shares, delta.last_block) == (10, 9)
    only_self = fold([t(ALICE, ALICE, 4, 4, block=12)])
    assert {k: (d.shares, d.last_block) for k, d in only_self.holders.items()} == {(TOKEN, ALICE): (0, 12)}
    assert only_self.tokens[TOKEN].transfers == 1
    assert only_self.tokens[TOKEN].shares == 0


def test_zero_to_zero_moves_nothing() -> None:
    batch = fold([t(ZERO_ADDRESS, ZERO_ADDRESS, 5, 5)])
    assert batch.holders == {}
    token = batch.tokens.get(TOKEN)
    assert token is None or (token.shares, token.minted_raw, token.burned_raw, token.mints, token.burns) == (
        0, 0, 0, 0, 0
    )


def test_counters_sum_transfer_values_and_transfer_shares_separately() -> None:
    # at M = 1.25: amounts (Transfer values) and shares (TransferShares values) differ
    batch = fold([
        t(ZERO_ADDRESS, ALICE, 125, 100),
        t(ZERO_ADDRESS, BOB, 250, 200),
        t(ALICE, BOB, 25, 20),
        t(BOB, ZERO_ADDRESS, 50, 40),
    ])
    token = batch.tokens[TOKEN]
    assert token.minted_raw == 375
    assert token.burned_raw == 50
    assert token.shares == 100 + 200 - 40
    assert (token.mints, token.burns, token.transfers) == (2, 1, 1)
    assert {k: d.shares for k, d in batch.holders.items()} == {(TOKEN, ALICE): 80, (TOKEN, BOB): 200 + 20 - 40}


def test_last_block_is_the_highest_block_touching_the_holder() -> None:
    batch = fold([t(ALICE, BOB, 1, block=5), t(BOB, ALICE, 1, block=9), t(CAROL, ALICE, 1, block=7)])
    assert {k[1]: d.last_block for k, d in batch.holders.items()} == {ALICE: 9, BOB: 9, CAROL: 7}


def test_tokens_are_kept_apart() -> None:
    batch = fold([t(ZERO_ADDRESS, ALICE, 10, token=TOKEN), t(ZERO_ADDRESS, ALICE, 7, token=OTHER_TOKEN)])
    assert batch.holders[(TOKEN, ALICE)].shares == 10
    assert batch.holders[(OTHER_TOKEN, ALICE)].shares == 7
    assert (batch.tokens[TOKEN].minted_raw, batch.tokens[OTHER_TOKEN].minted_raw) == (10, 7)


def random_transfers(rng: random.Random, n: int) -> list[Transfer]:
    people = [ZERO_ADDRESS, ALICE, BOB, CAROL] + ["0x" + f"{i:040x}" for i in range(1, 6)]
    out = []
    block = 1
    for _ in range(n):
        block += rng.choice([0, 0, 1, 3])
        frm, to = rng.choice(people), rng.choice(people)
        amount = rng.randrange(0, 10**20)
        out.append(t(frm, to, amount, rng.randrange(0, 10**20), block=block, token=rng.choice([TOKEN, OTHER_TOKEN])))
    return out


def summarize(batches: list[LedgerBatch]) -> tuple[dict[object, tuple[int, int]], dict[str, tuple[int, ...]]]:
    holders: dict[object, tuple[int, int]] = {}
    tokens: dict[str, tuple[int, ...]] = {}
    for batch in batches:
        for key, d in batch.holders.items():
            shares, last = holders.get(key, (0, 0))
            holders[key] = (shares + d.shares, max(last, d.last_block))
        for token, td in batch.tokens.items():
            now = (td.shares, td.minted_raw, td.burned_raw, td.mints, td.burns, td.transfers)
            before = tokens.get(token, (0,) * 6)
            tokens[token] = tuple(a + b for a, b in zip(before, now, strict=True))
    return holders, tokens


@pytest.mark.parametrize("seed", range(25))
def test_one_batch_equals_many_batches_summed(seed: int) -> None:
    rng = random.Random(seed)
    transfers = random_transfers(rng, rng.randrange(1, 300))
    cuts = sorted(rng.sample(range(len(transfers) + 1), k=min(len(transfers) + 1, rng.randrange(1, 8))))
    pieces = [transfers[a:b] for a, b in zip([0, *cuts], [*cuts, len(transfers)], strict=True)]
    assert sum(len(p) for p in pieces) == len(transfers)
    whole = summarize([fold(transfers)])
    split = summarize([fold(piece) for piece in pieces])
    assert whole == split


@pytest.mark.parametrize("seed", range(10))
def test_holder_deltas_add_up_to_the_supply_delta_and_zero_is_never_a_holder(seed: int) -> None:
    transfers = random_transfers(random.Random(1000 + seed), 200)
    batch = fold(transfers)
    assert all(holder != ZERO_ADDRESS for _, holder in batch.holders)
    for token, delta in batch.tokens.items():
        assert sum(d.shares for (tok, _), d in batch.holders.items() if tok == token) == delta.shares
        moves = [x for x in transfers if x.token == token]
        assert delta.minted_raw == sum(x.amount_raw for x in moves if x.from_address == ZERO_ADDRESS
                                       and x.to_address != ZERO_ADDRESS)
        assert delta.burned_raw == sum(x.amount_raw for x in moves if x.to_address == ZERO_ADDRESS
                                       and x.from_address != ZERO_ADDRESS)


# --- event_samples ----------------------------------------------------------------------------


def ev(name: str, block: int, value: int, token: str = TOKEN, index: int = 0) -> TokenEvent:
    return TokenEvent(token, block, 1_000 + block, TX, index, name, {"value": str(value)})


def test_event_samples_keep_the_last_multiplier_updated_per_block() -> None:
    events = [
        ev("MultiplierUpdated", 5, 11 * 10**17, index=0),
        ev("MultiplierUpdated", 5, 12 * 10**17, index=3),
        ev("MultiplierScheduled", 5, 99, index=4),
        ev("MultiplierUpdated", 9, 2 * ONE),
        ev("MultiplierUpdated", 9, 3 * ONE, token=OTHER_TOKEN),
        ev("NewMinter", 10, 1),
    ]
    assert event_samples(events) == {
        TOKEN: {5: 12 * 10**17, 9: 2 * ONE},
        OTHER_TOKEN: {9: 3 * ONE},
    }


def test_event_samples_of_no_multiplier_events_is_empty() -> None:
    assert event_samples([ev("PauseModeChange", 1, 1), ev("MultiplierScheduled", 2, 5)]) == {}


# --- find_changes -----------------------------------------------------------------------------


class Timeline:
    """A synthetic chain: the multiplier in force at each block, and a probe that counts calls."""

    def __init__(self, start_value: int, changes: dict[int, int]) -> None:
        self.blocks = sorted(changes)
        self.values = [start_value] + [changes[b] for b in self.blocks]
        self.calls: list[int] = []

    def at(self, block: int) -> int:
        return self.values[bisect.bisect_right(self.blocks, block)]

    async def probe(self, block: int) -> int:
        self.calls.append(block)
        return self.at(block)


async def block_time(block: int) -> int:
    return 1_600_000_000 + 12 * block


def time_of(block: int) -> int:
    return 1_600_000_000 + 12 * block


async def run(timeline: Timeline, samples: list[tuple[int, int]], event_blocks: set[int]) -> list[MultiplierChange]:
    return await find_changes(TOKEN, samples, timeline.probe, block_time, event_blocks)


async def test_finds_a_silent_activation_at_its_exact_first_block() -> None:
    old, new = ONE, 11 * 10**17
    timeline = Timeline(old, {1234: new})
    # the MultiplierUpdated only comes with the next token move, at block 1300
    samples = [(1000, old), (1300, new), (2000, new)]
    changes = await run(timeline, samples, {1300})
    assert changes == [MultiplierChange(TOKEN, 1234, time_of(1234), new, "observed")]
    assert all(1000 < b < 1300 for b in timeline.calls)


async def test_change_in_a_block_with_an_event_is_marked_event() -> None:
    timeline = Timeline(ONE, {1300: 2 * ONE})
    changes = await run(timeline, [(1000, ONE), (1300, 2 * ONE)], {1300})
    assert changes == [MultiplierChange(TOKEN, 1300, time_of(1300), 2 * ONE, "event")]


async def test_adjacent_samples_need_no_probe() -> None:
    timeline = Timeline(ONE, {11: 3 * ONE})
    changes = await run(timeline, [(10, ONE), (11, 3 * ONE)], set())
    assert changes == [MultiplierChange(TOKEN, 11, time_of(11), 3 * ONE, "observed")]
    assert timeline.calls == []


async def test_finds_several_changes_in_one_range() -> None:
    # dividend, then a 2:1 split, then a fee decay; the events come later or never
    timeline = Timeline(ONE, {1100: 11 * 10**17, 1500: 22 * 10**17, 1800: 21 * 10**17})
    changes = await run(timeline, [(1000, ONE), (2000, 21 * 10**17)], {1500})
    assert changes == [
        MultiplierChange(TOKEN, 1100, time_of(1100), 11 * 10**17, "observed"),
        MultiplierChange(TOKEN, 1500, time_of(1500), 22 * 10**17, "event"),
        MultiplierChange(TOKEN, 1800, time_of(1800), 21 * 10**17, "observed"),
    ]


async def test_changes_across_several_sample_intervals() -> None:
    timeline = Timeline(ONE, {150: 2 * ONE, 420: 3 * ONE})
    samples = [(100, ONE), (200, 2 * ONE), (300, 2 * ONE), (500, 3 * ONE)]
    changes = await run(timeline, samples, set())
    assert [(c.block_number, c.multiplier) for c in changes] == [(150, 2 * ONE), (420, 3 * ONE)]
    assert all(100 < b < 200 or 300 < b < 500 for b in timeline.calls)


async def test_no_probe_calls_when_samples_are_equal() -> None:
    timeline = Timeline(ONE, {})
    changes = await run(timeline, [(0, ONE), (5_000, ONE), (1_000_000, ONE)], set())
    assert changes == []
    assert timeline.calls == []


async def test_a_single_sample_or_none_finds_nothing() -> None:
    timeline = Timeline(ONE, {5: 2 * ONE})
    assert await run(timeline, [(10, 2 * ONE)], set()) == []
    assert await run(timeline, [], set()) == []
    assert timeline.calls == []


@pytest.mark.parametrize("seed", range(20))
async def test_probe_calls_are_logarithmic_in_the_range(seed: int) -> None:
    rng = random.Random(seed)
    span = 2**20
    change_at = rng.randrange(1, span + 1)
    timeline = Timeline(ONE, {change_at: ONE + rng.randrange(1, ONE)})
    changes = await run(timeline, [(0, ONE), (span, timeline.at(span))], set())
    assert [c.block_number for c in changes] == [change_at]
    assert len(timeline.calls) <= math.ceil(math.log2(span))


@pytest.mark.parametrize("seed", range(10))
async def test_random_timelines_are_found_exactly(seed: int) -> None:
    rng = random.Random(500 + seed)
    lo, hi = 10_000, 10_000 + rng.randrange(100, 100_000)
    blocks = sorted(rng.sample(range(lo + 1, hi + 1), k=rng.randrange(1, 6)))
    # distinct values, so no change can hide behind an equal value at a probe point
    values = rng.sample(range(ONE // 2, 3 * ONE), k=len(blocks) + 1)
    timeline = Timeline(values[0], dict(zip(blocks, values[1:], strict=True)))
    changes = await run(timeline, [(lo, timeline.at(lo)), (hi, timeline.at(hi))], set())
    assert [(c.block_number, c.multiplier) for c in changes] == list(zip(blocks, values[1:], strict=True))
    assert len(timeline.calls) <= len(blocks) * math.ceil(math.log2(hi - lo))


def test_synthetic_timeline_itself() -> None:
    timeline = Timeline(1, {10: 2, 20: 3})
    assert [timeline.at(b) for b in (9, 10, 19, 20, 99)] == [1, 2, 2, 3, 3]
