"""The analyst surface at scale: every query of docs/queries.md against 10 million transfers.

    python -m bench.analyst_bench [--rows 10000000] [--database-url URL] [--database NAME] [--reuse]

1. load    a database (default: xstock_analyst_bench on $DATABASE_URL's server, else the local
           PostgreSQL at 127.0.0.1:5432) gets schema.sql, then synthetic data generated inside
           PostgreSQL: `--rows` transfers of 5 xStocks on Ethereum (85%) and Arbitrum (15%) over
           one year, ~100k holders with a skewed activity, 2% mints, 1.5% redemptions (a transfer
           to the burner) and 1.5% burns; the share
           ledger, token counters, multiplier changes (a silent 2:1 split, fee decay), daily
           custody records and cursors to match. transfer_log's secondary indexes are built
           after the load, as a first backfill does. `--reuse` keeps a database already loaded
           with the same number of rows (the custody benchmark's anvil chain, 31337, which
           `python -m bench all` indexes into this database afterwards, not counted).
2. queries every ```sql block of docs/queries.md, twice, under EXPLAIN (ANALYZE, BUFFERS): the
           time of each run, the scans of transfer_log in the plan, and whether any of them is
           a sequential scan.
   flat    holder_history, holders_at in the middle of the history and top holders, each
           against its target (500, 500 and 100 ms): what must not grow with the database.
3. copy    the write cost of the indexes: COPY of `--copy-rows` rows (the indexer's own COPY
           text format) into a transfer_log that already holds 1M rows, with the primary key
           only, with each extra index, and with all of them.

Results: a table on stdout and bench/results/analyst-<date>.json (`--out`: another folder, or a
file ending in .json).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import platform
import re
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from indexer.store import TRANSFER_COLUMNS, schema_sql

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
DOCS = REPO_ROOT / "docs" / "queries.md"
DATABASE = "xstock_analyst_bench"
LOCAL_CHAIN = 31337  # anvil's: the custody benchmark's chain, indexed into this database by `bench all`
SECONDARY = ("transfer_log_from", "transfer_log_to", "transfer_log_day", "transfer_log_time_brin")

# Five xStocks (their addresses from the issuer's list, the same on every chain) and their share of the moves.
TOKENS = (("TSLAx", "TSLA", "0x8ad3c73f833d3f9a523ab01476625f269aeb7cf0", 0.30),
          ("NVDAx", "NVDA", "0xc845b2894dbddd03858fd2d643b4ef725fe0849d", 0.25),
          ("AAPLx", "AAPL", "0x9d275685dc284c8eb1c79f6aba7a63dc75ec890a", 0.20),
          ("SPYx", "SPY", "0x90a2a4c76b5d8c0bc892a69ea28aa775a8f2dd48", 0.15),
          ("METAx", "META", "0x96702be57cd9777f835117a809c7124fe4ec989a", 0.10))
CHAINS = ((1, "ethereum", 20_000_000, 12.0), (42161, "arbitrum", 250_000_000, 0.25))  # id, name, first block, s/block
YEAR_START = "2025-01-01 00:00:00+00"
ZERO = "0x" + "00" * 20
BURNER = "0x5eed0000000000000000000000000000000b0a2e"  # receives redemptions (1.5% of moves), burns them
SECONDS = 365 * 86_400


def _token_case(column: str) -> str:
    """SQL choosing a token address from a uniform random `column` by the weights above."""
    parts, edge = [], 0.0
    for _, _, address, weight in TOKENS[:-1]:
        edge += weight
        parts.append(f"WHEN {column} < {edge:.2f} THEN '{address}'")
    return f"CASE {' '.join(parts)} ELSE '{TOKENS[-1][2]}' END"


def transfers_sql(rows: int, first: int = 1, total: int | None = None) -> str:
    """Rows first..first+rows-1 of a synthetic year of `total` rows (default: first+rows-1) as a
    SELECT with transfer_log's columns, in block order."""
    total = total or first + rows - 1
    eth, arb = CHAINS
    return f"""
    SELECT chain_id, token, first_block + floor(at / spb)::bigint AS block_number,
           '{YEAR_START}'::timestamptz + floor(floor(at / spb) * spb) * interval '1 second' AS block_time,
           '0x' || md5(i::text) || md5((i * 7919)::text) AS tx_hash, (i % 1000000)::integer AS log_index,
           CASE WHEN rk < 0.02 THEN '{ZERO}' WHEN rk < 0.035 THEN '{BURNER}' ELSE a1 END AS from_address,
           CASE WHEN rk < 0.02 THEN a1 WHEN rk < 0.035 THEN '{ZERO}' WHEN rk < 0.05 THEN '{BURNER}'
                ELSE a2 END AS to_address,
           amount AS amount_raw, amount AS shares,
           CASE WHEN rk < 0.02 THEN 'mint' WHEN rk < 0.035 THEN 'burn' ELSE 'transfer' END AS kind
      FROM (SELECT i, (i - 1)::float8 * {SECONDS} / {total} AS at,
                   CASE WHEN rc < 0.85 THEN {eth[0]} ELSE {arb[0]} END AS chain_id,
                   CASE WHEN rc < 0.85 THEN {eth[2]} ELSE {arb[2]} END AS first_block,
                   CASE WHEN rc < 0.85 THEN {eth[3]} ELSE {arb[3]} END AS spb,
                   {_token_case('rt')} AS token, rk,
                   '0x' || left(md5('holder' || floor(100000 * rh1 ^ 2)) || md5('h' || floor(100000 * rh1 ^ 2)), 40)
                       AS a1,
                   '0x' || left(md5('holder' || floor(100000 * rh2 ^ 2)) || md5('h' || floor(100000 * rh2 ^ 2)), 40)
                       AS a2,
                   CASE WHEN rk < 0.02 THEN floor(1e20 + ra * 1e22) ELSE floor(ra * 1e20) END::numeric(78,0) AS amount
              FROM (SELECT i, random() AS rc, random() AS rt, random() AS rk, random() AS rh1, random() AS rh2,
                           random() AS ra
                      FROM generate_series({first}::bigint, {first + rows - 1}) AS i) r) g"""


