"""holder_days (per-day holder counts kept as the ledger commits) and holder_marks must equal a
recount from transfer_log after every kind of write: batches within a day and across days, a
batch spanning days, a reorg's rewind in the middle of a day, a multiplier change. holder_history
(which reads holder_days) must answer exactly what the release before it answered by replaying
transfer_log (its definition is taken from tests/fixtures/schema_v2.sql), and a database of that
release upgrades in place with holder_days filled."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from devnet.deploy import Transactor, World
from devnet.simulate import Simulator
from indexer.chain_writer import writer
from indexer.pipeline import catch_up
from indexer.store import Store
from tests.conftest import REPO_ROOT, PgServer, cli, execute
from tests.custody_desk import ONE, Desk
from tests.old_release import copy_into_release

V2_SCHEMA = REPO_ROOT / "tests" / "fixtures" / "schema_v2.sql"  # schema.sql of version 2
DAY = 86_400
CHECKPOINT_MOVES = 15
REPLAY = """SELECT a.holder, sum(a.delta) FROM transfer_log l
             CROSS JOIN LATERAL (VALUES (l.to_address, l.shares), (l.from_address, -l.shares)) AS a(holder, delta)
             WHERE l.chain_id = $1 AND l.token = $2 AND l.block_number <= $3
               AND a.holder <> '0x0000000000000000000000000000000000000000'
             GROUP BY 1 HAVING sum(a.delta) <> 0 ORDER BY 1"""
OTHER = "0x" + "c7" * 20


def v2_function(name: str) -> str:
    """Version 2's definition of function ``name``, renamed v2_<name>."""
    text = V2_SCHEMA.read_text()
    found = re.search(rf"CREATE OR REPLACE FUNCTION {name}\(.*?\nEND \$\$;\n", text, flags=re.DOTALL)
    assert found, name
    return found.group(0).replace(f"FUNCTION {name}(", f"FUNCTION v2_{name}(", 1)


async def install_v2_functions(url: str) -> None:
    await execute(url, v2_function("holder_history_from") + v2_function("holders_at"))
    await execute(url, "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET xstock_indexer.checkpoint_moves = "
                       f"{CHECKPOINT_MOVES}', current_database()); END $$")  # from the next connection on


