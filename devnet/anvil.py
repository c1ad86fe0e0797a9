"""Launch and drive a local anvil node (foundry 1.7) for the demo, the tests and the benchmarks.

`Anvil` always runs with `--silent --prune-history 20000 --order fifo`: without pruning anvil
writes every block's state to disk (tens of GB in minutes of dense mining), and FIFO keeps the
order in which we send transactions, so packed blocks are reproducible.

The node client (`Node`, `rpc`, web3's `Web3RPCError`) lives in node.py and is re-exported here.

Failure modes:
- `AnvilNotFound`: no binary (message says to run `npm ci`).
- `AnvilError`: the node exited or did not answer before the deadline; carries its stderr.
- `Web3RPCError`: the node answered a JSON-RPC error.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .node import Node, Web3RPCError, rpc

__all__ = ["DEFAULT_FLAGS", "Anvil", "AnvilError", "AnvilNotFound", "Node", "Web3RPCError", "find_anvil", "free_port",
           "rpc"]

DEFAULT_FLAGS = ("--silent", "--prune-history", "20000", "--order", "fifo")
_NATIVE_GLOB = "@foundry-rs/anvil-*/bin/anvil"


class AnvilNotFound(FileNotFoundError):
    """No anvil binary: set $ANVIL_BIN or run `npm ci` in the repository."""


class AnvilError(RuntimeError):
    """anvil exited, or did not answer `eth_chainId` before the deadline."""


def find_anvil() -> str:
    """Path of the anvil binary: $ANVIL_BIN, else node_modules (searched upwards from the cwd
    and from this file), else `anvil` on PATH. The native binary of the npm package is
    preferred to its node wrapper (no node start-up, signals reach anvil itself)."""
    env = os.environ.get("ANVIL_BIN")
    if env:
        if not Path(env).is_file():
            raise AnvilNotFound(f"$ANVIL_BIN={env} does not exist")
        return env
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            modules = folder / "node_modules"
            if modules.is_dir():
                native = sorted(p for p in modules.glob(_NATIVE_GLOB) if os.access(p, os.X_OK))
                if native:
                    return str(native[0])
                if (modules / ".bin" / "anvil").exists():
                    return str(modules / ".bin" / "anvil")
    on_path = shutil.which("anvil")
    if on_path:
        return on_path
    raise AnvilNotFound("anvil not found: run `npm ci` in the repository root "
                        "(installs @foundry-rs/anvil), or set $ANVIL_BIN")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller retries if it is taken since)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class Anvil:
    """One anvil process. Use as a context manager, or call `start()` / `stop()`.

    `state_path`: start from that state file when it exists and dump the state to it on a
    clean `stop()` (`--state`), so a test can stop the node and restart it where it was.
    """

    def __init__(self, port: int | None = None, chain_id: int = 31337,
                 block_time: float | None = None, no_mining: bool = False,
                 gas_limit: int | None = None, extra_args: Sequence[str] = (),
                 state_path: Path | str | None = None, host: str = "127.0.0.1",
                 binary: str | None = None, startup_timeout: float = 30.0) -> None:
        self.host = host
        self.chain_id = chain_id
        self.block_time = block_time
        self.no_mining = no_mining
        self.gas_limit = gas_limit
        self.extra_args = tuple(extra_args)
        self.state_path = Path(state_path) if state_path is not None else None
        self.binary = binary
        self.startup_timeout = startup_timeout
        self._fixed_port = port
        self._port: int | None = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise AnvilError("anvil has not been started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self, port: int) -> list[str]:
        """The full command line for `port` (after `start()` has picked the binary)."""
        cmd = [self.binary or find_anvil(), *DEFAULT_FLAGS, "--host", self.host,
               "--port", str(port), "--chain-id", str(self.chain_id)]
        if self.block_time is not None:
            cmd += ["--block-time", str(self.block_time)]
        if self.no_mining:
            cmd.append("--no-mining")
        if self.gas_limit is not None:
            cmd += ["--gas-limit", str(self.gas_limit)]
        if self.state_path is not None:
            cmd += ["--state", str(self.state_path)]
        return cmd + list(self.extra_args)

    def start(self) -> Anvil:
        """Launch and wait until `eth_chainId` answers. Raises `AnvilError` (with stderr)
        if the process exits or the deadline passes; a port taken by someone else in the
        meantime is retried on another free port when no port was fixed."""
        if self.running:
            return self
        self.binary = self.binary or find_anvil()
        if self._fixed_port is not None and not _port_free(self.host, self._fixed_port):
            # Else the readiness probe could be answered by whoever holds the port.
            raise AnvilError(f"port {self._fixed_port} on {self.host} is already in use")
        attempt = 0
        while True:
            attempt += 1
            self._port = self._fixed_port or free_port(self.host)
            try:
                self._launch()
                return self
            except AnvilError as exc:
                retry = self._fixed_port is None and attempt < 3 and "in use" in str(exc).lower()
                if not retry:
                    raise

    def _launch(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
        self._stderr = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(self.command(self.port), stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=self._stderr,
                                          start_new_session=True)
        except OSError as exc:
            raise AnvilError(f"cannot execute {self.binary}: {exc}") from exc
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                raise AnvilError(f"anvil exited with code {self._proc.returncode}: "
                                 f"{self._stderr_text()}")
            try:
                if int(rpc(self.url, "eth_chainId", timeout=2.0), 16) == self.chain_id:
                    return
            except (OSError, Web3RPCError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                self._kill()
                raise AnvilError(f"anvil did not answer on {self.url} within "
                                 f"{self.startup_timeout}s: {self._stderr_text()}")
            time.sleep(0.01)  # poll interval of the readiness wait, not synchronisation

    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text: str = self._stderr.read().decode(errors="replace").strip()
        return text[-2000:] or "(no output)"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (anvil dumps `state_path` then exits), SIGKILL after `timeout` seconds.
        Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def restart(self) -> None:
        """Stop and start again on the same port (with `state_path`: from the dumped state)."""
        port = self._port
        self.stop()
        self._fixed_port = port
        self.start()

    def dump_state(self, path: Path | str | None = None) -> Path:
        """Write the live state (`anvil_dumpState`, as JSON) to `path` or `state_path`;
        a later `Anvil(state_path=...)` or `--load-state` starts from it."""
        target = Path(path) if path is not None else self.state_path
        if target is None:
            raise ValueError("dump_state needs a path (or Anvil(state_path=...))")
        blob = self.rpc("anvil_dumpState")
        raw = bytes.fromhex(blob.removeprefix("0x"))
        # The RPC answers gzip; the --state/--load-state flags read plain JSON.
        target.write_bytes(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
        return target

    def rpc(self, method: str, params: Sequence[Any] = ()) -> Any:
        return rpc(self.url, method, params)

    def mine(self, blocks: int = 1) -> None:
        self.rpc("anvil_mine", [hex(blocks)])

    def snapshot(self) -> str:
        return str(self.rpc("evm_snapshot"))

    def revert(self, snapshot_id: str) -> bool:
        return bool(self.rpc("evm_revert", [snapshot_id]))

    def rollback(self, depth: int) -> None:
        self.rpc("anvil_rollback", [depth])

    def set_next_block_timestamp(self, timestamp: int) -> None:
        self.rpc("evm_setNextBlockTimestamp", [timestamp])

    def increase_time(self, seconds: int) -> None:
        self.rpc("evm_increaseTime", [seconds])

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        # Last resort so an abandoned instance does not leak a process.
        if getattr(self, "_proc", None) is not None:
            with contextlib.suppress(Exception):
                self._kill()
