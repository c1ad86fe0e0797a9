"""The calls the indexer makes of a node, on top of the JSON-RPC transport (rpc.py).

``Chain`` builds them: heads, headers, logs with adaptive range splitting, and ``eth_call`` at
a block; ``connect`` opens one and checks the chain id; ``watch_heads`` follows newHeads.

Failure modes, as raised to callers (see errors.py):
- ``RpcUnavailable`` once the retry budget is spent (network, HTTP 429/5xx, garbage JSON);
- a refused eth_getLogs range never escapes ``Chain.get_logs`` / ``logs_from``: any refusal of
  more than one block (known wording or not) cuts the range instead, where the node suggests;
- ``RpcError`` for an answer retrying cannot change (bad params, a single block refused).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from . import logconfig
from .errors import (
    AnswerTooLarge,
    RpcError,
    RpcRangeTooLarge,
    RpcUnavailable,
    StateUnavailable,
    mask_url,
    mask_urls_in,
)
from .models import Header, Wire
from .ranges import RangeSizer, block_limit, suggested_end
from .rpc import Rpc, _result
from .wire import Log, parse_answer, typed

__all__ = ["Chain", "Rpc", "StateUnavailable", "connect", "parse_header", "watch_heads"]

log = logconfig.get("chain")


def _hex(n: int) -> str:
    return hex(n)


def parse_header(raw: Any, number: int) -> Header:
    if not isinstance(raw, dict):
        raise RpcUnavailable(f"block {number} is not available from the node")
    try:
        return Header(
            number=int(raw["number"], 16),
            hash=raw["hash"].lower(),
            parent_hash=raw["parentHash"].lower(),
            timestamp=int(raw["timestamp"], 16),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise RpcUnavailable(f"block {number}: malformed header") from None


class Chain:
    """The calls the indexer makes, on top of :class:`Rpc`."""

    HEADER_BATCH = 200
    CALL_BATCH = 500

    def __init__(self, rpc: Rpc) -> None:
        self.rpc = rpc
        self.splits = 0  # how many times a range was cut (adaptive sizing)
        self.max_logs = 50_000  # get_logs' answer limit, in logs' worth of JSON (max_batch_logs)

    async def chain_id(self) -> int:
        return int(await self.rpc.request("eth_chainId", []), 16)

    async def head(self) -> int:
        return int(await self.rpc.request("eth_blockNumber", []), 16)

    async def header(self, number: int) -> Header:
        return (await self.headers([number]))[0]

    async def headers(self, numbers: Sequence[int]) -> list[Header]:
        out: list[Header] = []
        for i in range(0, len(numbers), self.HEADER_BATCH):
            chunk = numbers[i : i + self.HEADER_BATCH]
            raws = await self.rpc.batch([("eth_getBlockByNumber", [_hex(n), False]) for n in chunk])
            out.extend(parse_header(raw, n) for raw, n in zip(raws, chunk, strict=True))
        return out

    async def get_logs(
        self, addresses: Sequence[str], topics0: Sequence[str], from_block: int, to_block: int
    ) -> list[Wire]:
        """All logs of ``addresses`` with one of ``topics0`` in [from_block, to_block], in chain
        order, as the node's JSON dicts (decode.py reads them directly: the hot path): the whole
        range asked at once, and, when the node refuses it, tiled by :meth:`logs_from` with a
        sizer of its own (the one splitting mechanism)."""
        if not addresses or from_block > to_block:
            return []
        sizer = RangeSizer(to_block - from_block + 1, to_block - from_block + 1, self.max_logs)
        out: list[Wire] = []
        start = from_block
        while start <= to_block:
            ask = to_block if start == from_block else min(to_block, start + sizer.blocks - 1)
            raws, end = await self.logs_from(addresses, topics0, start, ask, sizer)
            out += raws
            start = end + 1
        return out

    async def logs_from(
        self, addresses: Sequence[str], topics0: Sequence[str], from_block: int, to_block: int, sizer: RangeSizer,
    ) -> tuple[list[Wire], int]:
        """Logs of [from_block, end] for the largest ``end <= to_block`` answered in one request
        within ``sizer.answer_limit`` bytes, and that ``end``. Any refusal of a range of more than
        one block, whatever its wording, cuts it: in proportion to the answer's length when our
        size limit refused it, else where the node's message says it accepts (a range, or a block
        limit), else in half; the rest is the caller's next range. A single block is taken whole
        (up to the client's memory guard); its refusal is an RpcError with the node's message."""
        end = to_block
        while True:
            blocks = end - from_block + 1
            try:
                raws, size = await self.rpc.request_sized(
                    "eth_getLogs", _logs_params(addresses, topics0, from_block, end),
                    max_body=sizer.answer_limit if blocks > 1 else None, parse=parse_answer)
            except StateUnavailable:
                raise  # the node lacks the blocks (behind, or pruned): not a matter of size
            except (RpcRangeTooLarge, RpcError) as exc:
                if blocks == 1:
                    raise RpcError(f"eth_getLogs for block {from_block} alone is refused: "
                                   f"{mask_urls_in(str(exc))}") from None
                self.splits += 1
                if isinstance(exc, AnswerTooLarge):
                    fewer = sizer.too_large(blocks, exc.size)
                else:
                    fewer = sizer.refused(blocks, _split_point(str(exc), from_block, end) - from_block + 1,
                                          block_limit(str(exc)))
                log.debug("get_logs_cut", from_block=from_block, to_block=end, blocks=fewer,
                          reason=mask_urls_in(str(exc))[:120])
                end = from_block + fewer - 1
                continue
            out = _clean(raws)
            sizer.answered(blocks, len(out), size)
            return out, end

    async def call(self, to: str, data: str, block: int | str = "latest") -> bytes | None:
        return (await self.call_many([(to, data)], block))[0]

    async def call_many(self, calls: Sequence[tuple[str, str]], block: int | str = "latest") -> list[bytes | None]:
        """eth_call each (to, data) at ``block``; a revert gives None, state errors raise."""
        tag = _hex(block) if isinstance(block, int) else block
        out: list[bytes | None] = []
        for i in range(0, len(calls), self.CALL_BATCH):
            chunk = calls[i : i + self.CALL_BATCH]
            items = await self.rpc.batch_raw([("eth_call", [{"to": to, "data": data}, tag]) for to, data in chunk])
            for item in items:
                try:
                    result = _result(item, "eth_call")
                except StateUnavailable:
                    raise
                except RpcError as exc:
                    if "revert" in str(exc).lower() or exc.code == 3:
                        out.append(None)
                        continue
                    raise
                out.append(bytes.fromhex(result[2:]) if isinstance(result, str) and len(result) > 2 else None)
        return out


def _logs_params(addresses: Sequence[str], topics0: Sequence[str], from_block: int, to_block: int) -> list[Any]:
    return [{"address": list(addresses), "topics": [list(topics0)], "fromBlock": _hex(from_block),
             "toBlock": _hex(to_block)}]


def _clean(raws: Any) -> list[Wire]:
    """The logs of an eth_getLogs answer that are not removed (wire.Log, or wire.DictLog when
    the answer had another shape)."""
    if not isinstance(raws, list):
        raise RpcUnavailable("eth_getLogs answer is not a list")
    try:
        logs: list[Wire] = typed(raws)  # type: ignore[assignment]
    except TypeError:
        raise RpcUnavailable("eth_getLogs answer has a log that is not an object") from None
    if not logs or type(logs[0]) is Log:  # wire.Log: never a removed one
        return logs
    return [r for r in logs if not r.removed]


def _split_point(message: str, from_block: int, to_block: int) -> int:
    """The last block of the first part of a refused [from_block, to_block]: where the message
    suggests, else the middle. Always leaves two non-empty parts."""
    end = suggested_end(message, from_block, to_block)
    return end if end is not None else (from_block + to_block) // 2


async def connect(urls: Sequence[str], name: str, expected_id: int | None = None,
                  attempts: int | None = 8, on_error: Callable[[str], None] | None = None,
                  rpc_timeout: float = 30.0, max_body: int = 256 * 1024 * 1024) -> tuple[Chain, int]:
    """Open a Chain and read its id. An endpoint that does not answer within a short start-up
    budget raises ServiceUnreachable (exit 2); an id other than ``expected_id`` ConfigError."""
    from .errors import ConfigError, ServiceUnreachable

    probe = Rpc(urls, attempts=3, max_wait=1.0, timeout=10.0)
    try:
        chain_id = await Chain(probe).chain_id()
    except (RpcUnavailable, RpcError) as exc:
        raise ServiceUnreachable(f"chain {name}: rpc {mask_url(urls[0])} unreachable: {exc}") from None
    finally:
        await probe.close()
    if expected_id is not None and chain_id != expected_id:
        raise ConfigError(f"chain {name}: node reports chain id {chain_id}, config says chain_id = {expected_id}")
    return Chain(Rpc(urls, attempts=attempts, on_error=on_error, timeout=rpc_timeout, max_body=max_body)), chain_id


async def watch_heads(ws_url: str, wake: asyncio.Event) -> None:
    """Set ``wake`` whenever the node announces a new head over a ``newHeads`` subscription.
    Reconnects with backoff forever; the caller also polls, so a lost socket only costs latency."""
    from websockets.asyncio.client import connect as ws_connect

    delay = 0.2
    while True:
        try:
            async with ws_connect(ws_url, max_size=None, open_timeout=10) as ws:
                await ws.send(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
                                            "params": ["newHeads"]}).decode())
                log.info("ws_subscribed", url=mask_url(ws_url))
                delay = 0.2
                async for message in ws:
                    if b'"eth_subscription"' in (message if isinstance(message, bytes) else message.encode()):
                        wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any socket or protocol failure: reconnect
            log.warning("ws_heads_lost", url=mask_url(ws_url), error=f"{type(exc).__name__}: {exc}"[:200])
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)
