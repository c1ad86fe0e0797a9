"""The development network itself: anvil launcher, embedded PostgreSQL, deployment, simulator.

Everything here runs against real processes (anvil, PostgreSQL); no mocks.
"""

from __future__ import annotations

import os
import shutil
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog
from eth_abi.abi import decode

from devnet import anvil as anvil_module
from devnet.anvil import Anvil, AnvilError, AnvilNotFound
from devnet.cli import main as devnet_main
from devnet.contracts import load_artifact
from devnet.deploy import World, deploy_world
from devnet.node import Node, Web3RPCError, rpc
from devnet.postgres import embedded_postgres, resolve_database_url, scratch_dir
from devnet.simulate import ONE, Simulator
from tests.conftest import cli

X = load_artifact("XStock")


def call_uint(url: str, token: str, fn: str, args: list[Any], block: str | int = "latest") -> int:
    tag = hex(block) if isinstance(block, int) else block
    out = rpc(url, "eth_call", [{"to": token, "data": X.encode_call(fn, args)}, tag])
    return int(out[2:66], 16)


def assert_mirror_matches_chain(sim: Simulator, world: World) -> int:
    """sharesOf / balanceOf of every touched address equal the simulator's mirror."""
    checked = 0
    with Node(world.rpc_url) as client:
        for symbol, token in world.all_tokens.items():
            plain = token in sim.plain
            m = ONE if plain else call_uint(world.rpc_url, token, "getCurrentMultiplier", [])
            holders = sorted(sim.summary.touched[symbol])
            fn = "balanceOf" if plain else "sharesOf"
            results = client.batch([("eth_call", [{"to": token, "data": X.encode_call(
                fn, [h])}, "latest"]) for h in holders])
            for holder, raw in zip(holders, results, strict=True):
                assert int(raw, 16) == sim.shares[token].get(holder, 0), (symbol, holder)
            balances = client.batch([("eth_call", [{"to": token, "data": X.encode_call(
                "balanceOf", [h])}, "latest"]) for h in holders])
            for holder, raw in zip(holders, balances, strict=True):
                assert int(raw, 16) == sim.shares[token].get(holder, 0) * m // ONE
            checked += len(holders)
    return checked


# ---------------------------------------------------------------------------- anvil


def test_anvil_starts_on_free_ports_and_stops() -> None:
    started = time.monotonic()
    with Anvil() as first, Anvil(chain_id=1337) as second:
        elapsed = time.monotonic() - started
        assert first.port != second.port
        assert int(rpc(first.url, "eth_chainId"), 16) == 31337
        assert int(rpc(second.url, "eth_chainId"), 16) == 1337
        assert first.ws_url == f"ws://127.0.0.1:{first.port}"
        with pytest.raises(AnvilError, match="in use"):
            Anvil(port=first.port).start()
        pid = first.pid
    print(f"two anvils started in {elapsed:.3f}s")
    assert not first.running and pid is not None
    with pytest.raises(OSError):
        rpc(first.url, "eth_chainId", timeout=1)


def test_anvil_bad_binary_and_bad_flags_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(AnvilError, match="cannot execute"):
        Anvil(binary=str(tmp_path / "no-such-anvil")).start()
    with pytest.raises(AnvilError, match="exited with code"):
        Anvil(binary="/bin/false").start()
    with pytest.raises(AnvilError, match="--definitely-not-a-flag"):
        Anvil(extra_args=["--definitely-not-a-flag"]).start()


