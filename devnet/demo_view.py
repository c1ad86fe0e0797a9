"""What the demo shows: holders and supply tables, and a live view that follows the head.

On a terminal (or when recording an SVG) everything is drawn with rich; otherwise as plain
aligned text, flushed line by line so that a pipe (a test, `| tee`) sees it at once. The live
view is a `rich.live.Live` on a terminal and its tables printed every `PLAIN_EVERY` seconds
otherwise; events (the split, custody, flags) show in it and, off a terminal, are printed as they
happen. The SVG (`--svg`) is one frame of the live view: the last one in which a backing flag
other than a privileged change was open (the story's most telling moment), else the whole
recorded output (start-up, the live view's final frame, the closing lines).
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any

from asyncpg import Record
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from indexer.store import Store

PLAIN_EVERY = 5.0
EVENTS_SHOWN = 10  # the latest events in the rich view
SVG_TITLE = "xstock-indexer demo"
TOP_HOLDERS = 10
SUPPLY_SQL = ("SELECT token, symbol, kind, total_supply, holder_count, multiplier, indexed_block "
              "FROM token_supply WHERE chain_id = $1")
HOLDERS_SQL = ("SELECT holder, shares, balance FROM holders WHERE chain_id = $1 AND token = $2 "
               "ORDER BY balance_raw DESC, holder LIMIT $3")


@dataclass(frozen=True)
class Grid:
    """A titled table of strings; columns listed in `right` are right-aligned."""

    title: str
    columns: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    right: frozenset[int] = frozenset()
    styles: tuple[str, ...] = ()  # per row, "" for none


@dataclass
class LiveState:
    """One frame of the live view."""

    elapsed: float
    head: int
    indexed: int
    blocks_per_s: float
    transfers: int
    supply: Grid
    chain_time: datetime | None = None
    backing: Grid | None = None
    flags: Grid | None = None
    note: str = ""
    alert: bool = False  # a flag other than a privileged change is open
    events: list[str] = field(default_factory=list)
    footer: str = ""


class Out:
    """Where the demo writes: rich on a terminal or when recording an SVG, plain lines otherwise."""

    def __init__(self, svg: str | None = None) -> None:
        self.console = Console(record=svg is not None, highlight=False)
        self.frame: RenderableType | None = None  # the live frame to save as the SVG, if any
        self.terminal = self.console.is_terminal
        self.rich = self.terminal or svg is not None
        if not self.terminal:
            self.console.width = 120

    def say(self, text: str = "", style: str = "") -> None:
        if self.rich:
            # A terminal wraps long lines itself, so that a copied command stays one line.
            self.console.print(Text(text, style=style), soft_wrap=self.terminal)
        else:
            print(text, flush=True)

    def grid(self, grid: Grid) -> None:
        if self.rich:
            self.console.print(rich_table(grid))
        else:
            print(plain_table(grid), flush=True)

    def save_svg(self, path: str) -> None:
        if self.frame is None:
            self.console.save_svg(path, title=SVG_TITLE)
            return
        frame = Console(record=True, width=self.console.width, file=io.StringIO(), force_terminal=True,
                        color_system="truecolor", highlight=False)
        frame.print(self.frame)
        frame.save_svg(path, title=SVG_TITLE)


def rich_table(grid: Grid) -> Table:
    table = Table(title=grid.title, title_justify="left", title_style="bold")
    for i, name in enumerate(grid.columns):
        table.add_column(name, justify="right" if i in grid.right else "left", no_wrap=True)
    for i, row in enumerate(grid.rows):
        table.add_row(*row, style=grid.styles[i] if i < len(grid.styles) and grid.styles[i] else None)
    return table


def plain_table(grid: Grid) -> str:
    widths = [max(len(c), *(len(r[i]) for r in grid.rows)) if grid.rows else len(c)
              for i, c in enumerate(grid.columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in grid.right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([grid.title, line(grid.columns), *(line(r) for r in grid.rows)])


def units(value: Any, places: int = 4) -> str:
    """A decimal (token units) with thousands separators."""
    return f"{Decimal(value):,.{places}f}"


def scaled(raw: Any, places: int = 4) -> str:
    """Base units (1e18 = 1) as a decimal."""
    return units(Decimal(int(raw)).scaleb(-18), places)


async def fetch_supply(store: Store, chain_id: int, order: Sequence[str]) -> list[Record]:
    """token_supply rows of the chain, in `order` of symbols (others last)."""
    rows = await store.fetch(SUPPLY_SQL, chain_id)
    return sorted(rows, key=lambda r: order.index(r["symbol"]) if r["symbol"] in order else len(order))


def supply_grid(rows: Sequence[Record], head: int | None = None) -> Grid:
    """Supply per token at its indexed block (and the chain's head, when given)."""
    out = [(str(r["symbol"]), str(r["kind"]), units(r["total_supply"]), f"{int(r['holder_count']):,}",
            scaled(r["multiplier"], 6) if r["kind"] == "xstock" else "-",
            f"{r['indexed_block']} / {head}" if head is not None else str(r["indexed_block"]))
           for r in rows]
    block = "indexed / head" if head is not None else "indexed block"
    return Grid("Supply (view token_supply)", ("symbol", "kind", "total supply", "holders", "multiplier", block),
                out, frozenset({2, 3, 4, 5}))


async def holders_grid(store: Store, chain_id: int, token: str, symbol: str, holders: int) -> Grid:
    """The top holders of one token by balance."""
    rows = await store.fetch(HOLDERS_SQL, chain_id, token, TOP_HOLDERS)
    out = [(str(r["holder"]), scaled(r["shares"]), units(r["balance"])) for r in rows]
    title = f"{symbol}: top {len(out)} of {holders:,} holders (view holders)"
    return Grid(title, ("holder", "shares", "balance"), out, frozenset({1, 2}))


def header(state: LiveState) -> str:
    when = "" if state.chain_time is None else f" | chain time {state.chain_time:%Y-%m-%d %H:%M:%S}Z"
    return (f"live {state.elapsed:5.0f} s | head {state.head} | indexed {state.indexed} "
            f"(lag {max(0, state.head - state.indexed)}) | {state.blocks_per_s:.1f} blocks/s | "
            f"{state.transfers:,} transfers indexed{when}")


def _grids(state: LiveState) -> list[Grid]:
    return [g for g in (state.supply, state.backing, state.flags) if g is not None]


def live_renderable(state: LiveState, fit: Console | None = None) -> RenderableType:
    """The rich frame; with `fit`, only the latest events that fit the console's height."""
    top: list[RenderableType] = [Text(header(state), style="bold"), *(rich_table(g) for g in _grids(state))]
    if state.note:
        top.append(Text(state.note, style="dim"))
    bottom: list[RenderableType] = [Text(state.footer, style="dim")] if state.footer else []
    events: list[RenderableType] = [Text(e, style=event_style(e)) for e in state.events[-EVENTS_SHOWN:]]
    if fit is not None:
        room = fit.size.height - 1 - sum(_height(fit, r) for r in (*top, *bottom))
        kept: list[RenderableType] = []
        for event in reversed(events):
            room -= _height(fit, event)
            if room < 0:
                break
            kept.insert(0, event)
        events = kept
    return Group(*top, *events, *bottom)


def _height(console: Console, renderable: RenderableType) -> int:
    return len(console.render_lines(renderable, console.options, pad=False))


def event_style(line: str) -> str:
    if line.startswith("flag opened"):
        return "bold red"
    if line.startswith("flag closed"):
        return "bold green"
    return "cyan" if line.startswith("custody") else "yellow"


def live_text(state: LiveState) -> str:
    """The plain frame; events are not repeated in it (they were printed as they happened)."""
    return "\n".join([header(state), *(plain_table(g) for g in _grids(state)), *([state.note] if state.note else [])])


class LiveView:
    """`update(state)` redraws (terminal) or prints every `every` seconds (otherwise);
    `event(text)` adds a line to the view (printed at once off a terminal). On exit the last
    state is printed once more, and kept on screen."""

    def __init__(self, out: Out, every: float = PLAIN_EVERY) -> None:
        self.out = out
        self.every = every
        self.events: list[str] = []
        self._live: Live | None = None
        self._last: LiveState | None = None
        self._printed = 0.0
        self._record = out.console.record

    def __enter__(self) -> LiveView:
        self.out.console.record = False
        if self.out.terminal:
            self._live = Live(console=self.out.console, refresh_per_second=4, transient=True,
                              redirect_stderr=False)
            self._live.start()
        return self

    def event(self, text: str) -> None:
        self.events.append(text)
        if self._live is None:
            self.out.say(text)

    def update(self, state: LiveState) -> None:
        state.events = self.events
        self._last = state
        if state.alert:
            self.out.frame = live_renderable(replace(state, events=list(self.events), footer=""))
        if self._live is not None:
            self._live.update(live_renderable(state, self.out.console))
        elif time.monotonic() - self._printed >= self.every:
            self._printed = time.monotonic()
            self._print(state)

    def _print(self, state: LiveState) -> None:
        if self.out.rich:
            self.out.console.print(live_renderable(state))
        else:
            self.out.say(live_text(state))

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.stop()
        self.out.console.record = self._record
        if self._last is not None:
            self._last.footer = ""
            self._print(self._last)
        sys.stdout.flush()
