"""Schema versions and the locks: a database of the previous release upgrades in place with its
data, a newer database stops older code, read-only commands take no DDL and work with a
read-only login, and only the indexer's role can take or hold the writer lock of a chain."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from devnet.deploy import World
from devnet.simulate import Simulator
from indexer import schema
from tests.conftest import REPO_ROOT, PgServer, cli, execute, run_sync, with_database
from tests.old_release import copy_into_release

V1_SCHEMA = REPO_ROOT / "tests" / "fixtures" / "schema_v1.sql"  # schema.sql of the release before versions


def with_user(url: str, user: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}@{rest.split('@', 1)[-1]}"


async def rows(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


@pytest.fixture
def login(pg_server: PgServer) -> Iterator[str]:
    """A fresh login role name (cluster-wide: dropped afterwards, its grants with it)."""
    name = f"t_login_{uuid.uuid4().hex[:10]}"
    yield name
    run_sync(execute(pg_server.url, f"DROP OWNED BY {name}; DROP ROLE IF EXISTS {name}"))


def test_schema_sql_changes_come_with_a_step() -> None:
    """Editing schema.sql without a new step would leave migrated databases behind it."""
    assert [s.version for s in schema.STEPS] == list(range(1, len(schema.STEPS) + 1))
    digest = hashlib.sha256((REPO_ROOT / "schema.sql").read_bytes()).hexdigest()
    assert digest == schema.SCHEMA_SHA256, (
        "schema.sql changed: append a Step to indexer/schema.py STEPS (with sql for what an existing "
        f"database needs beyond the definitions) and set SCHEMA_SHA256 = {digest!r}")
    # what the package loads is that file itself: indexer/schema.sql is a link to it, never a copy
    packaged = REPO_ROOT / "indexer" / "schema.sql"
    assert packaged.is_symlink() and packaged.resolve() == (REPO_ROOT / "schema.sql").resolve()
    assert hashlib.sha256(schema.schema_sql().encode()).hexdigest() == digest


# ------------------------------------------------------------------ the previous release, upgraded

CATALOG = """
SELECT 'column' AS kind, c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) AS what
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p')
UNION ALL SELECT 'index', indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = current_schema()
UNION ALL SELECT 'function', p.oid::regprocedure::text || ' ' || md5(p.prosrc) FROM pg_proc p
 WHERE p.pronamespace = current_schema()::regnamespace
UNION ALL SELECT 'view', c.relname || ' ' || md5(pg_get_viewdef(c.oid)) FROM pg_class c
 WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'v'
UNION ALL SELECT 'trigger', tgname || ' ' || tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal
UNION ALL SELECT 'grant', table_name || ' ' || privilege_type FROM information_schema.role_table_grants
 WHERE grantee = 'analyst' AND table_schema = current_schema()
