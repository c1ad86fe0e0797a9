"""The real CLI as a measured process: `python -m indexer --config X <command>`.

`IndexerProcess` starts the command exactly as a user would (same module, same config file,
JSON logs because stderr is not a terminal), with the variables that would override the config
($DATABASE_URL, $RPC_URL, $INDEXER_CONFIG) removed from its environment. It goes through
launch.py, which reports the command's own rusage when it ends: CPU seconds (user, system) and
peak RSS (ru_maxrss, exact, and not inflated by this harness's memory: see launch.py). Its
stdout and stderr go to files in the work directory (never a pipe that could fill).

Failure modes: `IndexerFailed` (exit code, stderr tail) when a command the run depends on does
not exit as expected; `TimeoutError` after killing a command that outlived its deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

from .env import REPO_ROOT

_OVERRIDES = ("DATABASE_URL", "RPC_URL", "INDEXER_CONFIG")


class IndexerFailed(RuntimeError):
    """An indexer command exited with an unexpected code."""


@dataclass
class Finished:
    """How one indexer process ended and what it used."""

    command: str
    returncode: int
    seconds: float
    user_s: float
    system_s: float
    peak_rss_bytes: int
    stdout: str
    stderr: str
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.system_s

    def event(self, name: str) -> dict[str, Any] | None:
        """The last JSON log line whose event is `name`."""
        return next((e for e in reversed(self.events) if e.get("event") == name), None)

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.stderr.strip().splitlines()[-lines:])

    def check(self, expected: int = 0) -> Finished:
        if self.returncode != expected:
            raise IndexerFailed(f"`indexer {self.command}` exited {self.returncode} (expected {expected}):\n"
                                f"{self.stdout.strip()[-2000:]}\n{self.tail()}")
        return self


class IndexerProcess:
    """One `python -m indexer` process (behind its launcher); `start()`, then `wait()` or
    `terminate()`."""

    def __init__(self, config: Path, *args: str, workdir: Path, name: str | None = None) -> None:
        self.config = config
        self.args = args
        self.name = name or "-".join(args) or "indexer"
        self.workdir = workdir
        self._launcher: subprocess.Popen[bytes] | None = None
        self._exited = False

    def _path(self, suffix: str) -> Path:
        return self.workdir / f"{self.name}.{suffix}"

    def start(self) -> IndexerProcess:
        env = {k: v for k, v in os.environ.items() if k not in _OVERRIDES}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "indexer", "--config", str(self.config), *self.args]
        launcher = [sys.executable, "-m", "bench.launch", str(self._path("rusage.json")), "--", *command]
        with self._path("out").open("wb") as out, self._path("err").open("wb") as err:
            self._launcher = subprocess.Popen(launcher, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                              stdout=out, stderr=err)
        return self

    def pid(self, within: float = 10.0) -> int:
        """The indexer's own pid (the launcher's child), once it exists."""
        assert self._launcher is not None, "start() first"
        deadline = time.monotonic() + within
        while True:
            with contextlib.suppress(psutil.Error):
                children = psutil.Process(self._launcher.pid).children()
                if children:
                    return int(children[0].pid)
            if not self.running() or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        raise IndexerFailed(f"`indexer {self.name}` did not start:\n{self.stderr_so_far()[-2000:]}")

    def running(self) -> bool:
        return self._launcher is not None and not self._exited and self._launcher.poll() is None

    def stderr_so_far(self) -> str:
        return self._path("err").read_text(errors="replace")

    def wait(self, timeout: float) -> Finished:
        """Wait for the exit (killing the command after `timeout` seconds); its rusage."""
        assert self._launcher is not None, "start() first"
        timer = threading.Timer(timeout, self._kill)
        timer.start()
        try:
            self._launcher.wait()
        finally:
            timer.cancel()
        self._exited = True
        report = self._path("rusage.json")
        if not report.exists():
            raise IndexerFailed(f"`indexer {self.name}`: its launcher exited {self._launcher.returncode} with no "
                                f"report:\n{self.stderr_so_far()[-2000:]}")
        usage = json.loads(report.read_text())
        if usage["returncode"] == -signal.SIGKILL and usage["seconds"] >= timeout:
            raise TimeoutError(f"`indexer {self.name}` did not finish within {timeout:.0f} s "
                               f"(killed):\n{self.stderr_so_far()[-2000:]}")
        stderr = self.stderr_so_far()
        return Finished(self.name, usage["returncode"], round(usage["seconds"], 3), usage["user_s"],
                        usage["system_s"], usage["maxrss_kb"] * 1024, self._path("out").read_text(errors="replace"),
                        stderr, _json_lines(stderr))

    def _kill(self) -> None:
        # The command, not its launcher: the launcher must live to report.
        with contextlib.suppress(IndexerFailed, ProcessLookupError):
            os.kill(self.pid(within=0.0), signal.SIGKILL)

    def terminate(self, timeout: float = 20.0) -> Finished:
        """SIGTERM (the daemon's clean stop, forwarded by the launcher), then wait."""
        if self.running():
            assert self._launcher is not None
            self._launcher.send_signal(signal.SIGTERM)
        return self.wait(timeout)


def _json_lines(text: str) -> list[dict[str, Any]]:
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    return events


def run(config: Path, *args: str, workdir: Path, timeout: float, name: str | None = None) -> Finished:
    """Run a command to its end; see `IndexerProcess`."""
    return IndexerProcess(config, *args, workdir=workdir, name=name).start().wait(timeout)
