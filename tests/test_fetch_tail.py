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


async def test_a_tail_log_whose_block_hash_is_not_the_chains_is_a_moved_chain() -> None:
    """Checked per block in block order (wire.Log and the node's dicts alike): a later log of
    a block already seen with another hash is caught too."""
    import pytest

    from indexer.errors import ChainMoved
    from indexer.fetch import tail_hashes
    from indexer.wire import DictLog, typed

    hashes = ["0x" + f"{n:064x}" for n in range(10, 15)]  # blocks 10..14
    base = {"address": "0x" + "a1" * 20, "topics": [], "data": "0x", "transactionHash": "0x" + "cc" * 32,
            "logIndex": "0x0"}

    def log(number: int, block_hash: str) -> dict[str, object]:
        return {**base, "blockNumber": hex(number), "blockHash": block_hash}

    good = [log(11, hashes[1]), log(11, hashes[1]), log(12, hashes[2]), log(13, hashes[3])]
    chain = Chain(Rpc(["http://127.0.0.1:9"]))  # not called: the hashes are given
    for shape in (typed, lambda items: [DictLog(r) for r in items]):
        found = await tail_hashes(chain, shape(good), {}, [11, 12, 13, 14], hashes, 15)
        assert found[12] == (hashes[2], hashes[1])
        for bad in ([*good[:2], log(11, "0x" + "ee" * 32), *good[2:]], [*good, log(13, hashes[4])]):
            with pytest.raises(ChainMoved, match="the chain's hashes at block 15"):
                await tail_hashes(chain, shape(bad), {}, [11, 12, 13, 14], hashes, 15)
