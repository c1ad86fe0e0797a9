"""The rules' shortcuts answer exactly what their definitions say: custody_position (one probe
per account), supply_at_time (read from the moves after the time) and last_covered_at (with
custody_coverage's memory) against the original set-based definitions, kept here as temporary
SQL functions, at every interesting time of a scenario with several accounts, a ripcord, a
payload imported again, blocks arriving after the memory was written, and a reorg."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from devnet.deploy import World
from indexer.custody.reconcile import evaluate
from indexer.store import Store
from tests.custody_desk import Desk

ZERO = "'0x0000000000000000000000000000000000000000'"
DEFINITIONS = f"""
CREATE FUNCTION pg_temp.old_position(p_underlying text, p_at timestamptz)
    RETURNS TABLE (custody_shares numeric, custody_as_of timestamptz, accounts integer, ripcord_as_of timestamptz)
    LANGUAGE sql STABLE AS $$
    WITH recs AS (
        SELECT a.*, i.seq FROM custody_attestations a JOIN custody_imports i USING (payload_sha256)
         WHERE a.underlying = p_underlying AND a.as_of <= p_at
    ), cord AS (
        SELECT r.as_of, r.seq, r.id FROM recs r WHERE r.ripcord ORDER BY r.as_of DESC, r.seq DESC, r.id DESC LIMIT 1
    ), latest AS (
        SELECT DISTINCT ON (r.custodian, r.account) r.*
          FROM recs r
         WHERE NOT r.ripcord
           AND NOT EXISTS (SELECT 1 FROM cord c WHERE (r.as_of, r.seq, r.id) < (c.as_of, c.seq, c.id))
         ORDER BY r.custodian, r.account, r.as_of DESC, r.seq DESC, r.id DESC
    )
    SELECT sum(l.custody_shares), max(l.as_of), count(*)::integer, (SELECT c.as_of FROM cord c) FROM latest l
$$;
CREATE FUNCTION pg_temp.old_supply(p_underlying text, p_at timestamptz) RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(to_units(CASE
        WHEN c.block_time IS NOT NULL AND p_at >= c.block_time AND t.synced_block >= c.block_number
            THEN apply_multiplier(t.total_shares, t.multiplier)
        ELSE apply_multiplier(
            coalesce((SELECT sum(l.shares) FROM transfer_log l WHERE l.chain_id = t.chain_id AND l.token = t.token
                        AND l.from_address = {ZERO} AND l.block_time <= p_at), 0)
          - coalesce((SELECT sum(l.shares) FROM transfer_log l WHERE l.chain_id = t.chain_id AND l.token = t.token
                        AND l.to_address = {ZERO} AND l.block_time <= p_at), 0),
            multiplier_at_time(t.chain_id, t.token, p_at)) END, t.decimals)), 0)
      FROM tokens t LEFT JOIN cursors c ON c.chain_id = t.chain_id WHERE t.underlying = p_underlying
$$;
CREATE FUNCTION pg_temp.old_last_covered(p_underlying text) RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT max(x.as_of) FROM (SELECT DISTINCT a.as_of FROM custody_attestations a
                               WHERE a.underlying = p_underlying AND NOT a.ripcord) x
     CROSS JOIN LATERAL pg_temp.old_position(p_underlying, x.as_of) p
     WHERE p.custody_as_of IS NOT NULL
       AND p.custody_shares >= pg_temp.old_supply(p_underlying, x.as_of) * (1 - 1e-9)
