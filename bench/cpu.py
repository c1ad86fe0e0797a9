"""CPU seconds of the processes around the indexer: anvil, PostgreSQL, and this harness.

A `CpuMeter` reads every watched process tree before and after a phase. A tree's CPU is the
root's user+system, plus what its exited children used (`children_user`/`children_system`:
the kernel adds a child's time to its parent when the parent reaps it, which the postmaster
does for every backend), plus the user+system of the children alive now. So a PostgreSQL
backend that starts and ends inside the phase is counted, and so is one that outlives it.
The indexer's own CPU comes from wait4's rusage of its process (runner.py), not from here.
"""

from __future__ import annotations

import itertools
import resource
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil


def tree_seconds(roots: Sequence[psutil.Process], children: Sequence[psutil.Process] | None = None) -> float:
    """CPU seconds used so far by the trees under `roots` (see the module docstring).
    `children`: the live descendants when the caller knows them (a scan of /proc costs ~2 ms)."""
    total = 0.0
    for child in children if children is not None else descendants(roots):
        try:
            t = child.cpu_times()
        except psutil.NoSuchProcess:
            continue  # exited meanwhile: counted in the parent's children_* once reaped
        total += t.user + t.system
    for root in roots:
        t = root.cpu_times()
        total += t.user + t.system + t.children_user + t.children_system
    return total


def descendants(roots: Sequence[psutil.Process]) -> list[psutil.Process]:
    return [child for root in roots for child in root.children(recursive=True)]


def machine_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (every process, the kernel's work included;
    steal and guest time excluded)."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


def busy_cores(seconds: float = 1.0) -> float:
    """Cores the whole machine keeps busy over the next `seconds` (before a run: is it idle?)."""
    before, started = machine_seconds(), time.perf_counter()
    time.sleep(seconds)
    return round((machine_seconds() - before) / (time.perf_counter() - started), 2)


def speed_probe(runs: int = 5) -> float:
    """Milliseconds of CPU a fixed pure-Python loop takes here, fastest of ``runs``: how fast this
    machine runs Python today, beside the figures it measures (the same code's CPU per log moved
    from 3.4 to 10.7 us between days of one machine). It uses nothing of the indexer, so it does
    not move when our code does: the kind of work a log costs (hex words to ints, dict lookups,
    text formatting), 100,000 times."""
    words = [f"{i * 2654435761 % 2**160:064x}" for i in range(1000)]
    best = float("inf")
    for _ in range(runs):
        started = time.process_time()
        seen: dict[int, int] = {}
        out = []
        for i in range(100_000):
            value = int(words[i % 1000], 16)
            seen[value] = seen.get(value, 0) + i
            out.append(f"{i}\t0x{words[i % 997][24:]}\t{value}\n")
        "".join(out)
        best = min(best, time.process_time() - started)
    return round(best * 1000, 1)


def self_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds per named tree over one phase: `start()`, the phase, `stop()`. Also
    `harness` (this process) and `machine` (every process on the machine: what is left after
    the named trees is someone else's work competing for the cores).

    A tree given as None (PostgreSQL behind a $DATABASE_URL with no local process) is reported
    as None: unknown, not zero."""

    def __init__(self, trees: Mapping[str, Sequence[psutil.Process] | None]) -> None:
        self.trees = dict(trees)
        self._before: dict[str, float | None] = {}
        self._started = 0.0
        self.seconds: dict[str, float | None] = {}
        self.window = 0.0  # wall seconds between start() and stop()

    def _read(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {"harness": self_seconds(), "machine": machine_seconds()}
        for name, roots in self.trees.items():
            try:
                out[name] = tree_seconds(roots) if roots is not None else None
            except psutil.Error:  # gone, or not ours to read
                out[name] = None
        return out

    def start(self) -> CpuMeter:
        self._before = self._read()
        self._started = time.perf_counter()
        return self

    def stop(self, also: float = 0.0) -> dict[str, float | None]:
        """CPU seconds per tree over the phase, and `other`: the machine's busy time that is
        none of the trees, nor this process, nor `also` seconds measured elsewhere (the
        indexer's rusage)."""
        self.window = time.perf_counter() - self._started
        after = self._read()
        for name, value in after.items():
            before = self._before.get(name)
            self.seconds[name] = None if value is None or before is None else round(value - before, 3)
        machine = self.seconds["machine"]
        if machine is not None:
            ours = also + sum(v for k, v in self.seconds.items() if k != "machine" and v is not None)
            self.seconds["other"] = round(max(0.0, machine - ours), 3)
        return self.seconds


class Sampler:
    """CPU of named trees every `period` seconds, in a thread, while a phase runs: where the
    time goes inside it (who is busy when), not only in total. `timeline()` gives, for each
    interval, the cores each tree kept busy. Descendants are looked up every `rescan`
    samples; a process found late brings its whole CPU so far into that interval."""

    def __init__(self, trees: Mapping[str, Sequence[psutil.Process] | None], period: float = 0.2,
                 rescan: int = 5) -> None:
        self.trees = {k: v for k, v in trees.items() if v is not None}
        self.period = period
        self.rescan = rescan
        self._children: dict[str, list[psutil.Process]] = {}
        self._samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _run(self) -> None:
        for i in itertools.count():
            now = time.perf_counter()
            values: dict[str, float] = {}
            for name, roots in self.trees.items():
                try:
                    if i % self.rescan == 0:
                        self._children[name] = descendants(roots)
                    values[name] = tree_seconds(roots, self._children[name])
                except psutil.Error:
                    continue
            self._samples.append((now, values))
            if self._stop.wait(self.period):
                return

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def timeline(self) -> dict[str, list[float]]:
        """{"t": interval ends (s from the first sample), name: cores busy in each interval}."""
        out: dict[str, list[float]] = {"t": [], **{name: [] for name in self.trees}}
        if not self._samples:
            return out
        origin = self._samples[0][0]
        for (t0, a), (t1, b) in itertools.pairwise(self._samples):
            out["t"].append(round(t1 - origin, 2))
            for name in self.trees:
                busy = (b[name] - a[name]) / (t1 - t0) if name in a and name in b else 0.0
                out[name].append(round(max(0.0, busy), 2))
        return out


# Commands whose start-up `make bench` reports: argument parsing alone, a read-only command on
# the indexed database, and a backfill with nothing left to do (connect, lock, check, exit).
STARTUP_COMMANDS: tuple[tuple[str, ...], ...] = (("--help",), ("status",), ("backfill",))
STARTUP_TARGET_S = 0.3


def startup(config: Path, workdir: Path, runs: int = 3) -> dict[str, dict[str, float]]:
    """Wall and CPU seconds of whole `indexer` commands (through bench.launch, as a user runs
    them), the fastest of `runs` each: what a command costs before it does any work."""
    from .runner import run  # the runner's subprocess machinery, only when measuring

    out: dict[str, dict[str, float]] = {}
    for args in STARTUP_COMMANDS:
        best: dict[str, float] | None = None
        for i in range(runs):
            done = run(config, *args, workdir=workdir, timeout=120.0, name=f"startup-{args[0].strip('-')}-{i}")
            done.check(0)
            if best is None or done.seconds < best["wall_s"]:
                best = {"wall_s": round(done.seconds, 3), "cpu_s": round(done.cpu_s, 3)}
        assert best is not None
        out[" ".join(args)] = best | {"target_s": STARTUP_TARGET_S}
    return out
