"""A hosted provider, played locally: a JSON-RPC proxy in front of anvil that answers the way
remote endpoints do, for the remote-provider benchmark and its test.

What it adds to the node behind it:
- a round trip (``rtt``, default 50 ms) on every HTTP request, half before and half after;
- a rate limit (``rate`` requests/s, default 25; a JSON-RPC batch of n costs n): a token
  bucket holding one second's worth, answered with HTTP 429 and the provider's wording when
  empty. A batch larger than the bucket is let through when the bucket is full and leaves it
  in debt, so that no request is refused forever;
- eth_getLogs caps: a range over ``max_range`` blocks (default 2,000) or an answer over
  ``max_logs`` logs (default 10,000) is refused with Alchemy's message, including the range
  that would work (the indexer cuts there);
- ``stretch``: every real block r of the node is shown as block r * stretch, and the blocks in
  between are empty (a header with the previous real block's state and timestamp, hashes
  linked). A chain's history is mostly sparse, but anvil mines empty blocks ever more slowly
  (about 12 ms each past a few thousand), so hundreds of thousands of real ones are out of
  reach; stretching keeps what a client sees (numbers, ranges, links, state by number) without
  them. State in an empty block is its real predecessor's: exact for everything but a
  multiplier that changes with time alone (the benchmark's workload schedules none). An
  eth_call with a state override (the indexer's reader) runs with the shown block's number and
  the shown hashes for ``blockhash`` (anvil's block overrides).

It counts every JSON-RPC call per method, HTTP requests, 429s and refusals (``stats``).
Runs an aiohttp server on its own event loop in a background thread (``with Provider(...)``).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson
from aiohttp import web

RATE_LIMITED = ("Your app has exceeded its compute units per second capacity. If you have retries enabled, you can "
                "safely ignore this message. If not, check out https://docs.alchemy.com/reference/throughput")
LOG_CAP = ("Log response size exceeded. You can make eth_getLogs requests with up to a {range} block range and no "
           "limit on the response size, or you can request any block range with a cap of {logs} logs in the "
           "response. Based on your parameters, this block range should work: [{lo}, {hi}]")
_BLOCK_ARG = {"eth_call": 1, "eth_getCode": 1, "eth_getBalance": 1, "eth_getStorageAt": 2,
              "eth_getTransactionCount": 1}


def _k(n: int) -> str:
    return f"{n // 1000}K" if n % 1000 == 0 else str(n)


class Bucket:
    """Token bucket: ``rate`` per second, holding at most one second's worth."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.tokens = rate or 0.0
        self.at = time.monotonic()

    def take(self, cost: int) -> bool:
        if self.rate is None:
            return True
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= cost or self.tokens >= self.rate:  # a batch over capacity: when full, in debt
            self.tokens -= cost
            return True
        return False