"""
DATA_TABLES = ("chains", "cursors", "recent_blocks", "tokens", "transfer_log", "share_balances",
               "multiplier_changes", "token_events", "privileged_events", "backing_flags", "indexer_settings")


async def copy_into_v1(source: str, target: str) -> dict[str, int]:
    """The previous release's database at ``target``, with the rows the current code indexed at
    ``source`` (same tables, same columns in that release)."""
    return await copy_into_release(source, target, V1_SCHEMA.read_text(), DATA_TABLES)


async def test_previous_release_upgrades_in_place_with_its_data(
        world: World, world_config: Path, database_url: str, pg_server: PgServer, tmp_path: Path) -> None:
    sim = Simulator(world, seed=1, n_holders=30)
    sim.run(blocks=4, moves_per_block=6)
    assert cli("backfill", config=world_config).returncode == 0
    assert cli("reconcile", config=world_config).returncode == 0
    old = f"t_{uuid.uuid4().hex[:16]}"
    await execute(pg_server.url, f'CREATE DATABASE "{old}"')
    try:
        old_url = pg_server.url_for(old)
        counts = await copy_into_v1(database_url, old_url)
        assert counts["transfer_log"] > 0 and counts["share_balances"] > 0
        config = world.write_toml(tmp_path / "old.toml", old_url)
        refused = cli("status", config=config)  # readers never migrate: they say what to do
        assert refused.returncode == 2 and "run `indexer migrate`" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        done = cli("migrate", config=config)
        assert done.returncode == 0 and "applied step 2, 3, 4, 5" in done.stdout, done.stdout + done.stderr
        for table, n in counts.items():  # every row kept
            assert (await rows(old_url, f"SELECT count(*) AS n FROM {table}"))[0]["n"] == n, table
        versions = await rows(old_url, "SELECT version FROM schema_version ORDER BY 1")
        assert [r["version"] for r in versions] == [2, 3, 4, 5]
        fresh, upgraded = await rows(database_url, CATALOG), await rows(old_url, CATALOG)
        assert sorted(map(tuple, upgraded)) == sorted(map(tuple, fresh))  # the catalog of a fresh database
        sim.run(blocks=3, moves_per_block=5)  # and it goes on indexing, exactly
        assert cli("backfill", config=config).returncode == 0
        audit = cli("verify", config=config)
        assert audit.returncode == 0 and "equal" in audit.stdout, audit.stdout + audit.stderr
        again = cli("migrate", config=config)
        assert "nothing applied" in again.stdout, again.stdout
    finally:
        await execute(pg_server.url, f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)')


async def test_a_newer_schema_stops_this_code_with_one_line(world_config: Path, database_url: str) -> None:
    assert cli("migrate", config=world_config).returncode == 0
    await execute(database_url, f"INSERT INTO schema_version (version, title) VALUES ({schema.CODE_VERSION + 1}, 'x')")
    for command in (["migrate"], ["status"], ["backfill"], ["run"], ["flags"], ["reconcile"]):
        done = cli(*command, config=world_config, timeout=60)
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr.count("\n") == 1 and "newer than this indexer's" in done.stderr, (command, done.stderr)


# --------------------------------------------------------------------- read only: no DDL at all

async def test_read_only_commands_work_with_a_read_only_login(
        world: World, world_config: Path, database_url: str, login: str, tmp_path: Path) -> None:
    """A login that can only read, in read-only transactions (as on a hot standby): status,
    verify, export and flags work; nothing they do can be DDL."""
    Simulator(world, seed=3, n_holders=6).run(blocks=2, moves_per_block=4)
    assert cli("backfill", config=world_config).returncode == 0
    await execute(database_url, f"CREATE ROLE {login} LOGIN IN ROLE pg_read_all_data; "
                                f"ALTER ROLE {login} SET default_transaction_read_only = on")
    reader = {"DATABASE_URL": with_user(database_url, login)}
    for command in (["status"], ["verify"], ["flags", "--all"],
                    ["export", "holders", "--token", "TSLAx", "--output", str(tmp_path / "h.csv")]):
        done = cli(*command, config=world_config, env=reader)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    written = cli("reconcile", config=world_config, env=reader)  # a writer, refused by the server
    assert written.returncode != 0


# ----------------------------------------------------------------------------------- the locks

async def test_the_analyst_role_can_neither_take_nor_forge_the_writer_lock(
        world: World, world_config: Path, database_url: str, login: str) -> None:
    assert cli("backfill", config=world_config).returncode == 0
    await execute(database_url, f"CREATE ROLE {login} LOGIN IN ROLE analyst")
    analyst = await asyncpg.connect(with_user(database_url, login))
    try:
        table = schema.lock_table(world.chain_id)
        async with analyst.transaction():
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await analyst.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
        async with analyst.transaction():
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await analyst.execute("LOCK TABLE schema_version IN EXCLUSIVE MODE")  # the migration lock
        async with analyst.transaction():
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await analyst.execute("LOCK TABLE backing_flags IN SHARE ROW EXCLUSIVE MODE")  # reconcile's
        # the keys of the previous release's advisory locks, held by the analyst: no effect now
        await analyst.execute(
            "SELECT pg_advisory_lock(hashtextextended('xstock-indexer:chain:' || $1::text, 0)), "
            "pg_advisory_lock(hashtext('xstock-indexer:reconcile')), "
            "pg_advisory_lock(hashtext('xstock-indexer:migrate'))",
            str(world.chain_id))
        # and reading along (a long analyst transaction on the views) does not block the writer
        await analyst.execute("BEGIN; SELECT count(*) FROM holders; SELECT * FROM backing_flags")
        for command in (["backfill"], ["reconcile"], ["migrate"]):
            done = cli(*command, config=world_config, timeout=60)
            assert done.returncode == 0, (command, done.stderr)
    finally:
        await analyst.close()


async def test_the_holder_named_indexes_this_database(
        world: World, world_config: Path, database_url: str, pg_server: PgServer, tmp_path: Path) -> None:
    """Two databases of one cluster index the same chain: each has its own lock; a second
    writer of one database is told who holds that database's lock, not the other's."""
    other = f"t_{uuid.uuid4().hex[:16]}"
    await execute(pg_server.url, f'CREATE DATABASE "{other}"')
    holders: list[asyncpg.Connection] = []
    try:
        other_config = world.write_toml(tmp_path / "other.toml", pg_server.url_for(other))
        for url, config in ((pg_server.url_for(other), other_config), (database_url, world_config)):
            assert cli("migrate", config=config).returncode == 0
            conn = await schema.writer_connection(url, f"holder-of-{url.rsplit('/', 1)[-1]}", world.chain_id)
            await schema.take_writer_lock(conn, world.chain_id, "anvil")
            holders.append(conn)
        done = cli("backfill", config=world_config)
        assert done.returncode == 2 and done.stderr.count("indexer: error:") == 1, done.stderr
        assert f"holder-of-{database_url.rsplit('/', 1)[-1]}" in done.stderr, done.stderr
        await holders.pop().close()  # this database's holder goes; the other database's stays
        done = cli("backfill", config=world_config)
        assert done.returncode == 0, done.stderr
    finally:
        for conn in holders:
            await conn.close()
        await execute(pg_server.url, f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')


async def test_the_writer_lock_holds_back_no_vacuum(world: World, database_url: str, world_config: Path) -> None:
    """The lock is a transaction left open for months: it must have no xid and no snapshot."""
    assert cli("migrate", config=world_config).returncode == 0
    conn = await schema.writer_connection(database_url, "long-writer", world.chain_id)
    try:
        await schema.take_writer_lock(conn, world.chain_id, "anvil")
        await conn.execute("SELECT 1")
        (row,) = await rows(database_url, "SELECT state, backend_xid, backend_xmin FROM pg_stat_activity "
                                          "WHERE pid = $1", conn.get_server_pid())
        assert tuple(row.values()) == ("idle in transaction", None, None)
    finally:
        await conn.close()


async def test_migrate_waits_for_no_writer_to_run_code_of_an_older_schema(
        world: World, world_config: Path, database_url: str) -> None:
    assert cli("migrate", config=world_config).returncode == 0
    conn = await schema.writer_connection(database_url, "old-writer", world.chain_id)
    try:
        await schema.take_writer_lock(conn, world.chain_id, "anvil")
        await execute(database_url, f"DELETE FROM schema_version WHERE version = {schema.CODE_VERSION}")
        done = cli("migrate", config=world_config, timeout=60)
        assert done.returncode == 2 and "cannot migrate while chain id" in done.stderr, done.stderr
        assert "old-writer" in done.stderr
    finally:
        await conn.close()
    assert cli("migrate", config=world_config).returncode == 0


def test_analyst_logins_get_the_statement_timeout(world_config: Path, database_url: str, login: str) -> None:
    text = world_config.read_text().replace("[database]\n", '[database]\nanalyst_statement_timeout = "0.5s"\n')
    world_config.write_text(text)
    assert cli("migrate", config=world_config).returncode == 0
    run_sync(execute(database_url, f"CREATE ROLE {login} LOGIN IN ROLE analyst"))
    assert cli("migrate", config=world_config).returncode == 0  # every writer's start covers new logins
    run_sync(_timeout_applies(database_url, login))


async def _timeout_applies(database_url: str, login: str) -> None:
    conn = await asyncpg.connect(with_user(database_url, login))
    try:
        assert await conn.fetchval("SHOW statement_timeout") == "500ms"
        with pytest.raises(asyncpg.QueryCanceledError):
            await conn.execute("SELECT pg_sleep(5)")
    finally:
        await conn.close()
    elsewhere = with_database(database_url, "postgres")  # the setting is this database's only
    conn = await asyncpg.connect(with_user(elsewhere, login))
    try:
        assert await conn.fetchval("SHOW statement_timeout") != "500ms"
    finally:
        await conn.close()
