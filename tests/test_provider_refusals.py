"""Providers' refusals of an eth_getLogs range, in their own words, against a real anvil behind
the RPC proxy: any refusal of more than one block is cut (where the message says the provider
accepts, else in half) and the logs equal one unbounded request; a single block still refused
is an error carrying the provider's message with its secrets masked."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from devnet.deploy import World
from devnet.simulate import Simulator
from indexer.chain import Chain, Rpc
from indexer.decode import FACTORY_TOPICS, TOKEN_TOPICS
from indexer.errors import RpcError
from tests.chaincheck import compare
from tests.conftest import cli
from tests.rpcproxy import RpcProxy

LIMIT = 7
# (who answers like this, code, message template, whether it says what the provider accepts)
WORDINGS = [
    ("alchemy", -32602, "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range "
     "and no limit on the response size, or you can request any block range with a cap of 10K logs in the "
     "response. Based on your parameters, this block range should work: [{lo_hex}, {suggested_hi_hex}]", True),
    ("alchemy-free", -32600, "Under the Free tier plan, you can make eth_getLogs requests with up to a {limit} block "
     "range. Based on your parameters, this block range should work: [{lo_hex}, {suggested_hi_hex}]. Upgrade to "
     "PAYG for expanded block range.", True),
    ("infura", -32005, "query returned more than 10000 results. Try with this block range "
     "[{lo_hex}, {suggested_hi_hex}].", True),
    ("quicknode", -32614, "eth_getLogs is limited to a {limit} range", True),
    ("ankr", -32600, "block range is too wide", False),
    ("chainstack", -32000, "Block range limit exceeded. Please use a block range of {limit} or less", True),
    ("blastapi", -32000, "eth_getLogs and eth_newFilter are limited to a {limit} blocks range", True),
    ("cloudflare", -32000, "Max range of {limit} blocks exceeded", True),
    ("geth-erigon", -32000, "query returned more than 10000 results", False),
    ("bsc-nodereal", -32000, "exceed maximum block range: {limit}", True),
    ("llamarpc", -32000, "eth_getLogs range is too large, max is {limit} blocks", True),
    ("base", -32000, "block range greater than {limit} max", True),
    ("drpc", 35, "ranges over {limit} blocks are not supported on freetier", True),
    ("unknown", -32099, "request rejected by upstream policy P-17", False),
]


@pytest.fixture
def traded(world: World) -> World:
    Simulator(world, seed=5, n_holders=10).run(blocks=30, moves_per_block=3)
    return world


async def _logs(url: str, world: World, lo: int, hi: int) -> list[dict[str, object]]:
    chain = Chain(Rpc([url], attempts=3))
    try:
        return await chain.get_logs([*world.all_tokens.values(), world.factory], TOKEN_TOPICS + FACTORY_TOPICS, lo, hi)
    finally:
        await chain.rpc.close()


@pytest.mark.parametrize(("code", "template", "says"), [w[1:] for w in WORDINGS], ids=[w[0] for w in WORDINGS])
async def test_each_providers_refusal_is_cut_to_what_it_accepts(traded: World, code: int, template: str,
                                                                says: bool) -> None:
    direct_chain = Chain(Rpc([traded.rpc_url]))
    try:
        head = await direct_chain.head()
    finally:
        await direct_chain.rpc.close()
    whole = await _logs(traded.rpc_url, traded, 0, head)
    with RpcProxy(traded.rpc_url, max_range=LIMIT, wording=(code, template)) as proxy:
        cut = await _logs(proxy.url, traded, 0, head)
        asked = list(proxy.getlogs_ranges)
    assert len(whole) > 50
    assert cut == whole
    assert asked[0] == (0, head, True)  # asked whole first, refused
    first_answer = asked[1]
    if says:  # the provider's own figure is used at once: no halving, no second refusal
        assert first_answer == (0, LIMIT - 1, False), asked[:4]
        assert sum(refused for _, _, refused in asked) <= 1 + len(asked) // 16, asked
    else:
        assert first_answer[:2] == (0, head // 2), asked[:4]
    answered = [(lo, hi) for lo, hi, refused in asked if not refused]
    assert answered[0][0] == 0 and answered[-1][1] == head
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(answered))


async def test_a_single_block_still_refused_is_an_error_with_the_masked_message(traded: World) -> None:
    template = "eth_getLogs denied for this key, see https://dash.example.com/keys/Sk7x9Q2 for your plan"
    with RpcProxy(traded.rpc_url, max_range=0, wording=(-32000, template)) as proxy:
        with pytest.raises(RpcError) as info:
            await _logs(proxy.url, traded, 3, 40)
        asked = list(proxy.getlogs_ranges)
    message = str(info.value)
    assert message.startswith("eth_getLogs for block 3 alone is refused: ")
    assert "eth_getLogs denied for this key, see https://dash.example.com/***/*** for your plan" in message
    assert "Sk7x9Q2" not in message
    assert len(asked) <= 8  # halved down to one block: log2(38) + 1 requests, no retries


async def test_backfill_through_an_unknown_wording_equals_the_chain(world: World, tmp_path: Path,
                                                                    database_url: str) -> None:
    sim = Simulator(world, seed=6, n_holders=10)
    sim.run(blocks=25, moves_per_block=4)
    with RpcProxy(world.rpc_url, max_range=5, wording=(-32099, "request rejected by upstream policy P-17")) as proxy:
        proxied = World(**{**world.__dict__, "rpc_url": proxy.url})
        done = cli("backfill", config=proxied.write_toml(tmp_path / "indexer.toml", database_url))
        assert done.returncode == 0, done.stderr
        assert proxy.stats["refused_range"] > 0
    touched = {world.all_tokens[s]: a for s, a in sim.summary.touched.items()}
    assert await compare(database_url, world.rpc_url, touched) == []
