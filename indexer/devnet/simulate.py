"""A deterministic, seeded trading simulator for a deployed `World`.

Every random choice comes from `random.Random(seed)`: one seed gives the same actions and the
same final shares and balances. Holders are addresses derived from the seed, impersonated
(`anvil_impersonateAccount`, `anvil_setBalance`); each approves the desk (holder 0) and
MoveBatch with an unlimited allowance once, then receives a mint of every token.

The simulator owns time: it sets `anvil_setBlockTimestampInterval` (default 12 s), so every
block's timestamp is known before it is mined, and it asks the chain for the multiplier in force
at that timestamp (`getCurrentMultiplier` by eth_call with a time override). That keeps an exact
Python mirror of every holder's shares, so no move reverts: a sender spends only shares it held
at the start of the block, less what it already spends in that block (no move in a block depends
on another one in the same block; two-step actions finish in the next block). Every receipt's
status is checked and, outside bulk mode, its TransferShares logs must equal the mirror's.
It must be the only thing producing blocks on the node while it runs.

With automine off, one planned block is one mined block (`anvil_mine`); with automine on, each
transaction is its own block. Failure modes: `SimulationError` (an unexpected revert, or the
chain disagreeing with the mirror); `RpcError` / `TimeoutError` from the node.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils.crypto import keccak

from .anvil import JsonRpc
from .contracts import load_artifact
from .deploy import Receipt, Transactor, Tx, TxFailed, World

ONE = 10**18
MAX_UINT = 2**256 - 1
ZERO = "0x" + "00" * 20
SINGLE_GAS, BATCH_GAS, BATCH_MOVE_GAS = 250_000, 80_000, 50_000
# Relative frequency of each random action on an xStock; plain tokens use the subset they have.
MOVE_KINDS = {"transfer": 30, "transfer_shares": 10, "transfer_from": 6,
              "transfer_from_unlimited": 6, "transfer_shares_from": 5, "zero": 2, "self": 2,
              "mint": 4, "redeem": 3, "batch": 4, "batch_shares": 2}
PLAIN_KINDS = ("transfer", "transfer_from", "transfer_from_unlimited", "zero", "self", "mint",
               "batch")
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


@dataclass(frozen=True)
class BulkStats:
    """What `bulk_transfers` did. `blocks` counts planned blocks: mined blocks without
    automine; with automine every transaction is its own block."""

    transfers: int
    transactions: int
    blocks: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.transfers / self.seconds if self.seconds else 0.0


@dataclass
class _Action:
    kind: str
    tx: Tx
    effects: list[Effect]


@dataclass
class _Block:
    t0: int
    explicit: bool
    step: int  # seconds between transactions: the interval under automine, else 0
    gas_room: int
    actions: list[_Action] = field(default_factory=list)
    debits: Counter[tuple[str, str]] = field(default_factory=Counter)

    def next_time(self) -> int:
        return self.t0 + self.step * len(self.actions)

    def fits(self, gas: int) -> bool:
        return self.step > 0 or gas <= self.gas_room

    def add(self, action: _Action) -> None:
        self.actions.append(action)
        self.gas_room -= action.tx.gas or 0


def _encode_many(selector: bytes, token: str, froms: Sequence[str], tos: Sequence[str],
                 values: Sequence[int]) -> str:
    """ABI encoding of `f(address, address[], address[], uint256[])`, the MoveBatch calls;
    eth_abi's validating encoder was most of bulk mode's Python time."""
    size = 32 * (len(froms) + 1)
    words = [int(token, 16), 128, 128 + size, 128 + 2 * size]
    for column in ([int(a, 16) for a in froms], [int(a, 16) for a in tos], values):
        words.append(len(column))
        words.extend(column)
    return "0x" + (selector + b"".join(w.to_bytes(32, "big") for w in words)).hex()


def _derive(seed: int, tag: str, i: int) -> str:
    return "0x" + keccak(text=f"xstock-sim:{seed}:{tag}:{i}")[-20:].hex()


class Simulator:
    """Seeded activity on `world`. Public state: `holders`, `shares[token][holder]` (the
    mirror), `summary`. Methods mine blocks immediately and return when they are mined."""

    def __init__(self, world: World, seed: int = 0, n_holders: int = 50,
                 block_interval: int = 12, initial_tokens: int = 1_000_000,
                 verify_logs: bool = True) -> None:
        if block_interval < 2 or n_holders < 3:
            raise ValueError("need block_interval >= 2 s and n_holders >= 3")
        self.world, self.seed, self.interval = world, seed, block_interval
        self.rng = random.Random(seed)
        self.client = JsonRpc(world.rpc_url)
        self.tx = Transactor(self.client)
        self.holders = [_derive(seed, "holder", i) for i in range(n_holders)]
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
        self._deferred: list[tuple[str, Callable[[_Block], object]]] = []
        self._m: dict[tuple[str, int], int] = {}
        self._fresh = 0
        self._ready = False
        latest = self.client.call("eth_getBlockByNumber", ["latest", False])
        self._gas_limit = int(latest["gasLimit"], 16)
        self.client.call("anvil_setBlockTimestampInterval", [block_interval])

    # ------------------------------------------------------------------ blocks

    def _open(self, at: int | None = None) -> _Block:
        latest = self.client.call("eth_getBlockByNumber", ["latest", False])
        t0 = at if at is not None else int(latest["timestamp"], 16) + self.interval
        return _Block(t0, at is not None, self.interval if self.tx.automine else 0,
                      self._gas_limit)

    def _commit(self, block: _Block) -> list[Receipt]:
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

    def _check_one_block(self, block: _Block, receipts: list[Receipt]) -> None:
        numbers = {r["blockNumber"] for r in receipts}
        header = self.client.call("eth_getBlockByNumber", [receipts[0]["blockNumber"], False])
        if len(numbers) != 1 or int(header["timestamp"], 16) != block.t0:
            raise SimulationError(f"planned block at t={block.t0} was mined as blocks "
                                  f"{sorted(numbers)}: is something else mining?")

    def _verify(self, action: _Action, receipt: Receipt) -> None:
        shares_topic, transfer_topic = self._topics
        seen = [(lg["address"].lower(), "0x" + lg["topics"][1][-40:],
                 "0x" + lg["topics"][2][-40:], int(lg["data"], 16))
                for lg in receipt["logs"]
                if lg["topics"][0] == shares_topic
                or (lg["topics"][0] == transfer_topic and lg["address"].lower() in self.plain)]
        if seen != action.effects:
            raise SimulationError(f"{action.tx.label} {receipt['transactionHash']}: chain moved "
                                  f"{seen}, mirror expected {action.effects}")

    def _apply(self, action: _Action, receipt: Receipt) -> None:
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

    def _spendable(self, block: _Block, token: str, holder: str) -> int:
        return self.shares[token].get(holder, 0) - block.debits[(token, holder)]

    def _plan(self, block: _Block, kind: str, token: str, sender: str, frm: str, to: str,
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
        block.add(_Action(kind, Tx(sender, token, data, SINGLE_GAS, label, expect_revert),
                          effects))
        return True

    def _call(self, block: _Block, kind: str, token: str, sender: str, fn: str,
              args: Sequence[Any]) -> bool:
        """Add a transaction that moves nothing (approve, pause, multiplier, fee)."""
        if not block.fits(SINGLE_GAS):
            return False
        data = self._art(token).encode_call(fn, list(args))
        block.add(_Action(kind, Tx(sender, token, data, SINGLE_GAS,
                                   f"{kind} {self.symbol_of[token]}"), []))
        return True

    def _batch(self, block: _Block, token: str, n: int, by_shares: bool = False,
               receivers: Sequence[str] | None = None, tiny: bool = False) -> int:
        """One MoveBatch transaction with up to `n` moves; returns how many were planned."""
        if not block.fits(BATCH_GAS + n * BATCH_MOVE_GAS):
            return 0
        m = self.multiplier_at(token, block.next_time())
        froms, tos, values, effects = [], [], [], []
        for _ in range(n):
            frm = self._sender(block, token)
            if frm is None:
                break
            spend = self._spendable(block, token, frm)
            value = self.rng.randint(1, 10**15) if tiny else spend // self.rng.choice((2, 5, 50))
            shares = value if by_shares else value * ONE // m
            if shares > spend or value == 0:
                continue
            to = self.rng.choice(receivers) if receivers else self._recipient(frm)
            block.debits[(token, frm)] += shares
            froms.append(frm)
            tos.append(to)
            values.append(value)
            effects.append((token, frm, to, shares))
        if not froms:
            return 0
        fn = "transferSharesMany" if by_shares else "transferMany"
        data = _encode_many(self._mb.selector(fn), token, froms, tos, values)
        kind = "batch_shares" if by_shares else "batch"
        tx = Tx(self.world.roles["operator"], self.world.batcher, data,
                BATCH_GAS + len(froms) * BATCH_MOVE_GAS, f"{kind} {self.symbol_of[token]}")
        block.add(_Action(kind, tx, effects))
        return len(froms)

    def _sender(self, block: _Block, token: str, exclude: Collection[str] = ()) -> str | None:
        for _ in range(12):
            holder = self.rng.choice(self.holders)
            if holder not in exclude and self._spendable(block, token, holder) > 0:
                return holder
        return None

    def _recipient(self, not_: str) -> str:
        if self.rng.random() < 0.1:
            self._fresh += 1
            return _derive(self.seed, "fresh", self._fresh)
        choice = self.rng.randrange(len(self.holders))
        if self.holders[choice] == not_:
            choice = (choice + 1) % len(self.holders)
        return self.holders[choice]

    def _amount(self, block: _Block, token: str, holder: str, by_shares: bool) -> int:
        spend = self._spendable(block, token, holder)
        part = spend // self.rng.choice((1, 2, 3, 5, 10, 100, 1000))
        return part if by_shares else part * self.multiplier_at(token, block.next_time()) // ONE

    # ------------------------------------------------------------------ random actions

    def _act(self, block: _Block, kind: str, token: str) -> bool:
        """Plan one random action of `kind` on `token`; False when nothing fits or affords."""
        if kind in ("batch", "batch_shares"):
            return self._batch(block, token, self.rng.randint(5, 20), kind == "batch_shares") > 0
        if kind == "mint":
            minter = self.world.roles["owner" if token in self.plain else "minter"]
            amount = self.rng.randint(1, 10_000) * ONE // self.rng.choice((1, 10, 1000))
            return self._plan(block, "mint", token, minter, ZERO, self._recipient(ZERO), amount)
        exclude = (self.desk,) if kind in ("transfer_from_unlimited", "transfer_shares_from") else ()
        frm = self.holders[self.rng.randrange(len(self.holders))] if kind == "zero" \
            else self._sender(block, token, exclude)
        if frm is None:
            return False
        by_shares = kind in ("transfer_shares", "transfer_shares_from")
        value = 0 if kind == "zero" else self._amount(block, token, frm, by_shares)
        if value == 0 and kind != "zero":
            return False
        if kind == "transfer_from":
            return self._approve_then_spend(block, token, frm, value)
        if kind == "redeem":
            return self._redeem(block, token, frm, value)
        to = frm if kind == "self" else self._recipient(frm)
        sender = self.desk if exclude else frm
        return self._plan(block, kind, token, sender, frm, to, value, by_shares)

    def _approve_then_spend(self, block: _Block, token: str, owner: str, amount: int) -> bool:
        """A limited allowance now, spent by another holder next block (Approval both times)."""
        spender = self.rng.choice([h for h in self.holders[1:4] if h != owner])
        allowance = amount + self.rng.choice((0, amount // 2 + 1))
        if not self._call(block, "approve", token, owner, "approve", [spender, allowance]):
            return False
        to = self._recipient(owner)

        def spend(nxt: _Block) -> object:
            m = self.multiplier_at(token, nxt.next_time())
            affordable = self._spendable(nxt, token, owner) * m // ONE
            value = min(amount, affordable)
            return value > 0 and self._plan(nxt, "transfer_from", token, spender, owner, to,
                                            value)
        self._deferred.append((token, spend))
        return True

    def _redeem(self, block: _Block, token: str, holder: str, amount: int) -> bool:
        """Holder -> burner transfer now; the burner burns what it received next block."""
        if token in self.plain:
            return False
        burner = self.world.roles["burner"]
        shares = amount * ONE // self.multiplier_at(token, block.next_time())
        if not self._plan(block, "redeem", token, holder, holder, burner, amount):
            return False

        def burn(nxt: _Block) -> object:
            value = shares * self.multiplier_at(token, nxt.next_time()) // ONE
            return value > 0 and self._plan(nxt, "burn", token, burner, burner, ZERO, value)
        self._deferred.append((token, burn))
        return True

    def _drain_deferred(self, block: _Block, exclude: Collection[str] = ()) -> None:
        waiting, self._deferred = self._deferred, []
        for token, step in waiting:
            if token in self.paused or token in exclude or not block.fits(SINGLE_GAS):
                self._deferred.append((token, step))
            else:
                step(block)

    def _random_moves(self, block: _Block, n: int, exclude: Collection[str] = ()) -> None:
        tokens = [t for t in self.symbol_of if t not in self.paused and t not in exclude]
        kinds, weights = list(MOVE_KINDS), list(MOVE_KINDS.values())
        for _ in range(n if tokens else 0):
            token = self.rng.choice(tokens)
            kind = self.rng.choice(PLAIN_KINDS) if token in self.plain \
                else self.rng.choices(kinds, weights)[0]
            self._act(block, kind, token)

    def _blocks(self, blocks: int, moves_per_block: int, exclude: Collection[str] = (),
                first_at: int | None = None) -> None:
        for i in range(blocks):
            block = self._open(first_at if i == 0 else None)
            self._drain_deferred(block, exclude)
            self._random_moves(block, moves_per_block, exclude)
            self._commit(block)

    # ------------------------------------------------------------------ public steps

    def setup(self) -> None:
        """Impersonate and fund the holders, approve desk and MoveBatch (unlimited) for every
        token, mint `initial_tokens` (+-50%) of every token to every holder. Idempotent."""
        if self._ready:
            return
        self._ready = True
        self.client.batch([("anvil_impersonateAccount", [h]) for h in self.holders]
                          + [("anvil_setBalance", [h, hex(10**24)]) for h in self.holders])
        steps: list[tuple[str, str, str, int]] = []  # (kind, token, holder, spender | amount)
        for token in self.symbol_of:
            steps += [("approve", token, h, 0) for h in self.holders[1:]]
            steps += [("approve", token, h, 1) for h in self.holders]
        for token in self.symbol_of:
            steps += [("mint", token, h, self.rng.randint(self.initial_tokens // 2,
                                                          self.initial_tokens * 3 // 2) * ONE)
                      for h in self.holders]
        block = self._open()
        for step in steps:
            if not self._setup_step(block, *step):
                self._commit(block)
                block = self._open()
                if not self._setup_step(block, *step):
                    raise SimulationError("a setup transaction does not fit an empty block")
        self._commit(block)

    def _setup_step(self, block: _Block, kind: str, token: str, holder: str, arg: int) -> bool:
        if kind == "approve":
            spender = (self.desk, self.world.batcher)[arg]
            return self._call(block, "approve", token, holder, "approve", [spender, MAX_UINT])
        minter = self.world.roles["owner" if token in self.plain else "minter"]
        return self._plan(block, "mint", token, minter, ZERO, holder, arg)

    def run(self, blocks: int, moves_per_block: int = 10) -> Summary:
        """`blocks` blocks of random activity over every token; returns the cumulative summary."""
        self.setup()
        self._blocks(blocks, moves_per_block)
        return self.summary

    def moves(self, kind: str, symbol: str, count: int = 1) -> Summary:
        """One block with `count` actions of `kind` (a key of MOVE_KINDS) on `symbol`; a
        two-step kind (transfer_from, redeem) mines a second block to finish."""
        self.setup()
        block = self._open()
        for _ in range(count):
            self._act(block, kind, self.world.all_tokens[symbol])
        self._commit(block)
        if self._deferred:
            self._blocks(1, 0)
        return self.summary

    def batch(self, symbol: str, n: int = 100, by_shares: bool = False) -> int:
        """Many moves in one MoveBatch transaction (no Approval: unlimited allowances)."""
        self.setup()
        block = self._open()
        planned = self._batch(block, self.world.all_tokens[symbol], n, by_shares)
        self._commit(block)
        return planned

    def _admin(self, symbol: str, kind: str, role: str, fn: str,
               args: Callable[[int, int], Sequence[Any]]) -> int:
        """One transaction alone in its block; `args(multiplier in force, block timestamp)`
        builds its arguments. Returns the block's timestamp."""
        token = self.world.tokens[symbol]
        block = self._open()
        self._call(block, kind, token, self.world.roles[role], fn,
                   args(self.multiplier_at(token, block.t0), block.t0))
        self._commit(block)
        return block.t0

    def pause_window(self, symbol: str, blocks: int = 2, attempts: int = 1,
                     moves_per_block: int = 5) -> None:
        """Pause, then `blocks` blocks where `attempts` transfers of the token revert (counted
        as reverted_attempt, never as moves) beside other tokens' moves, then unpause."""
        self.setup()
        token = self.world.tokens[symbol]
        self._admin(symbol, "pause", "pauser", "setPause", lambda m, t: [True])
        self.paused.add(token)
        for _ in range(blocks):
            block = self._open()
            self._drain_deferred(block)
            for _ in range(attempts):
                frm = self._sender(block, token) or self.desk
                self._plan(block, "transfer", token, frm, frm, self._recipient(frm), 1,
                           expect_revert=True)
            self._random_moves(block, moves_per_block)
            self._commit(block)
        self.paused.discard(token)
        self._admin(symbol, "unpause", "pauser", "setPause", lambda m, t: [False])

    def multiplier_change(self, symbol: str, num: int, den: int, with_nonce: bool = False) -> int:
        """Immediate M := M*num/den (MultiplierUpdated); returns the new multiplier."""
        token = self.world.tokens[symbol]
        if with_nonce:
            out = self.client.call("eth_call", [{"to": token, "data": self._x.encode_call(
                "nonce", [])}, "latest"])
            nonce = int(out, 16)
            self._admin(symbol, "multiplier_update", "multiplier_updater",
                        "updateMultiplierWithNonce", lambda m, t: [m * num // den, m, nonce])
        else:
            self._admin(symbol, "multiplier_update", "multiplier_updater",
                        "updateMultiplierValue", lambda m, t: [m * num // den, m, 0])
        return self.multiplier_at(token, self._open().t0)

    def split(self, symbol: str, ratio: int = 2) -> int:
        """A ratio:1 stock split, immediate, through updateMultiplierWithNonce."""
        return self.multiplier_change(symbol, ratio, 1, with_nonce=True)

    def scheduled_change(self, symbol: str, num: int, den: int, delay: int = 3600,
                         quiet_blocks: int = 3, moves_per_block: int = 5) -> int:
        """Schedule M*num/den for `delay` seconds later, mine one empty block before the
        activation, jump time (evm_setNextBlockTimestamp) to half an interval past it, then
        mine `quiet_blocks` blocks with moves of other tokens only: the jump shows with no
        event of the token. Returns the block in which the new multiplier takes effect.
        With a fee set, the activation must fall before the next fee period (else the
        contract reverts: SimulationError)."""
        self.setup()
        if delay <= self.interval:
            raise ValueError("delay must exceed the block interval")
        token = self.world.tokens[symbol]
        t = self._admin(symbol, "multiplier_scheduled", "multiplier_updater",
                        "updateMultiplierValue", lambda m, t: [m * num // den, m, t + delay])
        self.tx.mine()
        first = int(self.client.call("eth_blockNumber"), 16) + 1
        self._blocks(quiet_blocks, moves_per_block, exclude={token},
                     first_at=t + delay + self.interval // 2)
        self.summary.activations.setdefault(symbol, []).append(first)
        return first

    def fee_decay(self, symbol: str, fee_per_period: int = 10**15, period: int | None = None,
                  periods: int = 3, moves_per_block: int = 5) -> None:
        """setFee, then blocks covering `periods` fee periods (M decays silently at each
        boundary; the next move emits MultiplierUpdated), then setFee(0, 0)."""
        self.setup()
        period = period or 5 * self.interval
        self._admin(symbol, "fee_set", "multiplier_updater", "setFee",
                    lambda m, t: [fee_per_period, period])
        self._blocks(periods * period // self.interval + 1, moves_per_block)
        self._admin(symbol, "fee_set", "multiplier_updater", "setFee", lambda m, t: [0, 0])

    def tour(self, moves_per_block: int = 8, gap: int = 2) -> Summary:
        """Every scenario step once, with `gap` random blocks between them: each move kind on
        an xStock and on the plain token, a pause window, an immediate change, a 2:1 split,
        a silent scheduled change, a fee decay, big batches, a scheduled reverse split."""
        self.setup()
        xs, plain = list(self.world.tokens), list(self.world.plain_tokens)
        for i, kind in enumerate(MOVE_KINDS):
            self.moves(kind, xs[i % len(xs)], count=2)
        for kind in PLAIN_KINDS if plain else ():
            self.moves(kind, plain[0], count=2)
        steps: list[Callable[[], object]] = [
            lambda: self.pause_window(xs[0]),
            lambda: self.multiplier_change(xs[1 % len(xs)], 1003, 1000),
            lambda: self.split(xs[2 % len(xs)], 2),
            lambda: self.scheduled_change(xs[0], 101, 100),
            lambda: self.fee_decay(xs[3 % len(xs)]),
            lambda: self.batch(xs[1 % len(xs)], 100),
            lambda: self.batch(xs[2 % len(xs)], 40, by_shares=True),
            lambda: self.scheduled_change(xs[3 % len(xs)], 1, 2),
        ]
        for step in steps:
            step()
            self._blocks(gap, moves_per_block)
        return self.summary

    def bulk_transfers(self, n: int, per_tx: int = 200, txs_per_block: int = 20) -> BulkStats:
        """`n` transfers as MoveBatch transactions of `per_tx` moves, `txs_per_block` per block
        (fewer when the block gas limit says so), round-robin over every token, to the holders
        and 1,000 extra receivers. Receipts are checked; logs are not compared (speed)."""
        self.setup()
        tokens = list(self.symbol_of)
        receivers = self.holders + [_derive(self.seed, "receiver", i) for i in range(1000)]
        verify, self.verify_logs = self.verify_logs, False
        done = txs = blocks = 0
        start = time.monotonic()
        try:
            while done < n:
                block = self._open()
                for _ in range(txs_per_block):
                    planned = self._batch(block, tokens[txs % len(tokens)],
                                          min(per_tx, n - done), receivers=receivers, tiny=True)
                    if planned == 0:
                        break
                    done, txs = done + planned, txs + 1
                    if done >= n:
                        break
                if not block.actions:
                    raise SimulationError(f"a batch of {per_tx} moves does not fit a block "
                                          f"(gas limit {self._gas_limit})")
                self._commit(block)
                blocks += 1
        finally:
            self.verify_logs = verify
        return BulkStats(done, txs, blocks, time.monotonic() - start)
