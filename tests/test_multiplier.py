"""multiplier: the state model against a step-by-step replay of the contract's arithmetic.

The reference below replays XStock.sol literally: a schedule replaces the base once due, and
each whole fee period multiplies by (1e18 - fee) / 1e18 with a floor at each step. The model
must agree at every second, `moves` must list exactly the seconds where the value changes, and
`explained` must tell a state advanced by time from one a transaction touched.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from indexer.follow import parse_state
from indexer.multiplier import State, decay, explained, moves

E18 = 10**18


def reference(base: int, pending: bool, new_m: int, act: int, fee: int, period: int, last: int, t: int) -> int:
    m = new_m if pending and t >= act else base
    if period and t >= last:
        for _ in range((t - last) // period):
            m = m * (E18 - fee) // E18
    return m


def state(t: int = 1000, base: int = E18, pending: bool = False, new_m: int = 0, act: int = 0, fee: int = 0,
          period: int = 0, last: int = 1000, nonce: int = 0) -> State:
    m = reference(base, pending, new_m, act, fee, period, last, t)
    periods = (t - last) // period if period and t >= last else 0
    shown = new_m if pending and t >= act else base  # what multiplier() answers
    return State(t, m, periods, nonce, shown, new_m, act, pending and t < act, fee, period, last)


def test_decay_floors_at_every_period_not_once() -> None:
    m = 10**18 + 7
    step = m * (E18 - 3 * 10**16) // E18
    assert decay(m, 2, 3 * 10**16) == step * (E18 - 3 * 10**16) // E18
    assert decay(m, 0, 3 * 10**16) == m
    assert decay(m, 5, 0) == m


@pytest.mark.parametrize("seed", range(40))
def test_model_equals_the_contract_at_every_second(seed: int) -> None:
    rng = random.Random(seed)
    t0 = 10_000
    period = rng.choice([0, 1, 7, 60, 3600])
    fee = rng.choice([0, 1, 10**14, 10**16, 5 * 10**16])
    last = t0 - rng.randrange(0, 200)
    pending = rng.random() < 0.5
    act = t0 + rng.randrange(1, 300)
    base = rng.randrange(10**17, 10**19)
    new_m = rng.randrange(10**17, 10**19)
    s = state(t0, base, pending, new_m, act, fee, period, last)
    assert s.consistent()
    values = {t: reference(base, pending, new_m, act, fee, period, last, t) for t in range(t0, t0 + 400)}
    assert all(s.at(t) == v for t, v in values.items())
    expected = [(t, values[t]) for t in range(t0 + 1, t0 + 400) if values[t] != values[t - 1]]
    assert list(moves(s, t0, t0 + 399)) == expected


def test_a_state_advanced_by_time_is_explained() -> None:
    early = state(1000, fee=10**16, period=60, last=1000, pending=True, new_m=2 * E18, act=1030)
    # what the contract stores after a sync at 1200: schedule applied, 3 periods written
    m = reference(E18, True, 2 * E18, 1030, 10**16, 60, 1000, 1200)
    later = State(1200, m, 0, 0, m, 2 * E18, 1030, False, 10**16, 60, 1180)
    assert later.consistent()
    assert explained(early, later)
    untouched = state(1300, fee=10**16, period=60, last=1000, pending=True, new_m=2 * E18, act=1030)
    assert explained(early, untouched)


@pytest.mark.parametrize("touch", [
    {"last": 900},  # setLastTimeFeeApplied: the clock moved (case 1)
    {"period": 30},  # setPeriodLength
    {"fee": 2 * 10**16},  # updateFeePerPeriod: the path differs from the next period on
    {"nonce": 1},  # an explicit update, even one that sets the same value back (case 2)
    {"pending": False},  # a schedule cancelled
])
def test_a_transaction_on_the_state_is_never_explained(touch: dict[str, object]) -> None:
    early = state(1000, fee=10**16, period=60, last=1000, pending=True, new_m=2 * E18, act=1100)
    args = {"fee": 10**16, "period": 60, "last": 1000, "pending": True, "new_m": 2 * E18, "act": 1100}
    args.update(touch)
    later = state(1050, **args)  # type: ignore[arg-type]
    assert not explained(early, later)


def test_a_split_set_back_nets_out_in_value_but_not_in_state() -> None:
    before = state(1000, pending=True, new_m=2 * E18, act=1100)
    after = replace(state(1300), nonce=2)  # activated at 1100, set back to 1e18 by an update
    assert before.at(1300) == 2 * E18 and after.current == E18
    assert not explained(before, after)


def test_parse_state_reads_the_views_and_tells_missing_ones() -> None:
    def word(n: int) -> bytes:
        return n.to_bytes(32, "big")
    answers = [word(E18) + word(0) + word(3), word(E18), word(2 * E18), word(5000), word(1), word(0), word(0),
               word(900), None]
    s = parse_state(answers, 1000)
    assert isinstance(s, State) and s.pending and s.nonce == 3 and s.last_fee == 900
    assert parse_state([answers[0], None, *answers[2:]], 1000) == E18  # multiplier() missing: value only
    assert parse_state([None] * 9, 1000) is None  # not an xStock
    old = [*answers[:7], None, word(800)]  # lastFeeTime(), the first version's name
    s = parse_state(old, 1000)
    assert isinstance(s, State) and s.last_fee == 800
