"""JSON-RPC over HTTP: the transport under ``Chain`` (node -> http1.py -> rpc.py -> chain.py -> fetch.py).

http:// URLs go through http1.py (no TLS, nothing heavy to import); https:// through aiohttp,
imported at the first such request.

``Rpc`` sends single and batched requests to a list of endpoints (first is primary, the rest
fallbacks), retrying transient failures with exponential backoff and jitter (tenacity) and moving
to the next endpoint after each failure, and classifies what comes back. What is in flight is
paced by pacing.Pacer: a rate-limit refusal (HTTP 429) shrinks it and is sent again after a
pause, without spending the retry budget (for up to ``throttle_budget`` seconds of refusals in a
row); a timeout shrinks it too.

Failure modes (see errors.py):
- ``RpcUnavailable`` once the retry budget is spent (network, HTTP 429/5xx, garbage JSON);
- ``RpcRangeTooLarge`` for an eth_getLogs the node refuses as too large, or an answer over the
  size allowed (``Chain.get_logs`` splits the range; it never escapes it);
- ``StateUnavailable`` (a Retryable) when the node has no state for the block asked;
- ``RpcError`` for an answer retrying cannot change (bad params, a revert).
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import orjson
import tenacity

from . import http1, logconfig, memory
from .errors import AnswerTooLarge, ChainMoved, RpcError, RpcRangeTooLarge, RpcUnavailable, StateUnavailable, mask_url
from .pacing import Outcome, Pacer, retry_after

if TYPE_CHECKING:
    import aiohttp  # for https:// URLs only, imported at the first (http1.py serves http://)

log = logconfig.get("rpc")
Parse = Callable[[bytes], Any]  # a body -> its JSON values; over http:// a bytearray (orjson, msgspec read it)

# Messages providers use when an eth_getLogs request is too big (block range or result size).
_RANGE_ERRORS = re.compile(
    r"(?i)(more than \d+ results|too many (results|logs|blocks)|response size|size exceed|"
    r"range (is )?too (large|wide|big)|block range|exceed(s|ed)? (the )?(max|maximum|limit)|"
    r"(?<!rate )limit exceeded|max(imum)? (results|logs|range)|query timeout|log response size|"
    r"returned more than|range should work|query exceeds|limited to a [\d,]+ (block )?range)"
)
_RETRYABLE_CODES = {-32005, 429}
_RATE_LIMIT = re.compile(r"(?i)(rate limit|too many requests|per second capacity|throughput)")
_STATE_MISSING = re.compile(
    r"(?i)(missing trie node|header not found|state .*not available|historical state unavailable|pruned)")
# a block above the node's head: asked for before a reorg shortened the chain (anvil, geth wordings)
_PAST_HEAD = re.compile(r"(?i)(BlockOutOfRange|block height is \d+ but requested was|unknown block|block not found)")


class RateLimited(RpcUnavailable):
    """The node refused the request for its rate (HTTP 429, or a rate-limit error in the JSON);
    ``retry_after`` is its Retry-After in seconds when it gave one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RpcTimedOut(RpcUnavailable):
    """No answer within the request timeout."""


