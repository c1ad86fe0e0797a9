"""``indexer verify --history``: audit the past, not only the indexed block.

A sibling of verify.py, downstream of everything the pipeline stored. For each token it picks
the blocks where history is most likely wrong, and a random sample of the rest:

- every recorded multiplier change (``multiplier_changes``), every block with a multiplier
  event (updated, scheduled, overridden) or an ``Upgraded``, and the blocks on each side of
  each, where a change placed one block early or late shows;
- the token's first and last indexed blocks;
- ``--sample N`` blocks drawn uniformly from the token's indexed range with
  ``random.Random(f"{seed}:{chain_id}:{token}")``: the same ``--seed`` audits the same blocks;
  without it a seed is drawn and printed, so a failing run can be repeated.

At each block it compares ``supply_at``, ``multiplier_at`` and ``balance_at`` of every address
the ledger ever saw with ``totalSupply()``, ``getCurrentMultiplier()`` (1e18 where the code has
no such view) and ``balanceOf`` by eth_call at that block. A block before the token had code
answers nothing: the database must then say 0. The report names the first (lowest) block, its
token and holder that differ.

Failure modes: InputError (exit 2) when the chain is not indexed yet; RPC errors as usual (an
endpoint without the state of old blocks cannot audit them: use an archive node).
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field

from asyncpg import Record

from . import contract_views as views
from .chain import Chain, connect
from .config import ChainConfig, Settings
from .errors import InputError
from .store import Store

ONE = 10**18
# Events whose blocks (and neighbours) are audited beside the recorded changes: where the
# multiplier's path or the token's kind can move with an event's value not being the block's.
MARKERS = ("MultiplierUpdated", "MultiplierScheduled", "MultiplierScheduleOverridden", "Upgraded")


@dataclass(frozen=True, order=True)
class Difference:
    block: int
    symbol: str
    token: str
    holder: str  # "" for the supply or the multiplier
    what: str

    def render(self) -> str:
        who = f" holder {self.holder}" if self.holder else ""
        return f"block {self.block} token {self.symbol} ({self.token}){who}: {self.what}"


@dataclass
class HistoryReport:
    chain: str
    seed: int
    tokens: int = 0
    blocks: int = 0
    balances: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


async def verify_history(settings: Settings, chain: str | None = None, sample: int = 10,
                         seed: int | None = None) -> list[HistoryReport]:
    if sample < 0:
        raise InputError(f"--sample {sample}: must be 0 or more")
    seed = secrets.randbelow(2**31) if seed is None else seed
    chains = [settings.chain(chain)] if chain else list(settings.chains)
    store = await Store.open(settings.database_url, role="verify")
    try:
        return [await _audit_chain(cfg, store, sample, seed) for cfg in chains]
    finally:
        await store.close()


def audit_blocks(changes: list[int], start: int, end: int, sample: int, rng: random.Random) -> list[int]:
    """Pure: the blocks to audit for a token indexed over [start, end] with multiplier
    changes recorded at ``changes``."""
    chosen = {start, end}
    for block in changes:
        chosen.update((block - 1, block, block + 1))
    if end >= start:
        chosen.update(rng.randrange(start, end + 1) for _ in range(sample))
    return sorted(b for b in chosen if start <= b <= end)


async def _audit_chain(cfg: ChainConfig, store: Store, sample: int, seed: int) -> HistoryReport:
    node, chain_id = await connect(cfg.rpc, cfg.name, cfg.chain_id)
    report = HistoryReport(cfg.name, seed)
    try:
        cursor = await store.cursor(chain_id)
        if cursor is None:
            raise InputError(f"chain {cfg.name} (id {chain_id}) has not been indexed yet: run `indexer backfill`")
        tokens = await store.fetch("SELECT token, symbol, start_block, synced_block FROM tokens "
                                   "WHERE chain_id = $1 ORDER BY token", chain_id)
        for token in tokens:
            await _audit_token(node, store, chain_id, token, sample, seed, report)
    finally:
        await node.rpc.close()
    report.differences.sort()
    return report


async def _audit_token(node: Chain, store: Store, chain_id: int, t: Record, sample: int, seed: int,
                       report: HistoryReport) -> None:
    address, symbol = str(t["token"]), str(t["symbol"])
    start, end = int(t["start_block"]), int(t["synced_block"])
    if end < start:
        return
    changes = [int(r["block_number"]) for r in await store.fetch(
        "SELECT block_number FROM multiplier_changes WHERE chain_id = $1 AND token = $2 "
        "UNION SELECT block_number FROM token_events WHERE chain_id = $1 AND token = $2 AND event = ANY($3)",
        chain_id, address, list(MARKERS))]
    blocks = audit_blocks(changes, start, end, sample, random.Random(f"{seed}:{chain_id}:{address}"))
    report.tokens += 1
    for block in blocks:
        report.blocks += 1
        db = await store.fetch(
            "SELECT holder, balance_at($1, $2, holder, $3) AS balance FROM share_balances "
            "WHERE chain_id = $1 AND token = $2 ORDER BY holder", chain_id, address, block)
        totals = await store.fetch("SELECT supply_at($1, $2, $3) AS supply, multiplier_at($1, $2, $3) AS m",
                                   chain_id, address, block)
        answers = await node.call_many(
            [(address, views.TOTAL_SUPPLY), (address, views.GET_CURRENT_MULTIPLIER)]
            + [(address, views.balance_of(r["holder"])) for r in db], block)
        found = _differences(block, symbol, address, totals[0], db, answers)
        report.balances += len(db)
        report.differences.extend(found)


def _differences(block: int, symbol: str, token: str, totals: Record, rows: list[Record],
                 answers: list[bytes | None]) -> list[Difference]:
    out = []
    supply = views.as_uint(answers[0]) or 0
    if supply != int(totals["supply"] or 0):
        out.append(Difference(block, symbol, token, "", f"totalSupply {supply} on chain, supply_at "
                                                        f"{_int(totals['supply'])} in database"))
    multiplier = views.as_multiplier(answers[1]) or ONE
    if answers[0] is not None and multiplier != int(totals["m"]):
        out.append(Difference(block, symbol, token, "", f"multiplier {multiplier} on chain, multiplier_at "
                                                        f"{_int(totals['m'])} in database"))
    for row, answer in zip(rows, answers[2:], strict=True):
        on_chain = views.as_uint(answer) or 0
        if on_chain != int(row["balance"] or 0):
            out.append(Difference(block, symbol, token, str(row["holder"]),
                                  f"balanceOf {on_chain} on chain, balance_at {_int(row['balance'])} in database"))
    return out


def _int(value: object) -> str:
    """A numeric from the database as an integer (asyncpg's Decimal may print as 9.6E+17)."""
    return "NULL" if value is None else str(int(value))  # type: ignore[call-overload]


def render(reports: list[HistoryReport], limit: int = 20) -> str:
    lines = []
    for r in reports:
        state = "equal" if r.ok else f"{len(r.differences)} difference(s)"
        lines.append(f"chain {r.chain} history (seed {r.seed}): {r.tokens} tokens, {r.blocks} blocks, "
                     f"{r.balances} balances audited: {state}")
        if r.differences:
            lines.append(f"  first difference: {r.differences[0].render()}")
            lines.extend(f"  {d.render()}" for d in r.differences[1:limit])
            if len(r.differences) > limit:
                lines.append(f"  ... and {len(r.differences) - limit} more")
    return "\n".join(lines)
