"""The custody side of the demo's live story: records go in through the real import, flags follow.

`CustodyStory(settings, store, chain_id, say, stop, folder, gap_blocks).start()` plays four beats,
each announced with `say(...)` (a line of the live view) and each waiting for the indexer:

1. backed: at the start of the live phase, one issuer-API answer per xStock (the shape of the
   issuer's public API) whose holdings equal the supply at the latest indexed block, as of that
   block's time. It is written to `folder` and imported like `indexer custody import` does
   (`import_file`: parse, store, reconcile), so `backing` says backed for every underlying.
2. the silent split (demo_live schedules it) doubles TSLAx's supply with no custody change; the
   daemon's reconciliation after the batch opens `multiplier_without_custody` (R8) for TSLA.
   Nothing is written here: the story waits for that flag in `backing_flags` (the live view
   announces every flag that opens or closes, with the reason).
3. `gap_blocks` indexed blocks later, the next attestation still holds the pre-split share
   count (the split shares are not credited yet): `backing` says unbacked with ratio 1/2 and
   `unbacked_supply` (R3) opens.
4. `gap_blocks` later, an attestation with the split shares credited covers the whole supply:
   both flags close.

Afterwards every xStock is attested again every `ATTEST_EVERY` blocks (6 h of chain time), as an
attestor's regular reports would, so that a long demo does not drift into stale attestations.
Custody times are chain time (the blocks' timestamps), never wall time. `run` returns promptly
once `stop` is set; an import error ends it (`failed()`, `raise_failure()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from pathlib import Path

from indexer.config import Settings
from indexer.custody.importer import import_file
from indexer.store import Store

from .demo_view import units

STORY_UNDERLYING, SPLIT_RATIO = "TSLA", 2
PROVIDER = "Clearstream"
ATTEST_EVERY = 1800  # blocks: 6 h of chain time at 12 s a block
POLL = 0.25
SUPPLY_SQL = """
SELECT c.block_number, c.block_time, t.underlying, t.symbol, underlying_supply_at(t.underlying, c.block_time) AS supply
  FROM cursors c JOIN tokens t USING (chain_id)
 WHERE c.chain_id = $1 AND t.kind = 'xstock' AND ($2::text IS NULL OR t.underlying = $2)
 ORDER BY t.symbol"""
FLAG_SQL = "SELECT 1 FROM backing_flags WHERE rule = $1 AND underlying = $2 AND closed_at IS NULL"


@dataclass(frozen=True)
class Position:
    """One xStock's supply at an indexed block, in underlying shares."""

    underlying: str
    symbol: str
    supply: Decimal
    block: int
    time: datetime


class CustodyStory:
    def __init__(self, settings: Settings, store: Store, chain_id: int, say: Callable[[str], None],
                 stop: asyncio.Event, folder: Path, gap_blocks: int = 12) -> None:
        self.settings, self.store, self.chain_id = settings, store, chain_id
        self.say, self.stop, self.folder, self.gap = say, stop, folder, gap_blocks
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the story as a task (see `failed`, `close`)."""
        self._task = asyncio.create_task(self.run(), name="custody-story")

    def failed(self) -> bool:
        t = self._task
        return t is not None and t.done() and not t.cancelled() and t.exception() is not None

    def raise_failure(self) -> None:
        if self._task is not None and self.failed():
            raise self._task.exception()  # type: ignore[misc]

    async def close(self) -> None:
        """Cancel the story if it still runs, and wait (briefly) for it to end."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task], timeout=2.0)

    async def run(self) -> None:
        await self.attest_all("exactly the supply: all backed")
        if not await self.until_flag("multiplier_without_custody") or not await self.wait_blocks(self.gap):
            return
        (p,) = await self.positions(STORY_UNDERLYING)
        with localcontext() as ctx:
            ctx.prec = 80
            held = p.supply / SPLIT_RATIO
        path = await self.attest([p], held)
        self.say(f"custody   {STORY_UNDERLYING}: next attestation ({path}, as of block {p.block}) still shows "
                 f"{units(held)} shares, the split not yet credited: {await self.status()}")
        if not await self.wait_blocks(self.gap):
            return
        (p,) = await self.positions(STORY_UNDERLYING)
        path = await self.attest([p])
        self.say(f"custody   {STORY_UNDERLYING}: top-up ({path}, as of block {p.block}): {units(p.supply)} shares, "
                 f"the split shares credited: {await self.status()}")
        while await self.wait_blocks(ATTEST_EVERY):
            await self.attest_all("exactly the supply (the regular report, every 6 h of chain time)")

    async def attest_all(self, why: str) -> None:
        positions = await self.positions(None)
        if not positions:
            return
        path = await self.attest(positions)
        p = positions[0]
        self.say(f"custody   imported {path} (issuer API answers, like `indexer custody import`): "
                 f"{', '.join(q.underlying for q in positions)} held at {PROVIDER} as of block {p.block}, {why}")

    async def attest(self, positions: Sequence[Position], held: Decimal | None = None) -> Path:
        """Write one issuer-API answer per position (holdings `held`, else the supply) and import it."""
        path = self.folder / f"issuer-block-{positions[0].block}.json"
        await asyncio.to_thread(_write, path, issuer_json(positions, held))
        await import_file(self.settings, str(path), "issuer")
        return path

    async def positions(self, underlying: str | None) -> list[Position]:
        rows = await self.store.fetch(SUPPLY_SQL, self.chain_id, underlying)
        return [Position(r["underlying"], r["symbol"], Decimal(r["supply"]), int(r["block_number"]), r["block_time"])
                for r in rows]

    async def status(self) -> str:
        rows = await self.store.fetch("SELECT status, ratio FROM backing WHERE underlying = $1", STORY_UNDERLYING)
        if not rows:
            return "not in the backing view"
        ratio = "-" if rows[0]["ratio"] is None else f"{rows[0]['ratio']:.6f}"
        return f"backing says {rows[0]['status']}, ratio {ratio}"

    async def until_flag(self, rule: str) -> bool:
        """Wait until the story's underlying has an open flag of `rule`; False when stopped first."""
        while not self.stop.is_set():
            if await self.store.fetch(FLAG_SQL, rule, STORY_UNDERLYING):
                return True
            await _wait(self.stop, POLL)
        return False

    async def wait_blocks(self, n: int) -> bool:
        """Wait until `n` more blocks are indexed; False when stopped first."""
        target = await self._indexed() + n
        while not self.stop.is_set():
            if await self._indexed() >= target:
                return True
            await _wait(self.stop, POLL)
        return False

    async def _indexed(self) -> int:
        rows = await self.store.fetch("SELECT block_number FROM cursors WHERE chain_id = $1", self.chain_id)
        return int(rows[0]["block_number"]) if rows else 0


def issuer_json(positions: Sequence[Position], held: Decimal | None = None) -> str:
    """The issuer API's answers for `positions` as a JSON array, amounts as exact JSON numbers."""
    answers = []
    for p in positions:
        shares = _number(p.supply if held is None else held)
        answers.append(
            f'  {{"symbol": {json.dumps(p.symbol)}, "timestamp": {json.dumps(p.time.isoformat())}, '
            f'"sharesHeld": {shares}, "circulatingSupply": {_number(p.supply)},\n'
            f'   "holdings": [{{"provider": {json.dumps(PROVIDER)}, "quantity": {shares}, '
            f'"symbol": {json.dumps(p.underlying)}}}]}}')
    return "[\n" + ",\n".join(answers) + "\n]\n"


def _number(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
