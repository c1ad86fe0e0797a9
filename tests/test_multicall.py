"""multicall.views_at: many views of many contracts at one block in ONE eth_call (the reader
placed by a state override), the same answers as plain eth_calls, and plain batches from then
on when the node refuses overrides. Real anvil and our contracts."""

from __future__ import annotations

import json
from pathlib import Path

from devnet.deploy import World
from indexer import contract_views as views
from indexer import multicall
from indexer.chain import Chain, Rpc
from tests.rpcproxy import RpcProxy

ROOT = Path(__file__).resolve().parents[1]


def test_the_embedded_code_is_the_artifacts() -> None:
    artifact = json.loads((ROOT / "contracts" / "artifacts" / "ViewReader.json").read_text())
    assert multicall.CODE == artifact["deployedBytecode"]


def _asks(world: World) -> list[tuple[str, str]]:
    calls = [(token, d) for token in world.all_tokens.values() for d in views.STATE_VIEWS]
    return [*calls, (world.factory, views.SYMBOL), ("0x" + "00" * 19 + "01", views.SYMBOL)]


async def test_one_call_per_block_gives_what_plain_calls_give(world: World) -> None:
    with RpcProxy(world.rpc_url) as proxy:
        chain = Chain(Rpc([proxy.url]))
        try:
            head = await chain.head()
            blocks = [world.deploy_block + 1, head]
            asks = {b: _asks(world) for b in blocks}
            before = proxy.stats["method:eth_call"]
            answers, times = await multicall.views_at(chain, asks)
            assert proxy.stats["method:eth_call"] - before == len(blocks)  # one per block, whatever the views
            for b in blocks:
                assert answers[b] == await chain.call_many(asks[b], b)
                assert times[b] == (await chain.header(b)).timestamp
            assert any(a is None for a in answers[head] or [])  # reverts and missing views read None
            assert any(a is not None for a in answers[head] or [])
        finally:
            await chain.rpc.close()


async def test_a_node_refusing_overrides_gets_plain_batches(world: World) -> None:
    with RpcProxy(world.rpc_url) as proxy:
        proxy.no_overrides = True
        chain = Chain(Rpc([proxy.url]))
        try:
            head = await chain.head()
            asks = {head: _asks(world)}
            answers, times = await multicall.views_at(chain, asks)
            assert answers[head] == await chain.call_many(asks[head], head)
            assert times == {}  # no reader: the caller asks headers for times
            assert proxy.stats["refused_override"] == 1
            await multicall.views_at(chain, asks)
            assert proxy.stats["refused_override"] == 1  # asked once per client, not again
        finally:
            await chain.rpc.close()


async def test_the_tail_hashes_from_the_reader_are_the_headers_hashes(world: World) -> None:
    with RpcProxy(world.rpc_url) as proxy:
        chain = Chain(Rpc([proxy.url]))
        try:
            head = await chain.head()
            first = max(0, head - 20)
            asks = {head: [multicall.hashes_call(first, head - first), *_asks(world)]}
            before = proxy.stats["method:eth_call"]
            answers, _ = await multicall.views_at(chain, asks)
            assert proxy.stats["method:eth_call"] - before == 1  # the hashes ride in the state read
            got = multicall.parse_hashes((answers[head] or [None])[0], head - first)
            assert got == [h.hash for h in await chain.headers(list(range(first, head)))]
            assert answers[head][1:] == await chain.call_many(asks[head][1:], head)  # type: ignore[index]
            # a block out of blockhash's reach (or the call's own block) answers zero: no hashes
            asks = {head: [multicall.hashes_call(first, head - first + 1)]}
            assert multicall.parse_hashes((await multicall.views_at(chain, asks))[0][head][0], head - first + 1) is None  # type: ignore[index]
        finally:
            await chain.rpc.close()


async def test_a_node_refusing_overrides_answers_no_hashes(world: World) -> None:
    with RpcProxy(world.rpc_url) as proxy:
        proxy.no_overrides = True
        chain = Chain(Rpc([proxy.url]))
        try:
            head = await chain.head()
            asks = {head: [multicall.hashes_call(head - 2, 2), *_asks(world)]}
            await multicall.views_at(chain, asks)  # the refusal
            before = proxy.stats["method:eth_call"]
            answers, _ = await multicall.views_at(chain, asks)
            assert answers[head][0] is None  # type: ignore[index]
            assert proxy.stats["method:eth_call"] - before == len(asks[head]) - 1  # the reader's view not asked
        finally:
            await chain.rpc.close()
