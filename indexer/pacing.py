"""How much the JSON-RPC transport (rpc.py) keeps in flight: pacing by what the node accepts.

A hosted provider tells how much it accepts only by refusing: HTTP 429 (or a rate-limit error
in the JSON) and timeouts. ``Pacer`` keeps a window, in request cost (a batch of n calls costs
n, as providers count it), that may be in flight at once:

- every clean answer grows it by ``step`` * cost / window (a quarter of a request per window's
  worth of answers: a provider's rate bucket holds about a second, so a slow climb back after a
  cut loses nothing, while a fast one would meet the limit again at once);
- a refusal or a timeout halves it, once per window: answers to requests sent before the last
  cut say nothing new about the current window and do not cut again;
- after a refusal nothing is sent for a pause (the provider's Retry-After when it gives one, else
  ``pause``, doubled while refusals go on, up to ``max_pause``), reset by a clean answer;
- a request costing more than the window is sent alone; once the node has refused anything,
  what follows it waits too, in proportion (a window of 0.5 sends a request of cost 1 every
  other round trip), so the window can go below one request and still mean a rate.

A node without limits (a local one) never refuses, so the window only grows and pacing costs
nothing. Pure asyncio, no I/O; the caller reports each outcome with ``release``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["clean", "throttled", "timeout", "other"]


@dataclass(frozen=True)
class Ticket:
    cost: int
    sent: float  # loop time when the request was let through


class Pacer:
    def __init__(self, window: float = 16.0, floor: float = 0.1, ceiling: float = 1024.0, pause: float = 0.1,
                 max_pause: float = 10.0, step: float = 0.25) -> None:
        self.window = window
        self.step = step
        self.floor = floor
        self.ceiling = ceiling
        self.base_pause = pause
        self.max_pause = max_pause
        self.pause = pause
        self.inflight = 0
        self.resume_at = 0.0  # nothing is sent before this loop time
        self.cut_at = float("-inf")  # loop time of the last cut of the window
        self.throttled = 0  # refusals seen (for logs and tests)
        self._changed: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:  # created in the running loop, on first use
            self._changed = asyncio.Condition()
        return self._changed

    async def acquire(self, cost: int = 1) -> Ticket:
        """Wait until a request of ``cost`` may go: the pause is over and it fits the window (or
        nothing else is in flight)."""
        loop = asyncio.get_running_loop()
        changed = self._condition()
        async with changed:
            while True:
                wait = self.resume_at - loop.time()
                if wait > 0:
                    try:
                        await asyncio.wait_for(changed.wait(), wait)
                    except TimeoutError:
                        pass
                    continue
                if self.inflight == 0 or self.inflight + cost <= self.window:
                    break
                await changed.wait()
            self.inflight += cost
            return Ticket(cost, loop.time())

    async def release(self, ticket: Ticket, outcome: Outcome, retry_after: float | None = None) -> None:
        """The answer to ``ticket``'s request came back (``outcome``); adapt and wake waiters."""
        now = asyncio.get_running_loop().time()
        self.inflight -= ticket.cost
        if ticket.cost > self.window and self.cut_at > float("-inf"):
            spaced = (now - ticket.sent) * (ticket.cost / self.window - 1)
            self.resume_at = max(self.resume_at, now + min(spaced, self.max_pause))
        if outcome == "clean":
            grow = self.step * min(ticket.cost, self.window) / max(self.window, 1.0)
            self.window = min(self.ceiling, self.window + grow)
            self.pause = self.base_pause
        elif outcome in ("throttled", "timeout"):
            if ticket.sent >= self.cut_at:  # the first news about the current window
                self.window = max(self.floor, self.window / 2)
                self.cut_at = now
                if outcome == "throttled":
                    self.pause = min(self.max_pause, self.pause * 2)
            if outcome == "throttled":
                self.throttled += 1
                wait = retry_after if retry_after is not None and retry_after >= 0 else self.pause
                self.resume_at = max(self.resume_at, now + min(wait, self.max_pause))
        changed = self._condition()
        async with changed:
            changed.notify_all()


def retry_after(value: str | None) -> float | None:
    """Seconds from an HTTP Retry-After header; None when absent or a date (the pause then)."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
