"""``indexer custody import`` and ``indexer custody pull``: custody payloads into the database.

The bytes (a file, ``-`` for stdin, or the issuer API over HTTP) are bounded and hashed first
(:mod:`.source`). A payload already imported (same SHA-256) is not parsed again: it only
becomes the latest statement for the times it covers again (custody_imports.seq breaks the tie
between two records of one account and one as_of). A new payload is validated as a stream
(:mod:`.parse`; known underlyings: the indexed tokens' underlyings and symbols, the config's
tokens and ``[custody.accounts]``, earlier records; unchecked while no token is indexed yet;
as_of at most 5 minutes past both the clock and the latest indexed block), encoded by
:mod:`.copy_text` in a worker thread and loaded in chunks with COPY straight into
custody_attestations, all in one transaction: a fault on the last line leaves nothing behind,
and memory does not grow with the file. Two records for one account and one as_of are found
from the encoder's key hashes (the rows are grouped in the database only when two hashes are
equal). Then the backing rules run (:func:`reconcile.evaluate`).

Failures: InputError (exit 2) for an unreadable or oversized payload, a bad record, an HTTP
error status or a refused URL; ServiceUnreachable (exit 2) when the URL or the database cannot
be reached.
"""

from __future__ import annotations

import asyncio
import gc
import io
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from .. import logconfig
from ..config import Settings
from ..errors import InputError
from ..models import underlying_of
from ..store import Store
from . import reconcile
from .copy_text import COPY_COLUMNS, Encoder
from .parse import Context, Stream, open_stream
from .source import Source, fetch, open_file

log = logconfig.get("custody")
FUTURE_SLACK = timedelta(minutes=5)
CHUNK_RECORDS = 20_000
ANALYZE_AFTER = 100_000


@dataclass(frozen=True)
class ImportReport:
    source: str
    format: str
    sha256: str
    records: int
    duplicate: bool  # the same payload was imported before: nothing added
    changes: Sequence[reconcile.FlagChange]

    def render(self) -> str:
        if self.duplicate:
            head = f"{self.source}: already imported (sha256 {self.sha256[:16]}), nothing added"
        else:
            head = f"{self.source}: {self.records} record(s) added ({self.format}, sha256 {self.sha256[:16]})"
        return head + ("\n" + reconcile.render_changes(self.changes) if self.changes else "")


def _limit(settings: Settings) -> int:
    return settings.custody.max_payload_mb << 20


async def import_file(settings: Settings, path: str, fmt: str | None = None,
                      underlying: str | None = None) -> ImportReport:
    """Import one custody file (format guessed when ``fmt`` is None), then evaluate the rules."""
    source = open_file(path, _limit(settings))
    try:
        return await import_source(settings, source, fmt, underlying)
    finally:
        source.close()


async def pull(settings: Settings, url: str, underlying: str | None = None,
               allow_http: bool = False) -> ImportReport:
    """Fetch the issuer API answer at ``url`` and import it as format ``issuer``."""
    source = await fetch(url, _limit(settings), allow_http)
    try:
        return await import_source(settings, source, "issuer", underlying)
    finally:
        source.close()


async def import_source(settings: Settings, src: Source, fmt: str | None, underlying: str | None) -> ImportReport:
    store = await Store.open(settings.database_url, role="custody")
    try:
        await store.migrate()
        known = await store.fetch("SELECT format, records FROM custody_imports WHERE payload_sha256 = $1", src.sha256)
        if known:
            added, kind, count = False, known[0]["format"], known[0]["records"]
            await store.transact("custody_import", lambda conn: _restate(conn, src.sha256))
        else:
            stream = open_stream(src.file, await _context(store, settings, src.name, underlying), fmt)
            kind, source = stream.format, f"{stream.format}:{src.name}"

            async def load(conn: asyncpg.Connection) -> tuple[bool, int]:
                return await _load(conn, stream, src, source)

            added, count = await store.transact("custody_import", load)
        if added and count >= ANALYZE_AFTER:  # fresh statistics, or the planner misjudges the new rows
            await store.transact("custody_analyze", lambda conn: conn.execute("ANALYZE custody_attestations"))
        log.info("custody_import", source=src.name, format=kind, records=count, duplicate=not added)
        changes = await reconcile.evaluate(store, settings)
    finally:
        await store.close()
    return ImportReport(f"{kind}:{src.name}", kind, src.sha256, count, not added, changes)


async def _context(store: Store, settings: Settings, name: str, underlying: str | None) -> Context:
    known = await known_underlyings(store, settings)
    if not known:
        log.warning("custody_names_unchecked", reason="no token indexed yet")
    indexed = await store.fetch("SELECT max(block_time) AS t FROM cursors")
    clock = datetime.now(UTC)
    latest = max(clock, indexed[0]["t"]) if indexed and indexed[0]["t"] else clock
    return Context(name, known, settings.custody.accounts, underlying, latest + FUTURE_SLACK)


