"""Deploy a devnet xStock world on a running node and write the indexer config that follows it.

    python -m indexer.devnet.deploy_cli --rpc http://anvil:8545 --out /shared/indexer.toml \\
        [--database-url URL] [--metrics-host 0.0.0.0] [--metrics-port 9100] [--wait 60]

The compose `deploy` service runs this once before the indexer starts. Rerunning it is safe:
when `--out` already names a factory that has code on the node, nothing is deployed again. The
database URL in the file is passwordless by default; give the real one to the indexer through
`$DATABASE_URL`, which overrides it, so no secret is written to the shared volume.

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

from ..config import DEFAULT_DATABASE_URL
from .anvil import JsonRpc, RpcError
from .deploy import deploy_world


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m indexer.devnet.deploy_cli",
                                     description="Deploy xStocks on a dev node and write the indexer config.")
    parser.add_argument("--rpc", required=True, metavar="URL", help="http:// JSON-RPC URL of the node")
    parser.add_argument("--out", required=True, type=Path, metavar="PATH", help="where to write the TOML config")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, metavar="URL",
                        help="database.url in the file ($DATABASE_URL overrides it at run time)")
    parser.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                        help="daemon.metrics_host (0.0.0.0 in a container, so Prometheus can scrape)")
    parser.add_argument("--metrics-port", type=int, metavar="PORT", help="daemon.metrics_port (default: none)")
    parser.add_argument("--wait", type=float, default=60.0, metavar="S", help="seconds to wait for the node")
    return parser


def wait_for_node(client: JsonRpc, seconds: float) -> int:
    """The node's chain id, polling until it answers; TimeoutError after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return int(client.call("eth_chainId"), 16)
        except (OSError, RpcError) as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer from the node after {seconds:.0f} s: {exc}") from exc
            client.close()
            time.sleep(0.5)


def deployed_factory(path: Path, client: JsonRpc) -> str | None:
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.rpc.startswith("http://"):
        parser.error(f"--rpc must be an http:// URL, got {args.rpc!r}")
    try:
        with JsonRpc(args.rpc) as client:
            wait_for_node(client, args.wait)
            factory = deployed_factory(args.out, client)
        if factory is not None:
            print(f"deploy: factory {factory} already deployed, keeping {args.out}")
            return 0
        world = deploy_world(args.rpc)
    except (OSError, RpcError, RuntimeError, ValueError) as exc:
        print(f"deploy: error: {exc}", file=sys.stderr)
        return 1
    text = world.to_toml(args.database_url) + daemon_section(args.metrics_host, args.metrics_port)
    write_atomically(args.out, text)
    print(f"deploy: factory {world.factory}, tokens {', '.join(world.all_tokens)} "
          f"from block {world.deploy_block}; config written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
