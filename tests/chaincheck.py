"""Compare the analyst views with the chain itself (eth_call at the indexed block).

Used by every scenario test: after any scenario, ``holders`` and ``token_supply`` must equal
``balanceOf`` and ``totalSupply`` at the indexed block, for every address that ever held a
token, to the wei. The chain is read through web3 contract calls (tests/oracle.py), never the
indexer's own RPC client, call encoding or decoding, so a bug there cannot hide itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import asyncpg

from tests.oracle import Oracle


async def compare(database_url: str, rpc_url: str, addresses: Mapping[str, Iterable[str]]) -> list[str]:
    """``addresses``: token address -> addresses to check. Returns the differences (empty: equal)."""
    conn = await asyncpg.connect(database_url)
    oracle = Oracle(rpc_url)
    problems: list[str] = []
    try:
        for token, holders in addresses.items():
            row = await conn.fetchrow(
                "SELECT symbol, total_supply_raw, indexed_block FROM token_supply WHERE token = $1", token)
            if row is None:
                problems.append(f"{token}: not in token_supply")
                continue
            block = row["indexed_block"]
            db = {r["holder"]: int(r["balance_raw"]) for r in await conn.fetch(
                "SELECT holder, balance_raw FROM holders WHERE token = $1", token)}
            # holders the scenario does not know of must be real too
            wanted = sorted(set(holders) | set(db))
            chain = oracle.balances(token, wanted, block)
            if chain.supply != int(row["total_supply_raw"]):
                problems.append(f"{row['symbol']}: totalSupply {chain.supply} != "
                                f"{row['total_supply_raw']} at block {block}")
            for holder in wanted:
                if chain.balances[holder] != db.get(holder, 0):
                    problems.append(f"{row['symbol']} {holder}: balanceOf {chain.balances[holder]} != "
                                    f"{db.get(holder, 0)}")
    finally:
        await conn.close()
    return problems


async def snapshot(database_url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the ledger tables, for idempotence checks."""
    conn = await asyncpg.connect(database_url)
    try:
        out = {}
        for table, order in (("transfer_log", "chain_id, token, block_number, log_index"),
                             ("share_balances", "chain_id, token, holder"),
                             ("tokens", "chain_id, token"),
                             ("multiplier_changes", "chain_id, token, block_number"),
                             ("token_events", "chain_id, block_number, log_index"),
                             ("cursors", "chain_id")):
            rows = await conn.fetch(f"SELECT * FROM {table} ORDER BY {order}")
            out[table] = [tuple(v for k, v in r.items() if k not in ("updated_at", "head_seen_at")) for r in rows]
        return out
    finally:
        await conn.close()
