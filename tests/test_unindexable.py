"""Nothing is skipped in silence: a followed token's log the indexer cannot account for stops the
batch (exit 5) with one line naming the transaction and log index, for backfill and daemon.

The odd logs are made on anvil by swapping a followed token's code for a few bytes that emit
one raw log (`anvil_setCode`), sending it a transaction, and putting the real code back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devnet.deploy import Transactor, Tx, World
from devnet.node import Node
from indexer.decode import TRANSFER_TOPIC
from tests.conftest import cli, run_sync
from tests.daemonctl import DaemonProcess, cursor
from tests.silent_paths import config_text


def _push32(word: str) -> str:
    return "7f" + word.removeprefix("0x").rjust(64, "0")


def erc721_transfer_code(frm: str, to: str, token_id: int) -> str:
    """Runtime code: LOG4(Transfer, from, to, tokenId) with no data, then STOP."""
    return "0x" + (_push32(hex(token_id)) + _push32(to) + _push32(frm) + _push32(TRANSFER_TOPIC)
                   + "6000" + "6000" + "a4" + "00")


def lone_transfer_code(frm: str, to: str, amount: int) -> str:
    """Runtime code: LOG3(Transfer, from, to) with one uint256 of data and no TransferShares."""
    return "0x" + (_push32(hex(amount)) + "600052" + _push32(to) + _push32(frm) + _push32(TRANSFER_TOPIC)
                   + "6020" + "6000" + "a3" + "00")


def emit_with(world: World, token: str, code: str) -> tuple[str, int, int]:
    """Run `code` as `token` once (real code restored after); (tx hash, block, log index)."""
    with Node(world.rpc_url) as client:
        original = client.call("eth_getCode", [token, "latest"])
        client.call("anvil_setCode", [token, code])
        try:
            receipt = Transactor(client).execute([Tx(world.roles["operator"], token, "0x", gas=100_000,
                                                     label="odd log")])[0]
        finally:
            client.call("anvil_setCode", [token, original])
    (log,) = receipt["logs"]
    return str(receipt["transactionHash"]).lower(), int(receipt["blockNumber"], 16), int(log["logIndex"], 16)


CASES = {
    "erc721-style-transfer-of-a-plain-token": ("USDT0", erc721_transfer_code),
    "xstock-transfer-without-transfer-shares": ("TSLAx", lone_transfer_code),
}


@pytest.mark.parametrize("case", list(CASES))
def test_backfill_stops_naming_the_log(case: str, world: World, database_url: str, tmp_path: Path) -> None:
    symbol, make = CASES[case]
    token = world.all_tokens[symbol]
    tx_hash, block, index = emit_with(world, token, make(world.roles["owner"], world.roles["minter"], 7))
    config = tmp_path / "indexer.toml"
    config.write_text(config_text(world, database_url, {}, 1_000_000))
    done = cli("backfill", config=config)
    assert done.returncode == 5, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("indexer: error:")]
    assert len(errors) == 1, done.stderr
    assert f"block {block} tx {tx_hash} log index {index}:" in errors[0]
    assert token in errors[0]
    at = run_sync(cursor(database_url))
    assert at is None or at[0] < block  # nothing of the batch holding it was stored


def test_daemon_stops_naming_the_log(world: World, database_url: str, tmp_path: Path) -> None:
    token = world.tokens["TSLAx"]
    tx_hash, block, index = emit_with(world, token, lone_transfer_code(world.roles["owner"], world.roles["minter"], 7))
    config = tmp_path / "indexer.toml"
    config.write_text(config_text(world, database_url, {}, 1_000_000))
    log = tmp_path / "daemon.log"
    daemon = DaemonProcess(config, log).start()
    try:
        code = daemon.wait(120)
    finally:
        if daemon.alive:
            daemon.kill()
    assert code == 5, log.read_text()[-2000:]
    assert f"block {block} tx {tx_hash} log index {index}" in log.read_text()
    at = run_sync(cursor(database_url))
    assert at is None or at[0] < block
