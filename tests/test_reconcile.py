"""Custody reconciliation end to end: real anvil, our contracts, real PostgreSQL, real imports.

For every rule a scenario that opens its flag and one that clears it; backing and backing_at
read back; NOTIFY received by a LISTEN client; and the outside run through the CLI.
Block times are set explicitly, so "now" (the latest indexed block) is known to the second.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from devnet.anvil import Anvil
from devnet.deploy import World, deploy_world
from indexer.custody.importer import import_file
from indexer.custody.parse import COLUMNS
from indexer.custody.reconcile import Condition, Flag, FlagChange, Plan, plan, reconcile
from indexer.errors import InputError
from tests.conftest import cli
from tests.custody_desk import ONE, Desk, Listener, iso

HOUR = 3600


def condition(rule: str, key: str = "", shortfall: int | None = None, **details: Any) -> Condition:
    return Condition(rule, "high", "TSLA", None, None, key, None if shortfall is None else Decimal(shortfall), details)


def flag(id: int, c: Condition) -> Flag:
    return Flag(id, c.rule, c.severity, c.underlying, c.chain_id, c.token, c.key, datetime(2026, 1, 1, tzinfo=UTC),
                1, None, None, c.shortfall, c.details)


def test_plan_opens_closes_and_refreshes_without_duplicates() -> None:
    kept, moved, gone = condition("ripcord"), condition("unbacked_supply", shortfall=5), condition("stale_attestation")
    current = [flag(1, kept), flag(2, moved), flag(3, gone)]
    new = condition("privileged_change", key="7:0")
    todo = plan(current, [kept, condition("unbacked_supply", shortfall=9), new, new])
    assert todo.open == [new]
    assert [f.id for f in todo.close] == [3]
    assert [(f.id, c.shortfall) for f, c in todo.refresh] == [(2, 9)]
    assert plan(current, [kept, moved, gone]) == Plan([], [], [])


def test_notify_payload_fits_the_postgres_limit() -> None:
    small = FlagChange("opened", flag(1, condition("unbacked_supply", shortfall=100, ratio="0.9")))
    body = json.loads(small.payload())
    assert body["action"] == "opened" and body["shortfall"] == "100" and body["details"] == {"ratio": "0.9"}
    big = FlagChange("closed", flag(2, condition("multiplier_mismatch", multipliers=["x" * 100] * 100)))
    assert len(big.payload().encode()) < 8000 and json.loads(big.payload())["details_truncated"] is True


@pytest.fixture
def desk(world: World, world_config: Path, database_url: str, tmp_path: Path) -> Desk:
    return Desk(world, world_config, database_url, tmp_path)


async def test_shortfall_opens_unbacked_supply_and_top_up_closes_it(desk: Desk) -> None:
    t = desk.now() + 10
    desk.mint("TSLAx", 1000, at=t)
    await desk.index()
    listener = await Listener().start(desk.database_url)
    try:
        await desk.attest("TSLA", 1000, t + 1)
        assert (await desk.backing("TSLA"))["status"] == "backed"
        await desk.attest("TSLA", 900, t + 2)  # 10% short
        row = await desk.backing("TSLA")
        assert (row["status"], row["shortfall"], row["ratio"]) == ("unbacked", 100, Decimal("0.9"))
        (flag,) = await desk.flags("unbacked_supply", "TSLA")
        assert (flag["severity"], flag["shortfall"], flag["chain_id"]) == ("critical", 100, None)
        opened = await listener.wait(lambda p: p["rule"] == "unbacked_supply" and p["action"] == "opened")
        assert opened["id"] == flag["id"] and opened["shortfall"] == "100" and opened["underlying"] == "TSLA"

        await desk.attest("TSLA", 800, t + 3)  # worse: the same flag, its shortfall kept current
        (again,) = await desk.flags("unbacked_supply", "TSLA")
        assert again["id"] == flag["id"] and again["shortfall"] == 200
        assert json.loads(again["details"])["custody_shares"] == "800"

        await desk.attest("TSLA", 1000, t + 4)  # topped up
        assert (await desk.backing("TSLA"))["status"] == "backed"
        assert await desk.flags("unbacked_supply", "TSLA") == []
        closed = await listener.wait(lambda p: p["rule"] == "unbacked_supply" and p["action"] == "closed")
        assert closed["id"] == flag["id"] and closed["closed_at"] is not None
        assert [p["action"] for p in listener.payloads if p["rule"] == "unbacked_supply"] == ["opened", "closed"]
    finally:
        await listener.close()


async def test_stale_attestation_opens_and_a_fresh_one_closes_it(desk: Desk) -> None:
    t = desk.now() + 10
    desk.mint("AAPLx", 500, at=t)
    await desk.index()
    await desk.attest("AAPL", 500, t - 25 * HOUR)  # 25 hours before the latest block
    row = await desk.backing("AAPL")
    assert row["status"] == "stale" and row["custody_shares"] == 500
    (flag,) = await desk.flags("stale_attestation", "AAPL")
    assert flag["severity"] == "warning" and json.loads(flag["details"])["age_seconds"] == 25 * HOUR
    await desk.attest("AAPL", 500, t)
    assert (await desk.backing("AAPL"))["status"] == "backed"
    assert await desk.flags("stale_attestation", "AAPL") == []


async def test_ripcord_counts_as_missing_until_a_valid_record_follows(desk: Desk) -> None:
    t = desk.now() + 10
    desk.mint("TSLAx", 1000, at=t)
    await desk.index()
    await desk.attest("TSLA", 600, t + 1, account="acc-1")
    await desk.attest("TSLA", 400, t + 1, account="acc-2")
    assert (await desk.backing("TSLA"))["status"] == "backed"
    await desk.attest("TSLA", 600, t + 2, account="acc-1", ripcord=True)
    row = await desk.backing("TSLA")  # the ripcord voids every earlier record of TSLA, acc-2's too
    assert (row["status"], row["custody_shares"]) == ("no_attestation", None)
    (flag,) = await desk.flags("ripcord", "TSLA")
    assert flag["severity"] == "high" and json.loads(flag["details"])["account"] == "acc-1"
    assert await desk.flags("unbacked_supply", "TSLA") == []
    await desk.attest("TSLA", 1000, t + 3, account="acc-1")
    assert (await desk.backing("TSLA"))["status"] == "backed"
    assert await desk.flags("ripcord", "TSLA") == []


async def test_mint_uncovered_after_the_settlement_window_is_flagged(desk: Desk) -> None:
    desk.config.write_text(desk.config.read_text().replace('settlement_window = "1d"', 'settlement_window = "1h"'))
    t = desk.now() + 10
    desk.mint("TSLAx", 1000, at=t)
    late = desk.mint("TSLAx", 100, at=t + 600)
    desk.mint("TSLAx", 7, at=t + 600 + HOUR + 1)  # the window of this one is still running
    await desk.index()
    await desk.attest("TSLA", 1000, t + 1)
    (flag,) = await desk.flags("unmatched_mint", "TSLA")
    details = json.loads(flag["details"])
    assert (flag["chain_id"], flag["token"]) == (desk.world.chain_id, desk.world.tokens["TSLAx"])
    assert flag["severity"] == "high"
    assert (details["mints"], details["amount"], details["first_block"]) == (1, "100", late)
    assert (await desk.backing("TSLA"))["status"] == "backed"  # as of its attestation, before the mint
    await desk.attest("TSLA", 1107, t + 600 + HOUR + 2)
    assert await desk.flags("unmatched_mint", "TSLA") == []


async def test_silent_split_without_custody_growth_is_flagged(desk: Desk) -> None:
    t = desk.now() + 10
    desk.mint("TSLAx", 1000, at=t)
    desk.call("multiplier_updater", "TSLAx", "updateMultiplierValue", [2 * ONE, ONE, t + 600], at=t + 2)
    desk.mine(t + 700)  # the 2:1 split activates here, with no event
    await desk.index()
    await desk.attest("TSLA", 1000, t + 1)  # attested before the split
    (change,) = await desk.fetch("SELECT block_number, source FROM multiplier_changes WHERE token = $1",
                                 desk.world.tokens["TSLAx"])
    assert change["source"] == "observed"
    (flag,) = await desk.flags("multiplier_without_custody", "TSLA")
    assert (flag["key"], flag["shortfall"]) == (str(change["block_number"]), 1000)
    assert json.loads(flag["details"])["multiplier"] == str(2 * ONE)
    assert (await desk.backing("TSLA"))["status"] == "backed"  # R1: as of its attestation time
    await desk.attest("TSLA", 1000, t + 800)  # after the split, custody did not grow
    assert len(await desk.flags("multiplier_without_custody", "TSLA")) == 1
    assert (await desk.backing("TSLA"))["shortfall"] == 1000
    await desk.attest("TSLA", 2000, t + 900)
    assert await desk.flags("multiplier_without_custody", "TSLA") == []
    assert await desk.flags("unbacked_supply", "TSLA") == []


async def test_multiplier_mismatch_across_chains(anvil_factory: Callable[..., Anvil], database_url: str,
                                                 tmp_path: Path) -> None:
    worlds = [deploy_world(anvil_factory(chain_id=cid).url) for cid in (31337, 31338)]
    assert worlds[0].tokens == worlds[1].tokens  # one address on every chain
    config = tmp_path / "two.toml"
    lines = ["[database]", f"url = {json.dumps(database_url)}"]
    for name, w in zip("ab", worlds, strict=True):
        lines += ["[[chain]]", f'name = "{name}"', f"rpc = [{json.dumps(w.rpc_url)}]",
                  "[[factory]]", f'chain = "{name}"', f'address = "{w.factory}"', f"start_block = {w.deploy_block}"]
    config.write_text("\n".join(lines) + "\n")
    a, b = (Desk(w, config, database_url, tmp_path) for w in worlds)
    t = max(a.now(), b.now()) + 10
    b.call("multiplier_updater", "TSLAx", "updateMultiplierValue", [2 * ONE, ONE, 0], at=t)
    a.mine(t + 1)
    b.mine(t + 1)
    await a.index()
    await reconcile(a.settings)
    (flag,) = await a.flags("multiplier_mismatch", "TSLA")
    seen = {m["chain_id"]: m["multiplier"] for m in json.loads(flag["details"])["multipliers"]}
    assert seen == {31337: str(ONE), 31338: str(2 * ONE)}
    a.call("multiplier_updater", "TSLAx", "updateMultiplierValue", [2 * ONE, ONE, 0], at=t + 2)
    a.mine(t + 3)
    b.mine(t + 3)
    await a.index()
    await reconcile(a.settings)
    assert await a.flags("multiplier_mismatch", "TSLA") == []


async def test_privileged_change_is_flagged_for_the_review_window(desk: Desk) -> None:
    new_minter = "0x" + "cd" * 20
    t = desk.now() + 10
    block = desk.call("owner", "TSLAx", "setMinter", [new_minter], at=t)
    await desk.index()
    await reconcile(desk.settings)
    (event,) = await desk.fetch("SELECT * FROM privileged_events WHERE block_number = $1", block)
    assert (event["event"], event["role"], event["new_address"]) == ("NewMinter", "minter", new_minter)
    flags = {f["key"]: f for f in await desk.flags("privileged_change", "TSLA")}
    flag = flags[f"{block}:{event['log_index']}"]
    assert flag["severity"] == "high" and json.loads(flag["details"])["new_address"] == new_minter
    desk.mine(t + 25 * HOUR)  # privileged_review (24 h) has passed
    await desk.index()
    await reconcile(desk.settings)
    assert await desk.flags("privileged_change") == []
    (closed,) = await desk.fetch("SELECT * FROM backing_flags WHERE id = $1", flag["id"])
    assert closed["closed_at"] is not None and closed["closed_block"] == block + 1


async def test_backing_at_answers_from_the_history(desk: Desk) -> None:
    t = desk.now() + 10
    desk.mint("TSLAx", 1000, at=t)
    desk.mint("TSLAx", 100, at=t + 20)
    desk.mine(t + 40 + 25 * HOUR)
    await desk.index()
    await desk.attest("TSLA", 1000, t + 10)
    await desk.attest("TSLA", 1000, t + 30)
    await desk.attest("TSLA", 1100, t + 40)

    async def at(seconds: int) -> tuple[str, Decimal, Decimal | None]:
        (row,) = await desk.fetch("SELECT * FROM backing_at('TSLA', to_timestamp($1))", seconds)
        return row["status"], row["onchain_supply"], row["shortfall"]

    assert await at(t + 5) == ("no_attestation", 1000, None)
    assert await at(t + 15) == ("backed", 1000, 0)
    assert await at(t + 35) == ("unbacked", 1100, 100)
    assert await at(t + 45) == ("backed", 1100, 0)
    assert await at(t + 40 + 25 * HOUR) == ("stale", 1100, 0)
    assert (await desk.backing("TSLA"))["status"] == "stale"


async def test_bad_files_are_rejected_whole(desk: Desk) -> None:
    desk.mint("TSLAx", 10)
    await desk.index()
    good = ["TSLA", "C", "a", "10", "0", iso(desk.now()), "T", "false"]
    cases = [(3, "settled_shares", '"12,5"', "is not a number"), (3, "in_transit_shares", "-1", "is negative"),
             (4, "underlying", "GME", "is not a known underlying"), (2, "account", "", "is missing"),
             (5, "as_of", "2026-02-30T00:00:00Z", "is not an ISO 8601 time")]
    for line, column, value, problem in cases:
        rows = [[*good[:2], f"acc-{i}", *good[3:]] for i in range(4)]
        rows[line - 2][list(COLUMNS).index(column)] = value
        with pytest.raises(InputError, match=f"line {line}: {column} .*{problem}"):
            await import_file(desk.settings, str(desk.write_csv(rows)))
    assert await desk.fetch("SELECT 1 FROM custody_attestations UNION ALL SELECT 1 FROM custody_imports") == []


async def test_outside_run_through_the_cli(desk: Desk) -> None:
    t = desk.now() + 10
    desk.mint("TSLAx", 1000, at=t)
    desk.mint("AAPLx", 50, at=t + 1)
    assert cli("backfill", config=desk.config).returncode == 0
    now = iso(t + 1)

    def csv(underlying: str, shares: str, as_of: str = now, ripcord: str = "false") -> Path:
        return desk.write_csv([[underlying, "Clearstream", "acc-1", shares, "0", as_of, "TNF", ripcord]])

    async def run(*args: str) -> str:
        done = await asyncio.to_thread(cli, *args, config=desk.config)
        assert done.returncode == 0, done.stderr
        return done.stdout

    async def status(underlying: str) -> str:
        return str((await desk.backing(underlying))["status"])

    listener = await Listener().start(desk.database_url)
    try:
        exact = csv("TSLA", "1000")
        assert "1 record(s) added" in await run("custody", "import", str(exact))
        assert "nothing added" in await run("custody", "import", str(exact))
        assert await status("TSLA") == "backed"
        await run("custody", "import", str(csv("TSLA", "900")))
        assert await status("TSLA") == "unbacked"
        report = await run("reconcile")
        assert "unbacked_supply TSLA: shortfall 100" in report
        opened = await listener.wait(lambda p: p["rule"] == "unbacked_supply" and p["action"] == "opened")
        # topped up: the very same bytes as the first file add nothing but restate it as the latest word
        assert "nothing added" in await run("custody", "import", str(exact))
        assert await status("TSLA") == "backed"
        await listener.wait(lambda p: p["id"] == opened["id"] and p["action"] == "closed")
        await run("custody", "import", str(csv("TSLA", "1000", ripcord="true")))
        assert await status("TSLA") == "no_attestation"
        await run("custody", "import", str(csv("AAPL", "50", as_of=iso(t + 1 - 25 * HOUR))))
        assert await status("AAPL") == "stale"
        assert "AAPL        stale" in await run("reconcile")
    finally:
        await listener.close()
    before = await desk.fetch("SELECT count(*) AS n FROM custody_attestations")
    bad = desk.write_csv([["TSLA", "Clearstream", "acc-1", "1000", "0", now, "TNF", "false"],
                          ["TSLA", "Clearstream", "acc-2", "1O0", "0", now, "TNF", "false"]])
    done = cli("custody", "import", str(bad), config=desk.config)
    assert done.returncode == 2
    assert f'{bad} line 3: settled_shares "1O0" is not a number' in done.stderr
    assert await desk.fetch("SELECT count(*) AS n FROM custody_attestations") == before
