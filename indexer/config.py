"""Settings from a TOML file plus the environment; the only module that reads the environment.

Lookup: ``--config PATH``, else ``$INDEXER_CONFIG``, else ``./indexer.toml``. ``$DATABASE_URL``
overrides ``database.url``; ``$RPC_URL`` overrides the rpc list of a config with one chain.
Every problem raises :class:`ConfigError` with one line naming the file and the key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config_fields import Fields, parse_duration
from .errors import ConfigError

__all__ = ["ChainConfig", "CustodyConfig", "DaemonConfig", "FactoryConfig", "Settings", "TokenConfig",
           "load_settings", "parse_duration", "parse_settings"]

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/xstocks"


@dataclass(frozen=True)
class ChainConfig:
    name: str
    rpc: tuple[str, ...]
    confirmations: int = 0
    max_reorg_depth: int = 64
    poll_interval: float | None = None  # None: 1 s, or 0.25 s on a local dev chain
    # first range; then sized by ranges.RangeSizer from the answers. 1,000: within every hosted
    # provider's block limit we know of, and a blind step is bounded by the answer size limit
    # (an answer too large is cut, not held); from 1 block the first ranges took ~8 round trips
    batch_blocks: int = 1
    max_batch_blocks: int = 100_000
    max_batch_logs: int = 50_000  # ranges aim at half; an answer over this many logs' JSON is cut
    chain_id: int | None = None  # expected id; checked against the node when given
    rpc_timeout: float = 30.0  # seconds for one JSON-RPC request before it counts as failed


@dataclass(frozen=True)
class TokenConfig:
    chain: str
    address: str
    symbol: str | None = None
    underlying: str | None = None
    start_block: int = 0


@dataclass(frozen=True)
class FactoryConfig:
    chain: str
    address: str
    start_block: int = 0


@dataclass(frozen=True)
class CustodyConfig:
    stale_after: float = 86400.0
    settlement_window: float = 86400.0
    accounts: Mapping[str, str] = field(default_factory=dict)
    max_payload_mb: int = 1024  # a custody file or HTTP answer larger than this is refused


@dataclass(frozen=True)
class DaemonConfig:
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    max_lag_seconds: float = 120.0


@dataclass(frozen=True)
class Settings:
    database_url: str
    chains: tuple[ChainConfig, ...]
    tokens: tuple[TokenConfig, ...] = ()
    factories: tuple[FactoryConfig, ...] = ()
    custody: CustodyConfig = CustodyConfig()
    daemon: DaemonConfig = DaemonConfig()
    source: str = "<defaults>"
    analyst_statement_timeout: float = 120.0  # [database]: the analyst role's in this database (0: none)

    def chain(self, name: str) -> ChainConfig:
        for chain in self.chains:
            if chain.name == name:
                return chain
        raise ConfigError(f"{self.source}: no [[chain]] named {name!r}")

    def secrets(self) -> list[str]:
        """Every URL that may carry a password or API key, for masking free text."""
        return [self.database_url, *(url for chain in self.chains for url in chain.rpc)]


def find_config_path(explicit: str | None, env: Mapping[str, str]) -> Path:
    if explicit:
        return Path(explicit)
    if env.get("INDEXER_CONFIG"):
        return Path(env["INDEXER_CONFIG"])
    return Path("indexer.toml")


def load_settings(explicit: str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read, validate and return the settings. Raises ConfigError naming the key on any fault."""
    env = os.environ if env is None else env
    path = find_config_path(explicit, env)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        hint = "" if explicit or env.get("INDEXER_CONFIG") else " (pass --config PATH or set INDEXER_CONFIG)"
        raise ConfigError(f"config file {path} not found{hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_settings(raw, env, source=str(path))


def parse_settings(raw: Mapping[str, Any], env: Mapping[str, str], source: str) -> Settings:
    p = _Parser(source)
    p.keys(raw, "", {"database", "chain", "token", "factory", "custody", "daemon"})
    database = p.table(raw, "database")
    p.keys(database, "database", {"url", "analyst_statement_timeout"})
    database_url = env.get("DATABASE_URL") or p.string(database, "url", "database") or DEFAULT_DATABASE_URL
    if not database_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"{source}: database.url must start with postgresql://")
    chains = tuple(p.chain(item, f"chain[{i}]") for i, item in enumerate(p.array(raw, "chain")))
    if not chains:
        raise ConfigError(f"{source}: no [[chain]] configured")
    names = [c.name for c in chains]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"{source}: chain[{i}].name: {name!r} is already used by chain[{names.index(name)}]")
    if env.get("RPC_URL"):
        if not env["RPC_URL"].startswith(("http://", "https://", "ws://", "wss://")):
            raise ConfigError(f"{source}: RPC_URL must start with http(s):// or ws(s)://")
        if len(chains) != 1:
            raise ConfigError(f"{source}: RPC_URL is set but the config has {len(chains)} chains")
        chains = (ChainConfig(**{**chains[0].__dict__, "rpc": (env["RPC_URL"],)}),)
    tokens = tuple(p.token(item, f"token[{i}]", names) for i, item in enumerate(p.array(raw, "token")))
    factories = tuple(
        p.factory(item, f"factory[{i}]", names) for i, item in enumerate(p.array(raw, "factory"))
    )
    seen: set[tuple[str, str]] = set()
    for i, token in enumerate(tokens):
        if (token.chain, token.address) in seen:
            raise ConfigError(f"{source}: token[{i}].address {token.address} is listed twice on {token.chain}")
        seen.add((token.chain, token.address))
    return Settings(
        database_url=database_url,
        chains=chains,
        tokens=tokens,
        factories=factories,
        custody=p.custody(p.table(raw, "custody")),
        daemon=p.daemon(p.table(raw, "daemon")),
        source=source,
        analyst_statement_timeout=parse_duration(database.get(k := "analyst_statement_timeout", 120), f"{source}: {k}"),
    )


