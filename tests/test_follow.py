"""follow: the multiplier's path is exact at every block whatever the range, and what it costs.

On anvil with our contracts: a fee-clock change with no event at all (nothing to hint at it)
must be found by bisecting the state, and fee steps that time alone explains must be placed
from block timestamps with no bisection, so the eth_calls of a range do not grow with the number
of periods inside it. Every block is compared with the chain (tests/oracle.py).
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

from devnet.deploy import World
from tests.conftest import cli, run_sync
from tests.oracle import compare_history
from tests.rpcproxy import RpcProxy
from tests.silent_paths import E18, Scene, config_text

STATE_VIEWS = 9  # eth_calls per xStock and block read (indexer.contract_views.STATE_VIEWS)


def backfill_through(proxy: RpcProxy, world: World, database_url: str, tmp_path: Path, blocks: int) -> None:
    proxied = World(**{**world.__dict__, "rpc_url": proxy.url})
    config = tmp_path / "indexer.toml"
    config.write_text(config_text(proxied, database_url, {}, blocks))
    done = cli("backfill", config=config)
    assert done.returncode == 0, done.stderr


async def changes(database_url: str, token: str) -> list[tuple[int, int, str]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT block_number, multiplier, source FROM multiplier_changes WHERE token = $1 "
                                "ORDER BY block_number", token)
        return [(r["block_number"], int(r["multiplier"]), r["source"]) for r in rows]
    finally:
        await conn.close()


def test_a_fee_change_without_any_event_is_found_by_bisecting_the_state(
        world: World, database_url: str, tmp_path: Path) -> None:
    s = Scene(world)
    token = world.tokens["SPYx"]
    a, b, _, _ = s.traders
    try:
        s.send(s.role("minter"), token, "mint", [a, 1000 * E18])
        s.send(s.role("multiplier_updater"), token, "setFee", [E18 // 100, 100])
        s.mine(5, gap=10)  # inside the first period: nothing due, nothing emitted
        silent = s.send(s.role("owner"), token, "updateFeePerPeriod", [E18 // 10])  # no event at all
        assert not [log for log in silent["logs"] if log["address"].lower() == token]
        s.mine(12, gap=30)  # 10% steps from here, silently
        s.send(a, token, "transfer", [b, E18])
        s.mine(4, gap=30)
    finally:
        s.close()
    with RpcProxy(world.rpc_url) as proxy:
        backfill_through(proxy, world, database_url, tmp_path, 1_000_000)
    assert run_sync(compare_history(database_url, world.rpc_url, [token])) == []
    observed = [c for c in run_sync(changes(database_url, token)) if c[2] == "observed"]
    assert len(observed) >= 4  # the 10% fee steps, each at the block where the chain has it


def test_fee_steps_explained_by_time_cost_no_eth_call_per_step(
        world: World, database_url: str, tmp_path: Path) -> None:
    s = Scene(world)
    token = world.tokens["TSLAx"]
    a, b, _, _ = s.traders
    try:
        s.send(s.role("minter"), token, "mint", [a, 1000 * E18])
        s.send(s.role("multiplier_updater"), token, "setFee", [E18 // 100, 20])
        s.mine(60, gap=7)  # about 20 fee steps, no transaction
        s.send(a, token, "transfer", [b, E18])
    finally:
        s.close()
    with RpcProxy(world.rpc_url) as proxy:
        backfill_through(proxy, world, database_url, tmp_path, 1_000_000)
        calls = proxy.stats["method:eth_call"]
    assert run_sync(compare_history(database_url, world.rpc_url, [token])) == []
    steps = [c for c in run_sync(changes(database_url, token)) if c[2] == "observed"]
    assert len(steps) >= 15
    xstocks = len(world.tokens)
    # One state read per xStock at the range's end and one where each starts, the kind and
    # identity reads of discovery, and at most one bisection for the setFee transaction: far
    # fewer than one eth_call per step of any token.
    print(f"eth_call in the backfill: {calls} for {xstocks} xStocks and {len(steps)} fee steps")
    assert calls <= STATE_VIEWS * xstocks * 2 + 12 * xstocks + STATE_VIEWS * 2 * 12
