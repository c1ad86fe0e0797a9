"""`indexer verify --history` audits past blocks: equal after a scenario, and after a past row is
tampered with it exits 1 naming the first block, token and holder that differ."""

from __future__ import annotations

import random
from pathlib import Path

import asyncpg

from devnet.deploy import World
from indexer.history import audit_blocks
from tests.conftest import cli
from tests.silent_paths import CASES, config_text, play, setup


def test_audit_blocks_cover_each_change_and_its_neighbours_and_are_seeded() -> None:
    chosen = audit_blocks([10, 40], 5, 41, 3, random.Random("1"))
    assert {5, 9, 10, 11, 39, 40, 41} <= set(chosen) and max(chosen) == 41 and 42 not in chosen
    assert chosen == audit_blocks([10, 40], 5, 41, 3, random.Random("1"))
    assert len(chosen) <= 7 + 3


async def test_history_audit_is_equal_then_names_the_first_tampered_block(
        world: World, database_url: str, tmp_path: Path) -> None:
    case = CASES["late_from_block"]
    extra = setup(case, world)
    config = tmp_path / "indexer.toml"
    config.write_text(config_text(world, database_url, extra, 4))
    play(case, world, extra)
    assert cli("backfill", config=config).returncode == 0
    audit = cli("verify", "--history", "--sample", "5", "--seed", "7", config=config)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "(seed 7)" in audit.stdout and "equal" in audit.stdout
    again = cli("verify", "--history", "--sample", "5", "--seed", "7", config=config)
    assert again.stdout == audit.stdout  # the same seed audits the same blocks

    # Tamper with the share move one block after NVDAx's multiplier change: that block is
    # audited whatever the seed, and every block before it is still right.
    token = world.tokens["NVDAx"]
    conn = await asyncpg.connect(database_url)
    try:
        change = await conn.fetchval("SELECT max(block_number) FROM multiplier_changes WHERE token = $1 "
                                     "AND source = 'event'", token)
        row = await conn.fetchrow("SELECT block_number, log_index, from_address, to_address FROM transfer_log "
                                  "WHERE token = $1 AND block_number = $2", token, change + 1)
        assert row is not None, "the scenario moves shares right after the change"
        await conn.execute("UPDATE transfer_log SET shares = shares + 1 WHERE token = $1 AND block_number = $2 "
                           "AND log_index = $3", token, row["block_number"], row["log_index"])
    finally:
        await conn.close()
    tampered = cli("verify", "--history", "--sample", "0", config=config)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    holder = min(row["from_address"], row["to_address"])
    assert f"first difference: block {change + 1} token NVDAx ({token}) holder {holder}:" in tampered.stdout, \
        tampered.stdout
