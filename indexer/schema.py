"""The schema's versions: which one a database is at, and the forward-only steps to the code's.

Place in the pipeline: before any stage touches the database. Commands that write (``migrate``,
``run``, ``backfill``, ``custody import``, ``reconcile``, ``flags ack``) call :func:`upgrade`;
commands that only read (``status``, ``verify``, ``export``, ``flags``) call :func:`check`, which
reads ``schema_version`` and nothing else: no DDL, so a read-only login or a hot standby serves
them.

Versions: none (an empty database); 1, every release before versions were recorded (its tables
exist, ``schema_version`` does not); then one per entry of :data:`STEPS`. ``CODE_VERSION`` is
the last. An upgrade, in one transaction under the migration lock (EXCLUSIVE on
``schema_version``: only its owner can take it, readers never block on it):

1. refuse while a writer holds a chain of this database (the new schema is not for it);
2. each pending step's ``sql``, in order: what idempotent definitions cannot do by themselves
   (add a column to an existing table, drop a view whose columns change, move data);
3. ``schema.sql``, every definition, idempotent;
4. a ``schema_version`` row per step applied.

An empty database runs ``schema.sql`` alone. A database newer than the code raises
SchemaMismatch (exit 2) everywhere: old code never runs on a newer schema.

Changing ``schema.sql``: append a Step with the next version (with ``sql`` when an existing
database needs more than the definitions), and set SCHEMA_SHA256 to the file's new hash;
tests/test_schema.py fails until both are done, and checks that an upgraded database has the
catalog of a fresh one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import asyncpg

from . import logconfig
from .errors import LockHeld, SchemaMismatch, ServiceUnreachable

log = logconfig.get("schema")


@dataclass(frozen=True)
class Step:
    version: int
    title: str
    sql: str = ""  # run before schema.sql on a database at an older version


STEPS: tuple[Step, ...] = (
    Step(1, "releases before recorded versions (schema.sql applied whole at every start)"),
    Step(2, "schema_version; writer locks as tables only the owner can lock; flag notes and "
            "acknowledgement; a token's own set-up no longer opens privileged_change; holder counts kept "
            "by triggers (holders are balances > 0); a reconcile beside an import waits for it; "
            "token_kinds (upgrades in place)",
         sql="ALTER TABLE backing_flags ADD COLUMN IF NOT EXISTS acknowledged_at timestamptz;"),
    Step(3, "per-day holder counts (holder_days, holder_marks) and ledger checkpoints (holder_checkpoints, "
            "checkpoint_shares) kept as the ledger commits (a first backfill counts them once at its end: bulk_load), "
            "filled from transfer_log on upgrade: holder_history and holders_at read them; "
            "recent_blocks.block_time may be NULL (a tail block known by its hash alone)",
         sql="ALTER TABLE recent_blocks ALTER COLUMN block_time DROP NOT NULL;"),
    Step(4, "top_holders reads the ledger by size (index share_balances_rank, which a first backfill builds "
            "at its end) and ranks each token only down to the rank asked"),
    Step(5, "share_balances_rank covers holdings > 0 only, so that a lookup of one holder takes the primary key "
            "whatever the statistics",
         sql="DROP INDEX IF EXISTS share_balances_rank;"),
)
CODE_VERSION = STEPS[-1].version
READ_ONLY = ("the database is read only (a hot standby, or default_transaction_read_only): migrate, run, "
             "backfill and other writers need the primary")
# sha256 of schema.sql as of CODE_VERSION: a change of the file without a new step fails a test
SCHEMA_SHA256 = "0af1420e67718f91931c9bb905fdcf5f485710a6f21e0a061bf4ce3172cea3b0"

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version     integer PRIMARY KEY,
    title       text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    applied_by  text NOT NULL DEFAULT current_setting('application_name')
)"""


def schema_sql() -> str:
    return resources.files("indexer").joinpath("schema.sql").read_text(encoding="utf-8")


def schema_sha256() -> str:
    return hashlib.sha256(schema_sql().encode()).hexdigest()


def lock_table(chain_id: int) -> str:
    """The table whose EXCLUSIVE lock is the writer lock of ``chain_id`` in this database."""
    return f"writer_lock_{chain_id}"


async def version(conn: asyncpg.Connection) -> int | None:
    """The database's schema version: None when empty, 1 for a release before versions."""
    if await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL"):
        found = await conn.fetchval("SELECT max(version) FROM schema_version")
        if found is not None:
            return int(found)
    return 1 if await conn.fetchval("SELECT to_regclass('chains') IS NOT NULL") else None


