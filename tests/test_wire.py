"""wire: an eth_getLogs answer parsed into structs, and answers of another shape kept as the
node's dicts with the same behaviour downstream (decode names the same faults)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from indexer import decode
from indexer.chain import _clean
from indexer.errors import UnindexableLog
from indexer.models import TokenKind
from indexer.rpc import _result
from indexer.wire import DictLog, Log, parse_answer, typed

TOKEN = "0x" + "a1" * 20
LOG: dict[str, Any] = {
    "address": TOKEN,
    "topics": [decode.TRANSFER_TOPIC, "0x" + "0" * 24 + "11" * 20, "0x" + "0" * 24 + "22" * 20],
    "data": "0x" + "00" * 31 + "05",
    "blockHash": "0x" + "bb" * 32,
    "blockNumber": "0x64",
    "blockTimestamp": "0x6553f100",
    "transactionHash": "0x" + "cc" * 32,
    "transactionIndex": "0x0",
    "logIndex": "0x0",
    "removed": False,
}


def logs_of(body: bytes) -> list[Any]:
    return _clean(_result(parse_answer(body), "eth_getLogs"))


def answer(*logs: dict[str, Any]) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": 3, "result": list(logs)})


def test_an_answer_of_the_usual_shape_becomes_structs_with_every_field() -> None:
    (log,) = logs_of(answer(LOG))
    assert type(log) is Log
    assert (log.address, list(log.topics), log.data, log.block_number, log.block_hash, log.block_timestamp,
            log.transaction_hash, log.log_index) == (
        LOG["address"], LOG["topics"], LOG["data"], LOG["blockNumber"], LOG["blockHash"], LOG["blockTimestamp"],
        LOG["transactionHash"], LOG["logIndex"])
    # the node's keys still answer, for the code off the hot path
    assert log["blockNumber"] == "0x64" and log.get("blockTimestamp") == "0x6553f100"
    assert log.get("transactionIndex") is None and log.get("nothing", 1) == 1
    with pytest.raises(KeyError):
        log["nothing"]


def test_a_missing_timestamp_is_none() -> None:
    bare = {k: v for k, v in LOG.items() if k not in ("blockTimestamp", "removed")}
    (log,) = logs_of(answer(bare))
    assert type(log) is Log and log.block_timestamp is None and log.get("blockTimestamp") is None


def test_removed_logs_are_dropped() -> None:
    """eth_getLogs does not send them; an answer that does is held as dicts, and they go."""
    logs = logs_of(answer(LOG, {**LOG, "removed": True, "logIndex": "0x1"}, {**LOG, "logIndex": "0x2"}))
    assert logs == [DictLog(LOG), DictLog({**LOG, "logIndex": "0x2"})]


@pytest.mark.parametrize("field, value", [("logIndex", None), ("logIndex", 10), ("topics", None),
                                          ("blockHash", None), ("data", 5)])
def test_a_log_of_another_shape_keeps_the_whole_answer_as_dicts(field: str, value: Any) -> None:
    odd = {**LOG, field: value} if field == "logIndex" else {**LOG, field: value, "logIndex": "0x1"}
    logs = logs_of(answer(LOG, odd))
    assert [type(r) for r in logs] == [DictLog, DictLog]
    assert logs[0].raw == LOG


def test_a_missing_field_is_named_by_decode_as_before() -> None:
    """A log without logIndex: the answer is held as dicts and decode stops on it, naming it."""
    broken = {k: v for k, v in LOG.items() if k != "logIndex"}
    logs = logs_of(answer(broken))
    assert [type(r) for r in logs] == [DictLog]
    with pytest.raises(UnindexableLog, match="KeyError\\('logIndex'\\)"):
        decode.decode(logs, {TOKEN: TokenKind.ERC20})


def test_error_answers_and_garbage_are_plain_json() -> None:
    error = orjson.dumps({"jsonrpc": "2.0", "id": 1, "error": {"code": -32005, "message": "too many logs"}})
    assert parse_answer(error) == orjson.loads(error)
    with pytest.raises(orjson.JSONDecodeError):
        parse_answer(b"<html>bad gateway</html>")


def test_dicts_that_fit_become_structs_and_the_same_moves_come_out() -> None:
    kinds = {TOKEN: TokenKind.ERC20}
    assert [type(r) for r in typed([LOG])] == [Log]
    from_bytes = decode.decode(logs_of(answer(LOG)), kinds).transfers
    assert from_bytes == decode.decode([LOG], kinds).transfers == decode.decode([DictLog(LOG)], kinds).transfers
    assert from_bytes[0].amount_raw == 5 and from_bytes[0].block_number == 100
