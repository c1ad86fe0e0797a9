"""``indexer run``: migrate, catch up, then follow the head of every chain until a signal.

One task per chain, each looping the same sync step as the backfill. Between steps a caught-up
chain waits for a ``newHeads`` notification (ws:// endpoints) or the poll interval. RPC and
database outages are retried forever with backoff at the I/O edges (they show in /healthz and
the logs meanwhile); fatal errors stop the daemon with their exit code.

SIGTERM/SIGINT: the batch in flight gets a short grace period to commit, then is cancelled (its
transaction rolls back); exit 0.
"""

from __future__ import annotations

import asyncio
import signal
import time

import structlog

from . import logs, metrics, reconcile
from .backfill import catch_up
from .chain import watch_heads
from .config import ChainConfig, Settings
from .errors import IndexerError
from .progress import Progress
from .session import writer
from .store import Store
from .sync import ChainSync, StepResult

log = logs.get("daemon")
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
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        store = self.store = await Store.open(self.settings.database_url, role="run", attempts=None,
                                              on_retry=metrics.DB_RETRIES.inc)
        runner = None
        try:
            await store.migrate()
            if self.settings.daemon.metrics_port is not None:
                runner = await metrics.serve(self.health, self.settings.daemon.metrics_host,
                                             self.settings.daemon.metrics_port)
                log.info("http_listening", host=self.settings.daemon.metrics_host,
                         port=self.settings.daemon.metrics_port)
            tasks = [asyncio.create_task(self._follow(cfg, store), name=cfg.name) for cfg in self.settings.chains]
            stopper = asyncio.create_task(self.stop.wait())
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            code = 0
            for task in done:
                if task is not stopper and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            await self._shutdown(tasks)
            stopper.cancel()
            return code
        finally:
            if runner is not None:
                await runner.cleanup()
            await asyncio.wait_for(store.close(), timeout=2.0) if not store.pool.is_closing() else None
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

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

    async def _follow(self, cfg: ChainConfig, store: Store) -> None:
        structlog.contextvars.bind_contextvars(chain=cfg.name, mode="run")
        state = self.health.chains.setdefault(cfg.name, metrics.ChainHealth())

        def on_error(kind: str) -> None:
            metrics.RPC_ERRORS.labels(cfg.name, kind).inc()

        async with writer(self.settings, cfg, store, attempts=None, on_error=on_error) as sync:
            state.rpc = sync.chain.rpc
            interval = cfg.poll_interval or await _default_interval(sync)
            wake = asyncio.Event()
            ws = next((u for u in cfg.rpc if u.startswith(("ws://", "wss://"))), None)
            watcher = asyncio.create_task(watch_heads(ws, wake)) if ws else None
            try:
                await self._loop(cfg, sync, state, wake, interval if not ws else max(interval, 2.0))  # ws wakes us
            finally:
                if watcher is not None:
                    watcher.cancel()

    async def _loop(self, cfg: ChainConfig, sync: ChainSync, state: metrics.ChainHealth,
                    wake: asyncio.Event, interval: float) -> None:
        progress: Progress | None = None

        def on_step(result: StepResult) -> None:
            nonlocal progress
            self._record(cfg.name, sync, state, result)
            state.last_progress = time.time()
            if progress is None and sync.head - result.to_block > 1000:
                progress = Progress(cfg.name, result.from_block, sync.head)
            if progress is not None and not result.reorg_depth:
                progress.update(result.to_block, result.logs, result.transfers)

        while not self.stop.is_set():
            wake.clear()
            self.busy.add(cfg.name)
            self.idle.clear()
            try:
                target = await sync.target()
                steps = await catch_up(sync, target, on_step, stop=self.stop.is_set)
                if steps:
                    await self._reconcile()
            finally:
                self.busy.discard(cfg.name)
                if not self.busy:
                    self.idle.set()
            state.head, state.rpc_error = sync.head, sync.chain.rpc.last_error
            state.last_progress = time.time()
            if steps:
                continue
            if not state.caught_up:
                state.caught_up = True
                progress = None
                log.info("caught_up", block=state.indexed_block, head=sync.head)
            await _wait_any(wake, self.stop, interval)

    async def _reconcile(self) -> None:
        """Backing rules after new data: opens and closes flags (NOTIFY backing_flags)."""
        assert self.store is not None
        await reconcile.evaluate(self.store, self.settings)

    def _record(self, name: str, sync: ChainSync, state: metrics.ChainHealth, r: StepResult) -> None:
        if r.reorg_depth:
            metrics.REORGS.labels(name).inc()
            metrics.REORG_DEPTH.labels(name).observe(r.reorg_depth)
            return
        state.indexed_block = r.to_block
        state.indexed_time = time.time()
        metrics.INDEXED_BLOCK.labels(name).set(r.to_block)
        metrics.HEAD_BLOCK.labels(name).set(sync.head)
        metrics.LAG_BLOCKS.labels(name).set(max(0, sync.head - r.to_block))
        metrics.LOGS.labels(name).inc(r.logs)
        metrics.TRANSFERS.labels(name).inc(r.transfers)
        metrics.BATCH_SECONDS.labels(name).observe(r.seconds)
        if sync.last_block_time:
            metrics.LAG_SECONDS.labels(name).set(max(0.0, time.time() - sync.last_block_time))
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
    try:
        return await Daemon(settings).run()
    except IndexerError:
        raise
