"""The processes a run measures and the machine it runs on.

`Environment` starts a fresh anvil and a fresh PostgreSQL: an embedded server in a scratch
directory (its processes are ours, so their CPU is measured exactly), or, when $DATABASE_URL is
set, new databases on that server (its CPU is then read from the local `postgres` process tree
that serves our connection, if there is one, else reported as unknown). Databases created here
are dropped on `close()` unless `keep`.

Failure modes: `AnvilError` / `EmbeddedPostgresError` from the devnet launchers; asyncpg errors
when $DATABASE_URL is unreachable or may not CREATE DATABASE.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

from devnet import Anvil, EmbeddedPostgres, World, find_anvil, scratch_dir

from .cpu import speed_probe

REPO_ROOT = Path(__file__).resolve().parent.parent
GAS_LIMIT = 1_000_000_000
SETUP_GAS_LIMIT = 60_000_000  # anvil slows down superlinearly past a few hundred txs per block
_PG_NAMES = ("postgres", "postmaster")


def with_database(url: str, database: str) -> str:
    """`url` pointing at `database` instead (a query such as ?host=/socket/dir is kept)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class Environment:
    """anvil + PostgreSQL + a work directory for configs and process output."""

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self.workdir = Path(tempfile.mkdtemp(prefix="xstock-bench-"))
        self.anvil = Anvil(gas_limit=GAS_LIMIT, no_mining=True)
        self.external_url = os.environ.get("DATABASE_URL", "").strip() or None
        self.pg: EmbeddedPostgres | None = None
        self._pg_dir: Path | None = None
        self._databases: list[str] = []
        self._pg_roots: list[psutil.Process] | None = None

    def start(self) -> Environment:
        self.anvil.start()
        if self.external_url is None:
            self._pg_dir = scratch_dir("xstock-bench-pg-")
            self.pg = EmbeddedPostgres(self._pg_dir / "data").start()
        return self

    @property
    def admin_url(self) -> str:
        if self.external_url is not None:
            return self.external_url
        assert self.pg is not None, "start() first"
        return self.pg.dsn

    async def create_database(self, prefix: str) -> str:
        """A new empty database; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        await _admin(self.admin_url, f'CREATE DATABASE "{name}"')
        self._databases.append(name)
        return with_database(self.admin_url, name)

    async def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        await _admin(self.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self._databases:
            self._databases.remove(name)

    def write_config(self, world: World, database_url: str, name: str, rpc: str | None = None) -> Path:
        """indexer TOML for `world` on `database_url`; `rpc` replaces the node URL (ws://)."""
        if rpc is not None:
            world = dataclasses.replace(world, rpc_url=rpc)
        return world.write_toml(self.workdir / name, database_url)

    async def locate_postgres(self) -> None:
        """Find the postmaster to measure: the embedded server's, or, behind $DATABASE_URL, the
        parent of our own backend when that backend is a local `postgres` process."""
        if self.pg is not None:
            pid = int((self.pg.data_dir / "postmaster.pid").read_text().split()[0])
            self._pg_roots = [psutil.Process(pid)]
            return
        conn = await asyncpg.connect(self.admin_url)
        try:
            backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
            try:
                proc = psutil.Process(backend)
                parent = proc.parent()
                if proc.name() in _PG_NAMES and parent is not None and parent.name() in _PG_NAMES:
                    self._pg_roots = [parent]
            except psutil.Error:
                pass  # a remote server, or another pid namespace: its CPU is unknown
        finally:
            await conn.close()

    def postgres_roots(self) -> list[psutil.Process] | None:
        """The postmaster whose process tree is PostgreSQL's CPU; None when unknown."""
        return self._pg_roots

    async def close(self) -> None:
        self.anvil.stop()
        if not self.keep:
            for name in list(self._databases):
                try:
                    await _admin(self.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                except (OSError, asyncpg.PostgresError):
                    pass
        if self.pg is not None:
            self.pg.stop()
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
            if self._pg_dir is not None:
                shutil.rmtree(self._pg_dir, ignore_errors=True)

    def kept(self) -> list[str]:
        return [str(p) for p in (self.workdir, self._pg_dir) if p is not None]


def _command_output(*cmd: str) -> str | None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False, cwd=REPO_ROOT)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


async def machine_info(env: Environment) -> dict[str, Any]:
    """Cores, memory, versions, and the code being measured (git commit, dirty or not)."""
    conn = await asyncpg.connect(env.admin_url)
    try:
        pg_version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    anvil = _command_output(find_anvil(), "--version") or ""
    status = _command_output("git", "status", "--porcelain", "--", "indexer", "schema.sql")
    diff = _command_output("git", "diff", "HEAD", "--", "indexer", "schema.sql")
    return {
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "cpu": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "anvil": anvil.splitlines()[0].removeprefix("anvil Version: ") if anvil else "unknown",
        "postgres": pg_version,
        "postgres_mode": "embedded" if env.pg is not None else "DATABASE_URL",
        "postgres_data_dir": str(env.pg.data_dir) if env.pg is not None else None,
        "git_commit": _command_output("git", "rev-parse", "--short", "HEAD"),
        "indexer_dirty": bool(status) if status is not None else None,
        # Which uncommitted state of the code was measured (same hash, same code).
        "indexer_diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else None,
        "speed_probe_ms": speed_probe(),  # how fast the machine runs Python today (bench/cpu.py)
    }
