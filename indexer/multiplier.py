"""Pure: the token's multiplier state and the path of the multiplier it implies, in closed form.

Place in the pipeline: ``follow.py`` reads a :class:`State` (every view of the multiplier's
state, one JSON-RPC batch per block asked) at the ends of a range and, when needed, inside it;
this module says what the multiplier is at any later time while no transaction changes that
state, whether two reads are explained by time alone, and where (at which times) the multiplier
moves in between. No I/O here.

The contract's arithmetic, reproduced exactly (``contracts/src/XStock.sol``):

- ``base(t)`` is the scheduled value once a pending schedule's activation time has come
  (``t >= activation``), else the stored value (what ``multiplier()`` answers when read);
- ``M(t) = decay(base(t), periods(t))`` where ``periods(t) = (t - lastFee) // periodLength``
  (0 without a period) and ``decay`` multiplies by ``(1e18 - feePerPeriod) / 1e18``, floored
  at each period, once per whole period. A schedule must activate before the next fee boundary,
  so the order (schedule, then fee) is the contract's.

Why the STATE, not the multiplier: the multiplier at two blocks can be equal while the path
between them was not (a split that activates silently and is set back: issue case 2), and an
event's value need not be the block's multiplier (a fee-clock setter emits MultiplierUpdated
and then moves the clock: case 1). The state read at a block is the end-of-block truth; two
reads describe the same path exactly when :func:`explained` holds. Nothing with an effect on
the path escapes that test but one: an owner's fee-clock change reversed exactly before any
token move or update (the end states are then identical); the daemon, reading every block,
sees it. ``nonce`` (getCurrentMultiplier's third value) counts explicit updates, so an update
and its reversal never look like nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .models import ONE


@dataclass(frozen=True, slots=True)
class State:
    """The multiplier state of one token at the end of one block (time ``t``)."""

    t: int  # the block's timestamp
    current: int  # getCurrentMultiplier()[0]: the multiplier in force (the authority)
    periods: int  # getCurrentMultiplier()[1]: whole fee periods since lastFee
    nonce: int  # getCurrentMultiplier()[2]
    base: int  # multiplier(): stored value, or the scheduled one once due (no fee decay)
    new_multiplier: int
    activation: int  # newMultiplierActivationTime()
    pending: bool  # a schedule whose activation time has not come yet (at t)
    fee: int  # feePerPeriod, 1e18 scale
    period: int  # periodLength in seconds (0: no periods)
    last_fee: int  # lastTimeFeeApplied

    def periods_at(self, t: int) -> int:
        if self.period == 0 or t < self.last_fee:
            return 0
        return (t - self.last_fee) // self.period

    def base_at(self, t: int) -> int:
        return self.new_multiplier if self.pending and t >= self.activation else self.base

    def at(self, t: int) -> int:
        """The multiplier at time ``t >= self.t`` if no transaction changes the state."""
        return decay(self.base_at(t), self.periods_at(t), self.fee)

    def consistent(self) -> bool:
        """The model reproduces what the chain answered at this block (else the token's
        arithmetic is not ours, and the caller falls back to asking the chain)."""
        if self.periods_at(self.t) != self.periods and self.period != 0:
            return False
        return self.at(self.t) == self.current

    def key(self, t: int) -> tuple[int, ...]:
        """What fixes the path from ``t`` on, as the contract would store it after applying
        everything due by ``t`` (what its multiplier-update step writes): two states with equal
        keys at ``t`` give the same multiplier at every later time."""
        pending = self.pending and t < self.activation
        n = self.periods_at(t)
        clock = self.last_fee + n * self.period if self.period else self.last_fee
        return (self.at(t), int(pending), self.new_multiplier if pending else 0, self.activation if pending else 0,
                self.fee, self.period, clock, self.nonce)


def decay(m: int, periods: int, fee: int) -> int:
    """``m`` after ``periods`` fee periods: one floored multiplication per period, as the
    contract loops (a power would round differently)."""
    if fee == 0 or periods <= 0:
        return m
    keep = ONE - fee
    for _ in range(periods):
        m = m * keep // ONE
        if m == 0:
            break
    return m


def explained(earlier: State, later: State) -> bool:
    """True when ``later`` is what ``earlier`` becomes by time alone: no transaction changed the
    multiplier's path between the two blocks (see the module docstring for the one exception)."""
    return earlier.key(later.t) == later.key(later.t)


def moves(state: State, t_from: int, t_to: int) -> Iterator[tuple[int, int]]:
    """(time, multiplier from that time on) for every time in ``(t_from, t_to]`` at which the
    path of ``state`` changes value: a pending schedule's activation and each fee boundary whose
    floored step changes the value. In time order; at most one per time."""
    times: set[int] = set()
    if state.pending and t_from < state.activation <= t_to:
        times.add(state.activation)
    if state.fee and state.period:
        first = state.periods_at(t_from) + 1
        boundary = state.last_fee + first * state.period
        while boundary <= t_to:
            times.add(boundary)
            boundary += state.period
    value = state.at(t_from)
    # one walk, one multiplication per boundary (not decay() from scratch at each time)
    m, done, base = value, state.periods_at(t_from), state.base_at(t_from)
    for t in sorted(times):
        b = state.base_at(t)
        n = state.periods_at(t)
        if b != base:
            m, done, base = decay(b, n, state.fee), n, b
        else:
            m, done = decay(m, n - done, state.fee), n
        if m != value:
            value = m
            yield t, m
