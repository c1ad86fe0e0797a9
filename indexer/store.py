"""The only module that talks SQL.

One transaction per batch: COPY the batch's transfers, upsert the share ledger set-based (one
statement for all holders), update token counters and multipliers, store block hashes, and move
the cursor, all or nothing. ``commit_batch`` is idempotent against a lost acknowledgement: it
checks the cursor it expects to move from, and a batch already committed is a no-op.

Connection failures become ``DatabaseUnavailable`` (retried by tenacity here, at the edge);
everything else is a bug or a constraint the caller broke and propagates as is.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any, TypeVar

import asyncpg
import orjson
import tenacity

from . import logs
from .errors import DatabaseUnavailable, Fatal, LockHeld, ServiceUnreachable, mask_url
from .ledger import LedgerBatch
from .models import ZERO_ADDRESS, Cursor, Header, MultiplierChange, TokenEvent, TokenInfo, TokenKind, Transfer

log = logs.get("store")
T = TypeVar("T")

_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
    TimeoutError,
)

TRANSFER_COLUMNS = (
    "chain_id", "token", "block_number", "block_time", "tx_hash", "log_index",
    "from_address", "to_address", "amount_raw", "shares", "kind",
)


def schema_sql() -> str:
    return resources.files("indexer").joinpath("schema.sql").read_text(encoding="utf-8")


# Secondary indexes of transfer_log that a first load builds once at the end (see
# defer_indexes); the primary key and the BRIN stay (rows arrive in their order: cheap).
DEFERRED_INDEXES = ("transfer_log_from", "transfer_log_to", "transfer_log_day")


def deferred_index_statements() -> list[str]:
    """The CREATE INDEX statements of DEFERRED_INDEXES, as schema.sql has them."""
    prefixes = tuple(f"CREATE INDEX IF NOT EXISTS {name} " for name in DEFERRED_INDEXES)
    return [line for line in schema_sql().splitlines() if line.startswith(prefixes)]


def ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def copy_text(chain_id: int, transfers: Sequence[Transfer]) -> bytes:
    """Transfers in COPY text format. Text, not binary: asyncpg's binary numeric encoding of
    Python ints costs more than PostgreSQL's parsing of decimal digits (measured: 2.6 s vs 1.4 s
    for 200k rows). Every value is hex, digits or a timestamp: nothing needs escaping."""
    times: dict[int, str] = {}
    zero = ZERO_ADDRESS
    lines = []
    for t in transfers:
        when = times.get(t.block_time)
        if when is None:
            when = times[t.block_time] = ts(t.block_time).isoformat()
        kind = "mint" if t.from_address == zero else "burn" if t.to_address == zero else "transfer"
        lines.append(f"{chain_id}\t{t.token}\t{t.block_number}\t{when}\t{t.tx_hash}\t{t.log_index}\t"
                     f"{t.from_address}\t{t.to_address}\t{t.amount_raw}\t{t.shares}\t{kind}\n")
    return "".join(lines).encode()


@dataclass(frozen=True)
class TokenState:
    info: TokenInfo
    synced_block: int
    multiplier: int


@dataclass
class BatchWrite:
    """Everything one batch changes; committed atomically by :meth:`Store.commit_batch`."""

    chain_id: int
    expect_cursor: int | None  # block the cursor must be at (None: no cursor yet)
    cursor: Cursor | None  # new cursor (None: a late token's catch-up, cursor stays)
    synced_block: int
    synced_tokens: list[str]
    headers: list[Header] = field(default_factory=list)
    transfers: list[Transfer] = field(default_factory=list)
    events: list[TokenEvent] = field(default_factory=list)
    ledger: LedgerBatch = field(default_factory=LedgerBatch)
    multiplier_changes: list[MultiplierChange] = field(default_factory=list)
    multipliers: dict[str, int] = field(default_factory=dict)  # token -> M at synced_block
    new_tokens: list[TokenState] = field(default_factory=list)
    keep_blocks: int = 128
    expect_synced: int | None = None  # catch-up: the tokens' synced_block before this batch


class Store:
    """A pool plus the statements of the indexer. Use :meth:`open`."""

    def __init__(self, pool: asyncpg.Pool, dsn: str, attempts: int | None,
                 on_retry: Callable[[], None] | None = None) -> None:
        self.pool = pool
        self.dsn = dsn
        self._attempts = attempts
        self._on_retry = on_retry
        self._locks: dict[int, tuple[str, asyncpg.Connection]] = {}

    @classmethod
    async def open(cls, dsn: str, *, role: str = "indexer", attempts: int | None = 5,
                   min_size: int = 1, max_size: int = 4, on_retry: Callable[[], None] | None = None) -> Store:
        """Connect; a database that cannot be reached raises ServiceUnreachable (exit 2)."""
        app = f"xstock-indexer {role} pid={os.getpid()} host={socket.gethostname()}"
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, timeout=10, command_timeout=600,
                server_settings={"application_name": app[:63]},
            )
        except (*_CONNECTION_ERRORS, asyncpg.exceptions.InvalidCatalogNameError,
                asyncpg.exceptions.InvalidAuthorizationSpecificationError,
                asyncpg.exceptions.InvalidPasswordError, ValueError) as exc:
            raise ServiceUnreachable(f"database {mask_url(dsn)} unreachable: {_describe(exc, dsn)}") from None
        return cls(pool, dsn, attempts, on_retry)

    async def close(self) -> None:
        for _, conn in self._locks.values():
            if not conn.is_closed():
                await conn.close()
        await self.pool.close()

    async def _retry(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        stop = tenacity.stop_never if self._attempts is None else tenacity.stop_after_attempt(self._attempts)
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(DatabaseUnavailable), stop=stop,
            wait=tenacity.wait_exponential_jitter(initial=0.2, max=10), reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    return await fn()
                except _CONNECTION_ERRORS as exc:
                    n = attempt.retry_state.attempt_number
                    if self._on_retry is not None:
                        self._on_retry()
                    log.warning("db_retry", what=what, attempt=n, error=_describe(exc, self.dsn))
                    raise DatabaseUnavailable(f"database {mask_url(self.dsn)}: {_describe(exc, self.dsn)}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    # -- schema ---------------------------------------------------------------------------------

    async def migrate(self) -> None:
        """Apply schema.sql in one transaction (it takes its own advisory lock)."""
        sql = schema_sql()

        async def run() -> None:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(sql)

        await self._retry("migrate", run)

    # -- writer lock ----------------------------------------------------------------------------

    async def lock_chain(self, chain_id: int, chain_name: str) -> None:
        """Take the per-chain writer lock on a dedicated connection held until ``unlock_chain``
        or close. Raises LockHeld naming the holder when another process has it."""
        async def connect() -> asyncpg.Connection:
            return await asyncpg.connect(self.dsn, server_settings={"application_name": _app_name("writer")})
        conn = await self._retry("lock", connect)
        key = await conn.fetchval("SELECT hashtextextended('xstock-indexer:chain:' || $1::bigint::text, 0)", chain_id)
        if await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
            self._locks[chain_id] = (chain_name, conn)
            return
        holder = await conn.fetchrow(
            """SELECT a.pid, a.application_name, a.client_addr::text AS addr, a.backend_start
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'advisory' AND l.granted
                  AND l.classid::bigint = $1 AND l.objid::bigint = $2""",
            (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF,
        )
        await conn.close()
        who = "another process"
        if holder is not None:
            since = holder["backend_start"].strftime("%Y-%m-%d %H:%M:%S UTC") if holder["backend_start"] else "?"
            who = f"{holder['application_name'] or 'backend pid ' + str(holder['pid'])} (since {since})"
        raise LockHeld(f"chain {chain_name} (id {chain_id}) is already being indexed by {who}; "
                       "only one writer per chain")

    async def unlock_chain(self, chain_id: int) -> None:
        _, conn = self._locks.pop(chain_id, ("", None))
        if conn is not None and not conn.is_closed():
            await conn.close()

    async def _ensure_lock(self, chain_id: int) -> None:
        """Before a write: the lock's connection must still be alive. After a database restart
        it is gone with its lock; take it again (LockHeld if someone else got it meanwhile)."""
        held = self._locks.get(chain_id)
        if held is None:
            return
        name, conn = held
        try:
            if not conn.is_closed():
                await conn.fetchval("SELECT 1")
                return
        except _CONNECTION_ERRORS:
            pass
        log.warning("writer_lock_lost", chain=name, chain_id=chain_id)
        del self._locks[chain_id]
        await self.lock_chain(chain_id, name)
        log.info("writer_lock_taken_again", chain=name, chain_id=chain_id)

    # -- reads ----------------------------------------------------------------------------------

    async def cursor(self, chain_id: int) -> Cursor | None:
        async def run() -> Cursor | None:
            row = await self.pool.fetchrow(
                "SELECT block_number, block_hash, block_time FROM cursors WHERE chain_id = $1", chain_id)
            if row is None:
                return None
            return Cursor(row["block_number"], row["block_hash"], int(row["block_time"].timestamp()))
        return await self._retry("cursor", run)

    async def tokens(self, chain_id: int) -> dict[str, TokenState]:
        async def run() -> dict[str, TokenState]:
            rows = await self.pool.fetch("SELECT * FROM tokens WHERE chain_id = $1", chain_id)
            return {r["token"]: _token_state(r) for r in rows}
        return await self._retry("tokens", run)

    async def recent_hashes(self, chain_id: int, lowest: int) -> dict[int, str]:
        async def run() -> dict[int, str]:
            rows = await self.pool.fetch(
                "SELECT block_number, block_hash FROM recent_blocks WHERE chain_id = $1 AND block_number >= $2",
                chain_id, lowest)
            return {r["block_number"]: r["block_hash"] for r in rows}
        return await self._retry("recent_hashes", run)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            return list(await self.pool.fetch(sql, *args))
        return await self._retry("query", run)

    # -- writes ---------------------------------------------------------------------------------

    async def defer_indexes(self) -> bool:
        """A first backfill into an empty transfer_log builds its secondary indexes once at the
        end (sorting once is far cheaper than maintaining random-key btrees row by row). Returns
        True when it dropped them; ``build_indexes`` restores them, and so does every ``migrate``
        (CREATE INDEX IF NOT EXISTS), so a crash can never leave them missing."""
        async def run() -> bool:
            async with self.pool.acquire() as conn, conn.transaction():
                if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM transfer_log)"):
                    return False
                await conn.execute("; ".join(f"DROP INDEX IF EXISTS {name}" for name in DEFERRED_INDEXES))
                return True
        return await self._retry("defer_indexes", run)

    async def build_indexes(self) -> None:
        """Build the deferred indexes, side by side (one connection each)."""
        async def build(statement: str) -> None:
            async with self.pool.acquire() as conn:
                await conn.execute("SET maintenance_work_mem = '256MB'")
                await conn.execute(statement)

        async def run() -> None:
            await asyncio.gather(*(build(statement) for statement in deferred_index_statements()))
        await self._retry("build_indexes", run)

    async def ensure_chain(self, chain_id: int, name: str) -> None:
        async def run() -> None:
            await self.pool.execute(
                "INSERT INTO chains (chain_id, name) VALUES ($1, $2) "
                "ON CONFLICT (chain_id) DO UPDATE SET name = EXCLUDED.name", chain_id, name)
        await self._retry("ensure_chain", run)

    async def add_tokens(self, tokens: Sequence[TokenState]) -> None:
        async def run() -> None:
            async with self.pool.acquire() as conn, conn.transaction():
                await _insert_tokens(conn, tokens)
        await self._retry("add_tokens", run)

    async def set_head(self, chain_id: int, head: int) -> None:
        async def run() -> None:
            await self.pool.execute(
                "UPDATE cursors SET head_number = $2, head_seen_at = now() WHERE chain_id = $1", chain_id, head)
        await self._retry("set_head", run)

    async def commit_batch(self, batch: BatchWrite) -> bool:
        """Write the batch in one transaction. Returns False when it was already committed
        (the cursor is already where this batch would move it)."""
        async def run() -> bool:
            await self._ensure_lock(batch.chain_id)
            async with self.pool.acquire() as conn, conn.transaction():
                return await _write_batch(conn, batch)
        return await self._retry("commit_batch", run)

    async def rewind(self, chain_id: int, ancestor: Cursor, tokens: Iterable[str]) -> int:
        """Undo every block above ``ancestor`` in one transaction; returns transfers removed."""
        token_list = list(tokens)

        async def run() -> int:
            await self._ensure_lock(chain_id)
            async with self.pool.acquire() as conn, conn.transaction():
                return await _rewind(conn, chain_id, ancestor, token_list)
        return await self._retry("rewind", run)

    async def transact(self, what: str, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``fn(conn)`` inside one transaction; on a lost connection the whole transaction is
        retried (``fn`` must therefore only touch the database)."""
        async def run() -> T:
            async with self.pool.acquire() as conn, conn.transaction():
                return await fn(conn)
        return await self._retry(what, run)


