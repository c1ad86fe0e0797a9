"""`indexer run` under disruption: reorgs, SIGKILL, RPC and database outages, a second writer,
two chains. Real anvil, real PostgreSQL, the real CLI as a process; after each disruption the
views must equal the chain at the indexed block."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from devnet.anvil import Anvil, free_port
from devnet.deploy import World, deploy_world
from devnet.simulate import Simulator
from tests.chaincheck import compare
from tests.conftest import cli
from tests.daemonctl import DaemonProcess, cursor, indexed_to_head, wait_for, write_config
from tests.rpcproxy import RpcProxy


@pytest.fixture(autouse=True)
def _no_daemon_left_behind() -> Iterator[None]:
    yield
    DaemonProcess.kill_all()


def all_touched(world: World, *sims: Simulator) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {a: set() for a in world.all_tokens.values()}
    for sim in sims:
        for symbol, addrs in sim.summary.touched.items():
            out[world.all_tokens[symbol]] |= addrs
    return out


async def caught_up(database_url: str, anvil: Anvil) -> None:
    await wait_for(lambda: indexed_to_head(database_url, anvil.rpc), what="the daemon to reach the head")


@pytest.mark.slow
async def test_reorgs_at_depths_1_5_30_while_following(world: World, anvil: Anvil, database_url: str,
                                                        tmp_path: Path) -> None:
    config = write_config(world, database_url, tmp_path / "indexer.toml", metrics_port=free_port())
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    sims = [Simulator(world, seed=21, n_holders=10)]
    sims[0].run(blocks=3, moves_per_block=5)
    try:
        for depth in (1, 5, 30):
            await caught_up(database_url, anvil)
            snap, base = anvil.snapshot(), anvil.block_number()
            while anvil.block_number() - base < depth:
                sims[-1].batch("TSLAx", n=5)  # one transaction, one block: the depth is exact
            await caught_up(database_url, anvil)
            assert await compare(database_url, anvil.url, all_touched(world, *sims)) == []
            old_head = anvil.block_number()
            anvil.revert(snap)
            branch = Simulator(world, seed=100 + depth, n_holders=6)
            sims.append(branch)
            branch.run(blocks=depth + 1, moves_per_block=3)
            while anvil.block_number() <= old_head:
                anvil.mine(1)
            await caught_up(database_url, anvil)
            assert await compare(database_url, anvil.url, all_touched(world, *sims)) == []
            reorgs = daemon.events("reorg")
            assert reorgs and reorgs[-1]["depth"] == depth and reorgs[-1]["ancestor"] == base, reorgs
        assert daemon.alive
    finally:
        assert daemon.stop() == 0


async def test_reorg_deeper_than_limit_stops_with_exit_3_and_changes_nothing(
        world: World, anvil: Anvil, database_url: str, tmp_path: Path) -> None:
    config = write_config(world, database_url, tmp_path / "indexer.toml", max_reorg_depth=8)
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    sim = Simulator(world, seed=31, n_holders=6)
    sim.run(blocks=2, moves_per_block=3)
    await caught_up(database_url, anvil)
    snap = anvil.snapshot()
    sim.run(blocks=12, moves_per_block=2)
    await caught_up(database_url, anvil)
    before = await cursor(database_url)
    anvil.revert(snap)
    Simulator(world, seed=32, n_holders=4).run(blocks=14, moves_per_block=2)
    assert daemon.wait(30) == 3
    assert "reorg deeper than max_reorg_depth=8" in daemon.log_path.read_text()
    assert await cursor(database_url) == before


@pytest.mark.slow
async def test_sigkill_during_catch_up_and_live_then_exact(world: World, anvil: Anvil, database_url: str,
                                                          tmp_path: Path) -> None:
    sim = Simulator(world, seed=41, n_holders=15)
    sim.run(blocks=40, moves_per_block=5)
    config = write_config(world, database_url, tmp_path / "indexer.toml",
                          extra_chain="batch_blocks = 1\nmax_batch_blocks = 1")
    log = tmp_path / "daemon.log"
    head = anvil.block_number()
    for kill_at in (world.deploy_block + 10, world.deploy_block + 25):
        daemon = DaemonProcess(config, log).start()

        async def passed(kill_at: int = kill_at) -> bool:
            c = await cursor(database_url)
            return c is not None and c[0] >= kill_at
        await wait_for(passed, what=f"catch-up past block {kill_at}")
        daemon.kill()
        assert (await cursor(database_url))[0] < head  # type: ignore[index]
    daemon = DaemonProcess(config, log).start()
    for _ in range(3):  # live: kill while the simulator keeps trading
        sim.run(blocks=3, moves_per_block=4)
        await caught_up(database_url, anvil)
        sim.run(blocks=1, moves_per_block=4)
        daemon.kill()
        daemon = DaemonProcess(config, log).start()
    await caught_up(database_url, anvil)
    assert await compare(database_url, anvil.url, all_touched(world, sim)) == []
    assert daemon.stop() == 0


async def test_second_writer_refused_and_sigterm_is_fast(world: World, anvil: Anvil, database_url: str,
                                                          tmp_path: Path) -> None:
    config = write_config(world, database_url, tmp_path / "indexer.toml")
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    sim = Simulator(world, seed=51, n_holders=6)
    sim.run(blocks=2, moves_per_block=3)
    await caught_up(database_url, anvil)
    for command in ("run", "backfill"):
        second = cli(command, config=config, timeout=30)
        assert second.returncode == 2, second.stderr
        assert "already being indexed by xstock-indexer" in second.stderr
    sim.run(blocks=1, moves_per_block=3)
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    assert time.monotonic() - started < 5


async def test_rpc_outage_flips_healthz_and_recovers(anvil_factory, database_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = anvil_factory(state_path=tmp_path / "anvil-state.json")
    world = deploy_world(node.url)
    port = free_port()
    config = write_config(world, database_url, tmp_path / "indexer.toml", metrics_port=port,
                          extra_chain="rpc_timeout = 2")
    daemon = DaemonProcess(config, tmp_path / "daemon.log", metrics_port=port).start()
    sim = Simulator(world, seed=61, n_holders=8)
    sim.run(blocks=3, moves_per_block=3)
    await caught_up(database_url, node)

    async def healthy(expect: int) -> bool:
        try:
            return daemon.http("/healthz")[0] == expect
        except OSError:
            return False
    await wait_for(lambda: healthy(200), what="/healthz 200")
    node.stop()
    await wait_for(lambda: healthy(503), what="/healthz 503 with the rpc gone")
    _, body = daemon.http("/healthz")
    assert "rpc failing" in body
    node.restart()  # same port, from the state dumped at stop
    sim = Simulator(world, seed=62, n_holders=5)
    sim.run(blocks=3, moves_per_block=3)
    await caught_up(database_url, node)
    await wait_for(lambda: healthy(200), what="/healthz back to 200")
    assert await compare(database_url, node.url, all_touched(world, sim)) == []
    metrics = daemon.http("/metrics")[1]
    assert 'indexer_rpc_errors_total{chain="anvil",kind="connection"}' in metrics
    assert daemon.events("rpc_retry")
    assert daemon.stop() == 0


async def test_faulty_rpc_proxy_loses_nothing(world: World, anvil: Anvil, database_url: str, tmp_path: Path) -> None:
    with RpcProxy(anvil.url) as proxy:
        proxy.stall_seconds = 2.5
        config = write_config(world, database_url, tmp_path / "indexer.toml", rpc=proxy.url,
                              extra_chain="rpc_timeout = 1")
        daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
        sim = Simulator(world, seed=71, n_holders=8)
        sim.run(blocks=1, moves_per_block=3)
        await caught_up(database_url, anvil)  # faults at start-up are an exit 2, tested elsewhere
        for fault in ("429", "500", "garbage", "stall", "drop", "429", "garbage", "500"):
            proxy.inject(fault, fault)  # two in a row: the retry must back off and try again
            sim.run(blocks=2, moves_per_block=3)

            async def consumed() -> bool:
                return not proxy.faults
            await wait_for(consumed, what=f"the daemon to meet the {fault} faults")
            await caught_up(database_url, anvil)
        assert all(proxy.stats[f"fault_{f}"] >= 2 for f in ("429", "500", "garbage", "stall", "drop"))
        assert daemon.alive
        assert await compare(database_url, anvil.url, all_touched(world, sim)) == []
        attempts = [e["attempt"] for e in daemon.events("rpc_retry")]
        assert attempts and max(attempts) >= 2
        assert daemon.stop() == 0


async def test_two_chains_in_one_daemon(anvil_factory, database_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = anvil_factory(chain_id=31337), anvil_factory(chain_id=31338)
    wa, wb = deploy_world(a.url), deploy_world(b.url)
    assert wa.tokens["TSLAx"] == wb.tokens["TSLAx"]  # same factory nonce, same CREATE2 salt: same address
    text = wa.to_toml(database_url, chain="left")
    second = wb.to_toml(database_url, chain="right").split("[[chain]]", 1)[1].split("[custody]")[0]
    config = tmp_path / "indexer.toml"
    config.write_text(text.replace("[custody]", "[[chain]]" + second + "[custody]"))
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    sa, sb = Simulator(wa, seed=81, n_holders=6), Simulator(wb, seed=82, n_holders=7)
    sa.run(blocks=3, moves_per_block=3)
    sb.run(blocks=4, moves_per_block=3)

    async def both() -> bool:
        conn = await asyncpg.connect(database_url)
        try:
            rows = {r["chain_id"]: r["block_number"] for r in await conn.fetch("SELECT * FROM cursors")}
        except asyncpg.UndefinedTableError:
            return False  # not migrated yet
        finally:
            await conn.close()
        return rows.get(31337) == a.block_number() and rows.get(31338) == b.block_number()
    await wait_for(both, what="both chains indexed to their heads")
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT chain_id, total_supply_raw FROM token_supply WHERE token = $1 ORDER BY 1",
                                wa.tokens["TSLAx"])
    finally:
        await conn.close()
    assert [r["chain_id"] for r in rows] == [31337, 31338]
    assert daemon.stop() == 0
    verify = cli("verify", config=config)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "chain left" in verify.stdout and "chain right" in verify.stdout


async def test_database_restart_under_the_daemon(world: World, anvil: Anvil, tmp_path: Path) -> None:
    from devnet.postgres import embedded_postgres, scratch_dir

    scratch = scratch_dir("xstock-restart-")
    server = embedded_postgres(scratch / "data")
    try:
        config = write_config(world, server.dsn, tmp_path / "indexer.toml")
        daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
        sim = Simulator(world, seed=91, n_holders=8)
        sim.run(blocks=3, moves_per_block=3)
        await caught_up(server.dsn, anvil)
        server.stop()
        sim.run(blocks=4, moves_per_block=3)  # the chain moves on while the database is gone

        async def retrying() -> bool:
            return bool(daemon.events("db_retry"))
        await wait_for(retrying, what="the daemon to retry the database")
        server.start()
        sim.run(blocks=2, moves_per_block=3)
        await caught_up(server.dsn, anvil)
        assert daemon.alive
        assert await compare(server.dsn, anvil.url, all_touched(world, sim)) == []
        assert daemon.events("writer_lock_lost") and daemon.events("writer_lock_taken_again")
        second = cli("backfill", config=config, timeout=30)
        assert second.returncode == 2, "the lock must be held again after the restart"
        assert daemon.stop() == 0
    finally:
        server.stop()


async def test_ws_endpoint_follows_new_heads(world: World, anvil: Anvil, database_url: str, tmp_path: Path) -> None:
    # polling every 60 s: only the newHeads subscription can bring the daemon to the head in time
    config = write_config(world, database_url, tmp_path / "indexer.toml", rpc=anvil.ws_url,
                          extra_chain="poll_interval = 60")
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    sim = Simulator(world, seed=95, n_holders=6)
    sim.run(blocks=3, moves_per_block=3)
    await caught_up(database_url, anvil)
    for _ in range(3):
        sim.run(blocks=1, moves_per_block=2)
        await caught_up(database_url, anvil)
    assert await compare(database_url, anvil.url, all_touched(world, sim)) == []
    assert daemon.events("ws_subscribed") and not daemon.events("ws_heads_lost")
    assert daemon.stop() == 0


@pytest.mark.slow
async def test_outside_run_reorg_through_a_silent_split_then_sigkill(world: World, anvil: Anvil, database_url: str,
                                                                     tmp_path: Path) -> None:
    """The issue's acceptance run in one piece: trade, a 7-deep reorg whose orphaned branch held a
    silent 2:1 split while the new branch activates 3:1, SIGKILL mid-trade, a second writer, SIGTERM."""
    config = write_config(world, database_url, tmp_path / "indexer.toml")
    log = tmp_path / "daemon.log"
    daemon = DaemonProcess(config, log).start()
    sim = Simulator(world, seed=97, n_holders=10)
    sim.run(blocks=4, moves_per_block=4)
    await caught_up(database_url, anvil)
    snap, base = anvil.snapshot(), anvil.block_number()
    sim.scheduled_change("TSLAx", 2, 1, delay=60, quiet_blocks=2)
    while anvil.block_number() - base < 7:
        sim.batch("TSLAx", n=4)
    depth = anvil.block_number() - base
    await caught_up(database_url, anvil)
    assert await compare(database_url, anvil.url, all_touched(world, sim)) == []
    old_head = anvil.block_number()
    anvil.revert(snap)
    branch = Simulator(world, seed=98, n_holders=6)
    branch.scheduled_change("TSLAx", 3, 1, delay=60, quiet_blocks=2)
    while anvil.block_number() <= old_head:
        branch.batch("AAPLx", n=3)
    await caught_up(database_url, anvil)
    assert daemon.events("reorg")[-1]["depth"] == depth
    assert await compare(database_url, anvil.url, all_touched(world, sim, branch)) == []
    conn = await asyncpg.connect(database_url)
    try:
        m = await conn.fetchval("SELECT multiplier FROM token_supply WHERE token = $1", world.tokens["TSLAx"])
        assert m == 3 * 10**18, "the orphaned 2:1 split must be gone, the new branch's 3:1 in force"
    finally:
        await conn.close()
    branch.run(blocks=2, moves_per_block=3)
    daemon.kill()  # mid-trade: the chain moves on while nothing indexes it
    branch.run(blocks=3, moves_per_block=3)
    daemon = DaemonProcess(config, log).start()
    await caught_up(database_url, anvil)
    assert await compare(database_url, anvil.url, all_touched(world, sim, branch)) == []
    assert cli("run", config=config, timeout=30).returncode == 2
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0 and time.monotonic() - started < 10
    assert cli("verify", config=config).returncode == 0
