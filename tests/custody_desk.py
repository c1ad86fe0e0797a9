"""A test desk for the backing scenarios: real chain moves at chosen block times, real indexing,
real custody imports, and the database read back.

`Desk(world, config, database_url, folder)`: `mint`/`call` send one transaction in a block
with the given timestamp (anvil automine: one transaction, one block), `mine(at)` an empty
block; `index()` runs the backfill in process; `attest(...)` writes a custody CSV and imports
it (which also evaluates the rules); `backing(u)` and `flags(rule)` read the views back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from itertools import count
from pathlib import Path
from typing import Any

import asyncpg

from devnet.contracts import load_artifact
from devnet.deploy import Transactor, Tx, World
from devnet.node import Node
from indexer.backfill import backfill
from indexer.config import Settings, load_settings
from indexer.custody.importer import ImportReport, import_file
from indexer.custody.parse import COLUMNS

ONE = 10**18
HOLDER = "0x" + "ab" * 20
XSTOCK = load_artifact("XStock")


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass
class Desk:
    world: World
    config: Path
    database_url: str
    folder: Path
    rpc: Node = field(init=False)
    tx: Transactor = field(init=False)
    _files: count[int] = field(default_factory=count)

    def __post_init__(self) -> None:
        self.rpc = Node(self.world.rpc_url)
        self.tx = Transactor(self.rpc)

    @property
    def settings(self) -> Settings:
        return load_settings(str(self.config), env={})  # the session's $DATABASE_URL is an admin URL

    # -- the chain ---------------------------------------------------------------------------

    def now(self) -> int:
        return int(self.rpc.call("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)

    def call(self, role: str, symbol: str, fn: str, args: Sequence[Any], at: int | None = None) -> int:
        """One transaction of `role` on `symbol`, alone in a block at time `at`; returns its block."""
        if at is not None:
            self.rpc.call("evm_setNextBlockTimestamp", [at])
        (receipt,) = self.tx.execute([Tx(self.world.roles[role], self.world.tokens[symbol],
                                         XSTOCK.encode_call(fn, list(args)), gas=300_000, label=fn)])
        return int(receipt["blockNumber"], 16)

    def mint(self, symbol: str, tokens: int, at: int | None = None) -> int:
        return self.call("minter", symbol, "mint", [HOLDER, tokens * ONE], at)

    def mine(self, at: int) -> None:
        self.rpc.call("evm_setNextBlockTimestamp", [at])
        self.rpc.call("anvil_mine", ["0x1"])

    # -- the indexer -------------------------------------------------------------------------

    async def index(self) -> None:
        await backfill(self.settings)

    async def attest(self, underlying: str, shares: str | int, at: int, *, ripcord: bool = False,
                     account: str = "acc-1", in_transit: str | int = 0) -> ImportReport:
        path = self.write_csv([[underlying, "Clearstream", account, str(shares), str(in_transit), iso(at),
                                "The Network Firm", "true" if ripcord else "false"]])
        return await import_file(self.settings, str(path))

    def write_csv(self, rows: Sequence[Sequence[str]], header: Sequence[str] = COLUMNS) -> Path:
        path = self.folder / f"custody-{next(self._files)}.csv"
        path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
        return path

    # -- the database ------------------------------------------------------------------------

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def backing(self, underlying: str) -> asyncpg.Record:
        (row,) = await self.fetch("SELECT * FROM backing WHERE underlying = $1", underlying)
        return row

    async def flags(self, rule: str, underlying: str | None = None, open_only: bool = True) -> list[asyncpg.Record]:
        return await self.fetch(
            "SELECT * FROM backing_flags WHERE rule = $1 AND ($2::text IS NULL OR underlying = $2) "
            "AND (closed_at IS NULL OR NOT $3) ORDER BY id", rule, underlying, open_only)


class Listener:
    """LISTEN backing_flags on its own connection; `wait(predicate)` waits for a payload that
    satisfies it, up to a deadline (no sleeping)."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._conn: asyncpg.Connection | None = None

    async def start(self, database_url: str) -> Listener:
        self._conn = await asyncpg.connect(database_url)
        await self._conn.add_listener("backing_flags", self._on)
        return self

    def _on(self, conn: object, pid: int, channel: str, payload: str) -> None:
        self.payloads.append(json.loads(payload))
        self._arrived.set()

    async def wait(self, predicate: Callable[[dict[str, Any]], bool], within: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                found = next((p for p in self.payloads if predicate(p)), None)
                if found is not None:
                    return found
                self._arrived.clear()
                await self._arrived.wait()

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


def decimal(value: Any) -> Decimal:
    return Decimal(str(value))
