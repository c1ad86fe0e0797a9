"""`python -m bench all` (what `make bench` runs): every benchmark in one run, one summary.

The parts run in this order, each as its own process (`python -m bench ...`, its output on
stderr), and a part that fails does not stop the others:

1. bench    the 200k-transfer benchmark (cli.py): CPU per log, start-up of the commands, the
            backfill against the zero-cost bound;
2. remote   the backfill through a remote-like provider (remote.py): ratio to the provider's
            ceiling, calls per method;
3. analyst  the 10M-transfer database (analyst_bench.py, built unless `--reuse` finds one with
            as many rows): holder_history, holders_at mid-history, top holders;
4. custody  live latency on that same database (custody_bench.py `--reuse --forget-after`: it
            indexes its anvil chain and custody records into it, measures, and removes them).

Then one table on stdout: every figure of issue 15 with its value, target, met or not and what
bounds it; and bench/results/all-<date>.json with those figures and, per part, its exit code,
seconds and JSON (all-<date>-<part>.json beside it).

Exit codes: 0 every part ran (targets met or not: the table and the JSON say), 1 a part failed
(its figures say "failed"; the others still ran), 2 bad options.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import analyst_bench, figures
from .report import RESULTS_DIR, write

PARTS = ("bench", "remote", "analyst", "custody")
REPO_ROOT = Path(__file__).resolve().parent.parent


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench all", description="Every benchmark in one run: the 200k "
                                "benchmark, the remote provider, the analyst queries and live latency at 10M.")
    p.add_argument("--rows", type=int, default=10_000_000, metavar="N",
                   help="transfers of the analyst database, the custody part's too (default 10M)")
    p.add_argument("--database", default=analyst_bench.DATABASE, metavar="NAME",
                   help=f"the analyst database, reused by the custody part (default {analyst_bench.DATABASE})")
    p.add_argument("--database-url", metavar="URL",
                   help="an admin URL of its server (default $DATABASE_URL, else the local PostgreSQL)")
    p.add_argument("--reuse", action="store_true", help="keep an analyst database already loaded with --rows")
    p.add_argument("--skip", action="append", default=[], choices=PARTS, metavar="PART",
                   help=f"a part not to run (repeatable; one of {', '.join(PARTS)})")
    for part in PARTS:
        p.add_argument(f"--{part}-args", default="", metavar="ARGS",
                       help=f"more options for `python -m bench{'' if part == 'bench' else ' ' + part}` (one string)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, metavar="DIR",
                   help="folder of all-<date>.json and its parts' JSON (default bench/results)")
    return p


def commands(args: argparse.Namespace, out: dict[str, Path]) -> dict[str, list[str]]:
    """The command line of each part, its JSON written to out[part]."""
    server = ["--database-url", args.database_url] if args.database_url else []
    tenm = ["--database", args.database, *server]
    argv = {
        "bench": ["--out", str(out["bench"])],
        "remote": ["remote", "--out", str(out["remote"])],
        # the COPY cost of the indexes is not one of these figures: skipped unless asked for
        "analyst": ["analyst", "--rows", str(args.rows), "--copy-rows", "0", *tenm, "--out", str(out["analyst"]),
                    *(["--reuse"] if args.reuse else [])],
        "custody": ["custody", "--transfers", str(args.rows), *tenm, "--reuse", "--forget-after",
                    "--out", str(out["custody"])],
    }
    return {part: [sys.executable, "-m", "bench", *argv[part], *shlex.split(getattr(args, f"{part}_args"))]
            for part in PARTS}


def say(message: str) -> None:
    print(f"bench all: {message}", file=sys.stderr, flush=True)


def run_part(part: str, command: list[str], out: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Run one part to its end; its record in the summary and its result (None when it failed
    or wrote none)."""
    say(f"{part}: {shlex.join(command[1:])}")
    out.unlink(missing_ok=True)  # a result left by an earlier run must not pass for this one's
    started = time.monotonic()
    try:
        code = subprocess.run(command, cwd=REPO_ROOT, stdout=sys.stderr, check=False).returncode
    except OSError as exc:
        say(f"{part}: could not start: {exc}")
        code = -1
    record: dict[str, Any] = {"exit_code": code, "seconds": round(time.monotonic() - started, 1),
                              "command": command[2:]}
    result = None
    if code == 0:
        try:
            result = json.loads(out.read_text())
        except (OSError, ValueError) as exc:
            record["error"] = f"no result in {out.name}: {exc}"
    if result is None:
        record |= {"status": f"failed (exit {code})" if code else "failed (no result)"}
    else:
        record |= {"status": "ok", "json": out.name}
    say(f"{part}: {record['status']} in {record['seconds']} s")
    return record, result


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.rows < 1000:
        build_parser().error("--rows must be >= 1000")
    started = datetime.now(UTC)
    date = started.date().isoformat()
    out = {part: args.out / f"all-{date}-{part}.json" for part in PARTS}
    args.out.mkdir(parents=True, exist_ok=True)
    parts: dict[str, dict[str, Any]] = {}
    results: dict[str, dict[str, Any] | None] = {}
    for part, command in commands(args, out).items():
        if part in args.skip:
            parts[part], results[part] = {"status": "skipped", "seconds": 0}, None
            continue
        parts[part], results[part] = run_part(part, command, out[part])
    found = figures.collect(results, {k: v["status"] for k, v in parts.items()})
    failed = [k for k, v in parts.items() if v["status"] not in ("ok", "skipped")]
    summary = {
        "schema": 1, "kind": "all", "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "suite_options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "parts": parts, "failed_parts": failed, "figures": found, "warnings": figures.warnings(results),
        "met": sum(1 for f in found if f["met"] is True), "not_met": sum(1 for f in found if f["met"] is False),
    }
    print(figures.render(found, parts, summary["warnings"]), flush=True)
    path = write(summary, args.out / f"all-{date}.json")
    say(f"wrote {path} ({summary['seconds']} s); {summary['met']} figures met their target, "
        f"{summary['not_met']} did not{'; failed: ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0
