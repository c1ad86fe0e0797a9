"""fetch.fetch_range in the reorg-reachable tail: the tail's hashes come in ONE eth_call at the
range's end (the reader's blockhash), the headers only for the range's ends; a node refusing
state overrides gets every tail header, as before. Real anvil."""

from __future__ import annotations

from devnet.anvil import Anvil
from indexer.chain import Chain, Rpc
from indexer.fetch import fetch_range
from indexer.ranges import RangeSizer
from tests.rpcproxy import RpcProxy


async def _fetch(proxy: RpcProxy, start: int, end: int, head: int) -> tuple[object, dict[str, int]]:
    chain = Chain(Rpc([proxy.url]))
    try:
        before = dict(proxy.stats)
        got = await fetch_range(chain, RangeSizer(1000, 1000, 10_000), {}, [], start, end, head, 64)
        return got, {k: proxy.stats[k] - before.get(k, 0) for k in proxy.stats if k.startswith("method:")}
    finally:
        await chain.rpc.close()


async def test_the_tail_hashes_come_in_one_call(anvil: Anvil) -> None:
    anvil.mine(30)
    head = anvil.block_number()
    start, end = head - 20, head
    node = {n: anvil.rpc("eth_getBlockByNumber", [hex(n), False]) for n in range(start, end + 1)}
    with RpcProxy(anvil.url) as proxy:
        got, calls = await _fetch(proxy, start, end, head)
    assert calls.get("method:eth_getBlockByNumber") == 2 and calls.get("method:eth_call") == 1, calls
    assert sorted(got.headers) == [start, end]  # type: ignore[attr-defined]
    tail = got.tail  # type: ignore[attr-defined]
    assert sorted(tail) == list(range(start + 1, end))
    assert all(tail[n] == (node[n]["hash"], node[n]["parentHash"]) for n in tail)


async def test_a_node_refusing_overrides_reads_the_tail_headers(anvil: Anvil) -> None:
    anvil.mine(30)
    head = anvil.block_number()
    start, end = head - 20, head
    with RpcProxy(anvil.url) as proxy:
        proxy.no_overrides = True
        got, calls = await _fetch(proxy, start, end, head)
    assert sorted(got.headers) == list(range(start, end + 1)) and got.tail == {}  # type: ignore[attr-defined]
    assert calls.get("method:eth_getBlockByNumber") == 21, calls