def _verdict(found: int | None, *, writing: bool) -> None:
    if found is not None and found > CODE_VERSION:
        raise SchemaMismatch(f"the database schema is version {found}, newer than this indexer's "
                             f"({CODE_VERSION}): run the release that migrated it, or a later one")
    if not writing and found != CODE_VERSION:
        what = "has no schema" if found is None else f"schema is version {found}, older than this indexer's"
        raise SchemaMismatch(f"the database {what} ({CODE_VERSION}): run `indexer migrate` "
                             "(with the indexer's own role) first")


async def check(conn: asyncpg.Connection) -> None:
    """Readers: the database must be at CODE_VERSION exactly (SchemaMismatch otherwise)."""
    _verdict(await version(conn), writing=False)


async def upgrade(conn: asyncpg.Connection) -> list[int]:
    """Bring the database to CODE_VERSION (see the module docstring); returns the versions
    applied, [] when it already was there (then nothing but a read and a lock took place)."""
    if await version(conn) == CODE_VERSION:  # the common case: no lock, no DDL
        return []
    try:
        return await _upgrade(conn)
    except asyncpg.ReadOnlySQLTransactionError:
        raise ServiceUnreachable(READ_ONLY) from None


async def _upgrade(conn: asyncpg.Connection) -> list[int]:
    async with conn.transaction():
        try:
            await conn.execute(_VERSION_TABLE)
        except (asyncpg.UniqueViolationError, asyncpg.DuplicateTableError):
            pass  # another process created it meanwhile: the lock below orders us after it
    async with conn.transaction():
        await conn.execute("LOCK TABLE schema_version IN EXCLUSIVE MODE")
        found = await version(conn)
        _verdict(found, writing=True)
        if found == CODE_VERSION:
            return []
        await _refuse_while_writing(conn, found)
        pending = [s for s in STEPS if found is not None and s.version > found]
        for step in pending:
            if step.sql:
                await conn.execute(step.sql)
        await conn.execute(schema_sql())
        applied = pending or [s for s in STEPS if s.version == CODE_VERSION]
        await conn.executemany("INSERT INTO schema_version (version, title) VALUES ($1, $2)",
                               [(s.version, s.title) for s in applied])
    log.info("schema_upgraded", from_version=found, to_version=CODE_VERSION)
    return [s.version for s in applied]


async def _refuse_while_writing(conn: asyncpg.Connection, found: int | None) -> None:
    """LockHeld when a writer indexes a chain of this database: it runs code for the old schema."""
    if found is None:
        return
    tables = await conn.fetch(
        r"""SELECT c.relname FROM pg_class c
             WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
               AND c.relname ~ '^writer_lock_\d+$'""")
    for row in tables:
        try:
            async with conn.transaction():  # a savepoint: a refused lock must not end ours
                await conn.execute(f'LOCK TABLE "{row["relname"]}" IN EXCLUSIVE MODE NOWAIT')
        except asyncpg.LockNotAvailableError:
            chain_id = int(row["relname"].removeprefix("writer_lock_"))
            raise LockHeld(f"cannot migrate while chain id {chain_id} is being indexed by "
                           f"{await holder(conn, chain_id)}: stop it first") from None
    # a writer of a release before versions holds a session advisory lock instead
    old = await conn.fetchrow(
        """SELECT c.chain_id FROM chains c JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted
                AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND l.objsubid = 1 AND (l.classid::bigint << 32 | l.objid::bigint)
                    = hashtextextended('xstock-indexer:chain:' || c.chain_id::text, 0)""") if found == 1 else None
    if old is not None:
        raise LockHeld(f"cannot migrate while chain id {old['chain_id']} is being indexed by a writer of "
                       "the previous release: stop it first")


async def holder(conn: asyncpg.Connection, chain_id: int) -> str:
    """Who holds the writer lock of ``chain_id`` in THIS database (pg_locks lists the cluster)."""
    row = await conn.fetchrow(
        """SELECT a.pid, a.application_name, a.usename, a.backend_start
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'relation' AND l.granted AND l.mode = 'ExclusiveLock'
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND l.relation = to_regclass($1) AND l.pid <> pg_backend_pid()
            LIMIT 1""", lock_table(chain_id))
    if row is None:
        return "another process"
    since = row["backend_start"].strftime("%Y-%m-%d %H:%M:%S UTC") if row["backend_start"] else "?"
    return (f"{row['application_name'] or 'backend pid ' + str(row['pid'])} "
            f"(role {row['usename']}, since {since})")


