"""The figures of `python -m bench all` (issue 15's list), read from the JSON of its parts.

Each figure has a value, a target, whether the target is met (None: reported, no pass/fail
target) and what bounds it: the ceiling or the conditions it was measured against. A part that
failed, was skipped or wrote no such number still gives its figures a row: the value says why,
and a failed or missing one counts as not met.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .report import probe_note, size_label

Figure = dict[str, Any]  # part, name, value, number, unit, target, met, bound
Reading = tuple[str, float | None, bool | None, str]  # value, number, met, bound


def _remote_ratio(r: dict[str, Any]) -> Reading:
    b, c, o = r["backfill"], r["ceiling"], r["options"]
    bound = (f"provider ceiling {c['logs_per_s']:,} logs/s (eth_getLogs alone, {c['blocks_per_request']} blocks x "
             f"{c['concurrency']} in flight, {c['requests']} requests), rtt {o['rtt'] * 1000:.0f} ms, "
             f"{o['rate']:g} requests/s, caps {o['max_range']:,} blocks / {o['max_logs']:,} logs")
    value = f"{b['ratio']} ({b['logs_per_s']:,} logs/s, {b['wall_s']} s)"
    return value, b["ratio"], b["ratio"] >= b["target"], bound


def _remote_calls(r: dict[str, Any]) -> Reading:
    b, c = r["backfill"], r["ceiling"]
    calls = sorted(b["calls"].items(), key=lambda kv: -kv[1])
    value = ", ".join(f"{k} {v}" for k, v in calls) + f" = {b['calls_total']}; 429s {b['http_429']}"
    bound = (f"the ceiling's client fetched the same logs in {c['requests']} eth_getLogs (its 429 retries and "
             "refusals included); at the rate limit every call costs as much as one")
    return value, float(b["calls_total"]), None, bound


def _cpu_per_log(r: dict[str, Any]) -> Reading:
    b = r["backfill"]
    us = round(b["cpu_s"]["indexer"] / b["logs"] * 1e6, 2)
    bound = (f"indexer process CPU (user + system, start-up included) {b['cpu_s']['indexer']} s over "
             f"{b['logs']:,} logs ({r['workload']['transfers']:,} transfers){probe_note(r)}")
    return f"{us} us", us, us <= 4.0, bound


def _zero_cost(r: dict[str, Any]) -> Reading:
    q, b = r["ratios"], r["backfill"]
    ceiling = r["ceilings"]["eth_getLogs"]["logs_per_s"]
    free = q["free_indexer_vs_getlogs"]
    ratio = round(q["backfill_vs_getlogs"] / min(1.0, free), 3)
    bound = (f"zero-cost bound {round(ceiling * min(1.0, free)):,} logs/s: eth_getLogs ceiling {ceiling:,} logs/s "
             f"x min(1, {free}) (what anvil and PostgreSQL alone allow on these cores)")
    return f"{ratio} ({b['logs_per_s']:,} logs/s end to end)", ratio, ratio >= 0.7, bound


def _startup(command: str) -> Callable[[dict[str, Any]], Reading]:
    def read(r: dict[str, Any]) -> Reading:
        s = r["startup"][command]
        bound = f"whole command as a user runs it, fastest of 3; {s['cpu_s']} s CPU"
        return f"{s['wall_s']} s", s["wall_s"], s["wall_s"] < s["target_s"], bound
    return read


def _flat(prefix: str) -> Callable[[dict[str, Any]], Reading]:
    def read(r: dict[str, Any]) -> Reading:
        (q,) = [q for q in r["flat"] if q["question"].startswith(prefix)]
        bound = (f"EXPLAIN ANALYZE, second run (first {q['first_ms']} ms), {r['rows']:,} transfers in "
                 f"{r.get('database_name', 'the analyst database')}")
        return f"{q['ms']} ms", q["ms"], q["met"], bound
    return read


def _live(r: dict[str, Any]) -> Reading:
    s = r["live"]
    bound = (f"block mined -> cursor committed, reconcile after each step included; {s['blocks']} blocks one every "
             f"{s['interval_ms']} ms, poll {s['poll_ms']} ms, on {r['transfers']:,} transfers in "
             f"{r.get('database_name', 'the custody database')}; p50 {s['p50_ms']} ms, max {s['max_ms']} ms")
    return f"{s['p99_ms']} ms", s["p99_ms"], s["p99_ms"] <= 150.0, bound


# (part, name, target, reader)
FIGURES: tuple[tuple[str, str, str, Callable[[dict[str, Any]], Reading]], ...] = (
    ("remote", "remote provider: backfill / provider ceiling", ">= 0.6", _remote_ratio),
    ("remote", "remote provider: calls per method", "reported", _remote_calls),
    ("bench", "indexer CPU per log", "<= 4 us", _cpu_per_log),
    ("bench", "backfill / zero-cost bound", ">= 0.7", _zero_cost),
    ("bench", "start-up: indexer --help", "< 0.3 s", _startup("--help")),
    ("bench", "start-up: indexer status", "< 0.3 s", _startup("status")),
    ("bench", "start-up: indexer backfill", "< 0.3 s", _startup("backfill")),
    ("analyst", "{size}: holder_history (TSLAx, every day)", "<= 500 ms", _flat("holder_history")),
    ("analyst", "{size}: holders_at mid-history", "<= 500 ms", _flat("holders_at")),
    ("analyst", "{size}: top holders (rank <= 20)", "<= 100 ms", _flat("top holders")),
    ("custody", "{size}: live latency p99, reconcile included", "<= 150 ms", _live),
)


def collect(results: dict[str, dict[str, Any] | None], status: dict[str, str]) -> list[Figure]:
    """Every figure from the parts' results (None: the part wrote none) and each part's status
    ("ok", "failed (exit N)", "skipped"); "{size}" in a name is the size of the part's database."""
    out = []
    for part, name, target, read in FIGURES:
        result = results.get(part)
        rows = (result or {}).get("rows") or (result or {}).get("transfers")
        size = size_label(rows).upper() if isinstance(rows, int) else "10M"
        figure: Figure = {"part": part, "name": name.format(size=size), "target": target}
        if result is None:
            state = status.get(part, "not run")
            figure |= {"value": state, "number": None, "met": None if state == "skipped" else False, "bound": ""}
        else:
            try:
                value, number, met, bound = read(result)
            except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
                value, number, met, bound = f"missing from its result ({type(exc).__name__}: {exc})", None, False, ""
            figure |= {"value": value, "number": number, "met": met, "bound": bound}
        out.append(figure)
    return out


