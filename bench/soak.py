"""`make soak` (`python -m bench.soak`): `indexer run` for a chosen time under random faults.

A private anvil with the devnet xStocks and a private PostgreSQL (it gets restarted: never the
server of $DATABASE_URL), the daemon reading the chain through a JSON-RPC proxy that can stall,
refuse and fail. The loop trades a few blocks, injects one fault drawn at random, waits (with a
deadline) until the daemon has indexed the node's head again, and runs `indexer verify`. Faults:

- reorg: a snapshot, 1..max_depth blocks, revert, a longer branch with other trades; the proxy
  holds every request meanwhile, so the daemon sees the head replaced, never lower (as on a
  real node); with --rewinds some reorgs are left visible: the head goes back first;
- kill: SIGKILL of the daemon while the chain moves on, then a restart;
- stall: RPC answers slower than the client's timeout; refusal: 429, 500, garbage, dropped
  connections, and eth_getLogs ranges refused as too large for a while;
- postgres: a fast shutdown of the server for a few seconds, then a start on the same socket;
- custody: `indexer custody import` of a fresh attestation per underlying.

Prints the faults survived, the differences verify found and any failure (no recovery within the
deadline, the daemon dying on its own); exit 0 only with no difference and no failure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from devnet.anvil import Anvil
from devnet.deploy import World, deploy_world
from devnet.mirror import SimulationError
from devnet.node import Node
from devnet.postgres import EmbeddedPostgres, embedded_postgres, scratch_dir
from devnet.simulate import Simulator
from tests.rpcproxy import RpcProxy

REPO = Path(__file__).resolve().parent.parent
FAULTS = ("reorg", "kill", "stall", "refusal", "postgres", "custody")
RECOVERY_DEADLINE = 180.0


class Soak:
    def __init__(self, seconds: float, seed: int, max_depth: int, workdir: Path, json_path: Path | None = None,
                 rewinds: bool = False) -> None:
        self.json_path, self.blocks, self.rewinds = json_path, 0, rewinds
        self.seconds, self.rng, self.max_depth, self.dir = seconds, random.Random(seed), max_depth, workdir
        self.survived: Counter[str] = Counter()
        self.differences: list[str] = []
        self.failures: list[str] = []
        self.recovery: list[float] = []
        self.daemon: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.depths: list[int] = []
        self.notes: list[str] = []
        self.seed = seed

    # -- the parts ------------------------------------------------------------------------------

    def start_parts(self) -> None:
        self.pg: EmbeddedPostgres = embedded_postgres(self.dir / "pg")
        subprocess.run([str(self.pg.bin / "psql"), self.pg.dsn, "-qc", "CREATE DATABASE soak"], check=True,
                       capture_output=True)
        self.dsn = self.pg.dsn_for("soak")
        self.anvil = Anvil().start()
        self.world: World = deploy_world(self.anvil.url)
        self.node = Node(self.anvil.url)
        self.proxy = RpcProxy(self.anvil.url).__enter__()
        self.proxy.stall_seconds = 3.0
        self.config = self._config("indexer.toml", self.proxy.url, 'rpc_timeout = 1\n')
        self.direct = self._config("verify.toml", self.anvil.url, "")
        self.sim = Simulator(self.world, seed=self.seed, n_holders=12)

    def _config(self, name: str, rpc: str, extra: str) -> Path:
        world = World(**{**self.world.__dict__, "rpc_url": rpc})
        text = world.to_toml(self.dsn, max_reorg_depth=self.max_depth + 8)
        text = text.replace("max_reorg_depth", f"{extra}max_reorg_depth", 1)
        path = self.dir / name
        path.write_text(text)
        return path

    def stop_parts(self) -> None:
        self.stop_daemon(signal.SIGKILL)
        self.proxy.__exit__()
        self.anvil.stop()
        self.pg.stop()

    def cli(self, *args: str, config: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "RPC_URL", "INDEXER_CONFIG")}
        return subprocess.run([sys.executable, "-m", "indexer", "--config", str(config or self.direct), *args],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)

    def start_daemon(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "RPC_URL", "INDEXER_CONFIG")}
        with (self.dir / "daemon.log").open("ab") as log:
            self.daemon = subprocess.Popen([sys.executable, "-m", "indexer", "--config", str(self.config), "run"],
                                           cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)
        self.starts += 1

    def stop_daemon(self, sig: int = signal.SIGTERM) -> int | None:
        if self.daemon is None or self.daemon.poll() is not None:
            return None if self.daemon is None else self.daemon.returncode
        self.daemon.send_signal(sig)
        return self.daemon.wait(30)

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> int:
        started = time.monotonic()
        self.start_parts()
        try:
            self.start_daemon()
            self.recover("start")
            while time.monotonic() - started < self.seconds:
                self.trade()
                fault = self.rng.choice(FAULTS)
                getattr(self, f"fault_{fault}")()
                self.recover(fault)
            code = self.stop_daemon()
            if code != 0:
                self.failures.append(f"SIGTERM at the end: exit {code}")
            self.blocks = self.anvil.block_number()
        finally:
            self.stop_parts()
        self.report(time.monotonic() - started)
        return 0 if not self.differences and not self.failures else 1

    def trade(self, blocks: int | None = None, moves: int | None = None, batch: str | None = None) -> None:
        try:
            if batch is not None:
                self.sim.batch(batch, n=3)  # one transaction, one block
            else:
                self.sim.run(blocks=blocks or self.rng.randint(1, 3), moves_per_block=moves or self.rng.randint(2, 6))
        except SimulationError as exc:  # the trader's own mirror, not the indexer: trade on with a fresh one
            self.notes.append(f"simulator restarted: {str(exc)[:120]}")
            self.sim = Simulator(self.world, seed=self.rng.randint(1000, 10**6), n_holders=8)

    def recover(self, fault: str) -> None:
        """Wait until the daemon indexed the head (restarting it if it died on its own), then verify."""
        t0 = time.monotonic()
        while not self.at_head():
            if self.daemon is not None and self.daemon.poll() is not None:
                self.failures.append(f"after {fault}: the daemon exited {self.daemon.returncode}: {self.last_log()}")
                self.start_daemon()
            if time.monotonic() - t0 > RECOVERY_DEADLINE:
                self.failures.append(f"after {fault}: not at the head within {RECOVERY_DEADLINE:.0f} s")
                return
            time.sleep(0.2)  # polling a condition with a deadline
        self.recovery.append(time.monotonic() - t0)
        audit = self.cli("verify")
        if audit.returncode == 0:
            self.survived[fault] += 1
        else:
            self.differences.append(f"after {fault}: {(audit.stdout + audit.stderr).strip()[-400:]}")

    def at_head(self) -> bool:
        head = self.node.call("eth_getBlockByNumber", ["latest", False])
        got = subprocess.run([str(self.pg.bin / "psql"), self.dsn, "-tAc",
                              "SELECT block_number || ' ' || block_hash FROM cursors"],
                             capture_output=True, text=True, check=False)
        return got.returncode == 0 and got.stdout.strip() == f"{int(head['number'], 16)} {head['hash']}"

    def last_log(self) -> str:
        lines = (self.dir / "daemon.log").read_text(errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else ""

    # -- the faults -----------------------------------------------------------------------------

    def fault_reorg(self) -> None:
        rewind = self.rewinds and self.rng.random() < 0.5
        depth = self.rng.randint(1, self.max_depth)
        snap, base = self.anvil.snapshot(), self.anvil.block_number()
        while self.anvil.block_number() - base < depth:
            self.trade(batch=self.rng.choice(list(self.world.tokens)))
        old_head = self.anvil.block_number()
        if self.rng.random() < 0.5:  # half the time the daemon has seen the orphaned branch
            deadline = time.monotonic() + 60
            while not self.at_head() and time.monotonic() < deadline:
                time.sleep(0.1)
        if not rewind:
            self.proxy.inject(*["stall"] * 10_000)  # held until the new branch is longer
        self.anvil.revert(snap)
        self.sim = Simulator(self.world, seed=self.rng.randint(1000, 10**6), n_holders=8)
        while self.anvil.block_number() <= old_head:
            self.trade(1, self.rng.randint(1, 4))
        self.proxy.faults.clear()
        self.depths.append(depth)

    def fault_kill(self) -> None:
        if self.rng.random() < 0.5:
            self.trade(1, 3)
        self.stop_daemon(signal.SIGKILL)
        self.trade()  # the chain moves on while nothing indexes it
        self.start_daemon()

    def fault_stall(self) -> None:
        self.proxy.inject(*["stall"] * self.rng.randint(1, 4))
        self.trade()

    def fault_refusal(self) -> None:
        self.proxy.inject(*self.rng.choices(["429", "500", "garbage", "drop"], k=self.rng.randint(2, 8)))
        self.proxy.max_range = self.rng.choice([None, 1, 2, 5])
        self.trade()
        self.recover("refusal (while refusing ranges)")
        self.proxy.max_range = None

    def fault_postgres(self) -> None:
        self.pg.stop()
        self.trade()
        time.sleep(self.rng.uniform(0.5, 5.0))  # the outage's length, not a synchronisation
        self.pg.start()

    def fault_custody(self) -> None:
        at = int(self.node.call("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
        stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows = [f"{s.removesuffix('x')},Clearstream,acc-{s},{10**12},0,{stamp},The Network Firm,false"
                for s in self.world.tokens]
        path = self.dir / f"custody-{at}.csv"
        path.write_text("underlying,custodian,account,settled_shares,in_transit_shares,as_of,attestor,ripcord\n"
                        + "\n".join(rows) + "\n")
        done = self.cli("custody", "import", str(path))
        if done.returncode != 0:
            self.failures.append(f"custody import exited {done.returncode}: {done.stderr.strip()[-300:]}")

    # -- the report -----------------------------------------------------------------------------

    def report(self, elapsed: float) -> None:
        blocks = self.blocks
        survived = sum(self.survived.values())
        worst = max(self.recovery, default=0.0)
        print(f"soak: {elapsed / 60:.1f} min, seed {self.seed}, {blocks} blocks on the final branch, "
              f"{self.starts} daemon starts")
        print("faults survived: " + ", ".join(f"{k} {v}" for k, v in sorted(self.survived.items())) +
              f" (total {survived}); reorg depths {sorted(self.depths)}")
        print(f"recovery median {_median(self.recovery):.1f} s, worst {worst:.1f} s")
        print(f"differences found: {len(self.differences)}")
        for line in self.differences + self.failures:
            print(f"  {line}")
        print(f"failures: {len(self.failures)}")
        for note in self.notes:
            print(f"  ({note})")
        if self.json_path is None:
            return
        self.json_path.write_text(json.dumps({
            "minutes": round(elapsed / 60, 2), "seed": self.seed, "blocks": blocks, "survived": dict(self.survived),
            "differences": self.differences, "failures": self.failures, "starts": self.starts,
            "reorg_depths": sorted(self.depths), "notes": self.notes,
            "recovery_median_s": round(_median(self.recovery), 2), "recovery_worst_s": round(worst, 2)}, indent=2))


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES") or 10))
    p.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED") or time.time()) % 100_000)
    p.add_argument("--max-depth", type=int, default=20, help="deepest reorg injected (blocks)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--rewinds", action="store_true", help="let half the reorgs show a lower head first")
    args = p.parse_args(argv)
    workdir = scratch_dir("xstock-soak-")
    try:
        return Soak(args.minutes * 60, args.seed, args.max_depth, workdir, args.json, args.rewinds).run()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