async def ensure_lock_table(conn: asyncpg.Connection, chain_id: int) -> None:
    """Create the chain's lock table once. No grants: only its owner (and superusers) can lock
    it in a mode that conflicts with the writer's; readers cannot even see it."""
    name = lock_table(chain_id)
    if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
        return
    try:
        await conn.execute(f'CREATE TABLE IF NOT EXISTS "{name}" (); '
                           f"COMMENT ON TABLE \"{name}\" IS 'Writer lock of chain id {chain_id}: "
                           "held (LOCK TABLE ... IN EXCLUSIVE MODE, in an open transaction) by the one "
                           "process indexing that chain. Empty.'")
    except (asyncpg.UniqueViolationError, asyncpg.DuplicateTableError):
        pass  # created meanwhile by another writer


async def writer_connection(dsn: str, app_name: str, chain_id: int) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn, server_settings={
        "application_name": app_name, "idle_in_transaction_session_timeout": "0"})
    try:
        await ensure_lock_table(conn, chain_id)
    except BaseException:
        await conn.close()
        raise
    return conn


async def take_writer_lock(conn: asyncpg.Connection, chain_id: int, chain_name: str) -> None:
    """An EXCLUSIVE lock on the chain's lock table, in a transaction left open on ``conn`` (the
    lock lives as long as the connection). The transaction writes nothing and keeps no snapshot
    (pings go through the simple protocol), so it holds back no vacuum. Closes ``conn`` and
    raises LockHeld naming the holder when another process has it."""
    if await conn.fetchval("SELECT pg_is_in_recovery() OR current_setting('default_transaction_read_only') = 'on'"):
        await conn.close()
        raise ServiceUnreachable(READ_ONLY)
    try:
        await conn.execute("BEGIN")
        await conn.execute(f'LOCK TABLE "{lock_table(chain_id)}" IN EXCLUSIVE MODE NOWAIT')
    except asyncpg.ReadOnlySQLTransactionError:
        await conn.close()
        raise ServiceUnreachable(READ_ONLY) from None
    except asyncpg.LockNotAvailableError:
        await conn.execute("ROLLBACK")
        who = await holder(conn, chain_id)
        await conn.close()
        raise LockHeld(f"chain {chain_name} (id {chain_id}) is already being indexed by {who}; "
                       "only one writer per chain") from None
    except BaseException:
        await conn.close()
        raise


async def apply_role_settings(conn: asyncpg.Connection, analyst_statement_timeout: float) -> None:
    """statement_timeout in this database for ``analyst`` and every login that is a member of it
    (a role's settings apply to whoever logs in as that role, not to its members). 0 leaves them
    alone. Written only where different; a role we may not alter (CREATEROLE and, since
    PostgreSQL 16, ADMIN OPTION on it are needed) gets a warning naming it."""
    if analyst_statement_timeout <= 0:
        return
    wanted = f"{int(analyst_statement_timeout * 1000)}ms"
    roles = await conn.fetch(
        """WITH RECURSIVE members(oid) AS (
               SELECT oid FROM pg_roles WHERE rolname = 'analyst'
               UNION SELECT m.member FROM pg_auth_members m JOIN members ON m.roleid = members.oid)
           SELECT r.rolname,
                  (SELECT array_to_string(s.setconfig, ',') FROM pg_db_role_setting s
                    WHERE s.setrole = r.oid AND s.setdatabase =
                          (SELECT oid FROM pg_database WHERE datname = current_database())) AS config
             FROM members JOIN pg_roles r ON r.oid = members.oid
            WHERE r.rolname = 'analyst' OR (r.rolcanlogin AND NOT r.rolsuper)""")
    db = _ident(await conn.fetchval("SELECT current_database()"))
    for role in roles:
        if f"statement_timeout={wanted}" in (role["config"] or "").split(","):
            continue
        try:
            await conn.execute(f"ALTER ROLE {_ident(role['rolname'])} IN DATABASE {db} "
                               f"SET statement_timeout = '{wanted}'")
        except asyncpg.InsufficientPrivilegeError as exc:
            log.warning("analyst_timeout_not_set", role=role["rolname"], reason=str(exc).splitlines()[0],
                        hint="a superuser can: ALTER ROLE ... IN DATABASE ... SET statement_timeout")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
