"""Where the multiplier changes inside a range, exactly, whatever the range's size.

Place in the pipeline: after decode, before store. ``sync`` reads the state at a range's end
beside its logs (:func:`read_states`, in ``fetch``) and hands it with the decoded events to
:meth:`Follower.follow`, which returns the multiplier changes to store and the value at the end.

How (multiplier.py has the arithmetic and the argument):

1. The token's whole multiplier state (multiplier.State) is read at the range's end; the state
   at its start is the previous range's end (kept in memory; read again after a restart).
2. If time alone explains the end from the start (:func:`multiplier.explained`), no transaction
   changed the path: every change inside is a schedule activation or a fee step of the start's
   state, computed in closed form, and only the block where each took effect is looked up, from
   block timestamps (batched headers). A split that activates and is set back (issue case 2) is
   never explained: the set-back is an update (nonce) and clears the pending schedule.
3. Otherwise the events are hints: the state is read on both sides of every MultiplierUpdated,
   MultiplierScheduled, MultiplierScheduleOverridden and Upgraded (one batch), and every pair of
   neighbouring reads still not explained is bisected ON THE STATE (one batch per round, all
   tokens and pairs at once) down to the block where it changed. The value there is the chain's
   getCurrentMultiplier at the END of that block, not an event's value: a fee-clock setter that
   emits MultiplierUpdated and then moves the clock (case 1) is placed in its block with the
   value in force after it. An upgrade in place (case 3) starts the path at the upgrade block.
4. A token whose answers the model does not reproduce (other arithmetic, missing views) or
   whose state the node cannot give falls back to bisecting getCurrentMultiplier alone between
   the event values (tokens.multipliers).

Cost per committed range (a provider's rate limit counts calls, a batch of n as n): ONE
eth_call at the end for every xStock's whole state (multicall.py; a node without state
overrides: a batch of ``len(views.STATE_VIEWS)`` per xStock). A committed range spans as many
eth_getLogs requests as half a batch of logs takes (fetch.tiled_logs), so this is paid once per
25k logs, not per 2K-block request. With changes: about log16(range length) header batches to
place schedule activations and fee steps; with a transaction that changed the state: one hint
read per block, then at most log2(range length) bisection rounds, each ONE eth_call per block
asked (the reader gives each block's time: no headers). The daemon (one block per range) never
bisects.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from . import contract_views as views
from . import logconfig
from .batch_sql import TokenState
from .chain import Chain
from .ledger import event_samples
from .models import Header, MultiplierChange, TokenEvent, TokenKind
from .multicall import views_at
from .multiplier import State, explained, moves
from .tokens import multipliers as by_probing

log = logconfig.get("follow")

Reading = State | int | None  # the full state; only getCurrentMultiplier; nothing (no state)
HINTS = frozenset({"MultiplierUpdated", "MultiplierScheduled", "MultiplierScheduleOverridden", "Upgraded"})


def parse_state(answers: Sequence[bytes | None], t: int) -> Reading:
    """A State from the STATE_VIEWS answers at a block of time ``t``; the multiplier alone
    when a view is missing; None when getCurrentMultiplier itself is missing."""
    current = answers[0]
    if current is None or len(current) != 96 or int.from_bytes(current[:32], "big") == 0:
        return None
    m, periods, nonce = (int.from_bytes(current[i:i + 32], "big") for i in (0, 32, 64))
    base, new_m, act, pending, fee, period, last, last_old = (views.as_uint(a) for a in answers[1:])
    last = last if last is not None else last_old
    if base is None or new_m is None or act is None or fee is None or period is None or last is None:
        return m
    return State(t, m, periods, nonce, base, new_m, act, bool(pending) if pending is not None else act > t,
                 fee, period, last)


def current(reading: Reading) -> int | None:
    return reading.current if isinstance(reading, State) else reading


async def read_states(chain: Chain, asks: Iterable[tuple[str, int]], times: dict[int, int],
                      strict: bool = True) -> dict[tuple[str, int], Reading]:
    """The state of each (token, block): ONE eth_call per block for every token asked there
    (multicall.py), which also gives the block's time (added to ``times``; a node without state
    overrides: plain batches, and the headers of blocks whose time is not known). A block the
    node has no state for reads None for every token, or, ``strict`` (a range end: the node
    refusing it is retried as a step), raises StateUnavailable."""
    by_block: dict[int, list[str]] = {}
    for token, block in sorted(set(asks), key=lambda a: (a[1], a[0])):
        by_block.setdefault(block, []).append(token)
    answers, stamps = await views_at(
        chain, {b: [(t, d) for t in tokens for d in views.STATE_VIEWS] for b, tokens in by_block.items()}, strict)
    times.update({b: t for b, t in stamps.items() if isinstance(b, int)})
    untimed = sorted(set(by_block) - set(times))
    if untimed:
        times.update({h.number: h.timestamp for h in await chain.headers(untimed)})
    out: dict[tuple[str, int], Reading] = {}
    width = len(views.STATE_VIEWS)
    for block, tokens in by_block.items():
        got = answers[block]
        for i, token in enumerate(tokens):
            out[(token, block)] = None if got is None else parse_state(got[i * width:(i + 1) * width], times[block])
    return out


@dataclass
class _Path:
    """One token's reads inside a range, from its anchor (the block its path starts at)."""

    token: str
    before: int  # multiplier in force at the token's synced block
    anchor: int
    fresh: bool  # the path starts inside the range (a new token, an upgrade): check its first value
    points: dict[int, Reading]

    def pairs(self) -> list[tuple[int, int]]:
        blocks = sorted(self.points)
        return list(itertools.pairwise(blocks))

    def open_pairs(self) -> list[tuple[int, int]]:
        """Neighbouring reads whose difference is neither explained nor pinned to one block."""
        return [(a, b) for a, b in self.pairs() if b - a > 1 and not explained(self.state(a), self.state(b))]

    def state(self, block: int) -> State:
        reading = self.points[block]
        assert isinstance(reading, State)
        return reading

    def modelled(self) -> bool:
        return all(isinstance(r, State) and r.consistent() for r in self.points.values())


