"""rpc.py's and chain.py's pure helpers: how node errors are classified, where ranges split, log/header parsing."""

from __future__ import annotations

from typing import Any

import pytest

from indexer.chain import _split_point, parse_header
from indexer.decode import parse_wire
from indexer.errors import Retryable, RpcError, RpcRangeTooLarge, RpcUnavailable
from indexer.models import Header, RawLog
from indexer.rpc import _RANGE_ERRORS, StateUnavailable, _is_transient, _result
from indexer.wire import DictLog, typed

ALCHEMY_RANGE = (
    "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no limit on "
    "the response size, or you can request any block range with a cap of 10K logs in the response. Based on your "
    "parameters, this block range should work: [0x1, 0x7d0]"
)

RANGE_ERRORS = [
    (-32005, "query returned more than 10000 results"),  # Infura, geth-style
    (-32602, ALCHEMY_RANGE),  # Alchemy
    (-32000, "block range is too large"),  # many geth forks
    (-32600, "eth_getLogs is limited to a 10,000 range"),  # QuickNode style
    (-32000, "exceed maximum block range: 5000"),  # BSC / Ankr style
    (-32005, "Query returned more than 10000 results. Try with this block range [0x1, 0x100]."),
    (-32602, "Log response size exceeded."),
]
RANGE_IDS = ["infura", "alchemy", "too-large", "limited-range", "exceed-max", "infura-suggest", "size"]


def error_item(code: int | None, message: str, request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


@pytest.mark.parametrize(("code", "message"), RANGE_ERRORS, ids=RANGE_IDS)
def test_range_errors_from_each_provider_style_raise_range_too_large(code: int, message: str) -> None:
    assert _RANGE_ERRORS.search(message)
    with pytest.raises(RpcRangeTooLarge):
        _result(error_item(code, message), "eth_getLogs")


@pytest.mark.parametrize(("code", "message"), RANGE_ERRORS, ids=RANGE_IDS)
def test_range_errors_are_split_not_retried(code: int, message: str) -> None:
    assert not _is_transient({"code": code, "message": message})


def test_range_error_message_is_kept() -> None:
    with pytest.raises(RpcRangeTooLarge) as info:
        _result(error_item(-32602, ALCHEMY_RANGE), "eth_getLogs")
    assert "[0x1, 0x7d0]" in str(info.value)


def test_range_wording_on_another_method_is_not_a_range_error() -> None:
    with pytest.raises(RpcError) as info:
        _result(error_item(-32000, "block range is too large"), "eth_call")
    assert not isinstance(info.value, RpcRangeTooLarge)


def test_split_point_uses_the_suggested_range() -> None:
    assert _split_point(ALCHEMY_RANGE, 1, 10_000) == 0x7D0
    assert _split_point("try with this block range [0x10, 0x20]", 0x10, 0x100) == 0x20
    # the suggested range ends before this one: the block limit it states ("up to a 2K block range") is used
    assert _split_point(ALCHEMY_RANGE, 5_000, 10_000) == 5_000 + 2_000 - 1


@pytest.mark.parametrize(
    ("message", "lo", "hi"),
    [
        ("query returned more than 10000 results", 100, 301),  # no suggestion
        (ALCHEMY_RANGE, 1, 2000),  # suggestion is the whole range: no progress
        (ALCHEMY_RANGE, 1, 1500),  # suggestion ends after the range
    ],
)
def test_split_point_falls_back_to_the_middle(message: str, lo: int, hi: int) -> None:
    assert _split_point(message, lo, hi) == (lo + hi) // 2


@pytest.mark.parametrize(("lo", "hi"), [(0, 1), (7, 8), (0, 10**9), (123, 124_567)])
def test_split_point_always_leaves_two_non_empty_halves(lo: int, hi: int) -> None:
    for message in ("too many results", ALCHEMY_RANGE):
        mid = _split_point(message, lo, hi)
        assert lo <= mid < hi


@pytest.mark.parametrize("method", ["eth_call", "eth_getLogs"])
def test_execution_reverted_is_rpc_error(method: str) -> None:
    with pytest.raises(RpcError) as info:
        _result(error_item(3, "execution reverted"), method)
    assert type(info.value) is RpcError
    assert info.value.code == 3
    assert not _is_transient({"code": 3, "message": "execution reverted"})


@pytest.mark.parametrize(
    "message",
    ["missing trie node 4f1a6b (path ) state 0x4f1a6b is not available", "header not found",
     "required historical state unavailable (reexec=128)"],
)
def test_missing_state_is_state_unavailable(message: str) -> None:
    with pytest.raises(StateUnavailable) as info:
        _result(error_item(-32000, message), "eth_call")
    assert isinstance(info.value, Retryable)  # a lagging or pruned backend: the step is tried again
    assert message in str(info.value)


def test_missing_trie_node_exact_message() -> None:
    with pytest.raises(StateUnavailable):
        _result(error_item(-32000, "missing trie node"), "eth_call")


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (429, "Too Many Requests"),
        (429, "Your app has exceeded its compute units per second capacity. If you have retries enabled, "
              "you can safely ignore this message."),
        (-32005, "daily request count exceeded, request rate limited"),
        (-32005, "rate limit exceeded"),
        (-32000, "rate limit exceeded"),
        (-32016, "over rate limit"),
        (-32000, "request timeout, please try again"),
    ],
)
def test_rate_limit_errors_are_transient(code: int, message: str) -> None:
    assert _is_transient({"code": code, "message": message})


