"""The result of a run: a table on stdout (rich on a terminal, plain text otherwise) and JSON.

JSON goes to bench/results/<YYYY-MM-DD>.json for the default workload, and to
<YYYY-MM-DD>-<size>.json (e.g. 2026-11-24-1m.json) for another size, so that the 200k and 1M
runs of one day sit side by side. A run bigger than the default is compared with the latest
default-size result in the same folder: peak RSS ratio, target <= RSS_TARGET.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_TRANSFERS = 200_000
RSS_TARGET = 1.5  # peak RSS of a bigger workload / peak RSS at DEFAULT_TRANSFERS

Row = tuple[str, str, str]  # section, metric, value
_BARS = " ▁▂▃▄▅▆▇█"


def size_label(transfers: int) -> str:
    for unit, suffix in ((1_000_000, "m"), (1_000, "k")):
        if transfers >= unit and transfers % unit == 0:
            return f"{transfers // unit}{suffix}"
    return str(transfers)


def default_path(result: dict[str, Any], folder: Path = RESULTS_DIR) -> Path:
    date = result["started_at"][:10]
    transfers = result["options"]["transfers"]
    return folder / (f"{date}.json" if transfers == DEFAULT_TRANSFERS else f"{date}-{size_label(transfers)}.json")


def attach_baseline(result: dict[str, Any], folder: Path = RESULTS_DIR) -> None:
    """For a workload bigger than the default: peak RSS against the latest default-size run in
    `folder`."""
    if result["options"]["transfers"] <= DEFAULT_TRANSFERS or "backfill" not in result:
        return
    best: tuple[str, Path, dict[str, Any]] | None = None
    for path in folder.glob("*.json"):
        try:
            other = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if other.get("options", {}).get("transfers") == DEFAULT_TRANSFERS and "backfill" in other:
            key = str(other.get("started_at", ""))
            if best is None or key > best[0]:
                best = (key, path, other)
    if best is None:
        return
    base = best[2]["backfill"]["peak_rss_mb"]
    ratio = round(result["backfill"]["peak_rss_mb"] / base, 2) if base else None
    result["rss_vs_baseline"] = {
        "baseline": best[1].name, "baseline_transfers": DEFAULT_TRANSFERS, "baseline_peak_rss_mb": base,
        "baseline_code": _code(best[2]), "same_code": _code(best[2]) == _code(result),
        "peak_rss_mb": result["backfill"]["peak_rss_mb"], "ratio": ratio, "target": RSS_TARGET,
        "target_met": ratio is not None and ratio <= RSS_TARGET,
    }


def _code(result: dict[str, Any]) -> str:
    m = result.get("machine", {})
    return f"{m.get('git_commit')}{'+' + str(m.get('indexer_diff_sha256')) if m.get('indexer_dirty') else ''}"


def write(result: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(partial, path)
    return path


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "unknown"
    return f"{value:,.{digits}f}"


def sparkline(values: list[float], width: int = 60) -> tuple[str, int]:
    """Cores busy over time, one character per bucket of samples (full block = one core or
    more); returns the line and the samples per character."""
    if not values:
        return "", 1
    per = -(-len(values) // width)
    buckets = [values[i:i + per] for i in range(0, len(values), per)]
    return "".join(_BARS[min(len(_BARS) - 1, round(sum(b) / len(b) * (len(_BARS) - 1)))] for b in buckets), per


def _timeline_rows(b: dict[str, Any]) -> list[Row]:
    timeline = b.get("cpu_timeline")
    if not timeline or not timeline["t"]:
        return []
    out = []
    for name in ("indexer", "anvil", "postgres"):
        if name in timeline:
            line, per = sparkline(timeline[name])
            out.append(("cpu (backfill)", f"{name} over time", f"|{line}|"))
    seconds = per * timeline["period_s"]
    out.append(("cpu (backfill)", "", f"one character = {seconds:.2f} s, full block = one core; "
                                      f"two or more busy at once {100 * b.get('overlap_fraction', 0):.0f}% "
                                      f"of the time"))
    return out


def _cpu_rows(b: dict[str, Any]) -> list[Row]:
    rows = []
    total = b["cpu_s"].get("machine") or 0.0
    for name in ("indexer", "anvil", "postgres", "harness", "other"):
        seconds = b["cpu_s"].get(name)
        share = f" = {100 * seconds / total:.0f}% of the CPU used" if seconds is not None and total else ""
        cores = b["cpu_cores_busy"].get(name)
        saturated = b.get("saturated_fraction", {}).get(name)
        hot = f", >= 0.9 core {100 * saturated:.0f}% of the time" if saturated is not None else ""
        rows.append(("cpu (backfill)", name, f"{_n(seconds, 2)} s ({_n(cores, 2)} cores){share}{hot}"))
    rows.append(("cpu (backfill)", "machine busy",
                 f"{100 * b['machine_busy_fraction']:.0f}% of {_n(b['machine_cpu_s'], 1)} core-s "
                 f"(other: processes outside this run, and the kernel)"))
    return rows


ZERO_COST_TARGET = 0.7  # backfill logs/s over what an indexer costing no CPU could reach


def per_log_us(b: dict[str, Any]) -> float | None:
    """The indexer process's CPU (user + system, start-up included) per log, in microseconds."""
    seconds = b.get("cpu_s", {}).get("indexer")
    return round(seconds / b["logs"] * 1e6, 2) if seconds is not None and b.get("logs") else None


