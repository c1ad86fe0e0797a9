"""The four ways the real token's history escapes an indexer that trusts events (issue 11),
built on anvil with our contracts.

Each case has a `setup` (contracts that must exist before the indexer starts, e.g. a configured
token) and a `play` (the activity whose every block is then compared with the chain). Both run
on an automining anvil, so every transaction is its own block; `Scene.on_block` is called after
every block (the live tests wait there for the daemon to index it, so the daemon sees the chain
one block at a time).

1. `fee_clock`: `setLastTimeFeeApplied`, `setPeriodLength` and `updateFeePerPeriod` emit
   `MultiplierUpdated(M)` from the update step and then move the fee clock: the multiplier at
   the end of the block differs from the emitted value, with no further event; fee periods
   also pass silently between moves.
2. `nets_out`: a scheduled 2:1 split activates silently and the updater sets the multiplier back
   before any token move (and again with an overridden reverse split): the two ends of a range
   that spans it have the same multiplier.
3. `upgrade_in_place`: a plain `LegacyToken` with balances is upgraded in place to XStock; one
   holder's balance is converted to shares in the upgrade transaction, the others read 0 from
   then on; later moves are share moves, and the multiplier moves.
4. `late_from_block`: ordinary activity on every factory token; the test then runs `backfill
   --from-block B` (B above the factory's NewToken events) on an empty database.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from devnet.contracts import load_artifact
from devnet.deploy import Transactor, Tx, World
from devnet.legacy import deploy_legacy, upgrade_to_xstock
from devnet.node import Node

E18 = 10**18


@dataclass
class Scene:
    """Sends transactions on `world`'s node, one block each, and moves time exactly."""

    world: World
    on_block: Callable[[], None] = lambda: None
    client: Node = field(init=False)
    tx: Transactor = field(init=False)
    blocks: list[int] = field(default_factory=list)  # blocks this scene produced

    def __post_init__(self) -> None:
        self.client = Node(self.world.rpc_url)
        self.tx = Transactor(self.client)
        accounts = [a.lower() for a in self.client.call("eth_accounts")]
        self.traders = accounts[6:10]  # unlocked accounts that hold no role

    def role(self, name: str) -> str:
        return self.world.roles[name]

    def now(self) -> int:
        return int(self.client.call("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)

    def head(self) -> int:
        return int(self.client.call("eth_blockNumber"), 16)

    def next_at(self, timestamp: int) -> None:
        """The next block gets exactly `timestamp`."""
        self.client.call("evm_setNextBlockTimestamp", [hex(timestamp)])

    def send(self, sender: str, to: str, fn: str, args: Sequence[Any], artifact: str = "XStock",
             gap: int = 1) -> dict[str, Any]:
        """One transaction, mined `gap` seconds after the previous block."""
        self.next_at(self.now() + gap)
        receipt = self.tx.execute([Tx(sender, to, load_artifact(artifact).encode_call(fn, list(args)),
                                      label=fn)])[0]
        self._mined()
        return receipt

    def mine(self, blocks: int = 1, gap: int = 12) -> None:
        """Empty blocks `gap` seconds apart (silent activations and fee periods happen here)."""
        for _ in range(blocks):
            self.next_at(self.now() + gap)
            self.client.call("evm_mine")
            self._mined()

    def _mined(self) -> None:
        self.blocks.append(self.head())
        self.on_block()

    def close(self) -> None:
        self.client.close()


Extra = dict[str, str]  # symbol -> address of the configured tokens a case's setup deployed


@dataclass(frozen=True)
class Case:
    """One scenario. `setup` deploys what must exist before the indexer starts and returns the
    configured tokens it adds; `play` is the activity; `tokens` the addresses compared."""

    name: str
    setup: Callable[[Scene], Extra]
    play: Callable[[Scene, Extra], None]
    tokens: Callable[[World, Extra], list[str]]


# ------------------------------------------------------------------------------ 1. fee clock

def _fee_clock(s: Scene, extra: Extra) -> None:
    token = s.world.tokens["TSLAx"]
    a, b, c, d = s.traders
    for holder, amount in ((a, 1000), (b, 500), (c, 250)):
        s.send(s.role("minter"), token, "mint", [holder, amount * E18])
    s.send(s.role("multiplier_updater"), token, "setFee", [E18 // 100, 100])  # 1% per 100 s
    s.mine(3, gap=60)  # periods pass silently
    s.send(a, token, "transfer", [d, 10 * E18])  # MultiplierUpdated, Transfer, TransferShares
    # The update step writes 2 due periods (event), then the clock moves back: 3 more at once.
    t = s.now() + 250
    s.next_at(t)
    s.send(s.role("owner"), token, "setLastTimeFeeApplied", [t - 550], gap=250)
    s.mine(2, gap=40)
    s.send(b, token, "approve", [a, 100 * E18])
    s.send(a, token, "transferFrom", [b, c, 5 * E18], gap=70)  # Approval, MultiplierUpdated, ...
    s.send(s.role("owner"), token, "setPeriodLength", [30], gap=90)  # event, then 30 s periods
    s.mine(2, gap=20)
    s.send(s.role("owner"), token, "updateFeePerPeriod", [5 * E18 // 100], gap=25)  # 5% from now on
    s.mine(3, gap=30)
    s.send(c, token, "transferShares", [d, 7 * E18])
    s.send(s.role("owner"), token, "setPeriodLength", [0], gap=45)  # decay stops (event first)
    s.mine(2, gap=100)
    s.send(d, token, "transfer", [a, E18])


# ------------------------------------------------------------------------------ 2. nets out

def _nets_out(s: Scene, extra: Extra) -> None:
    token = s.world.tokens["AAPLx"]
    a, b, c, d = s.traders
    updater = s.role("multiplier_updater")
    for holder, amount in ((a, 700), (b, 300), (c, 11)):
        s.send(s.role("minter"), token, "mint", [holder, amount * E18])
    s.send(a, token, "transfer", [d, 50 * E18])
    # A 2:1 split that activates silently, then is set back before any move.
    s.send(updater, token, "updateMultiplierValue", [2 * E18, E18, s.now() + 100])
    s.mine(4, gap=40)  # active from the third of these blocks, with no event
    s.send(updater, token, "updateMultiplierValue", [E18, 2 * E18, 0])
    s.send(b, token, "transfer", [c, 20 * E18])
    # A schedule replaced by a reverse split (Overridden), active silently, then set back.
    s.send(updater, token, "updateMultiplierValue", [3 * E18, E18, s.now() + 500])
    s.send(updater, token, "updateMultiplierValue", [E18 // 2, E18, s.now() + 60])
    s.mine(3, gap=30)
    s.send(updater, token, "updateMultiplierValue", [E18, E18 // 2, 0])
    s.mine(1)
    s.send(c, token, "transfer", [a, E18])


# ------------------------------------------------------------------------------ 3. upgrade in place

def _legacy_setup(s: Scene) -> Extra:
    s.next_at(s.now() + 1)
    token = deploy_legacy(s.tx, s.role("owner"), "Old Tesla xStock", "oTSLAx")
    return {"oTSLAx": token}


def _upgrade_in_place(s: Scene, extra: Extra) -> None:
    token = extra["oTSLAx"]
    owner = s.role("owner")
    a, b, c, d = s.traders
    for holder, amount in ((a, 1000), (b, 800), (c, 340)):  # 2,140 in plain balances
        s.send(owner, token, "mint", [holder, amount * E18], artifact="LegacyToken")
    s.send(a, token, "transfer", [d, 100 * E18], artifact="LegacyToken")
    s.send(b, token, "approve", [a, 50 * E18], artifact="LegacyToken")
    s.send(a, token, "transferFrom", [b, c, 30 * E18], artifact="LegacyToken")
    s.send(owner, token, "burn", [c, 20 * E18], artifact="LegacyToken")
    # Upgrade in place: a's 900 become shares in the same transaction; b, c, d read 0 after it.
    s.next_at(s.now() + 1)
    upgrade_to_xstock(s.tx, owner, token, s.world.implementation, [a])
    s._mined()
    for fn, who in (("setMinter", s.role("minter")), ("setBurner", s.role("burner")),
                    ("setMultiplierUpdater", s.role("multiplier_updater"))):
        s.send(owner, token, fn, [who])
    s.send(s.role("minter"), token, "mint", [b, 80 * E18])
    s.send(a, token, "transfer", [c, 100 * E18])
    s.send(s.role("multiplier_updater"), token, "updateMultiplierValue", [3 * E18 // 2, E18, 0])
    s.send(a, token, "transferShares", [d, 200 * E18])
    s.send(s.role("multiplier_updater"), token, "updateMultiplierValue",
           [3 * E18, 3 * E18 // 2, s.now() + 50])
    s.mine(3, gap=30)  # the split activates silently
    s.send(b, token, "transfer", [a, 10 * E18])


# ------------------------------------------------------------------------------ 4. late --from-block

def _ordinary(s: Scene, extra: Extra) -> None:
    a, b, c, d = s.traders
    for symbol, token in s.world.tokens.items():
        s.send(s.role("minter"), token, "mint", [a, 100 * E18])
        s.send(a, token, "transfer", [b, 10 * E18])
        if symbol == "NVDAx":
            s.send(s.role("multiplier_updater"), token, "updateMultiplierValue", [2 * E18, E18, 0])
            s.send(b, token, "transferShares", [c, 3 * E18])
    for token in s.world.plain_tokens.values():
        s.send(s.role("owner"), token, "mint", [d, 5 * E18], artifact="PlainToken")
        s.send(d, token, "transfer", [a, E18], artifact="PlainToken")


def _nothing(s: Scene) -> Extra:
    return {}


CASES: dict[str, Case] = {
    "fee_clock": Case("fee_clock", _nothing, _fee_clock, lambda w, e: [w.tokens["TSLAx"]]),
    "nets_out": Case("nets_out", _nothing, _nets_out, lambda w, e: [w.tokens["AAPLx"]]),
    "upgrade_in_place": Case("upgrade_in_place", _legacy_setup, _upgrade_in_place,
                             lambda w, e: [e["oTSLAx"]]),
    "late_from_block": Case("late_from_block", _nothing, _ordinary,
                            lambda w, e: [*w.tokens.values(), *w.plain_tokens.values()]),
}


def setup(case: Case, world: World) -> Extra:
    """Run the case's setup; returns the configured tokens it deployed."""
    scene = Scene(world)
    try:
        return case.setup(scene)
    finally:
        scene.close()


def play(case: Case, world: World, extra: Extra, on_block: Callable[[], None] = lambda: None) -> list[int]:
    """Run the case's activity; returns the blocks it produced."""
    scene = Scene(world, on_block=on_block)
    try:
        case.play(scene, extra)
        return scene.blocks
    finally:
        scene.close()


def config_text(world: World, database_url: str, extra: Extra, batch_blocks: int) -> str:
    """The indexer config for `world` plus the case's tokens, every range `batch_blocks` long
    at most (1_000_000: one range for the whole history)."""
    text = world.to_toml(database_url)
    sizes = f"batch_blocks = {batch_blocks}\nmax_batch_blocks = {batch_blocks}\n"
    text = text.replace("max_reorg_depth = 64\n", "max_reorg_depth = 64\n" + sizes, 1)
    return text + "".join(f"\n[[token]]\nchain = \"anvil\"\naddress = {json.dumps(a)}\n"
                          f"symbol = {json.dumps(n)}\nstart_block = 0\n" for n, a in extra.items())