def warnings(results: dict[str, dict[str, Any] | None]) -> list[str]:
    """What makes the run's numbers less than clean, as its parts saw it: other work on the
    machine (the 200k part measures it; the others record the load average)."""
    out = [f"bench: {w}" for w in (results.get("bench") or {}).get("warnings", [])]
    for part in ("analyst", "custody"):
        machine = (results.get(part) or {}).get("machine") or {}
        if machine.get("load_avg_at_start"):
            out.append(f"{part}: load average {machine['load_avg_at_start'][0]:.1f} at its start "
                       f"({machine.get('cpus')} cpus)")
    return out


def mark(met: bool | None) -> str:
    return "-" if met is None else "met" if met else "NOT met"


def render(figures: list[Figure], parts: dict[str, dict[str, Any]], notes: list[str] | None = None) -> str:
    """The summary table, plain text: one row per figure (what bounds it on the line below),
    then one line per part and the warnings."""
    width = max(len(f["name"]) for f in figures)
    value_width = max(len(f["value"]) for f in figures if len(f["value"]) <= 40)
    lines = [f"{'figure'.ljust(width)}  {'value'.ljust(value_width)}  {'target':<10}  met", "-" * (width + 40)]
    for f in figures:
        lines.append(f"{f['name'].ljust(width)}  {f['value'].ljust(value_width)}  {f['target']:<10}  {mark(f['met'])}")
        if f["bound"]:
            lines.append(f"{'':{width}}  bounded by: {f['bound']}")
    lines.append("")
    for name, p in parts.items():
        where = f", {p['json']}" if p.get("json") else ""
        lines.append(f"part {name:<8} {p['status']} ({p.get('seconds', 0)} s{where})")
    lines += [f"warning: {w}" for w in notes or []]
    return "\n".join(lines)
