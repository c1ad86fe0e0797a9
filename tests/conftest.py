"""Shared fixtures: real PostgreSQL, real anvil, our contracts deployed, the CLI as a process.

- `pg_server` (session): $DATABASE_URL when set, else one embedded PostgreSQL for the session.
- `database_url`: a fresh, empty database per test, dropped afterwards.
- `anvil`: a fresh automining anvil per test (about 0.1 s to start); `anvil_factory` builds
  others (no_mining=True, state_path=..., ...) that are stopped after the test.
- `world`: `anvil` plus `deploy_world`; `world_config` writes the matching indexer TOML.
- `run_cli`: run `python -m indexer ...` from the repository root and return the process.

Tests run with pytest-asyncio in auto mode; the fixtures here are synchronous, so sync and
async tests can both use them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from devnet.anvil import Anvil
from devnet.deploy import World, deploy_world
from devnet.postgres import EmbeddedPostgres, embedded_postgres, scratch_dir

REPO_ROOT = Path(__file__).resolve().parent.parent
_OVERRIDES = ("DATABASE_URL", "RPC_URL", "INDEXER_CONFIG")
T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop
    (it gets its own loop in a worker thread)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def with_database(url: str, database: str) -> str:
    """`url` pointing at `database` instead (query such as ?host=/socket/dir is kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@dataclass(frozen=True)
class PgServer:
    """The session's server: `url` is an administrative URL able to CREATE DATABASE."""

    url: str
    embedded: EmbeddedPostgres | None

    def url_for(self, database: str) -> str:
        return with_database(self.url, database)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        yield PgServer(url, None)
        return
    scratch = scratch_dir()  # not tmp_path: see scratch_dir's docstring
    server = embedded_postgres(scratch / "data")
    try:
        yield PgServer(server.dsn, server)
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


async def execute(url: str, sql: str) -> None:
    """Run ``sql`` on a connection of its own (database and role set-up)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def database_url(pg_server: PgServer) -> Iterator[str]:
    """A new empty database for this test; dropped (connections forced out) afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    run_sync(execute(pg_server.url, f'CREATE DATABASE "{name}"'))
    try:
        yield pg_server.url_for(name)
    finally:
        run_sync(execute(pg_server.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def anvil_factory() -> Iterator[Callable[..., Anvil]]:
    """`anvil_factory(**Anvil kwargs)` starts an anvil that is stopped after the test."""
    started: list[Anvil] = []

    def make(**kwargs: Any) -> Anvil:
        node = Anvil(**kwargs).start()
        started.append(node)
        return node

    yield make
    for node in started:
        node.stop()


@pytest.fixture
def anvil(anvil_factory: Callable[..., Anvil]) -> Anvil:
    return anvil_factory()


@pytest.fixture
def world(anvil: Anvil) -> World:
    return deploy_world(anvil.url)


@pytest.fixture
def world_config(world: World, database_url: str, tmp_path: Path) -> Path:
    """indexer.toml for `world` and this test's database."""
    return world.write_toml(tmp_path / "indexer.toml", database_url)


def cli(*args: str, config: Path | None = None, env: Mapping[str, str] | None = None,
        timeout: float = 300.0, cwd: Path = REPO_ROOT, stdin: str | None = None,
        module: str = "indexer") -> subprocess.CompletedProcess[str]:
    """Run `python -m indexer [--config PATH] ARGS...` (``module="devnet"``: the development package's
    commands instead; ``stdin``: text fed to it) and return the finished process
    (stdout, stderr as text; check .returncode yourself). The child gets os.environ without
    the variables that override a config ($DATABASE_URL, $RPC_URL, $INDEXER_CONFIG: the
    session's $DATABASE_URL is an admin database, not the test's), plus `env`, where a value
    of "" removes that variable."""
    full_env = {k: v for k, v in os.environ.items() if k not in _OVERRIDES}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                           full_env.get("PYTHONPATH")]))
    for key, value in (env or {}).items():
        if value == "":
            full_env.pop(key, None)
        else:
            full_env[key] = value
    command = [sys.executable, "-m", module]
    if config is not None:
        command += ["--config", str(config)]
    return subprocess.run([*command, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout, check=False, input=stdin)


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """The `cli` helper as a fixture: `run_cli("migrate", config=path)`."""
    return cli
