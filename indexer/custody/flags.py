"""``indexer flags``: list the backing flags, acknowledge one; the open-flags gauge.

Place in the pipeline: after reconcile (which opens and closes flags from the rules). Listing is
read only (no DDL: a read-only login or a standby serves it). ``ack`` records a note in
``backing_flag_notes`` and sets ``backing_flags.acknowledged_at``: the flag stays open while its
condition holds (the rules decide that, not people), but the gauge tells it apart, so an alert on
``indexer_open_flags{acknowledged="no"}`` quiets once someone has looked.

Failures: an unknown flag id or an empty note is InputError (exit 2).
"""

from __future__ import annotations

import json

import asyncpg

from ..config import Settings
from ..errors import InputError
from ..store import Store

LIST_SQL = """SELECT f.id, f.rule, f.severity, f.underlying, f.chain_id, f.token, f.opened_at, f.opened_block,
                     f.closed_at, f.acknowledged_at,
                     (SELECT n.note FROM backing_flag_notes n WHERE n.flag_id = f.id
                       ORDER BY n.noted_at DESC, n.id DESC LIMIT 1) AS note
                FROM backing_flags f WHERE $1 OR f.closed_at IS NULL ORDER BY f.id"""


async def list_flags(settings: Settings, include_closed: bool) -> str:
    store = await Store.open(settings.database_url, role="flags")
    try:
        await store.check_schema()
        rows = await store.fetch(LIST_SQL, include_closed)
    finally:
        await store.close()
    return render(rows, include_closed)


def render(rows: list[asyncpg.Record], include_closed: bool) -> str:
    title = "flags" if include_closed else "open flags"
    if not rows:
        return f"no {title}"
    lines = [f"{'id':>5}  {'rule':<27} {'severity':<8} {'underlying':<10} {'chain':>6}  {'opened (block)':<28} state"]
    for r in rows:
        state = "closed " + f"{r['closed_at']:%Y-%m-%d %H:%M}" if r["closed_at"] else "open"
        if r["acknowledged_at"]:
            state += f", acknowledged {r['acknowledged_at']:%Y-%m-%d %H:%M}: {json.dumps(r['note'])}"
        opened = f"{r['opened_at']:%Y-%m-%d %H:%M:%S} ({r['opened_block']})"
        lines.append(f"{r['id']:>5}  {r['rule']:<27} {r['severity']:<8} {r['underlying'] or '-':<10} "
                     f"{r['chain_id'] if r['chain_id'] is not None else '-':>6}  {opened:<28} {state}")
    lines.append(f"{len(rows)} {title}")
    return "\n".join(lines)


async def acknowledge(settings: Settings, flag_id: int, note: str) -> str:
    if not note.strip():
        raise InputError("flags ack: --note must say why the flag is acknowledged")
    store = await Store.open(settings.database_url, role="flags")
    try:
        await store.migrate()

        async def run(conn: asyncpg.Connection) -> asyncpg.Record | None:
            row = await conn.fetchrow(
                "UPDATE backing_flags SET acknowledged_at = now() WHERE id = $1 RETURNING id, rule, closed_at", flag_id)
            if row is not None:
                await conn.execute("INSERT INTO backing_flag_notes (flag_id, action, note) "
                                   "VALUES ($1, 'acknowledged', $2)", flag_id, note.strip())
            return row
        row = await store.transact("flags_ack", run)
        if row is None:
            raise InputError(f"flags ack: there is no flag {flag_id} (see `indexer flags --all`)")
        await export_gauge(store)
    finally:
        await store.close()
    return f"flag {flag_id} ({row['rule']}, {'closed' if row['closed_at'] else 'open'}) acknowledged"


async def export_gauge(store: Store) -> None:
    """Set indexer_open_flags from the table. Both acknowledged=yes|no of every (rule, severity)
    ever seen are set, to 0 when none is open, so an alert sees the drop."""
    rows = await store.fetch(
        """SELECT rule, severity, acknowledged_at IS NOT NULL AS acked, count(*) FILTER (WHERE closed_at IS NULL) AS n
             FROM backing_flags GROUP BY 1, 2, 3""")
    counts = {(r["rule"], r["severity"], "yes" if r["acked"] else "no"): int(r["n"]) for r in rows}
    from .. import metrics  # prometheus_client: where gauges are set, not on status' start-up

    _SEEN.update((rule, severity) for rule, severity, _ in counts)
    for rule, severity in _SEEN:
        for acked in ("yes", "no"):
            metrics.OPEN_FLAGS.labels(rule, severity, acked).set(counts.get((rule, severity, acked), 0))


_SEEN: set[tuple[str, str]] = set()
