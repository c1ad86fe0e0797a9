"""top_holders ranks each token's holders by reading share_balances_rank from the largest holding
down to the rank asked. Its answer must equal a full recount of the ledger (rank = 1 + the
holders with more shares, dust left out as balanceOf leaves it out) after batches, a reorg's
rewind and a multiplier change; `rank <= n` must read about n rows, not the token's holders; a
first backfill builds the index at its end (the next writer's start, when it was killed); and a
database of version 3 upgrades to it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from devnet.deploy import World
from devnet.simulate import Simulator
from indexer.schema import schema_sql
from tests.conftest import REPO_ROOT, PgServer, cli, execute
from tests.custody_desk import ONE, Desk
from tests.old_release import copy_into_release
from tests.oracle import Oracle
from tests.test_schema import CATALOG

V3_SCHEMA = REPO_ROOT / "tests" / "fixtures" / "schema_v3.sql"  # schema.sql of version 3
V4_SCHEMA = REPO_ROOT / "tests" / "fixtures" / "schema_v4.sql"  # schema.sql of version 4
A, B, C = ("0x" + x * 20 for x in ("a1", "a2", "a3"))
DUST, SMALL = "0x" + "d1" * 20, "0x" + "d3" * 20
TOP = "SELECT chain_id, token, rank, holder, shares, balance_raw FROM top_holders"
LEDGER = """SELECT b.chain_id, b.token, b.holder, b.shares, t.multiplier
              FROM share_balances b JOIN tokens t USING (chain_id, token)"""


@pytest.fixture
def desk(world: World, world_config: Path, database_url: str, tmp_path: Path) -> Desk:
    return Desk(world, world_config, database_url, tmp_path)


async def fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def recount(ledger: list[asyncpg.Record]) -> set[tuple[Any, ...]]:
    """The ranking from the ledger alone: holders are balances >= 1 base unit; rank is 1 + the
    number of holders of the same token with more shares."""
    held = [(r["chain_id"], r["token"], r["holder"], r["shares"], r["shares"] * r["multiplier"] // 10**18)
            for r in ledger if r["multiplier"] is not None and r["shares"] > 0]
    held = [h for h in held if h[4] > 0]
    return {(c, t, 1 + sum(1 for o in held if o[:2] == (c, t) and o[3] > s), h, s, b) for c, t, h, s, b in held}


async def ranks_equal_a_recount(url: str) -> set[tuple[Any, ...]]:
    expected = recount(await fetch(url, LEDGER))
    assert {tuple(r) for r in await fetch(url, TOP)} == expected
    for n in (1, 2, 3, 4, 6):  # the cut the analyst asks for, ties at its edge included
        cut = {tuple(r) for r in await fetch(url, f"{TOP} WHERE rank <= $1", n)}
        assert cut == {r for r in expected if r[2] <= n}, n
    return expected


async def test_ranks_equal_a_recount_after_batches_a_reorg_and_a_multiplier_change(desk: Desk) -> None:
    owner, token = desk.world.roles["owner"], desk.world.tokens["TSLAx"]
    t = desk.now() + 10
    desk.call("minter", "TSLAx", "mint", [owner, 10 * ONE], at=t)
    desk.call("owner", "TSLAx", "transferShares", [A, 2 * ONE], at=t + 1)
    desk.call("owner", "TSLAx", "transferShares", [B, 2 * ONE], at=t + 2)  # equal to A: one rank
    desk.call("owner", "TSLAx", "transferShares", [DUST, 1], at=t + 3)
    desk.call("owner", "TSLAx", "transferShares", [SMALL, 3], at=t + 4)
    await desk.index()
    ranked = await ranks_equal_a_recount(desk.database_url)
    assert {(r[3], r[2]) for r in ranked if r[1] == token} == {(owner, 1), (A, 2), (B, 2), (SMALL, 4), (DUST, 5)}

    snapshot = desk.rpc.call("evm_snapshot", [])
    desk.call("owner", "TSLAx", "transferShares", [B, ONE], at=t + 5)  # B passes A
    desk.call("owner", "TSLAx", "transferShares", [C, 5 * ONE - 4], at=t + 6)  # the owner leaves, C first
    await desk.index()
    ranked = await ranks_equal_a_recount(desk.database_url)
    assert [r[3] for r in sorted(r for r in ranked if r[1] == token and r[2] <= 3)] == [C, B, A]
    desk.rpc.call("evm_revert", [snapshot])  # a branch without those moves: the ranks go back
    desk.tx.forget_nonces()
    for k in range(5, 9):
        desk.mine(t + k)
    await desk.index()
    reverted = await ranks_equal_a_recount(desk.database_url)
    assert {(r[3], r[2]) for r in reverted if r[1] == token} == {(owner, 1), (A, 2), (B, 2), (SMALL, 4), (DUST, 5)}

    # A 1:2.5 reverse split: 1 share is worth 0.4 of a base unit (dust, no longer a holder), 3 shares 1.2.
    desk.call("multiplier_updater", "TSLAx", "updateMultiplierValue", [4 * ONE // 10, ONE, 0], at=t + 10)
    desk.call("owner", "TSLAx", "transfer", [C, ONE], at=t + 11)  # 2.5 shares; the indexer sees the multiplier
    await desk.index()
    ranked = await ranks_equal_a_recount(desk.database_url)
    mine = {r[3]: (r[2], int(r[5])) for r in ranked if r[1] == token}
    assert DUST not in mine and [mine[h][0] for h in (owner, C, A, B, SMALL)] == [1, 2, 3, 3, 5], mine
    (block,) = await fetch(desk.database_url, "SELECT synced_block FROM tokens WHERE token = $1", token)
    chain = Oracle(desk.world.rpc_url).balances(token, [*mine, DUST], block["synced_block"]).balances
    assert {h: b for h, b in chain.items() if b > 0} == {h: b for h, (_, b) in mine.items()}  # balanceOf


async def test_the_first_ranks_read_the_index_not_the_ledger(database_url: str) -> None:
    """50,000 holders in 1,000 groups of equal shares: rank <= 20 reads the first group and
    the row after it (where the rank passes 20) down share_balances_rank, however large the token."""
    token = "0x" + "7e" * 20
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(schema_sql())
        await conn.execute("INSERT INTO chains (chain_id, name) VALUES (1, 'one')")
        await conn.execute(
            "INSERT INTO tokens (chain_id, token, symbol, name, underlying, decimals, kind, source, start_block, "
            "synced_block, total_shares, multiplier) VALUES (1, $1, 'BIGx', 'Big', 'BIG', 18, 'xstock', "
            "'factory:test', 1, 9, 0, 1000000000000000000)", token)
        await conn.execute("INSERT INTO share_balances (chain_id, token, holder, shares, updated_block) "
                           "SELECT 1, $1, '0x' || lpad(to_hex(i), 40, '0'), (i % 1000) * 10::numeric ^ 18, 9 "
                           "FROM generate_series(1, 50000) i", token)
        await conn.execute("UPDATE tokens SET total_shares = (SELECT sum(shares) FROM share_balances)")
        await conn.execute("ANALYZE share_balances; ANALYZE tokens")
        for n, rows in ((20, 50), (60, 100), (1, 50)):
            sql = f"SELECT rank, holder FROM top_holders WHERE symbol = 'BIGx' AND rank <= {n}"
            plan = json.loads(await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}"))[0]["Plan"]
            scans = [p for p in nodes(plan) if p.get("Index Name") == "share_balances_rank"]
            assert len(scans) == 1 and scans[0]["Actual Rows"] <= rows + 1, plan
            answer = await conn.fetch(sql)
            assert len(answer) == rows and {r["rank"] for r in answer} == ({1} if rows == 50 else {1, 51})
    finally:
        await conn.close()


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in nodes(child))]


async def test_a_first_load_builds_the_index_at_its_end(world: World, world_config: Path, database_url: str) -> None:
    """A first backfill writes the ledger without share_balances_rank (its updates stay HOT) and
    builds it at the end; one killed before that end gets it at the next writer's start."""
    sim = Simulator(world, seed=11, n_holders=20)
    sim.run(blocks=3, moves_per_block=8)
    first = cli("--log-json", "backfill", config=world_config)
    assert first.returncode == 0, first.stderr
    built = [json.loads(x) for x in first.stderr.splitlines() if '"indexes_built"' in x]
    assert len(built) == 1 and "share_balances_rank" in built[0]["indexes"], first.stderr
    assert await fetch(database_url, "SELECT to_regclass('share_balances_rank') IS NOT NULL") == [(True,)]
    await ranks_equal_a_recount(database_url)
    # Killed before its end: the index missing, the bulk load pending.
    await execute(database_url, "DROP INDEX share_balances_rank; INSERT INTO bulk_load DEFAULT VALUES")
    again = cli("--log-json", "migrate", config=world_config)
    assert again.returncode == 0 and "share_balances_rank" in again.stderr, again.stderr
    assert await fetch(database_url, "SELECT to_regclass('share_balances_rank') IS NOT NULL") == [(True,)]
    sim.run(blocks=3, moves_per_block=8)  # a later backfill keeps it and the ranks
    later = cli("--log-json", "backfill", config=world_config)
    assert later.returncode == 0 and '"indexes_built"' not in later.stderr, later.stderr
    await ranks_equal_a_recount(database_url)


