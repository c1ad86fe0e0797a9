"""The devnet's way to talk to a node: web3's HTTP provider, raw JSON-RPC answers.

Tests, the deployer and the simulator drive anvil through its cheat methods (`evm_mine`,
`evm_snapshot`, `anvil_rollback`, `anvil_impersonateAccount`, ...), which web3 has no
wrappers for, and read receipts and blocks by the thousand, where web3's result formatters
cost more than the node does. `Node` therefore keeps web3's transport (keep-alive session,
request encoding, JSON-RPC batches) and hands back the node's answers as they are: hex
strings, lowercase addresses. `Node.w3` is the `Web3` object for everything else (contract
objects, deployment data). It is not the indexer's client (that is indexer.chain): no retries,
no fallbacks.

Failure modes: web3's `Web3RPCError` when the node answers a JSON-RPC error (its `code` and
`rpc_response` say which); `OSError` (requests' connection and HTTP errors are OSErrors) when
the node cannot be reached or answers a non-200 status.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from web3 import HTTPProvider, Web3
from web3.exceptions import Web3RPCError

__all__ = ["Node", "Web3RPCError", "rpc"]


class Node:
    """One node at an http(s) URL. `call` returns the answer's `result` or raises
    `Web3RPCError`; `batch` sends one JSON-RPC batch and returns the results in call order
    (raising for the first failed call; the others have run)."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"a devnet node needs an http:// URL, got {url!r}")
        self.url = url
        # No retries: a test that stops the node must see the failure at once.
        self.provider = HTTPProvider(url, request_kwargs={"timeout": timeout},
                                     exception_retry_configuration=None)
        self.w3 = Web3(self.provider)

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        return _result(method, self.provider.make_request(method, list(params)))

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        if not calls:
            return []
        replies = self.provider.make_batch_request([(m, list(p)) for m, p in calls])  # type: ignore[misc]
        if not isinstance(replies, list):  # the node refused the batch as a whole
            return [_result(calls[0][0], replies)]
        return [_result(m, r) for (m, _), r in zip(calls, replies, strict=True)]

    def close(self) -> None:
        """Nothing to release: web3 keeps its sessions per URL and closes them at exit."""

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _result(method: str, reply: Any) -> Any:
    error = reply.get("error")
    if error is not None:
        if isinstance(error, dict):
            message, code = str(error.get("message", error)), error.get("code")
        else:
            message, code = str(error), None
        exc = Web3RPCError(f"{method}: {message} (code {code})", rpc_response=reply)
        exc.code = code  # type: ignore[attr-defined]
        raise exc
    return reply.get("result")


def rpc(url: str, method: str, params: Sequence[Any] = (), timeout: float = 30.0) -> Any:
    """One call: `rpc(url, "evm_snapshot")`, `rpc(url, "anvil_mine", ["0x5"])`,
    `rpc(url, "anvil_rollback", [3])`, `rpc(url, "evm_setNextBlockTimestamp", [ts])`."""
    return Node(url, timeout=timeout).call(method, params)
