"""``indexer verify``: audit the database against the chain with eth_call at the indexed block.

For every token: ``totalSupply()`` and the multiplier, and ``balanceOf`` of every address the
ledger has ever seen (holders whose shares went back to zero included). With ``--block B`` below
the cursor, the database side comes from ``balance_at`` / ``supply_at`` (time travel).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asyncpg import Record

from . import contract_views as views
from .chain import Chain, connect
from .config import ChainConfig, Settings
from .errors import InputError
from .models import TokenKind, exact
from .store import Store


@dataclass
class Report:
    chain: str
    block: int = 0
    tokens: int = 0
    balances: int = 0
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


async def verify(settings: Settings, chain: str | None = None, block: int | None = None) -> list[Report]:
    chains = [settings.chain(chain)] if chain else list(settings.chains)
    store = await Store.open(settings.database_url, role="verify")
    try:
        await store.check_schema()
        return [await _verify_chain(cfg, store, block) for cfg in chains]
    finally:
        await store.close()


async def _verify_chain(cfg: ChainConfig, store: Store, block: int | None) -> Report:
    node, chain_id = await connect(cfg.rpc, cfg.name, cfg.chain_id)
    report = Report(cfg.name)
    try:
        cursor = await store.cursor(chain_id)
        if cursor is None:
            raise InputError(f"chain {cfg.name} (id {chain_id}) has not been indexed yet: run `indexer backfill`")
        at = cursor.block_number if block is None else block
        if at > cursor.block_number:
            raise InputError(f"block {at} is above the indexed block {cursor.block_number} of chain {cfg.name}")
        report.block = at
        tokens = await store.fetch(
            "SELECT token, symbol, kind, total_shares, multiplier, synced_block FROM tokens "
            "WHERE chain_id = $1 AND start_block <= $2 ORDER BY symbol", chain_id, at)
        for token in tokens:
            await _verify_token(node, store, chain_id, token, at, report)
    finally:
        await node.rpc.close()
    return report


async def _verify_token(node: Chain, store: Store, chain_id: int, t: Record, at: int, report: Report) -> None:
    address, symbol = str(t["token"]), str(t["symbol"])
    if int(t["synced_block"]) < at:
        report.differences.append(f"{symbol}: indexed only to block {t['synced_block']}, not {at}")
        return
    report.tokens += 1
    current = at == int(t["synced_block"])
    if current:
        rows = await store.fetch(
            "SELECT holder, apply_multiplier(b.shares, $3) AS balance FROM share_balances b "
            "WHERE chain_id = $1 AND token = $2 ORDER BY holder", chain_id, address, t["multiplier"])
        supply_db = await store.fetch("SELECT apply_multiplier($1::numeric, $2::numeric) AS s",
                                      t["total_shares"], t["multiplier"])
    else:
        rows = await store.fetch(
            "SELECT holder, balance_at($1, $2, holder, $3) AS balance FROM share_balances "
            "WHERE chain_id = $1 AND token = $2 ORDER BY holder", chain_id, address, at)
        supply_db = await store.fetch("SELECT supply_at($1, $2, $3) AS s", chain_id, address, at)
    answers = await node.call_many(
        [(address, views.TOTAL_SUPPLY), (address, views.GET_CURRENT_MULTIPLIER)]
        + [(address, views.balance_of(r["holder"])) for r in rows], at)
    chain_supply = views.as_uint(answers[0])
    if chain_supply != int(supply_db[0]["s"]):
        report.differences.append(
            f"{symbol}: totalSupply {chain_supply} on chain, {exact(supply_db[0]['s'])} in database")
    if current and t["kind"] == TokenKind.XSTOCK.value:
        m = views.as_multiplier(answers[1])
        if m is not None and m != int(t["multiplier"]):
            report.differences.append(f"{symbol}: multiplier {m} on chain, {exact(t['multiplier'])} in database")
    for row, answer in zip(rows, answers[2:], strict=True):
        report.balances += 1
        on_chain = views.as_uint(answer)
        if on_chain != int(row["balance"]):
            report.differences.append(
                f"{symbol} {row['holder']}: balanceOf {on_chain} on chain, {exact(row['balance'])} in database")


def render(reports: list[Report], limit: int = 20) -> str:
    lines = []
    for r in reports:
        state = "equal" if r.ok else f"{len(r.differences)} difference(s)"
        lines.append(f"chain {r.chain} block {r.block}: {r.tokens} tokens, {r.balances} balances checked: {state}")
        lines.extend(f"  {d}" for d in r.differences[:limit])
        if len(r.differences) > limit:
            lines.append(f"  ... and {len(r.differences) - limit} more")
    return "\n".join(lines)