async def data_tables(url: str) -> list[str]:
    """The tables whose rows an earlier release's database is given (tests/old_release.py)."""
    return [r["relname"] for r in await fetch(
        url, "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
             "AND relkind = 'r' AND relname <> 'schema_version' AND relname NOT LIKE 'writer_lock_%' "
             "AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = oid AND a.attgenerated <> '') "
             "ORDER BY relname")]


async def test_a_version_3_database_upgrades_to_the_index(
        world: World, world_config: Path, database_url: str, pg_server: PgServer, tmp_path: Path) -> None:
    sim = Simulator(world, seed=8, n_holders=15)
    sim.run(blocks=3, moves_per_block=6)
    assert cli("backfill", config=world_config).returncode == 0
    tables = await data_tables(database_url)
    old = f"t_{uuid.uuid4().hex[:16]}"
    await execute(pg_server.url, f'CREATE DATABASE "{old}"')
    try:
        old_url = pg_server.url_for(old)
        counts = await copy_into_release(database_url, old_url, V3_SCHEMA.read_text(), tables, version=3)
        assert counts["share_balances"] > 0
        assert await fetch(old_url, "SELECT to_regclass('share_balances_rank') IS NULL") == [(True,)]
        config = world.write_toml(tmp_path / "old.toml", old_url)
        done = cli("migrate", config=config)
        assert done.returncode == 0 and "applied step 4, 5" in done.stdout, done.stdout + done.stderr
        assert [r[0] for r in await fetch(old_url, "SELECT version FROM schema_version ORDER BY 1")] == [3, 4, 5]
        fresh, upgraded = await fetch(database_url, CATALOG), await fetch(old_url, CATALOG)
        assert sorted(map(tuple, upgraded)) == sorted(map(tuple, fresh))  # the catalog of a fresh database
        assert await ranks_equal_a_recount(old_url) == await ranks_equal_a_recount(database_url)
        sim.run(blocks=2, moves_per_block=5)  # and it goes on indexing, exactly
        assert cli("backfill", config=config).returncode == 0
        await ranks_equal_a_recount(old_url)
    finally:
        await execute(pg_server.url, f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)')


