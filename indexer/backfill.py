"""``indexer backfill``: loop the sync step over a range, then stop.

Resumable by construction: every step commits its events with the cursor, so a killed backfill
restarts from the cursor and a rerun over an indexed range does nothing. Chains run concurrently.
"""

from __future__ import annotations

import asyncio
from typing import Any

from . import logs
from .config import ChainConfig, Settings
from .errors import InputError
from .progress import Progress
from .session import writer
from .store import Store

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
        return list(await asyncio.gather(*(
            _backfill_chain(settings, cfg, store, from_block, to_block) for cfg in chains)))
    finally:
        await store.close()


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
            while (result := await sync.step(target)) is not None:
                if result.reorg_depth:
                    continue
                progress.update(result.to_block, result.logs, result.transfers)
        summary = progress.summary()
        summary["chain_id"] = sync.chain_id
        log.info("backfill_done", **structlog_ctx, **{k: v for k, v in summary.items() if k != "chain"})
        return summary
