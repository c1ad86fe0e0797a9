"""Run `indexer run` as a real process and wait on what it does (conditions with deadlines)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from devnet.anvil import free_port
from devnet.deploy import World
from tests.conftest import REPO_ROOT


def write_config(world: World, database_url: str, path: Path, *, extra_chain: str = "", max_reorg_depth: int = 64,
                 metrics_port: int | None = None, rpc: str | None = None) -> Path:
    text = World(**{**world.__dict__, "rpc_url": rpc or world.rpc_url}).to_toml(
        database_url, max_reorg_depth=max_reorg_depth)
    text = text.replace(f"max_reorg_depth = {max_reorg_depth}", f"max_reorg_depth = {max_reorg_depth}\n{extra_chain}")
    if metrics_port is not None:
        text += f"\n[daemon]\nmetrics_port = {metrics_port}\nmax_lag_seconds = 30\n"
    path.write_text(text)
    return path


class DaemonProcess:
    """`indexer run` in a subprocess; stderr (JSON logs) collected to a file. Every process
    started is killed at interpreter exit if a failing test left it running."""

    running: list[DaemonProcess] = []

    def __init__(self, config: Path, log_path: Path, metrics_port: int | None = None) -> None:
        self.config, self.log_path, self.metrics_port = config, log_path, metrics_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "RPC_URL", "INDEXER_CONFIG")}
        env["PYTHONPATH"] = str(REPO_ROOT)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "indexer", "--config", str(self.config), "run"],
                                     cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self._log)
        DaemonProcess.running.append(self)
        return self

    @classmethod
    def kill_all(cls) -> None:
        for d in cls.running:
            if d.alive:
                d.kill()
        cls.running.clear()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.signal(signal.SIGTERM)
        return self.wait(10)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait(10)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == name:
                out.append(record)
        return out

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


async def wait_for(condition: Callable[[], Awaitable[bool]], within: float = 90.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.05)  # polling a condition with a deadline, not a fixed wait
    raise AssertionError(f"timed out after {within} s waiting for {what}")


async def cursor(database_url: str) -> tuple[int, str] | None:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT block_number, block_hash FROM cursors ORDER BY chain_id LIMIT 1")
        return None if row is None else (row["block_number"], row["block_hash"])
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()


async def indexed_to_head(database_url: str, rpc: Any) -> bool:
    """The cursor is at the node's head, on the node's chain."""
    head = int(rpc("eth_blockNumber", []), 16)
    block = rpc("eth_getBlockByNumber", [hex(head), False])
    at = await cursor(database_url)
    return at is not None and at == (head, block["hash"])


__all__ = ["DaemonProcess", "cursor", "free_port", "indexed_to_head", "wait_for", "write_config"]
