"""The custody part of the demo's live story: a hook that does nothing yet.

`indexer demo` starts `custody_story(...)` as a task when the live phase begins, and cancels it
when the demo stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..config import Settings
from .deploy import World
from .trading import LiveTrading


async def custody_story(settings: Settings, world: World, trading: LiveTrading,
                        say: Callable[[str], None], stop: asyncio.Event) -> None:
    """The custody part of the live story; it does nothing yet.

    To come once the custody module lands, as three beats announced with `say(...)` (a line in
    the live view), each waiting for the indexer (or `stop`) before the next:
    1. backed: import a custody record for TSLA covering the indexed TSLAx supply, so that the
       `backing` view says `backed`;
    2. under-collateralised: mint TSLAx with no custody increase
       (`trading.schedule(lambda sim: sim.moves("mint", "TSLAx", 3))`; the simulator is not
       thread safe, so every chain action goes through `trading.schedule`), then reconcile:
       `unbacked` with its shortfall, and a flag opens in `backing_flags`;
    3. top-up: a newer record covering the new supply; reconcile closes the flag.
    Custody times (`as_of`) are chain time, not wall time: the demo's chain starts at
    2026-01-05 14:30 UTC and moves 12 s per block. Must return promptly once `stop` is set.
    """
    del settings, world, trading, say, stop
