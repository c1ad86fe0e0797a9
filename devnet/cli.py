"""`python -m devnet`: the development network's commands (they are not part of the indexer).

    python -m devnet demo [--duration S] [--seed N] [--svg PATH] [--config PATH]
    python -m devnet deploy --rpc URL --out PATH [--world PATH] [--database-url URL] ...
    python -m devnet trade --rpc URL --world PATH [--blocks N] [--moves M] [--seed S] [--holders H]
                           [--split SYMBOL]

`demo` is what `make demo` runs: anvil, PostgreSQL, deploy, trade, index live, show.
`deploy` puts our contracts on a running node (your own anvil) and writes the indexer config
that follows them, plus the world file (every address and role) that `trade` reads. `trade`
makes seeded trades on that deployment: mints, transfers, MoveBatch batches, optionally a
split; anvil's impersonation lets the simulated holders send without keys.

Exit codes: 0 done, 1 the node failed us (unreachable, a failed deployment, a trade the chain
refused), 2 bad input (arguments, a missing or unreadable world file); one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from indexer import logconfig
from indexer.errors import IndexerError, mask_url, mask_urls_in

from . import deploy_cli

USAGE_ERROR, NODE_ERROR = 2, 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devnet",
                                     description="The development network: demo, deploy, trade.")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("demo", help="local anvil + Postgres, deploy xStocks, trade, index, show")
    p.add_argument("--config", metavar="PATH", help="where to write the demo's config (default .demo/indexer.toml)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--svg", metavar="PATH", help="also save what the demo shows as an SVG (for a screenshot)")
    deploy_cli.add_arguments(sub.add_parser("deploy", help="deploy our contracts on a node, write the indexer config"))
    p = sub.add_parser("trade", help="seeded trades on a deployment (`deploy` wrote its world file)")
    p.add_argument("--rpc", required=True, metavar="URL", help="http:// JSON-RPC URL of the node (anvil)")
    p.add_argument("--world", required=True, type=Path, metavar="PATH", help="the world file `deploy` wrote")
    p.add_argument("--blocks", type=_positive, default=10, metavar="N", help="blocks of trades (default 10)")
    p.add_argument("--moves", type=_positive, default=8, metavar="M", help="moves per block (default 8)")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="seed of the holders and moves (default 1)")
    p.add_argument("--holders", type=_positive, default=10, metavar="H",
                   help="simulated holders, funded and minted to once per run (default 10, at least 3)")
    p.add_argument("--split", metavar="SYMBOL", help="then a 2:1 split of this xStock (e.g. TSLAx)")
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logconfig.configure(args.log_level, json=None)
    try:
        if args.command == "demo":
            from .demo import demo

            return asyncio.run(demo(args.config, duration=args.duration, seed=args.seed, svg=args.svg))
        if args.command == "deploy":
            return deploy_cli.run(args)
        return trade(args)
    except IndexerError as exc:
        print(f"devnet: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def trade(args: argparse.Namespace) -> int:
    from web3.exceptions import Web3RPCError

    from .deploy import TxFailed, World
    from .node import Node
    from .simulate import SimulationError, Simulator

    rpc = mask_url(args.rpc)
    if not args.rpc.startswith(("http://", "https://")):
        return _fail(f"--rpc must be an http:// URL, got {rpc!r}", USAGE_ERROR)
    try:
        world = World.from_json(args.world.read_text(encoding="utf-8"))
    except OSError as exc:
        return _fail(f"cannot read the world file {args.world}: {exc.strerror or exc}", USAGE_ERROR)
    except (ValueError, TypeError) as exc:
        return _fail(f"{args.world} is not a world file `python -m devnet deploy` wrote: {exc}", USAGE_ERROR)
    if args.split is not None and args.split not in world.tokens:
        return _fail(f"--split {args.split}: the world has no xStock of that symbol "
                     f"(it has {', '.join(world.tokens)})", USAGE_ERROR)
    world = replace(world, rpc_url=args.rpc)
    try:
        code = Node(args.rpc, timeout=10).call("eth_getCode", [world.factory, "latest"])
        if code in (None, "", "0x"):
            return _fail(f"no contract at the factory {world.factory} on {rpc}: the node is not the one "
                         "`deploy` ran on (or it restarted); deploy again", NODE_ERROR)
        sim = Simulator(world, seed=args.seed, n_holders=max(3, args.holders))
        summary = sim.run(args.blocks, moves_per_block=args.moves)
        if args.split is not None:
            sim.split(args.split)
    except OSError as exc:
        return _fail(f"node {rpc} unreachable: {type(exc).__name__}", NODE_ERROR)
    except (Web3RPCError, TxFailed, SimulationError, TimeoutError) as exc:
        return _fail(f"trading on {rpc} failed: {mask_urls_in(' '.join(str(exc).split())[:500])}", NODE_ERROR)
    split = f", then a 2:1 split of {args.split}" if args.split else ""
    print(f"trade: {summary.moves} moves in {sum(summary.counts.values())} transactions, blocks "
          f"{summary.first_block}..{summary.last_block}{split}")
    return 0


def _fail(message: str, code: int) -> int:
    print(f"devnet: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
