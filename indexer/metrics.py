"""Observability: Prometheus metrics and a health endpoint on one small HTTP server.

``/metrics`` serves the registry below; ``/healthz`` answers 200 "ok" when every chain is within
``daemon.max_lag_seconds`` of its head, its loop progresses, its node answers and is not behind
our cursor, else 503 with the reasons, one per line (see :meth:`Health.problems`). The head,
indexed-block and lag gauges are set from start-up on, and again at each scrape: the lag in
seconds grows while a step is slow or stuck, and /metrics says so as /healthz does. Metric
labels never carry URLs (secrets live there).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .errors import ConfigError

if TYPE_CHECKING:
    from aiohttp import web

REGISTRY = CollectorRegistry()
INDEXED_BLOCK = Gauge("indexer_indexed_block", "Last block committed", ["chain"], registry=REGISTRY)
HEAD_BLOCK = Gauge("indexer_head_block", "Latest block the node reported", ["chain"], registry=REGISTRY)
LAG_BLOCKS = Gauge("indexer_lag_blocks", "Head minus indexed block", ["chain"], registry=REGISTRY)
LAG_SECONDS = Gauge("indexer_lag_seconds", "0 at the target block, else seconds since the indexed block was mined",
                    ["chain"], registry=REGISTRY)
LOGS = Counter("indexer_logs", "Logs fetched and indexed", ["chain"], registry=REGISTRY)
TRANSFERS = Counter("indexer_transfers", "Transfers indexed", ["chain"], registry=REGISTRY)
BATCH_SECONDS = Histogram("indexer_batch_seconds", "Fetch-to-commit time of one batch", ["chain"], registry=REGISTRY,
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
REORGS = Counter("indexer_reorgs", "Reorgs handled", ["chain"], registry=REGISTRY)
REORG_DEPTH = Histogram("indexer_reorg_depth", "Depth of handled reorgs, blocks", ["chain"], registry=REGISTRY,
                        buckets=(1, 2, 3, 5, 8, 13, 21, 34, 64, 128))
RPC_ERRORS = Counter("indexer_rpc_errors", "Failed RPC attempts by kind", ["chain", "kind"], registry=REGISTRY)
STEP_RETRIES = Counter("indexer_step_retries", "Sync steps tried again after a retryable error, by reason",
                       ["chain", "reason"], registry=REGISTRY)
OPEN_FLAGS = Gauge("indexer_open_flags", "Open backing flags (acknowledged: yes|no)",
                   ["rule", "severity", "acknowledged"], registry=REGISTRY)
DB_RETRIES = Counter("indexer_db_retries", "Database operations retried after a lost connection", registry=REGISTRY)


@dataclass
class ChainHealth:
    """What the daemon knows of one chain, read by /healthz and published as gauges."""

    indexed_block: int = -1
    indexed_time: float = 0.0  # timestamp of the indexed block (chain time)
    head: int = -1
    target: int = -1  # head minus confirmations: what "caught up" means
    last_progress: float = field(default_factory=time.time)
    rpc_error: str | None = None
    caught_up: bool = False
    rpc: Any = None  # the chain's Rpc: its last_error is read live, even mid-retry
    retry: Any = None  # the chain's StepRetry: failures and the reason being retried
    behind: str | None = None  # why the node is behind our cursor, while it is

    def lag_seconds(self, now: float) -> float:
        """0 at the target; else seconds since the last indexed block was mined."""
        if self.indexed_block >= self.target or not self.indexed_time:
            return 0.0
        return max(0.0, now - self.indexed_time)

    def publish(self, name: str, now: float | None = None) -> None:
        """Set the chain's gauges (from start-up on, not only after a batch)."""
        if self.head >= 0:
            HEAD_BLOCK.labels(name).set(self.head)
        if self.indexed_block >= 0:
            INDEXED_BLOCK.labels(name).set(self.indexed_block)
        if self.head >= 0 and self.indexed_block >= 0:
            LAG_BLOCKS.labels(name).set(max(0, self.head - self.indexed_block))
        LAG_SECONDS.labels(name).set(self.lag_seconds(time.time() if now is None else now))


@dataclass
class Health:
    max_lag_seconds: float
    chains: dict[str, ChainHealth] = field(default_factory=dict)
    retries_before_unhealthy: int = 3  # a lone ChainMoved is routine; a step failing again and again is not

    def publish(self) -> None:
        """Every chain's gauges as of now."""
        now = time.time()
        for name, c in self.chains.items():
            c.publish(name, now)

    def problems(self, now: float | None = None) -> list[str]:
        """One line per reason a chain is not healthy: the RPC failing, the node behind our
        cursor, no progress of the loop, a lag over max_lag_seconds, a step failing repeatedly."""
        now = time.time() if now is None else now
        out = []
        for name, c in self.chains.items():
            error = c.rpc.last_error if c.rpc is not None else c.rpc_error
            if error:
                out.append(f"chain {name}: rpc failing: {error}")
            if c.behind:
                out.append(c.behind)
            stalled = now - c.last_progress
            if stalled > self.max_lag_seconds:
                out.append(f"chain {name}: no progress for {stalled:.0f} s (bound {self.max_lag_seconds:.0f} s)")
            lag = c.lag_seconds(now)
            if lag > self.max_lag_seconds:
                out.append(f"chain {name}: lag {lag:.0f} s over max_lag_seconds {self.max_lag_seconds:g}: "
                           f"indexed block {c.indexed_block}, head {c.head}")
            if c.retry is not None and c.retry.failures >= self.retries_before_unhealthy and not c.behind:
                out.append(f"chain {name}: step retried {c.retry.failures} times: {c.retry.last}")
        return out


async def serve(health: Health, host: str, port: int) -> web.AppRunner:
    """Start the HTTP server; the caller keeps the runner and calls ``cleanup()`` at exit."""
    from aiohttp import web  # the daemon's alone: a backfill does not serve


    async def metrics(_: web.Request) -> web.Response:
        health.publish()  # the lag grows while a step is slow or stuck: as of this scrape, as /healthz says
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        problems = health.problems()
        if problems:
            return web.Response(status=503, text="\n".join(problems) + "\n")
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:  # in use, or an address this machine does not have
        await runner.cleanup()
        raise ConfigError(f"daemon.metrics_port: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return runner
