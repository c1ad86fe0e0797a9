"""README.md is part of the product: its config parses, its commands exist, and every SQL
example runs against a real scenario and says what the chain says."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from devnet.cli import build_parser as devnet_parser
from devnet.deploy import World
from devnet.simulate import Simulator
from indexer.cli import build_parser
from indexer.config import parse_settings
from tests.chaincheck import compare
from tests.conftest import REPO_ROOT, cli

README = (REPO_ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_config_parses_with_every_key_documented() -> None:
    import tomllib

    (text,) = blocks("toml")
    settings = parse_settings(tomllib.loads(text), {}, source="README.md")
    assert settings.chains[0].confirmations == 12
    assert settings.tokens[0].address == "0x8ad3c73f833d3f9a523ab01476625f269aeb7cf0"
    csv = (REPO_ROOT / "examples" / "xstocks-evm.csv").read_text()
    assert "TSLAx,\"Tesla xStock\",0x8ad3c73f833d3f9a523ab01476625f269aeb7cf0" in csv


def test_readme_commands_exist() -> None:
    table = [line for line in README.splitlines() if line.startswith("| `")]
    parser = build_parser()
    names = {a.dest: a for a in parser._actions}  # argparse keeps the subcommands here
    commands = set(names["command"].choices)  # type: ignore[arg-type]
    documented = {re.match(r"\| `(\w+)", line).group(1) for line in table}  # type: ignore[union-attr]
    assert documented <= commands, documented - commands
    assert {"migrate", "backfill", "run", "verify", "custody", "reconcile", "status"} <= documented
    assert "demo" not in commands, "the demo is the development package's (python -m devnet demo)"


def test_readme_devnet_commands_exist() -> None:
    """Every `python -m devnet COMMAND --option` the README shows is one the devnet parser takes."""
    parser = devnet_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    shown = re.findall(r"python -m devnet (\w+)((?: [^\n`]*)?)", README.replace("\\\n", " "))
    assert {"demo", "deploy", "trade"} <= {name for name, _ in shown}
    for name, rest in shown:
        assert name in sub.choices, name  # type: ignore[operator]
        known = {o for a in sub.choices[name]._actions for o in a.option_strings}  # type: ignore[index]
        for option in re.findall(r"(--[a-z-]+)", rest):
            assert option in known, f"python -m devnet {name}: no option {option}"


@pytest.mark.slow
async def test_readme_queries_run_and_agree_with_the_chain(world: World, world_config: Path, database_url: str,
                                                           tmp_path: Path) -> None:
    sim = Simulator(world, seed=3, n_holders=20)
    sim.tour(moves_per_block=6, gap=1)
    sim.scheduled_change("TSLAx", 2, 1, delay=300)
    sim.run(blocks=12, moves_per_block=4)
    assert cli("backfill", config=world_config).returncode == 0
    now = datetime.now(UTC).isoformat()
    custody = tmp_path / "custody.csv"
    custody.write_text("underlying,custodian,account,settled_shares,in_transit_shares,as_of,attestor,ripcord\n"
                       f"AAPL,Custodian A,acct-1,1000000000,0,{now},Attestor,false\n"
                       f"NVDA,Custodian A,acct-2,1000000000,0,{now},Attestor,true\n")  # a ripcord: a flag to list
    assert cli("custody", "import", str(custody), config=world_config).returncode == 0
    assert cli("reconcile", config=world_config).returncode == 0
    conn = await asyncpg.connect(database_url)
    try:
        results = []
        for block in blocks("sql"):
            for statement in filter(None, (s.strip() for s in block.split(";"))):
                results.append(await conn.fetch(statement))
    finally:
        await conn.close()
    assert all(results), "every README query returns rows on a scenario with activity"
    top, supply, kinds, splits, history, backing, _flags = results
    assert [r["symbol"] for r in top] == ["TSLAx"] * len(top)
    assert {r["symbol"] for r in supply} == set(world.all_tokens)
    assert {r["kind"] for r in kinds} <= {"mint", "burn", "transfer"}
    observed = [r for r in splits if r["source"] == "observed"]
    assert observed and observed[-1]["supply_after"] == 2 * observed[-1]["supply_before"]
    assert all(r["ten_blocks_ago"] is not None for r in history)
    assert {r["underlying"] for r in backing} >= {"AAPL", "TSLA"}
    touched = {world.all_tokens[s]: a for s, a in sim.summary.touched.items()}
    assert await compare(database_url, world.rpc_url, touched) == []


def test_readme_layout_names_every_module() -> None:
    """The layout section is the newcomer's map: every module of the product and of the devnet
    is on it, and it names no module that is gone."""
    layout = README.split("## Layout", 1)[1]
    for package in ("indexer", "devnet"):
        modules = {p.name for p in (REPO_ROOT / package).rglob("*.py") if not p.name.startswith("__")}
        missing = [m for m in sorted(modules) if m not in layout and not m.startswith("demo_")]
        assert not missing, f"README layout misses {package}/{missing}"
    named = set(re.findall(r"\b([a-z_]+\.py)\b", layout))
    existing = {p.name for p in REPO_ROOT.glob("*/**/*.py")}
    assert named <= existing, sorted(named - existing)
