"""The only module that talks JSON-RPC.

``Rpc`` sends single and batched requests to a list of endpoints (first is primary, the rest
fallbacks), retrying transient failures with exponential backoff and jitter (tenacity) and moving
to the next endpoint after each failure. ``Chain`` builds the calls the indexer needs on top:
heads, headers, logs with adaptive range splitting, and ``eth_call`` at a block.

Failure modes, as raised to callers (see errors.py):
- ``RpcUnavailable`` once the retry budget is spent (network, HTTP 429/5xx, garbage JSON);
- ``RpcRangeTooLarge`` never escapes ``Chain.get_logs``: the range is split instead;
- ``RpcError`` for an answer retrying cannot change (bad params, a single block too large).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import orjson
import tenacity

from . import logs
from .errors import RpcError, RpcRangeTooLarge, RpcUnavailable, mask_url
from .models import Header, RawLog, Wire

log = logs.get("chain")

# Messages providers use when an eth_getLogs request is too big (block range or result size).
_RANGE_ERRORS = re.compile(
    r"(?i)(more than \d+ results|too many (results|logs|blocks)|response size|size exceed|"
    r"range (is )?too (large|wide|big)|block range|exceed(s|ed)? (the )?(max|maximum|limit)|"
    r"(?<!rate )limit exceeded|max(imum)? (results|logs|range)|query timeout|log response size|"
    r"returned more than|range should work|query exceeds|limited to a [\d,]+ (block )?range)"
)
_SUGGESTED_RANGE = re.compile(r"\[(0x[0-9a-fA-F]+),\s*(0x[0-9a-fA-F]+)\]")
_RETRYABLE_CODES = {-32005, 429}
_STATE_MISSING = re.compile(
    r"(?i)(missing trie node|header not found|state .*not available|historical state unavailable|pruned)")


class StateUnavailable(RpcError):
    """The node has no state for that block (not an archive node, or pruned)."""


class Rpc:
    """JSON-RPC over HTTP with retries and endpoint fallback.

    ``attempts=None`` retries forever (the daemon); a number bounds the total attempts across
    endpoints (start-up checks, the CLI). ``on_error(kind)`` is called for each failed attempt,
    for metrics.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout: float = 30.0,
        attempts: int | None = 8,
        max_wait: float = 10.0,
        on_error: Callable[[str], None] | None = None,
        max_body: int = 256 * 1024 * 1024,
    ) -> None:
        if not urls:
            raise ValueError("at least one RPC URL is required")
        self.urls = [_http_url(u) for u in urls]
        self._current = 0
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._attempts = attempts
        self._max_wait = max_wait
        self._on_error = on_error
        self.max_body = max_body  # larger answers are refused like a provider's size limit
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)
        self.last_ok = 0.0  # monotonic time of the last usable answer
        self.last_error: str | None = None  # why the last attempt failed, cleared on success

    @property
    def url(self) -> str:
        return self.urls[self._current]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Rpc:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(self, method: str, params: Sequence[Any]) -> Any:
        payload = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        body = await self._with_retries(orjson.dumps(payload), method)
        return _result(body, method)

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Send calls as one JSON-RPC batch; return results in order. Errors raise per item:
        the first failing item raises (callers that expect reverts use ``Chain.call_many``)."""
        if not calls:
            return []
        return [_result(item, calls[0][0]) for item in await self.batch_raw(calls)]

    async def batch_raw(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        start = next(self._ids)
        self._ids = itertools.count(start + len(calls))
        payload = [
            {"jsonrpc": "2.0", "id": start + i, "method": m, "params": list(p)}
            for i, (m, p) in enumerate(calls)
        ]
        body = await self._with_retries(orjson.dumps(payload), calls[0][0])
        if not isinstance(body, list) or len(body) != len(calls):
            if isinstance(body, dict) and "error" in body:
                return [body] * len(calls)
            raise RpcUnavailable(f"{mask_url(self.url)}: malformed batch answer to {calls[0][0]}")
        by_id = {item.get("id"): item for item in body if isinstance(item, dict)}
        try:
            return [by_id[start + i] for i in range(len(calls))]
        except KeyError:
            raise RpcUnavailable(f"{mask_url(self.url)}: batch answer is missing ids") from None

    async def _with_retries(self, payload: bytes, method: str) -> Any:
        stop = tenacity.stop_never if self._attempts is None else tenacity.stop_after_attempt(self._attempts)
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(RpcUnavailable),
            stop=stop,
            wait=tenacity.wait_exponential_jitter(initial=0.1, max=self._max_wait),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                url = self.url
                try:
                    answer = await self._post(url, payload)
                    self.last_ok, self.last_error = time.monotonic(), None
                    return answer
                except RpcUnavailable as exc:
                    self.last_error = str(exc)
                    number = attempt.retry_state.attempt_number
                    log.warning("rpc_retry", method=method, url=mask_url(url), attempt=number, error=str(exc))
                    if len(self.urls) > 1:
                        self._current = (self._current + 1) % len(self.urls)
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post(self, url: str, payload: bytes) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        shown = mask_url(url)
        try:
            async with self._session.post(url, data=payload, headers={"Content-Type": "application/json"}) as resp:
                body = await self._read(resp)
                status = resp.status
        except TimeoutError:
            self._count("timeout")
            raise RpcUnavailable(f"{shown}: timed out") from None
        except (aiohttp.ClientError, OSError) as exc:
            self._count("connection")
            raise RpcUnavailable(f"{shown}: {type(exc).__name__}: {_short(str(exc), url)}") from None
        if status == 413:
            raise RpcRangeTooLarge(f"{shown}: HTTP 413 response too large")
        if status == 429 or status >= 500:
            self._count(f"http_{status}")
            raise RpcUnavailable(f"{shown}: HTTP {status}")
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError:
            self._count("bad_json")
            raise RpcUnavailable(f"{shown}: answer is not JSON (HTTP {status}, {len(body)} bytes)") from None
        if isinstance(decoded, dict) and "error" in decoded and "id" in decoded and decoded["id"] is None:
            self._count("rpc_error")
        if isinstance(decoded, dict) and _is_transient(decoded.get("error")):
            self._count("rpc_transient")
            raise RpcUnavailable(f"{shown}: {decoded['error'].get('message')}")
        if status >= 400 and not isinstance(decoded, dict | list):
            raise RpcUnavailable(f"{shown}: HTTP {status}")
        return decoded

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        """The body, refused past ``max_body`` bytes (as RpcRangeTooLarge, so eth_getLogs splits
        the range). Nodes without a result cap (anvil) would otherwise let one range that runs
        from sparse into dense blocks put hundreds of MB of JSON in memory at once."""
        if resp.content_length is not None and resp.content_length > self.max_body:
            raise RpcRangeTooLarge(f"answer of {resp.content_length} bytes is over {self.max_body}")
        chunks, size = [], 0
        async for chunk in resp.content.iter_chunked(1 << 20):
            size += len(chunk)
            if size > self.max_body:
                raise RpcRangeTooLarge(f"answer is over {self.max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _count(self, kind: str) -> None:
        if self._on_error is not None:
            self._on_error(kind)


def _http_url(url: str) -> str:
    # Requests go over HTTP; a ws:// endpoint is also served over HTTP on the same port by every
    # common node (anvil, geth, reth, erigon). Head subscriptions use the ws URL as given.
    if url.startswith("ws://"):
        return "http://" + url[5:]
    if url.startswith("wss://"):
        return "https://" + url[6:]
    return url


def _short(text: str, url: str) -> str:
    return text.replace(url, mask_url(url))[:200]


def _is_transient(error: Any) -> bool:
    if not isinstance(error, dict):
        return False
    code, message = error.get("code"), str(error.get("message", ""))
    if code in _RETRYABLE_CODES and not _RANGE_ERRORS.search(message):
        return True
    return bool(re.search(r"(?i)(rate limit|too many requests|timeout|temporarily|try again)", message)) and not (
        _RANGE_ERRORS.search(message)
    )


def _result(item: Any, method: str) -> Any:
    if not isinstance(item, dict):
        raise RpcUnavailable(f"malformed answer to {method}")
    error = item.get("error")
    if error is not None:
        message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
        code = error.get("code") if isinstance(error, dict) else None
        if method == "eth_getLogs" and _RANGE_ERRORS.search(message):
            raise RpcRangeTooLarge(message)
        if _STATE_MISSING.search(message):
            raise StateUnavailable(f"{method}: {message}", code)
        raise RpcError(f"{method}: {message}", code)
    if "result" not in item:
        raise RpcUnavailable(f"malformed answer to {method}: no result")
    return item["result"]


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


def parse_log(raw: dict[str, Any]) -> RawLog:
    ts = raw.get("blockTimestamp")
    return RawLog(
        raw["address"].lower(),
        tuple([t.lower() for t in raw["topics"]]),
        raw["data"],
        int(raw["blockNumber"], 16),
        raw["blockHash"].lower(),
        int(ts, 16) if ts else None,
        raw["transactionHash"].lower(),
        int(raw["logIndex"], 16),
    )


class Chain:
    """The calls the indexer makes, on top of :class:`Rpc`."""

    HEADER_BATCH = 200
    CALL_BATCH = 500

    def __init__(self, rpc: Rpc) -> None:
        self.rpc = rpc
        self.splits = 0  # how many times get_logs had to split a range (adaptive sizing)

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
        order, as the node's JSON dicts (decode.py reads them directly: the hot path). A range
        the node refuses as too large is split (at the node's suggestion when it
        gives one, else in half) and the halves fetched; never retried as is."""
        if not addresses or from_block > to_block:
            return []
        params = [{
            "address": list(addresses),
            "topics": [list(topics0)],
            "fromBlock": _hex(from_block),
            "toBlock": _hex(to_block),
        }]
        try:
            raws = await self.rpc.request("eth_getLogs", params)
        except RpcRangeTooLarge as exc:
            if from_block == to_block:
                raise RpcError(f"eth_getLogs for block {from_block} alone is refused as too large: {exc}") from None
            self.splits += 1
            mid = _split_point(str(exc), from_block, to_block)
            log.debug("get_logs_split", from_block=from_block, to_block=to_block, mid=mid)
            left = await self.get_logs(addresses, topics0, from_block, mid)
            right = await self.get_logs(addresses, topics0, mid + 1, to_block)
            return left + right
        if not isinstance(raws, list):
            raise RpcUnavailable("eth_getLogs answer is not a list")
        if not all(isinstance(r, dict) for r in raws):
            raise RpcUnavailable("eth_getLogs answer has a log that is not an object")
        return [r for r in raws if not r.get("removed", False)]

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


def _split_point(message: str, from_block: int, to_block: int) -> int:
    match = _SUGGESTED_RANGE.search(message)
    if match:
        suggested_end = int(match.group(2), 16)
        if from_block <= suggested_end < to_block:
            return suggested_end
    return (from_block + to_block) // 2


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
