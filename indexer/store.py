"""The indexer's database: the pool, the writer lock, and the statements outside a batch. With
batch_sql.py (the SQL inside a batch and a rewind) and schema.py (versions and migrations), the only
modules that talk SQL.

One transaction per batch (``commit_batch``), all or nothing; it is idempotent against a lost
acknowledgement: it checks the cursor it expects to move from, and a batch already committed is
a no-op.

Connection failures become ``DatabaseUnavailable`` (retried by tenacity here, at the edge);
everything else is a bug or a constraint the caller broke and propagates as is.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import asyncpg
import tenacity

from . import logconfig, schema
from .batch_sql import TRANSFER_COLUMNS, BatchWrite, TokenState, copy_text, insert_tokens, rewind_to, ts, write_batch
from .errors import DatabaseUnavailable, ServiceUnreachable, mask_url
from .models import Cursor, TokenInfo, TokenKind

__all__ = ["TRANSFER_COLUMNS", "BatchWrite", "Store", "TokenState", "copy_text", "schema_sql", "ts"]
schema_sql = schema.schema_sql

log = logconfig.get("store")
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
    asyncpg.exceptions.InternalClientError,  # "cannot switch to state": left mid-operation by a server restart
    TimeoutError,
)


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

    retry = _retry  # for modules that add statements of their own (first_load.py)

    # -- schema ---------------------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        """Bring the schema to the code's version (schema.upgrade); returns the versions applied."""
        async def run() -> list[int]:
            async with self.pool.acquire() as conn:
                return await schema.upgrade(conn)
        applied = await self._retry("migrate", run)
        from .first_load import finish  # a first load killed before its end: finished here

        await finish(self)
        return applied

    async def check_schema(self) -> None:
        """For commands that only read: SchemaMismatch unless the database is at the code's version."""
        async def run() -> None:
            async with self.pool.acquire() as conn:
                await schema.check(conn)
        await self._retry("schema", run)

    async def role_settings(self, analyst_statement_timeout: float) -> None:
        async def run() -> None:
            async with self.pool.acquire() as conn:
                await schema.apply_role_settings(conn, analyst_statement_timeout)
        await self._retry("role_settings", run)

    # -- writer lock ----------------------------------------------------------------------------

    async def lock_chain(self, chain_id: int, chain_name: str) -> None:
        """Take the per-chain writer lock (schema.take_writer_lock) on a dedicated connection held
        until ``unlock_chain`` or close. LockHeld names the holder, one indexing this database;
        SchemaMismatch when a newer release migrated before we locked."""
        async def connect() -> asyncpg.Connection:
            return await schema.writer_connection(self.dsn, _app_name("writer"), chain_id)
        conn = await self._retry("lock", connect)
        await schema.take_writer_lock(conn, chain_id, chain_name)
        self._locks[chain_id] = (chain_name, conn)
        try:
            await self.check_schema()
        except BaseException:
            await self.unlock_chain(chain_id)
            raise

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
                await conn.execute("SELECT 1")  # simple protocol: no portal keeps a snapshot open
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

    async def ensure_chain(self, chain_id: int, name: str) -> None:
        async def run() -> None:
            await self.pool.execute(
                "INSERT INTO chains (chain_id, name) VALUES ($1, $2) "
                "ON CONFLICT (chain_id) DO UPDATE SET name = EXCLUDED.name", chain_id, name)
        await self._retry("ensure_chain", run)

    async def add_tokens(self, tokens: Sequence[TokenState]) -> None:
        async def run() -> None:
            async with self.pool.acquire() as conn, conn.transaction():
                await insert_tokens(conn, tokens)
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
                return await write_batch(conn, batch)
        return await self._retry("commit_batch", run)

    async def rewind(self, chain_id: int, ancestor: Cursor, tokens: Iterable[str]) -> int:
        """Undo every block above ``ancestor`` in one transaction; returns transfers removed."""
        token_list = list(tokens)

        async def run() -> int:
            await self._ensure_lock(chain_id)
            async with self.pool.acquire() as conn, conn.transaction():
                return await rewind_to(conn, chain_id, ancestor, token_list)
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
