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
chain disagreeing with the mirror); `Web3RPCError` / `TimeoutError` from the node.

Layers: mirror.py (planned blocks, the mirror, commit and checks) <- trades.py (seeded random
moves) <- this module (`Simulator`: the scenario steps a test or the demo calls).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .mirror import MAX_UINT, ONE, ZERO, Block, SimulationError, Summary, derive
from .trades import MOVE_KINDS, PLAIN_KINDS, Trader

__all__ = ["MAX_UINT", "MOVE_KINDS", "ONE", "PLAIN_KINDS", "ZERO", "BulkStats", "SimulationError", "Simulator",
           "Summary"]


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


class Simulator(Trader):
    """Seeded activity on `world`. Public state: `holders`, `shares[token][holder]` (the
    mirror), `summary`. Methods mine blocks immediately and return when they are mined."""

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

    def _setup_step(self, block: Block, kind: str, token: str, holder: str, arg: int) -> bool:
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
        receivers = self.holders + [derive(self.seed, "receiver", i) for i in range(1000)]
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
