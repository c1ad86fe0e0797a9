"""/metrics reports the lag as of the scrape: a daemon stuck in a slow step published its gauges
when the step began, and an alert on indexer_lag_seconds must still see the lag grow."""

from __future__ import annotations

import asyncio
import re
import time

from devnet.anvil import free_port
from indexer import metrics


async def scrape(port: int, path: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer.decode()


async def test_the_lag_gauge_is_as_of_the_scrape_not_of_the_last_step() -> None:
    chain = metrics.ChainHealth(indexed_block=10, indexed_time=time.time() - 30, head=20, target=20)
    chain.publish("stuck", now=chain.indexed_time + 0.5)  # what the daemon published as the slow step began
    health = metrics.Health(max_lag_seconds=10, chains={"stuck": chain})
    port = free_port()
    runner = await metrics.serve(health, "127.0.0.1", port)
    try:
        body = await scrape(port, "/metrics")
        healthz = await scrape(port, "/healthz")
    finally:
        await runner.cleanup()
    match = re.search(r'^indexer_lag_seconds\{chain="stuck"\} (\S+)$', body, re.MULTILINE)
    assert match, body[-500:]
    assert float(match.group(1)) >= 30
    assert "over max_lag_seconds 10" in healthz  # the two agree
    assert re.search(r'^indexer_lag_blocks\{chain="stuck"\} 10\.0$', body, re.MULTILINE)


async def test_at_the_target_the_lag_is_zero() -> None:
    chain = metrics.ChainHealth(indexed_block=20, indexed_time=time.time() - 30, head=20, target=20)
    port = free_port()
    runner = await metrics.serve(metrics.Health(max_lag_seconds=10, chains={"caught": chain}), "127.0.0.1", port)
    try:
        body = await scrape(port, "/metrics")
    finally:
        await runner.cleanup()
    assert re.search(r'^indexer_lag_seconds\{chain="caught"\} 0\.0$', body, re.MULTILINE), body[-500:]
