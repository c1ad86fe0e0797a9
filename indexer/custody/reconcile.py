"""The backing rules -> flags: make ``backing_flags`` match ``backing_conditions``, in one transaction.

The rules themselves are SQL (view ``backing_conditions`` in schema.sql, R3..R10). One evaluation:

1. copies ``[custody]`` stale_after and settlement_window into ``indexer_settings``, where the
   rules read them, and moves the coverage memory up to the latest indexed blocks
   (``custody_coverage_refresh``: it looks only at attestation times it has not settled yet, so
   the cost of an evaluation does not grow with the custody history);
2. reads the conditions that should be open and the flags that are open;
3. opens a flag for each new condition, closes each open flag whose condition is gone, and keeps
   the shortfall and details of the others current: one condition never has two open flags (a
   partial unique index says so too);
4. sends ``NOTIFY backing_flags`` with the flag as JSON per open and close (delivered at commit)
   and, once committed, logs a warning per change.

Evaluations lock backing_flags (SHARE ROW EXCLUSIVE: one evaluation at a time, readers unaffected),
so the daemon's chain tasks, an import and a ``reconcile`` command may overlap. opened_at/closed_at
are chain time: the timestamp of the latest indexed block, like every rule, so the flags follow
from the data alone.

Entry points: :func:`evaluate` (daemon hook, imports), :func:`reconcile` (``indexer reconcile``),
:func:`backing_report` (``indexer status``). Database failures surface as the Store raises them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from .. import logconfig
from ..config import Settings
from ..store import Store
from . import flags

log = logconfig.get("reconcile")
CHANNEL = "backing_flags"
_NOTIFY_LIMIT = 7900  # PostgreSQL caps a NOTIFY payload at 8000 bytes
Ident = tuple[str, str | None, int | None, str | None, str]


@dataclass(frozen=True)
class Condition:
    """One row of backing_conditions: a flag that should be open."""

    rule: str
    severity: str
    underlying: str | None
    chain_id: int | None
    token: str | None
    key: str
    shortfall: Decimal | None
    details: dict[str, Any]

    @property
    def ident(self) -> Ident:
        return (self.rule, self.underlying, self.chain_id, self.token, self.key)


@dataclass(frozen=True)
class Flag:
    """One row of backing_flags."""

    id: int
    rule: str
    severity: str
    underlying: str | None
    chain_id: int | None
    token: str | None
    key: str
    opened_at: datetime
    opened_block: int | None
    closed_at: datetime | None
    closed_block: int | None
    shortfall: Decimal | None
    details: dict[str, Any]

    @property
    def ident(self) -> Ident:
        return (self.rule, self.underlying, self.chain_id, self.token, self.key)

    def as_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for k in ("opened_at", "closed_at"):
            out[k] = out[k].isoformat() if out[k] is not None else None
        out["shortfall"] = None if self.shortfall is None else str(self.shortfall)
        return out


@dataclass(frozen=True)
class FlagChange:
    action: str  # "opened" or "closed"
    flag: Flag

    def payload(self) -> str:
        """The NOTIFY payload: the flag as JSON plus ``action``; details are dropped (and
        ``details_truncated`` set) if they would not fit the 8000-byte limit."""
        body = {"action": self.action, **self.flag.as_json()}
        text = json.dumps(body, default=str)
        if len(text.encode()) > _NOTIFY_LIMIT:
            text = json.dumps({**body, "details": {}, "details_truncated": True}, default=str)
        return text


@dataclass(frozen=True)
class Plan:
    open: list[Condition]
    close: list[Flag]
    refresh: list[tuple[Flag, Condition]]


def plan(open_flags: Iterable[Flag], desired: Iterable[Condition]) -> Plan:
    """Pure: what to open, close and refresh so that the open flags are exactly ``desired``."""
    wanted = {c.ident: c for c in desired}
    current = {f.ident: f for f in open_flags}
    refresh = [(f, wanted[i]) for i, f in current.items()
               if i in wanted and (f.shortfall != wanted[i].shortfall or f.details != wanted[i].details)]
    return Plan(open=[c for i, c in wanted.items() if i not in current],
                close=[f for i, f in current.items() if i not in wanted], refresh=refresh)


async def evaluate(store: Store, settings: Settings) -> list[FlagChange]:
    """Evaluate every rule now and open/close flags to match; returns the changes."""
    async def run(conn: asyncpg.Connection) -> list[FlagChange]:
        # serialises evaluations; a lock only writers of backing_flags can take (an advisory key
        # is open to every role: an analyst holding it would stall the daemon), readers never wait
        await conn.execute("LOCK TABLE backing_flags IN SHARE ROW EXCLUSIVE MODE")
        await conn.execute("SET LOCAL jit = off")  # many cheap probes: compiling them costs more than running them
        await write_settings(conn, settings)
        await conn.execute("SELECT custody_coverage_refresh()")  # what changed since the last evaluation only
        desired = [_condition(r) for r in await conn.fetch("SELECT * FROM backing_conditions")]
        current = [_flag(r) for r in await conn.fetch("SELECT * FROM backing_flags WHERE closed_at IS NULL")]
        changes = await _apply(conn, plan(current, desired))
        for change in changes:
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, change.payload())
        return changes

    changes = await store.transact("reconcile", run)
    await flags.export_gauge(store)
    for change in changes:
        f = change.flag
        log.warning(f"backing_flag_{change.action}", id=f.id, rule=f.rule, severity=f.severity,
                    underlying=f.underlying, chain_id=f.chain_id, token=f.token, key=f.key or None,
                    shortfall=None if f.shortfall is None else str(f.shortfall))
    return changes


async def write_settings(conn: asyncpg.Connection, settings: Settings) -> None:
    """Copy the durations of ``[custody]`` where the SQL rules read them (only when changed)."""
    c = settings.custody
    await conn.execute(
        """INSERT INTO indexer_settings (key, seconds, source)
           SELECT * FROM unnest($1::text[], $2::numeric[], $3::text[])
           ON CONFLICT (key) DO UPDATE SET seconds = EXCLUDED.seconds, source = EXCLUDED.source, updated_at = now()
           WHERE (indexer_settings.seconds, indexer_settings.source)
                 IS DISTINCT FROM (EXCLUDED.seconds, EXCLUDED.source)""",
        ["stale_after", "settlement_window"], [Decimal(str(c.stale_after)), Decimal(str(c.settlement_window))],
        [settings.source] * 2)


async def _apply(conn: asyncpg.Connection, todo: Plan) -> list[FlagChange]:
    if not (todo.open or todo.close or todo.refresh):
        return []
    now = await conn.fetchval("SELECT indexed_now()")
    blocks = {r["chain_id"]: (r["block_number"], r["block_time"])
              for r in await conn.fetch("SELECT chain_id, block_number, block_time FROM cursors")}
    latest = max(blocks.values(), key=lambda b: b[1])[0] if blocks else None

    def block_of(chain_id: int | None) -> int | None:
        return blocks[chain_id][0] if chain_id in blocks else latest

    changes: list[FlagChange] = []
    for c in todo.open:
        row = await conn.fetchrow(
            """INSERT INTO backing_flags (underlying, chain_id, token, rule, key, severity, opened_at, opened_block,
                                          shortfall, details)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb) RETURNING *""",
            c.underlying, c.chain_id, c.token, c.rule, c.key, c.severity, now, block_of(c.chain_id),
            c.shortfall, json.dumps(c.details))
        changes.append(FlagChange("opened", _flag(row)))
    for f in todo.close:
        row = await conn.fetchrow(
            "UPDATE backing_flags SET closed_at = $2, closed_block = $3, updated_at = now() WHERE id = $1 RETURNING *",
            f.id, now, block_of(f.chain_id))
        changes.append(FlagChange("closed", _flag(row)))
    for f, c in todo.refresh:
        await conn.execute(
            "UPDATE backing_flags SET shortfall = $2, details = $3::jsonb, updated_at = now() WHERE id = $1",
            f.id, c.shortfall, json.dumps(c.details))
    return changes


def _condition(r: asyncpg.Record) -> Condition:
    return Condition(r["rule"], r["severity"], r["underlying"], r["chain_id"], r["token"], r["key"],
                     r["shortfall"], json.loads(r["details"]))


def _flag(r: asyncpg.Record) -> Flag:
    return Flag(r["id"], r["rule"], r["severity"], r["underlying"], r["chain_id"], r["token"], r["key"],
                r["opened_at"], r["opened_block"], r["closed_at"], r["closed_block"], r["shortfall"],
                json.loads(r["details"]))


# -- reports -----------------------------------------------------------------------------------


async def open_flags(store: Store) -> list[Flag]:
    rows = await store.fetch("SELECT * FROM backing_flags WHERE closed_at IS NULL ORDER BY id")
    return [_flag(r) for r in rows]


async def backing_report(store: Store) -> str:
    """The backing table (one line per underlying) and the open flags, as ``indexer status`` and
    ``indexer reconcile`` print them. Reads only; the schema must be applied."""
    rows = await store.fetch("SELECT * FROM backing ORDER BY underlying")
    return render_backing(rows) + "\n\n" + render_flags(await open_flags(store))


async def reconcile(settings: Settings) -> str:
    """``indexer reconcile``: migrate, evaluate now, and return the changes, the backing table and
    the open flags as text."""
    store = await Store.open(settings.database_url, role="reconcile")
    try:
        await store.migrate()
        changes = await evaluate(store, settings)
        report = await backing_report(store)
    finally:
        await store.close()
    return (render_changes(changes) + "\n\n" if changes else "") + report


def render_changes(changes: Sequence[FlagChange]) -> str:
    return "\n".join(f"{c.action} {_flag_line(c.flag)}" for c in changes)


def render_backing(rows: Sequence[Any]) -> str:
    now = rows[0]["evaluated_at"] if rows else None
    lines = [f"backing at {_time(now)} (latest indexed block)",
             f"{'underlying':<11} {'status':<15} {'supply':>20} {'custody':>20} {'ratio':>10} {'shortfall':>16}  as of"]
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.6f}"
        lines.append(f"{r['underlying']:<11} {r['status']:<15} {_num(r['onchain_supply']):>20} "
                     f"{_num(r['custody_shares']):>20} {ratio:>10} {_num(r['shortfall']):>16}  "
                     f"{_time(r['custody_as_of'])}")
    return "\n".join(lines)


def render_flags(flags: Sequence[Flag]) -> str:
    if not flags:
        return "open flags: none"
    return "\n".join([f"open flags: {len(flags)}", *(f"  {_flag_line(f)}" for f in flags)])


def _flag_line(f: Flag) -> str:
    where = f.underlying or "-"
    if f.token:
        where += f" chain {f.chain_id} {f.token}"
    short = f" shortfall {_num(f.shortfall)}" if f.shortfall is not None else ""
    return (f"#{f.id} {f.severity} {f.rule} {where}:{short} {_summary(f.rule, f.details)} "
            f"(since {_time(f.opened_at)}, block {f.opened_block})")


def _summary(rule: str, d: dict[str, Any]) -> str:
    if rule == "unbacked_supply":
        return f"custody {d.get('custody_shares')} < supply {d.get('onchain_supply')} as of {d.get('custody_as_of')}"
    if rule == "stale_attestation":
        return f"latest attestation {d.get('custody_as_of')}"
    if rule == "ripcord":
        return f"ripcord at {d.get('as_of')} ({d.get('custodian')}/{d.get('account')})"
    if rule == "unmatched_mint":
        return f"{d.get('mints')} mint(s) of {d.get('amount')} from block {d.get('first_block')}"
    if rule == "multiplier_without_custody":
        return f"multiplier {d.get('previous_multiplier')} -> {d.get('multiplier')} at block {d.get('block_number')}"
    if rule == "multiplier_mismatch":
        return ", ".join(f"chain {m['chain_id']}: {m['multiplier']}" for m in d.get("multipliers", []))
    if rule == "privileged_change":
        return f"{d.get('event')} {d.get('new_address')} in block {d.get('block_number')}"
    return json.dumps(d)


def _num(value: Decimal | None) -> str:
    return "-" if value is None else format(value.normalize(), "f") if value else "0"


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%SZ")