def derived_sql() -> list[str]:
    """Everything the indexer would have written beside transfer_log, derived from it."""
    tokens = ", ".join(f"('{s}', '{u}', '{a}')" for s, u, a, _ in TOKENS)
    chains = ", ".join(f"({c}, '{n}')" for c, n, _, _ in CHAINS)
    return [
        f"INSERT INTO chains (chain_id, name) VALUES {chains}",
        """INSERT INTO share_balances (chain_id, token, holder, shares, updated_block)
           SELECT l.chain_id, l.token, a.holder, sum(a.delta), max(l.block_number)
             FROM transfer_log l
            CROSS JOIN LATERAL (VALUES (l.to_address, l.shares), (l.from_address, -l.shares)) AS a(holder, delta)
            WHERE a.holder <> '0x0000000000000000000000000000000000000000'
            GROUP BY l.chain_id, l.token, a.holder""",
        f"""INSERT INTO tokens (chain_id, token, symbol, name, underlying, decimals, kind, source, start_block,
                                synced_block, total_shares, minted_raw, burned_raw, mint_count, burn_count,
                                transfer_count)
            SELECT c.chain_id, x.address, x.symbol, x.symbol || ' xStock', x.underlying, 18, 'xstock', 'factory:bench',
                   c.first_block, c.last_block, coalesce(s.minted - s.burned, 0), coalesce(s.minted, 0),
                   coalesce(s.burned, 0), coalesce(s.mints, 0), coalesce(s.burns, 0), coalesce(s.moves, 0)
              FROM (VALUES {tokens}) AS x(symbol, underlying, address)
             CROSS JOIN (SELECT chain_id, min(block_number) AS first_block, max(block_number) AS last_block
                           FROM transfer_log GROUP BY chain_id) c
              LEFT JOIN (SELECT chain_id, token, sum(shares) FILTER (WHERE kind = 'mint') AS minted,
                                sum(shares) FILTER (WHERE kind = 'burn') AS burned,
                                count(*) FILTER (WHERE kind = 'mint') AS mints,
                                count(*) FILTER (WHERE kind = 'burn') AS burns,
                                count(*) FILTER (WHERE kind = 'transfer') AS moves
                           FROM transfer_log GROUP BY chain_id, token) s
                ON s.chain_id = c.chain_id AND s.token = x.address""",
        # TSLAx: a 2:1 split on 2025-06-16 that activated silently (announced a day earlier);
        # SPYx: a management fee that lowers the multiplier at every month's start.
        """INSERT INTO multiplier_changes (chain_id, token, block_number, block_time, multiplier, source)
           SELECT t.chain_id, t.token, b.block_number, b.block_time, m.multiplier, m.source
             FROM tokens t
            CROSS JOIN LATERAL (VALUES
                  ('TSLAx', timestamptz '2025-06-16 13:30:00+00', 2000000000000000000::numeric, 'observed'),
                  ('SPYx', timestamptz '2025-03-01 00:00:00+00', 999000000000000000, 'observed'),
                  ('SPYx', timestamptz '2025-06-01 00:00:00+00', 998001000000000000, 'event'),
                  ('SPYx', timestamptz '2025-09-01 00:00:00+00', 997002999000000000, 'observed'))
                  AS m(symbol, at, multiplier, source)
            CROSS JOIN LATERAL (SELECT l.block_number, l.block_time FROM transfer_log l
                                 WHERE l.chain_id = t.chain_id AND l.block_time >= m.at
                                 ORDER BY l.block_time, l.block_number LIMIT 1) b
            WHERE t.symbol = m.symbol""",
        """UPDATE tokens t SET multiplier = multiplier_at(t.chain_id, t.token, t.synced_block)""",
        """INSERT INTO token_events (chain_id, token, block_number, block_time, tx_hash, log_index, event, args)
           SELECT m.chain_id, m.token, m.block_number - 7200, m.block_time - interval '1 day', '0x' || md5('sched'),
                  100000 + m.block_number % 1000, 'MultiplierScheduled',
                  jsonb_build_object('newMultiplier', m.multiplier::text,
                                     'activationTime', extract(epoch FROM m.block_time)::bigint::text)
             FROM multiplier_changes m JOIN tokens t USING (chain_id, token) WHERE t.symbol = 'TSLAx'""",
        f"""INSERT INTO token_events (chain_id, token, block_number, block_time, tx_hash, log_index, event, args)
            SELECT t.chain_id, t.token, t.start_block, b.block_time, '0x' || md5('burner' || t.token),
                   200000 + row_number() OVER (PARTITION BY t.chain_id ORDER BY t.token),
                   'NewBurner', jsonb_build_object('burner', '{BURNER}')
              FROM tokens t
             CROSS JOIN LATERAL (SELECT min(l.block_time) AS block_time FROM transfer_log l
                                  WHERE l.chain_id = t.chain_id AND l.block_number = t.start_block) b""",
        """INSERT INTO cursors (chain_id, block_number, block_hash, block_time, head_number, head_seen_at)
           SELECT chain_id, max(block_number), '0x' || md5(chain_id::text) || md5('head'), max(block_time),
                  max(block_number) + 3, now()
             FROM transfer_log GROUP BY chain_id""",
        """INSERT INTO custody_imports (payload_sha256, source, format, records)
           VALUES (md5('bench') || md5('custody'), 'csv:bench', 'csv', 1825)""",
        # One record a day per underlying: its supply at the end of that day (mints less burns,
        # multiplier applied), NVDA 2% short for a week in May.
        """INSERT INTO custody_attestations (underlying, custodian, account, settled_shares, in_transit_shares, as_of,
                                             attestor, source, payload_sha256)
           SELECT s.underlying, 'Clearstream', 'acc-1',
                  -- never below zero: a small load (a test's) can burn before it mints
                  greatest(0, trim_scale(sum(s.supply) * CASE WHEN s.underlying = 'NVDA'
                                                               AND s.day BETWEEN '2025-05-10' AND '2025-05-17'
                                                              THEN 0.98 ELSE 1 END)),
                  0, (s.day + 1)::timestamp AT TIME ZONE 'UTC', 'The Network Firm', 'csv:bench',
                  md5('bench') || md5('custody')
             FROM (SELECT t.underlying, x.day,
                          to_units(apply_multiplier(
                                       sum(x.net) OVER (PARTITION BY x.chain_id, x.token ORDER BY x.day),
                                       multiplier_at_time(x.chain_id, x.token,
                                                          (x.day + 1)::timestamp AT TIME ZONE 'UTC')),
                                   18) AS supply
                     FROM (SELECT chain_id, token, (block_time AT TIME ZONE 'UTC')::date AS day,
                                  sum(CASE kind WHEN 'mint' THEN shares ELSE -shares END) AS net
                             FROM transfer_log WHERE kind <> 'transfer' GROUP BY 1, 2, 3) x
                     JOIN tokens t USING (chain_id, token)) s
            GROUP BY s.underlying, s.day""",
        f"{FLAG_INSERT} VALUES ({FLAG_ROW})",
    ]


