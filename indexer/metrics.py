"""Observability: Prometheus metrics and a health endpoint on one small HTTP server.

``/metrics`` serves the registry below; ``/healthz`` answers 200 when every chain is within
``daemon.max_lag_seconds`` of its head and its node answers, else 503 with the reasons, one per
line. Metric labels never carry URLs (secrets live there).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry()
INDEXED_BLOCK = Gauge("indexer_indexed_block", "Last block committed", ["chain"], registry=REGISTRY)
HEAD_BLOCK = Gauge("indexer_head_block", "Latest block the node reported", ["chain"], registry=REGISTRY)
LAG_BLOCKS = Gauge("indexer_lag_blocks", "Head minus indexed block", ["chain"], registry=REGISTRY)
LAG_SECONDS = Gauge("indexer_lag_seconds", "Seconds since the indexed block was mined", ["chain"], registry=REGISTRY)
LOGS = Counter("indexer_logs", "Logs fetched and indexed", ["chain"], registry=REGISTRY)
TRANSFERS = Counter("indexer_transfers", "Transfers indexed", ["chain"], registry=REGISTRY)
BATCH_SECONDS = Histogram("indexer_batch_seconds", "Fetch-to-commit time of one batch", ["chain"], registry=REGISTRY,
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
REORGS = Counter("indexer_reorgs", "Reorgs handled", ["chain"], registry=REGISTRY)
REORG_DEPTH = Histogram("indexer_reorg_depth", "Depth of handled reorgs, blocks", ["chain"], registry=REGISTRY,
                        buckets=(1, 2, 3, 5, 8, 13, 21, 34, 64, 128))
RPC_ERRORS = Counter("indexer_rpc_errors", "Failed RPC attempts by kind", ["chain", "kind"], registry=REGISTRY)
OPEN_FLAGS = Gauge("indexer_open_flags", "Open backing flags (acknowledged: yes|no)",
                   ["rule", "severity", "acknowledged"], registry=REGISTRY)
DB_RETRIES = Counter("indexer_db_retries", "Database operations retried after a lost connection", registry=REGISTRY)


@dataclass
class ChainHealth:
    indexed_block: int = -1
    indexed_time: float = 0.0
    head: int = -1
    last_progress: float = field(default_factory=time.time)
    rpc_error: str | None = None
    caught_up: bool = False
    rpc: Any = None  # the chain's Rpc: its last_error is read live, even mid-retry


@dataclass
class Health:
    max_lag_seconds: float
    chains: dict[str, ChainHealth] = field(default_factory=dict)

    def problems(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        out = []
        for name, c in self.chains.items():
            error = c.rpc.last_error if c.rpc is not None else c.rpc_error
            if error:
                out.append(f"chain {name}: rpc failing: {error}")
            stalled = now - c.last_progress
            if stalled > self.max_lag_seconds:
                out.append(f"chain {name}: no progress for {stalled:.0f} s (bound {self.max_lag_seconds:.0f} s)")
            elif not c.caught_up and c.head - c.indexed_block > 0 and c.indexed_time \
                    and now - c.indexed_time > self.max_lag_seconds:
                out.append(f"chain {name}: {c.head - c.indexed_block} blocks behind head")
        return out


async def serve(health: Health, host: str, port: int) -> web.AppRunner:
    """Start the HTTP server; the caller keeps the runner and calls ``cleanup()`` at exit."""

    async def metrics(_: web.Request) -> web.Response:
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
    await web.TCPSite(runner, host, port).start()
    return runner
