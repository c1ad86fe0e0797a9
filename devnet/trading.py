"""Trading that keeps going: a `Simulator` in a worker thread, a few blocks per second.

`LiveTrading(sim, rate=4, moves_per_block=8)` mines `rate` blocks per second of mixed random
moves (every move kind: transfers, share transfers, allowances, mints, redemptions, batches) until
`stop()`. Anything else the simulator should do goes through `schedule(fn, at_block)`: `fn(sim)`
runs in the trading thread (the simulator is not thread safe) before the `at_block`-th block
counted from `start()`, and its result or exception arrives in the returned future.

The chain's contents depend only on the seed and the block count, never on timing: a slow
machine mines fewer blocks per second, not different ones. Pacing restarts after a stall rather
than catching up in a burst.

Failure modes: an exception in the thread (the node died, `SimulationError`) ends it; `error`
holds it, `finished` is set, and every scheduled future not yet run is cancelled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from .simulate import Simulator

T = TypeVar("T")


class LiveTrading:
    def __init__(self, sim: Simulator, rate: float = 4.0, moves_per_block: int = 8) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.sim = sim
        self.rate = rate
        self.moves_per_block = moves_per_block
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._first: int | None = None  # chain head when trading started
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending: list[tuple[int, Callable[[Simulator], Any], Future[Any]]] = []
        self._thread = threading.Thread(target=self._run, name="demo-trading", daemon=True)

    @property
    def blocks(self) -> int:
        """Blocks mined since `start()`."""
        last = self.sim.summary.last_block
        return 0 if self._first is None or last is None else max(0, last - self._first)

    def start(self) -> LiveTrading:
        self._first = self.sim.summary.last_block or 0
        self._thread.start()
        return self

    def schedule(self, fn: Callable[[Simulator], T], at_block: int = 0) -> Future[T]:
        """Run `fn(sim)` in the trading thread before block number `at_block` of the live run
        (0: before the next block)."""
        future: Future[T] = Future()
        with self._lock:
            if self.finished.is_set():
                future.cancel()
            else:
                self._pending.append((at_block, fn, future))
        return future

    def stop(self, timeout: float = 3.0) -> bool:
        """Ask the thread to stop after the block in progress; True when it ended in time."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        started, done = time.monotonic(), 0
        try:
            while not self._stop.is_set():
                self._run_due()
                self.sim.run(1, self.moves_per_block)
                done += 1
                delay = started + done / self.rate - time.monotonic()
                if delay < -1.0:  # stalled (a long scheduled step, a slow node): restart the pace
                    started, done = time.monotonic(), 0
                elif delay > 0:
                    self._stop.wait(delay)
        except BaseException as exc:  # reported through `error`; the thread must not die silently
            self.error = exc
        finally:
            with self._lock:
                self.finished.set()
                pending, self._pending = self._pending, []
            for _, _, future in pending:
                future.cancel()

    def _run_due(self) -> None:
        with self._lock:
            due = [p for p in self._pending if p[0] <= self.blocks]
            self._pending = [p for p in self._pending if p[0] > self.blocks]
        for _, fn, future in due:
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(self.sim))
            except Exception as exc:
                future.set_exception(exc)
                raise
