"""The simulator's engine: planned blocks, and an exact Python mirror of every holder's shares.

The engine owns time: it sets `anvil_setBlockTimestampInterval` (default 12 s), so every block's
timestamp is known before it is mined, and it asks the chain for the multiplier in force at that
timestamp (`getCurrentMultiplier` by eth_call with a time override). A move is planned into a
`Block` only if its sender can afford it from the shares held at the start of the block, less
what it already spends in that block, so no planned move reverts. `Engine._commit` mines the
block, checks every receipt's status and (with `verify_logs`) that its TransferShares logs equal
the planned effects, then applies the effects to the mirror.

Failure modes: `SimulationError` (an unexpected revert, or the chain disagreeing with the
mirror); `Web3RPCError` / `TimeoutError` from the node.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils.crypto import keccak

from .contracts import load_artifact
from .deploy import Receipt, Transactor, Tx, TxFailed, World
from .node import Node

ONE = 10**18
MAX_UINT = 2**256 - 1
ZERO = "0x" + "00" * 20
SINGLE_GAS, BATCH_GAS, BATCH_MOVE_GAS = 250_000, 80_000, 50_000
_Args = Callable[[str, str, int, int], list[Any]]  # (from, to, amount, shares) -> call args
_CALLS: dict[str, tuple[str, _Args]] = {
    "transfer": ("transfer", lambda f, t, a, s: [t, a]),
    "transfer_shares": ("transferShares", lambda f, t, a, s: [t, s]),
    "transfer_from": ("transferFrom", lambda f, t, a, s: [f, t, a]),
    "transfer_shares_from": ("transferSharesFrom", lambda f, t, a, s: [f, t, s]),
    "mint": ("mint", lambda f, t, a, s: [t, a]),
    "burn": ("burn", lambda f, t, a, s: [f, a]),
}
_CALL_OF = {"zero": "transfer", "self": "transfer", "redeem": "transfer",
            "transfer_from_unlimited": "transfer_from"}
Effect = tuple[str, str, str, int]  # token, from, to, shares


class SimulationError(RuntimeError):
    """A move reverted, or the chain's logs disagree with the simulator's mirror."""


@dataclass
class Summary:
    """Cumulative outcome of a simulator. `counts`: transactions by kind (moves, `approve`,
    `pause`, `unpause`, `multiplier_update`, `multiplier_scheduled`, `fee_set`, ...) plus
    `batch_move` (moves inside MoveBatch transactions) and `reverted_attempt` (deliberate
    failures while paused, never moves). `moves`: Transfer+TransferShares pairs emitted.
    `touched[symbol]`: every address that ever held the token. `activations[symbol]`: blocks in
    which a scheduled multiplier took effect silently."""

    counts: Counter[str] = field(default_factory=Counter)
    moves: int = 0
    touched: dict[str, set[str]] = field(default_factory=dict)
    tx_hashes: list[str] = field(default_factory=list)
    activations: dict[str, list[int]] = field(default_factory=dict)
    first_block: int | None = None
    last_block: int | None = None


@dataclass
class Action:
    """One planned transaction and the share moves it must emit (none for approve, pause...)."""

    kind: str
    tx: Tx
    effects: list[Effect]


@dataclass
class Block:
    """A block being planned: its timestamp, the gas left, and the shares each (token, holder)
    already spends in it."""

    t0: int
    explicit: bool
    step: int  # seconds between transactions: the interval under automine, else 0
    gas_room: int
    actions: list[Action] = field(default_factory=list)
    debits: Counter[tuple[str, str]] = field(default_factory=Counter)

    def next_time(self) -> int:
        return self.t0 + self.step * len(self.actions)

    def fits(self, gas: int) -> bool:
        return self.step > 0 or gas <= self.gas_room

    def add(self, action: Action) -> None:
        self.actions.append(action)
        self.gas_room -= action.tx.gas or 0


def derive(seed: int, tag: str, i: int) -> str:
    """The `i`-th address of kind `tag` (holder, fresh, receiver) for `seed`."""
    return "0x" + keccak(text=f"xstock-sim:{seed}:{tag}:{i}")[-20:].hex()


class Engine:
    """Blocks and the mirror. Public state: `holders`, `shares[token][holder]` (the mirror),
    `summary`. Subclasses plan moves into blocks (`_plan`, `_call`) and commit them."""

    def __init__(self, world: World, seed: int = 0, n_holders: int = 50,
                 block_interval: int = 12, initial_tokens: int = 1_000_000,
                 verify_logs: bool = True) -> None:
        if block_interval < 2 or n_holders < 3:
            raise ValueError("need block_interval >= 2 s and n_holders >= 3")
        self.world, self.seed, self.interval = world, seed, block_interval
        self.rng = random.Random(seed)
        self.client = Node(world.rpc_url)
        self.tx = Transactor(self.client)
        self.holders = [derive(seed, "holder", i) for i in range(n_holders)]
        self.desk = self.holders[0]
        self.symbol_of = {address: symbol for symbol, address in world.all_tokens.items()}
        self.plain = set(world.plain_tokens.values())
        self.shares: dict[str, dict[str, int]] = {t: {} for t in self.symbol_of}
        self.summary = Summary(touched={s: set() for s in world.all_tokens})
        self.paused: set[str] = set()
        self.verify_logs = verify_logs
        self.initial_tokens = initial_tokens
        self._x, self._plain_art = load_artifact("XStock"), load_artifact("PlainToken")
        self._mb = load_artifact("MoveBatch")
        self._topics = (self._x.event_topic("TransferShares"), self._x.event_topic("Transfer"))
        self._deferred: list[tuple[str, Callable[[Block], object]]] = []
        self._m: dict[tuple[str, int], int] = {}
        self._fresh = 0
        self._ready = False
        latest = self.client.call("eth_getBlockByNumber", ["latest", False])
        self._gas_limit = int(latest["gasLimit"], 16)
        self.client.call("anvil_setBlockTimestampInterval", [block_interval])

    # ------------------------------------------------------------------ blocks

    def _open(self, at: int | None = None) -> Block:
        latest = self.client.call("eth_getBlockByNumber", ["latest", False])
        t0 = at if at is not None else int(latest["timestamp"], 16) + self.interval
        return Block(t0, at is not None, self.interval if self.tx.automine else 0,
                      self._gas_limit)

    def _commit(self, block: Block) -> list[Receipt]:
        """Mine `block` (an empty one too), check receipts and logs, update the mirror."""
        if block.explicit:
            self.client.call("evm_setNextBlockTimestamp", [block.t0])
        self._m.clear()
        if not block.actions:
            self.tx.mine()
            self._note_block(int(self.client.call("eth_blockNumber"), 16))
            return []
        try:
            receipts = self.tx.execute([a.tx for a in block.actions])
        except TxFailed as exc:
            raise SimulationError(str(exc)) from exc
        if not self.tx.automine:
            self._check_one_block(block, receipts)
        for action, receipt in zip(block.actions, receipts, strict=True):
            if self.verify_logs and not action.tx.expect_revert:
                self._verify(action, receipt)
            self._apply(action, receipt)
        return receipts

    def _check_one_block(self, block: Block, receipts: list[Receipt]) -> None:
        numbers = {r["blockNumber"] for r in receipts}
        header = self.client.call("eth_getBlockByNumber", [receipts[0]["blockNumber"], False])
        if len(numbers) != 1 or int(header["timestamp"], 16) != block.t0:
            raise SimulationError(f"planned block at t={block.t0} was mined as blocks "
                                  f"{sorted(numbers)}: is something else mining?")

    def _verify(self, action: Action, receipt: Receipt) -> None:
        shares_topic, transfer_topic = self._topics
        seen = [(lg["address"].lower(), "0x" + lg["topics"][1][-40:],
                 "0x" + lg["topics"][2][-40:], int(lg["data"], 16))
                for lg in receipt["logs"]
                if lg["topics"][0] == shares_topic
                or (lg["topics"][0] == transfer_topic and lg["address"].lower() in self.plain)]
        if seen != action.effects:
            raise SimulationError(f"{action.tx.label} {receipt['transactionHash']}: chain moved "
                                  f"{seen}, mirror expected {action.effects}")

    def _apply(self, action: Action, receipt: Receipt) -> None:
        s = self.summary
        s.tx_hashes.append(receipt["transactionHash"])
        self._note_block(int(receipt["blockNumber"], 16))
        s.counts["reverted_attempt" if action.tx.expect_revert else action.kind] += 1
        if action.kind.startswith("batch"):
            s.counts["batch_move"] += len(action.effects)
        s.moves += len(action.effects)
        for token, frm, to, shares in action.effects:
            book = self.shares[token]
            if frm != ZERO:
                book[frm] -= shares
            if to != ZERO:
                book[to] = book.get(to, 0) + shares
                s.touched[self.symbol_of[token]].add(to)

    def _note_block(self, number: int) -> None:
        s = self.summary
        s.first_block = number if s.first_block is None else s.first_block
        s.last_block = number

    def multiplier_at(self, token: str, timestamp: int) -> int:
        """The multiplier in force at `timestamp` given the latest state (1e18 for plain)."""
        if token in self.plain:
            return ONE
        key = (token, timestamp)
        if key not in self._m:
            out = self.client.call("eth_call", [
                {"to": token, "data": self._x.encode_call("getCurrentMultiplier", [])},
                "latest", None, {"time": hex(timestamp)}])
            self._m[key] = int(out[2:66], 16)
        return self._m[key]

    # ------------------------------------------------------------------ planning

    def _art(self, token: str) -> Any:
        return self._plain_art if token in self.plain else self._x

    def _spendable(self, block: Block, token: str, holder: str) -> int:
        return self.shares[token].get(holder, 0) - block.debits[(token, holder)]

    def _plan(self, block: Block, kind: str, token: str, sender: str, frm: str, to: str,
              value: int, by_shares: bool = False, expect_revert: bool = False) -> bool:
        """Add one move of `value` (token units, or shares with `by_shares`) if the block has
        room and `frm` can afford it at the block's multiplier; False otherwise."""
        if not block.fits(SINGLE_GAS):
            return False
        m = self.multiplier_at(token, block.next_time())
        amount, shares = (value * m // ONE, value) if by_shares else (value, value * ONE // m)
        if frm != ZERO and not expect_revert:
            if shares > self._spendable(block, token, frm):
                return False
            block.debits[(token, frm)] += shares
        fn, args = _CALLS[_CALL_OF.get(kind, kind)]
        data = self._art(token).encode_call(fn, args(frm, to, amount, shares))
        label = f"{kind} {self.symbol_of[token]}"
        effects = [] if expect_revert else [(token, frm, to, shares)]
        block.add(Action(kind, Tx(sender, token, data, SINGLE_GAS, label, expect_revert),
                          effects))
        return True

    def _call(self, block: Block, kind: str, token: str, sender: str, fn: str,
              args: Sequence[Any]) -> bool:
        """Add a transaction that moves nothing (approve, pause, multiplier, fee)."""
        if not block.fits(SINGLE_GAS):
            return False
        data = self._art(token).encode_call(fn, list(args))
        block.add(Action(kind, Tx(sender, token, data, SINGLE_GAS,
                                   f"{kind} {self.symbol_of[token]}"), []))
        return True

