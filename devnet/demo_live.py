"""The demo's live phase: the daemon follows the head while trading goes on, and the view shows it.

`LiveRun.run(task, split_at, done)` starts `LiveTrading`, schedules a silent 2:1 split of TSLAx
before live block `split_at`, and redraws the view twice a second from the database until
`done()` or a failure (of the trading thread or of the daemon's task). It then stops trading and
gives the daemon a moment to index the last blocks, so that the final frame shows it caught up.

Each redraw also reads the `backing` view and `backing_flags`, and adds a line to the view for
every flag that opens or closes (demo_backing).

The split is announced twice: when it is scheduled (the MultiplierScheduled transaction), and
once the indexer has indexed the block where it took effect, with the supply before and after
read from the database (`supply_at`), not from the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Future
from decimal import Decimal

from indexer.errors import Fatal
from indexer.models import underlying_of
from indexer.store import Store

from .demo_backing import BACKING_SQL, FLAGS_SQL, PRIVILEGED, FlagWatch, backing_grid, flags_grid
from .demo_view import LiveState, LiveView, Out, fetch_supply, scaled, supply_grid
from .deploy import World
from .simulate import Simulator
from .trading import LiveTrading

SPLIT_SYMBOL, SPLIT_RATIO = "TSLAx", 2
SPLIT_DELAY_BLOCKS = 3  # the activation time, in block intervals after the schedule
CATCH_UP_SECONDS = 1.5


class LiveRun:
    RATE = 4.0  # blocks per second

    def __init__(self, out: Out, world: World, sim: Simulator, store: Store, stop: asyncio.Event,
                 moves_per_block: int = 8) -> None:
        self.view = LiveView(out)
        self.trading = LiveTrading(sim, self.RATE, moves_per_block)
        self.world, self.sim, self.store, self.stop = world, sim, store, stop
        self.token = world.tokens[SPLIT_SYMBOL]
        self._activation: int | None = None  # block in which the split takes effect, once known
        self._announced = False
        self._started = time.monotonic()
        self.flags = FlagWatch()
        self.underlyings = [underlying_of(s) for s in world.all_tokens]

    async def run(self, task: asyncio.Task[int], split_at: int, done: Callable[[], bool]) -> None:
        """Trade, follow and show until `done()`; raises Fatal if trading or the daemon failed."""
        self._started = time.monotonic()
        self.trading.start()
        split = self.trading.schedule(self._split, split_at)
        try:
            with self.view:
                while not (done() or task.done() or self.trading.finished.is_set()):
                    await self._refresh(split)
                    await _wait(self.stop, 0.5)
                self.trading.stop()
                deadline = time.monotonic() + CATCH_UP_SECONDS
                while not task.done() and time.monotonic() < deadline:
                    indexed = await self._refresh(split)
                    if indexed >= (self.sim.summary.last_block or 0):
                        break
                    await asyncio.sleep(0.1)
        finally:
            self.trading.stop()
        if self.trading.error is not None:
            raise Fatal(f"trading stopped: {type(self.trading.error).__name__}: {self.trading.error}")

    def _split(self, sim: Simulator) -> tuple[int, int]:
        """In the trading thread: schedule the split, let it activate; (scheduled, activation) block."""
        scheduled = (sim.summary.last_block or 0) + 1
        activation = sim.scheduled_change(SPLIT_SYMBOL, SPLIT_RATIO, 1, delay=SPLIT_DELAY_BLOCKS * sim.interval,
                                          moves_per_block=self.trading.moves_per_block)
        return scheduled, activation

    async def _follow_split(self, split: Future[tuple[int, int]], indexed: int) -> None:
        if self._activation is None and split.done() and not split.cancelled() and split.exception() is None:
            scheduled, self._activation = split.result()
            delay = SPLIT_DELAY_BLOCKS * self.sim.interval
            self.view.event(f"{SPLIT_SYMBOL}: {SPLIT_RATIO}:1 split scheduled in block {scheduled} "
                            f"(MultiplierScheduled); it takes effect {delay} s later in chain time, silently")
        if self._activation is not None and not self._announced and indexed >= self._activation:
            self._announced = True
            await self._announce_activation(self._activation)

    async def _announce_activation(self, block: int) -> None:
        rows = await self.store.fetch(
            "SELECT supply_at($1, $2, $3 - 1) AS before, supply_at($1, $2, $3) AS after",
            self.world.chain_id, self.token, block)
        before, after = Decimal(rows[0]["before"]), Decimal(rows[0]["after"])
        change = "doubled" if after == 2 * before or abs(after / before - 2) < Decimal("1e-12") \
            else f"x{after / before:.6f}"
        self.view.event(f"{SPLIT_SYMBOL} split {SPLIT_RATIO}:1 activated at block {block} — no event emitted; "
                        f"supply {change}: {scaled(before)} -> {scaled(after)}")
        self.view.event(f"  time travel: SELECT supply_at({self.world.chain_id}, '{self.token}', {block - 1}), "
                        f"supply_at({self.world.chain_id}, '{self.token}', {block});")

    async def _refresh(self, split: Future[tuple[int, int]]) -> int:
        """Redraw the view from the database; returns the indexed block. The flags are read first:
        whatever caused a flag is then in the later reads, so the split's lines come before the
        lines of the flags it opens."""
        chain_id = self.world.chain_id
        head = self.sim.summary.last_block or 0
        flags = await self.store.fetch(FLAGS_SQL)
        supply = await fetch_supply(self.store, chain_id, list(self.world.all_tokens))
        transfers = await self.store.fetch("SELECT count(*) AS n FROM transfers WHERE chain_id = $1", chain_id)
        cursor = await self.store.fetch("SELECT block_time FROM cursors WHERE chain_id = $1", chain_id)
        backing = await self.store.fetch(BACKING_SQL)
        indexed = max((int(r["indexed_block"]) for r in supply), default=0)
        await self._follow_split(split, indexed)
        for line in self.flags.changes(flags):
            self.view.event(line)
        elapsed = time.monotonic() - self._started
        flag_grid, note = flags_grid(flags)
        self.view.update(LiveState(
            elapsed=elapsed, head=head, indexed=indexed,
            blocks_per_s=self.trading.blocks / elapsed if elapsed else 0.0,
            transfers=int(transfers[0]["n"]),
            supply=supply_grid(supply, head),
            chain_time=cursor[0]["block_time"] if cursor else None,
            backing=backing_grid(backing, self.underlyings), flags=flag_grid, note=note,
            alert=any(r["closed_at"] is None and r["rule"] != PRIVILEGED for r in flags),
            footer="Ctrl-C to stop"))
        return indexed


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
