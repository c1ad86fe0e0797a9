"""Backing and flags in the demo's live view: the `backing` view, the open `backing_flags`, and a
line per flag that opens or closes.

Privileged-change flags (R10) open when a role changes hands after a contract's own set-up (the
deployment's roles are not flagged); several can come at once, so they are shown as one row with
their count and one line saying what changed; every other flag is shown in full.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from asyncpg import Record

from .demo_view import Grid, units

RULE_IDS = {"unbacked_supply": "R3", "stale_attestation": "R4", "ripcord": "R5", "unmatched_mint": "R6",
            "multiplier_without_custody": "R8", "multiplier_mismatch": "R9", "privileged_change": "R10"}
WHY = {"unbacked_supply": "custody is below the supply at the attestation's time",
       "stale_attestation": "no recent attestation: unverified",
       "ripcord": "the attestor says its figures must not be trusted",
       "unmatched_mint": "mints with no custody increase within the settlement window",
       "multiplier_without_custody": "the multiplier rose and the custody on record does not hold the new supply",
       "multiplier_mismatch": "the multipliers differ across chains"}
PRIVILEGED = "privileged_change"
BACKING_SQL = ("SELECT underlying, status, onchain_supply, custody_shares, ratio, shortfall, custody_as_of "
               "FROM backing")
FLAGS_SQL = ("SELECT id, rule, severity, underlying, opened_block, opened_at, closed_block, closed_at, shortfall, "
             "details ->> 'role' AS role, (details ->> 'block_number')::bigint AS event_block "
             "FROM backing_flags ORDER BY id")
STATUS_STYLE = {"backed": "green", "unbacked": "bold red", "stale": "yellow", "no_attestation": "dim"}
SEVERITY_STYLE = {"critical": "bold red", "high": "red", "warning": "yellow"}


def rule_name(rule: str) -> str:
    return f"{rule} ({RULE_IDS[rule]})" if rule in RULE_IDS else rule


def clock(t: datetime | None) -> str:
    return "-" if t is None else f"{t:%H:%M:%S}"


def backing_grid(rows: Sequence[Record], order: Sequence[str]) -> Grid:
    """One row per underlying of the `backing` view, in `order` (others last)."""
    rows = sorted(rows, key=lambda r: order.index(r["underlying"]) if r["underlying"] in order else len(order))
    out = [(str(r["underlying"]), str(r["status"]), _amount(r["onchain_supply"]), _amount(r["custody_shares"]),
            "-" if r["ratio"] is None else f"{Decimal(r['ratio']):.6f}", _amount(r["shortfall"]),
            clock(r["custody_as_of"])) for r in rows]
    return Grid("Backing (view backing): custody against the supply at the attestation's time",
                ("underlying", "status", "supply (shares)", "custody (shares)", "ratio", "shortfall", "as of"),
                out, frozenset({2, 3, 4, 5}), tuple(STATUS_STYLE.get(str(r["status"]), "") for r in rows))


def flags_grid(rows: Sequence[Record]) -> tuple[Grid, str]:
    """The open flags (privileged changes as one row) and a line on the privileged ones ("" if none)."""
    live = [r for r in rows if r["closed_at"] is None]
    privileged = [r for r in live if r["rule"] == PRIVILEGED]
    out: list[tuple[str, ...]] = []
    styles: list[str] = []
    for r in live:
        if r["rule"] != PRIVILEGED:
            out.append((f"#{r['id']}", str(r["severity"]), rule_name(str(r["rule"])), str(r["underlying"] or "-"),
                        f"{r['opened_block']}  {clock(r['opened_at'])}", _amount(r["shortfall"])))
            styles.append(SEVERITY_STYLE.get(str(r["severity"]), ""))
    if privileged:
        ids = [int(r["id"]) for r in privileged]
        out.append((f"#{min(ids)}..#{max(ids)}", "high", f"{rule_name(PRIVILEGED)} x{len(privileged)}",
                    _underlyings(privileged), f"{min(int(r['opened_block'] or 0) for r in privileged)}  "
                    f"{clock(min(r['opened_at'] for r in privileged))}", "-"))
        styles.append("dim")
    grid = Grid(f"Open flags (table backing_flags): {len(live)}",
                ("flag", "severity", "rule", "underlying", "since block, time", "shortfall"),
                out, frozenset({5}), tuple(styles))
    return grid, privileged_note(privileged)


def privileged_note(rows: Sequence[Record]) -> str:
    if not rows:
        return ""
    ids = [int(r["id"]) for r in rows]
    blocks = [int(r["event_block"]) for r in rows if r["event_block"] is not None]
    span = f" in blocks {min(blocks)}..{max(blocks)}" if blocks else ""
    roles = ", ".join(dict.fromkeys(str(r["role"]).replace("_", " ") for r in rows))
    return (f"#{min(ids)}..#{max(ids)}: privileged roles changed hands{span} ({roles}): flagged for review "
            "for 24 h of chain time (`indexer flags ack ID --note TEXT` once checked)")


class FlagWatch:
    """Turns successive reads of backing_flags into lines: one per flag opened or closed, and one
    per batch of privileged-change flags."""

    def __init__(self) -> None:
        self.closed: dict[int, bool] = {}

    def changes(self, rows: Sequence[Record]) -> list[str]:
        lines: list[str] = []
        new_privileged: list[Record] = []
        gone_privileged = 0
        for r in rows:
            flag_id, closed = int(r["id"]), r["closed_at"] is not None
            before = self.closed.get(flag_id)
            self.closed[flag_id] = closed
            if before is None or (before is False and closed):
                if r["rule"] == PRIVILEGED:
                    if before is None and not closed:
                        new_privileged.append(r)
                    else:
                        gone_privileged += 1
                    continue
                if before is None:
                    lines.append(_opened(r))
                if closed:
                    lines.append(_closed(r))
        if new_privileged:
            lines.append(f"flags     {len(new_privileged)} privileged_change flag(s) (R10) opened: a role changed "
                         "hands after the set-up (see under the flags table)")
        if gone_privileged:
            lines.append(f"flags     {gone_privileged} privileged_change flag(s) closed: their review period is over")
        return lines


def _opened(r: Record) -> str:
    why = WHY.get(str(r["rule"]), "")
    short = f", shortfall {units(r['shortfall'])} shares" if r["shortfall"] is not None else ""
    return (f"flag opened #{r['id']} {r['severity']} {rule_name(str(r['rule']))} {r['underlying'] or '-'} "
            f"at block {r['opened_block']} ({clock(r['opened_at'])} chain time): {why}{short}")


def _closed(r: Record) -> str:
    return (f"flag closed #{r['id']} {rule_name(str(r['rule']))} {r['underlying'] or '-'} at block "
            f"{r['closed_block']} ({clock(r['closed_at'])} chain time), open since block {r['opened_block']}")


def _amount(value: Any) -> str:
    return "-" if value is None else units(value)


def _underlyings(rows: Sequence[Record]) -> str:
    names = sorted({str(r["underlying"]) for r in rows if r["underlying"]})
    factory = any(r["underlying"] is None for r in rows)
    text = ", ".join(names) if len(names) <= 2 else f"{len(names)} underlyings"
    return text + (" + factory" if factory else "")

