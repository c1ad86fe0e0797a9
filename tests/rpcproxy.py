"""A JSON-RPC proxy in front of anvil that behaves like hosted providers do.

Runs an aiohttp server in a background thread. It forwards every request upstream unchanged,
except that it can:
- refuse an eth_getLogs whose block range exceeds ``max_range`` (Alchemy-style message with a
  suggested range, or ``wording``: a (code, template) pair in a provider's own words, with
  {limit}, {lo}, {hi}, {lo_hex}, {hi_hex} and {suggested_hi_hex} filled in) or whose answer
  exceeds ``max_logs`` results (the common "query returned more than N results" error);
  ``getlogs_ranges`` records every eth_getLogs range asked and whether it was refused;
- answer in chunks with no Content-Length (``chunked``), so the size is known only by reading;
- inject faults from a queue: HTTP 429, HTTP 500, garbage (non-JSON) bodies, a stall longer than
  the client's timeout, or a dropped connection; one fault per request until the queue is empty.
- behave like a node in trouble: report a lower head (``head_override``, a node behind or
  restarted), answer eth_getLogs slowly (``getlogs_delay`` seconds), serve the next
  ``tamper_logs`` non-empty eth_getLogs answers with another block hash (the chain moved while
  a range was read), refuse the next ``refuse_state`` single eth_call at a past block as a
  pruned node does ("missing trie node"); refuse every eth_call with a state override
  (``no_overrides``), as a node without that parameter does.
Counters record what happened so tests can assert the client saw and survived each fault.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter, deque
from typing import Any

import aiohttp
from aiohttp import web


class RpcProxy:
    def __init__(self, upstream: str, max_range: int | None = None, max_logs: int | None = None,
                 chunked: bool = False, wording: tuple[int, str] | None = None) -> None:
        self.upstream = upstream
        self.chunked = chunked  # answer without Content-Length (chunked), as some gateways do
        self.max_range = max_range
        self.max_logs = max_logs
        self.wording = wording
        self.getlogs_ranges: list[tuple[int, int, bool]] = []
        self.head_override: int | None = None
        self.getlogs_delay = 0.0
        self.tamper_logs = 0
        self.refuse_state = 0
        self.no_overrides = False
        self.faults: deque[str] = deque()
        self.stats: Counter[str] = Counter()
        self.stall_seconds = 5.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RpcProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def inject(self, *faults: str) -> None:
        """Queue faults: '429', '500', 'garbage', 'stall', 'drop'."""
        self.faults.extend(faults)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.stats["requests"] += 1
        if self.faults:
            fault = self.faults.popleft()
            self.stats[f"fault_{fault}"] += 1
            if fault == "429":
                return web.Response(status=429, text="Too Many Requests")
            if fault == "500":
                return web.Response(status=500, text="Internal Server Error")
            if fault == "garbage":
                return web.Response(status=200, text="<html>bad gateway</html>", content_type="text/html")
            if fault == "stall":
                await asyncio.sleep(self.stall_seconds)
            if fault == "drop":
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)
        payload = json.loads(body)
        items = payload if isinstance(payload, list) else [payload]
        self.stats.update(f"method:{item.get('method')}" for item in items if isinstance(item, dict))
        trouble = await self._trouble(payload, items)
        if trouble is not None:
            return web.json_response(trouble)
        refused = [self._refuse(item) for item in items]
        if any(refused):
            if isinstance(payload, list):
                answers = await self._forward(body)
                answers = [r if r else a for r, a in zip(refused, answers, strict=True)]
                return web.json_response(answers)
            return web.json_response(refused[0])
        answer = await self._forward(body)
        if self.tamper_logs and isinstance(payload, dict) and payload.get("method") == "eth_getLogs" \
                and answer.get("result"):
            self.tamper_logs -= 1
            self.stats["tampered_logs"] += 1
            for log in answer["result"]:
                log["blockHash"] = "0x" + "ee" * 32
        if self.max_logs is not None and not isinstance(payload, list) and payload.get("method") == "eth_getLogs":
            if isinstance(answer.get("result"), list) and len(answer["result"]) > self.max_logs:
                self.stats["refused_logs"] += 1
                return web.json_response({"jsonrpc": "2.0", "id": payload.get("id"), "error": {
                    "code": -32005, "message": f"query returned more than {self.max_logs} results"}})
        if self.chunked:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            data = json.dumps(answer).encode()
            for i in range(0, len(data), 65536):
                await response.write(data[i : i + 65536])
            await response.write_eof()
            return response
        return web.json_response(answer)

    async def _trouble(self, payload: Any, items: list[dict[str, Any]]) -> Any:
        """The answer of a node in trouble, or None to forward the request."""
        methods = [item.get("method") for item in items]
        if self.no_overrides and any(i.get("method") == "eth_call" and len(i.get("params") or []) > 2 for i in items):
            self.stats["refused_override"] += 1
            refused = [{"jsonrpc": "2.0", "id": i.get("id"), "error": {
                "code": -32602, "message": "too many arguments, want at most 2"}} for i in items]
            return refused if isinstance(payload, list) else refused[0]
        if self.head_override is not None and methods == ["eth_blockNumber"] and isinstance(payload, dict):
            self.stats["head_overridden"] += 1
            return {"jsonrpc": "2.0", "id": payload.get("id"), "result": hex(self.head_override)}
        if self.getlogs_delay and "eth_getLogs" in methods:
            await asyncio.sleep(self.getlogs_delay)
        if self.refuse_state and isinstance(payload, list) and set(methods) == {"eth_call"} \
                and str(items[0]["params"][1]).startswith("0x"):
            self.refuse_state -= 1
            self.stats["refused_state"] += 1
            return [{"jsonrpc": "2.0", "id": item.get("id"), "error": {
                "code": -32000, "message": "missing trie node 4f1a6b0c (path ) state is not available"}}
                for item in items]
        return None

    def _refuse(self, item: dict[str, Any]) -> dict[str, Any] | None:
        if item.get("method") != "eth_getLogs" or self.max_range is None:
            return None
        params = item["params"][0]
        lo, hi = int(params["fromBlock"], 16), int(params["toBlock"], 16)
        refuse = hi - lo + 1 > self.max_range
        self.getlogs_ranges.append((lo, hi, refuse))
        if not refuse:
            self.stats["getlogs_ok"] += 1
            return None
        self.stats["refused_range"] += 1
        if self.wording is not None:
            code, template = self.wording
            message = template.format(limit=self.max_range, lo=lo, hi=hi, lo_hex=hex(lo), hi_hex=hex(hi),
                                      suggested_hi_hex=hex(lo + self.max_range - 1))
            return {"jsonrpc": "2.0", "id": item.get("id"), "error": {"code": code, "message": message}}
        suggested = f"[{hex(lo)}, {hex(lo + self.max_range - 1)}]"
        return {"jsonrpc": "2.0", "id": item.get("id"), "error": {"code": -32602, "message": (
            f"Log response size exceeded. You can make eth_getLogs requests with up to a {self.max_range} block "
            f"range and no limit on the response size. Based on your parameters, this block range should work: "
            f"{suggested}")}}

    async def _forward(self, body: bytes) -> Any:
        async with self._session.post(self.upstream, data=body, headers={"Content-Type": "application/json"}) as r:
            return await r.json(content_type=None)
