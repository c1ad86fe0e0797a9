"""Range sizing: pure rules of RangeSizer, then Chain.logs_from against a real anvil (answers cut
by our size limit with and without Content-Length, and by a provider's range limit): the ranges
it returns tile the chain exactly, with the same logs as one unbounded eth_getLogs."""

from __future__ import annotations

import itertools

import pytest

from devnet.deploy import World
from devnet.simulate import Simulator
from indexer.chain import Chain, Rpc
from indexer.decode import FACTORY_TOPICS, TOKEN_TOPICS
from indexer.ranges import RELAX_AFTER, RangeSizer, block_limit, suggested_end
from tests.rpcproxy import RpcProxy


def test_empty_answers_grow_the_range_eightfold() -> None:
    sizer = RangeSizer(1, 1000, 100)
    sizes = []
    for _ in range(5):
        sizes.append(sizer.blocks)
        sizer.answered(sizer.blocks, 0)
    assert sizes == [1, 8, 64, 512, 1000]


def test_a_limit_named_twice_is_never_relaxed_again() -> None:
    sizer = RangeSizer(1, 100_000, 1000)
    sizer.refused(4096, 2000)
    for _ in range(RELAX_AFTER):
        sizer.answered(sizer.blocks, 0)
    assert sizer.blocks == 4000  # relaxed once: the provider may have been busy
    sizer.refused(4000, 2000)
    for _ in range(4 * RELAX_AFTER):
        sizer.answered(sizer.blocks, 0)
    assert sizer.blocks == 2000  # the same limit again: the provider's fixed range limit


# Alchemy's refusal, for a range over its block limit and for an answer over its log cap alike
ALCHEMY = ("Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no "
           "limit on the response size, or you can request any block range with a cap of 10K logs in the "
           "response. Based on your parameters, this block range should work: [0x64, 0x7a3]")


def test_a_stated_block_limit_is_learnt_at_once_and_a_cut_for_size_lifts_after_an_empty_answer() -> None:
    assert block_limit(ALCHEMY) == 2000
    assert block_limit("query returned more than 10000 results") is None
    sizer = RangeSizer(1000, 100_000, 50_000)
    assert sizer.refused(8000, 2000, block_limit(ALCHEMY)) == 2000  # over the block limit
    assert sizer.limit == 2000
    sizer.answered(2000, 0)
    assert sizer.refused(2000, 1800, block_limit(ALCHEMY)) == 1800  # within it, 2000 answered: the log cap
    assert sizer.refused(2000, 1800, block_limit(ALCHEMY)) == 1800  # the same cut twice: still not the limit
    sizer.answered(1800, 9000)
    assert sizer.blocks == 1800  # dense blocks: the lower ceiling holds
    sizer.answered(1800, 0)
    assert sizer.blocks == 2000  # past them: back to the provider's block limit, not 1800 for good
    sizer.answered(2000, 0)
    assert sizer.blocks == 2000


def test_a_stated_limit_nothing_confirms_is_not_trusted() -> None:
    """A wording with a fixed figure ("2K") from a provider that refuses 8 blocks: the limit it
    keeps suggesting is taken, as from a provider that states none."""
    sizer = RangeSizer(1, 100_000, 1000)
    sizer.refused(282, 7, block_limit(ALCHEMY))
    sizer.refused(8, 7, block_limit(ALCHEMY))
    assert sizer.limit == 7
    for _ in range(4 * RELAX_AFTER):
        sizer.answered(sizer.blocks, 0)
    assert sizer.blocks == 7


def test_committed_ranges_span_many_requests_and_aim_at_half_a_batch() -> None:
    sizer = RangeSizer(1, 100_000, 1000)  # aims at 500 logs
    sizer.spanned(1, 0)
    assert sizer.span == 8
    sizer.spanned(8, 0)
    sizer.spanned(64, 0)
    sizer.spanned(512, 0)
    assert sizer.span == 4096
    sizer.spanned(4096, 1000)  # denser: half of it holds the aim
    assert sizer.span == 2048
    sizer.spanned(2048, 10)
    assert sizer.span == 16_384
    sizer.spanned(16_384, 0)
    assert sizer.span == 100_000
    sizer.refused(4096, 3000)  # a provider's limit: spans hold whole requests
    sizer.spanned(16_384, 0)
    assert sizer.span == 99_000


def test_growth_is_at_most_twice_the_last_answer() -> None:
    sizer = RangeSizer(10, 100_000, 1000)  # aims at 500 logs
    sizer.answered(10, 10)  # 1 log a block: 500 blocks would do, but that is a blind 50x
    assert sizer.blocks == 20


def test_dense_answer_sizes_the_next_range_to_the_aim() -> None:
    sizer = RangeSizer(100, 100_000, 1000)
    sizer.answered(100, 5000)  # 50 logs a block
    assert sizer.blocks == 10  # 500 logs
    sizer.answered(10, 500)
    assert sizer.blocks == 10


def test_never_beyond_max_blocks_and_never_below_one() -> None:
    sizer = RangeSizer(1, 6, 100)
    for _ in range(10):
        sizer.answered(sizer.blocks, 0)
    assert sizer.blocks == 6
    sizer.answered(1, 10_000)
    assert sizer.blocks == 1


def test_too_large_cuts_in_proportion_to_the_known_size() -> None:
    sizer = RangeSizer(1, 100_000, 1000)
    sizer.answered(10, 100, 50_000)  # 500 bytes a log
    assert sizer.answer_limit == 1000 * 500
    # 100 blocks answered 5 MB (10,000 logs): the aim (500 logs) is 1/20 of it
    assert sizer.too_large(100, 5_000_000) == 5
    assert sizer.refusals == 1