class Rpc:
    """JSON-RPC over HTTP with retries and endpoint fallback.

    ``attempts=None`` retries forever (the daemon); a number bounds the total attempts across
    endpoints (start-up checks, the CLI). ``on_error(kind)`` is called for each failed attempt,
    for metrics.
    """

    def __init__(self, urls: Sequence[str], *, timeout: float = 30.0, attempts: int | None = 8,
                 max_wait: float = 10.0, on_error: Callable[[str], None] | None = None,
                 max_body: int = 256 * 1024 * 1024, throttle_budget: float = 600.0) -> None:
        if not urls:
            raise ValueError("at least one RPC URL is required")
        self.urls = [_http_url(u) for u in urls]
        self._current = 0
        self._timeout = timeout
        self._attempts = attempts
        self._max_wait = max_wait
        self._on_error = on_error
        self.max_body = max_body  # larger answers are refused like a provider's size limit
        self._plain = http1.Client(timeout)
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)
        self.last_ok = 0.0  # monotonic time of the last usable answer
        self.last_error: str | None = None  # why the last attempt failed, cleared on success
        self.pacer = Pacer()
        self.throttle_budget = throttle_budget  # seconds of 429s in a row before one counts as a failure

    @property
    def url(self) -> str:
        return self.urls[self._current]

    async def close(self) -> None:
        await self._plain.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Rpc:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(self, method: str, params: Sequence[Any], max_body: int | None = None) -> Any:
        """One call; an answer over ``max_body`` bytes (default: the client's guard) raises
        AnswerTooLarge without being read when the node says its length up front."""
        return (await self.request_sized(method, params, max_body))[0]

    async def request_sized(self, method: str, params: Sequence[Any], max_body: int | None = None,
                            parse: Parse = orjson.loads) -> tuple[Any, int]:
        """:meth:`request`, and the size in bytes of that very answer (the range sizer's input: several
        requests share one client); ``parse`` reads the body (wire.parse_answer for eth_getLogs)."""
        payload = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        body, size = await self._with_retries(orjson.dumps(payload), method, max_body, parse=parse)
        return _result(body, method), size

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Send calls as one JSON-RPC batch; return results in order. Errors raise per item:
        the first failing item raises (callers that expect reverts use ``Chain.call_many``)."""
        if not calls:
            return []
        return [_result(item, calls[0][0]) for item in await self.batch_raw(calls)]

    async def batch_raw(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        start = next(self._ids)
        self._ids = itertools.count(start + len(calls))
        payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)} for i, (m, p) in enumerate(calls, start)]
        body, _ = await self._with_retries(orjson.dumps(payload), calls[0][0], cost=len(calls))
        if not isinstance(body, list) or len(body) != len(calls):
            if isinstance(body, dict) and "error" in body:
                return [body] * len(calls)
            raise RpcUnavailable(f"{mask_url(self.url)}: malformed batch answer to {calls[0][0]}")
        by_id = {item.get("id"): item for item in body if isinstance(item, dict)}
        try:
            return [by_id[start + i] for i in range(len(calls))]
        except KeyError:
            raise RpcUnavailable(f"{mask_url(self.url)}: batch answer is missing ids") from None

    async def _with_retries(self, payload: bytes, method: str, max_body: int | None = None,
                            cost: int = 1, parse: Parse = orjson.loads) -> tuple[Any, int]:
        stop = tenacity.stop_never if self._attempts is None else tenacity.stop_after_attempt(self._attempts)
        retrying = tenacity.AsyncRetrying(retry=tenacity.retry_if_exception_type(RpcUnavailable), stop=stop,
                                          wait=tenacity.wait_exponential_jitter(initial=0.1, max=self._max_wait),
                                          reraise=True)
        async for attempt in retrying:
            with attempt:
                url = self.url
                try:
                    answer = await self._paced(url, payload, max_body or self.max_body, cost, parse)
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

    async def _paced(self, url: str, payload: bytes, max_body: int, cost: int, parse: Parse) -> tuple[Any, int]:
        """``_post`` within the pacer's window; refused for rate, sent again after its pause."""
        first_refusal: float | None = None
        while True:
            ticket = await self.pacer.acquire(cost)
            outcome: Outcome = "other"
            wait = None
            try:
                answer = await self._post(url, payload, max_body, parse)
                outcome = "clean"
                return answer
            except RateLimited as exc:
                outcome, wait = "throttled", exc.retry_after
                now = time.monotonic()
                first_refusal = first_refusal or now
                if now - first_refusal > self.throttle_budget:
                    raise
                log.debug("rpc_throttled", url=mask_url(url), window=self.pacer.window)
            except RpcTimedOut:
                outcome = "timeout"
                raise
            finally:
                await self.pacer.release(ticket, outcome, wait)

    async def _post(self, url: str, payload: bytes, max_body: int, parse: Parse) -> tuple[Any, int]:
        shown = mask_url(url)
        try:
            post = self._plain.post if url[:7].lower() == "http://" else self._post_tls
            status, headers, body = await post(url, payload, max_body)
        except TimeoutError:
            self._count("timeout")
            raise RpcTimedOut(f"{shown}: timed out") from None
        except OSError as exc:
            raise self._unreachable(url, exc) from None
        if status == 429:
            self._count("http_429")
            raise RateLimited(f"{shown}: HTTP 429", retry_after(headers.get("retry-after")))
        if status == 413:
            raise RpcRangeTooLarge(f"{shown}: HTTP 413 response too large")
        if status >= 500:
            self._count(f"http_{status}")
            raise RpcUnavailable(f"{shown}: HTTP {status}")
        if len(body) >= memory.LARGE_ANSWER and not memory.done:  # see memory.py: page faults
            memory.keep_for_reuse()
        try:
            decoded = parse(cast(bytes, body))
        except orjson.JSONDecodeError:
            self._count("bad_json")
            raise RpcUnavailable(f"{shown}: answer is not JSON (HTTP {status}, {len(body)} bytes)") from None
        if isinstance(decoded, dict) and "error" in decoded and "id" in decoded and decoded["id"] is None:
            self._count("rpc_error")
        if isinstance(decoded, dict) and _is_transient(decoded.get("error")):
            self._count("rpc_transient")
            message = f"{shown}: {decoded['error'].get('message')}"
            limited = decoded["error"].get("code") == 429 or _RATE_LIMIT.search(message)
            raise RateLimited(message) if limited else RpcUnavailable(message)
        if status >= 400 and not isinstance(decoded, dict | list):
            raise RpcUnavailable(f"{shown}: HTTP {status}")
        return decoded, len(body)

    async def _post_tls(self, url: str, payload: bytes, max_body: int) -> http1.Answer:
        """https:// through aiohttp (imported here: it builds TLS contexts at import), answered as
        http1.py answers: the body refused past ``max_body`` (AnswerTooLarge)."""
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        try:
            async with self._session.post(url, data=payload, headers={"Content-Type": "application/json"}) as resp:
                if (size := resp.content_length) is not None and size > max_body:
                    raise AnswerTooLarge(f"answer of {size} bytes is over {max_body}", size)
                body = bytearray()
                async for chunk in resp.content.iter_chunked(1 << 20):
                    body += chunk
                    if len(body) > max_body:
                        raise AnswerTooLarge(f"answer is over {max_body} bytes", None)
                return http1.Answer(resp.status, {k.lower(): v for k, v in resp.headers.items()}, body)
        except aiohttp.ClientError as exc:
            if isinstance(exc, OSError):  # also a TimeoutError: _post tells them apart
                raise
            raise self._unreachable(url, exc) from None

    def _unreachable(self, url: str, exc: Exception) -> RpcUnavailable:
        self._count("connection")
        return RpcUnavailable(f"{mask_url(url)}: {type(exc).__name__}: {str(exc).replace(url, mask_url(url))[:200]}")

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
        if _PAST_HEAD.search(message):
            raise ChainMoved(f"{method}: {message}")
        raise RpcError(f"{method}: {message}", code)
    if "result" not in item:
        raise RpcUnavailable(f"malformed answer to {method}: no result")
    return item["result"]
