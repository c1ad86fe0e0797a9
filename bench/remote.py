"""The remote-provider benchmark: `python -m bench remote` (also `make bench BENCH_ARGS=remote`).

1. workload  our xStocks and a plain ERC-20 on a fresh anvil, `--holders` holders, then
             `--bursts` bursts of transfers (blocks of 600 moves, ~30M gas) with `--gap` empty
             blocks mined between them; shown through the provider stretched `--stretch` times
             (bench/provider.py), a history of hundreds of thousands of blocks, mostly empty.
2. ceiling   what the provider itself allows: a minimal client fetching every log the indexer
             needs with eth_getLogs alone, obeying the provider's refusals (it takes the range the
             provider suggests) and retrying 429s at once; every (blocks per request,
             concurrency) pair over the whole span, the fastest is the ceiling.
3. backfill  `indexer backfill` through the provider on a fresh database: logs/s, its ratio to
             the ceiling, JSON-RPC calls per method, 429s and refusals the provider answered.
4. verify    `indexer verify` through the provider (rate limit lifted: the audit is not measured)
             must exit 0: the database equals the chain.

Results: a table on stdout and bench/results/remote-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import sys
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from devnet import Simulator, World
from devnet.deploy import deploy_world
from indexer.decode import FACTORY_TOPICS, TOKEN_TOPICS

from . import runner
from .env import GAS_LIMIT, SETUP_GAS_LIMIT, Environment, machine_info
from .harness import say
from .provider import Provider
from .report import RESULTS_DIR, write

RANGES = (1000, 2000)
CONCURRENCY = (1, 2, 4)
TARGET = 0.6


@dataclasses.dataclass(frozen=True)
class Options:
    holders: int = 200
    bursts: int = 6
    burst_transfers: int = 12_000  # 20 blocks of ~1,080 logs: 2K-block ranges inside one meet the 10K log cap
    gap: int = 150  # real empty blocks between bursts
    stretch: int = 200
    rtt: float = 0.05
    rate: float = 25.0
    max_range: int = 2000
    max_logs: int = 10_000
    seed: int = 1


def generate(env: Environment, opts: Options) -> tuple[World, Simulator, dict[str, Any]]:
    node = env.anvil
    started = time.perf_counter()
    world = deploy_world(node.url)
    node.rpc("anvil_setBlockGasLimit", [hex(SETUP_GAS_LIMIT)])
    node.mine()
    sim = Simulator(world, seed=opts.seed, n_holders=opts.holders)
    sim.setup()
    node.rpc("anvil_setBlockGasLimit", [hex(GAS_LIMIT)])
    node.mine()
    sim._gas_limit = GAS_LIMIT
    transfers = 0
    for _ in range(opts.bursts):
        node.mine(opts.gap)
        transfers += sim.bulk_transfers(opts.burst_transfers, per_tx=200, txs_per_block=3).transfers
    node.mine(opts.gap)
    last = node.block_number()
    return world, sim, {"transfers": transfers, "real_blocks": last + 1, "deploy_block": world.deploy_block,
                        "blocks": last * opts.stretch + 1, "stretch": opts.stretch,
                        "generate_s": round(time.perf_counter() - started, 1)}


async def fetch_all(url: str, addresses: list[str], first: int, last: int, blocks: int,
                    concurrency: int) -> dict[str, Any]:
    """Every log in [first, last] with eth_getLogs alone; refusals are cut where the provider
    says, 429s retried at once."""
    topics = [list(TOKEN_TOPICS + FACTORY_TOPICS)]
    todo: deque[tuple[int, int]] = deque((s, min(last, s + blocks - 1)) for s in range(first, last + 1, blocks))
    ids = itertools.count(1)
    counts = {"logs": 0, "requests": 0, "http_429": 0, "refused": 0}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            while todo:
                lo, hi = todo.popleft()
                body = orjson.dumps({"jsonrpc": "2.0", "id": next(ids), "method": "eth_getLogs", "params": [
                    {"address": addresses, "topics": topics, "fromBlock": hex(lo), "toBlock": hex(hi)}]})
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                    status, raw = resp.status, await resp.read()
                counts["requests"] += 1
                if status == 429:
                    counts["http_429"] += 1
                    todo.appendleft((lo, hi))
                    continue
                reply = orjson.loads(raw)
                if "error" in reply:
                    counts["refused"] += 1
                    message = reply["error"]["message"]
                    suggested = int(message.rsplit("[", 1)[1].split(",")[1].strip(" ]"), 16)
                    todo.appendleft((suggested + 1, hi))
                    todo.appendleft((lo, suggested))
                    continue
                counts["logs"] += len(reply["result"])

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {"blocks_per_request": blocks, "concurrency": concurrency, **counts, "seconds": round(seconds, 2),
            "logs_per_s": round(counts["logs"] / seconds)}


async def ceiling(provider: Provider, addresses: list[str], first: int, last: int) -> dict[str, Any]:
    trials = []
    for blocks in RANGES:
        for concurrency in CONCURRENCY:
            provider.set_rate(provider.bucket.rate)  # each trial starts with a full bucket
            trials.append(await fetch_all(provider.url, addresses, first, last, blocks, concurrency))
            say(f"ceiling trial {blocks} blocks x {concurrency}: {trials[-1]['logs_per_s']:,} logs/s")
    best = max(trials, key=lambda t: t["logs_per_s"])
    return best | {"trials": trials}


async def run(opts: Options) -> dict[str, Any]:
    env = Environment().start()
    started = datetime.now(UTC)
    result: dict[str, Any] = {"schema": 1, "kind": "remote", "started_at": started.isoformat(timespec="seconds"),
                              "options": dataclasses.asdict(opts)}
    try:
        await env.locate_postgres()
        result["machine"] = await machine_info(env)
        say(f"generating {opts.bursts} bursts of {opts.burst_transfers:,} transfers, {opts.gap} blocks apart")
        world, _, workload = generate(env, opts)
        result["workload"] = workload
        with Provider(env.anvil.url, rtt=opts.rtt, rate=opts.rate, max_range=opts.max_range,
                      max_logs=opts.max_logs, stretch=opts.stretch) as provider:
            first, last = world.deploy_block * opts.stretch, workload["blocks"] - 1
            addresses = [*world.all_tokens.values(), world.factory]
            say(f"provider ceiling over blocks {first:,}-{last:,}")
            result["ceiling"] = best = await ceiling(provider, addresses, first, last)
            seen = dataclasses.replace(world, rpc_url=provider.url, deploy_block=first)
            db = await env.create_database("xstock_bench_remote")
            # batch_blocks = 1000: what README advises for a remote provider and a sparse history
            config = seen.write_toml(env.workdir / "indexer.toml", db, batch_blocks=1000)
            say(f"indexer backfill through the provider ({best['logs']:,} logs)")
            provider.set_rate(opts.rate)
            provider.reset()
            done = runner.run(config, "backfill", workdir=env.workdir, timeout=1200.0).check(0)
            result["backfill"] = _backfill(done, provider, best)
            provider.set_rate(None)
            check = runner.run(config, "verify", workdir=env.workdir, timeout=900.0).check(0)
            result["verify"] = {"exit_code": check.returncode, "output": check.stdout.strip()}
            if result["backfill"]["logs"] != best["logs"]:
                raise RuntimeError(f"the backfill read {result['backfill']['logs']} logs, the ceiling {best['logs']}")
    finally:
        await env.close()
    result["seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    return result


def _backfill(done: runner.Finished, provider: Provider, best: dict[str, Any]) -> dict[str, Any]:
    summary = done.event("backfill_done") or {}
    logs = int(summary.get("logs", 0))
    calls = provider.calls()
    retries = sum(1 for e in done.events if e.get("event") == "rpc_retry")
    return {"wall_s": done.seconds, "loop_s": summary.get("seconds"), "logs": logs,
            "logs_per_s": round(logs / done.seconds), "ratio": round(logs / done.seconds / best["logs_per_s"], 3),
            "target": TARGET, "calls": calls, "calls_total": sum(calls.values()),
            "http_requests": provider.stats["http_requests"], "http_429": provider.stats["http_429"],
            "calls_refused_429": provider.stats["refused_calls_429"],
            "refused_range": provider.stats["refused_range"], "refused_logs": provider.stats["refused_logs"],
            "retries_logged": retries, "cpu_s": round(done.cpu_s, 2),
            "getlogs_ranges": [list(r) for r in provider.ranges],
            "timeline": [list(t) for t in provider.timeline], "events": _events(done, provider)}


def _events(done: runner.Finished, provider: Provider) -> list[list[Any]]:
    """The backfill's logged events, in seconds on the provider's timeline (where the time
    between the last answer and the end goes)."""
    out: list[list[Any]] = []
    for e in done.events:
        try:
            at = datetime.fromisoformat(str(e["timestamp"]).replace("Z", "+00:00")).timestamp()
        except (KeyError, ValueError):
            continue
        out.append([round(at - provider.since_wall, 3), e.get("event")])
    return out


def show(result: dict[str, Any]) -> None:
    c, b, w = result["ceiling"], result["backfill"], result["workload"]
    rows = [
        ("workload", f"{w['transfers']:,} transfers over {w['blocks']:,} blocks ({w['real_blocks']:,} real x "
                     f"{w['stretch']})"),
        ("provider", f"rtt {result['options']['rtt'] * 1000:.0f} ms, {result['options']['rate']:g} requests/s, "
                     f"caps {result['options']['max_range']:,} blocks / {result['options']['max_logs']:,} logs"),
        ("ceiling (eth_getLogs only)", f"{c['logs_per_s']:,} logs/s ({c['blocks_per_request']} blocks x "
                                       f"{c['concurrency']} in flight, {c['requests']} requests)"),
        ("our backfill", f"{b['logs_per_s']:,} logs/s in {b['wall_s']} s, ratio {b['ratio']} (target {TARGET})"),
        ("calls", ", ".join(f"{k} {v}" for k, v in b["calls"].items()) + f" = {b['calls_total']}"),
        ("429s / refusals", f"{b['http_429']} / {b['refused_range']} range + {b['refused_logs']} logs"),
        ("verify", result["verify"]["output"].splitlines()[-1] if result["verify"]["output"] else "exit 0"),
    ]
    for name, value in rows:
        print(f"{name:28} {value}")


def main(argv: list[str]) -> int:
    d = Options()
    p = argparse.ArgumentParser(prog="python -m bench remote", description="Backfill through a remote-like provider.")
    for field in dataclasses.fields(Options):
        p.add_argument(f"--{field.name.replace('_', '-')}", type=type(getattr(d, field.name)),
                       default=getattr(d, field.name), metavar="N")
    p.add_argument("--out", type=Path, metavar="PATH")
    args = vars(p.parse_args(argv))
    out = args.pop("out")
    opts = Options(**args)
    try:
        result = asyncio.run(run(opts))
    except (runner.IndexerFailed, RuntimeError) as exc:
        say(f"FAILED: {exc}")
        return 1
    show(result)
    path = write(result, out or RESULTS_DIR / f"remote-{result['started_at'][:10]}.json")
    say(f"wrote {path} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
