"""Start-up: each command imports only what it needs (issue 15: under 0.3 s for every command).

Checked on what a fresh interpreter has in sys.modules, not on time (a shared machine makes
timings flaky): `indexer --help` loads argparse and nothing heavy; the modules each command
runs never load web3, eth-abi or eth-utils (decode and the contract views read ABI with
indexer.abi, checked against eth-abi in tests/test_abi.py), only the daemon loads the HTTP
server, and a node at an http:// URL is read without aiohttp (indexer/http1.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devnet.deploy import World
from devnet.simulate import Simulator
from tests.conftest import cli

# Each costs 0.05-0.2 s of CPU to import.
HEAVY = ("asyncio", "structlog", "rich", "aiohttp", "asyncpg", "tenacity", "prometheus_client",
         "eth_abi", "eth_utils", "eth_hash", "web3", "pyarrow", "orjson")
NEVER = ("web3", "eth_abi", "eth_utils", "pyarrow", "rich", "pygments")  # on any product command's path


def loaded_after(code: str) -> set[str]:
    """Top-level packages and submodules in sys.modules after ``code`` runs in a fresh
    interpreter (SystemExit from argparse allowed), without the variables that override a
    config (as tests.conftest.cli runs a command)."""
    script = ("import json, sys\ntry:\n" + "".join(f"    {line}\n" for line in code.splitlines())
              + "except SystemExit:\n    pass\nprint(json.dumps(sorted(sys.modules)), file=sys.stderr)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "RPC_URL", "INDEXER_CONFIG")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--help"], ["backfill", "--help"], ["status", "--help"], ["run", "--help"]])
def test_help_imports_nothing_heavy(argv: list[str]) -> None:
    modules = loaded_after(f"from indexer.cli import main\nmain({argv!r})")
    assert "argparse" in modules and "indexer.cli" in modules
    assert [m for m in HEAVY if m in modules] == []


# The module each command's dispatch imports (indexer/cli.py), with what a run of it loads first.
COMMANDS = {
    "backfill": "indexer.backfill", "run": "indexer.daemon", "status": "indexer.status",
    "verify": "indexer.verify", "verify --history": "indexer.history", "export": "indexer.export",
    "migrate": "indexer.store", "custody": "indexer.custody.importer", "reconcile": "indexer.custody.reconcile",
    "flags": "indexer.custody.flags",
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_commands_do_not_import_web3_or_eth_abi(command: str) -> None:
    modules = loaded_after(f"import indexer.cli, indexer.logconfig, indexer.config, {COMMANDS[command]}")
    assert [m for m in NEVER if m in modules] == []
    assert ("aiohttp.web" in modules) is (command == "run"), "only the daemon serves /metrics"
    assert ("prometheus_client" in modules) is (command == "run"), "only the daemon keeps metrics"


def test_decoding_and_reading_names_do_not_load_eth_abi() -> None:
    """A move, an event with a string (NewTerms) and a token's name: indexer.abi reads them."""
    modules = loaded_after("""
from indexer import contract_views, decode
from indexer.models import TokenKind
token, word = "0x" + "a1" * 20, "0x" + "00" * 12 + "11" * 20
terms = next(s for s in decode.OTHER_EVENTS if s.name == "NewTerms")
string = "0x" + (32).to_bytes(32, "big").hex() + (2).to_bytes(32, "big").hex() + b"ok".ljust(32, b"\\0").hex()
base = {"address": token, "blockNumber": "0x1", "blockHash": "0x" + "bb" * 32, "blockTimestamp": "0x5",
        "transactionHash": "0x" + "cc" * 32}
logs = [{**base, "topics": [decode.TRANSFER_TOPIC, word, word], "data": "0x" + "00" * 32, "logIndex": "0x0"},
        {**base, "topics": [terms.topic], "data": string, "logIndex": "0x1"}]
out = decode.decode(logs, {token: TokenKind.ERC20})
assert len(out.transfers) == 1 and out.events[0].args == {"terms": "ok"}, out
assert contract_views.as_text(bytes.fromhex(string[2:])) == "ok"
""")
    assert "indexer.decode" in modules and "indexer.abi" in modules
    assert [m for m in NEVER if m in modules] == []


def test_a_backfill_with_nothing_to_do_reads_no_schema_file(world: World, world_config: Path) -> None:
    """Every writer's start finishes a first load a kill left behind (first_load.finish); with
    none left it does not read schema.sql for the deferred indexes' statements (the package
    resource reader loads zipfile and friends: a few ms of every backfill's start-up)."""
    Simulator(world, seed=3, n_holders=4).run(blocks=2, moves_per_block=4)  # a first load: transfers
    assert cli("backfill", config=world_config).returncode == 0
    code = f"from indexer.cli import main\nassert main(['--config', {str(world_config)!r}, 'backfill']) == 0"
    modules = loaded_after(code)
    assert "indexer.first_load" in modules and "zipfile" not in modules


def test_status_and_backfill_over_http_do_not_import_aiohttp(world: World, world_config: Path) -> None:
    """A node at an http:// URL (anvil here) is read through indexer.http1; aiohttp, whose
    import builds TLS contexts (0.06-0.12 s), is for https:// URLs only."""
    assert world.rpc_url.startswith("http://")
    assert cli("backfill", config=world_config).returncode == 0
    for command in ("status", "backfill"):
        code = f"from indexer.cli import main\nassert main(['--config', {str(world_config)!r}, {command!r}]) == 0"
        modules = loaded_after(code)
        assert "indexer.http1" in modules and "indexer.rpc" in modules, command
        assert [m for m in modules if m == "aiohttp" or m.startswith("aiohttp.")] == [], command
