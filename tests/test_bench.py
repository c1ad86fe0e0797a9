"""The benchmark harness: end to end on a tiny workload through its real entry point (numbers
from a workload this small mean nothing; every phase must run, the JSON must have its shape, and
the indexer's verify must pass inside the run), and its pure helpers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import pytest

from bench.cpu import speed_probe
from bench.figures import FIGURES, _cpu_per_log, collect, render, warnings
from bench.harness import _free_indexer_bound
from bench.live import percentile
from bench.report import RESULTS_DIR, default_path, own_cost_rows, per_log_us, size_label, sparkline, vs_zero_cost
from tests.conftest import REPO_ROOT, PgServer, execute, run_sync


@pytest.mark.slow
def test_bench_runs_end_to_end_on_a_tiny_workload(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    env = {k: v for k, v in os.environ.items() if k not in ("RPC_URL", "INDEXER_CONFIG")}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--transfers", "3000", "--holders", "20", "--live-blocks", "5",
         "--live-interval", "0.1", "--out", str(out)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "backfill / eth_getLogs" in done.stdout  # the table (plain: stdout is not a terminal)

    result = json.loads(out.read_text())
    for key in ("machine", "workload", "ceilings", "backfill", "ratios", "verify", "live", "verify_after_live"):
        assert key in result, key
    assert result["workload"]["transfers"] == 3000
    assert result["workload"]["holders"] > 500  # most of the simulator's 1,000 receivers got some
    assert result["backfill"]["logs"] == result["ceilings"]["eth_getLogs"]["logs"] > 2 * 3000 * 4 // 5
    assert result["backfill"]["transfers"] >= 3000
    assert result["backfill"]["peak_rss_mb"] > 0
    assert result["backfill"]["cpu_s"]["indexer"] > 0 and result["backfill"]["cpu_s"]["anvil"] >= 0
    for name in ("backfill_vs_getlogs", "backfill_loop_vs_getlogs", "backfill_vs_copy"):
        assert isinstance(result["ratios"][name], float) and result["ratios"][name] > 0, name
    assert result["verify"]["exit_code"] == 0 and "equal" in result["verify"]["output"]
    assert result["verify_after_live"]["exit_code"] == 0
    for mode in ("http", "ws"):
        live = result["live"][mode]
        assert live["blocks"] == 5
        assert 0 < live["p50_ms"] <= live["p99_ms"] <= live["max_ms"]
        assert live["daemon"]["exit_code"] == 0
    assert set(result["startup"]) == {"--help", "status", "backfill"}
    assert all(0 < s["cpu_s"] and 0 < s["wall_s"] for s in result["startup"].values())
    for row in ("indexer CPU per log", "backfill / zero-cost bound", "start-up: indexer --help"):
        assert row in done.stdout, row


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0 and percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0


def test_result_paths_keep_the_200k_and_1m_runs_apart() -> None:
    assert [size_label(n) for n in (200_000, 1_000_000, 3_000, 1_234)] == ["200k", "1m", "3k", "1234"]
    day = {"started_at": "2026-11-24T22:00:00+00:00"}
    assert default_path(day | {"options": {"transfers": 200_000}}, Path("r")) == Path("r/2026-11-24.json")
    assert default_path(day | {"options": {"transfers": 1_000_000}}, Path("r")) == Path("r/2026-11-24-1m.json")
    line, per = sparkline([0.0, 1.0, 2.0, 0.5], width=4)
    assert (line, per) == (" ██▄", 1)


def test_free_indexer_bound_is_what_anvil_and_postgres_leave() -> None:
    cores = psutil.cpu_count() or 1
    getlogs = {"logs_per_s": 100_000}
    # 100k logs; anvil 0.5 s and PostgreSQL 0.6 s of CPU: on 2+ cores PostgreSQL alone bounds
    # the run at 0.6 s (166,667 logs/s, 1.667 of the ceiling); on one core both add up.
    backfill = {"logs": 100_000, "cpu_s": {"anvil": 0.5, "postgres": 0.6}}
    expected = round(100_000 / max(0.6, 1.1 / cores) / 100_000, 3)
    assert _free_indexer_bound(backfill, getlogs) == expected
    assert _free_indexer_bound({"logs": 1, "cpu_s": {"anvil": 0.5, "postgres": None}}, getlogs) is None


def test_cpu_per_log_and_the_zero_cost_ratio() -> None:
    assert per_log_us({"cpu_s": {"indexer": 2.0}, "logs": 400_000}) == 5.0
    assert per_log_us({"cpu_s": {"indexer": None}, "logs": 4}) is None
    # the bound is the eth_getLogs ceiling unless anvil and PostgreSQL alone could not reach it
    assert vs_zero_cost({"ratios": {"backfill_vs_getlogs": 0.35, "free_indexer_vs_getlogs": 0.5}}) == 0.7
    assert vs_zero_cost({"ratios": {"backfill_vs_getlogs": 0.35, "free_indexer_vs_getlogs": 3.0}}) == 0.35
    assert vs_zero_cost({"ratios": {"backfill_vs_getlogs": 0.35, "free_indexer_vs_getlogs": None}}) is None


def test_the_cpu_figure_says_how_fast_the_machine_ran_python() -> None:
    """CPU per log moves with the machine's speed that day: the figure carries the speed probe
    (a fixed Python loop, none of our code) when the run measured it; older records have none."""
    record = json.loads((RESULTS_DIR / "2026-12-06.json").read_text())
    assert "speed probe" not in _cpu_per_log(record)[3]
    record["machine"]["speed_probe_ms"] = 56.1
    assert _cpu_per_log(record)[3].endswith("; machine speed probe 56.1 ms, lower is faster")
    assert any("machine speed probe 56.1 ms" in value for _, _, value in own_cost_rows(record))
    probe = speed_probe(runs=1)
    assert isinstance(probe, float) and 1 < probe < 60_000


@pytest.mark.slow
def test_bench_all_reports_every_figure_and_a_failed_part(tmp_path: Path, pg_server: PgServer) -> None:
    """`python -m bench all` on tiny sizes, the 200k part made to fail by a bad option: the other
    parts still run (the live latency on the analyst part's database), the failed part's figures
    say so, and the exit code is 1."""
    database = f"t_all_{uuid.uuid4().hex[:12]}"
    env = {k: v for k, v in os.environ.items() if k not in ("RPC_URL", "INDEXER_CONFIG")}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench", "all", "--rows", "20000", "--database", database,
             "--database-url", pg_server.url, "--out", str(tmp_path), "--bench-args", "--transfers 0",
             "--remote-args", "--holders 20 --bursts 1 --burst-transfers 1200 --gap 20 --stretch 20 --rate 1000 "
                              "--rtt 0.005",
             "--custody-args", "--records 500 --live-blocks 3 --live-interval 0.1 --live-moves 2"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=150, check=False)
        # the custody part removed its chain and its records: the database is as the analyst part loaded it
        left = run_sync(_fetchrow(pg_server.url_for(database), """
            SELECT (SELECT count(*) FROM transfer_log) AS transfers,
                   (SELECT count(*) FROM tokens WHERE chain_id = 31337) AS local_tokens,
                   (SELECT count(*) FROM custody_accounts WHERE account LIKE 'bench-account-%') AS accounts,
                   (SELECT count(*) FROM backing_flags WHERE underlying = 'NVDA') AS flags"""))
        assert dict(left) == {"transfers": 20000, "local_tokens": 0, "accounts": 0, "flags": 1}
    finally:
        run_sync(execute(pg_server.url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    (path,) = [p for p in tmp_path.glob("all-*.json") if p.stem.count("-") == 3]
    summary = json.loads(path.read_text())
    assert summary["failed_parts"] == ["bench"]
    assert {k: v["status"] for k, v in summary["parts"].items()} == {
        "bench": "failed (exit 1)", "remote": "ok", "analyst": "ok", "custody": "ok"}
    for part in ("remote", "analyst", "custody"):  # each part's own JSON, linked by name
        assert json.loads((tmp_path / summary["parts"][part]["json"]).read_text())
    names = [f["name"] for f in summary["figures"]]
    assert names == [name.format(size="20K") if part in ("analyst", "custody") else name
                     for part, name, _, _ in FIGURES]
    for f in summary["figures"]:
        assert f["target"] and "met" in f and f["met"] in (True, False, None), f
        if f["part"] == "bench":
            assert (f["value"], f["met"]) == ("failed (exit 1)", False), f
        else:
            assert f["number"] is not None and f["bound"], f
            assert (f["met"] is None) == (f["name"] == "remote provider: calls per method"), f
            assert f["name"] in done.stdout and "bounded by:" in done.stdout
    live = next(f for f in summary["figures"] if "live latency" in f["name"])
    assert database in live["bound"]  # measured on the analyst part's database
    assert "part bench    failed (exit 1)" in done.stdout


async def _fetchrow(url: str, sql: str) -> asyncpg.Record:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchrow(sql)
    finally:
        await conn.close()


def test_the_figures_read_the_recorded_results() -> None:
    """The summary reads each part's JSON as the parts write it: the records in bench/results."""
    records = {"bench": "2026-12-06.json", "remote": "remote-2026-12-06-final.json",
               "analyst": "analyst-2026-12-06.json", "custody": "custody-2026-12-06.json"}
    results: dict[str, dict[str, Any] | None] = {
        part: json.loads((RESULTS_DIR / name).read_text()) for part, name in records.items()}
    found = collect(results, {})
    assert len(found) == len(FIGURES) and all(f["bound"] and f["number"] is not None for f in found)
    by_name = {f["name"]: f for f in found}
    assert by_name["10M: live latency p99, reconcile included"]["number"] == 117.7
    assert by_name["indexer CPU per log"]["met"] is False  # 9.39 us against 4
    assert by_name["10M: holder_history (TSLAx, every day)"]["met"] is True
    assert any(w.startswith("custody: load average") for w in warnings(results))  # how busy the machine was
    # a part that wrote nothing: its figures are there, not met; a skipped one: no verdict
    found = collect(results | {"remote": None, "custody": None}, {"remote": "failed (exit 1)", "custody": "skipped"})
    assert [(f["value"], f["met"]) for f in found if f["part"] in ("remote", "custody")] == [
        ("failed (exit 1)", False), ("failed (exit 1)", False), ("skipped", None)]
    assert "NOT met" in render(found, {"remote": {"status": "failed (exit 1)", "seconds": 1.0}})


def test_make_bench_runs_every_part_unless_told_one() -> None:
    def planned(*args: str) -> str:
        # Under `make test` this is a sub-make: without the parent's variables and directory notes.
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
        done = subprocess.run(["make", "-n", "--no-print-directory", "bench", *args], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=30, check=True)
        return done.stdout.strip().splitlines()[-1]
    assert planned().endswith("-m bench all")
    assert planned("BENCH_ARGS=--million").endswith("-m bench --million")
    assert planned("BENCH_ARGS=remote --rtt 0.1").endswith("-m bench remote --rtt 0.1")