class Provider:
    def __init__(self, upstream: str, *, rtt: float = 0.05, rate: float | None = 25.0, max_range: int | None = 2000,
                 max_logs: int | None = 10_000, stretch: int = 1) -> None:
        self.upstream = upstream
        self.rtt = rtt
        self.bucket = Bucket(rate)
        self.max_range = max_range
        self.max_logs = max_logs
        self.stretch = max(1, stretch)
        self.stats: Counter[str] = Counter()
        self._hashes: dict[int, str] = {}  # real block -> hash (stretch: the shown blocks' hashes)
        self.ranges: list[tuple[int, int, str]] = []  # every eth_getLogs range asked, and its fate
        # every HTTP request since reset(): arrival and answer (s), its calls, HTTP status
        self.timeline: list[tuple[float, float, str, int]] = []
        self._since = time.monotonic()
        self.since_wall = time.time()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_rate(self, rate: float | None) -> None:
        """Change the limit (None: unlimited), e.g. to let an audit through quickly."""
        self.bucket = Bucket(rate)

    def calls(self) -> dict[str, int]:
        """JSON-RPC calls per method (a batch counts each of its calls)."""
        return {k.removeprefix("call:"): v for k, v in sorted(self.stats.items()) if k.startswith("call:")}

    def reset(self) -> None:
        self.stats.clear()
        self.ranges.clear()
        self.timeline.clear()
        self._since = time.monotonic()
        self.since_wall = time.time()  # the same moment, to place a client's logged events on the timeline

    def __enter__(self) -> Provider:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        arrived = time.monotonic() - self._since
        body = await request.read()
        self.stats["http_requests"] += 1
        await asyncio.sleep(self.rtt / 2)
        payload = orjson.loads(body)
        items = payload if isinstance(payload, list) else [payload]
        methods = ",".join(f"{m}x{n}" if n > 1 else str(m)
                           for m, n in Counter(str(i.get("method")) for i in items).items())
        if not self.bucket.take(len(items)):
            self.stats["http_429"] += 1
            self.stats["refused_calls_429"] += len(items)
            await asyncio.sleep(self.rtt / 2)
            self.timeline.append((round(arrived, 3), round(time.monotonic() - self._since, 3), methods, 429))
            return web.Response(status=429, body=orjson.dumps(
                {"jsonrpc": "2.0", "id": None, "error": {"code": 429, "message": RATE_LIMITED}}),
                content_type="application/json")
        for item in items:
            self.stats[f"call:{item.get('method')}"] += 1
        answers = await asyncio.gather(*(self._answer(item) for item in items))
        await asyncio.sleep(self.rtt / 2)
        out = answers if isinstance(payload, list) else answers[0]
        self.timeline.append((round(arrived, 3), round(time.monotonic() - self._since, 3), methods, 200))
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    async def _upstream(self, method: str, params: list[Any]) -> dict[str, Any]:
        assert self._session is not None
        body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        async with self._session.post(self.upstream, data=body, headers={"Content-Type": "application/json"}) as r:
            answer: dict[str, Any] = orjson.loads(await r.read())
        return answer

    async def _answer(self, item: dict[str, Any]) -> dict[str, Any]:
        method, params, rid = item.get("method"), list(item.get("params") or []), item.get("id")
        if method == "eth_getLogs":
            out = await self._logs(params[0])
        elif method == "eth_blockNumber":
            out = await self._upstream(method, params)
            if "result" in out:
                out["result"] = hex(int(out["result"], 16) * self.stretch)
        elif method == "eth_getBlockByNumber":
            out = await self._block(params)
        else:
            index = _BLOCK_ARG.get(str(method))
            if method == "eth_call" and self.stretch > 1 and len(params) == 3 and str(params[1]).startswith("0x"):
                params.append(await self._stretched_context(int(params[1], 16)))
            if index is not None and len(params) > index:
                params[index] = self._real_tag(params[index])
            out = await self._upstream(str(method), params)
        return {"jsonrpc": "2.0", "id": rid, **{k: v for k, v in out.items() if k in ("result", "error")}}

    def _real_tag(self, tag: Any) -> Any:
        if isinstance(tag, str) and tag.startswith("0x"):
            return hex(int(tag, 16) // self.stretch)
        return tag

    async def _stretched_context(self, virtual: int) -> dict[str, Any]:
        """Block overrides for an eth_call with a state override (the indexer's reader, which
        asks ``blockhash``) at shown block ``virtual``: its number, and the hashes of the 256
        shown blocks below it as the headers show them."""
        hashes: dict[str, str] = {}
        for n in range(max(0, virtual - 256), virtual):
            real, k = divmod(n, self.stretch)
            real_hash = await self._real_hash(real)
            hashes[str(n)] = real_hash if k == 0 else self._filler_hash(real_hash, k)
        return {"number": hex(virtual), "blockHash": hashes}

    async def _real_hash(self, real: int) -> str:
        known = self._hashes.get(real)
        if known is None:
            out = await self._upstream("eth_getBlockByNumber", [hex(real), False])
            known = self._hashes[real] = str(out["result"]["hash"])
        return known

    def _filler_hash(self, real_hash: str, k: int) -> str:
        return "0x" + hashlib.sha256(f"{real_hash}:{k}".encode()).hexdigest()

    async def _block(self, params: list[Any]) -> dict[str, Any]:
        tag = params[0]
        if not (isinstance(tag, str) and tag.startswith("0x")):
            out = await self._upstream("eth_getBlockByNumber", [tag, False])
            virtual = int(out["result"]["number"], 16) * self.stretch if out.get("result") else 0
        else:
            virtual = int(tag, 16)
            out = await self._upstream("eth_getBlockByNumber", [hex(virtual // self.stretch), False])
        block = out.get("result")
        if not isinstance(block, dict) or self.stretch == 1:
            return out
        real, k = divmod(virtual, self.stretch)
        block = dict(block)
        if k == 0:
            if real > 0:  # its parent is the last empty block after real block real - 1
                parent = await self._upstream("eth_getBlockByNumber", [hex(real - 1), False])
                block["parentHash"] = self._filler_hash(parent["result"]["hash"], self.stretch - 1)
        else:
            real_hash = block["hash"]
            block["parentHash"] = real_hash if k == 1 else self._filler_hash(real_hash, k - 1)
            block["hash"] = self._filler_hash(real_hash, k)
            block["transactions"] = []
            block["logsBloom"] = "0x" + "00" * 256
        block["number"] = hex(virtual)
        return {"result": block}

    async def _logs(self, query: dict[str, Any]) -> dict[str, Any]:
        lo, hi = int(query["fromBlock"], 16), int(query["toBlock"], 16)
        if self.max_range is not None and hi - lo + 1 > self.max_range:
            self.stats["refused_range"] += 1
            self.ranges.append((lo, hi, "range"))
            return self._cap(lo, lo + self.max_range - 1)
        s = self.stretch
        real_lo, real_hi = -(-lo // s), hi // s
        if real_lo > real_hi:
            self.ranges.append((lo, hi, "ok"))
            return {"result": []}
        out = await self._upstream("eth_getLogs", [{**query, "fromBlock": hex(real_lo), "toBlock": hex(real_hi)}])
        logs = out.get("result")
        if not isinstance(logs, list):
            return out
        if s > 1:
            for entry in logs:
                entry["blockNumber"] = hex(int(entry["blockNumber"], 16) * s)
        if self.max_logs is not None and len(logs) > self.max_logs:
            self.stats["refused_logs"] += 1
            self.ranges.append((lo, hi, "logs"))
            first_over = int(logs[self.max_logs]["blockNumber"], 16)
            return self._cap(lo, max(lo, first_over - 1))
        self.ranges.append((lo, hi, "ok"))
        return {"result": logs}

    def _cap(self, lo: int, hi: int) -> dict[str, Any]:
        message = LOG_CAP.format(range=_k(self.max_range or 0), logs=_k(self.max_logs or 0), lo=hex(lo), hi=hex(hi))
        return {"error": {"code": -32602, "message": message}}
