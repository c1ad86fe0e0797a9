"""``make demo`` (``python -m devnet demo``): the whole indexer on one machine in one command,
for a newcomer's first minutes.

1. Services: anvil without automine (the simulator mines every block, 12 s apart, from a fixed
   genesis time: one seed gives the same chain, block hashes included) and PostgreSQL
   (demo_db: a fresh database on $DATABASE_URL's server, else embedded in `.demo/pg`).
2. World and history: TSLAx, AAPLx, NVDAx, SPYx through the factory plus a plain ERC-20; the
   config goes to `.demo/indexer.toml`; the simulator's tour (every move kind, a pause, splits,
   silent scheduled changes, a fee) and random blocks; then the real `backfill` indexes it and
   the holders and supply tables show the result, with the DSN and a psql command.
3. Live: the real daemon follows the head (metrics on a free port) while trading goes on in a
   worker thread, and the view shows supply, backing and open flags as blocks arrive. Custody
   records (issuer-API answers in `.demo/custody/`, imported by the real import) back every
   underlying; midway a 2:1 split of TSLAx activates silently, the indexer catches it, TSLA's
   backing flags open, and a custody top-up closes them (demo_custody). Logs go to
   `.demo/indexer.log`.
4. Stop (Ctrl-C, SIGTERM or `duration` seconds after the start): trading, then the daemon, then
   `verify` against the chain, then the database and anvil. Exit 0 when verify finds the database
   equal to the chain, 1 otherwise.

Failure modes: no anvil binary, no PostgreSQL -> ServiceUnreachable (exit 2, one line saying
what to install); a simulator or daemon failure ends the demo with that error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import structlog

from indexer.backfill import backfill
from indexer.config import Settings, parse_settings
from indexer.daemon import Daemon
from indexer.errors import InputError, ServiceUnreachable
from indexer.store import Store
from indexer.verify import render, verify

from .anvil import Anvil, AnvilError, AnvilNotFound, find_anvil, free_port
from .demo_custody import CustodyStory
from .demo_db import DemoDatabase, embedded_available, open_database
from .demo_live import LiveRun
from .demo_view import Out, fetch_supply, holders_grid, supply_grid
from .deploy import World, deploy_world
from .node import rpc
from .simulate import Simulator

FOLDER = Path(".demo")
NO_ANVIL = ("no anvil for the demo{}: run `npm ci` in the repository root, which installs "
            "@foundry-rs/anvil (`make demo` does it for you)")
MARKER = "# written by `indexer demo`"  # kept as it was: configs earlier demos wrote stay ours to overwrite
GENESIS_TIME = 1_767_623_400  # 2026-01-05 14:30 UTC, a Monday's US market open
BLOCK_INTERVAL = 12
HISTORY_BLOCKS = 40
MOVES_PER_BLOCK = 8


async def demo(config: str | None, duration: float | None, seed: int, svg: str | None = None) -> int:
    """Run the demo (see the module docstring). `config`: where to write the generated config
    (default `.demo/indexer.toml`; an existing file is overwritten only if the demo wrote it).
    `duration`: seconds from the start until it stops by itself (None: until a signal). `svg`:
    also save everything shown as an SVG at that path."""
    out = Out(svg)
    run = Demo(out, Path(config) if config else FOLDER / "indexer.toml", duration, seed)
    try:
        return await run.main()
    finally:
        if svg is not None:
            out.save_svg(svg)
            print(f"saved {svg}", flush=True)


class Demo:
    def __init__(self, out: Out, config_path: Path, duration: float | None, seed: int) -> None:
        self.out, self.config_path, self.seed = out, config_path, seed
        self.started = time.monotonic()
        self.deadline = None if duration is None else self.started + duration
        self.stop = asyncio.Event()
        self.anvil: Anvil | None = None
        self.db: DemoDatabase | None = None
        self.world: World | None = None
        self.sim: Simulator | None = None
        self.settings: Settings | None = None
        self.store: Store | None = None

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        self.catch_signals(loop)
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self.release_signals, loop)
            await self.start_services(stack)
            for phase in (self.history, self.index_history, self.live):
                if self.stop.is_set():
                    break
                await phase(stack)
            code = await self.finish()  # before the stack unwinds: verify needs the chain
        return code

    def catch_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)

    def release_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    def expired(self) -> bool:
        return self.stop.is_set() or (self.deadline is not None and time.monotonic() >= self.deadline)

    # ------------------------------------------------------------------ phases

    async def start_services(self, stack: contextlib.AsyncExitStack) -> None:
        self._check_config_path()
        try:
            binary = find_anvil()
        except AnvilNotFound:
            bad = os.environ.get("ANVIL_BIN")
            raise ServiceUnreachable(NO_ANVIL.format(f" ($ANVIL_BIN={bad} does not exist)" if bad else "")) from None
        if not os.environ.get("DATABASE_URL", "").strip():
            embedded_available()
        await asyncio.to_thread(FOLDER.mkdir, exist_ok=True)
        stack.callback(_log_to(FOLDER / "indexer.log"))
        self.out.say(f"xstock-indexer demo (seed {self.seed}): a local chain, xStocks, trades, the indexer", "bold")
        self.anvil = Anvil(no_mining=True, binary=binary, extra_args=("--timestamp", str(GENESIS_TIME)))
        stack.callback(self.anvil.stop, 3.0)
        results = await asyncio.gather(open_database(os.environ, FOLDER / "pg"),
                                       asyncio.to_thread(self.anvil.start), return_exceptions=True)
        if isinstance(results[0], DemoDatabase):
            self.db = results[0]
            stack.push_async_callback(self.db.close)
        for result in results:
            if isinstance(result, AnvilError):
                raise ServiceUnreachable(f"anvil did not start: {result}") from None
            if isinstance(result, BaseException):
                raise result
        assert self.db is not None
        rpc(self.anvil.url, "anvil_setBlockTimestampInterval", [BLOCK_INTERVAL])
        self.out.say(f"  chain     anvil on {self.anvil.url} (chain id {self.anvil.chain_id}); "
                     "the simulator mines every block")
        self.out.say(f"  database  {self.db.shown_url}  ({self.db.where})")

    async def history(self, stack: contextlib.AsyncExitStack) -> None:
        assert self.anvil is not None and self.db is not None
        w, s = await asyncio.to_thread(_deploy_and_trade, self.anvil.url, self.seed)
        self.world, self.sim = w, s
        self.out.say(f"  deployed  {', '.join(w.tokens)} through the factory {w.factory}, and "
                     f"{', '.join(w.plain_tokens)} (a plain ERC-20)")
        txs = sum(n for kind, n in s.summary.counts.items() if kind != "batch_move")
        self.out.say(f"  history   blocks {w.deploy_block}..{s.summary.last_block}: {txs:,} transactions, "
                     f"{s.summary.moves:,} transfers (every kind of move, a pause, splits, silent changes, a fee)")
        self.settings = self._write_config()
        self.out.say(f"  config    {self.config_path}")

    async def index_history(self, stack: contextlib.AsyncExitStack) -> None:
        assert self.settings is not None and self.world is not None and self.db is not None
        summary = (await backfill(self.settings))[0]
        self.out.say(f"  indexed   up to block {summary['to_block']}: {summary['logs']:,} logs, "
                     f"{summary['transfers']:,} transfers in {summary['seconds']:.2f} s (indexer backfill)")
        self.store = await Store.open(self.settings.database_url, role="demo")
        stack.push_async_callback(self.store.close)
        order = list(self.world.all_tokens)
        counts = {r["symbol"]: int(r["holder_count"]) for r in await self.store.fetch(
            "SELECT symbol, holder_count FROM token_supply WHERE chain_id = $1", self.world.chain_id)}
        self.out.say()
        for symbol, token in self.world.all_tokens.items():
            self.out.grid(await holders_grid(self.store, self.world.chain_id, token, symbol, counts.get(symbol, 0)))
            self.out.say()
        self.out.grid(supply_grid(await fetch_supply(self.store, self.world.chain_id, order)))
        self.out.say(f"\nready in {time.monotonic() - self.started:.1f} s. Query it while it runs "
                     f"({self.db.lifetime}):", "bold")
        self.out.say(f"  {self.db.psql_command()}", "cyan")
        self.out.say("  SELECT * FROM token_supply;", "cyan")
        self.out.say("  SELECT holder, balance FROM holders WHERE symbol = 'TSLAx' ORDER BY balance DESC LIMIT 5;",
                     "cyan")
        self.out.say("  SELECT * FROM backing;  SELECT * FROM backing_flags WHERE closed_at IS NULL;", "cyan")
        self.out.say(f"  indexer --config {self.config_path} status", "cyan")

    async def live(self, stack: contextlib.AsyncExitStack) -> None:
        assert self.settings is not None and self.sim is not None and self.store is not None
        assert self.world is not None and self.settings.daemon.metrics_port is not None
        if self.expired():  # --duration already spent on the start
            return
        port = self.settings.daemon.metrics_port
        self.out.say(f"  metrics   http://127.0.0.1:{port}/metrics   health http://127.0.0.1:{port}/healthz")
        self.out.say(f"  logs      {FOLDER / 'indexer.log'}")
        live = LiveRun(self.out, self.world, self.sim, self.store, self.stop, moves_per_block=MOVES_PER_BLOCK)
        loop = asyncio.get_running_loop()
        daemon = Daemon(self.settings)
        task = asyncio.create_task(daemon.run(), name="daemon")
        # The daemon installs its own SIGINT/SIGTERM handlers first thing and removes them when it
        # ends. Ours take over again, so that a signal stops trading before the daemon, which then
        # gets to index the last blocks.
        await asyncio.sleep(0)
        self.catch_signals(loop)
        task.add_done_callback(lambda _: self.catch_signals(loop))
        stack.push_async_callback(_stop_daemon, daemon, task)
        story = CustodyStory(self.settings, self.store, self.world.chain_id, live.view.event, self.stop,
                             FOLDER / "custody", self._gap_blocks())
        story.start()
        stack.push_async_callback(story.close)
        self.out.say("live: trading and indexing as blocks arrive (Ctrl-C to stop)", "bold")
        await live.run(task, self._split_block(), lambda: self.expired() or daemon.stop.is_set() or story.failed())
        await story.close()
        await _stop_daemon(daemon, task)
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        story.raise_failure()

    async def finish(self) -> int:
        elapsed = time.monotonic() - self.started
        if self.settings is None or self.store is None or self.world is None:
            self.out.say(f"demo stopped after {elapsed:.0f} s, before anything was indexed")
            return 0
        chain_id = self.world.chain_id
        rows = await self.store.fetch("SELECT block_number AS b FROM cursors WHERE chain_id = $1", chain_id)
        transfers = await self.store.fetch("SELECT count(*) AS n FROM transfers WHERE chain_id = $1", chain_id)
        reports = await verify(self.settings)
        ok = all(r.ok for r in reports)
        self.out.say(f"demo ran {elapsed:.0f} s: {rows[0]['b']} blocks, {int(transfers[0]['n']):,} transfers "
                     f"indexed; indexer verify: {render(reports)}", "bold green" if ok else "bold red")
        return 0 if ok else 1

    # ------------------------------------------------------------------ helpers

    def _split_block(self) -> int:
        """Live block at which the TSLAx split is scheduled: 40% of the duration (20 s without
        one) counted in blocks, so the chain does not depend on timing, but no later than
        halfway through the live time left."""
        rate = LiveRun.RATE
        if self.deadline is None:
            return int(rate * 20)
        wanted = rate * 0.4 * (self.deadline - self.started)
        return max(1, int(min(wanted, rate * (self.deadline - time.monotonic()) / 2)))

    def _gap_blocks(self) -> int:
        """Blocks between the custody story's beats: a tenth of the duration, 2.5 to 5 s of blocks,
        and no more than an eighth of the live time left (the split takes the first half)."""
        if self.deadline is None:
            return int(LiveRun.RATE * 5)
        seconds = min(5.0, max(2.5, 0.1 * (self.deadline - self.started)), (self.deadline - time.monotonic()) / 8)
        return max(2, int(LiveRun.RATE * seconds))

    def _check_config_path(self) -> None:
        path = self.config_path
        if path.exists() and not path.read_text(errors="replace").startswith(MARKER):
            raise InputError(f"{path} exists and was not written by the demo; the demo writes its own config "
                             "(default .demo/indexer.toml): pass another --config or none")

    def _write_config(self) -> Settings:
        assert self.world is not None and self.db is not None
        text = (f"{MARKER} for its chain and database; both live only while it runs.\n"
                + self.world.to_toml(self.db.url) + f"\n[daemon]\nmetrics_port = {free_port()}\n")
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(text)
        self.config_path.chmod(0o600)  # the database URL may carry a password
        return parse_settings(tomllib.loads(text), {}, source=str(self.config_path))


def _deploy_and_trade(rpc_url: str, seed: int) -> tuple[World, Simulator]:
    world = deploy_world(rpc_url)
    sim = Simulator(world, seed=seed, block_interval=BLOCK_INTERVAL)
    sim.tour(moves_per_block=MOVES_PER_BLOCK)
    sim.run(HISTORY_BLOCKS, MOVES_PER_BLOCK)
    return world, sim


async def _stop_daemon(daemon: Daemon, task: asyncio.Task[int]) -> None:
    """Stop the daemon (it finishes or abandons its batch in flight); its error stays in `task`."""
    daemon.stop.set()
    if not task.done():
        await asyncio.wait([task], timeout=4.0)
    if not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=1.0)


def _log_to(path: Path) -> Callable[[], None]:
    """Send structlog's lines to `path` (they would tear the live view); returns the undo."""
    previous = structlog.get_config()["logger_factory"]
    handle = path.open("a", encoding="utf-8")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=handle))

    def restore() -> None:
        structlog.configure(logger_factory=previous)
        handle.close()

    return restore

