"""The analyst surface: comments on everything, the analyst role's exact rights, and time travel
that equals the chain at past blocks, across silent multiplier changes."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from tests.analyst_world import ZERO, Scenario, scenario  # noqa: F401  (fixture)
from tests.conftest import cli

# What analysts may read, and what the role must never see.
ANALYST_RELATIONS = {
    "transfers", "holders", "token_supply", "daily_activity", "holder_history", "top_holders",
    "multiplier_history", "indexer_progress", "backing", "backing_conditions",
    "custody_attestations", "backing_flags", "backing_flag_notes", "privileged_events", "schema_version",
}
INTERNAL_TABLES = ("transfer_log", "share_balances", "tokens", "cursors", "recent_blocks", "chains",
                   "multiplier_changes", "token_events", "custody_imports", "indexer_settings")
DESIGN_FUNCTIONS = ("balance_at", "supply_at", "backing_at", "holders_at")


async def fetch(url: str, sql: str, *args: object, role: str | None = None) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        if role:
            await conn.execute(f"SET ROLE {role}")
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


# ------------------------------------------------------------------------ schema: comments, grants


@pytest.fixture
def migrated(database_url: str, tmp_path: Path) -> str:
    config = tmp_path / "indexer.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n\n[[chain]]\nname = "anvil"\nrpc = ["http://127.0.0.1:9"]\n')
    for _ in range(2):  # twice: idempotent, the role included
        done = cli("migrate", config=config)
        assert done.returncode == 0, done.stderr
    return database_url


async def test_every_analyst_view_column_and_function_has_a_comment(migrated: str) -> None:
    readable = {r["relname"] for r in await fetch(migrated, """
        SELECT c.relname FROM pg_class c
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'v', 'm')
           AND has_table_privilege('analyst', c.oid, 'SELECT')""")}
    assert readable == ANALYST_RELATIONS
    missing = await fetch(migrated, """
        SELECT c.relname, a.attname FROM pg_class c
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE c.relname = ANY($1::text[]) AND c.relnamespace = current_schema()::regnamespace
           AND (col_description(c.oid, a.attnum) IS NULL OR obj_description(c.oid, 'pg_class') IS NULL)""",
                          sorted(ANALYST_RELATIONS))
    assert [(r["relname"], r["attname"]) for r in missing] == []
    functions = await fetch(migrated, """
        SELECT p.oid::regprocedure::text AS f, obj_description(p.oid, 'pg_proc') AS comment FROM pg_proc p
         WHERE p.pronamespace = current_schema()::regnamespace
           AND has_function_privilege('analyst', p.oid, 'EXECUTE')""")
    assert [r["f"] for r in functions if not r["comment"]] == []
    names = {r["f"].split("(")[0] for r in functions}
    assert set(DESIGN_FUNCTIONS) <= names


async def test_the_analyst_role_has_select_and_execute_only(migrated: str) -> None:
    (role,) = await fetch(migrated, "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolinherit "
                                    "FROM pg_roles WHERE rolname = 'analyst'")
    assert tuple(role.values()) == (False, False, False, False, True)
    writes = await fetch(migrated, """
        SELECT c.relname, p.privilege FROM pg_class c
         CROSS JOIN unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p(privilege)
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p')
           AND has_table_privilege('analyst', c.oid, p.privilege)""")
    assert writes == []
    sequences = await fetch(migrated, """
        SELECT c.relname FROM pg_class c WHERE c.relkind = 'S' AND c.relnamespace = current_schema()::regnamespace
           AND (has_sequence_privilege('analyst', c.oid, 'USAGE')
                OR has_sequence_privilege('analyst', c.oid, 'UPDATE'))""")
    assert sequences == []
    (schema,) = await fetch(migrated, "SELECT has_schema_privilege('analyst', current_schema(), 'USAGE') AS usage, "
                                      "has_schema_privilege('analyst', current_schema(), 'CREATE') AS create")
    assert (schema["usage"], schema["create"]) == (True, False)
    definers = await fetch(migrated, """
        SELECT p.oid::regprocedure::text AS f, has_function_privilege('public', p.oid, 'EXECUTE') AS by_anyone,
               p.proconfig FROM pg_proc p
         WHERE p.pronamespace = current_schema()::regnamespace AND p.prosecdef""")
    assert definers and all(not r["by_anyone"] and any(c.startswith("search_path=") for c in r["proconfig"] or [])
                            for r in definers)


async def test_the_analyst_role_reads_everything_it_may_and_nothing_else(scenario: Scenario) -> None:  # noqa: F811
    url = scenario.database_url
    for relation in sorted(ANALYST_RELATIONS):
        await fetch(url, f"SELECT * FROM {relation} LIMIT 3", role="analyst")
    tsla = scenario.alpha.tokens["TSLAx"]
    chain_id = scenario.alpha.chain_id
    calls = [
        ("SELECT balance_at($1, $2, $3, $4)", (chain_id, tsla, scenario.sim_alpha.holders[2], scenario.split_block)),
        ("SELECT supply_at($1, $2, $3)", (chain_id, tsla, scenario.split_block)),
        ("SELECT shares_at($1, $2, $3, $4)", (chain_id, tsla, scenario.sim_alpha.holders[2], scenario.split_block)),
        ("SELECT multiplier_at($1, $2, $3)", (chain_id, tsla, scenario.split_block)),
        ("SELECT count(*) FROM holders_at($1, $2, $3)", (chain_id, tsla, scenario.split_block)),
        ("SELECT block_at_time($1, $2, indexed_now())", (chain_id, tsla)),
        ("SELECT supply_at_time($1, $2, indexed_now())", (chain_id, tsla)),
        ("SELECT * FROM backing_at('TSLA', indexed_now())", ()),
        ("SELECT to_units(apply_multiplier(10, 2000000000000000000), 18), utc_day(now())", ()),
    ]
    for sql, args in calls:
        assert (await fetch(url, sql, *args, role="analyst"))[0][0] is not None, sql
    for table in INTERNAL_TABLES:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await fetch(url, f"SELECT 1 FROM {table} LIMIT 1", role="analyst")
    for statement in ("INSERT INTO backing_flags (rule, severity, opened_at) VALUES ('x', 'high', now())",
                      "UPDATE custody_attestations SET settled_shares = 0",
                      "DELETE FROM privileged_events", "TRUNCATE backing_flags", "CREATE TABLE analyst_scratch (x int)",
                      "CREATE VIEW analyst_scratch AS SELECT 1"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await fetch(url, statement, role="analyst")


async def test_a_login_granted_analyst_reads_as_the_role(scenario: Scenario) -> None:  # noqa: F811
    url = scenario.database_url
    login = "analyst_login_test"
    await fetch(url, f"DROP ROLE IF EXISTS {login}")
    await fetch(url, f"CREATE ROLE {login} LOGIN PASSWORD 'pw' IN ROLE analyst")
    try:
        conn = await asyncpg.connect(url, user=login, password="pw")
        try:
            assert await conn.fetchval("SELECT count(*) FROM holders") > 0
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch("SELECT * FROM cursors")
        finally:
            await conn.close()
    finally:
        await fetch(url, f"DROP ROLE {login}")


# ------------------------------------------------------------------ time travel against the chain


def sample_blocks(s: Scenario, count: int = 12) -> list[int]:
    """Blocks around every silent activation and multiplier change, plus random ones."""
    head = s.a.head()
    around = {b + d for blocks in s.sim_alpha.summary.activations.values() for b in blocks for d in (-1, 0, 1)}
    rng = random.Random(3)
    first = s.sim_alpha.summary.first_block or s.alpha.deploy_block
    return sorted(around | set(rng.sample(range(first, head + 1), count)) | {first, head})


async def test_balance_and_supply_at_equal_the_chain_at_past_blocks(scenario: Scenario) -> None:  # noqa: F811
    s, chain_id = scenario, scenario.alpha.chain_id
    assert s.split_block in s.sim_alpha.summary.activations["TSLAx"]
    for symbol, token in s.alpha.all_tokens.items():
        holders = sorted(s.sim_alpha.summary.touched[symbol])
        for block in sample_blocks(s):
            rows = await fetch(s.database_url, """
                SELECT h.holder, balance_at($1, $2, h.holder, $3) AS balance, shares_at($1, $2, h.holder, $3) AS shares,
                       supply_at($1, $2, $3) AS supply, multiplier_at($1, $2, $3) AS multiplier
                  FROM unnest($4::text[]) AS h(holder)""", chain_id, token, block, holders, role="analyst")
            balances = s.a.balances(token, holders, block)
            assert {r["holder"]: int(r["balance"]) for r in rows} == balances, (symbol, block)
            assert {r["holder"]: int(r["shares"]) for r in rows} == s.a.shares(token, holders, block), (symbol, block)
            assert int(rows[0]["supply"]) == s.a.total_supply(token, block), (symbol, block)
            if token in s.alpha.tokens.values():
                assert int(rows[0]["multiplier"]) == s.a.multiplier(token, block), (symbol, block)
    split = s.split_block
    before, after = (await fetch(s.database_url, "SELECT supply_at($1, $2, $3 - 1), supply_at($1, $2, $3)",
                                 chain_id, s.alpha.tokens["TSLAx"], split))[0].values()
    assert abs(after - 2 * before) <= 1  # each side rounded down once


async def test_holders_at_equals_balance_of_from_either_side_of_history(scenario: Scenario) -> None:  # noqa: F811
    s, chain_id = scenario, scenario.alpha.chain_id
    head = s.a.head()
    early = s.alpha.deploy_block + (head - s.alpha.deploy_block) // 5  # read forward from the start
    late = head - 3  # read backward from the current ledger
    for symbol, token in s.alpha.all_tokens.items():
        touched = sorted(s.sim_alpha.summary.touched[symbol])
        for block in (early, s.split_block - 1, s.split_block, late, head):
            rows = await fetch(s.database_url, "SELECT * FROM holders_at($1, $2, $3)", chain_id, token, block,
                               role="analyst")
            owned = {h: v for h, v in s.a.shares(token, touched, block).items() if v > 0}
            balances = {h: b for h, b in s.a.balances(token, list(owned), block).items() if b > 0}  # dust is not held
            assert {r["holder"]: int(r["balance_raw"]) for r in rows} == balances, (symbol, block)
            assert {r["holder"]: int(r["shares"]) for r in rows} == {h: owned[h] for h in balances}, (symbol, block)
            assert all(r["balance"] == Decimal(r["balance_raw"]).scaleb(-18) or symbol == "USDT0" for r in rows)
    with pytest.raises(asyncpg.RaiseError, match="past the indexed block"):
        await fetch(s.database_url, "SELECT * FROM holders_at($1, $2, $3)", chain_id, s.alpha.tokens["TSLAx"],
                    head + 1, role="analyst")


async def test_block_at_time_gives_the_state_at_that_time(scenario: Scenario) -> None:  # noqa: F811
    s, chain_id, token = scenario, scenario.alpha.chain_id, scenario.alpha.tokens["TSLAx"]
    holders = sorted(s.sim_alpha.summary.touched["TSLAx"])
    for block in sample_blocks(s, 6):
        moment = s.a.time(block) + 5  # between this block and the next
        (row,) = await fetch(s.database_url, "SELECT block_at_time($1, $2, $3) AS b", chain_id, token,
                             datetime.fromtimestamp(moment, UTC), role="analyst")
        if row["b"] is None:  # before the token's first move
            assert s.a.total_supply(token, block) == 0
            continue
        assert row["b"] <= block
        assert s.a.balances(token, holders, row["b"]) == s.a.balances(token, holders, block)
        assert s.a.total_supply(token, row["b"]) == s.a.total_supply(token, block)


async def test_holder_history_of_every_token_equals_the_chain_at_each_day_end(scenario: Scenario) -> None:  # noqa: F811
    s, chain_id = scenario, scenario.alpha.chain_id
    for symbol, token in s.alpha.all_tokens.items():
        rows = await fetch(s.database_url, "SELECT * FROM holder_history WHERE chain_id = $1 AND token = $2 "
                                           "ORDER BY day", chain_id, token, role="analyst")
        touched = sorted(s.sim_alpha.summary.touched[symbol])
        for r in rows:
            end = int(datetime(r["day"].year, r["day"].month, r["day"].day, tzinfo=UTC).timestamp()) + 86_399
            block = s.a.last_block_until(end)
            held = [h for h, v in s.a.shares(token, touched, block).items() if v > 0]
            assert r["holder_count"] == len(held), (symbol, r["day"])
            assert int(r["total_supply_raw"]) == s.a.total_supply(token, block), (symbol, r["day"])


async def test_daily_activity_adds_up_to_the_token_counters(scenario: Scenario) -> None:  # noqa: F811
    rows = await fetch(scenario.database_url, """
        SELECT s.symbol, s.chain_id, s.minted_raw, s.burned_raw, sum(d.minted_raw) AS minted,
               sum(d.burned_raw) AS burned,
               sum(d.mints + d.burns + d.transfers) AS moves, (SELECT count(*) FROM transfers t
                                                               WHERE t.chain_id = s.chain_id AND t.token = s.token) AS n
          FROM token_supply s JOIN daily_activity d USING (chain_id, token)
         GROUP BY s.symbol, s.chain_id, s.token, s.minted_raw, s.burned_raw""", role="analyst")
    assert len(rows) == 10
    for r in rows:
        assert (r["minted"], r["burned"], r["moves"]) == (r["minted_raw"], r["burned_raw"], r["n"]), r["symbol"]


async def test_new_holders_of_the_view_and_of_the_docs_query_agree(scenario: Scenario) -> None:  # noqa: F811
    view = await fetch(scenario.database_url, "SELECT chain_id, day, new_holders FROM holder_history "
                                              "WHERE new_holders > 0 ORDER BY 1, 2", role="analyst")
    direct = await fetch(scenario.database_url, f"""
        SELECT t.chain_id, t.day, count(DISTINCT t.to_address) AS new_holders FROM transfers t
         WHERE t.to_address <> '{ZERO}' AND t.shares > 0
           AND NOT EXISTS (SELECT 1 FROM transfers e WHERE e.chain_id = t.chain_id AND e.token = t.token
                              AND e.to_address = t.to_address AND e.shares > 0
                              AND (e.block_number, e.log_index) < (t.block_number, t.log_index))
         GROUP BY t.chain_id, t.token, t.day ORDER BY 1, 2""", role="analyst")
    assert sorted(tuple(r.values()) for r in view) == sorted(tuple(r.values()) for r in direct) and view
