"""Trying a sync step again after a Retryable that escaped the I/O edges.

The I/O edges (rpc.py, store.py) retry single requests; what they cannot settle inside one call
reaches the step's caller: the chain moved while a range was read (ChainMoved), a backend had no
state at a past block (StateUnavailable), the node is behind our cursor (NodeBehind), or an edge
with a bounded budget gave up. :class:`StepRetry` counts each in
``indexer_step_retries_total{chain, reason}``, logs it, and says how long to wait (exponential
backoff with jitter, reset by a step that succeeds). The daemon retries forever; ``backfill``
gives up after a few attempts and raises the last error.
"""

from __future__ import annotations

import random
import re

from . import logconfig
from .errors import NodeBehind, Retryable

log = logconfig.get("retry")
NODE_BEHIND_CAP = 5.0  # seconds: a node catching up again is followed closely


def reason_of(exc: BaseException) -> str:
    """The metric label of an error: its class name in snake case (chain_moved, ...)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


class StepRetry:
    def __init__(self, chain: str, attempts: int | None = None, initial: float = 0.5, cap: float = 30.0) -> None:
        self.chain = chain
        self.attempts = attempts  # None: forever
        self.initial, self.cap = initial, cap
        self.failures = 0
        self.last: str | None = None  # "reason: message" of the failure being retried, for /healthz

    def failed(self, exc: Retryable) -> float:
        """Count ``exc``; return the seconds to wait before the next attempt, or raise ``exc``
        once the budget is spent."""
        self.failures += 1
        reason = reason_of(exc)
        from . import metrics  # prometheus_client: on a retry, not on every command's start-up

        metrics.STEP_RETRIES.labels(self.chain, reason).inc()
        self.last = f"{reason}: {str(exc)[:300]}"
        if self.attempts is not None and self.failures >= self.attempts:
            raise exc
        cap = min(self.cap, NODE_BEHIND_CAP) if isinstance(exc, NodeBehind) else self.cap
        delay = float(min(cap, self.initial * 2 ** (self.failures - 1)) * random.uniform(0.75, 1.0))
        log.warning("step_retry", chain=self.chain, reason=reason, error=str(exc)[:300], attempt=self.failures,
                    wait_s=round(delay, 2))
        return delay

    def succeeded(self) -> None:
        if self.failures:
            log.info("step_recovered", chain=self.chain, after_attempts=self.failures)
        self.failures, self.last = 0, None