async def fetch(url: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(url)
    try:
        return await rows(conn, sql, *args)
    finally:
        await conn.close()


async def rows(conn: asyncpg.Connection, sql: str, *args: object) -> list[tuple[object, ...]]:
    return [tuple(r) for r in await conn.fetch(sql, *args)]


async def days_equal_a_recount(url: str) -> int:
    """holder_days and holder_marks equal a replay of transfer_log; holder_history equals version
    2's answer for every token, from its first day and from a later one. Returns the days compared."""
    conn = await asyncpg.connect(url)
    try:
        compared = await days_on(conn)
    finally:
        await conn.close()
    await checkpoints_equal_a_replay(url)
    return compared


async def days_on(conn: asyncpg.Connection) -> int:
    kept = await rows(conn, "SELECT * FROM holder_days ORDER BY 1, 2, 3")
    assert kept == await rows(conn, "SELECT * FROM holder_days_recount() ORDER BY 1, 2, 3")
    recount = {r[:3]: r[3:] for r in await rows(conn, "SELECT * FROM holder_marks_recount()")}
    marks = {r[:3]: r[3:] for r in await rows(conn, "SELECT * FROM holder_marks")}
    assert set(recount) <= set(marks)
    for key, (day, start, first_in, first_in_day) in marks.items():
        if key not in recount:  # every move of the holder was rewound: nothing is known of it
            assert (day, start, first_in, first_in_day) == (None, None, None, None), key
            continue
        assert (first_in, first_in_day) == recount[key][2:], key
        if day is not None:  # NULL: a day before a rewind's ancestor day, which no batch reaches
            assert (day, start) == recount[key][:2], key
    compared = 0
    for chain_id, token, first in await rows(
            conn, "SELECT chain_id, token, min(day) FROM holder_days GROUP BY 1, 2 ORDER BY 1, 2"):
        for since in (None, first + timedelta(days=1)):
            now = await rows(conn, "SELECT * FROM holder_history_from($1, $2, $3)", chain_id, token, since)
            assert now == await rows(conn, "SELECT * FROM v2_holder_history_from($1, $2, $3)", chain_id, token, since)
            compared += len(now)
    view = await rows(conn, "SELECT * FROM holder_history ORDER BY chain_id, token, day")
    assert len(view) >= compared // 2
    return compared


# holders_at of one token at each block of $3, ordered by block and holder: one statement for all
# the blocks compared (a connection and a round trip per block made up most of this file's time).
AT_BLOCKS = "SELECT b, h.* FROM unnest($3::bigint[]) AS b CROSS JOIN LATERAL {}($1, $2, b) AS h ORDER BY 1, 2"


async def checkpoints_equal_a_replay(url: str) -> int:
    """Every checkpoint holds the ledger at its block; holders_at equals version 2's answer at the
    checkpoints, next to them and at every ninth block. Returns the checkpoints seen."""
    conn = await asyncpg.connect(url)
    try:
        return await checkpoints_on(conn)
    finally:
        await conn.close()


async def checkpoints_on(conn: asyncpg.Connection) -> int:
    points = await rows(conn, "SELECT chain_id, token, block_number FROM holder_checkpoints ORDER BY 1, 2, 3")
    for chain_id, token, block in points:
        kept = await rows(conn, "SELECT holder, shares FROM checkpoint_shares WHERE chain_id = $1 AND token = $2 "
                                "AND block_number = $3 ORDER BY 1", chain_id, token, block)
        assert kept == await rows(conn, REPLAY, chain_id, token, block), (token, block)
    near = {(c, t, b + d) for c, t, b in points for d in (-1, 0, 1)}
    for chain_id, token, start, synced in await rows(conn, "SELECT chain_id, token, start_block, synced_block "
                                                           "FROM tokens ORDER BY 1, 2"):
        blocks = sorted({b for c, t, b in near if (c, t) == (chain_id, token) and start <= b <= synced}
                        | set(range(start, synced + 1, 9)) | {synced})
        now = await rows(conn, AT_BLOCKS.format("holders_at"), chain_id, token, blocks)
        then = await rows(conn, AT_BLOCKS.format("v2_holders_at"), chain_id, token, blocks)
        if now != then:
            block = min(r[0] for r in set(now) ^ set(then))
            assert [r for r in now if r[0] == block] == [r for r in then if r[0] == block], (token, block)
        assert now == then, token
    return len(points)


@pytest.fixture
def desk(world: World, world_config: Path, database_url: str, tmp_path: Path) -> Desk:
    return Desk(world, world_config, database_url, tmp_path)


def next_day(desk: Desk, offset: int = 100) -> int:
    """Move the chain's clock to ``offset`` seconds into the next UTC day; returns that time."""
    at = (desk.now() // DAY + 1) * DAY + offset
    desk.mine(at)
    return at


async def test_days_follow_batches_days_a_reorg_and_a_split(desk: Desk, database_url: str) -> None:
    await install_v2_functions_after_migrate(desk, database_url)
    sim = Simulator(desk.world, seed=7, n_holders=25)
    next_day(desk)
    sim.run(blocks=3, moves_per_block=8)
    await desk.index()
    assert await days_equal_a_recount(database_url) > 0
    sim.run(blocks=3, moves_per_block=8)  # the same day, another batch
    await desk.index()
    await days_equal_a_recount(database_url)
    next_day(desk)
    sim.run(blocks=3, moves_per_block=8)
    next_day(desk)
    sim.run(blocks=2, moves_per_block=8)  # one batch over two days
    await desk.index()
    days = await days_equal_a_recount(database_url)
    assert len(await fetch(database_url, "SELECT DISTINCT day FROM holder_days")) >= 3, days
    assert await checkpoints_equal_a_replay(database_url) >= 4
    # A reorg from the middle of a day: the branch indexed, then replaced by another.
    owner, token = desk.world.roles["owner"], desk.world.tokens["TSLAx"]
    t = desk.now() + 10
    desk.call("minter", "TSLAx", "mint", [owner, 10 * ONE], at=t)
    desk.call("owner", "TSLAx", "transfer", [OTHER, ONE], at=t + 1)
    await desk.index()
    await days_equal_a_recount(database_url)
    snapshot = desk.rpc.call("evm_snapshot", [])
    desk.call("owner", "TSLAx", "transfer", [OTHER, 9 * ONE], at=t + 2)  # the owner leaves
    desk.call("minter", "TSLAx", "mint", ["0x" + "c8" * 20, ONE], at=t + 3)
    at = (t // DAY + 1) * DAY + 5
    desk.call("owner", "TSLAx", "transferShares", ["0x" + "c9" * 20, 0], at=at)  # and the next day
    desk.call("minter", "TSLAx", "mint", ["0x" + "ca" * 20, ONE], at=at + 1)
    await desk.index()
    await days_equal_a_recount(database_url)
    before = await fetch(database_url, "SELECT count(*) FROM holder_days")
    desk.rpc.call("evm_revert", [snapshot])  # a branch without those moves, then others
    desk.tx = Transactor(desk.rpc)  # nonces of the new branch
    desk.call("owner", "TSLAx", "transfer", ["0x" + "cb" * 20, 2 * ONE], at=t + 2)
    for k in range(3, 8):  # longer than the branch it replaces
        desk.mine(t + k)
    await desk.index()
    assert await fetch(database_url, "SELECT count(*) FROM holder_days") < before  # the next day is gone
    await days_equal_a_recount(database_url)
    rows = await fetch(database_url, "SELECT first_in FROM holder_marks WHERE token = $1 AND holder = ANY($2)",
                       token, ["0x" + "c8" * 20, "0x" + "ca" * 20])
    assert rows == [(None,), (None,)]  # the rewound receivers have no first receipt left
    # A 1:2.5 reverse split: counts of shares stay, supply follows the multiplier.
    desk.call("multiplier_updater", "TSLAx", "updateMultiplierValue", [4 * ONE // 10, ONE, 0], at=t + 10)
    desk.call("owner", "TSLAx", "transfer", [OTHER, 1], at=t + 11)
    await desk.index()
    await days_equal_a_recount(database_url)
    (last,) = await fetch(database_url, "SELECT multiplier, total_supply_raw FROM holder_history WHERE token = $1 "
                                        "ORDER BY day DESC LIMIT 1", token)
    (now,) = await fetch(database_url, "SELECT multiplier, total_supply_raw FROM token_supply WHERE token = $1", token)
    assert last == now


async def install_v2_functions_after_migrate(desk: Desk, database_url: str) -> None:
    assert cli("migrate", config=desk.config).returncode == 0
    await install_v2_functions(database_url)


# ------------------------------------------------------------------ a version 2 database, upgraded

DATA_TABLES = ("chains", "cursors", "recent_blocks", "tokens", "transfer_log", "share_balances",
               "multiplier_changes", "token_events", "privileged_events", "backing_flags", "indexer_settings",
               "holder_counts", "small_holdings", "token_kinds")


async def copy_into_v2(source: str, target: str) -> dict[str, int]:
    return await copy_into_release(source, target, V2_SCHEMA.read_text(), DATA_TABLES, version=2)


async def test_a_version_2_database_upgrades_and_fills_holder_days(
        world: World, world_config: Path, database_url: str, pg_server: PgServer, tmp_path: Path) -> None:
    desk = Desk(world, world_config, database_url, tmp_path)
    sim = Simulator(world, seed=3, n_holders=20)
    next_day(desk)
    sim.run(blocks=3, moves_per_block=6)
    next_day(desk)
    sim.run(blocks=3, moves_per_block=6)
    await desk.index()
    old = f"t_{uuid.uuid4().hex[:16]}"
    await execute(pg_server.url, f'CREATE DATABASE "{old}"')
    try:
        old_url = pg_server.url_for(old)
        counts = await copy_into_v2(database_url, old_url)
        assert counts["transfer_log"] > 0
        await install_v2_functions(old_url)
        assert await fetch(old_url, "SELECT count(*) FROM transfer_log") > [(3 * CHECKPOINT_MOVES,)]
        v2_answer = await fetch(old_url, "SELECT t.token, h.* FROM tokens t CROSS JOIN LATERAL "
                                         "holder_history_from(t.chain_id, t.token, NULL) h ORDER BY 1, 2")
        config = world.write_toml(tmp_path / "old.toml", old_url)
        done = cli("migrate", config=config)
        assert done.returncode == 0 and "applied step 3, 4, 5" in done.stdout, done.stdout + done.stderr
        assert [r[0] for r in await fetch(old_url, "SELECT version FROM schema_version ORDER BY 1")] == [2, 3, 4, 5]
        assert await fetch(old_url, "SELECT count(*) FROM holder_days") != [(0,)]
        await days_equal_a_recount(old_url)
        assert await checkpoints_equal_a_replay(old_url) >= 3  # filled from transfer_log
        assert v2_answer == await fetch(old_url, "SELECT t.token, h.* FROM tokens t CROSS JOIN LATERAL "
                                                 "holder_history_from(t.chain_id, t.token, NULL) h ORDER BY 1, 2")
        sim.run(blocks=2, moves_per_block=5)  # and it goes on indexing, exactly
        assert cli("backfill", config=config).returncode == 0
        await days_equal_a_recount(old_url)
    finally:
        await execute(pg_server.url, f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)')


async def test_a_first_load_counts_days_once_at_its_end(desk: Desk, database_url: str) -> None:
    """A first backfill leaves the per-day counts and checkpoints to its end (bulk_load); one
    killed before that end is finished by the next writer's start; a batch that runs while a
    bulk load is pending skips the upkeep, and the end still counts its moves."""
    await install_v2_functions_after_migrate(desk, database_url)
    sim = Simulator(desk.world, seed=11, n_holders=20)
    next_day(desk)
    sim.run(blocks=3, moves_per_block=8)
    next_day(desk)
    sim.run(blocks=3, moves_per_block=8)
    first = cli("--log-json", "backfill", config=desk.config)
    assert first.returncode == 0, first.stderr
    assert '"holder_days_counted"' in first.stderr  # counted once, at the end
    assert await fetch(database_url, "SELECT count(*) FROM bulk_load") == [(0,)]
    await analyzed(database_url)
    await days_equal_a_recount(database_url)
    assert await checkpoints_equal_a_replay(database_url) >= 2
    # A first load killed after some batches: its row stays, and batches meanwhile skip the upkeep.
    await execute(database_url, "INSERT INTO bulk_load DEFAULT VALUES")
    next_day(desk)
    sim.run(blocks=3, moves_per_block=8)
    days_before = await fetch(database_url, "SELECT count(*) FROM holder_days")
    await index_without_migrate(desk)
    assert await fetch(database_url, "SELECT count(*) FROM holder_days") == days_before  # skipped
    assert await fetch(database_url, "SELECT count(*) FROM bulk_load") == [(1,)]
    again = cli("--log-json", "migrate", config=desk.config)  # any writer's start finishes it
    assert again.returncode == 0 and '"holder_days_counted"' in again.stderr, again.stderr
    assert await fetch(database_url, "SELECT count(*) FROM bulk_load") == [(0,)]
    await days_equal_a_recount(database_url)
    await checkpoints_equal_a_replay(database_url)
    later = cli("--log-json", "backfill", config=desk.config)  # nothing pending: nothing counted
    assert later.returncode == 0 and '"holder_days_counted"' not in later.stderr, later.stderr


async def analyzed(url: str) -> None:
    """The ledger and the per-day tables have statistics once a first load is counted (a batch's
    upkeep planned without them looked holders up by share_balances_rank, a whole token's
    ledger per holder)."""
    for table in ("share_balances", "holder_marks"):
        assert await fetch(url, "SELECT count(*) > 0 FROM pg_stats WHERE tablename = $1 AND attname = 'holder'",
                           table) == [(True,)], table


async def index_without_migrate(desk: Desk) -> None:
    """The pipeline of a writer whose start did not finish a pending bulk load (one that runs
    beside the first load, after that load's start)."""
    settings = desk.settings
    store = await Store.open(settings.database_url)
    try:
        async with writer(settings, settings.chains[0], store) as sync:
            await catch_up(sync, await sync.target(), lambda _: None)
    finally:
        await store.close()
