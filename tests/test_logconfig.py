"""logs: under --log-json every line on stderr is a JSON object, whoever wrote it (our code,
asyncpg's and aiohttp's stdlib loggers, Python warnings, finalizers, the fatal error line)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT, cli

EMITTERS = r"""
import asyncio, gc, logging, warnings
from indexer import logconfig
logconfig.configure("info", json=True)
logging.getLogger("asyncpg.pool").warning("connection %s was lost", "pool-1")
try:
    raise ConnectionResetError("reset by peer\nsecond line")
except ConnectionResetError:
    logging.getLogger("aiohttp.client").exception("request failed")
warnings.warn("a deprecated call\nwith two lines", RuntimeWarning)
class Leaky:
    def __del__(self):
        raise ValueError("closed too late")
Leaky()
gc.collect()
async def main():
    async def fails():
        raise OSError("never retrieved")
    asyncio.get_running_loop().create_task(fails())
    await asyncio.sleep(0)
asyncio.run(main())
gc.collect()
logconfig.get("store").info("native", block=5)
"""


def json_lines(text: str) -> list[dict[str, object]]:
    lines = [line for line in text.splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not JSON: {line!r}") from None
    return records


def test_every_stderr_line_is_json_whoever_writes_it() -> None:
    done = subprocess.run([sys.executable, "-c", EMITTERS], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60, check=True)
    records = json_lines(done.stderr)
    by_logger = {str(r.get("logger")): r for r in records}
    assert by_logger["asyncpg.pool"]["event"] == "connection pool-1 was lost"
    assert by_logger["aiohttp.client"]["error"] == "ConnectionResetError: reset by peer"
    assert "a deprecated call" in str(by_logger["py.warnings"]["event"])
    assert "closed too late" in str(by_logger["python"]["event"])
    assert "never retrieved" in json.dumps(by_logger["asyncio"])
    assert any(r["event"] == "native" and r["block"] == 5 for r in records)
    assert all({"event", "level", "timestamp"} <= set(r) for r in records)


def test_a_fatal_error_under_log_json_is_a_json_line(tmp_path: Path) -> None:
    config = tmp_path / "indexer.toml"
    config.write_text('[[chain]]\nname = "a"\nrpc = ["http://127.0.0.1:1"]\n[daemon]\nmetrics_port = 70000\n')
    done = cli("--log-json", "status", config=config)
    assert done.returncode == 2
    (record,) = json_lines(done.stderr)
    assert record["event"] == "fatal" and record["exit_code"] == 2 and "daemon.metrics_port" in str(record["error"])
