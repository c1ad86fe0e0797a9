"""Deploy a complete xStock world on a local anvil: implementation, factory, tokens, roles.

`deploy_world(rpc_url)` sends everything from anvil's unlocked default accounts
(`eth_sendTransaction`), works with automine on and with `--no-mining` (then it mines each
stage itself), and returns a `World` describing the addresses. Creation code and set-up calls
are built by web3 contract objects from the compiled artifacts (a few dozen transactions; the
simulator's thousands use `Artifact.encode_call`, 20-50 times cheaper per call). `World.to_toml()` writes the
indexer configuration (DESIGN.md Part 1) that follows those tokens.

`Transactor` is the transaction engine shared with the simulator: send a group of
transactions, get them mined (one block per group when automine is off), check every receipt.

Failure modes: `TxFailed` when a receipt's status is not the expected one (with the label of the
transaction), `TimeoutError` when receipts do not appear before the deadline, `Web3RPCError` when
the node rejects a transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.contract import Contract

from .contracts import load_artifact
from .node import Node

DEFAULT_SYMBOLS = ("TSLAx", "AAPLx", "NVDAx", "SPYx")
DEFAULT_PLAIN = ("USDT0",)
NAMES = {"TSLAx": "Tesla xStock", "AAPLx": "Apple xStock", "NVDAx": "NVIDIA xStock",
         "SPYx": "SP500 xStock", "USDT0": "USDT0"}
ROLES = ("owner", "minter", "burner", "pauser", "multiplier_updater", "operator")
Receipt = dict[str, Any]


class TxFailed(RuntimeError):
    """A transaction reverted unexpectedly (or succeeded when a revert was expected)."""


@dataclass(frozen=True)
class Tx:
    """One transaction to send. `to=None` creates a contract; `gas=None` asks eth_estimateGas
    (against the latest block, so only for transactions that do not depend on unmined ones)."""

    sender: str
    to: str | None
    data: str
    gas: int | None = None
    label: str = ""
    expect_revert: bool = False


class Transactor:
    """Sends transactions from unlocked or impersonated accounts and waits for their receipts.

    With automine off, `execute` mines the group into one block (more if it does not fit the
    block gas limit); with automine on, every transaction is its own block: each is sent once
    the previous one's receipt exists.
    Nonces are assigned here, so a group may hold several transactions of one sender.
    """

    def __init__(self, client: Node, timeout: float = 120.0) -> None:
        self.client = client
        self.timeout = timeout
        self.automine = bool(client.call("anvil_getAutomine"))
        self._nonces: dict[str, int] = {}

    def execute(self, txs: Sequence[Tx], check: bool = True) -> list[Receipt]:
        """Send `txs`, wait until all are mined, return their receipts in order. With
        `check`, raise `TxFailed` on the first receipt whose status is not the expected one."""
        if not txs:
            return []
        payloads = self._payloads(txs)
        if self.automine:
            # eth_sendTransaction answers before automine has mined the block; a second
            # transaction sent before the receipt exists can land in the same block.
            receipts = [self._receipts([self._send(p)])[0] for p in payloads]
        else:
            receipts = self._receipts(self._send_batch(payloads))
        if check:
            for tx, receipt in zip(txs, receipts, strict=True):
                if (receipt["status"] == "0x1") == tx.expect_revert:
                    raise TxFailed(f"{tx.label or 'transaction'} {receipt['transactionHash']} "
                                   f"status {receipt['status']} (expected "
                                   f"{'revert' if tx.expect_revert else 'success'}) "
                                   f"in block {int(receipt['blockNumber'], 16)}")
        return receipts

    def mine(self, blocks: int = 1) -> None:
        self.client.call("anvil_mine", [hex(blocks)])

    def forget_nonces(self) -> None:
        """Drop cached nonces (after a revert/rollback of the chain or an external sender)."""
        self._nonces.clear()

    def _payloads(self, txs: Sequence[Tx]) -> list[dict[str, str]]:
        estimates = self.client.batch([("eth_estimateGas", [_base(tx)])
                                       for tx in txs if tx.gas is None])
        out = []
        for tx in txs:
            gas = tx.gas if tx.gas is not None else int(estimates.pop(0), 16) * 5 // 4 + 30_000
            payload = _base(tx) | {"gas": hex(gas), "nonce": hex(self._next_nonce(tx.sender))}
            out.append(payload)
        return out

    def _next_nonce(self, sender: str) -> int:
        if sender not in self._nonces:
            self._nonces[sender] = int(
                self.client.call("eth_getTransactionCount", [sender, "pending"]), 16)
        nonce = self._nonces[sender]
        self._nonces[sender] = nonce + 1
        return nonce

    def _send(self, payload: dict[str, str]) -> str:
        try:
            return str(self.client.call("eth_sendTransaction", [payload]))
        except Exception:
            self.forget_nonces()
            raise

    def _send_batch(self, payloads: list[dict[str, str]]) -> list[str]:
        try:
            return [str(h) for h in self.client.batch(
                [("eth_sendTransaction", [p]) for p in payloads])]
        except Exception:
            self.forget_nonces()
            raise

    def _receipts(self, hashes: list[str]) -> list[Receipt]:
        """Wait for the receipts of `hashes`. Without automine, mine a block whenever some are
        missing (what did not fit the last block goes into the next) and give up after four
        blocks that mined none of them; with automine, poll until the deadline."""
        deadline = time.monotonic() + self.timeout
        found: dict[str, Receipt] = {}
        stalled = 0
        while True:
            missing = [h for h in hashes if h not in found]
            results = self.client.batch([("eth_getTransactionReceipt", [h]) for h in missing])
            fresh = {h: r for h, r in zip(missing, results, strict=True) if r is not None}
            found.update(fresh)
            if len(found) == len(hashes):
                return [found[h] for h in hashes]
            stalled = 0 if fresh else stalled + 1
            if time.monotonic() > deadline or (not self.automine and stalled > 4):
                raise TimeoutError(f"{len(hashes) - len(found)} of {len(hashes)} transactions "
                                   f"not mined (first {missing[0]}); pool: "
                                   f"{str(self.client.call('txpool_inspect'))[:500]}")
            if self.automine:
                time.sleep(0.001)  # poll interval while anvil's automine finishes the block
            else:
                self.mine()


def _base(tx: Tx) -> dict[str, str]:
    payload = {"from": tx.sender, "data": tx.data}
    if tx.to is not None:
        payload["to"] = tx.to
    return payload


@dataclass(frozen=True)
class World:
    """Addresses of a deployed world; every address is lowercase 0x hex."""

    rpc_url: str
    chain_id: int
    deploy_block: int
    implementation: str
    factory: str
    sanctions: str
    batcher: str
    tokens: Mapping[str, str] = field(default_factory=dict)
    plain_tokens: Mapping[str, str] = field(default_factory=dict)
    roles: Mapping[str, str] = field(default_factory=dict)
    names: Mapping[str, str] = field(default_factory=dict)

    def to_toml(self, database_url: str, chain: str = "anvil", confirmations: int = 0,
                max_reorg_depth: int = 64, batch_blocks: int | None = None) -> str:
        """Indexer configuration: one [[chain]], the [[factory]] (its NewToken events bring
        the xStocks) and every plain token as an explicit [[token]]. ``batch_blocks``: the
        chain's first range (the indexer's default when None)."""
        q = json.dumps  # a JSON string is a valid TOML basic string
        lines = ["[database]", f"url = {q(database_url)}", "",
                 "[[chain]]", f"name = {q(chain)}", f"rpc = [{q(self.rpc_url)}]",
                 f"confirmations = {confirmations}", f"max_reorg_depth = {max_reorg_depth}",
                 *([f"batch_blocks = {batch_blocks}"] if batch_blocks is not None else []), "",
                 "[[factory]]", f"chain = {q(chain)}", f"address = {q(self.factory)}",
                 f"start_block = {self.deploy_block}", ""]
        for symbol, address in self.plain_tokens.items():
            lines += ["[[token]]", f"chain = {q(chain)}", f"address = {q(address)}",
                      f"symbol = {q(symbol)}", f"start_block = {self.deploy_block}", ""]
        lines += ["[custody]", 'stale_after = "24h"', 'settlement_window = "1d"', ""]
        return "\n".join(lines)

    def write_toml(self, path: Path | str, database_url: str, **kwargs: Any) -> Path:
        target = Path(path)
        target.write_text(self.to_toml(database_url, **kwargs))
        return target

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> World:
        return cls(**json.loads(text))

    @property
    def all_tokens(self) -> dict[str, str]:
        return {**self.tokens, **self.plain_tokens}


def deploy_world(rpc_url: str, symbols: Sequence[str] = DEFAULT_SYMBOLS,
                 plain: Sequence[str] = DEFAULT_PLAIN, terms: str | None = None,
                 timeout: float = 120.0) -> World:
    """Deploy implementation, sanctions list, MoveBatch and plain tokens, then the factory,
    then one xStock per symbol through the factory (NewToken), then set every role.

    Roles come from anvil's default accounts: 0 owner (also deployer and plain-token owner),
    1 minter, 2 burner, 3 pauser, 4 multiplier_updater, 5 operator (caller of MoveBatch).
    """
    with Node(rpc_url, timeout=timeout) as client:
        accounts = [a.lower() for a in client.call("eth_accounts")]
        if len(accounts) < len(ROLES):
            raise RuntimeError(f"deploy_world needs {len(ROLES)} unlocked accounts, "
                               f"the node has {len(accounts)}")
        roles = dict(zip(ROLES, accounts, strict=False))
        tx = Transactor(client, timeout=timeout)
        start = int(client.call("eth_blockNumber"), 16) + 1
        base = _deploy_base(client.w3, tx, roles, plain)
        creation = _creation(client.w3, "XStockFactory", Web3.to_checksum_address(base["implementation"]))
        factory = _created(tx.execute([Tx(roles["owner"], None, creation, label="deploy factory")]))[0]
        tokens = _deploy_tokens(client.w3, tx, factory, roles["owner"], symbols)
        _set_roles(client.w3, tx, tokens, roles, base["sanctions"], terms)
        return World(rpc_url=rpc_url, chain_id=int(client.call("eth_chainId"), 16),
                     deploy_block=start, implementation=base["implementation"],
                     factory=factory, sanctions=base["sanctions"], batcher=base["batcher"],
                     tokens=tokens, plain_tokens={s: base[s] for s in plain}, roles=roles,
                     names={s: NAMES.get(s, f"{s.removesuffix('x')} xStock")
                            for s in (*symbols, *plain)})


def _contract(w3: Web3, name: str) -> type[Contract]:
    art = load_artifact(name)
    return w3.eth.contract(abi=art.abi, bytecode=art.bytecode)


def _creation(w3: Web3, name: str, *args: Any) -> str:
    """Creation bytecode with the ABI-encoded constructor arguments, as 0x hex."""
    return str(_contract(w3, name).constructor(*args).data_in_transaction)


def _call(contract: type[Contract], fn: str, *args: Any) -> str:
    return str(contract.get_function_by_name(fn)(*args)._encode_transaction_data())


def _created(receipts: list[Receipt]) -> list[str]:
    return [str(r["contractAddress"]).lower() for r in receipts]


def _deploy_base(w3: Web3, tx: Transactor, roles: Mapping[str, str],
                 plain: Sequence[str]) -> dict[str, str]:
    owner = roles["owner"]
    checksummed = Web3.to_checksum_address(owner)
    group = [Tx(owner, None, _creation(w3, "XStock"), label="deploy XStock"),
             Tx(owner, None, _creation(w3, "SanctionsList", checksummed), label="deploy SanctionsList"),
             Tx(roles["operator"], None, _creation(w3, "MoveBatch"), label="deploy MoveBatch")]
    group += [Tx(owner, None, _creation(w3, "PlainToken", NAMES.get(s, s), s, checksummed),
                 label=f"deploy {s}") for s in plain]
    addresses = _created(tx.execute(group))
    keys = ["implementation", "sanctions", "batcher", *plain]
    return dict(zip(keys, addresses, strict=True))


def _deploy_tokens(w3: Web3, tx: Transactor, factory: str, owner: str,
                   symbols: Sequence[str]) -> dict[str, str]:
    contract = _contract(w3, "XStockFactory")
    topic = "0x" + w3.keccak(text="NewToken(address,string,string)").hex().removeprefix("0x")
    group = [Tx(owner, factory, _call(contract, "deployToken", NAMES.get(s, f"{s.removesuffix('x')} xStock"), s,
                                      Web3.to_checksum_address(owner)), label=f"deployToken {s}")
             for s in symbols]
    tokens: dict[str, str] = {}
    for symbol, receipt in zip(symbols, tx.execute(group), strict=True):
        logs = [lg for lg in receipt["logs"] if lg["topics"][0] == topic]
        tokens[symbol] = "0x" + logs[0]["topics"][1][-40:].lower()
    return tokens


def _set_roles(w3: Web3, tx: Transactor, tokens: Mapping[str, str], roles: Mapping[str, str],
               sanctions: str, terms: str | None) -> None:
    contract = _contract(w3, "XStock")
    calls = [("setMinter", roles["minter"]), ("setBurner", roles["burner"]),
             ("setPauser", roles["pauser"]), ("setMultiplierUpdater", roles["multiplier_updater"]),
             ("setSanctionsList", sanctions)]
    data = {fn: _call(contract, fn, Web3.to_checksum_address(arg)) for fn, arg in calls}
    group = [Tx(roles["owner"], token, data[fn], gas=120_000, label=f"{fn} {symbol}")
             for symbol, token in tokens.items() for fn, _ in calls]
    if terms is not None:
        group += [Tx(roles["owner"], token, _call(contract, "setTerms", terms), gas=300_000,
                     label=f"setTerms {symbol}") for symbol, token in tokens.items()]
    tx.execute(group)