$$;
"""


@pytest.fixture
def desk(world: World, world_config: Path, database_url: str, tmp_path: Path) -> Desk:
    return Desk(world, world_config, database_url, tmp_path)


async def compare(desk: Desk, underlying: str = "TSLA") -> dict[str, Any]:
    """Every shortcut against its definition at every interesting time; returns what was seen."""
    conn = await asyncpg.connect(desk.database_url)
    try:
        await conn.execute(DEFINITIONS)
        times = [r["t"] for r in await conn.fetch(
            """SELECT DISTINCT v.t FROM (SELECT as_of AS at FROM custody_attestations
                                         UNION SELECT block_time FROM transfer_log) x,
                    LATERAL (VALUES (x.at - interval '1 second'), (x.at), (x.at + interval '1 second')) v(t)
             ORDER BY v.t""")]
        assert len(times) > 5
        for t in times:
            new = await conn.fetchrow("SELECT custody_shares, custody_as_of, accounts, ripcord_as_of "
                                      "FROM custody_position($1, $2)", underlying, t)
            old = await conn.fetchrow("SELECT * FROM pg_temp.old_position($1, $2)", underlying, t)
            assert tuple(new) == tuple(old), t
            assert (await conn.fetchval("SELECT underlying_supply_at($1, $2)", underlying, t)
                    == await conn.fetchval("SELECT pg_temp.old_supply($1, $2)", underlying, t)), t
            at = await conn.fetchrow("SELECT * FROM backing_at($1, $2)", underlying, t)
            supply = await conn.fetchval(
                "SELECT pg_temp.old_supply($1::text, coalesce($2::timestamptz, $3::timestamptz))", underlying,
                old["custody_as_of"], t)
            assert at["onchain_supply"] == supply and at["custody_shares"] == old["custody_shares"], t
        covered = await conn.fetchval("SELECT last_covered_at($1)", underlying)
        assert covered == await conn.fetchval("SELECT pg_temp.old_last_covered($1)", underlying)
        return {"covered": covered, "memory": await conn.fetchrow(
            "SELECT * FROM custody_coverage WHERE underlying = $1", underlying)}
    finally:
        await conn.close()


async def test_shortcuts_equal_the_definitions(desk: Desk) -> None:
    t = desk.now() + 10
    desk.mint("TSLAx", 1000, at=t)
    desk.mint("TSLAx", 100, at=t + 20)
    desk.mine(t + 200)
    await desk.index()
    first = await desk.attest("TSLA", 600, t + 5, account="acc-1")
    await desk.attest("TSLA", 400, t + 5, account="acc-2")
    await desk.attest("TSLA", 650, t + 5, account="acc-1")  # same account and time: the later import counts
    await desk.attest("TSLA", 700, t + 25, account="acc-1")
    seen = await compare(desk)
    assert seen["covered"] is not None and seen["covered"].timestamp() == t + 25
    await desk.attest("TSLA", 0, t + 30, account="acc-2", ripcord=True)  # voids both accounts
    await desk.attest("TSLA", 1100, t + 40, account="acc-3")
    again = desk.folder / "custody-0.csv"
    assert first.sha256 and again.exists()
    from indexer.custody.importer import import_file

    restated = await import_file(desk.settings, str(again))  # the first file again: it wins the tie at t+5
    assert restated.duplicate
    seen = await compare(desk)
    assert seen["covered"].timestamp() == t + 40 and seen["memory"] is not None
    # blocks after the memory was written: a mint that the last attestation no longer covers
    desk.mint("TSLAx", 50, at=t + 300)
    await desk.index()
    seen = await compare(desk)
    assert seen["covered"].timestamp() == t + 40
    await desk.attest("TSLA", 1100, t + 301, account="acc-3")  # not enough any more
    seen = await compare(desk)
    assert seen["covered"].timestamp() == t + 40
    await desk.attest("TSLA", 1150, t + 302, account="acc-3")
    assert (await compare(desk))["covered"].timestamp() == t + 302


async def test_memory_follows_a_reorg(desk: Desk) -> None:
    t = desk.now() + 10
    desk.mint("TSLAx", 1000, at=t)
    desk.mine(t + 100)
    await desk.index()
    await desk.attest("TSLA", 1000, t + 50)
    snapshot = desk.rpc.call("evm_snapshot", [])
    desk.mine(t + 200)
    await desk.index()
    store = await Store.open(desk.database_url)
    try:
        await evaluate(store, desk.settings)  # the memory now reaches t + 200
        assert (await compare(desk))["memory"]["stable_until"].timestamp() == t + 200
        desk.rpc.call("evm_revert", [snapshot])  # a new branch: a mint before the attestation time
        desk.mint("TSLAx", 5, at=t + 150)
        desk.mine(t + 160)
        await desk.index()
        seen = await compare(desk)
        assert seen["memory"]["stable_until"].timestamp() <= t + 100  # lowered by the rewind
        assert seen["covered"].timestamp() == t + 50
        await evaluate(store, desk.settings)
        assert (await compare(desk))["memory"]["stable_until"].timestamp() == t + 160
    finally:
        await store.close()


async def test_memory_waits_for_an_import_in_flight(desk: Desk) -> None:
    """A reconcile that starts while an import's transaction is open must not write back a memory
    computed without that import's records: it waits for the import, then sees them."""
    t = desk.now() + 10
    desk.mint("TSLAx", 1000, at=t)
    desk.mine(t + 100)
    await desk.index()
    await desk.attest("TSLA", 500, t + 50)  # not enough: nothing covered yet
    store = await Store.open(desk.database_url)
    importer = await asyncpg.connect(desk.database_url)
    reconciler = await asyncpg.connect(desk.database_url)
    try:
        await evaluate(store, desk.settings)
        desk.mine(t + 200)
        await desk.index()
        async with importer.transaction():  # what an import does, its commit held back
            sha = "f" * 64
            await importer.execute("INSERT INTO custody_imports (payload_sha256, source, format, records) "
                                   "VALUES ($1, 'test', 'csv', 1)", sha)
            await importer.execute(
                """INSERT INTO custody_attestations (underlying, custodian, account, settled_shares, in_transit_shares,
                                                    as_of, attestor, ripcord, source, payload_sha256)
                   VALUES ('TSLA', 'Clearstream', 'acc-1', 1000, 0, to_timestamp($1), 'x', false, 'test', $2)""",
                t + 150, sha)
            await importer.execute("SELECT custody_absorb($1)", sha)
            pid = reconciler.get_server_pid()
            refresh = asyncio.create_task(reconciler.execute("SELECT custody_coverage_refresh()"))
            deadline = time.monotonic() + 20
            while not refresh.done() and not await importer.fetchval(
                    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid):
                assert time.monotonic() < deadline, "the refresh neither finished nor waited"
                await asyncio.sleep(0.02)
        await refresh
        seen = await compare(desk)
        assert seen["covered"] is not None and seen["covered"].timestamp() == t + 150
        await evaluate(store, desk.settings)
        assert (await compare(desk))["covered"].timestamp() == t + 150
    finally:
        await reconciler.close()
        await importer.close()
        await store.close()
