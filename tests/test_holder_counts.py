"""Holders are addresses whose balanceOf is > 0, counted without counting: holder_counts and
small_holdings (kept by triggers on share_balances) must equal a recount of the ledger after
every kind of write (batches, a reorg's rewind, a bulk delete), and every place that counts or
lists holders (token_supply, holders, top_holders, holders_at, status) must leave out an address
whose shares are worth less than one base unit under the current multiplier, as the chain does."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from devnet.deploy import World
from tests.conftest import cli
from tests.custody_desk import ONE, Desk
from tests.oracle import Oracle

DUST = "0x" + "d1" * 20
SMALL = "0x" + "d3" * 20
BIG = "0x" + "b1" * 20
RECOUNT = """
    SELECT b.chain_id, b.token, count(*) FILTER (WHERE b.shares > 0) AS holders,
           count(*) FILTER (WHERE b.shares > 0 AND b.shares < 1000000000) AS small
      FROM share_balances b GROUP BY b.chain_id, b.token ORDER BY 1, 2"""
KEPT = """
    SELECT h.chain_id, h.token, h.holders,
           (SELECT count(*) FROM small_holdings s WHERE s.chain_id = h.chain_id AND s.token = h.token) AS small
      FROM holder_counts h WHERE h.holders > 0 ORDER BY 1, 2"""


@pytest.fixture
def desk(world: World, world_config: Path, database_url: str, tmp_path: Path) -> Desk:
    return Desk(world, world_config, database_url, tmp_path)


async def counters_equal_a_recount(desk: Desk) -> None:
    recount = [tuple(r) for r in await desk.fetch(RECOUNT) if r["holders"]]
    assert [tuple(r) for r in await desk.fetch(KEPT)] == recount
    small = await desk.fetch("SELECT s.chain_id, s.token, s.holder, s.shares FROM small_holdings s ORDER BY 1, 2, 3")
    assert small == await desk.fetch("SELECT chain_id, token, holder, shares FROM share_balances "
                                     "WHERE shares > 0 AND shares < 1000000000 ORDER BY 1, 2, 3")


async def on_chain_holders(desk: Desk, token: str, block: int) -> dict[str, int]:
    """Every address the ledger has seen, with balanceOf > 0 at ``block``."""
    seen = [r["holder"] for r in await desk.fetch("SELECT holder FROM share_balances WHERE token = $1", token)]
    balances = Oracle(desk.world.rpc_url).balances(token, seen, block).balances
    return {h: b for h, b in balances.items() if b > 0}


async def test_dust_is_not_a_holder_anywhere(desk: Desk) -> None:
    owner, token = desk.world.roles["owner"], desk.world.tokens["TSLAx"]
    t = desk.now() + 10
    desk.call("minter", "TSLAx", "mint", [owner, 10 * ONE], at=t)
    desk.call("owner", "TSLAx", "transferShares", [DUST, 1], at=t + 1)
    desk.call("owner", "TSLAx", "transferShares", [SMALL, 3], at=t + 2)
    before = desk.call("owner", "TSLAx", "transfer", [BIG, 5 * ONE], at=t + 3)
    await desk.index()
    await counters_equal_a_recount(desk)
    supply = "SELECT holder_count, indexed_block FROM token_supply WHERE token = $1"
    assert (await desk.fetch(supply, token))[0]["holder_count"] == 4
    # A 1:2.5 reverse split: 1 share is worth 0.4 of a base unit (dust), 3 shares 1.2.
    desk.call("multiplier_updater", "TSLAx", "updateMultiplierValue", [4 * ONE // 10, ONE, 0], at=t + 4)
    desk.call("owner", "TSLAx", "transfer", [BIG, 1], at=t + 5)  # a move: the indexer sees the new multiplier
    await desk.index()
    (row,) = await desk.fetch(supply, token)
    block = row["indexed_block"]
    chain = await on_chain_holders(desk, token, block)
    assert DUST not in chain and SMALL in chain and len(chain) == 3
    assert row["holder_count"] == len(chain)
    listed = {r["holder"]: int(r["balance_raw"]) for r in await desk.fetch(
        "SELECT holder, balance_raw FROM holders WHERE token = $1", token)}
    assert listed == chain
    ranked = await desk.fetch("SELECT holder FROM top_holders WHERE token = $1", token)
    assert {r["holder"] for r in ranked} == set(chain)
    at = {r["holder"]: int(r["balance_raw"]) for r in await desk.fetch(
        "SELECT * FROM holders_at($1, $2, $3)", desk.world.chain_id, token, block)}
    assert at == chain
    assert DUST in {r["holder"] for r in await desk.fetch(
        "SELECT holder FROM holders_at($1, $2, $3)", desk.world.chain_id, token, before)}  # 1:1 then
    assert (await desk.fetch("SELECT shares FROM share_balances WHERE holder = $1", DUST))[0]["shares"] == 1
    done = cli("status", config=desk.config)
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("TSLAx")]
    assert line.split()[4] == "3", line
    await counters_equal_a_recount(desk)


async def test_counters_follow_a_reorg_and_a_bulk_delete(desk: Desk) -> None:
    owner, token = desk.world.roles["owner"], desk.world.tokens["TSLAx"]
    t = desk.now() + 10
    desk.call("minter", "TSLAx", "mint", [owner, 10 * ONE], at=t)
    desk.call("owner", "TSLAx", "transfer", [BIG, ONE], at=t + 1)
    await desk.index()
    snapshot = desk.rpc.call("evm_snapshot", [])
    desk.call("owner", "TSLAx", "transferShares", [DUST, 7], at=t + 2)
    desk.call("owner", "TSLAx", "transferShares", [SMALL, 9 * ONE - 7], at=t + 3)  # the owner leaves
    await desk.index()
    await counters_equal_a_recount(desk)
    assert (await desk.fetch("SELECT holders FROM holder_counts WHERE token = $1", token))[0]["holders"] == 3
    desk.rpc.call("evm_revert", [snapshot])  # a branch without those moves
    desk.mine(t + 2)
    desk.mine(t + 3)
    desk.mine(t + 4)
    await desk.index()
    await counters_equal_a_recount(desk)
    assert (await desk.fetch("SELECT holder_count FROM token_supply WHERE token = $1", token))[0]["holder_count"] == 2
    conn = await asyncpg.connect(desk.database_url)
    try:
        await conn.execute("DELETE FROM share_balances WHERE holder = $1", BIG)
        await counters_equal_a_recount(desk)
        await conn.execute("TRUNCATE share_balances")
        assert await conn.fetch("SELECT token FROM holder_counts UNION ALL SELECT token FROM small_holdings") == []
    finally:
        await conn.close()