def _app_name(role: str) -> str:
    return f"xstock-indexer {role} pid={os.getpid()} host={socket.gethostname()}"[:63]


def _describe(exc: BaseException, dsn: str) -> str:
    text = str(exc) or type(exc).__name__
    return text.replace(dsn, mask_url(dsn)).splitlines()[0][:300]


def _token_state(r: asyncpg.Record) -> TokenState:
    info = TokenInfo(r["chain_id"], r["token"], r["symbol"], r["name"], r["underlying"], r["decimals"],
                     TokenKind(r["kind"]), r["start_block"], r["source"])
    return TokenState(info, r["synced_block"], int(r["multiplier"]))


async def _insert_tokens(conn: asyncpg.Connection, tokens: Sequence[TokenState]) -> None:
    for t in tokens:
        i = t.info
        await conn.execute(
            """INSERT INTO tokens (chain_id, token, symbol, name, underlying, decimals, kind, source,
                                   start_block, synced_block, multiplier)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) ON CONFLICT (chain_id, token) DO NOTHING""",
            i.chain_id, i.address, i.symbol, i.name, i.underlying, i.decimals, i.kind.value, i.source,
            i.start_block, t.synced_block, t.multiplier)
        if t.multiplier != 10**18:
            await conn.execute(
                """INSERT INTO multiplier_changes (chain_id, token, block_number, block_time, multiplier, source)
                   VALUES ($1, $2, $3, now(), $4, 'initial') ON CONFLICT DO NOTHING""",
                i.chain_id, i.address, max(t.synced_block, 0), t.multiplier)


