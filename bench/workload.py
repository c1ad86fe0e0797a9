"""The workload: the xStock world on a fresh anvil and N transfers in blocks of mainnet size.

`generate` deploys 4 xStocks (through the factory) and one plain ERC-20, seeds `holders`
holders (each approves the desk and MoveBatch and gets a mint of every token), then has
`Simulator.bulk_transfers` send N transfers as MoveBatch transactions of `per_tx` moves,
`txs_per_block` transactions per block, round-robin over the five tokens, to the holders and
the simulator's 1,000 extra receivers.

Anvil mines a block of a few thousand transactions far more slowly than ten blocks of a few
hundred (the set-up is thousands of single transactions), while the bulk phase wants large
blocks (a transaction of 200 moves uses 10M gas). So the set-up runs under a lower block gas
limit, then the limit goes up for the bulk phase. By default a bulk block holds 3 transactions of
200 moves, ~30M gas like a mainnet block, ~1,100 logs: denser blocks are not what a real chain's
history looks like, and anvil serves them several times more slowly per log, which would lower
the eth_getLogs ceiling and flatter every ratio measured against it.

Failure modes: `SimulationError` (a move reverted, or the chain disagrees with the simulator),
`Web3RPCError` / `TimeoutError` from the node.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from devnet import Anvil, Simulator, World, deploy_world

from .env import GAS_LIMIT, SETUP_GAS_LIMIT


@dataclass
class Workload:
    world: World
    sim: Simulator
    transfers: int
    transactions: int
    blocks: int  # blocks of the bulk phase
    first_block: int  # first block the indexer reads (the deployment)
    bulk_last: int  # last block with transfers
    last_block: int
    setup_s: float
    generate_s: float
    holders_seeded: int

    @property
    def rate(self) -> float:
        return self.transfers / self.generate_s if self.generate_s else 0.0

    def describe(self) -> dict[str, Any]:
        return {
            "transfers": self.transfers, "transactions": self.transactions, "bulk_blocks": self.blocks,
            "first_block": self.first_block, "bulk_last_block": self.bulk_last, "last_block": self.last_block,
            "chain_blocks": self.last_block - self.first_block + 1,
            "transfers_per_tx": round(self.transfers / max(1, self.transactions)),
            "transfers_per_block": round(self.transfers / max(1, self.blocks)),
            "tokens": sorted(self.world.all_tokens), "holders_seeded": self.holders_seeded,
            "setup_s": round(self.setup_s, 2),
            "generate_s": round(self.generate_s, 2), "generate_transfers_per_s": round(self.rate),
        }


def _set_gas_limit(node: Anvil, limit: int) -> None:
    node.rpc("anvil_setBlockGasLimit", [hex(limit)])
    node.mine()  # the simulator reads the limit from the latest block


def generate(node: Anvil, transfers: int, holders: int, per_tx: int, txs_per_block: int,
             seed: int = 1, empty_blocks: int = 0) -> Workload:
    """The world, the holders, the transfers; then `empty_blocks` empty blocks, which move the
    transfers below the head's reorg-reachable tail, as history is on a real chain."""
    started = time.perf_counter()
    world = deploy_world(node.url)
    _set_gas_limit(node, SETUP_GAS_LIMIT)
    sim = Simulator(world, seed=seed, n_holders=holders)
    sim.setup()
    _set_gas_limit(node, GAS_LIMIT)
    # The simulator sizes blocks by the limit it read when it was created.
    sim._gas_limit = GAS_LIMIT
    setup_s = time.perf_counter() - started
    stats = sim.bulk_transfers(transfers, per_tx=per_tx, txs_per_block=txs_per_block)
    bulk_last = node.block_number()
    if empty_blocks:
        node.mine(empty_blocks)
    return Workload(world, sim, stats.transfers, stats.transactions, stats.blocks, world.deploy_block, bulk_last,
                    node.block_number(), setup_s, stats.seconds, holders)
