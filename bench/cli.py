"""`python -m bench`: parse the options, run the benchmark, print the table, write the JSON.

Exit 0 when the run completed (whether or not the targets are met: the JSON says), 1 when a
phase failed (the backfill or verify exited non-zero, the daemon fell behind, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from . import report
from .harness import Options, run, say
from .live import LiveError
from .runner import IndexerFailed


def build_parser() -> argparse.ArgumentParser:
    d = Options()
    p = argparse.ArgumentParser(prog="python -m bench", description="Benchmark the indexer against the raw "
                                "eth_getLogs and COPY ceilings, on a fresh anvil and PostgreSQL.")
    p.add_argument("--transfers", type=int, default=d.transfers, metavar="N",
                   help=f"transfers in the workload (default {d.transfers:,})")
    p.add_argument("--million", action="store_const", const=1_000_000, dest="million",
                   help="1,000,000 transfers (overrides --transfers)")
    p.add_argument("--holders", type=int, default=d.holders, metavar="N",
                   help=f"holders seeded before the transfers (default {d.holders:,}; the simulator adds 1,000 "
                        "receivers)")
    p.add_argument("--per-tx", type=int, default=d.per_tx, metavar="N", help="moves per MoveBatch transaction")
    p.add_argument("--txs-per-block", type=int, default=d.txs_per_block, metavar="N",
                   help=f"MoveBatch transactions per block (default {d.txs_per_block}: ~10M gas each, so "
                        "blocks of about a mainnet block's gas)")
    p.add_argument("--empty-blocks", type=int, default=d.empty_blocks, metavar="N",
                   help="empty blocks mined after the transfers (default 0: the transfers end at the head, inside "
                        "the indexer's reorg-reachable tail)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--skip-live", action="store_true", help="no live latency phase")
    p.add_argument("--live-blocks", type=int, default=d.live_blocks, metavar="N",
                   help=f"measured blocks per live mode (default {d.live_blocks})")
    p.add_argument("--live-interval", type=float, default=d.live_interval, metavar="S",
                   help=f"seconds between live blocks (default {d.live_interval})")
    p.add_argument("--live-moves", type=int, default=d.live_moves, metavar="N", help="transfers per live block")
    p.add_argument("--out", type=Path, metavar="PATH",
                   help="JSON result path (default bench/results/<date>.json, <date>-<size>.json off default)")
    p.add_argument("--keep", action="store_true", help="keep the work directory and the database afterwards")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                   help="wait up to S seconds for other work on the machine to stop before starting")
    return p


def options(args: argparse.Namespace) -> Options:
    transfers = args.million or args.transfers
    if (transfers < 1 or args.holders < 3 or args.live_blocks < 1 or args.live_interval <= 0
            or args.empty_blocks < 0):
        raise SystemExit("bench: --transfers and --live-blocks must be >= 1, --holders >= 3, --live-interval > 0, "
                         "--empty-blocks >= 0")
    return Options(transfers=transfers, holders=args.holders, per_tx=args.per_tx,
                   txs_per_block=args.txs_per_block, empty_blocks=args.empty_blocks, seed=args.seed,
                   live=not args.skip_live, live_blocks=args.live_blocks, live_interval=args.live_interval,
                   live_moves=args.live_moves, keep=args.keep, wait_idle=args.wait_idle)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    opts = options(args)
    try:
        result = asyncio.run(run(opts))
    except (IndexerFailed, LiveError, RuntimeError) as exc:
        say(f"FAILED: {exc}")
        return 1
    out = args.out or report.default_path(result)
    report.attach_baseline(result, out.parent if args.out else report.RESULTS_DIR)
    report.show(result, sys.stdout.isatty())
    say(f"wrote {report.write(result, out)} ({result['seconds']} s)")
    return 0
