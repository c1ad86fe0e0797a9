"""``indexer run``: migrate, catch up, then follow the head of every chain until a signal.

One task per chain, each running the backfill's pipeline (pipeline.catch_up) up to the head's
target, then reconciling backing (custody/reconcile.py) after a round that committed. Between rounds a caught-up
chain waits for a ``newHeads`` notification (ws:// endpoints) or the poll interval. RPC and
database outages are retried forever with backoff at the I/O edges; any other Retryable that
reaches the loop (the chain moved under a fetch, no state at a past block, the node behind our
cursor) retries the step with backoff (retry.py). Both show in /healthz and the logs meanwhile.
Only a Fatal stops the daemon, with its exit code: a node back above our cursor on another
chain is a reorg, rewound within max_reorg_depth, else exit 3.

SIGTERM/SIGINT: the batch in flight gets a short grace period to commit, then is cancelled (its
transaction rolls back); exit 0.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack

import structlog
from aiohttp import web

from . import logconfig, metrics
from .chain import watch_heads
from .chain_writer import writer
from .config import ChainConfig, Settings
from .custody import reconcile
from .errors import IndexerError, NodeBehind, Retryable
from .pipeline import catch_up
from .progress import Progress
from .retry import StepRetry
from .store import Store
from .sync import ChainSync, StepResult

log = logconfig.get("daemon")
GRACE_SECONDS = 3.0


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = asyncio.Event()
        self.health = metrics.Health(settings.daemon.max_lag_seconds)
        self.busy: set[str] = set()  # chains with a batch in flight
        self.idle = asyncio.Event()  # set whenever no batch is in flight
        self.store: Store | None = None

    async def run(self) -> int:
        """Start-up order: the database and its migration, then every chain's writer lock (a
        second ``run`` exits 2 naming the holder, before binding anything), then the HTTP port
        (in use: exit 2 naming it), then one task per chain."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        store = self.store = await Store.open(self.settings.database_url, role="run", attempts=None,
                                              on_retry=metrics.DB_RETRIES.inc)
        runner = None
        try:
            await store.migrate()
            async with AsyncExitStack() as writers:
                syncs = [await writers.enter_async_context(self._writer(cfg, store)) for cfg in self.settings.chains]
                runner = await self._serve()
                tasks = [asyncio.create_task(self._follow(sync), name=sync.cfg.name) for sync in syncs]
                stopper = asyncio.create_task(self.stop.wait())
                done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not stopper and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                await self._shutdown(tasks)
                stopper.cancel()
            return 0
        finally:
            if runner is not None:
                await runner.cleanup()
            await asyncio.wait_for(store.close(), timeout=2.0) if not store.pool.is_closing() else None
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def _writer(self, cfg: ChainConfig, store: Store) -> AbstractAsyncContextManager[ChainSync]:
        def on_error(kind: str) -> None:
            metrics.RPC_ERRORS.labels(cfg.name, kind).inc()
        return writer(self.settings, cfg, store, attempts=None, on_error=on_error)

    async def _serve(self) -> web.AppRunner | None:
        port = self.settings.daemon.metrics_port
        if port is None:
            return None
        host = self.settings.daemon.metrics_host
        runner = await metrics.serve(self.health, host, port)
        log.info("http_listening", host=host, port=port)
        return runner

    def _on_signal(self, sig: int) -> None:
        log.info("stopping", signal=signal.Signals(sig).name)
        self.stop.set()

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        if self.busy:  # let an in-flight commit finish, within the grace period
            try:
                await asyncio.wait_for(self.idle.wait(), GRACE_SECONDS)
            except TimeoutError:
                log.warning("abandoning_batch", chains=sorted(self.busy))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow(self, sync: ChainSync) -> None:
        cfg = sync.cfg
        structlog.contextvars.bind_contextvars(chain=cfg.name, mode="run")
        state = self.health.chains.setdefault(cfg.name, metrics.ChainHealth())
        state.rpc, state.retry = sync.chain.rpc, StepRetry(cfg.name)
        interval = cfg.poll_interval or await _default_interval(sync)
        wake = asyncio.Event()
        ws = next((u for u in cfg.rpc if u.startswith(("ws://", "wss://"))), None)
        watcher = asyncio.create_task(watch_heads(ws, wake)) if ws else None
        try:
            await self._loop(sync, state, wake, interval if not ws else max(interval, 2.0))  # ws wakes us
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _loop(self, sync: ChainSync, state: metrics.ChainHealth, wake: asyncio.Event, interval: float) -> None:
        name, retry = sync.cfg.name, state.retry
        progress: Progress | None = None

        def on_step(result: StepResult) -> None:
            nonlocal progress
            self._record(name, sync, state, result)
            state.last_progress = time.time()
            if progress is None and sync.head - result.to_block > 1000:
                progress = Progress(name, result.from_block, sync.head)
            if progress is not None and not result.reorg_depth:
                progress.update(result.to_block, result.logs, result.transfers)

        while not self.stop.is_set():
            wake.clear()
            try:
                steps = await self._advance(sync, state, on_step)
            except Retryable as exc:  # the edges gave up on one call: try the step again later
                state.behind = str(exc) if isinstance(exc, NodeBehind) else None
                state.last_progress = time.time()
                state.publish(name)
                await _wait_any(asyncio.Event(), self.stop, retry.failed(exc))
                continue
            retry.succeeded()
            state.behind, state.rpc_error = None, sync.chain.rpc.last_error
            state.last_progress = time.time()
            state.publish(name)
            if steps:
                continue
            if not state.caught_up:
                state.caught_up = True
                progress = None
                log.info("caught_up", block=state.indexed_block, head=sync.head)
            await _wait_any(wake, self.stop, interval)

    async def _advance(self, sync: ChainSync, state: metrics.ChainHealth,
                       on_step: Callable[[StepResult], None]) -> int:
        """Read the head (published at once, and recorded for indexer_progress when it moved),
        index up to the target, then evaluate the backing rules; returns the steps taken."""
        self.busy.add(sync.cfg.name)
        self.idle.clear()
        try:
            head_before = state.head
            state.target = await sync.target()
            state.head = sync.head
            cursor = sync.cursor
            if state.indexed_block < 0 and cursor is not None:  # from start-up: the stored cursor
                state.indexed_block, state.indexed_time = cursor.block_number, float(cursor.block_time)
            state.publish(sync.cfg.name)
            if cursor is not None and sync.head != head_before:
                await sync.store.set_head(sync.chain_id, sync.head)
            steps = await catch_up(sync, state.target, on_step, stop=self.stop.is_set)
            if steps:
                await self._reconcile()
            return steps
        finally:
            self.busy.discard(sync.cfg.name)
            if not self.busy:
                self.idle.set()

    async def _reconcile(self) -> None:
        """Backing rules after new data: opens and closes flags (NOTIFY backing_flags)."""
        assert self.store is not None
        await reconcile.evaluate(self.store, self.settings)

    def _record(self, name: str, sync: ChainSync, state: metrics.ChainHealth, r: StepResult) -> None:
        if r.reorg_depth:
            metrics.REORGS.labels(name).inc()
            metrics.REORG_DEPTH.labels(name).observe(r.reorg_depth)
            if sync.cursor is not None:
                state.indexed_block, state.indexed_time = sync.cursor.block_number, float(sync.cursor.block_time)
            return
        state.indexed_block = r.to_block
        state.indexed_time = float(sync.last_block_time or time.time())
        state.publish(name)
        metrics.LOGS.labels(name).inc(r.logs)
        metrics.TRANSFERS.labels(name).inc(r.transfers)
        metrics.BATCH_SECONDS.labels(name).observe(r.seconds)
        if r.transfers or sync.head - r.to_block < 2:
            log.info("batch", from_block=r.from_block, to_block=r.to_block, logs=r.logs, transfers=r.transfers,
                     ms=round(r.seconds * 1000, 1))


async def _default_interval(sync: ChainSync) -> float:
    """1 s for a real chain; 0.1 s for a local dev node (anvil, hardhat), where blocks come
    whenever a transaction does and polling costs nothing."""
    try:
        client = str(await sync.chain.rpc.request("web3_clientVersion", []))
    except IndexerError:
        return 1.0
    return 0.1 if any(dev in client.lower() for dev in ("anvil", "hardhat", "ganache")) else 1.0


async def _wait_any(wake: asyncio.Event, stop: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.create_task(wake.wait()), asyncio.create_task(stop.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def run(settings: Settings) -> int:
    return await Daemon(settings).run()