async def known_underlyings(store: Store, settings: Settings) -> dict[str, str]:
    """Accepted spellings (upper case) -> underlying: underlyings first, then token symbols.
    Empty (names taken as given) while no token is indexed: a factory's tokens are not known
    before its first batch, so nothing could be judged."""
    if not await store.fetch("SELECT 1 FROM tokens LIMIT 1"):
        return {}
    rows = await store.fetch(
        "SELECT underlying, symbol FROM tokens UNION SELECT underlying, underlying FROM custody_accounts")
    pairs = [(r["underlying"], r["symbol"]) for r in rows]
    pairs += [(t.underlying or underlying_of(t.symbol), t.symbol) for t in settings.tokens if t.symbol]
    pairs += [(t.underlying, t.underlying) for t in settings.tokens if t.underlying]
    pairs += [(u, u) for u in settings.custody.accounts.values()]
    known = {u.upper(): u for u, _ in pairs}
    for u, symbol in pairs:
        known.setdefault(symbol.upper(), u)
    return known


async def _restate(conn: asyncpg.Connection, sha256: str) -> None:
    """The payload imported again: it becomes the latest statement for the times it covers."""
    await conn.execute(
        """UPDATE custody_imports SET seq = nextval('custody_import_seq'), imports = imports + 1,
                  last_imported_at = now() WHERE payload_sha256 = $1""", sha256)
    await conn.execute("SELECT custody_absorb($1)", sha256)


async def _load(conn: asyncpg.Connection, stream: Stream, src: Source, source: str) -> tuple[bool, int]:
    """Store a new payload: (True, records); (False, records) when a concurrent import of the
    same bytes committed first (then it is restated)."""
    fresh = await conn.fetchval(
        """INSERT INTO custody_imports AS i (payload_sha256, source, format, records) VALUES ($1, $2, $3, 0)
           ON CONFLICT (payload_sha256) DO NOTHING RETURNING true""", src.sha256, source, stream.format)
    if not fresh:
        await _restate(conn, src.sha256)
        return False, await conn.fetchval("SELECT records FROM custody_imports WHERE payload_sha256 = $1", src.sha256)
    started = time.monotonic()
    encoder = Encoder(stream, source, src.sha256)
    count = await _copy(conn, encoder)
    copied = time.monotonic()
    if encoder.clashes():
        await _refuse_duplicates(conn, src, encoder)
    checked = time.monotonic()
    await conn.execute("UPDATE custody_imports SET records = $2 WHERE payload_sha256 = $1", src.sha256, count)
    await conn.execute("SELECT custody_absorb($1)", src.sha256)
    log.info("custody_load", records=count, parse_copy_s=round(copied - started, 2),
             duplicates_s=round(checked - copied, 2), absorb_s=round(time.monotonic() - checked, 2))
    return True, count


async def _copy(conn: asyncpg.Connection, encoder: Encoder) -> int:
    """COPY the records into custody_attestations in chunks of CHUNK_RECORDS. A worker thread
    parses and encodes the next chunk while the server loads the last one (at most two chunks
    in memory); the first bad record raises its InputError here."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
    room = threading.Semaphore(2)  # chunks handed over and not loaded yet
    stop = threading.Event()

    def hand(item: bytes | BaseException | None) -> None:
        # call_soon_threadsafe, not run_coroutine_threadsafe: the latter's task/future pair is
        # a reference cycle that keeps each chunk alive until a full garbage collection.
        room.acquire()
        loop.call_soon_threadsafe(chunks.put_nowait, item)

    def produce() -> None:
        try:
            for chunk in encoder.chunks(CHUNK_RECORDS):
                if stop.is_set():
                    return
                hand(chunk)
            hand(None)
        except BaseException as exc:  # handed over whole: InputError says what is wrong
            hand(exc)

    worker = loop.run_in_executor(None, produce)
    try:
        while (item := await chunks.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            await conn.copy_to_table("custody_attestations", source=io.BytesIO(item), format="text",
                                     columns=list(COPY_COLUMNS))
            room.release()
            gc.collect(1)  # a chunk's cyclic garbage goes now, not at the next full collection
    finally:
        stop.set()
        while not worker.done():  # let a producer waiting for room finish
            room.release()
            await asyncio.sleep(0.01)
    await worker
    return encoder.count


async def _refuse_duplicates(conn: asyncpg.Connection, src: Source, encoder: Encoder) -> None:
    """Two records for one account and one as_of (their key hashes were equal): name the second
    (in payload order) and the first. Equal hashes of different keys pass."""
    row = await conn.fetchrow(
        """SELECT underlying, custodian, account, as_of, ids[1] AS first, ids[2] AS second FROM (
               SELECT underlying, custodian, account, as_of, array_agg(id ORDER BY id) AS ids
                 FROM custody_attestations WHERE payload_sha256 = $1
                GROUP BY underlying, custodian, account, as_of HAVING count(*) > 1) d
            ORDER BY ids[2] LIMIT 1""", src.sha256)
    if row is None:
        return
    index = "SELECT count(*) FROM custody_attestations WHERE payload_sha256 = $1 AND id < $2"
    first = encoder.place(await conn.fetchval(index, src.sha256, row["first"]))
    where = encoder.place(await conn.fetchval(index, src.sha256, row["second"]))
    raise InputError(f"{src.name} {where}: a second record for {row['underlying']} {row['custodian']}/{row['account']} "
                     f"at {row['as_of'].astimezone(UTC).isoformat()} (first at {first})")