async def _write_batch(conn: asyncpg.Connection, b: BatchWrite) -> bool:
    chain_id = b.chain_id
    current = await conn.fetchval("SELECT block_number FROM cursors WHERE chain_id = $1 FOR UPDATE", chain_id)
    if b.cursor is not None:
        if current is not None and current == b.cursor.block_number and current != b.expect_cursor:
            return False  # committed before; the acknowledgement was lost
        if current != b.expect_cursor:
            raise Fatal(f"cursor of chain {chain_id} moved under us: expected {b.expect_cursor}, "
                        f"found {current}; is another writer running without the lock?")
    elif b.expect_synced is not None:
        synced = await conn.fetchval(
            "SELECT max(synced_block) FROM tokens WHERE chain_id = $1 AND token = ANY($2)", chain_id, b.synced_tokens)
        if synced == b.synced_block:
            return False
        if synced != b.expect_synced:
            raise Fatal(f"tokens of chain {chain_id} moved under us: expected block {b.expect_synced}, found {synced}")
    if b.new_tokens:
        await _insert_tokens(conn, b.new_tokens)
    if b.transfers:
        await conn.copy_to_table("transfer_log", source=io.BytesIO(copy_text(chain_id, b.transfers)),
                                 columns=TRANSFER_COLUMNS, format="text")
    if b.events:
        await conn.executemany(
            """INSERT INTO token_events (chain_id, token, block_number, block_time, tx_hash, log_index, event, args)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8::jsonb) ON CONFLICT DO NOTHING""",
            [(chain_id, e.token, e.block_number, ts(e.block_time), e.tx_hash, e.log_index, e.name,
              orjson.dumps(e.args).decode()) for e in b.events])
    await _apply_ledger(conn, chain_id, b.ledger)
    if b.multiplier_changes:
        await conn.executemany(
            """INSERT INTO multiplier_changes (chain_id, token, block_number, block_time, multiplier, source)
               VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (chain_id, token, block_number)
               DO UPDATE SET multiplier = EXCLUDED.multiplier, source = EXCLUDED.source""",
            [(chain_id, m.token, m.block_number, ts(m.block_time), m.multiplier, m.source)
             for m in b.multiplier_changes])
    tokens = list(b.synced_tokens)
    await conn.execute(
        """UPDATE tokens t SET synced_block = $2, multiplier = coalesce(u.m, t.multiplier)
             FROM unnest($3::text[], $4::numeric[]) AS u(token, m)
            WHERE t.chain_id = $1 AND t.token = u.token""",
        chain_id, b.synced_block, tokens, [b.multipliers.get(t) for t in tokens])
    if b.headers:
        await conn.executemany(
            """INSERT INTO recent_blocks (chain_id, block_number, block_hash, parent_hash, block_time)
               VALUES ($1,$2,$3,$4,$5) ON CONFLICT (chain_id, block_number)
               DO UPDATE SET block_hash = EXCLUDED.block_hash, parent_hash = EXCLUDED.parent_hash,
                             block_time = EXCLUDED.block_time""",
            [(chain_id, h.number, h.hash, h.parent_hash, ts(h.timestamp)) for h in b.headers])
    if b.cursor is not None:
        c = b.cursor
        await conn.execute(
            """INSERT INTO cursors (chain_id, block_number, block_hash, block_time, updated_at)
               VALUES ($1,$2,$3,$4, now()) ON CONFLICT (chain_id) DO UPDATE
               SET block_number = EXCLUDED.block_number, block_hash = EXCLUDED.block_hash,
                   block_time = EXCLUDED.block_time, updated_at = now()""",
            chain_id, c.block_number, c.block_hash, ts(c.block_time))
        await conn.execute(
            "DELETE FROM recent_blocks WHERE chain_id = $1 AND block_number < $2",
            chain_id, c.block_number - b.keep_blocks)
    return True


