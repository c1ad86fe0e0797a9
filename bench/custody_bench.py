"""Custody at volume: `python -m bench.custody_bench` (also `python -m bench custody`).

1. database  `--transfers` synthetic transfers (bench/analyst_bench.py's loader: 5 xStocks on
             two chains over a year, with mints, burns, splits and daily custody records) in
             the database xstock_custody_bench on $DATABASE_URL's server (else the local
             PostgreSQL; `--database`: another name, such as the analyst benchmark's, which
             `python -m bench all` reuses); `--reuse` keeps one already loaded with as many
             transfers (the custody records of an earlier run of this benchmark are removed
             first; `--forget-after` removes this run's too, leaving the database as loaded).
2. chain     a fresh anvil with our xStocks (same underlyings: TSLA, AAPL, NVDA, SPY), indexed
             into the same database by `indexer backfill`.
3. import    a CSV of `--records` custody records (bench/custody_feed.py: 50 accounts of the 5
             underlyings, one record each every 15 minutes up to an hour ago) through
             `indexer custody import`: seconds and peak RSS of the command, and its phases.
4. re-import the same file again: recognised by its hash.
5. status, reconcile   `indexer status` and `indexer reconcile` on that database, twice each.
6. live      `indexer run` following anvil (one block of `--live-moves` transfers every
             `--live-interval` s): block mined -> cursor committed, the reconcile after each step
             included (bench/live.py), p50/p99.

Results: a table on stdout and bench/results/custody-<date>.json (`--out`: another folder, or a
file ending in .json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from devnet import Anvil, Simulator
from devnet.deploy import deploy_world
from indexer.config import load_settings
from indexer.custody import reconcile
from indexer.store import Store, schema_sql

from . import analyst_bench, live
from .custody_feed import write_feed
from .env import GAS_LIMIT
from .runner import Finished, IndexerProcess

DATABASE = "xstock_custody_bench"
RESULTS_DIR = analyst_bench.RESULTS_DIR
TIMEOUT = 1800.0


async def prepare(url: str, transfers: int, reuse: bool, database: str = DATABASE) -> dict[str, Any] | None:
    """The loaded database; returns the load timings (None when reused)."""
    admin = await asyncpg.connect(url)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if exists and reuse:
            conn = await asyncpg.connect(analyst_bench.with_database(url, database))
            try:
                if await conn.fetchval("SELECT count(*) FROM transfer_log WHERE chain_id <> $1",
                                       analyst_bench.LOCAL_CHAIN) == transfers:
                    await forget_earlier_runs(conn)
                    return None
            finally:
                await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(analyst_bench.with_database(url, database))
    try:
        await conn.execute(schema_sql())
        return await analyst_bench.load(conn, transfers)
    finally:
        await conn.close()


# Deleted from first, whose triggers keep other tables (holder_counts, small_holdings), and last,
# in this order: what refers to a token or a chain goes before it.
FIRST = ("transfer_log", "share_balances")
PARENTS = ("token_kinds", "tokens", "cursors", "chains")


async def forget_earlier_runs(conn: asyncpg.Connection) -> None:
    """Drop what an earlier run added: the anvil chain (its rows in every table keyed by chain)
    and the benchmark's custody records; the analyst loader's flag stays."""
    await conn.execute(schema_sql())
    tables = {r["table_name"] for r in await conn.fetch(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'chain_id' "
        "AND table_name IN (SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE')")}
    ordered = [*FIRST, *sorted(tables - set(FIRST) - set(PARENTS)), *PARENTS]
    for table in (t for t in ordered if t in tables):
        await conn.execute(f"DELETE FROM {table} WHERE chain_id = $1", analyst_bench.LOCAL_CHAIN)
    await conn.execute("DELETE FROM custody_attestations WHERE account LIKE 'bench-account-%'")
    await conn.execute("DELETE FROM custody_imports i WHERE NOT EXISTS "
                       "(SELECT 1 FROM custody_attestations a WHERE a.payload_sha256 = i.payload_sha256)")
    await conn.execute("DELETE FROM custody_accounts WHERE account LIKE 'bench-account-%'")
    await conn.execute("DELETE FROM custody_coverage; DELETE FROM backing_flags")
    await conn.execute(analyst_bench.restore_flags_sql())
    await conn.execute("VACUUM ANALYZE custody_attestations")


def command(config: Path, workdir: Path, *args: str, name: str) -> Finished:
    return IndexerProcess(config, *args, workdir=workdir, name=name).start().wait(TIMEOUT).check(0)


def summary(done: Finished) -> dict[str, Any]:
    return {"seconds": round(done.seconds, 2), "peak_rss_mb": round(done.peak_rss_bytes / 2**20, 1),
            "cpu_s": round(done.cpu_s, 2)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url = analyst_bench.admin_url(args.database_url)
    db = analyst_bench.with_database(url, args.database)
    result: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                              "transfers": args.transfers, "records": args.records, "database_name": args.database,
                              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                          "load_avg_at_start": os.getloadavg()}}
    print(f"database: {args.transfers:,} transfers in {args.database}", flush=True)
    result["load"] = await prepare(url, args.transfers, args.reuse, args.database)
    workdir = Path(tempfile.mkdtemp(prefix="xstock-custody-bench-"))
    anvil = Anvil(gas_limit=GAS_LIMIT, no_mining=True).start()
    try:
        world = deploy_world(anvil.url)
        config = world.write_toml(workdir / "indexer.toml", db)
        command(config, workdir, "backfill", name="backfill")
        feed = write_feed(workdir / "custody-feed.csv", args.records)
        result["feed_mb"] = round(feed.stat().st_size / 2**20, 1)
        print(f"import: {args.records:,} records, {result['feed_mb']} MB", flush=True)
        done = command(config, workdir, "custody", "import", str(feed), name="import")
        result["import"] = {**summary(done), "phases": done.event("custody_load")}
        print(f"  {result['import']}", flush=True)
        result["reimport"] = summary(command(config, workdir, "custody", "import", str(feed), name="reimport"))
        print(f"re-import: {result['reimport']}", flush=True)
        for verb in ("status", "reconcile", "migrate"):
            result[verb] = [summary(command(config, workdir, verb, name=f"{verb}-{i}")) for i in (1, 2)]
            print(f"{verb}: {result[verb]}", flush=True)
        result["answers"] = await answers(config)
        print(f"answers without migrate: {result['answers']}", flush=True)
        result["database"] = await counts(db)
        if args.live_blocks:
            sim = Simulator(world, seed=7, n_holders=50)
            sim.setup()
            print(f"live: {args.live_blocks} blocks, one every {args.live_interval}s", flush=True)
            result["live"] = await live.measure(config, db, live.Miner(sim, args.live_moves), mode="http",
                                                blocks=args.live_blocks, interval=args.live_interval,
                                                workdir=workdir)
            print(f"  p50 {result['live']['p50_ms']} ms, p99 {result['live']['p99_ms']} ms", flush=True)
    finally:
        anvil.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if args.forget_after:
            await forget(db)
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    return result


async def forget(db: str) -> None:
    conn = await asyncpg.connect(db)
    try:
        await forget_earlier_runs(conn)
    finally:
        await conn.close()


async def answers(config: Path, repeat: int = 5) -> dict[str, float]:
    """Median seconds of what `reconcile` and `status` compute, without their migrate: one
    evaluation of the rules (the daemon's per-step hook) and the backing report."""
    settings = load_settings(str(config), env={})
    store = await Store.open(settings.database_url, role="bench")
    timings: dict[str, list[float]] = {"evaluate_s": [], "backing_report_s": []}
    try:
        for _ in range(repeat):
            started = time.perf_counter()
            await reconcile.evaluate(store, settings)
            middle = time.perf_counter()
            await reconcile.backing_report(store)
            timings["evaluate_s"].append(middle - started)
            timings["backing_report_s"].append(time.perf_counter() - middle)
    finally:
        await store.close()
    return {k: round(statistics.median(v), 3) for k, v in timings.items()}


async def counts(db: str) -> dict[str, int]:
    conn = await asyncpg.connect(db)
    try:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}")
                for t in ("transfer_log", "custody_attestations", "custody_accounts")}
    finally:
        await conn.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.custody_bench", description=__doc__.split("\n")[0])
    p.add_argument("--transfers", type=int, default=10_000_000, help="synthetic transfers (default 10M)")
    p.add_argument("--records", type=int, default=1_500_000, help="custody records imported (default 1.5M)")
    p.add_argument("--database", default=DATABASE, help=f"the database (default {DATABASE})")
    p.add_argument("--reuse", action="store_true", help="keep a database already loaded with --transfers")
    p.add_argument("--forget-after", action="store_true",
                   help="remove this run's chain and custody records afterwards (the database is another's)")
    p.add_argument("--database-url", help="an admin URL of the server (default $DATABASE_URL, else local)")
    p.add_argument("--live-blocks", type=int, default=60, help="measured live blocks (0: no live phase)")
    p.add_argument("--live-interval", type=float, default=0.5, metavar="S", help="seconds between live blocks")
    p.add_argument("--live-moves", type=int, default=20, help="transfers per live block")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder of the JSON result, or its path (*.json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    result = asyncio.run(run(args))
    result["seconds"] = round(time.monotonic() - started, 1)
    path = args.out if args.out.suffix == ".json" else args.out / f"custody-{result['started_at'][:10]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
