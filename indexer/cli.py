"""Command line: parse arguments, load settings, call one entry point. No logic lives here.

Every expected failure is an IndexerError and ends as one line on stderr with its exit code
(2 bad input or unreachable service, 3 reorg too deep); secrets in it are masked.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import IndexerError, mask_secrets

if TYPE_CHECKING:
    from .config import Settings

# Each command imports what it needs when it runs (``indexer --help`` loads argparse alone):
# structlog, asyncio, aiohttp, asyncpg and eth-abi cost up to 0.5 s of start-up together.
# tests/test_startup.py keeps it so.

COMMANDS = "migrate, backfill, run, verify, custody, reconcile, flags, status, export"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="indexer", description="Exact, reorg-safe xStock indexer for PostgreSQL.")
    parser.add_argument("--config", metavar="PATH", help="TOML config (default: $INDEXER_CONFIG, else ./indexer.toml)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-json", action="store_true", default=None, help="JSON logs even on a terminal")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    sub.add_parser("migrate", help="bring the schema to this release's version (forward only; nothing when it is)")
    p = sub.add_parser("backfill", help="index up to the safe head (or --to-block), then stop")
    p.add_argument("--chain", metavar="NAME")
    p.add_argument("--from-block", type=_block, metavar="B")
    p.add_argument("--to-block", type=_block, metavar="B")
    p = sub.add_parser("run", help="migrate, catch up, then follow the head until SIGTERM/SIGINT")
    p.add_argument("--chain", metavar="NAME", help="only this chain of the config (one machine per chain)")
    p = sub.add_parser("verify", help="compare the database with the chain at the indexed block")
    p.add_argument("--chain", metavar="NAME")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--block", type=_block, metavar="B")
    when.add_argument("--history", action="store_true",
                      help="audit past blocks: each multiplier change and its neighbours, plus --sample N per token")
    p.add_argument("--sample", type=_block, default=10, metavar="N", help="random blocks per token (default 10)")
    p.add_argument("--seed", type=int, metavar="S", help="seed of the random blocks (default: drawn and printed)")
    p = sub.add_parser("custody", help="load custody records: import a file, or pull the issuer API")
    custody = p.add_subparsers(dest="custody_command", metavar="ACTION")
    custody.required = True
    p = custody.add_parser("import", help="import a custody file (csv, json, attestor, issuer), all or nothing")
    p.add_argument("path", metavar="PATH", help="the file, or - for stdin")
    p.add_argument("--format", choices=["csv", "json", "attestor", "issuer"],
                   help="default: guessed from the content")
    p.add_argument("--underlying", metavar="SYMBOL",
                   help="underlying of attestor accounts missing from [custody.accounts], or of an issuer answer")
    p = custody.add_parser("pull", help="fetch the issuer API answer at URL and import it")
    p.add_argument("url", metavar="URL")
    p.add_argument("--underlying", metavar="SYMBOL", help="underlying of the answer (default: from its symbol)")
    p.add_argument("--allow-http", action="store_true", help="accept a plain http:// URL (default: https only)")
    sub.add_parser("reconcile", help="evaluate backing now, open/close flags, print backing and open flags")
    p = sub.add_parser("flags", help="list the open backing flags (--all: closed too); flags ack ID --note TEXT")
    p.add_argument("--all", action="store_true", help="closed flags too")
    flags = p.add_subparsers(dest="flags_command", metavar="ACTION")
    p = flags.add_parser("ack", help="acknowledge a flag; the note is kept in its history")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("--note", required=True, metavar="TEXT", help="why (kept in backing_flag_notes)")
    sub.add_parser("status", help="indexed block, head and lag per chain; supply and holders per token")
    p = sub.add_parser("export", help="write analyst data for spreadsheets (csv) and notebooks (parquet)")
    export = p.add_subparsers(dest="export_command", metavar="WHAT")
    export.required = True
    p = export.add_parser("holders", help="one token's holders at a block (default: its indexed block)")
    p.add_argument("--token", required=True, metavar="SYMBOL", help="symbol (TSLAx) or token address")
    p.add_argument("--block", type=_block, metavar="B", help="default: the token's indexed block")
    p.add_argument("--chain", metavar="NAME", help="needed when the token is indexed on several chains")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    p.add_argument("--output", "-o", metavar="PATH",
                   help="- for stdout (default: holders-SYMBOL-CHAIN-BLOCK.csv|parquet here)")
    return parser


def _block(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a block number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("a block number cannot be negative")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    # A backfill allocates hundreds of thousands of container objects per batch (topic tuples,
    # moves); with the default thresholds the collector runs full passes over them constantly
    # (measured: about 1 s of CPU per 360k logs). A young-generation pass walks every tracked
    # object allocated since the last one that is still alive (frees of older objects lower the
    # count that triggers it, not that list): at 100k, two passes of 50-60 ms each in a 200k
    # backfill. Nothing here builds reference cycles worth chasing early.
    gc.freeze()
    gc.set_threshold(1_000_000, 50, 100)
    args = build_parser().parse_args(argv)
    import asyncio

    from . import logconfig
    from .config import load_settings

    logconfig.configure(args.log_level, json=args.log_json)
    settings: Settings | None = None
    try:
        settings = load_settings(args.config)
        return asyncio.run(dispatch(args, settings))
    except IndexerError as exc:
        message = mask_secrets(str(exc), settings.secrets() if settings else [])
        if args.log_json:  # asked for JSON: the last line is an event too
            logconfig.get("cli").error("fatal", error=message, exit_code=exc.exit_code)
        else:
            print(f"indexer: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


async def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "migrate":
        from .schema import CODE_VERSION
        from .store import Store

        store = await Store.open(settings.database_url, role="migrate")
        try:
            applied = await store.migrate()
            await store.role_settings(settings.analyst_statement_timeout)
        finally:
            await store.close()
        steps = f"applied step {', '.join(map(str, applied))}" if applied else "already there, nothing applied"
        print(f"schema at version {CODE_VERSION}: {steps}")
        return 0
    if args.command == "backfill":
        from .backfill import backfill

        for summary in await backfill(settings, args.chain, args.from_block, args.to_block):
            print(f"chain {summary['chain']}: indexed to block {summary['to_block']}: {summary['logs']} logs, "
                  f"{summary['transfers']} transfers in {summary['seconds']} s ({summary['logs_per_s']} logs/s)")
        return 0
    if args.command == "verify" and args.history:
        from .history import render as render_history
        from .history import verify_history

        audits = await verify_history(settings, args.chain, args.sample, args.seed)
        print(render_history(audits))
        return 0 if all(r.ok for r in audits) else 1
    if args.command == "verify":
        from .verify import render, verify

        reports = await verify(settings, args.chain, args.block)
        print(render(reports))
        return 0 if all(r.ok for r in reports) else 1
    if args.command == "run":
        from dataclasses import replace

        from .daemon import run

        if args.chain:  # one chain per machine: the others' tokens and factories are theirs
            chain = settings.chain(args.chain).name
            settings = replace(settings, chains=(settings.chain(chain),),
                               tokens=tuple(t for t in settings.tokens if t.chain == chain),
                               factories=tuple(f for f in settings.factories if f.chain == chain))
        return await run(settings)
    if args.command == "custody":
        from .custody.importer import import_file, pull

        if args.custody_command == "import":
            report = await import_file(settings, args.path, args.format, args.underlying)
        else:
            report = await pull(settings, args.url, args.underlying, args.allow_http)
        print(report.render())
        return 0
    if args.command == "reconcile":
        from .custody.reconcile import reconcile

        print(await reconcile(settings))
        return 0
    if args.command == "flags":
        from .custody import flags

        if args.flags_command == "ack":
            print(await flags.acknowledge(settings, args.id, args.note))
        else:
            print(await flags.list_flags(settings, args.all))
        return 0
    if args.command == "status":
        from .status import status

        print(await status(settings))
        return 0
    if args.command == "export":
        from .export import export_holders

        done = await export_holders(settings, args.token, args.block, args.format, args.output, args.chain)
        print(done.summary(), file=sys.stderr if done.path == "-" else sys.stdout)
        return 0
    raise AssertionError(args.command)  # pragma: no cover