def test_too_large_of_unknown_size_halves() -> None:
    sizer = RangeSizer(1, 100_000, 1000)
    assert sizer.too_large(64, None) == 32
    assert sizer.too_large(2, None) == 1
    assert sizer.too_large(2, 10**12) == 1  # at least one block


def test_a_provider_limit_is_a_ceiling_relaxed_after_a_run_of_answers() -> None:
    sizer = RangeSizer(1, 100_000, 1000)
    assert sizer.refused(64, 10) == 10
    for _ in range(RELAX_AFTER - 1):
        sizer.answered(sizer.blocks, 0)
        assert sizer.blocks == 10  # empty answers would double it, the ceiling holds
    sizer.answered(sizer.blocks, 0)
    assert sizer.ceiling == 20 and sizer.blocks == 20


async def _tile(chain: Chain, addresses: list[str], first: int, last: int,
                sizer: RangeSizer) -> tuple[list[dict[str, object]], list[tuple[int, int]]]:
    """logs_from from ``first`` until ``last``: the logs and the ranges it answered."""
    topics = TOKEN_TOPICS + FACTORY_TOPICS
    logs: list[dict[str, object]] = []
    ranges: list[tuple[int, int]] = []
    start = first
    while start <= last:
        asked_end = min(last, start + sizer.blocks - 1)
        raws, end = await chain.logs_from(addresses, topics, start, asked_end, sizer)
        assert start <= end <= asked_end
        logs += raws
        ranges.append((start, end))
        start = end + 1
    return logs, ranges


def _key(log: dict[str, object]) -> tuple[str, str]:
    return str(log["blockNumber"]), str(log["logIndex"])


@pytest.fixture
def busy_world(world: World) -> World:
    Simulator(world, seed=21, n_holders=12).run(blocks=24, moves_per_block=8)
    return world


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_answers_over_the_limit_are_cut_and_the_ranges_tile_the_chain(busy_world: World,
                                                                           chunked: bool) -> None:
    addresses = [*busy_world.all_tokens.values(), busy_world.factory]
    with RpcProxy(busy_world.rpc_url, chunked=chunked) as proxy:
        chain = Chain(Rpc([proxy.url]))
        try:
            head = await chain.head()
            whole = await chain.get_logs(addresses, TOKEN_TOPICS + FACTORY_TOPICS, 0, head)
            # a 60-log cap (60 KB until the first answer measures ~640 B a log) on ~700 logs
            sizer = RangeSizer(head + 1, 100_000, 60)
            logs, ranges = await _tile(chain, addresses, 0, head, sizer)
        finally:
            await chain.rpc.close()
    assert len(whole) > 300
    assert [_key(r) for r in logs] == [_key(r) for r in whole]
    assert ranges[0][0] == 0 and ranges[-1][1] == head
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))
    assert sizer.refusals >= 1 and chain.splits == sizer.refusals
    assert len(ranges) > 3
    if not chunked:
        # Cut in proportion to the announced length (not halved again and again): most ranges
        # are answered at the first ask, even with ~16 logs a block against a 30-log aim.
        assert sizer.refusals < len(ranges) / 2
    # Each answered range holds at most the cap's worth of logs, unless it is a single block.
    per_range = {r: sum(1 for log in logs if r[0] <= int(str(log["blockNumber"]), 16) <= r[1]) for r in ranges}
    limit_logs = 60 * 1000 // 600  # the cap in bytes over the smallest JSON log anvil sends
    assert all(n <= limit_logs or r[0] == r[1] for r, n in per_range.items()), per_range


async def test_a_provider_range_limit_becomes_the_ceiling(busy_world: World) -> None:
    addresses = [*busy_world.all_tokens.values(), busy_world.factory]
    with RpcProxy(busy_world.rpc_url, max_range=5) as proxy:
        chain = Chain(Rpc([proxy.url]))
        try:
            head = await chain.head()
            sizer = RangeSizer(1, 100_000, 50_000)
            logs, ranges = await _tile(chain, addresses, 0, head, sizer)
        finally:
            await chain.rpc.close()
        refused = proxy.stats["refused_range"]
    assert all(b - a + 1 <= 5 for a, b in ranges)
    # one refusal teaches the limit; the ceiling is retried only after a run of answers
    assert 1 <= refused <= 1 + len(ranges) // RELAX_AFTER + 1
    assert len({_key(r) for r in logs}) == len(logs) > 300


@pytest.mark.parametrize(("message", "end"), [
    ("this block range should work: [0x64, 0xc7]", 0xC7),
    ("Try with this block range [100, 150].", 150),
    ("You can make eth_getLogs requests with up to a 2K block range", 100 + 2000 - 1),
    ("eth_getLogs is limited to a 10,000 range", 100 + 10_000 - 1),
    ("exceed maximum block range: 5000", 100 + 5000 - 1),
    ("eth_getLogs range is too large, max is 1k blocks", 100 + 1000 - 1),
    ("Please use a block range of 500 or less", 100 + 500 - 1),
    ("block range greater than 1000 max", 100 + 1000 - 1),
    ("query returned more than 10000 results", None),  # a count of results, not of blocks
    ("block range is too wide", None),
    ("limited to a 100000 range", None),  # not fewer blocks than asked
])
def test_suggested_end_reads_what_the_provider_accepts(message: str, end: int | None) -> None:
    assert suggested_end(message, 100, 50_000) == end
