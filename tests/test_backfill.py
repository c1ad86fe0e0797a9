"""The foundation, end to end: real anvil, our contracts, real PostgreSQL, the real CLI.

After every scenario the views must equal the chain at the indexed block, to the wei.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from devnet.anvil import Anvil
from devnet.deploy import World
from devnet.simulate import Simulator
from tests.chaincheck import compare, snapshot
from tests.conftest import REPO_ROOT, cli
from tests.rpcproxy import RpcProxy


def touched(world: World, sim: Simulator) -> dict[str, set[str]]:
    return {world.all_tokens[s]: addrs for s, addrs in sim.summary.touched.items()}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_scenario_equals_chain(world: World, world_config: Path, database_url: str, seed: int) -> None:
    sim = Simulator(world, seed=seed, n_holders=30)
    sim.tour(moves_per_block=6, gap=1)
    sim.run(blocks=4, moves_per_block=8)
    assert sim.summary.activations, "the tour must include a silent activation"
    done = cli("backfill", config=world_config)
    assert done.returncode == 0, done.stderr
    assert await compare(database_url, world.rpc_url, touched(world, sim)) == []
    audit = cli("verify", config=world_config)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "equal" in audit.stdout


async def test_silent_activation_is_seen_where_the_chain_has_it(
        world: World, world_config: Path, database_url: str) -> None:
    sim = Simulator(world, seed=11, n_holders=8)
    sim.run(blocks=2, moves_per_block=4)
    sim.scheduled_change("TSLAx", 2, 1, delay=600)  # a 2:1 split that activates with no event
    activation = sim.summary.activations["TSLAx"][-1]
    assert cli("backfill", config=world_config).returncode == 0
    assert await compare(database_url, world.rpc_url, touched(world, sim)) == []
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT block_number, multiplier, source FROM multiplier_changes "
                                "WHERE token = $1 ORDER BY block_number", world.tokens["TSLAx"])
        assert rows[-1]["block_number"] == activation
        assert rows[-1]["source"] == "observed"
        before = await conn.fetchval("SELECT supply_at(chain_id, token, $2) FROM tokens WHERE token = $1",
                                     world.tokens["TSLAx"], activation - 1)
        after = await conn.fetchval("SELECT supply_at(chain_id, token, $2) FROM tokens WHERE token = $1",
                                    world.tokens["TSLAx"], activation)
        assert after == 2 * before
    finally:
        await conn.close()
    # verify at the block before the activation uses time travel and must also agree
    assert cli("verify", "--block", str(activation - 1), config=world_config).returncode == 0


async def test_rerun_is_a_no_op(world: World, world_config: Path, database_url: str) -> None:
    Simulator(world, seed=5, n_holders=10).run(blocks=6, moves_per_block=6)
    assert cli("backfill", config=world_config).returncode == 0
    first = await snapshot(database_url)
    again = cli("backfill", config=world_config)
    assert again.returncode == 0, again.stderr
    again = cli("backfill", "--from-block", "1", config=world_config)
    assert again.returncode == 0, again.stderr
    assert await snapshot(database_url) == first


async def test_to_block_then_resume(world: World, world_config: Path, database_url: str) -> None:
    sim = Simulator(world, seed=6, n_holders=10)
    sim.run(blocks=8, moves_per_block=5)
    middle = (world.deploy_block + sim.summary.last_block) // 2  # type: ignore[operator]
    assert cli("backfill", "--to-block", str(middle), config=world_config).returncode == 0
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT block_number FROM cursors") == middle
    finally:
        await conn.close()
    assert cli("backfill", config=world_config).returncode == 0
    assert await compare(database_url, world.rpc_url, touched(world, sim)) == []


async def test_reorg_in_the_prefetched_tail_is_rewound_then_indexed(world: World, anvil: Anvil, world_config: Path,
                                                                   database_url: str) -> None:
    """The backfill prefetches ranges in the reorg-reachable tail too: a range whose first
    parent is not the cursor's block is a reorg, rewound before anything of it is stored."""
    sim = Simulator(world, seed=31, n_holders=10)
    sim.run(blocks=6, moves_per_block=5)
    snap, base = anvil.snapshot(), anvil.block_number()
    while anvil.block_number() - base < 6:
        sim.batch("TSLAx", n=5)  # one transaction, one block
    assert cli("backfill", config=world_config).returncode == 0
    old_head = anvil.block_number()
    # the tail's hashes came in the range ends' state reads (blockhash), not one header each:
    # blocks known by hash alone, and every stored hash is the node's
    conn = await asyncpg.connect(database_url)
    try:
        kept = await conn.fetch("SELECT block_number, block_hash, parent_hash, block_time FROM recent_blocks")
    finally:
        await conn.close()
    by_hash = {r["block_number"] for r in kept if r["block_time"] is None}
    assert base in by_hash, sorted(by_hash)  # the walk-back below finds its ancestor among them
    node = {r["block_number"]: anvil.rpc("eth_getBlockByNumber", [hex(r["block_number"]), False]) for r in kept}
    assert all(r["block_hash"] == node[r["block_number"]]["hash"] for r in kept)
    assert all(r["parent_hash"] == node[r["block_number"]]["parentHash"] for r in kept)
    anvil.revert(snap)
    branch = Simulator(world, seed=131, n_holders=6)
    branch.run(blocks=10, moves_per_block=4)
    assert anvil.block_number() >= old_head + 4  # several ranges to prefetch past the old head
    done = cli("backfill", config=world_config)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    reorgs = [e for e in events if e.get("event") == "reorg"]
    assert [(e["depth"], e["ancestor"]) for e in reorgs] == [(6, base)]
    both = touched(world, sim)
    for token, addresses in touched(world, branch).items():
        both.setdefault(token, set()).update(addresses)
    assert await compare(database_url, world.rpc_url, both) == []


