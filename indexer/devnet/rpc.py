"""A raw synchronous JSON-RPC client for the devnet (one keep-alive connection, batches).

Tests, the deployer and the simulator use it for anvil's cheat methods (`evm_mine`,
`evm_snapshot`, `anvil_rollback`, ...). It is not the indexer's client (that is chain.py):
no retries, no fallbacks, not thread safe.

Failure modes: `RpcError` when the node answers a JSON-RPC error (or a non-200 HTTP status);
`OSError` for socket errors (a stale keep-alive connection is reopened once).
"""

from __future__ import annotations

import http.client
import itertools
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson


class RpcError(RuntimeError):
    """The node returned a JSON-RPC error object for `method`."""

    def __init__(self, method: str, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method, self.code, self.message, self.data = method, code, message, data


class JsonRpc:
    """Keep-alive JSON-RPC client for one http:// URL (not thread safe).

    `call` returns `result` or raises `RpcError`; `batch` sends one JSON-RPC batch and
    returns results in call order (raising for the first failed call; the rest have run).
    Socket errors propagate as `OSError`; a stale keep-alive connection is reopened once.
    """

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"JsonRpc needs an http:// URL, got {url!r}")
        self.url = url
        self._address = (parts.hostname, parts.port or 80)
        self._path = parts.path or "/"
        self._timeout = timeout
        self._ids = itertools.count(1)
        self._conn: http.client.HTTPConnection | None = None

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        reply = self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": method,
                            "params": list(params)})
        return _result(method, reply)

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        if not calls:
            return []
        ids = [next(self._ids) for _ in calls]
        body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)}
                for i, (m, p) in zip(ids, calls, strict=True)]
        by_id = {r["id"]: r for r in self._post(body)}
        return [_result(m, by_id[i]) for i, (m, _) in zip(ids, calls, strict=True)]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _post(self, body: Any) -> Any:
        payload = orjson.dumps(body)
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(*self._address, timeout=self._timeout)
            try:
                self._conn.request("POST", self._path, payload,
                                   {"Content-Type": "application/json"})
                response = self._conn.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 2:
                    raise
        if response.status != 200:
            raise RpcError("http", response.status, data[:300].decode(errors="replace"))
        return orjson.loads(data)

    def __enter__(self) -> JsonRpc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _result(method: str, reply: dict[str, Any]) -> Any:
    error = reply.get("error")
    if error is not None:
        raise RpcError(method, int(error.get("code", 0)), str(error.get("message", error)),
                       error.get("data"))
    return reply.get("result")


def rpc(url: str, method: str, params: Sequence[Any] = (), timeout: float = 30.0) -> Any:
    """One-shot JSON-RPC call: `rpc(url, "evm_snapshot")`, `rpc(url, "anvil_mine", ["0x5"])`,
    `rpc(url, "anvil_rollback", [3])`, `rpc(url, "evm_setNextBlockTimestamp", [ts])`."""
    with JsonRpc(url, timeout=timeout) as client:
        return client.call(method, params)