async def _apply_ledger(conn: asyncpg.Connection, chain_id: int, ledger: LedgerBatch) -> None:
    if ledger.holders:
        keys = list(ledger.holders)
        await conn.execute(
            """INSERT INTO share_balances (chain_id, token, holder, shares, updated_block)
               SELECT $1, u.token, u.holder, u.shares, u.block
                 FROM unnest($2::text[], $3::text[], $4::text[]::numeric[], $5::bigint[])
                      AS u(token, holder, shares, block)
               ON CONFLICT (chain_id, token, holder) DO UPDATE
               SET shares = share_balances.shares + EXCLUDED.shares,
                   updated_block = greatest(share_balances.updated_block, EXCLUDED.updated_block)""",
            chain_id, [k[0] for k in keys], [k[1] for k in keys],
            [str(ledger.holders[k].shares) for k in keys], [ledger.holders[k].last_block for k in keys])
    if ledger.tokens:
        names = list(ledger.tokens)
        d = [ledger.tokens[n] for n in names]
        await conn.execute(
            """UPDATE tokens t SET total_shares = t.total_shares + u.shares,
                      minted_raw = t.minted_raw + u.minted, burned_raw = t.burned_raw + u.burned,
                      mint_count = t.mint_count + u.mints, burn_count = t.burn_count + u.burns,
                      transfer_count = t.transfer_count + u.moves
                 FROM unnest($2::text[], $3::numeric[], $4::numeric[], $5::numeric[],
                             $6::bigint[], $7::bigint[], $8::bigint[])
                      AS u(token, shares, minted, burned, mints, burns, moves)
                WHERE t.chain_id = $1 AND t.token = u.token""",
            chain_id, names, [x.shares for x in d], [x.minted_raw for x in d], [x.burned_raw for x in d],
            [x.mints for x in d], [x.burns for x in d], [x.transfers for x in d])