def vs_zero_cost(r: dict[str, Any]) -> float | None:
    """Backfill logs/s over the zero-cost bound: the eth_getLogs ceiling, or less when anvil and
    PostgreSQL alone could not go that fast on these cores (free_indexer_vs_getlogs < 1)."""
    q = r.get("ratios", {})
    ratio, free = q.get("backfill_vs_getlogs"), q.get("free_indexer_vs_getlogs")
    return round(ratio / min(1.0, free), 3) if ratio is not None and free else None


def probe_note(r: dict[str, Any]) -> str:
    """The machine's speed that day (bench/cpu.speed_probe), which CPU figures move with."""
    probe = r.get("machine", {}).get("speed_probe_ms")
    return "" if probe is None else f"; machine speed probe {probe} ms, lower is faster"


def own_cost_rows(r: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    if "backfill" in r:
        b, zero = r["backfill"], vs_zero_cost(r)
        out.append(("own cost", "indexer CPU per log",
                    f"{_n(per_log_us(b), 2)} us (process CPU {b['cpu_s']['indexer']} s over {_n(b['logs'])} logs, "
                    f"start-up included{probe_note(r)})"))
        met = "met" if zero is not None and zero >= ZERO_COST_TARGET else "NOT met"
        out.append(("own cost", "backfill / zero-cost bound", f"{zero} (target >= {ZERO_COST_TARGET}: {met})"))
    for command, s in r.get("startup", {}).items():
        met = "met" if s["wall_s"] < s["target_s"] else "NOT met"
        out.append(("own cost", f"start-up: indexer {command}",
                    f"{s['wall_s']} s wall, {s['cpu_s']} s CPU, whole command (target < {s['target_s']} s: {met})"))
    return out


def rows(r: dict[str, Any]) -> list[Row]:
    w, m = r["workload"], r["machine"]
    per_token = ", ".join(f"{k} {v:,}" for k, v in w.get("holders_by_token", {}).items())
    out: list[Row] = [
        ("machine", "cpu", f"{m['cores']} cores, {m['cpu']}, {m['memory_gb']} GB"),
        ("machine", "versions", f"python {m['python']}, anvil {m['anvil']}, postgres {m['postgres']} "
                                f"({m['postgres_mode']}), indexer {m['git_commit']}"
                                f"{' + changes ' + str(m.get('indexer_diff_sha256')) if m['indexer_dirty'] else ''}"),
        ("workload", "transfers", f"{_n(w['transfers'])} in {_n(w['transactions'])} txs, {_n(w['bulk_blocks'])} "
                                  f"block(s) ({_n(w['transfers_per_tx'])}/tx, {_n(w['transfers_per_block'])}/block)"),
        ("workload", "logs indexed", f"{_n(w.get('logs'))} over {_n(w['chain_blocks'])} blocks"),
        ("workload", "holders", f"{_n(w.get('holders'))} distinct (per token {per_token})"),
        ("workload", "generation", f"{_n(w['generate_transfers_per_s'])} transfers/s ({w['generate_s']} s, "
                                   f"set-up {w['setup_s']} s)"),
    ]
    if "ceilings" in r:
        g, c = r["ceilings"]["eth_getLogs"], r["ceilings"]["copy"]
        cpu_s = g.get("cpu_s", {})
        names = {"anvil": "anvil", "harness": "client", "other": "other processes", "machine": "whole machine"}
        busy = {label: cpu_s[k] / g["seconds"] for k, label in names.items() if cpu_s.get(k) is not None}
        out += [
            ("ceiling", "eth_getLogs alone", f"{_n(g['logs_per_s'])} logs/s ({g['blocks_per_request']} block(s)/request"
                                             f" x {g['concurrency']} concurrent, {g['seconds']} s, {g['mb']} MB)"),
            ("ceiling", "  cpu during it", ", ".join(f"{k} {v:.2f} cores" for k, v in busy.items())),
            ("ceiling", "COPY alone", f"{_n(c['rows_per_s'])} rows/s ({_n(c['rows'])} rows, {c['transactions']} "
                                      f"transaction(s), secondary indexes {c['indexes']}, {c['seconds']} s)"),
        ]
    if "backfill" in r:
        b, q = r["backfill"], r["ratios"]
        met = "met" if q["getlogs_target_met"] else "NOT met"
        out += [
            ("backfill", "end to end", f"{_n(b['logs_per_s'])} logs/s, {_n(b['transfers_per_s'])} transfers/s "
                                       f"({b['wall_s']} s wall)"),
            ("backfill", "inside its loop", f"{_n(b['loop_logs_per_s'])} logs/s ({b['loop_s']} s)"),
            ("backfill", "peak RSS", f"{_n(b['peak_rss_mb'], 1)} MB"),
            ("backfill", "verify", f"exit {r['verify']['exit_code']} ({r['verify']['output'][-80:]})"),
            ("ratio", "backfill / eth_getLogs", f"{q['backfill_vs_getlogs']} (target >= {q['getlogs_target']}: {met};"
                                                f" inside the loop {q['backfill_loop_vs_getlogs']})"),
            ("ratio", "backfill / COPY", f"{q['backfill_vs_copy']} (transfers/s over rows/s)"),
            ("ratio", "free indexer / eth_getLogs",
             f"{q.get('free_indexer_vs_getlogs')} (at most, for an indexer costing no CPU: anvil and PostgreSQL "
             f"doing this run's work on these cores)"),
        ]
        out += _cpu_rows(b) + _timeline_rows(b)
    out += own_cost_rows(r)
    if "rss_vs_baseline" in r:
        x = r["rss_vs_baseline"]
        out.append(("ratio", f"peak RSS / {size_label(x['baseline_transfers'])}",
                    f"{x['ratio']} ({x['peak_rss_mb']} MB vs {x['baseline_peak_rss_mb']} MB in {x['baseline']}"
                    f"{'' if x['same_code'] else ', measured on other code: ' + x['baseline_code']}; "
                    f"target <= {x['target']}: {'met' if x['target_met'] else 'NOT met'})"))
    out += [("warning", "", w) for w in r.get("warnings", [])]
    for mode, s in r.get("live", {}).items():
        out.append(("live latency", f"mined -> committed ({mode})",
                    f"p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, max {s['max_ms']} ms ({s['blocks']} blocks, "
                    f"one every {s['interval_ms']} ms, poll {s['poll_ms']} ms)"))
    return out


def render_plain(r: dict[str, Any]) -> str:
    table = rows(r)
    width = max(len(metric) for _, metric, _ in table)
    lines, section = [], None
    for sec, metric, value in table:
        if sec != section:
            lines.append(f"{sec}")
            section = sec
        lines.append(f"  {metric.ljust(width)}  {value}")
    return "\n".join(lines)


def show(r: dict[str, Any], tty: bool) -> None:
    if not tty:
        print(render_plain(r), flush=True)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"xstock-indexer bench, {size_label(r['options']['transfers'])} transfers")
    for column in ("", "metric", "value"):
        table.add_column(column)
    section = None
    for sec, metric, value in rows(r):
        table.add_row(sec if sec != section else "", metric, value)
        section = sec
    Console().print(table)
