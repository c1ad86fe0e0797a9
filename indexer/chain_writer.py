"""The resources one chain's writer holds: the node connection, the writer lock, the sync.

Place: before the pipeline (pipeline.py). Shared by ``backfill`` and ``run`` so that both start
the same way: connect and check the chain id, take the per-chain writer lock (a second writer
exits 2 naming the first: see Store.lock_chain), set the analyst role's statement_timeout,
register the configured tokens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from .chain import Chain, connect
from .config import ChainConfig, Settings
from .errors import ConfigError
from .store import Store, TokenState
from .sync import ChainSync
from .tokens import Wanted, read_tokens


async def open_chain(cfg: ChainConfig, attempts: int | None = 8,
                     on_error: Callable[[str], None] | None = None) -> tuple[Chain, int]:
    """The chain's node, connected and its id checked (chain.connect)."""
    chain, chain_id = await connect(cfg.rpc, cfg.name, cfg.chain_id, attempts=attempts, on_error=on_error,
                                    rpc_timeout=cfg.rpc_timeout,
                                    # the last-resort guard (a single block, other calls); eth_getLogs
                                    # ranges have their own limit (RangeSizer.answer_limit)
                                    max_body=cfg.max_batch_logs * 10_000)
    chain.max_logs = cfg.max_batch_logs
    return chain, chain_id


@asynccontextmanager
async def writer(
    settings: Settings, cfg: ChainConfig, store: Store, *, from_block: int | None = None,
    attempts: int | None = 8, on_error: Callable[[str], None] | None = None,
    node: tuple[Chain, int] | None = None,
) -> AsyncIterator[ChainSync]:
    """``node``: the chain already opened (open_chain), e.g. while the database was; it is
    closed on the way out as one opened here."""
    chain, chain_id = node or await open_chain(cfg, attempts, on_error)
    try:
        rows = await store.fetch("SELECT chain_id FROM chains WHERE name = $1", cfg.name)
        if rows and rows[0]["chain_id"] != chain_id:
            raise ConfigError(f"chain {cfg.name}: node reports chain id {chain_id}, but this database indexed "
                              f"chain id {rows[0]['chain_id']} under that name")
        await store.lock_chain(chain_id, cfg.name)
        try:
            await store.role_settings(settings.analyst_statement_timeout)
            sync = ChainSync(cfg, settings, chain, store, chain_id, floor=from_block)
            await _register_tokens(sync, settings)
            yield sync
        finally:
            await store.unlock_chain(chain_id)
    finally:
        await chain.rpc.close()


async def _register_tokens(sync: ChainSync, settings: Settings) -> None:
    """Register configured tokens not yet in the database (reading symbol, decimals and kind
    from the contract) and load every known token and the cursor into ``sync``."""
    store, name = sync.store, sync.cfg.name
    await store.ensure_chain(sync.chain_id, name)
    sync.cursor = await store.cursor(sync.chain_id)
    sync.tokens = await store.tokens(sync.chain_id)
    todo = [(i, tc) for i, tc in enumerate(t for t in settings.tokens if t.chain == name)
            if tc.address not in sync.tokens]
    # every token's identity, kind at its start and multiplier before it in one round trip
    wanted = [Wanted(tc.address, max(tc.start_block, sync.floor), tc.symbol, tc.underlying) for _, tc in todo]
    read = await read_tokens(sync.chain, sync.chain_id, wanted, "latest", "config", before=True) if todo else []
    fresh = []
    for (i, tc), w, (info, before) in zip(todo, wanted, read, strict=True):
        if info is None:
            raise ConfigError(f"token {tc.address} (token[{i}]) has no contract code on chain {name}")
        fresh.append(TokenState(info, w.start_block - 1, before))
    if fresh:
        await store.add_tokens(fresh)
        sync.tokens = await store.tokens(sync.chain_id)
