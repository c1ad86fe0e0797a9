"""A first backfill into an empty database: what it leaves to its end, and that end.

Place: around the pipeline, in backfill.py (begin before the first step, finish after the last)
and in Store.migrate (every writer's start finishes a first load that was killed). Two kinds of
upkeep cost far more row by row than once at the end:

- the holder indexes of transfer_log, on random keys, and share_balances_rank (the ledger by
  size: with it, no update of a balance is HOT): dropped, then built by one sort each;
- per-day holder counts and ledger checkpoints (holder_days, holder_marks, holder_checkpoints):
  while table bulk_load has a row, batches skip them (batch_sql.in_bulk), and the end counts
  them once from transfer_log (batch_sql.finish_bulk; schema.sql holder_days_fill).

Both ends are safe at any time: a crash leaves the indexes to ``CREATE INDEX IF NOT EXISTS`` and
the row to the next start, and a batch that runs after the row is gone does its own upkeep.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import asyncpg

from . import logconfig
from .batch_sql import finish_bulk
from .schema import schema_sql

if TYPE_CHECKING:
    from .store import Store

log = logconfig.get("first_load")

# Indexes built once at the end: transfer_log's holder indexes, on random keys (its primary key,
# day index and BRIN stay: rows arrive nearly in their order), and the ledger's by size.
DEFERRED_INDEXES = ("transfer_log_from", "transfer_log_to", "share_balances_rank")
# Analyzed once the load is counted: what later batches look holders up in, by key.
ANALYZED = ("share_balances", "holder_marks", "holder_days", "holder_checkpoints", "checkpoint_shares")


def deferred_index_statements() -> list[str]:
    """The CREATE INDEX statements of DEFERRED_INDEXES, as schema.sql has them."""
    prefixes = tuple(f"CREATE INDEX IF NOT EXISTS {name} " for name in DEFERRED_INDEXES)
    return [line for line in schema_sql().splitlines() if line.startswith(prefixes)]


def deferred_by_table() -> dict[str, list[str]]:
    """DEFERRED_INDEXES by the table they index."""
    tables: dict[str, list[str]] = {}
    for statement in deferred_index_statements():  # CREATE INDEX IF NOT EXISTS <name> ON <table> (...)
        words = statement.split()
        tables.setdefault(words[7], []).append(words[5])
    return tables


async def begin(store: Store) -> bool:
    """On an empty transfer_log: drop the deferred indexes and mark the per-day counts pending,
    in one transaction. True when this is a first load (:func:`finish` must follow). A table that
    a reader holds open (an analyst's transaction) keeps its indexes: the load is slower, never
    stuck behind the reader."""
    async def run() -> bool:
        async with store.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM transfer_log)"):
                return False
            for table, names in deferred_by_table().items():
                try:
                    async with conn.transaction():
                        await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE NOWAIT")
                        await conn.execute("; ".join(f"DROP INDEX IF EXISTS {name}" for name in names))
                except asyncpg.LockNotAvailableError:
                    log.info("indexes_kept", table=table, indexes=names)
            await conn.execute("INSERT INTO bulk_load (started_at) SELECT now() "
                               "WHERE NOT EXISTS (SELECT 1 FROM bulk_load)")
            return True
    return await store.retry("first_load", run)


async def finish(store: Store) -> None:
    """Build the indexes that are missing (side by side, one connection each) and count what a
    first load left pending, then analyze what was counted; nothing when neither is left."""
    started = time.perf_counter()
    missing = [r["name"] for r in await store.fetch(
        "SELECT name FROM unnest($1::text[]) AS name WHERE to_regclass(name) IS NULL", list(DEFERRED_INDEXES))]
    # schema.sql is read only when an index is missing: every writer's start comes here
    statements = [s for s in deferred_index_statements() if s.split()[5] in missing] if missing else []

    async def build(statement: str) -> None:
        async with store.pool.acquire() as conn:
            await conn.execute("SET maintenance_work_mem = '256MB'")
            await conn.execute(statement)

    async def build_all() -> None:
        await asyncio.gather(*(build(statement) for statement in statements))
    if statements:
        await store.retry("build_indexes", build_all)
        log.info("indexes_built", indexes=missing, seconds=round(time.perf_counter() - started, 3))
    started = time.perf_counter()
    if not await store.fetch("SELECT 1 FROM bulk_load LIMIT 1"):  # a read first: a standby serves it
        return
    if await store.transact("finish_bulk", finish_bulk):
        await analyze(store)
        log.info("holder_days_counted", seconds=round(time.perf_counter() - started, 3))


async def analyze(store: Store) -> None:
    """Statistics of the loaded tables now, not at autovacuum's next pass: planned on a ledger
    without them, a batch's per-day upkeep after a first load read 0.25 s as 2.4 s."""
    await store.fetch(f"ANALYZE {', '.join(ANALYZED)}")