@pytest.mark.parametrize(
    "error",
    [None, "rate limit", {"code": -32602, "message": "invalid argument 0: hex string has odd length"},
     {"code": -32601, "message": "the method eth_foo does not exist"}, {"code": 3, "message": "execution reverted"}],
)
def test_other_errors_are_not_transient(error: object) -> None:
    assert not _is_transient(error)


def test_result_returns_the_result() -> None:
    assert _result({"jsonrpc": "2.0", "id": 1, "result": "0x10"}, "eth_blockNumber") == "0x10"
    assert _result({"jsonrpc": "2.0", "id": 1, "result": None}, "eth_getBlockByNumber") is None


@pytest.mark.parametrize("item", [None, [], "oops", {"jsonrpc": "2.0", "id": 1}])
def test_malformed_answers_are_unavailable(item: object) -> None:
    with pytest.raises(RpcUnavailable):
        _result(item, "eth_chainId")


def test_error_given_as_a_string() -> None:
    with pytest.raises(RpcError) as info:
        _result({"id": 1, "error": "boom"}, "eth_chainId")
    assert "boom" in str(info.value) and "eth_chainId" in str(info.value)


# --- parse_wire / parse_header -----------------------------------------------------------------

LOG = {
    "address": "0xA1A1a1a1A1a1A1a1a1a1A1A1A1A1A1a1a1a1a1a1",
    "topics": ["0xDDF252AD1BE2C89B69C2B068FC378DAA952BA7F163C4A11628F55A4DF523B3EF", "0x" + "0" * 24 + "AB" * 20],
    "data": "0x" + "00" * 31 + "05",
    "blockNumber": "0x1b4",
    "blockHash": "0x" + "AA" * 32,
    "transactionHash": "0x" + "CC" * 32,
    "logIndex": "0xa",
    "removed": False,
}


def test_parse_wire_lowercases_and_reads_hex() -> None:
    raw = parse_wire(typed([{**LOG, "blockTimestamp": "0x6553f100"}])[0])
    assert raw == RawLog(
        address="0x" + "a1" * 20,
        topics=("0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef", "0x" + "0" * 24 + "ab" * 20),
        data=LOG["data"],
        block_number=436,
        block_hash="0x" + "aa" * 32,
        block_time=0x6553F100,
        tx_hash="0x" + "cc" * 32,
        log_index=10,
    )


@pytest.mark.parametrize("extra", [{}, {"blockTimestamp": None}])
def test_parse_wire_without_timestamp(extra: dict[str, Any]) -> None:
    assert parse_wire(typed([{**LOG, **extra}])[0]).block_time is None


def test_parse_header() -> None:
    raw = {"number": "0x10", "hash": "0x" + "AB" * 32, "parentHash": "0x" + "CD" * 32, "timestamp": "0x64"}
    assert parse_header(raw, 16) == Header(16, "0x" + "ab" * 32, "0x" + "cd" * 32, 100)


@pytest.mark.parametrize(
    "raw",
    [None, [], {"number": "0x10"}, {"number": 16, "hash": "0x", "parentHash": "0x", "timestamp": "0x1"},
     {"number": "0xzz", "hash": "0x", "parentHash": "0x", "timestamp": "0x1"}],
)
def test_parse_header_of_missing_or_malformed_block(raw: object) -> None:
    with pytest.raises(RpcUnavailable) as info:
        parse_header(raw, 16)
    assert "16" in str(info.value)


@pytest.mark.parametrize("message", ["BlockOutOfRangeError: block height is 2138 but requested was 2145",
                                     "unknown block", "block not found"])
def test_a_block_above_the_head_is_a_moved_chain(message: str) -> None:
    """Asked before a reorg shortened the chain: the step is retried, never an exit 1."""
    from indexer.errors import ChainMoved, Retryable

    with pytest.raises(ChainMoved) as caught:
        _result({"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": message}}, "eth_call")
    assert isinstance(caught.value, Retryable)


@pytest.mark.parametrize("answer", [{"a": 1}, [LOG, 1], [LOG, "x"], [None], [[LOG]]])
def test_a_logs_answer_that_is_not_a_list_of_objects_is_unusable(answer: Any) -> None:
    from indexer.chain import _clean

    with pytest.raises(RpcUnavailable):
        _clean(answer)


def test_removed_logs_are_dropped() -> None:
    from indexer.chain import _clean

    assert _clean([LOG, {**LOG, "removed": True}, {**LOG, "logIndex": "0xb"}]) == [DictLog(LOG),
                                                                                 DictLog({**LOG, "logIndex": "0xb"})]
    assert _clean([LOG, {**LOG, "logIndex": "0xb"}]) == typed([LOG, {**LOG, "logIndex": "0xb"}])
    odd = {**LOG, "logIndex": 10}  # not a string: the answer is held as the node's dicts
    assert _clean([odd, {**odd, "removed": True}]) == [DictLog(odd)]
