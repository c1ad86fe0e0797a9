"""The oracle the scenario tests trust: it must see a database that differs from the chain.

chaincheck.compare (current state) and oracle.compare_history (every past block) read the
chain through web3 only; here the indexed database is tampered behind the indexer's back and
both must name the holder, while the untampered database compares equal.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

from devnet.deploy import World
from devnet.simulate import Simulator
from tests.chaincheck import compare
from tests.conftest import cli
from tests.oracle import compare_history


async def test_oracle_names_a_tampered_balance(world: World, world_config: Path, database_url: str) -> None:
    sim = Simulator(world, seed=21, n_holders=6)
    sim.run(blocks=3, moves_per_block=4)
    done = cli("backfill", config=world_config)
    assert done.returncode == 0, done.stderr
    token = world.tokens["AAPLx"]
    holders = {token: sim.summary.touched["AAPLx"]}
    assert await compare(database_url, world.rpc_url, holders) == []
    assert await compare_history(database_url, world.rpc_url, [token]) == []
    conn = await asyncpg.connect(database_url)
    try:
        victim = await conn.fetchval("SELECT holder FROM share_balances WHERE token = $1 AND shares > 0 "
                                     "ORDER BY holder LIMIT 1", token)
        await conn.execute("UPDATE share_balances SET shares = shares + 10^18 WHERE token = $1 AND holder = $2",
                           token, victim)
    finally:
        await conn.close()
    now = await compare(database_url, world.rpc_url, holders)
    assert now and all(victim in line for line in now), now
    assert any(victim in line for line in await compare_history(database_url, world.rpc_url, [token]))
