"""The indexer's exception tree, and what each branch means for the caller.

    IndexerError                 base of everything raised on purpose
    +-- Retryable                a later attempt may succeed; retried at the I/O edges
    |   +-- RpcUnavailable       connection refused/reset, timeout, HTTP 429/5xx, garbage JSON
    |   +-- RpcRangeTooLarge     the node refused an eth_getLogs range: split it, never retry it
    |   +-- DatabaseUnavailable  the connection to PostgreSQL was lost or refused
    |   +-- ChainMoved           the chain changed under one fetch (a reorg in flight): redo it
    |   +-- StateUnavailable     the node has no state at that block (pruned, or a lagging backend)
    |   +-- NodeBehind           the node's head is below our cursor: wait for it (backfill: exit 4)
    +-- Fatal                    retrying cannot help; the process stops with a clear message
        +-- ConfigError          bad TOML, unknown key, bad address, chain id mismatch  (exit 2)
        +-- InputError           a bad custody file or bad command-line value            (exit 2)
        +-- LockHeld             another writer indexes this chain                       (exit 2)
        +-- SchemaMismatch       the database schema is not this code's version          (exit 2)
        +-- ServiceUnreachable   the RPC or database cannot be reached at start-up       (exit 2)
        +-- ReorgTooDeep         a reorg deeper than max_reorg_depth; nothing changed   (exit 3)
        +-- UnindexableLog       a followed log that cannot be accounted for; batch stopped (exit 5)
        +-- RpcError             the node answered with an error that is not transient

A Retryable that escapes the I/O edges inside a sync step is retried by the step's caller with
backoff and counted (``indexer_step_retries_total{reason}``): forever by the daemon (``/healthz``
says why meanwhile), a few times by ``backfill``. Only a Fatal ends the process.

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


class StateUnavailable(Retryable):
    """The node has no state for the block asked (not an archive node, or pruned)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class NodeBehind(Retryable):
    """The node's head is below the block the database is indexed to: a wrong node, a node that
    lost its state, or a reorg deeper than the node holds. The daemon waits for it to catch up;
    ``backfill`` stops with exit 4."""

    exit_code = 4


class Fatal(IndexerError):
    """Retrying cannot help."""


class ConfigError(Fatal):
    exit_code = 2


class InputError(Fatal):
    exit_code = 2


class LockHeld(Fatal):
    exit_code = 2


class SchemaMismatch(Fatal):
    exit_code = 2


class ServiceUnreachable(Fatal):
    exit_code = 2


class ReorgTooDeep(Fatal):
    exit_code = 3


class UnindexableLog(Fatal):
    """A log of a followed token or factory that does not decode as its event, or an xStock
    move whose Transfer and TransferShares do not pair: the batch stops before anything of it is
    stored, naming the token, block, transaction and log index."""

    exit_code = 5


class RpcError(Fatal):
    """The node returned a JSON-RPC error that retrying will not fix (bad params, revert)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


# Path segments and query values that name a route, a chain or a protocol, never a credential:
# everything else after an RPC URL's host is masked, whatever its length.
_PLAIN_SEGMENT = re.compile(
    r"(?i)^(v\d+(\.\d+)?|rpc|ws|wss|http|https|api|jsonrpc|ext|bc|evm|c|eth|ethereum|mainnet|testnet|sepolia|"
    r"holesky|bsc|arb|arbitrum|arbitrum-one|op|optimism|base|polygon|matic|mantle|ink|xlayer|hyperevm|"
    r"avalanche|avax|gnosis|linea|scroll|zksync|blast)$")
_PLAIN_QUERY_KEY = re.compile(r"(?i)^(chain|chainid|chain_id|network|sslmode|connect_timeout|application_name)$")
_SHORT_NUMBER = re.compile(r"^\d{1,6}$")


def mask_url(url: str) -> str:
    """Return ``url`` safe to print. Password: ``***``. A node URL (http, ws) keeps its scheme,
    host and route words (``/v2/``, ``/eth/``) and masks every other path segment and every query
    value (short numbers and a few plain keys such as ``chain`` aside): API keys sit there, at any
    length. A database URL keeps its database name and options but not a ``password=``. A string
    that does not parse is masked whole rather than risk leaking it."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    path = parts.path
    if not parts.scheme.startswith("postgres"):
        path = "/".join(s if not s or _PLAIN_SEGMENT.match(s) else "***" for s in path.split("/"))
    query = "&".join(_mask_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, path, query, "***" if parts.fragment else ""))


def _mask_pair(pair: str) -> str:
    key, eq, value = pair.partition("=")
    if not eq:
        return pair if _SHORT_NUMBER.match(pair) or _PLAIN_QUERY_KEY.match(pair) else "***"
    if not value or _PLAIN_QUERY_KEY.match(key) or _SHORT_NUMBER.match(value):
        return pair
    return f"{key}=***"


_URL_IN_TEXT = re.compile(r"(?i)\b(?:https?|wss?|postgres(?:ql)?)://[^\s'\"<>]+")


def mask_urls_in(text: str) -> str:
    """Every URL inside free text (a provider's error message) masked by :func:`mask_url`."""
    return _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)


def mask_secrets(text: str, secrets: list[str]) -> str:
    """Replace every known secret URL in free text (an exception message) by its masked form."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, mask_url(secret))
    return text
