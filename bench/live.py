"""Live latency: `indexer run` following the head while blocks are mined at a steady pace.

With the database already caught up, the real daemon starts (http polling, or a ws:// URL for
newHeads), then the simulator mines one block at a time, each with one MoveBatch transaction of
a few transfers, every `interval` seconds. The moment `anvil_mine` returns is recorded (a
Transactor whose `mine` notes the time); one asyncpg connection polls `cursors` every
`POLL_SECONDS`, and the first poll that shows the cursor at or past a block is its commit
time. Latency = commit - mined: an upper bound, by at most one poll period.

Blocks mined before the daemon has committed its first one, and `WARMUP_BLOCKS` more, are not
measured (start-up is not latency). The daemon is stopped with SIGTERM and must exit 0.

Failure modes: `LiveError` when the daemon exits early, never commits, or falls behind for
`CATCH_UP_SECONDS` after the last block; `IndexerFailed` when it does not exit 0.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from devnet import Node, Simulator, Transactor

from .runner import IndexerProcess

POLL_SECONDS = 0.002
WARMUP_BLOCKS = 3
START_SECONDS = 60.0
CATCH_UP_SECONDS = 30.0


class LiveError(RuntimeError):
    """The daemon did not follow the head as it must."""


class TimedTransactor(Transactor):
    """A Transactor that reports the moment each `anvil_mine` returned."""

    def __init__(self, client: Node, on_mined: Callable[[float], None]) -> None:
        super().__init__(client)
        self.on_mined = on_mined

    def mine(self, blocks: int = 1) -> None:
        super().mine(blocks)
        self.on_mined(time.perf_counter())


class Miner:
    """Mines blocks of `moves` transfers each (round-robin over the tokens); `mined[block]` is
    when anvil_mine returned for it."""

    def __init__(self, sim: Simulator, moves: int) -> None:
        self.sim = sim
        self.moves = moves
        self.symbols = sorted(sim.world.all_tokens)
        self.mined: dict[int, float] = {}
        self._stamps: list[float] = []
        sim.tx = TimedTransactor(sim.client, self._stamps.append)

    def block(self) -> int:
        """Mine one block; returns its number."""
        self._stamps.clear()
        self.sim.batch(self.symbols[len(self.mined) % len(self.symbols)], self.moves)
        number = self.sim.summary.last_block
        if len(self._stamps) != 1 or number is None:
            raise LiveError(f"expected one mined block, anvil_mine ran {len(self._stamps)} times")
        self.mined[number] = self._stamps[0]
        return number


class CursorWatch:
    """Polls the chain's cursor; `seen[block]` is the first time the cursor was >= block."""

    def __init__(self, database_url: str, chain_id: int) -> None:
        self.database_url = database_url
        self.chain_id = chain_id
        self.cursor = -1
        self.seen: dict[int, float] = {}
        self._stop = asyncio.Event()

    async def run(self) -> None:
        conn = await asyncpg.connect(self.database_url)
        try:
            self.cursor = await self._read(conn)
            while not self._stop.is_set():
                value = await self._read(conn)
                now = time.perf_counter()
                for n in range(self.cursor + 1, value + 1):
                    self.seen[n] = now
                self.cursor = max(self.cursor, value)
                await asyncio.sleep(POLL_SECONDS)
        finally:
            await conn.close()

    async def _read(self, conn: asyncpg.Connection) -> int:
        value = await conn.fetchval("SELECT block_number FROM cursors WHERE chain_id = $1", self.chain_id)
        return -1 if value is None else int(value)

    def stop(self) -> None:
        self._stop.set()

    async def reach(self, block: int, within: float, daemon: IndexerProcess) -> None:
        """Wait until the cursor is at `block`; LiveError if the daemon dies or is too slow."""
        deadline = time.monotonic() + within
        while self.cursor < block:
            if not daemon.running():
                raise LiveError(f"the daemon exited while block {block} was pending:\n"
                                f"{daemon.stderr_so_far()[-2000:]}")
            if time.monotonic() > deadline:
                raise LiveError(f"the cursor is at {self.cursor}, block {block} was not committed within "
                                f"{within:.0f} s:\n{daemon.stderr_so_far()[-2000:]}")
            await asyncio.sleep(0.01)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def measure(config: Path, database_url: str, miner: Miner, *, mode: str, blocks: int, interval: float,
                  workdir: Path) -> dict[str, Any]:
    """One daemon, `blocks` measured blocks; returns the latency summary of `mode`."""
    watch = CursorWatch(database_url, miner.sim.world.chain_id)
    poller = asyncio.create_task(watch.run())
    daemon = IndexerProcess(config, "run", workdir=workdir, name=f"run-{mode}").start()
    try:
        await _warm_up(watch, miner, daemon, interval)
        measured: list[int] = []
        pace = time.perf_counter()
        for _ in range(blocks):
            pace += interval
            measured.append(await asyncio.to_thread(miner.block))
            await asyncio.sleep(max(0.0, pace - time.perf_counter()))
        await watch.reach(measured[-1], CATCH_UP_SECONDS, daemon)
    finally:
        finished = daemon.terminate()
        watch.stop()
        await poller
    finished.check(0)
    latencies = [1000 * (watch.seen[b] - miner.mined[b]) for b in measured]
    return {
        "mode": mode, "blocks": len(measured), "interval_ms": round(1000 * interval),
        "transfers_per_block": miner.moves, "poll_ms": POLL_SECONDS * 1000,
        "p50_ms": round(percentile(latencies, 50), 1), "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1), "mean_ms": round(sum(latencies) / len(latencies), 1),
        "min_ms": round(min(latencies), 1),
        "daemon": {"cpu_s": round(finished.cpu_s, 2), "peak_rss_mb": round(finished.peak_rss_bytes / 2**20, 1),
                   "exit_code": finished.returncode},
    }


async def _warm_up(watch: CursorWatch, miner: Miner, daemon: IndexerProcess, interval: float) -> None:
    """Mine until the daemon commits a block, then WARMUP_BLOCKS more, unmeasured."""
    deadline = time.monotonic() + START_SECONDS
    first = last = await asyncio.to_thread(miner.block)
    while watch.cursor < first:
        if not daemon.running():
            raise LiveError(f"the daemon exited during start-up:\n{daemon.stderr_so_far()[-2000:]}")
        if time.monotonic() > deadline:
            raise LiveError(f"the daemon committed nothing within {START_SECONDS:.0f} s:\n"
                            f"{daemon.stderr_so_far()[-2000:]}")
        await asyncio.sleep(0.05)
    for _ in range(WARMUP_BLOCKS):
        await asyncio.sleep(interval)
        last = await asyncio.to_thread(miner.block)
    await watch.reach(last, CATCH_UP_SECONDS, daemon)
