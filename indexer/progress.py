"""Progress of long work: a bar with rate and ETA on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

from . import logconfig

log = logconfig.get("progress")


class Progress:
    """Track blocks done towards a target for one chain. ``update`` after each step."""

    def __init__(self, chain: str, first: int, target: int, every: float = 5.0, tty: bool | None = None) -> None:
        self.chain = chain
        self.first = first
        self.target = target
        self.every = every
        self.started = time.monotonic()
        self.last_log = self.started
        self.logs = 0
        self.transfers = 0
        self.block = first - 1
        self._bar: Any = None
        self._task: Any = None
        if sys.stderr.isatty() if tty is None else tty:
            from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
                            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), transient=False)
            self._task = self._bar.add_task(chain, total=max(1, target - first + 1), rate="")

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, block: int, logs_n: int, transfers: int) -> None:
        self.block = block
        self.logs += logs_n
        self.transfers += transfers
        now = time.monotonic()
        elapsed = max(now - self.started, 1e-9)
        done = block - self.first + 1
        if self._bar is not None:
            self._bar.update(self._task, completed=done, rate=f"{self.logs / elapsed:,.0f} logs/s")
        elif now - self.last_log >= self.every:
            self.last_log = now
            remaining = self.target - block
            rate = done / elapsed
            log.info("backfill_progress", chain=self.chain, block=block, target=self.target,
                     pct=round(100.0 * done / max(1, self.target - self.first + 1), 1),
                     logs=self.logs, logs_per_s=round(self.logs / elapsed),
                     eta_s=round(remaining / rate) if rate else None)

    def summary(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        return {"chain": self.chain, "to_block": self.block, "logs": self.logs, "transfers": self.transfers,
                "seconds": round(elapsed, 3), "logs_per_s": round(self.logs / elapsed) if elapsed else 0}
