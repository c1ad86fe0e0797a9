"""The raw ceilings, on the same node and the same rows as the indexer: what the node can serve
and what PostgreSQL can ingest when nothing else is done.

- eth_getLogs: a minimal aiohttp + orjson client fetches every log the indexer asks for (every
  token and the factory, `TOKEN_TOPICS + FACTORY_TOPICS`, the same block span), JSON parsed.
  Each (blocks per request, concurrency) pair is tried on a dense sample of the span; the best
  pair then fetches the whole span, and that pass is the ceiling.
- COPY: the rows the indexer wrote (`COPY transfer_log TO STDOUT`, text format) are copied into
  an empty transfer_log (schema.sql applied, so the same keys and indexes) in a scratch
  database: in one COPY, in chunks of one transaction each, and with the secondary indexes
  built after the COPY (timed too); the best is the ceiling.

Failure modes: `RuntimeError` when the node answers a JSON-RPC error; aiohttp / asyncpg errors
propagate.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import aiohttp
import asyncpg
import orjson

from indexer.decode import FACTORY_TOPICS, TOKEN_TOPICS

RANGES = (1, 2, 4, 8, 16, 32)
CONCURRENCY = (1, 2, 4)
SAMPLE_LOGS = 200_000  # logs in the sample the pairs are tried on, at least SAMPLE_BLOCKS blocks
SAMPLE_BLOCKS = 64  # a multiple of every range, so that no pair ends on a short request
COPY_CHUNK_ROWS = 25_000


@dataclass
class Trial:
    blocks_per_request: int
    concurrency: int
    first_block: int
    last_block: int
    requests: int
    logs: int
    mb: float
    seconds: float

    @property
    def logs_per_s(self) -> float:
        return self.logs / self.seconds if self.seconds else 0.0

    def describe(self) -> dict[str, Any]:
        return asdict(self) | {"logs_per_s": round(self.logs_per_s)}


async def fetch_logs(url: str, addresses: Sequence[str], first: int, last: int, blocks_per_request: int,
                     concurrency: int) -> Trial:
    """Every matching log in [first, last]: `concurrency` workers over consecutive ranges."""
    topics = [list(TOKEN_TOPICS + FACTORY_TOPICS)]
    ranges = deque((s, min(last, s + blocks_per_request - 1)) for s in range(first, last + 1, blocks_per_request))
    requests = len(ranges)
    ids = itertools.count(1)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:

        async def worker() -> tuple[int, int]:
            logs = size = 0
            while ranges:
                start, end = ranges.popleft()
                body = orjson.dumps({"jsonrpc": "2.0", "id": next(ids), "method": "eth_getLogs", "params": [
                    {"address": list(addresses), "topics": topics, "fromBlock": hex(start), "toBlock": hex(end)}]})
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                    raw = await resp.read()
                reply = orjson.loads(raw)
                if "error" in reply:
                    raise RuntimeError(f"eth_getLogs {start}-{end}: {reply['error']}")
                logs += len(reply["result"])
                size += len(raw)
            return logs, size

        started = time.perf_counter()
        results = await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return Trial(blocks_per_request, concurrency, first, last, requests, sum(r[0] for r in results),
                 round(sum(r[1] for r in results) / 2**20, 1), round(seconds, 3))


def sample_span(first: int, last: int, logs_per_block: float) -> tuple[int, int]:
    """The last blocks of the span (the dense bulk blocks, not the light set-up ones): about
    SAMPLE_LOGS logs, at least SAMPLE_BLOCKS blocks, a multiple of it, when the span has them."""
    wanted = max(SAMPLE_BLOCKS, math.ceil(SAMPLE_LOGS / max(logs_per_block, 1.0)))
    blocks = math.ceil(wanted / SAMPLE_BLOCKS) * SAMPLE_BLOCKS
    return max(first, last - blocks + 1), last


async def best_pair(url: str, addresses: Sequence[str], first: int, dense_last: int,
                    logs_per_block: float) -> tuple[Trial, dict[str, Any]]:
    """Every (range, concurrency) pair on the sample (the blocks up to `dense_last`, the last
    one with transfers); returns the fastest and the sample."""
    s_first, s_last = sample_span(first, dense_last, logs_per_block)
    trials = [await fetch_logs(url, addresses, s_first, s_last, r, c) for r in RANGES for c in CONCURRENCY]
    best = max(trials, key=lambda t: t.logs_per_s)
    return best, {"first_block": s_first, "last_block": s_last, "trials": [t.describe() for t in trials]}


# ---------------------------------------------------------------------------------------- COPY

def schema_sql() -> str:
    return resources.files("indexer").joinpath("schema.sql").read_text(encoding="utf-8")


async def indexed_rows(database_url: str) -> bytes:
    """transfer_log as the indexer wrote it, in COPY text format."""
    conn = await asyncpg.connect(database_url)
    try:
        out = io.BytesIO()
        await conn.copy_from_table("transfer_log", output=out, format="text")
        return out.getvalue()
    finally:
        await conn.close()


_SECONDARY = """SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x
                 JOIN pg_class i ON i.oid = x.indexrelid
                WHERE x.indrelid = 'transfer_log'::regclass AND NOT x.indisprimary ORDER BY 1"""


async def _copy(conn: asyncpg.Connection, chunks: list[bytes], deferred: list[tuple[str, str]]) -> float:
    """TRUNCATE, then COPY `chunks` (one transaction each); with `deferred` (name, definition)
    indexes, drop them first and build them after, inside the timing."""
    await conn.execute("TRUNCATE transfer_log")
    for name, _ in deferred:
        await conn.execute(f'DROP INDEX "{name}"')
    started = time.perf_counter()
    for chunk in chunks:
        async with conn.transaction():
            await conn.copy_to_table("transfer_log", source=io.BytesIO(chunk), format="text")
    for _, definition in deferred:
        await conn.execute(definition)
    return time.perf_counter() - started


async def copy_ceiling(scratch_url: str, data: bytes, pg_cpu: Callable[[], float | None]) -> dict[str, Any]:
    """COPY `data` into the scratch database's empty transfer_log: in one COPY and in chunks,
    with the secondary indexes maintained row by row, and in one COPY with them dropped and
    built after (what a first backfill may do). Every variant ends with the same table and
    indexes; the fastest is the ceiling. `pg_cpu()` reads PostgreSQL's CPU seconds (or None)."""
    lines = data.splitlines(keepends=True)
    rows = len(lines)
    chunked = [b"".join(lines[i:i + COPY_CHUNK_ROWS]) for i in range(0, rows, COPY_CHUNK_ROWS)]
    conn = await asyncpg.connect(scratch_url)
    try:
        async with conn.transaction():
            await conn.execute(schema_sql())
        await conn.execute("SET maintenance_work_mem = '256MB'")
        secondary = [(r[0], r[1]) for r in await conn.fetch(_SECONDARY)]
        trials: list[dict[str, Any]] = []
        for chunks, deferred in (([data], []), (chunked, []), ([data], secondary)):
            before = pg_cpu()
            seconds = await _copy(conn, chunks, deferred)
            after = pg_cpu()
            trials.append({
                "transactions": len(chunks), "indexes": "built after" if deferred else "maintained",
                "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds) if seconds else 0,
                "postgres_cpu_s": None if before is None or after is None else round(after - before, 2)})
        copied = await conn.fetchval("SELECT count(*) FROM transfer_log")
        indexes = [r[0] for r in await conn.fetch(_SECONDARY)]
    finally:
        await conn.close()
    if copied != rows or indexes != [name for name, _ in secondary]:
        raise RuntimeError(f"COPY ceiling: {copied} rows and indexes {indexes} after copying {rows} rows")
    best = max(trials, key=lambda t: t["rows_per_s"])
    return {"rows": rows, "mb": round(len(data) / 2**20, 1), "secondary_indexes": indexes, **best,
            "trials": trials}
