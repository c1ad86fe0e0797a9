"""``indexer status``: per chain indexed block, head and lag; per token supply and holders."""

from __future__ import annotations

from .chain import connect
from .config import Settings
from .custody import reconcile
from .errors import IndexerError
from .models import exact
from .store import Store


async def status(settings: Settings) -> str:
    store = await Store.open(settings.database_url, role="status")
    try:
        await store.check_schema()  # read only: no DDL, so a read-only login or a standby serves it
        lines = ["chain            id        indexed       head    lag  updated"]
        for cfg in settings.chains:
            try:
                node, chain_id = await connect(cfg.rpc, cfg.name, cfg.chain_id)
                head = await node.head()
                await node.rpc.close()
            except IndexerError as exc:
                lines.append(f"{cfg.name:<14} unreachable: {exc}")
                continue
            rows = await store.fetch("SELECT block_number, updated_at FROM cursors WHERE chain_id = $1", chain_id)
            indexed = rows[0]["block_number"] if rows else None
            lag = "-" if indexed is None else str(head - indexed)
            updated = rows[0]["updated_at"].strftime("%Y-%m-%d %H:%M:%S") if rows else "never"
            lines.append(f"{cfg.name:<14} {chain_id:>6} {indexed if indexed is not None else '-':>10} "
                         f"{head:>10} {lag:>6}  {updated}")
        tokens = await store.fetch(
            "SELECT chain_id, symbol, kind, total_supply, holder_count, multiplier, indexed_block "
            "FROM token_supply ORDER BY chain_id, symbol")
        lines += ["", "token        chain      kind         supply  holders  multiplier  block"]
        for t in tokens:
            mult = f"{int(t['multiplier']) / 10**18:.6f}"
            lines.append(f"{t['symbol']:<10} {t['chain_id']:>7} {t['kind']:>8} {exact(t['total_supply']):>16} "
                         f"{t['holder_count']:>8} {mult:>11} {t['indexed_block']:>6}")
        lines += ["", await reconcile.backing_report(store)]
        return "\n".join(lines)
    finally:
        await store.close()