FLAG_INSERT = ("INSERT INTO backing_flags (underlying, rule, severity, opened_at, opened_block, closed_at, "
               "closed_block, shortfall, details)")
FLAG_ROW = ("'NVDA', 'unbacked_supply', 'critical', '2025-05-10', 20932000, '2025-05-18', 20937760, 1234.5, "
            "'{\"ratio\": \"0.98\"}'")


def restore_flags_sql() -> str:
    """derived_sql's backing_flags row again when it is gone (the custody benchmark clears the
    flags of a database it reuses)."""
    return (f"{FLAG_INSERT} SELECT {FLAG_ROW} WHERE NOT EXISTS (SELECT 1 FROM backing_flags "
            "WHERE underlying = 'NVDA' AND opened_block = 20932000)")


# --------------------------------------------------------------------------------------- load


async def load(conn: asyncpg.Connection, rows: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    await conn.execute("SET maintenance_work_mem = '512MB'; SET work_mem = '256MB'")
    for name in SECONDARY:
        await conn.execute(f"DROP INDEX IF EXISTS {name}")
    await conn.execute("SELECT setseed(0.42)")
    start = time.monotonic()
    for first in range(1, rows + 1, 1_000_000):  # in slices: progress, and no 10M-row sort
        await conn.execute(f"INSERT INTO transfer_log {transfers_sql(min(1_000_000, rows - first + 1), first, rows)}")
        print(f"  loaded {min(first + 999_999, rows):,} transfers ({time.monotonic() - start:.0f} s)", flush=True)
    out["insert_s"] = round(time.monotonic() - start, 1)
    out["index_build_s"] = {}
    for statement in index_statements():
        name = statement.split()[5]
        t0 = time.monotonic()
        await conn.execute(statement)
        out["index_build_s"][name] = round(time.monotonic() - t0, 1)
        print(f"  built {name} in {out['index_build_s'][name]} s", flush=True)
    t0 = time.monotonic()
    for statement in derived_sql():
        await conn.execute(statement)
    out["derived_s"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    await conn.execute(schema_sql())  # fills holder_days and the checkpoints, as an upgrade does
    out["history_fill_s"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    await conn.execute("VACUUM (ANALYZE)")
    out["vacuum_analyze_s"] = round(time.monotonic() - t0, 1)
    await conn.execute("RESET work_mem; RESET maintenance_work_mem")  # the queries run with the server's settings
    return out


def index_statements() -> list[str]:
    """schema.sql's CREATE INDEX lines for transfer_log's secondary indexes."""
    return [line for line in schema_sql().splitlines()
            if line.startswith("CREATE INDEX IF NOT EXISTS ") and line.split()[5] in SECONDARY]


async def sizes(conn: asyncpg.Connection) -> dict[str, str]:
    names = ["transfer_log", "transfer_log_pkey", *SECONDARY, "share_balances"]
    rows = await conn.fetch("SELECT relname, pg_size_pretty(pg_relation_size(oid)) AS size FROM pg_class "
                            "WHERE relname = ANY($1::text[])", names)
    return {r["relname"]: r["size"] for r in rows}


# ------------------------------------------------------------------------------------ queries


def synthetic_holder(n: int) -> str:
    """The address of holder number `n` of the synthetic year (as transfers_sql derives it)."""
    return "0x" + (hashlib.md5(f"holder{n}".encode()).hexdigest() + hashlib.md5(f"h{n}".encode()).hexdigest())[:40]


# docs/queries.md names an address of its scenario; here it becomes an ordinary synthetic holder
# (about 250 TSLAx moves a year on Ethereum).
ADDRESSES = {"0xee1b7f9d8e27b23eca9f61c87304b2b4ccf3b3e4": synthetic_holder(1000)}


def docs_queries(path: Path = DOCS) -> list[tuple[str, str]]:
    """(heading, sql) for every ```sql block of the docs, under the nearest ## heading."""
    out, heading = [], ""
    for block in re.split(r"(^## .*$)", path.read_text(), flags=re.MULTILINE):
        if block.startswith("## "):
            heading = block[3:].strip()
            continue
        for sql in re.findall(r"```sql\n(.*?)```", block, flags=re.DOTALL):
            for scenario, synthetic in ADDRESSES.items():
                sql = sql.replace(scenario, synthetic)
            out.append((heading, sql.strip()))
    return out


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def describe(plan: dict[str, Any], seq_scans: int, index_scans: int) -> dict[str, Any]:
    """How the query read transfer_log: the scan nodes of its plan (functions hide theirs), and
    the scans this transaction counted on the table, functions included."""
    scans = [f"{n['Node Type']}" + (f" using {n['Index Name']}" if "Index Name" in n else "")
             for n in plan_nodes(plan) if n.get("Relation Name") == "transfer_log"
             or n.get("Index Name", "").startswith("transfer_log")]
    functions = sorted({n["Function Name"] for n in plan_nodes(plan) if n.get("Node Type") == "Function Scan"
                        and n.get("Function Name") not in ("generate_series", "unnest")})
    return {"transfer_log_scans": sorted(set(scans)), "functions": functions,
            "transfer_log_seq_scans": seq_scans, "transfer_log_index_scans": index_scans,
            "seq_scan_transfer_log": seq_scans > 0 or any(s.startswith("Seq Scan") for s in scans)}


SCAN_COUNTS = "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relname = 'transfer_log'"


async def explain(conn: asyncpg.Connection, sql: str) -> tuple[dict[str, Any], int, int]:
    """EXPLAIN ANALYZE in a transaction of its own, with the scans it made of transfer_log."""
    async with conn.transaction():
        before = await conn.fetchrow(SCAN_COUNTS)
        (row,) = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql.rstrip().rstrip(';')}")
        after = await conn.fetchrow(SCAN_COUNTS)
    doc = json.loads(row[0])[0]
    return doc, after["seq_scan"] - before["seq_scan"], (after["idx_scan"] or 0) - (before["idx_scan"] or 0)


async def run_queries(conn: asyncpg.Connection, queries: list[tuple[str, str]]) -> list[dict[str, Any]]:
    out = []
    for title, sql in queries:
        first, _, _ = await explain(conn, sql)  # the first run also warms the cache
        doc, seq_scans, index_scans = await explain(conn, sql)
        out.append({"question": title, "first_ms": round(first["Execution Time"], 1),
                    "ms": round(doc["Execution Time"], 1), "planning_ms": round(doc["Planning Time"], 1),
                    "rows": doc["Plan"].get("Actual Rows"), **describe(doc["Plan"], seq_scans, index_scans)})
        print(f"  {out[-1]['ms']:>9.1f} ms  {title}", flush=True)
    return out


# ---------------------------------------------------------------------------------- flat cost

# (name, target ms, SQL): what must not grow with the database. {mid} is the middle block of
# TSLAx's history on Ethereum, the farthest from both the start and the current ledger.
FLAT = (
    ("holder_history (TSLAx, every day)", 500.0, "SELECT * FROM holder_history WHERE symbol = 'TSLAx'"),
    ("holders_at mid-history (TSLAx, Ethereum)", 500.0,
     "SELECT * FROM holders_at(1, '0x8ad3c73f833d3f9a523ab01476625f269aeb7cf0', {mid})"),
    ("top holders (TSLAx, rank <= 20)", 100.0,
     "SELECT chain_id, rank, holder, balance FROM top_holders WHERE symbol = 'TSLAx' AND rank <= 20 "
     "ORDER BY chain_id, rank, holder"),
)


async def flat_cost(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    mid = await conn.fetchval("SELECT (start_block + synced_block) / 2 FROM tokens WHERE chain_id = 1 "
                              "AND token = '0x8ad3c73f833d3f9a523ab01476625f269aeb7cf0'")
    out = []
    for name, target, sql in FLAT:
        first, _, _ = await explain(conn, sql.format(mid=mid))
        doc, _, _ = await explain(conn, sql.format(mid=mid))
        ms = round(doc["Execution Time"], 1)
        out.append({"question": name, "target_ms": target, "ms": ms, "first_ms": round(first["Execution Time"], 1),
                    "rows": doc["Plan"].get("Actual Rows"), "met": ms <= target})
        print(f"  {ms:>9.1f} ms  (target {target:.0f})  {name}", flush=True)
    return out


# --------------------------------------------------------------------------------------- copy


COPY_SETUPS = {
    "primary key only": (),
    "+ transfer_log_day": ("transfer_log_day",),
    "+ transfer_log_time_brin": ("transfer_log_time_brin",),
    "+ holder indexes (from, to)": ("transfer_log_from", "transfer_log_to"),
    "+ holder indexes + day + brin": SECONDARY,
}


async def copy_cost(conn: asyncpg.Connection, rows: int, repeat: int = 3) -> dict[str, Any]:
    """Median seconds to COPY `rows` new rows into a 1M-row transfer_log per index setup."""
    base = 1_000_000
    await conn.execute("DROP SCHEMA IF EXISTS copycost CASCADE; CREATE SCHEMA copycost")
    await conn.execute("CREATE TABLE copycost.seed AS SELECT * FROM transfer_log LIMIT 0")
    await conn.execute("SELECT setseed(0.7)")
    await conn.execute(f"INSERT INTO copycost.seed {transfers_sql(base + rows)}")
    payload = await _copy_payload(conn, base, rows)
    statements = {s.split()[5]: s for s in index_statements()}
    out: dict[str, Any] = {"base_rows": base, "copy_rows": rows, "seconds": {}}
    for label, indexes in COPY_SETUPS.items():
        times = []
        for _ in range(repeat):
            await conn.execute(
                "DROP TABLE IF EXISTS copycost.transfer_log; "
                "CREATE TABLE copycost.transfer_log (LIKE public.transfer_log INCLUDING ALL EXCLUDING INDEXES); "
                "ALTER TABLE copycost.transfer_log ADD PRIMARY KEY (chain_id, token, block_number, log_index)")
            await conn.execute("INSERT INTO copycost.transfer_log "
                               f"SELECT * FROM copycost.seed ORDER BY block_time LIMIT {base}")
            for name in indexes:
                await conn.execute(statements[name].replace(" ON transfer_log ", " ON copycost.transfer_log "))
            await conn.execute("CHECKPOINT")
            t0 = time.monotonic()
            await conn.copy_to_table("transfer_log", schema_name="copycost", source=io.BytesIO(payload),
                                     columns=TRANSFER_COLUMNS, format="text")
            times.append(time.monotonic() - t0)
        out["seconds"][label] = round(statistics.median(times), 3)
        print(f"  COPY {rows:,} rows, {label}: {out['seconds'][label]} s", flush=True)
    await conn.execute("DROP SCHEMA copycost CASCADE")
    return out


async def _copy_payload(conn: asyncpg.Connection, base: int, rows: int) -> bytes:
    buffer = io.BytesIO()
    await conn.copy_from_query(f"SELECT {', '.join(TRANSFER_COLUMNS)} FROM copycost.seed ORDER BY block_time "
                               f"OFFSET {base} LIMIT {rows}", output=buffer, format="text")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------- run


def admin_url(given: str | None) -> str:
    return given or os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


async def prepare(url: str, rows: int, reuse: bool,
                  database: str = DATABASE) -> tuple[asyncpg.Connection, dict[str, Any] | None]:
    admin = await asyncpg.connect(url)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if exists and reuse:
            conn = await asyncpg.connect(with_database(url, database))
            if await conn.fetchval("SELECT count(*) FROM transfer_log WHERE chain_id <> $1", LOCAL_CHAIN) == rows:
                await conn.execute(schema_sql())  # the current views and functions
                await conn.execute("ANALYZE")
                return conn, None
            await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(with_database(url, database))
    await conn.execute(schema_sql())
    return conn, await load(conn, rows)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    url = admin_url(args.database_url)
    started = datetime.now(UTC)
    print(f"loading {args.rows:,} transfers into {args.database}", flush=True)
    conn, loaded = await prepare(url, args.rows, args.reuse, args.database)
    try:
        result: dict[str, Any] = {
            "started_at": started.isoformat(timespec="seconds"), "rows": args.rows, "database_name": args.database,
            "server": await conn.fetchval("SELECT version()"),
            "settings": {r["name"]: r["setting"] for r in await conn.fetch(
                "SELECT name, setting || coalesce(unit, '') AS setting FROM pg_settings WHERE name = ANY($1::text[])",
                ["shared_buffers", "work_mem", "effective_cache_size", "max_parallel_workers_per_gather",
                 "random_page_cost"])},
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_at_start": os.getloadavg()},
            "load": loaded, "sizes": await sizes(conn)}
        print("queries of docs/queries.md (EXPLAIN ANALYZE, second run)", flush=True)
        result["queries"] = await run_queries(conn, docs_queries(Path(args.docs)))
        print("flat cost: the history questions against their targets (EXPLAIN ANALYZE, second run)", flush=True)
        result["flat"] = await flat_cost(conn)
        if args.copy_rows:
            print("COPY cost of the indexes", flush=True)
            result["copy"] = await copy_cost(conn, args.copy_rows)
    finally:
        await conn.close()
    path = Path(args.out)
    if path.suffix != ".json":
        path = path / f"analyst-{started.date().isoformat()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"\nwritten to {path}")
    return result


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{result['rows']:,} transfers; {result['server'].split(',')[0]}")
    print(f"{'ms':>9} {'first ms':>9}  {'seq scan':<8}  question / transfer_log access")
    for q in result["queries"]:
        scans = ", ".join(q["transfer_log_scans"] + [f"in {f}()" for f in q["functions"]])
        scans += f" [transfer_log scans: {q['transfer_log_index_scans']} index, {q['transfer_log_seq_scans']} seq]"
        print(f"{q['ms']:>9.1f} {q['first_ms']:>9.1f}  {'YES' if q['seq_scan_transfer_log'] else 'no':<8}  "
              f"{q['question']}\n{'':>30}{scans}")
    for q in result.get("flat", []):
        print(f"{q['ms']:>9.1f} {q['first_ms']:>9.1f}  {'met' if q['met'] else 'MISSED':<8}  "
              f"{q['question']} (target {q['target_ms']:.0f} ms)")
    for label, seconds in result.get("copy", {}).get("seconds", {}).items():
        print(f"COPY {result['copy']['copy_rows']:,} rows, {label}: {seconds} s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.analyst_bench", description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=10_000_000, help="synthetic transfers (default 10M)")
    p.add_argument("--database-url", help="an admin URL of the server (default $DATABASE_URL, else local)")
    p.add_argument("--database", default=DATABASE, help=f"the database loaded (default {DATABASE})")
    p.add_argument("--reuse", action="store_true", help="keep a database already loaded with --rows transfers")
    p.add_argument("--docs", default=str(DOCS), help="the queries to run (default docs/queries.md)")
    p.add_argument("--copy-rows", type=int, default=200_000, help="rows per COPY of the write-cost test (0: skip)")
    p.add_argument("--out", default=str(RESULTS_DIR), help="folder of the JSON result, or its path (*.json)")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
