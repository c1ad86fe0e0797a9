"""Past one machine: one `run --chain NAME` per chain against one PostgreSQL (a writer lock per
chain), and the read-only surface on a server that refuses writes, as a hot standby does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from devnet.anvil import Anvil
from devnet.deploy import World, deploy_world
from devnet.node import Node
from devnet.simulate import Simulator
from tests.conftest import REPO_ROOT, cli, execute
from tests.daemonctl import wait_for


def two_chain_config(worlds: dict[str, World], database_url: str, path: Path) -> Path:
    parts = []
    for i, (name, world) in enumerate(worlds.items()):
        text = world.to_toml(database_url, chain=name).split("[custody]")[0]
        parts.append(text if i == 0 else text.split("\n", 3)[3])  # one [database]
    path.write_text("".join(parts) + '[custody]\nstale_after = "24h"\n')
    return path


@pytest.fixture
def daemons() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(config: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "RPC_URL", "INDEXER_CONFIG")}
        env["PYTHONPATH"] = str(REPO_ROOT)
        proc = subprocess.Popen([sys.executable, "-m", "indexer", "--config", str(config), "run", *args],
                                cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log.open("ab"))
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def cursor_at_head(database_url: str, chain_id: int, rpc: Node) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT block_number, block_hash FROM cursors WHERE chain_id = $1", chain_id)
    except asyncpg.UndefinedTableError:
        return False
    finally:
        await conn.close()
    head = rpc.call("eth_getBlockByNumber", ["latest", False])
    return row is not None and (row["block_number"], row["block_hash"]) == (int(head["number"], 16), head["hash"])


async def test_one_daemon_per_chain_against_one_database(
        anvil_factory: Callable[..., Anvil], database_url: str, tmp_path: Path,
        daemons: Callable[..., subprocess.Popen[bytes]]) -> None:
    worlds = {"east": deploy_world(anvil_factory(chain_id=31337).url),
              "west": deploy_world(anvil_factory(chain_id=31338).url)}
    config = two_chain_config(worlds, database_url, tmp_path / "indexer.toml")
    assert cli("migrate", config=config).returncode == 0
    east = daemons(config, "--chain", "east", log=tmp_path / "east.log")
    west = daemons(config, "--chain", "west", log=tmp_path / "west.log")
    for seed, world in enumerate(worlds.values()):
        Simulator(world, seed=seed + 1, n_holders=8).run(blocks=3, moves_per_block=4)
    for world in worlds.values():
        rpc = Node(world.rpc_url)
        await wait_for(lambda w=world, r=rpc: cursor_at_head(database_url, w.chain_id, r), what="both chains indexed")
    second = cli("run", "--chain", "east", config=config, timeout=60)
    assert second.returncode == 2, second.stderr
    assert "chain east (id 31337) is already being indexed by xstock-indexer writer" in second.stderr
    unknown = cli("run", "--chain", "north", config=config, timeout=60)
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and "'north'" in unknown.stderr
    for proc in (east, west):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    audit = cli("verify", config=config)
    assert audit.returncode == 0 and audit.stdout.count("equal") >= 2, audit.stdout + audit.stderr


async def test_the_read_only_surface_serves_from_a_server_that_refuses_writes(
        world: World, world_config: Path, database_url: str, tmp_path: Path) -> None:
    """A hot standby refuses every write; default_transaction_read_only = on does the same here."""
    Simulator(world, seed=4, n_holders=6).run(blocks=2, moves_per_block=4)
    assert cli("backfill", config=world_config).returncode == 0
    assert cli("reconcile", config=world_config).returncode == 0
    name = urlsplit(database_url).path.lstrip("/")  # a socket URL has a path in its query too
    await execute(database_url, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    for command in (["status"], ["verify"], ["flags", "--all"],
                    ["export", "holders", "--token", "TSLAx", "--output", str(tmp_path / "h.csv")]):
        done = cli(*command, config=world_config)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert "equal" in cli("verify", config=world_config).stdout
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SET ROLE analyst")
        assert await conn.fetchval("SELECT count(*) FROM holders") > 0
        assert await conn.fetchval("SELECT count(*) FROM backing") >= 0
    finally:
        await conn.close()
    refused = cli("backfill", config=world_config)  # writers are for the primary, and say so
    assert refused.returncode == 2 and refused.stderr.count("indexer: error:") == 1, refused.stderr
    assert "read only" in refused.stderr and "Traceback" not in refused.stderr
