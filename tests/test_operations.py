"""What an operator meets: /healthz reasons and gauges from start-up, a node behind the database,
start-up order (writer lock before any port, a port in use), Retryable errors inside a step
retried and counted, exact amounts in verify. Real anvil, real PostgreSQL, the CLI as a process,
the RPC proxy in front of anvil where a node in trouble is needed."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from devnet.anvil import Anvil, free_port
from devnet.deploy import World, deploy_world
from devnet.node import Node
from devnet.simulate import Simulator
from tests.chaincheck import compare
from tests.conftest import cli
from tests.daemonctl import DaemonProcess, cursor, indexed_to_head, wait_for, write_config
from tests.rpcproxy import RpcProxy


@pytest.fixture(autouse=True)
def _no_daemon_left_behind() -> Iterator[None]:
    yield
    DaemonProcess.kill_all()


def touched(world: World, *sims: Simulator) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {a: set() for a in world.all_tokens.values()}
    for sim in sims:
        for symbol, addrs in sim.summary.touched.items():
            out[world.all_tokens[symbol]] |= addrs
    return out


def config_for(world: World, database_url: str, tmp_path: Path, rpc: str, port: int | None = None,
               max_lag: float = 30, **kwargs: object) -> Path:
    path = write_config(world, database_url, tmp_path / "indexer.toml", rpc=rpc, metrics_port=port, **kwargs)  # type: ignore[arg-type]
    path.write_text(path.read_text().replace("max_lag_seconds = 30", f"max_lag_seconds = {max_lag}"))
    return path


def gauge(metrics: str, name: str) -> float | None:
    match = re.search(rf'^{name}{{chain="anvil"}} (\S+)$', metrics, re.MULTILINE)
    return float(match.group(1)) if match else None


def health(daemon: DaemonProcess) -> tuple[int, str]:
    try:
        return daemon.http("/healthz")
    except OSError:
        return 0, ""


async def progress_row(database_url: str) -> asyncpg.Record:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchrow("SELECT indexed_block, head_block, lag_blocks FROM indexer_progress")
    finally:
        await conn.close()


async def test_healthz_turns_503_on_lag_and_gauges_exist_from_start_up(world: World, anvil: Anvil,
                                                                         database_url: str, tmp_path: Path) -> None:
    sim = Simulator(world, seed=81, n_holders=6)
    sim.run(blocks=4, moves_per_block=3)
    with RpcProxy(anvil.url) as proxy:
        port = free_port()
        config = config_for(world, database_url, tmp_path, proxy.url, port, max_lag=1)
        part = cli("backfill", "--to-block", str(world.deploy_block + 3), config=config)
        assert part.returncode == 0, part.stderr
        indexed = (await cursor(database_url))[0]  # type: ignore[index]
        sim.run(blocks=6, moves_per_block=3)
        head = anvil.block_number()
        proxy.getlogs_delay = 4.0  # a slow provider: the catch-up cannot keep within 1 s
        daemon = DaemonProcess(config, tmp_path / "daemon.log", metrics_port=port).start()

        async def lag_reported() -> bool:
            status, body = health(daemon)
            return status == 503 and "over max_lag_seconds 1" in body and "no progress for" in body
        await wait_for(lag_reported, within=30, what="/healthz 503 naming the lag and the stall")
        metrics = daemon.http("/metrics")[1]  # before any new block is committed
        assert (await cursor(database_url))[0] == indexed  # type: ignore[index]
        assert gauge(metrics, "indexer_indexed_block") == indexed
        assert gauge(metrics, "indexer_head_block") == head
        assert gauge(metrics, "indexer_lag_blocks") == head - indexed
        assert (gauge(metrics, "indexer_lag_seconds") or 0) > 1
        row = await progress_row(database_url)
        assert (row["head_block"], row["lag_blocks"]) == (head, head - indexed)
        proxy.getlogs_delay = 0.0
        await wait_for(lambda: indexed_to_head(database_url, anvil.rpc), what="the catch-up")
        await wait_for(lambda: _status_is(daemon, 200), what="/healthz 200 once caught up")
        row = await progress_row(database_url)
        assert (row["indexed_block"], row["head_block"], row["lag_blocks"]) == (head, head, 0)
        assert gauge(daemon.http("/metrics")[1], "indexer_lag_seconds") == 0
        assert daemon.stop() == 0
    assert await compare(database_url, anvil.url, touched(world, sim)) == []


async def _status_is(daemon: DaemonProcess, status: int) -> bool:
    return health(daemon)[0] == status


async def test_node_behind_the_database(world: World, anvil: Anvil, database_url: str, tmp_path: Path) -> None:
    """backfill exits 4 with one line; the daemon waits with /healthz 503 and resumes."""
    sim = Simulator(world, seed=82, n_holders=6)
    sim.run(blocks=5, moves_per_block=3)
    with RpcProxy(anvil.url) as proxy:
        port = free_port()
        config = config_for(world, database_url, tmp_path, proxy.url, port)
        assert cli("backfill", config=config).returncode == 0
        indexed = (await cursor(database_url))[0]  # type: ignore[index]
        proxy.head_override = 2  # a node that lost its state, or the wrong node
        behind = cli("backfill", config=config)
        assert behind.returncode == 4, behind.stderr
        last = behind.stderr.strip().splitlines()[-1]
        assert last == (f"indexer: error: chain anvil: the node's head is block 2, below block {indexed} this "
                        "database is indexed to: the node is behind the database (a wrong node, a node that lost "
                        "its state, or a reorg deeper than the node holds)"), behind.stderr
        assert "Traceback" not in behind.stderr
        daemon = DaemonProcess(config, tmp_path / "daemon.log", metrics_port=port).start()

        async def waiting() -> bool:
            status, body = health(daemon)
            return status == 503 and "the node is behind the database" in body
        await wait_for(waiting, within=30, what="/healthz 503: node behind")
        assert daemon.alive
        sim.run(blocks=3, moves_per_block=3)
        proxy.head_override = None  # the node caught up
        await wait_for(lambda: indexed_to_head(database_url, anvil.rpc), what="the daemon to resume")
        await wait_for(lambda: _status_is(daemon, 200), what="/healthz 200 again")
        metrics = daemon.http("/metrics")[1]
        assert 'indexer_step_retries_total{chain="anvil",reason="node_behind"}' in metrics
        assert daemon.stop() == 0
    assert await compare(database_url, anvil.url, touched(world, sim)) == []


async def test_a_restarted_empty_node_is_waited_for_then_exit_3(world: World, anvil: Anvil, anvil_factory,  # type: ignore[no-untyped-def]
                                                                 database_url: str, tmp_path: Path) -> None:
    Simulator(world, seed=83, n_holders=6).run(blocks=12, moves_per_block=2)
    config = config_for(world, database_url, tmp_path, anvil.url, max_reorg_depth=8)
    assert cli("backfill", config=config).returncode == 0
    before = await cursor(database_url)
    assert before is not None
    fresh = anvil_factory()  # same chain id, same deployment addresses, another history
    fresh_world = deploy_world(fresh.url)
    assert fresh_world.tokens == world.tokens and fresh.block_number() < before[0]
    config = config_for(world, database_url, tmp_path, fresh.url, max_reorg_depth=8)
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()

    async def waits() -> bool:
        return any(e.get("reason") == "node_behind" for e in daemon.events("step_retry"))
    await wait_for(waits, within=30, what="the daemon to wait for the node")
    assert daemon.alive
    fresh.mine(before[0] - fresh.block_number() + 2)
    assert daemon.wait(60) == 3
    assert "reorg deeper than max_reorg_depth=8" in daemon.log_path.read_text()
    assert await cursor(database_url) == before


def test_second_run_exits_2_naming_the_holder_before_binding_its_port(world: World, database_url: str,
                                                                        tmp_path: Path) -> None:
    port = free_port()
    config = config_for(world, database_url, tmp_path, world.rpc_url, port)
    daemon = DaemonProcess(config, tmp_path / "daemon.log", metrics_port=port).start()
    try:
        import asyncio

        asyncio.run(wait_for(lambda: _status_is(daemon, 200), what="the first daemon serving"))
        second = cli("run", config=config, timeout=60)
        assert second.returncode == 2, second.stderr
        assert "is already being indexed by xstock-indexer" in second.stderr
        assert "Traceback" not in second.stderr and "address already in use" not in second.stderr.lower()
    finally:
        assert daemon.stop() == 0


def test_a_metrics_port_in_use_exits_2_naming_it(world: World, database_url: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = config_for(world, database_url, tmp_path, world.rpc_url, port)
        done = cli("run", config=config, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"daemon.metrics_port: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
    bad = config.read_text().replace(f"metrics_port = {port}", "metrics_port = 70000")
    config.write_text(bad)
    done = cli("run", config=config, timeout=60)
    assert done.returncode == 2 and "daemon.metrics_port" in done.stderr and "70000" in done.stderr


async def test_a_reorg_while_a_range_is_fetched_is_retried_and_counted(world: World, anvil: Anvil,
                                                                       database_url: str, tmp_path: Path) -> None:
    sim = Simulator(world, seed=84, n_holders=6)
    sim.run(blocks=2, moves_per_block=3)
    with RpcProxy(anvil.url) as proxy:
        port = free_port()
        config = config_for(world, database_url, tmp_path, proxy.url, port)
        daemon = DaemonProcess(config, tmp_path / "daemon.log", metrics_port=port).start()
        await wait_for(lambda: indexed_to_head(database_url, anvil.rpc), what="the daemon at the head")
        proxy.tamper_logs = 2  # the next two answers with logs carry another block hash
        sim.run(blocks=3, moves_per_block=3)

        async def consumed() -> bool:
            return proxy.tamper_logs == 0
        await wait_for(consumed, what="the tampered answers to be served")
        await wait_for(lambda: indexed_to_head(database_url, anvil.rpc), what="the daemon at the head again")
        assert daemon.alive
        retries = [e for e in daemon.events("step_retry") if e["reason"] == "chain_moved"]
        assert len(retries) >= 2, retries
        metrics = daemon.http("/metrics")[1]
        counted = re.search(r'indexer_step_retries_total\{chain="anvil",reason="chain_moved"\} (\S+)', metrics)
        assert counted and float(counted.group(1)) >= 2
        assert daemon.stop() == 0
    assert await compare(database_url, anvil.url, touched(world, sim)) == []


async def test_a_node_refusing_state_at_past_blocks_is_retried(world: World, database_url: str,
                                                               tmp_path: Path) -> None:
    sim = Simulator(world, seed=85, n_holders=8)
    sim.run(blocks=2, moves_per_block=4)
    known = int(Node(world.rpc_url).call("eth_blockNumber", []), 16)
    sim.scheduled_change("TSLAx", 2, 1, delay=600)  # silent: found by asking past blocks
    sim.run(blocks=6, moves_per_block=2)
    with RpcProxy(world.rpc_url) as proxy:
        config = config_for(world, database_url, tmp_path, proxy.url, extra_chain="batch_blocks = 64")
        # the tokens found first (reading a kind at its creation block falls back to the latest
        # without state); then the refusals meet the multiplier state reads of the next ranges
        assert cli("backfill", "--to-block", str(known), config=config).returncode == 0
        proxy.refuse_state = 2
        done = cli("backfill", config=config)
        assert done.returncode == 0, done.stderr
        assert proxy.stats["refused_state"] == 2
        assert cli("verify", config=config).returncode == 0
    retries = [json.loads(line) for line in done.stderr.splitlines() if '"step_retry"' in line]
    assert [r["reason"] for r in retries] == ["state_unavailable"] * 2, done.stderr
    assert await compare(database_url, world.rpc_url, touched(world, sim)) == []


async def test_verify_prints_exact_amounts(world: World, world_config: Path, database_url: str) -> None:
    Simulator(world, seed=86, n_holders=4).run(blocks=2, moves_per_block=3)
    assert cli("backfill", config=world_config).returncode == 0
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE tokens SET total_shares = 25000000000000000000 WHERE symbol = 'TSLAx'")
    finally:
        await conn.close()
    audit = cli("verify", config=world_config)
    assert audit.returncode == 1
    assert "25000000000000000000 in database" in audit.stdout and "E+" not in audit.stdout, audit.stdout