class Follower:
    """Follows the multiplier state of a chain's xStocks from range to range."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.last: dict[str, tuple[int, Reading]] = {}  # token -> (block, state) at its synced block

    def forget(self) -> None:
        """After a rewind or a reload: the states kept may be of orphaned blocks."""
        self.last.clear()

    async def follow(
        self, active: Mapping[str, TokenState], base: int, end: int, events: Sequence[TokenEvent],
        headers: dict[int, Header], known: Mapping[str, Reading] | None = None,
        times: Callable[[], Mapping[int, int]] | None = None, since: Mapping[str, int] | None = None,
    ) -> tuple[list[MultiplierChange], dict[str, int]]:
        """Changes in (base, end] and the value at ``end`` of every xStock of ``active``;
        ``known``: states at ``end`` already read; ``times``: block timestamps known from the
        logs, asked only when a step must be placed; ``since``: tokens whose path starts inside
        the range (upgraded to a share token at that block)."""
        xstocks = {a: t for a, t in active.items() if t.info.kind is TokenKind.XSTOCK}
        if not xstocks:
            return [], {}
        clock = {n: h.timestamp for n, h in headers.items()}
        ends = dict(known or {})
        since = since or {}
        anchors = {a: max(base, t.synced_block, t.info.start_block, since.get(a, 0)) for a, t in xstocks.items()}
        asks = [(a, end) for a in xstocks if a not in ends]
        asks += [(a, n) for a, n in anchors.items() if n != end and self.last.get(a, (None,))[0] != n]
        read = await read_states(self.chain, asks, clock) if asks else {}
        paths: dict[str, _Path] = {}
        for a, t in xstocks.items():
            n = anchors[a]
            start = read.get((a, n)) if (a, n) in read else self.last[a][1] if n != end else None
            points = {end: ends[a] if a in ends else read[(a, end)]}
            if n != end:
                points[n] = start
            paths[a] = _Path(a, t.multiplier, n, n > max(base, t.synced_block), points)
        modelled = {a: p for a, p in paths.items() if p.modelled()}
        await self._resolve(modelled, events, clock)
        modelled = {a: p for a, p in modelled.items() if p.modelled()}
        changes = await self._changes(modelled, events, clock, times)
        at_end = {a: p.state(end).current for a, p in modelled.items()}
        legacy = {a: t for a, t in xstocks.items() if a not in modelled}
        if legacy:
            log.debug("multiplier_by_probing", tokens=len(legacy), from_block=base + 1, to_block=end)
            more, values = await by_probing(self.chain, legacy, base, end, list(events), headers,
                                            {a: current(paths[a].points[end]) for a in legacy})
            changes += more
            at_end.update(values)
        for a, p in paths.items():
            self.last[a] = (end, p.points[end])
        return changes, at_end

    async def _resolve(self, paths: dict[str, _Path], events: Sequence[TokenEvent], clock: dict[int, int]) -> None:
        """Read states until every pair of neighbouring reads is explained or one block apart:
        first on both sides of the hint events of the tokens that need it, then by bisection."""
        hints: list[tuple[str, int]] = []
        for e in events:
            path = paths.get(e.token)
            if e.name in HINTS and path is not None and path.open_pairs():
                hints += [(e.token, n) for n in (e.block_number - 1, e.block_number)
                          if path.anchor < n < max(path.points) and n not in path.points]
        if hints:
            await self._read_into(paths, hints, clock)
        while True:
            mids = [(a, (lo + hi) // 2) for a, p in paths.items() if p.modelled() for lo, hi in p.open_pairs()]
            if not mids:
                return
            await self._read_into(paths, mids, clock)

    async def _read_into(self, paths: dict[str, _Path], asks: list[tuple[str, int]], clock: dict[int, int]) -> None:
        for (token, block), reading in (await read_states(self.chain, asks, clock)).items():
            paths[token].points[block] = reading

    async def _changes(self, paths: dict[str, _Path], events: Sequence[TokenEvent], clock: dict[int, int],
                       times: Callable[[], Mapping[int, int]] | None) -> list[MultiplierChange]:
        """Walk each path: a pair pinned to one block changes there to the chain's value; an
        explained pair changes where its start state's schedule and fee steps fall."""
        steps: dict[str, list[tuple[int, int | None]]] = {}  # token -> (block, value), in block order
        wanted: list[tuple[int, int, int]] = []  # (after block, up to block, time) to place
        plans: list[tuple[str, int, State, list[int], int]] = []
        for a, p in paths.items():
            for block in p.points:
                clock.setdefault(block, p.state(block).t)
            steps[a] = [(p.anchor, p.state(p.anchor).current)] if p.fresh else []
            for lo, hi in p.pairs():
                s_lo, s_hi = p.state(lo), p.state(hi)
                if not explained(s_lo, s_hi):
                    plans.append((a, hi, s_hi, [], -1))
                    continue
                taus = [t for t, _ in moves(s_lo, s_lo.t, s_hi.t)]
                wanted += [(lo, hi, t) for t in taus]
                plans.append((a, lo, s_lo, taus, hi))
        if wanted and times is not None:  # the moves' block times narrow the search for free
            clock.update({n: t for n, t in times().items() if n not in clock})
        placed = await self._place(wanted, clock)
        for a, block, state, taus, hi in plans:
            if hi < 0:
                steps[a].append((block, state.current))
            else:
                steps[a] += [(n, None) for n in sorted({placed[(block, hi, t)] for t in taus})]
        said = event_samples(events)
        out: list[MultiplierChange] = []
        for a, p in paths.items():
            value = p.before
            for block, v in steps[a]:
                if v is None:  # a placed step: the value is the state's at that block's time
                    v = _governing(p, block).at(clock[block])
                if v != value:
                    source = "event" if said.get(a, {}).get(block) == v else "observed"
                    out.append(MultiplierChange(a, block, clock[block], v, source))
                    value = v
        return out

    async def _place(self, wanted: list[tuple[int, int, int]],
                     clock: dict[int, int]) -> dict[tuple[int, int, int], int]:
        """The first block in (lo, hi] whose timestamp is at least t, for each (lo, hi, t):
        k-ary search on block timestamps, every open search advancing in the same header batch."""
        out: dict[tuple[int, int, int], int] = {}
        todo = set(wanted)
        while todo:
            known = sorted(clock)
            asks: set[int] = set()
            for lo, hi, t in list(todo):
                i, j = bisect.bisect_left(known, lo), bisect.bisect_right(known, hi)
                inside = known[i:j]
                below = [n for n in inside if clock[n] < t]
                a = below[-1] if below else lo
                b = next(n for n in inside if n > a and clock[n] >= t)
                if b - a == 1:
                    out[(lo, hi, t)] = b
                    todo.discard((lo, hi, t))
                    continue
                k = max(1, min(15, 180 // max(1, len(todo))))
                asks.update(a + (b - a) * (i + 1) // (k + 1) for i in range(k))
            asks -= set(clock)
            if asks:
                for h in await self.chain.headers(sorted(asks)):
                    clock[h.number] = h.timestamp
        return out


def _governing(path: _Path, block: int) -> State:
    """The read whose path holds at ``block``: the latest read at or before it."""
    blocks = sorted(path.points)
    return path.state(blocks[bisect.bisect_right(blocks, block) - 1])


__all__ = ["Follower", "Reading", "current", "parse_state", "read_states"]
