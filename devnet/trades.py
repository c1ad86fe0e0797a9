"""Random trading on top of the engine: which move, by whom, to whom, how much.

Every choice comes from the engine's `random.Random(seed)`. Two-step actions (a limited
allowance then its spending, a redemption then its burn) finish in the next block, because no
move in a block may depend on another one in the same block.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from .deploy import Tx
from .mirror import BATCH_GAS, BATCH_MOVE_GAS, ONE, SINGLE_GAS, ZERO, Action, Block, Engine, derive

# Relative frequency of each random action on an xStock; plain tokens use the subset they have.
MOVE_KINDS = {"transfer": 30, "transfer_shares": 10, "transfer_from": 6,
              "transfer_from_unlimited": 6, "transfer_shares_from": 5, "zero": 2, "self": 2,
              "mint": 4, "redeem": 3, "batch": 4, "batch_shares": 2}
PLAIN_KINDS = ("transfer", "transfer_from", "transfer_from_unlimited", "zero", "self", "mint",
               "batch")


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


class Trader(Engine):
    """The engine plus seeded random actions (`_act`, `_random_moves`, `_blocks`)."""

    def _batch(self, block: Block, token: str, n: int, by_shares: bool = False,
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
        block.add(Action(kind, tx, effects))
        return len(froms)

    def _sender(self, block: Block, token: str, exclude: Collection[str] = ()) -> str | None:
        for _ in range(12):
            holder = self.rng.choice(self.holders)
            if holder not in exclude and self._spendable(block, token, holder) > 0:
                return holder
        return None

    def _recipient(self, not_: str) -> str:
        if self.rng.random() < 0.1:
            self._fresh += 1
            return derive(self.seed, "fresh", self._fresh)
        choice = self.rng.randrange(len(self.holders))
        if self.holders[choice] == not_:
            choice = (choice + 1) % len(self.holders)
        return self.holders[choice]

    def _amount(self, block: Block, token: str, holder: str, by_shares: bool) -> int:
        spend = self._spendable(block, token, holder)
        part = spend // self.rng.choice((1, 2, 3, 5, 10, 100, 1000))
        return part if by_shares else part * self.multiplier_at(token, block.next_time()) // ONE

    # ------------------------------------------------------------------ random actions

    def _act(self, block: Block, kind: str, token: str) -> bool:
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

    def _approve_then_spend(self, block: Block, token: str, owner: str, amount: int) -> bool:
        """A limited allowance now, spent by another holder next block (Approval both times)."""
        spender = self.rng.choice([h for h in self.holders[1:4] if h != owner])
        allowance = amount + self.rng.choice((0, amount // 2 + 1))
        if not self._call(block, "approve", token, owner, "approve", [spender, allowance]):
            return False
        to = self._recipient(owner)

        def spend(nxt: Block) -> object:
            m = self.multiplier_at(token, nxt.next_time())
            affordable = self._spendable(nxt, token, owner) * m // ONE
            value = min(amount, affordable)
            return value > 0 and self._plan(nxt, "transfer_from", token, spender, owner, to,
                                            value)
        self._deferred.append((token, spend))
        return True

    def _redeem(self, block: Block, token: str, holder: str, amount: int) -> bool:
        """Holder -> burner transfer now; the burner burns what it received next block."""
        if token in self.plain:
            return False
        burner = self.world.roles["burner"]
        shares = amount * ONE // self.multiplier_at(token, block.next_time())
        if not self._plan(block, "redeem", token, holder, holder, burner, amount):
            return False

        def burn(nxt: Block) -> object:
            value = shares * self.multiplier_at(token, nxt.next_time()) // ONE
            return value > 0 and self._plan(nxt, "burn", token, burner, burner, ZERO, value)
        self._deferred.append((token, burn))
        return True

    def _drain_deferred(self, block: Block, exclude: Collection[str] = ()) -> None:
        waiting, self._deferred = self._deferred, []
        for token, step in waiting:
            if token in self.paused or token in exclude or not block.fits(SINGLE_GAS):
                self._deferred.append((token, step))
            else:
                step(block)

    def _random_moves(self, block: Block, n: int, exclude: Collection[str] = ()) -> None:
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

