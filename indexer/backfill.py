"""``indexer backfill``: run the pipeline (pipeline.catch_up) up to a target, then stop.

Chooses the target (the safe head, or ``--to-block``) and checks ``--from-block``; the steps,
their prefetch and retries are pipeline.py's. Resumable by construction: every step commits its
events with the cursor, so a killed backfill restarts from the cursor and a rerun over an
indexed range does nothing. Chains run concurrently. A Retryable that reaches a step is tried
again a few times (retry.py); a node whose head is below the database's cursor stops the
backfill at once (NodeBehind, exit 4).
"""

from __future__ import annotations

import asyncio
from typing import Any

from . import first_load, logconfig
from .chain import Chain
from .chain_writer import open_chain, writer
from .config import ChainConfig, Settings
from .errors import InputError
from .pipeline import catch_up_retrying
from .progress import Progress
from .store import Store
from .sync import StepResult

log = logconfig.get("backfill")


async def backfill(
    settings: Settings, chain: str | None = None, from_block: int | None = None, to_block: int | None = None,
) -> list[dict[str, Any]]:
    """Index every selected chain up to ``to_block`` (default: its safe head). Returns one
    summary per chain. Bounds that would skip history or lie outside the chain raise
    InputError (exit 2) before anything is written (see :func:`check_from_block`)."""
    if from_block is not None and to_block is not None and from_block > to_block:
        raise InputError(f"--from-block {from_block} is above --to-block {to_block}: nothing to index")
    chains = [settings.chain(chain)] if chain else list(settings.chains)
    # Each node is asked its id and head while the database opens (and, on a fresh database,
    # gets its schema: a few hundred ms); a remote node's round trips then cost no wall time.
    nodes = [asyncio.create_task(_node(cfg)) for cfg in chains]
    try:
        store = await Store.open(settings.database_url, role="backfill")
        try:
            await store.migrate()
            if from_block is not None:
                for cfg in chains:
                    await check_from_block(settings, cfg, store, from_block)
            first = await first_load.begin(store)
            try:
                return list(await asyncio.gather(*(
                    _backfill_chain(settings, cfg, store, from_block, to_block, node)
                    for cfg, node in zip(chains, nodes, strict=True))))
            finally:
                if first:  # also after a failure: what was committed gets its indexes and counts
                    await first_load.finish(store)
        finally:
            await store.close()
    finally:
        await _close_unused(nodes)


async def _node(cfg: ChainConfig) -> tuple[Chain, int, int]:
    """The chain's node opened (chain_writer.open_chain) and its head."""
    chain, chain_id = await open_chain(cfg)
    try:
        return chain, chain_id, await chain.head()
    except BaseException:
        await chain.rpc.close()
        raise


async def _close_unused(nodes: list[asyncio.Task[tuple[Chain, int, int]]]) -> None:
    """Nodes opened for chains whose backfill never took them (a failure before): closed."""
    for task in nodes:
        task.cancel()
    for task in nodes:
        try:
            chain, _, _ = await task
        except BaseException:  # cancelled, or its own failure, already reported or moot
            continue
        await chain.rpc.close()


async def check_from_block(settings: Settings, cfg: ChainConfig, store: Store, from_block: int) -> None:
    """``--from-block`` may only skip what nothing needs. Exact balances and supply need every
    move from a token's start, and tokens announced by a factory are found only by reading its
    NewToken events from the factory's start_block: so on a chain with nothing indexed yet,
    ``--from-block`` above the lowest configured start_block is refused, as is a token of the
    config not indexed yet whose start_block lies below it (its history would begin late)."""
    indexed = await store.fetch(
        "SELECT c.block_number FROM cursors c JOIN chains USING (chain_id) WHERE chains.name = $1", cfg.name)
    known = {r["token"] for r in await store.fetch(
        "SELECT t.token FROM tokens t JOIN chains USING (chain_id) WHERE chains.name = $1", cfg.name)}
    starts = [(f"factory {f.address}", f.start_block) for f in settings.factories if f.chain == cfg.name]
    starts += [(f"token {t.address}", t.start_block) for t in settings.tokens
               if t.chain == cfg.name and t.address not in known]
    if indexed:
        starts = [(what, start) for what, start in starts if what.startswith("token ")]
    skipped = [(what, start) for what, start in starts if start < from_block]
    if not skipped:
        return
    what, start = min(skipped, key=lambda item: item[1])
    state = "has nothing indexed yet (empty database)" if not indexed else "does not index it yet"
    raise InputError(f"--from-block {from_block}: chain {cfg.name} {state} and {what} starts at block "
                     f"{start}; starting later would skip its history (and a factory's NewToken events). "
                     f"Run backfill without --from-block, or raise start_block in the config")


async def _backfill_chain(
    settings: Settings, cfg: ChainConfig, store: Store, from_block: int | None, to_block: int | None,
    node: asyncio.Task[tuple[Chain, int, int]],
) -> dict[str, Any]:
    structlog_ctx = {"chain": cfg.name, "mode": "backfill"}
    chain, chain_id, head = await asyncio.shield(node)  # shielded: _close_unused closes it if taken
    async with writer(settings, cfg, store, from_block=from_block, node=(chain, chain_id)) as sync:
        cursor = await store.cursor(sync.chain_id)
        if cursor and from_block is not None and from_block > cursor.block_number + 1:
            raise InputError(f"chain {cfg.name} is indexed up to block {cursor.block_number}; "
                             f"--from-block {from_block} would leave a gap")
        safe = sync.target_at(head)
        if to_block is not None and to_block > sync.head:
            raise InputError(f"--to-block {to_block} is past the chain head {sync.head} of chain {cfg.name}")
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
            await catch_up_retrying(sync, target, show)
        await store.set_head(sync.chain_id, sync.head)  # indexer_progress: head and lag as last seen
        summary = progress.summary()
        summary["chain_id"] = sync.chain_id
        log.info("backfill_done", **structlog_ctx, **{k: v for k, v in summary.items() if k != "chain"})
        return summary