@pytest.mark.slow
async def test_sigkill_mid_backfill_resumes_exactly(world: World, tmp_path: Path, database_url: str) -> None:
    sim = Simulator(world, seed=8, n_holders=20)
    sim.run(blocks=60, moves_per_block=6)
    config = world.write_toml(tmp_path / "indexer.toml", database_url)
    # one block per batch: many commits, so the kill lands between and inside them
    text = config.read_text().replace("max_reorg_depth = 64",
                                      "max_reorg_depth = 64\nbatch_blocks = 1\nmax_batch_blocks = 1")
    config.write_text(text)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "RPC_URL", "INDEXER_CONFIG")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    assert cli("migrate", config=config).returncode == 0
    conn = await asyncpg.connect(database_url)
    try:
        for kill_at in (world.deploy_block + 15, world.deploy_block + 40):
            proc = subprocess.Popen(  # noqa: ASYNC220 - the process is the thing under test
                [sys.executable, "-m", "indexer", "--config", str(config), "backfill"],
                                    cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                block = await conn.fetchval("SELECT max(block_number) FROM cursors")
                if block is not None and block >= kill_at:
                    break
                if proc.poll() is not None:
                    break
                await asyncio.sleep(0.005)  # polling a condition with a deadline
            assert proc.poll() is None, "backfill finished before it could be killed"
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    finally:
        await conn.close()
    assert cli("backfill", config=config).returncode == 0
    assert await compare(database_url, world.rpc_url, touched(world, sim)) == []
    conn = await asyncpg.connect(database_url)
    try:
        dupes = await conn.fetchval("SELECT count(*) - count(DISTINCT (tx_hash, log_index)) FROM transfer_log")
        assert dupes == 0
        assert await conn.fetchval("SELECT count(*) FROM transfer_log") == sim.summary.moves
    finally:
        await conn.close()


async def test_range_limits_are_split_not_retried(world: World, tmp_path: Path, database_url: str) -> None:
    sim = Simulator(world, seed=9, n_holders=12)
    sim.run(blocks=30, moves_per_block=6)
    with RpcProxy(world.rpc_url, max_range=7, max_logs=40) as proxy:
        proxied = World(**{**world.__dict__, "rpc_url": proxy.url})
        config = proxied.write_toml(tmp_path / "indexer.toml", database_url)
        done = cli("backfill", config=config)
        assert done.returncode == 0, done.stderr
        assert proxy.stats["refused_range"] > 0
        assert proxy.stats["refused_logs"] > 0
    assert await compare(database_url, world.rpc_url, touched(world, sim)) == []


async def test_plain_erc20_is_told_apart_by_the_contract(world: World, world_config: Path, database_url: str) -> None:
    sim = Simulator(world, seed=10, n_holders=8)
    sim.run(blocks=5, moves_per_block=6)
    assert cli("backfill", config=world_config).returncode == 0
    conn = await asyncpg.connect(database_url)
    try:
        kinds = {r["symbol"]: r["kind"] for r in await conn.fetch("SELECT symbol, kind FROM token_supply")}
    finally:
        await conn.close()
    assert kinds == {**{s: "xstock" for s in world.tokens}, **{s: "erc20" for s in world.plain_tokens}}
    assert await compare(database_url, world.rpc_url, touched(world, sim)) == []


async def test_token_added_to_config_later_catches_up(world: World, tmp_path: Path, database_url: str) -> None:
    sim = Simulator(world, seed=12, n_holders=8)
    sim.run(blocks=6, moves_per_block=6)
    without_plain = World(**{**world.__dict__, "plain_tokens": {}})
    config = without_plain.write_toml(tmp_path / "indexer.toml", database_url)
    assert cli("backfill", config=config).returncode == 0
    sim.run(blocks=3, moves_per_block=6)
    config = world.write_toml(tmp_path / "indexer.toml", database_url)
    done = cli("backfill", config=config)
    assert done.returncode == 0, done.stderr
    assert await compare(database_url, world.rpc_url, touched(world, sim)) == []


def test_bad_config_exits_2_with_one_line(tmp_path: Path, world_config: Path) -> None:
    cases = {
        "unknown key": ("[[chain]]\nname = 'a'\nrpc = ['http://127.0.0.1:1']\nfoo = 1\n", "chain[0].foo"),
        "bad address": ("[[chain]]\nname = 'a'\nrpc = ['http://127.0.0.1:1']\n"
                        "[[token]]\nchain = 'a'\naddress = '0x1234'\n", "token[0].address"),
        "missing chain": ("[[chain]]\nname = 'a'\nrpc = ['http://127.0.0.1:1']\n"
                          "[[token]]\nchain = 'b'\naddress = '0x" + "11" * 20 + "'\n", "token[0].chain"),
    }
    for name, (text, key) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.toml"
        path.write_text(text)
        done = cli("backfill", config=path)
        assert done.returncode == 2, name
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and key in lines[0], (name, done.stderr)


def test_chain_id_mismatch_exits_2(world_config: Path) -> None:
    text = world_config.read_text().replace("max_reorg_depth = 64", "max_reorg_depth = 64\nchain_id = 1")
    world_config.write_text(text)
    done = cli("backfill", config=world_config)
    assert done.returncode == 2
    assert "chain id 31337" in done.stderr and "chain_id = 1" in done.stderr


def test_unreachable_services_exit_2_and_hide_secrets(world_config: Path) -> None:
    dead_rpc = cli("backfill", config=world_config, env={"RPC_URL": "http://127.0.0.1:9/v2/SECRETKEY0123456789abcdef"})
    assert dead_rpc.returncode == 2
    assert "unreachable" in dead_rpc.stderr and "SECRETKEY" not in dead_rpc.stderr
    dead_db = cli("backfill", config=world_config,
                  env={"DATABASE_URL": "postgresql://indexer:hunter2@127.0.0.1:9/xstocks"})
    assert dead_db.returncode == 2
    assert "unreachable" in dead_db.stderr and "hunter2" not in dead_db.stderr
    assert len(dead_db.stderr.strip().splitlines()) == 1


def test_migrate_is_idempotent(world_config: Path, database_url: str) -> None:
    for _ in range(2):
        done = cli("migrate", config=world_config)
        assert done.returncode == 0, done.stderr
