"""History is exact at every block through the real token's silent paths (issue 11).

Each case of tests/silent_paths.py is indexed three ways: a backfill in one range, a backfill in
many small ranges, and the daemon following the chain one block at a time. Then every block
from each token's start to the indexed block is compared with the chain itself
(tests/oracle.py: web3 eth_call at that block): supply_at, multiplier_at, balance_at of every
address that ever held the token, and holders_at.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devnet.deploy import World
from devnet.node import Node
from tests.conftest import cli, run_sync
from tests.daemonctl import DaemonProcess, cursor
from tests.oracle import blocks_compared, compare_history
from tests.silent_paths import CASES, config_text, play, setup

MODES = {"one_range": 1_000_000, "many_ranges": 3, "live": 1_000_000}


def wait_indexed(database_url: str, rpc_url: str, daemon: DaemonProcess, within: float = 60.0) -> None:
    """Block until the daemon's cursor has reached the node's head (a condition, polled); fail
    at once, with the end of its log, if the daemon has exited."""
    with Node(rpc_url) as client:
        head = int(client.call("eth_blockNumber"), 16)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not daemon.alive:
            raise AssertionError(f"the daemon exited before indexing block {head}: "
                                 f"{daemon.log_path.read_text()[-1500:]}")
        at = run_sync(cursor(database_url))
        if at is not None and at[0] >= head:
            return
        time.sleep(0.05)  # polling the condition above, with its deadline
    raise AssertionError(f"the daemon did not index block {head} within {within} s")


def error_lines(stderr: str) -> list[str]:
    """The error lines of a CLI run (the rest of stderr is JSON logs); no traceback allowed."""
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("indexer: error:")]


def index(mode: str, case_name: str, world: World, database_url: str, tmp_path: Path) -> list[str]:
    """Run the case, index it in `mode`, return the tokens to compare."""
    case = CASES[case_name]
    extra = setup(case, world)
    config = tmp_path / "indexer.toml"
    config.write_text(config_text(world, database_url, extra, MODES[mode]))
    if mode == "live":
        daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
        try:
            wait_indexed(database_url, world.rpc_url, daemon, within=120)
            play(case, world, extra, on_block=lambda: wait_indexed(database_url, world.rpc_url, daemon))
        finally:
            code = daemon.stop()
        assert code == 0, daemon.log_path.read_text()[-1500:]
    else:
        play(case, world, extra)
        done = cli("backfill", config=config)
        assert done.returncode == 0, done.stderr
    return case.tokens(world, extra)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("case_name", list(CASES))
def test_history_equals_the_chain_at_every_block(case_name: str, mode: str, world: World, database_url: str,
                                                 tmp_path: Path) -> None:
    tokens = index(mode, case_name, world, database_url, tmp_path)
    problems = run_sync(compare_history(database_url, world.rpc_url, tokens))
    audit = cli("verify", "--history", "--sample", "5", "--seed", "11", config=tmp_path / "indexer.toml")
    assert problems == [], f"{problems}\nverify --history said:\n{audit.stdout}"
    assert audit.returncode == 0, audit.stdout + audit.stderr
    print(f"{case_name} {mode}: {run_sync(blocks_compared(database_url, tokens))} token-blocks equal")


def test_from_block_on_an_empty_database_refuses_and_says_what_to_do(
        world: World, database_url: str, tmp_path: Path) -> None:
    case = CASES["late_from_block"]
    extra = setup(case, world)
    config = tmp_path / "indexer.toml"
    config.write_text(config_text(world, database_url, extra, 1_000_000))
    blocks = play(case, world, extra)
    late = blocks[0]  # above every NewToken of the factory
    refused = cli("backfill", "--from-block", str(late), config=config)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    lines = error_lines(refused.stderr)
    assert len(lines) == 1 and "--from-block" in lines[0] and "empty" in lines[0], refused.stderr
    assert run_sync(cursor(database_url)) is None  # nothing was indexed
    # From the configured start, --from-block changes nothing: discovery and history are whole.
    done = cli("backfill", "--from-block", str(world.deploy_block), config=config)
    assert done.returncode == 0, done.stderr
    assert run_sync(compare_history(database_url, world.rpc_url, case.tokens(world, extra))) == []


def test_block_bounds_outside_the_chain_exit_2(world: World, database_url: str, tmp_path: Path) -> None:
    config = tmp_path / "indexer.toml"
    config.write_text(config_text(world, database_url, {}, 1_000_000))
    with Node(world.rpc_url) as client:
        head = int(client.call("eth_blockNumber"), 16)
    for args, words in ((["--from-block", "9", "--to-block", "5"], "above --to-block"),
                        (["--to-block", str(head + 100)], "past the chain head")):
        done = cli("backfill", *args, config=config)
        assert done.returncode == 2, done.stdout + done.stderr
        lines = error_lines(done.stderr)
        assert len(lines) == 1 and words in lines[0], done.stderr