async def test_a_version_4_database_gets_the_partial_index(
        world: World, world_config: Path, database_url: str, pg_server: PgServer, tmp_path: Path) -> None:
    """Version 4's share_balances_rank covered every row: a lookup of one holder could take it at
    the cost of the primary key, and filtered the token's whole ledger. Step 5 makes it partial
    (shares > 0, what top_holders reads), so only the primary key answers such a lookup."""
    sim = Simulator(world, seed=9, n_holders=15)
    sim.run(blocks=3, moves_per_block=6)
    assert cli("backfill", config=world_config).returncode == 0
    tables = await data_tables(database_url)
    rank = "SELECT indexdef FROM pg_indexes WHERE indexname = 'share_balances_rank'"
    old = f"t_{uuid.uuid4().hex[:16]}"
    await execute(pg_server.url, f'CREATE DATABASE "{old}"')
    try:
        old_url = pg_server.url_for(old)
        await copy_into_release(database_url, old_url, V4_SCHEMA.read_text(), tables, version=4)
        assert "WHERE" not in str(await fetch(old_url, rank))
        done = cli("migrate", config=world.write_toml(tmp_path / "old.toml", old_url))
        assert done.returncode == 0 and "applied step 5" in done.stdout, done.stdout + done.stderr
        assert "WHERE (shares > (0)::numeric)" in str(await fetch(old_url, rank))
        fresh, upgraded = await fetch(database_url, CATALOG), await fetch(old_url, CATALOG)
        assert sorted(map(tuple, upgraded)) == sorted(map(tuple, fresh))  # the catalog of a fresh database
        assert await ranks_equal_a_recount(old_url) == await ranks_equal_a_recount(database_url)
        plan = await fetch(old_url, "EXPLAIN SELECT shares FROM share_balances WHERE chain_id = $1 AND token = $2 "
                                    "AND holder = $3", world.chain_id, "0x" + "11" * 20, "0x" + "22" * 20)
        assert "share_balances_rank" not in str(plan)
    finally:
        await execute(pg_server.url, f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)')
