"""The backfill through a remote-like provider (bench/provider.py in front of the real anvil):
a round trip, a low rate limit answered with HTTP 429, Alchemy's eth_getLogs caps and a
stretched, mostly empty history. It must back off rather than fail, end exact, and stay within a
call budget: under a rate limit every call costs what an eth_getLogs costs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bench.provider import Provider
from devnet.deploy import World
from devnet.simulate import Simulator
from tests.chaincheck import compare
from tests.conftest import cli

STRETCH = 5
# Calls per method this backfill may make (measured: eth_call 20, eth_getBlockByNumber 4, the
# range ends: the reorg-reachable tail's hashes come in the end's state read, and no tip check
# after the last range; eth_getLogs 22, the first range 1,000 blocks wide; 61 calls in all).
# Before: eth_call 21, 5 headers; before that 80 headers (64 of them the tail, one each) and 27
# eth_getLogs from a first range of 1 block; reading 9 views per xStock in a batch at each
# 300-block range's end made 802 eth_calls, 247 headers and 40 eth_getLogs.
BUDGET = {"eth_call": 24, "eth_getBlockByNumber": 5, "eth_getLogs": 25}
TOTAL = 70


async def test_backfill_through_a_rate_limited_provider_is_exact(world: World, tmp_path: Path,
                                                                 database_url: str) -> None:
    sim = Simulator(world, seed=15, n_holders=10)
    sim.run(blocks=12, moves_per_block=8)
    with Provider(world.rpc_url, rtt=0.02, rate=15.0, max_range=300, max_logs=100, stretch=STRETCH) as provider:
        seen = dataclasses.replace(world, rpc_url=provider.url, deploy_block=world.deploy_block * STRETCH)
        # batch_blocks = 1000: as the README advises for a remote provider and a sparse history
        config = seen.write_toml(tmp_path / "indexer.toml", database_url, batch_blocks=1000)
        done = cli("backfill", config=config, timeout=180.0)
        assert done.returncode == 0, done.stderr[-3000:]
        calls = provider.calls()
        over = {m: (calls.get(m, 0), bound) for m, bound in BUDGET.items() if calls.get(m, 0) > bound}
        assert not over, f"calls over budget (made, bound): {over}; all calls: {calls}"
        assert provider.stats["http_429"] > 0  # refused for its rate, and survived
        assert provider.stats["refused_range"] > 0 and provider.stats["refused_logs"] > 0
        assert "rpc_retry" not in done.stderr  # a 429 is paced, not a failed attempt
        assert calls["eth_getLogs"] > 0
        assert sum(calls.values()) <= TOTAL, calls
        provider.set_rate(None)
        touched = {world.all_tokens[s]: addrs for s, addrs in sim.summary.touched.items()}
        assert await compare(database_url, provider.url, touched) == []


async def test_ranges_after_a_factory_announcement_are_fetched_with_its_tokens(world: World, tmp_path: Path,
                                                                             database_url: str) -> None:
    """The factory announces the xStocks in the second range (blocks 1,200-2,199, shown 200
    apart); ranges planned after it is applied carry their addresses, so only the range already
    in flight beside it (2,200-9,999: 26 requests of 300 blocks) asks its logs again for them,
    and the announcing range itself (the new tokens' logs from their announcing block): 30
    requests asked twice. Without the wait every range fetched ahead did: 56."""
    sim = Simulator(world, seed=16, n_holders=8)
    sim.run(blocks=12, moves_per_block=4)
    stretch = 200
    with Provider(world.rpc_url, rtt=0.02, rate=None, max_range=300, max_logs=None, stretch=stretch) as provider:
        seen = dataclasses.replace(world, rpc_url=provider.url, deploy_block=world.deploy_block * stretch)
        config = seen.write_toml(tmp_path / "indexer.toml", database_url)
        done = cli("backfill", config=config, timeout=180.0)
        assert done.returncode == 0, done.stderr[-3000:]
        asked = [(lo, hi) for lo, hi, fate in provider.ranges if fate == "ok"]
        twice = {r for r in asked if asked.count(r) > 1}
        assert len(twice) <= 30, sorted(twice)
        touched = {world.all_tokens[s]: addrs for s, addrs in sim.summary.touched.items()}
        assert await compare(database_url, provider.url, touched) == []
