"""``indexer backfill``: loop the sync step over a range, then stop.

Resumable by construction: every step commits its events with the cursor, so a killed backfill
restarts from the cursor and a rerun over an indexed range does nothing. Chains run concurrently.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from . import logs
from .config import ChainConfig, Settings
from .errors import InputError
from .progress import Progress
from .session import writer
from .store import Store
from .sync import ChainSync, Fetched, StepResult

log = logs.get("backfill")


async def backfill(
    settings: Settings, chain: str | None = None, from_block: int | None = None, to_block: int | None = None,
) -> list[dict[str, Any]]:
    """Index every selected chain up to ``to_block`` (default: its safe head). Returns one
    summary per chain."""
    chains = [settings.chain(chain)] if chain else list(settings.chains)
    store = await Store.open(settings.database_url, role="backfill")
    try:
        await store.migrate()
        deferred = await store.defer_holder_indexes()
        try:
            return list(await asyncio.gather(*(
                _backfill_chain(settings, cfg, store, from_block, to_block) for cfg in chains)))
        finally:
            if deferred:
                started = time.perf_counter()
                await store.build_holder_indexes()
                log.info("holder_indexes_built", seconds=round(time.perf_counter() - started, 3))
    finally:
        await store.close()


async def catch_up(sync: ChainSync, target: int, on_step: Callable[[StepResult], None],
                   stop: Callable[[], bool] = lambda: False, ahead: int = 2) -> int:
    """Index up to ``target``; returns the number of steps taken (0: nothing to do).

    Below the reorg-reachable tail (``head - max_reorg_depth``) the next ``ahead`` ranges are
    fetched while the current one is decoded and committed, so the node and PostgreSQL work at
    the same time as we do. Near the head, after a reorg, or while late tokens catch up, it
    falls back to plain steps, which check every parent hash as they go."""
    steps = 0
    while not stop():
        cursor = sync.cursor = await sync.store.cursor(sync.chain_id)
        base = cursor.block_number if cursor else sync.first_block - 1
        safe_end = min(target, sync.head - sync.cfg.max_reorg_depth)
        if safe_end - base < 2 or sync.has_late_tokens(base):
            result = await sync.step(target)
            if result is None:
                return steps
            steps += 1
            on_step(result)
            continue
        steps += await _pipeline(sync, base + 1, safe_end, on_step, stop, ahead)
    return steps


async def _pipeline(sync: ChainSync, start: int, end: int, on_step: Callable[[StepResult], None],
                    stop: Callable[[], bool], ahead: int) -> int:
    queue: deque[asyncio.Task[Fetched]] = deque()
    steps, next_start = 0, start
    sync.overlap = True
    try:
        while (queue or next_start <= end) and not stop():
            while len(queue) < ahead and next_start <= end:
                s, e = sync.plan(next_start, end)
                queue.append(asyncio.create_task(sync.fetch(s, e)))
                next_start = e + 1
            result = await sync.apply(await queue.popleft())
            steps += 1
            on_step(result)
            if result.reorg_depth:
                break
        await sync.flush()
    except BaseException:
        await asyncio.gather(sync.flush(), return_exceptions=True)
        await sync.reload()
        raise
    finally:
        sync.overlap = False
        for task in queue:
            task.cancel()
        await asyncio.gather(*queue, return_exceptions=True)
    return steps


async def _backfill_chain(
    settings: Settings, cfg: ChainConfig, store: Store, from_block: int | None, to_block: int | None,
) -> dict[str, Any]:
    structlog_ctx = {"chain": cfg.name, "mode": "backfill"}
    async with writer(settings, cfg, store, from_block=from_block) as sync:
        cursor = await store.cursor(sync.chain_id)
        if cursor and from_block is not None and from_block > cursor.block_number + 1:
            raise InputError(f"chain {cfg.name} is indexed up to block {cursor.block_number}; "
                             f"--from-block {from_block} would leave a gap")
        safe = await sync.target()
        target = safe if to_block is None else min(to_block, safe)
        if to_block is not None and to_block > safe:
            log.warning("target_capped", **structlog_ctx, requested=to_block, safe_head=safe)
        first = cursor.block_number + 1 if cursor else sync.first_block
        log.info("backfill_start", **structlog_ctx, chain_id=sync.chain_id, from_block=first, to_block=target,
                 tokens=len(sync.tokens))
        with Progress(cfg.name, first, target) as progress:
            def show(result: StepResult) -> None:
                if not result.reorg_depth:
                    progress.update(result.to_block, result.logs, result.transfers)
            await catch_up(sync, target, show)
        summary = progress.summary()
        summary["chain_id"] = sync.chain_id
        log.info("backfill_done", **structlog_ctx, **{k: v for k, v in summary.items() if k != "chain"})
        return summary