def test_find_anvil_missing_names_npm_ci(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    monkeypatch.setenv("ANVIL_BIN", str(tmp_path / "nope"))
    with pytest.raises(AnvilNotFound, match="ANVIL_BIN"):
        anvil_module.find_anvil()
    monkeypatch.delenv("ANVIL_BIN")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(anvil_module, "__file__", str(tmp_path / "pkg" / "anvil.py"))
    with pytest.raises(AnvilNotFound, match="npm ci"):
        anvil_module.find_anvil()


def test_anvil_restarts_from_its_state(anvil_factory: Callable[..., Anvil],
                                       tmp_path: Path) -> None:
    node = anvil_factory(state_path=tmp_path / "state.json")
    node.mine(5)
    fifth = rpc(node.url, "eth_getBlockByNumber", ["0x5", False])["hash"]
    node.restart()
    assert node.block_number() == 5
    assert rpc(node.url, "eth_getBlockByNumber", ["0x5", False])["hash"] == fifth
    node.mine(2)
    dumped = node.dump_state(tmp_path / "live.json")
    copy = anvil_factory(state_path=dumped)
    assert copy.block_number() == 7


def test_rpc_helpers_drive_time_and_reorgs(anvil: Anvil) -> None:
    snapshot = anvil.snapshot()
    anvil.mine(3)
    assert anvil.revert(snapshot) and anvil.block_number() == 0
    anvil.mine(4)
    anvil.rollback(2)
    assert anvil.block_number() == 2
    latest = int(rpc(anvil.url, "eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
    anvil.set_next_block_timestamp(latest + 1000)
    anvil.mine()
    anvil.increase_time(50)
    anvil.mine()
    times = [int(rpc(anvil.url, "eth_getBlockByNumber", [hex(n), False])["timestamp"], 16)
             for n in (3, 4)]
    assert times[0] == latest + 1000 and times[1] >= latest + 1050
    with pytest.raises(Web3RPCError):
        rpc(anvil.url, "no_such_method")


# ---------------------------------------------------------------------------- postgres


@pytest.fixture
def scratch() -> Iterator[Path]:
    folder = scratch_dir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


async def test_embedded_postgres_serves_asyncpg(scratch: Path) -> None:
    started = time.monotonic()
    url, server = resolve_database_url({}, scratch / "pgdata")
    elapsed = time.monotonic() - started
    assert server is not None and url == server.dsn
    try:
        conn = await asyncpg.connect(url)
        assert await conn.fetchval("SELECT 40 + 2") == 42
        await conn.close()
    finally:
        server.stop()
    print(f"embedded postgres initdb+start in {elapsed:.2f}s")
    again = embedded_postgres(scratch / "pgdata")  # existing data dir: no initdb
    try:
        conn = await asyncpg.connect(again.dsn)
        assert await conn.fetchval("SELECT current_setting('fsync')") == "off"
        await conn.close()
    finally:
        again.stop()


def test_resolve_database_url_prefers_env(tmp_path: Path) -> None:
    url, server = resolve_database_url({"DATABASE_URL": "postgresql://u@h/db"}, tmp_path)
    assert (url, server) == ("postgresql://u@h/db", None)
    assert not any(tmp_path.iterdir())


async def test_database_url_is_a_fresh_database(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT current_database()") != "postgres"
        assert await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
    finally:
        await conn.close()


# ---------------------------------------------------------------------------- deploy


def test_deploy_world_emits_new_token_and_sets_roles(world: World) -> None:
    topic = load_artifact("XStockFactory").event_topic("NewToken")
    logs = rpc(world.rpc_url, "eth_getLogs", [{"address": world.factory, "topics": [topic],
                                               "fromBlock": hex(world.deploy_block)}])
    announced = {"0x" + lg["topics"][1][-40:]: decode(["string", "string"],
                                                      bytes.fromhex(lg["data"][2:]))[1]
                 for lg in logs}
    assert announced == {address: symbol for symbol, address in world.tokens.items()}
    for token in world.tokens.values():
        for role in ("minter", "burner", "pauser", "multiplier_updater"):
            fn = "multiplierUpdater" if role == "multiplier_updater" else role
            out = rpc(world.rpc_url, "eth_call", [{"to": token,
                                                   "data": X.encode_call(fn, [])}, "latest"])
            assert "0x" + out[-40:] == world.roles[role]
        assert call_uint(world.rpc_url, token, "getCurrentMultiplier", []) == ONE
    config = tomllib.loads(world.to_toml("postgresql://postgres@/x?host=/tmp"))
    assert config["factory"][0]["address"] == world.factory
    assert config["factory"][0]["start_block"] == world.deploy_block
    assert [t["symbol"] for t in config["token"]] == list(world.plain_tokens)
    assert config["chain"][0] == {"name": "anvil", "rpc": [world.rpc_url], "confirmations": 0,
                                  "max_reorg_depth": 64}
    assert World.from_json(world.to_json()) == world


def test_deploy_world_without_automine(anvil_factory: Callable[..., Anvil]) -> None:
    node = anvil_factory(no_mining=True)
    world = deploy_world(node.url, symbols=("TSLAx",), plain=())
    assert rpc(node.url, "anvil_getAutomine") is False
    assert node.block_number() <= 5  # one block per deployment stage
    assert set(world.tokens) == {"TSLAx"} and world.plain_tokens == {}


# ---------------------------------------------------------------------------- simulator


def test_tour_keeps_mirror_equal_to_chain(anvil_factory: Callable[..., Anvil]) -> None:
    node = anvil_factory(no_mining=True)
    world = deploy_world(node.url)
    sim = Simulator(world, seed=11)
    started = time.monotonic()
    summary = sim.tour()
    print(f"tour: {summary.moves} moves in {summary.last_block} blocks, "
          f"{time.monotonic() - started:.2f}s")
    kinds = {"transfer", "transfer_shares", "transfer_from", "transfer_from_unlimited",
             "transfer_shares_from", "zero", "self", "mint", "redeem", "burn", "batch",
             "batch_shares", "approve", "pause", "unpause", "multiplier_update",
             "multiplier_scheduled", "fee_set", "reverted_attempt"}
    assert kinds <= set(summary.counts)
    assert assert_mirror_matches_chain(sim, world) > 250
    statuses = Node(node.url).batch([("eth_getTransactionReceipt", [h])
                                        for h in summary.tx_hashes])
    failed = sum(r["status"] == "0x0" for r in statuses)
    assert failed == summary.counts["reverted_attempt"] == 2


def test_same_seed_same_transactions(anvil_factory: Callable[..., Anvil]) -> None:
    runs = []
    for seed in (5, 5, 6):
        node = anvil_factory(no_mining=True)
        sim = Simulator(deploy_world(node.url), seed=seed)
        sim.run(blocks=4, moves_per_block=12)
        runs.append((sim.summary.tx_hashes, sim.shares))
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0]


def test_scheduled_activation_is_silent(anvil_factory: Callable[..., Anvil]) -> None:
    node = anvil_factory(no_mining=True)
    world = deploy_world(node.url)
    sim = Simulator(world, seed=3)
    sim.run(blocks=2, moves_per_block=5)
    token, holder = world.tokens["AAPLx"], sim.holders[1]
    block = sim.scheduled_change("AAPLx", 3, 2)
    before = call_uint(node.url, token, "balanceOf", [holder], block - 1)
    after = call_uint(node.url, token, "balanceOf", [holder], block)
    assert after == sim.shares[token][holder] * 3 // 2 and before < after
    assert rpc(node.url, "eth_getLogs", [{"address": token, "fromBlock": hex(block),
                                          "toBlock": hex(block)}]) == []
    other_logs = rpc(node.url, "eth_getLogs", [{"fromBlock": hex(block), "toBlock": hex(block)}])
    assert other_logs, "the activation block should carry other tokens' moves"
    sim.moves("transfer", "AAPLx")  # the next move writes the new multiplier: event first
    updated = X.event_topic("MultiplierUpdated")
    logs = rpc(node.url, "eth_getLogs", [{"address": token, "topics": [updated],
                                          "fromBlock": hex(block)}])
    assert len(logs) == 1 and int(logs[0]["data"], 16) == 3 * ONE // 2
    assert_mirror_matches_chain(sim, world)


def test_automine_mode_is_exact_too(world: World) -> None:
    sim = Simulator(world, seed=9, n_holders=12)
    sim.run(blocks=2, moves_per_block=6)
    sim.fee_decay("SPYx", periods=2, moves_per_block=3)
    sim.scheduled_change("TSLAx", 2, 1, quiet_blocks=1, moves_per_block=2)
    sim.pause_window("NVDAx", blocks=1, moves_per_block=2)
    assert call_uint(world.rpc_url, world.tokens["SPYx"], "getCurrentMultiplier", []) < ONE
    assert sim.summary.counts["reverted_attempt"] == 1
    assert_mirror_matches_chain(sim, world)


def test_batch_is_many_moves_in_one_transaction(anvil_factory: Callable[..., Anvil]) -> None:
    node = anvil_factory(no_mining=True)
    world = deploy_world(node.url)
    sim = Simulator(world, seed=4)
    sim.setup()
    before = len(sim.summary.tx_hashes)
    assert sim.batch("NVDAx", 60) == 60
    (tx_hash,) = sim.summary.tx_hashes[before:]
    receipt = rpc(node.url, "eth_getTransactionReceipt", [tx_hash])
    topics = [lg["topics"][0] for lg in receipt["logs"]]
    assert topics.count(X.event_topic("Transfer")) == 60
    assert topics.count(X.event_topic("TransferShares")) == 60
    assert X.event_topic("Approval") not in topics


def test_bulk_transfers_are_fast_and_exact(anvil_factory: Callable[..., Anvil]) -> None:
    node = anvil_factory(no_mining=True, gas_limit=300_000_000)
    world = deploy_world(node.url)
    sim = Simulator(world, seed=2)
    sim.setup()
    stats = sim.bulk_transfers(10_000, per_tx=250, txs_per_block=10)
    print(f"bulk: {stats.transfers} transfers, {stats.transactions} txs, {stats.blocks} blocks,"
          f" {stats.seconds:.2f}s, {stats.rate:.0f} transfers/s")
    assert stats.transfers == 10_000 and stats.blocks == 4
    assert assert_mirror_matches_chain(sim, world) > 1000
    if os.environ.get("CI"):
        return
    assert stats.rate > 2000


def test_cli_helper_runs_the_package(run_cli: Callable[..., Any]) -> None:
    done = run_cli("--help")
    assert done.returncode == 0, done.stderr
    assert "migrate" in done.stdout and "backfill" in done.stdout
    assert "demo" not in done.stdout, "the demo is the development package's, not the indexer's"


# ---------------------------------------------------------------------------- your own anvil


def devnet_cli(*args: str) -> Any:
    return cli(*args, module="devnet", timeout=180)


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def assert_one_line_error(done: Ran, code: int, *words: str) -> None:
    assert done.returncode == code, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


def test_deploy_then_trade_on_your_own_anvil(anvil_factory: Callable[..., Anvil], tmp_path: Path) -> None:
    """README "Your own anvil": deploy writes the config and the world file, trade mines trades
    and the split on that deployment; the chain shows them (read here through web3)."""
    node = anvil_factory()
    config = tmp_path / "devnet.toml"
    done = devnet_cli("deploy", "--rpc", node.url, "--out", str(config))
    assert done.returncode == 0, done.stderr
    world = World.from_json((tmp_path / "devnet.world.json").read_text())
    assert tomllib.loads(config.read_text())["factory"][0]["address"] == world.factory
    head = node.block_number()
    done = devnet_cli("trade", "--rpc", node.url, "--world", str(tmp_path / "devnet.world.json"),
                      "--blocks", "3", "--moves", "4", "--split", "TSLAx")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("trade: ") and "2:1 split of TSLAx" in done.stdout, done.stdout
    assert node.block_number() > head
    w3 = Node(node.url).w3
    tsla = w3.eth.contract(address=w3.to_checksum_address(world.tokens["TSLAx"]), abi=X.abi)
    assert tsla.functions.getCurrentMultiplier().call()[0] == 2 * ONE
    assert tsla.functions.totalSupply().call() > 0
    again = devnet_cli("trade", "--rpc", node.url, "--world", str(tmp_path / "devnet.world.json"),
                       "--blocks", "1", "--seed", "2")
    assert again.returncode == 0, again.stderr


def test_deploy_and_trade_fail_in_one_line(anvil_factory: Callable[..., Anvil], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The commands in-process (a subprocess each costs a web3 import): exit code and one line."""

    def devnet_cli(*args: str) -> Ran:
        capsys.readouterr()
        saved = structlog.get_config()  # main() points the log at this test's captured stdout
        try:
            code = devnet_main(list(args))
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
        finally:
            structlog.configure(**saved)
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    port = anvil_module.free_port()
    dead = f"http://127.0.0.1:{port}/secret-key-123"
    done = devnet_cli("deploy", "--rpc", dead, "--out", str(tmp_path / "x.toml"), "--wait", "0.5")
    assert_one_line_error(done, 1, "deploy: error:", "no answer from the node")
    assert "secret-key-123" not in done.stderr
    assert not (tmp_path / "x.toml").exists()
    assert_one_line_error(devnet_cli("deploy", "--rpc", "ws://127.0.0.1:1", "--out", str(tmp_path / "x.toml")),
                          2, "http://")
    assert_one_line_error(devnet_cli("trade", "--rpc", dead, "--world", str(tmp_path / "missing.json")),
                          2, "cannot read the world file")
    (tmp_path / "bad.json").write_text("{}")
    assert_one_line_error(devnet_cli("trade", "--rpc", dead, "--world", str(tmp_path / "bad.json")),
                          2, "is not a world file")
    world = World(rpc_url=dead, chain_id=31337, deploy_block=1, implementation="0x" + "11" * 20,
                  factory="0x" + "22" * 20, sanctions="0x" + "33" * 20, batcher="0x" + "44" * 20,
                  tokens={"TSLAx": "0x" + "55" * 20})
    (tmp_path / "world.json").write_text(world.to_json())
    done = devnet_cli("trade", "--rpc", dead, "--world", str(tmp_path / "world.json"))
    assert_one_line_error(done, 1, "unreachable")
    assert "secret-key-123" not in done.stderr
    assert_one_line_error(devnet_cli("trade", "--rpc", dead, "--world", str(tmp_path / "world.json"),
                                     "--split", "NOPEx"), 2, "no xStock of that symbol")
    fresh = anvil_factory()  # a node where nothing is deployed (an anvil that restarted)
    assert_one_line_error(devnet_cli("trade", "--rpc", fresh.url, "--world", str(tmp_path / "world.json")),
                          1, "no contract at the factory", "deploy again")
