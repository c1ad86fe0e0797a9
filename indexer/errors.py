"""The indexer's exception tree, and what each branch means for the caller.

    IndexerError                 base of everything raised on purpose
    +-- Retryable                a later attempt may succeed; retried at the I/O edges
    |   +-- RpcUnavailable       connection refused/reset, timeout, HTTP 429/5xx, garbage JSON
    |   +-- RpcRangeTooLarge     the node refused an eth_getLogs range: split it, never retry it
    |   +-- DatabaseUnavailable  the connection to PostgreSQL was lost or refused
    |   +-- ChainMoved           the chain changed under one fetch (a reorg in flight): redo it
    +-- Fatal                    retrying cannot help; the process stops with a clear message
        +-- ConfigError          bad TOML, unknown key, bad address, chain id mismatch  (exit 2)
        +-- InputError           a bad custody file or bad command-line value            (exit 2)
        +-- LockHeld             another writer indexes this chain                       (exit 2)
        +-- ServiceUnreachable   the RPC or database cannot be reached at start-up       (exit 2)
        +-- ReorgTooDeep         a reorg deeper than max_reorg_depth; nothing changed   (exit 3)
        +-- UnindexableLog       a followed log that cannot be accounted for; batch stopped (exit 4)
        +-- RpcError             the node answered with an error that is not transient

Lower-layer exceptions (aiohttp, asyncpg, OSError) are translated once, at the module that owns
the I/O (rpc.py, chain.py, store.py), with ``raise X(...) from exc``. Messages are one line, carry what a
person needs to act, and never contain a secret: URLs go through :func:`mask_url` first.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit


class IndexerError(Exception):
    """Base class; ``exit_code`` is what the CLI returns when this reaches it."""

    exit_code = 1


class Retryable(IndexerError):
    """A transient failure: the same call may succeed later."""


class RpcUnavailable(Retryable):
    """The JSON-RPC endpoint did not give a usable answer (network, 429/5xx, bad JSON)."""


class RpcRangeTooLarge(Retryable):
    """The node refused an eth_getLogs request as too large; the caller splits the range."""


class AnswerTooLarge(RpcRangeTooLarge):
    """An answer over the size the client accepts; ``size`` is its length when the node said it
    up front (Content-Length), else None."""

    def __init__(self, message: str, size: int | None) -> None:
        super().__init__(message)
        self.size = size


class DatabaseUnavailable(Retryable):
    """PostgreSQL could not be reached or the connection dropped mid-transaction."""


class ChainMoved(Retryable):
    """Headers and logs of one fetch disagree: the chain reorganised while we read it."""


class Fatal(IndexerError):
    """Retrying cannot help."""


class ConfigError(Fatal):
    exit_code = 2


class InputError(Fatal):
    exit_code = 2


class LockHeld(Fatal):
    exit_code = 2


class ServiceUnreachable(Fatal):
    exit_code = 2


class ReorgTooDeep(Fatal):
    exit_code = 3


class UnindexableLog(Fatal):
    """A log of a followed token or factory that does not decode as its event, or an xStock
    move whose Transfer and TransferShares do not pair: the batch stops before anything of it is
    stored, naming the token, block, transaction and log index."""

    exit_code = 4


class RpcError(Fatal):
    """The node returned a JSON-RPC error that retrying will not fix (bad params, revert)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


_SECRET_QUERY = re.compile(r"(?i)((?:api[-_]?key|apikey|key|token|secret|password|auth)=)[^&#\s]+")
_LONG_PATH_SEGMENT = re.compile(r"/([A-Za-z0-9_\-]{20,})(?=/|$)")


def mask_url(url: str) -> str:
    """Return ``url`` safe to print: password, API-key-like path segments and query secrets
    replaced by ``***``. Works for postgresql://, http(s)://, ws(s):// URLs; a string that does
    not parse is masked whole rather than risk leaking it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    path = _LONG_PATH_SEGMENT.sub("/***", parts.path)
    query = _SECRET_QUERY.sub(r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def mask_secrets(text: str, secrets: list[str]) -> str:
    """Replace every known secret URL in free text (an exception message) by its masked form."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, mask_url(secret))
    return text
