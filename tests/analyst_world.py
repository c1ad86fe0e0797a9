"""The analyst scenario: two chains, five weeks of trading, a silent split, custody records.

Built once per test session on first use (`shared`), then read by test_analyst, test_queries_doc
and test_export. Timeline (UTC days from the first block of chain alpha):

- beta (chain 31338): the same contracts at the same addresses, 6 holders (the first 6 of
  alpha's: same seed), a few blocks; fully indexed first.
- alpha (chain 31337), day 0: setup and random blocks. Day 1: every scenario step once
  (`Simulator.tour`: immediate changes, a 2:1 split, silent scheduled changes, fee decay),
  then a silent scheduled 2:1 split of TSLAx, then random blocks; indexed to `day1_block`; a
  custody record short by 10% for TSLA (the unbacked_supply flag opens), AAPL fully backed.
  Day 37: random blocks; indexed to `day37_block`; TSLA and AAPL fully backed (the flag
  closes). Day 39: random blocks; everything indexed; reconcile (both records are now stale).

`ChainView` answers from the node itself (eth_call at a block, eth_getLogs), for the checks.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from devnet.anvil import Anvil
from devnet.contracts import load_artifact
from devnet.deploy import World, deploy_world
from devnet.node import Node
from devnet.simulate import Simulator
from indexer.custody.parse import COLUMNS
from tests.conftest import PgServer, cli, execute, run_sync

DAY = 86_400
ZERO = "0x" + "00" * 20
_XSTOCK = load_artifact("XStock")
SHARES_TOPIC = _XSTOCK.event_topic("TransferShares")
TRANSFER_TOPIC = _XSTOCK.event_topic("Transfer")


def _uint(answer: str) -> int:
    """The first 32-byte word of an eth_call answer; 0 for an empty one (no code there)."""
    return int(answer[2:66], 16) if len(answer) >= 66 else 0


@dataclass(frozen=True)
class Move:
    """One Transfer + TransferShares pair (or a plain token's Transfer) read from the chain."""

    block: int
    time: int
    log_index: int
    tx_hash: str
    frm: str
    to: str
    amount: int
    shares: int


class ChainView:
    """The node's own answers: eth_call at a block, logs, block times. Calls are encoded from
    the compiled ABI (devnet.contracts, eth-abi) and answers read as the uint256 in their first
    word: nothing of the indexer's own call encoding or decoding."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.rpc = Node(world.rpc_url)
        self._times: dict[int, int] = {}

    def call(self, token: str, data: str, block: int) -> int:
        return _uint(self.rpc.call("eth_call", [{"to": token, "data": data}, hex(block)]))

    def calls(self, token: str, datas: Sequence[str], block: int) -> list[int]:
        answers = self.rpc.batch([("eth_call", [{"to": token, "data": d}, hex(block)]) for d in datas])
        return [_uint(a) for a in answers]

    def balances(self, token: str, holders: Sequence[str], block: int) -> dict[str, int]:
        data = [_XSTOCK.encode_call("balanceOf", [h]) for h in holders]
        return dict(zip(holders, self.calls(token, data, block), strict=True))

    def shares(self, token: str, holders: Sequence[str], block: int) -> dict[str, int]:
        """sharesOf; a plain ERC-20's shares are its balances."""
        if token in self.world.plain_tokens.values():
            return self.balances(token, holders, block)
        data = [_XSTOCK.encode_call("sharesOf", [h]) for h in holders]
        return dict(zip(holders, self.calls(token, data, block), strict=True))

    def total_supply(self, token: str, block: int) -> int:
        return self.call(token, _XSTOCK.encode_call("totalSupply", []), block)

    def multiplier(self, token: str, block: int) -> int:
        return self.call(token, _XSTOCK.encode_call("getCurrentMultiplier", []), block)

    def head(self) -> int:
        return int(self.rpc.call("eth_blockNumber"), 16)

    def time(self, block: int) -> int:
        if block not in self._times:
            self._times[block] = int(self.rpc.call("eth_getBlockByNumber", [hex(block), False])["timestamp"], 16)
        return self._times[block]

    def times(self, first: int, last: int) -> dict[int, int]:
        """Block -> timestamp for every block in [first, last]."""
        missing = [b for b in range(first, last + 1) if b not in self._times]
        for i in range(0, len(missing), 500):
            chunk = missing[i:i + 500]
            for b, header in zip(chunk, self.rpc.batch([("eth_getBlockByNumber", [hex(b), False]) for b in chunk]),
                                 strict=True):
                self._times[b] = int(header["timestamp"], 16)
        return {b: self._times[b] for b in range(first, last + 1)}

    def last_block_until(self, t: int) -> int:
        """The last block with timestamp <= t."""
        lo, hi = 0, self.head()
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if self.time(mid) <= t else (lo, mid - 1)
        return lo

    def moves(self, token: str) -> list[Move]:
        """Every move of `token`, in chain order, from its logs (shares = amount for a plain token)."""
        logs = self.rpc.call("eth_getLogs", [{"address": token, "fromBlock": "0x0", "toBlock": "latest",
                                              "topics": [[TRANSFER_TOPIC, SHARES_TOPIC]]}])
        out: list[Move] = []
        pending: dict[str, Any] | None = None
        for log in logs:
            block = int(log["blockNumber"], 16)
            if log["topics"][0] == TRANSFER_TOPIC:
                if pending is not None:  # a plain ERC-20: no TransferShares after its Transfer
                    out.append(_move(pending, self.time(int(pending["blockNumber"], 16)), None))
                pending = log
            else:
                assert pending is not None and int(pending["blockNumber"], 16) == block
                out.append(_move(pending, self.time(block), int(log["data"], 16)))
                pending = None
        if pending is not None:
            out.append(_move(pending, self.time(int(pending["blockNumber"], 16)), None))
        return out


def _move(transfer: dict[str, Any], time: int, shares: int | None) -> Move:
    amount = int(transfer["data"], 16)
    return Move(int(transfer["blockNumber"], 16), time, int(transfer["logIndex"], 16), transfer["transactionHash"],
                "0x" + transfer["topics"][1][-40:], "0x" + transfer["topics"][2][-40:], amount,
                amount if shares is None else shares)


@dataclass(frozen=True)
class Attestation:
    underlying: str
    shares: Decimal
    as_of: int


@dataclass
class Scenario:
    alpha: World
    beta: World
    sim_alpha: Simulator
    sim_beta: Simulator
    database_url: str
    config: Path
    folder: Path
    split_block: int  # first block of TSLAx's silent 2:1 split on alpha
    day1_block: int
    day37_block: int
    attestations: list[Attestation] = field(default_factory=list)
    imports_at: list[int] = field(default_factory=list)  # reference "now" (latest block time) of each import
    chains: dict[int, ChainView] = field(default_factory=dict)

    def chain(self, chain_id: int) -> ChainView:
        return self.chains[chain_id]

    @property
    def a(self) -> ChainView:
        return self.chains[self.alpha.chain_id]

    @property
    def b(self) -> ChainView:
        return self.chains[self.beta.chain_id]

    def index(self, *args: str) -> None:
        done = cli("backfill", *args, config=self.config)
        assert done.returncode == 0, done.stderr

    def attest(self, records: Sequence[Attestation], name: str) -> None:
        path = self.folder / f"{name}.csv"
        rows = [",".join(COLUMNS)] + [
            f"{r.underlying},Clearstream,acc-1,{r.shares},0,{_iso(r.as_of)},The Network Firm,false" for r in records]
        path.write_text("\n".join(rows) + "\n")
        done = cli("custody", "import", str(path), config=self.config)
        assert done.returncode == 0, done.stderr
        self.attestations += records


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def two_chain_toml(alpha: World, beta: World, database_url: str) -> str:
    """One config following both worlds: chain alpha with [database] and [custody], chain beta's
    [[chain]], [[factory]] and [[token]] sections added."""
    first = alpha.to_toml(database_url, chain="alpha")
    second = beta.to_toml(database_url, chain="beta")
    body = second[second.index("[[chain]]"):second.index("[custody]")]
    head, custody = first[:first.index("[custody]")], first[first.index("[custody]"):]
    return head + body + custody


def jump_to_day(node: Node, days: int) -> None:
    """Mine an empty block at 01:00 UTC, `days` days after the latest block's UTC day."""
    latest = int(node.call("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
    node.call("evm_setNextBlockTimestamp", [latest // DAY * DAY + days * DAY + 3600])
    node.call("anvil_mine", ["0x1"])


def build(alpha_node: Anvil, beta_node: Anvil, database_url: str, folder: Path) -> Scenario:
    alpha, beta = deploy_world(alpha_node.url), deploy_world(beta_node.url)
    assert alpha.tokens == beta.tokens, "the same deployment must give the same addresses"
    sim_b = Simulator(beta, seed=21, n_holders=6)
    sim_b.run(blocks=3, moves_per_block=4)
    sim_a = Simulator(alpha, seed=21, n_holders=16)
    sim_a.run(blocks=4, moves_per_block=6)
    node = Node(alpha.rpc_url)
    jump_to_day(node, 1)
    sim_a.tour(moves_per_block=5, gap=1)
    split = sim_a.scheduled_change("TSLAx", 2, 1, delay=600)
    sim_a.run(blocks=3, moves_per_block=6)
    config = folder / "indexer.toml"
    config.write_text(two_chain_toml(alpha, beta, database_url))
    s = Scenario(alpha, beta, sim_a, sim_b, database_url, config, folder, split, sim_a.summary.last_block or 0, 0)
    s.chains = {alpha.chain_id: ChainView(alpha), beta.chain_id: ChainView(beta)}
    s.index("--chain", "beta")
    s.index("--chain", "alpha", "--to-block", str(s.day1_block))
    _attest_both(s, s.day1_block, tsla_fraction=Decimal("0.9"), name="day1")
    jump_to_day(node, 36)
    sim_a.run(blocks=5, moves_per_block=6)
    s.day37_block = sim_a.summary.last_block or 0
    s.index("--chain", "alpha", "--to-block", str(s.day37_block))
    _attest_both(s, s.day37_block, tsla_fraction=Decimal(1), name="day37")
    jump_to_day(node, 2)
    sim_a.run(blocks=4, moves_per_block=6)
    s.index()
    done = cli("reconcile", config=s.config)
    assert done.returncode == 0, done.stderr
    return s


def _attest_both(s: Scenario, block: int, tsla_fraction: Decimal, name: str) -> None:
    """TSLA at `tsla_fraction` of its supply over both chains at `block`'s time, AAPL in full."""
    at = s.a.time(block)
    assert s.b.time(s.b.head()) < at, "beta's blocks must all come before alpha's indexed block"

    def supply(symbol: str) -> Decimal:
        token = s.alpha.tokens[symbol]
        raw = s.a.total_supply(token, block) + s.b.total_supply(token, s.b.head())
        return Decimal(raw).scaleb(-18)

    s.imports_at.append(at)
    s.attest([Attestation("TSLA", supply("TSLAx") * tsla_fraction, at), Attestation("AAPL", supply("AAPLx"), at)],
             name)


# ------------------------------------------------------------------------------ shared per session


_BUILT: dict[str, Scenario] = {}


def shared(pg_server: PgServer, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """The scenario, built on first use and kept for the session (anvils and database are cleaned
    up when pytest ends)."""
    if "scenario" in _BUILT:
        return _BUILT["scenario"]
    name = f"analyst_{uuid.uuid4().hex[:12]}"
    run_sync(execute(pg_server.url, f'CREATE DATABASE "{name}"'))
    nodes: list[Anvil] = []

    def cleanup() -> None:
        for n in nodes:
            n.stop()
        if pg_server.embedded is None:  # the embedded server is gone by now, with its data
            with contextlib.suppress(Exception):
                run_sync(execute(pg_server.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    request.config.add_cleanup(cleanup)
    nodes.append(Anvil(no_mining=True).start())
    nodes.append(Anvil(no_mining=True, chain_id=31338).start())
    _BUILT["scenario"] = build(nodes[0], nodes[1], pg_server.url_for(name), tmp_path_factory.mktemp("analyst"))
    return _BUILT["scenario"]


@pytest.fixture(scope="module")
def scenario(pg_server: PgServer, request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    yield shared(pg_server, request, tmp_path_factory)