async def _rewind(conn: asyncpg.Connection, chain_id: int, ancestor: Cursor, tokens: list[str]) -> int:
    a = ancestor.block_number
    zero = "0x" + "00" * 20
    await conn.execute(
        """WITH moved AS (
               SELECT token, holder, sum(delta) AS delta FROM (
                   SELECT token, to_address AS holder, shares AS delta FROM transfer_log
                    WHERE chain_id = $1 AND token = ANY($3) AND block_number > $2 AND to_address <> $4
                   UNION ALL
                   SELECT token, from_address, -shares FROM transfer_log
                    WHERE chain_id = $1 AND token = ANY($3) AND block_number > $2 AND from_address <> $4
               ) x GROUP BY token, holder)
           UPDATE share_balances b SET shares = b.shares - m.delta
             FROM moved m WHERE b.chain_id = $1 AND b.token = m.token AND b.holder = m.holder""",
        chain_id, a, tokens, zero)
    await conn.execute(
        """UPDATE tokens t SET total_shares = t.total_shares - x.minted_shares + x.burned_shares,
                  minted_raw = t.minted_raw - x.minted, burned_raw = t.burned_raw - x.burned,
                  mint_count = t.mint_count - x.mints, burn_count = t.burn_count - x.burns,
                  transfer_count = t.transfer_count - x.moves
             FROM (SELECT token,
                          coalesce(sum(shares) FILTER (WHERE kind = 'mint'), 0) AS minted_shares,
                          coalesce(sum(shares) FILTER (WHERE kind = 'burn'), 0) AS burned_shares,
                          coalesce(sum(amount_raw) FILTER (WHERE kind = 'mint'), 0) AS minted,
                          coalesce(sum(amount_raw) FILTER (WHERE kind = 'burn'), 0) AS burned,
                          count(*) FILTER (WHERE kind = 'mint') AS mints,
                          count(*) FILTER (WHERE kind = 'burn') AS burns,
                          count(*) FILTER (WHERE kind = 'transfer') AS moves
                     FROM transfer_log WHERE chain_id = $1 AND token = ANY($3) AND block_number > $2
                    GROUP BY token) x
            WHERE t.chain_id = $1 AND t.token = x.token""",
        chain_id, a, tokens)
    removed = await conn.fetchval(
        "WITH d AS (DELETE FROM transfer_log WHERE chain_id = $1 AND token = ANY($3) AND block_number > $2 "
        "RETURNING 1) SELECT count(*) FROM d", chain_id, a, tokens)
    await conn.execute(
        """UPDATE share_balances b SET updated_block = coalesce(greatest(
               (SELECT max(block_number) FROM transfer_log l WHERE l.chain_id = b.chain_id
                  AND l.token = b.token AND l.from_address = b.holder),
               (SELECT max(block_number) FROM transfer_log l WHERE l.chain_id = b.chain_id
                  AND l.token = b.token AND l.to_address = b.holder)), 0)
            WHERE b.chain_id = $1 AND b.updated_block > $2""", chain_id, a)
    for table in ("token_events", "multiplier_changes", "recent_blocks"):
        await conn.execute(f"DELETE FROM {table} WHERE chain_id = $1 AND block_number > $2", chain_id, a)
    orphans = [r["token"] for r in await conn.fetch(
        "SELECT token FROM tokens WHERE chain_id = $1 AND source LIKE 'factory:%' AND start_block > $2",
        chain_id, a)]
    if orphans:
        await conn.execute("DELETE FROM share_balances WHERE chain_id = $1 AND token = ANY($2)", chain_id, orphans)
        await conn.execute("DELETE FROM multiplier_changes WHERE chain_id = $1 AND token = ANY($2)", chain_id, orphans)
        await conn.execute("DELETE FROM tokens WHERE chain_id = $1 AND token = ANY($2)", chain_id, orphans)
    await conn.execute(
        """UPDATE tokens SET synced_block = least(synced_block, $2),
                  multiplier = multiplier_at(chain_id, token, least(synced_block, $2))
            WHERE chain_id = $1""", chain_id, a)
    await conn.execute(
        "UPDATE cursors SET block_number = $2, block_hash = $3, block_time = $4, updated_at = now() "
        "WHERE chain_id = $1", chain_id, a, ancestor.block_hash, ts(ancestor.block_time))
    return int(removed or 0)
