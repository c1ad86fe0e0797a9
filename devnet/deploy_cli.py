"""Deploy a devnet xStock world on a running node and write the indexer config that follows it.

    python -m devnet deploy --rpc http://127.0.0.1:8545 --out /shared/indexer.toml \\
        [--world PATH] [--database-url URL] [--metrics-host 0.0.0.0] [--metrics-port 9100] [--wait 60]

The compose `deploy` service runs this once before the indexer starts; against your own anvil it
is the first step (README: "Your own anvil"). Rerunning it is safe: when `--out` already names a
factory that has code on the node, nothing is deployed again. Beside the config it writes the
world file (`--world`, default OUT with the suffix .world.json: every address and role), which
`python -m devnet trade` reads. The database URL in the config is passwordless by default; give
the real one to the indexer through `$DATABASE_URL`, which overrides it, so no secret is written
to the shared volume.

Exit codes: 0 config written (or kept), 1 the node did not answer in time or the deployment
failed (one line on stderr), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path

from indexer.config import DEFAULT_DATABASE_URL
from indexer.errors import mask_url, mask_urls_in

from .deploy import TxFailed, deploy_world
from .node import Node, Web3RPCError


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--rpc", required=True, metavar="URL", help="http:// JSON-RPC URL of the node")
    parser.add_argument("--out", required=True, type=Path, metavar="PATH", help="where to write the TOML config")
    parser.add_argument("--world", type=Path, metavar="PATH",
                        help="where to write the world file for `trade` (default: OUT with suffix .world.json)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, metavar="URL",
                        help="database.url in the file ($DATABASE_URL overrides it at run time)")
    parser.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                        help="daemon.metrics_host (0.0.0.0 in a container, so Prometheus can scrape)")
    parser.add_argument("--metrics-port", type=int, metavar="PORT", help="daemon.metrics_port (default: none)")
    parser.add_argument("--wait", type=float, default=60.0, metavar="S", help="seconds to wait for the node")
    return parser


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(
        prog="python -m devnet deploy", description="Deploy xStocks on a dev node and write the indexer config."))


def wait_for_node(client: Node, seconds: float) -> int:
    """The node's chain id, polling until it answers; TimeoutError after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return int(client.call("eth_chainId"), 16)
        except (OSError, Web3RPCError) as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer from the node after {seconds:.0f} s: "
                                   f"{type(exc).__name__}") from exc
            client.close()
            time.sleep(0.5)


def deployed_factory(path: Path, client: Node) -> str | None:
    """The factory named by an existing config at `path` when it has code on the node, else None
    (no file, an unreadable one, or a node that was restarted empty)."""
    try:
        factories = tomllib.loads(path.read_text(encoding="utf-8")).get("factory", [])
        address = str(factories[0]["address"])
    except (OSError, tomllib.TOMLDecodeError, LookupError, TypeError):
        return None
    code = client.call("eth_getCode", [address, "latest"])
    return address if code not in (None, "0x", "") else None


def daemon_section(host: str, port: int | None) -> str:
    if port is None:
        return ""
    return f'\n[daemon]\nmetrics_host = "{host}"\nmetrics_port = {port}\n'


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def world_path(args: argparse.Namespace) -> Path:
    return Path(args.world) if args.world else args.out.with_suffix(".world.json")


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    if not args.rpc.startswith("http://"):
        print(f"deploy: error: --rpc must be an http:// URL, got {mask_url(args.rpc)!r}", file=sys.stderr)
        return 2
    try:
        with Node(args.rpc, timeout=30) as client:
            wait_for_node(client, args.wait)
            factory = deployed_factory(args.out, client)
        if factory is not None:
            print(f"deploy: factory {factory} already deployed, keeping {args.out}")
            return 0
        world = deploy_world(args.rpc)
    except (OSError, Web3RPCError, TxFailed, RuntimeError, ValueError) as exc:
        print(f"deploy: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    text = world.to_toml(args.database_url) + daemon_section(args.metrics_host, args.metrics_port)
    write_atomically(world_path(args), world.to_json() + "\n")
    write_atomically(args.out, text)
    print(f"deploy: factory {world.factory}, tokens {', '.join(world.all_tokens)} "
          f"from block {world.deploy_block}; config written to {args.out}, world to {world_path(args)}")
    return 0


def _one_line(exc: BaseException) -> str:
    """The first 500 characters of the message on one line, every URL in it masked."""
    return mask_urls_in(" ".join(str(exc).split())[:500]) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
