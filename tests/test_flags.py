"""Flags an operator can live with: a token's own set-up opens none, `indexer flags` lists them,
`indexer flags ack` acknowledges one (kept in its history), and a gauge counts the open ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from devnet.deploy import World
from indexer import metrics
from indexer.custody.flags import export_gauge
from indexer.custody.reconcile import reconcile
from indexer.store import Store
from tests.conftest import cli
from tests.custody_desk import Desk


@pytest.fixture
def desk(world: World, world_config: Path, database_url: str, tmp_path: Path) -> Desk:
    return Desk(world, world_config, database_url, tmp_path)


def gauge(rule: str, severity: str, acknowledged: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "indexer_open_flags", {"rule": rule, "severity": severity, "acknowledged": acknowledged})
    return -1.0 if value is None else value


async def test_a_tokens_own_setup_opens_no_privileged_change(desk: Desk) -> None:
    await desk.index()
    await reconcile(desk.settings)
    setup = await desk.fetch("SELECT event, count(*) AS n FROM privileged_events GROUP BY event")
    assert sum(r["n"] for r in setup) >= 20, setup  # deployment, ownership and every role: all indexed
    assert await desk.flags("privileged_change") == []
    # the same role handed over later is a change: flagged
    block = desk.call("owner", "TSLAx", "setMinter", ["0x" + "cd" * 20], at=desk.now() + 10)
    await desk.index()
    await reconcile(desk.settings)
    (flag,) = await desk.flags("privileged_change")
    assert flag["key"].startswith(f"{block}:") and flag["token"] == desk.world.tokens["TSLAx"]


async def test_flags_are_listed_and_acknowledged_with_a_note(desk: Desk) -> None:
    await desk.index()
    desk.call("owner", "AAPLx", "setBurner", ["0x" + "ab" * 20], at=desk.now() + 10)
    await desk.index()
    await reconcile(desk.settings)
    (flag,) = await desk.flags("privileged_change")
    assert gauge("privileged_change", "high", "no") == 1
    listed = cli("flags", config=desk.config)
    assert listed.returncode == 0, listed.stderr
    assert f"{flag['id']:>5}  privileged_change" in listed.stdout and "1 open flags" in listed.stdout
    done = cli("flags", "ack", str(flag["id"]), "--note", "new burner: ticket OPS-12", config=desk.config)
    assert done.returncode == 0 and "acknowledged" in done.stdout, done.stderr
    again = cli("flags", "ack", str(flag["id"]), "--note", "checked with the issuer", config=desk.config)
    assert again.returncode == 0
    notes = await desk.fetch("SELECT note FROM backing_flag_notes WHERE flag_id = $1 ORDER BY id", flag["id"])
    assert [n["note"] for n in notes] == ["new burner: ticket OPS-12", "checked with the issuer"]  # history kept
    listed = cli("flags", config=desk.config)
    assert '"checked with the issuer"' in listed.stdout and "acknowledged" in listed.stdout
    (row,) = await desk.fetch("SELECT closed_at, acknowledged_at FROM backing_flags WHERE id = $1", flag["id"])
    assert row["closed_at"] is None and row["acknowledged_at"] is not None  # still open: the rules decide that
    store = await Store.open(desk.database_url)
    try:
        await export_gauge(store)
    finally:
        await store.close()
    assert (gauge("privileged_change", "high", "no"), gauge("privileged_change", "high", "yes")) == (0, 1)
    missing = cli("flags", "ack", "999999", "--note", "x", config=desk.config)
    assert missing.returncode == 2 and missing.stderr.strip() == (
        "indexer: error: flags ack: there is no flag 999999 (see `indexer flags --all`)")
    empty = cli("flags", "ack", str(flag["id"]), "--note", " ", config=desk.config)
    assert empty.returncode == 2 and "--note" in empty.stderr
    assert "no flags" not in cli("flags", "--all", config=desk.config).stdout