class _Parser(Fields):
    """The config's sections, read with the typed accessors of :class:`Fields`."""

    def chain(self, raw: Mapping[str, Any], where: str) -> ChainConfig:
        self.keys(raw, where, {"name", "rpc", "confirmations", "max_reorg_depth", "poll_interval",
                               "batch_blocks", "max_batch_blocks", "max_batch_logs", "chain_id", "rpc_timeout"})
        name = str(self.string(raw, "name", where, required=True))
        rpc = raw.get("rpc")
        if isinstance(rpc, str):
            rpc = [rpc]
        if not isinstance(rpc, list) or not rpc or not all(isinstance(u, str) for u in rpc):
            raise self.fail(f"{where}.rpc", "must be a non-empty list of URLs")
        for url in rpc:
            if not url.startswith(("http://", "https://", "ws://", "wss://")):
                raise self.fail(f"{where}.rpc", "each URL must start with http(s):// or ws(s)://")
        chain_id = raw.get("chain_id")
        if chain_id is not None:
            chain_id = self.integer(raw, "chain_id", where, 0, minimum=1)
        return ChainConfig(
            name=name,
            rpc=tuple(rpc),
            confirmations=self.integer(raw, "confirmations", where, 0),
            max_reorg_depth=self.integer(raw, "max_reorg_depth", where, 64, minimum=1),
            poll_interval=self.number(raw, "poll_interval", where, 1.0) if "poll_interval" in raw else None,
            batch_blocks=self.integer(raw, "batch_blocks", where, 1, minimum=1),
            max_batch_blocks=self.integer(raw, "max_batch_blocks", where, 100_000, minimum=1),
            max_batch_logs=self.integer(raw, "max_batch_logs", where, 50_000, minimum=100),
            chain_id=chain_id,
            rpc_timeout=self.number(raw, "rpc_timeout", where, 30.0),
        )

    def token(self, raw: Mapping[str, Any], where: str, names: list[str]) -> TokenConfig:
        self.keys(raw, where, {"chain", "address", "symbol", "underlying", "start_block"})
        return TokenConfig(
            chain=self.chain_ref(raw, where, names),
            address=self.address(raw, where),
            symbol=self.string(raw, "symbol", where),
            underlying=self.string(raw, "underlying", where),
            start_block=self.integer(raw, "start_block", where, 0),
        )

    def factory(self, raw: Mapping[str, Any], where: str, names: list[str]) -> FactoryConfig:
        self.keys(raw, where, {"chain", "address", "start_block"})
        return FactoryConfig(
            chain=self.chain_ref(raw, where, names),
            address=self.address(raw, where),
            start_block=self.integer(raw, "start_block", where, 0),
        )

    def custody(self, raw: Mapping[str, Any]) -> CustodyConfig:
        self.keys(raw, "custody", {"stale_after", "settlement_window", "accounts", "max_payload_mb"})
        accounts = raw.get("accounts", {})
        if not isinstance(accounts, dict) or not all(isinstance(v, str) for v in accounts.values()):
            raise self.fail("custody.accounts", "must be a table of account name = underlying symbol")
        return CustodyConfig(
            stale_after=parse_duration(raw.get("stale_after", "24h"), f"{self.source}: custody.stale_after"),
            settlement_window=parse_duration(
                raw.get("settlement_window", "1d"), f"{self.source}: custody.settlement_window"
            ),
            accounts=dict(accounts),
            max_payload_mb=self.integer(raw, "max_payload_mb", "custody", 1024, minimum=1),
        )

    def daemon(self, raw: Mapping[str, Any]) -> DaemonConfig:
        self.keys(raw, "daemon", {"metrics_host", "metrics_port", "max_lag_seconds"})
        return DaemonConfig(
            metrics_host=self.string(raw, "metrics_host", "daemon") or "127.0.0.1",
            metrics_port=self.port(raw, "metrics_port", "daemon"),
            max_lag_seconds=self.number(raw, "max_lag_seconds", "daemon", 120.0),
        )
