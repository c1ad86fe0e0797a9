"""Our contracts reproduce the real token's silent paths (XSTOCKS.md, issue 11 facts 1-3)."""

from __future__ import annotations

from typing import Any

import pytest
from web3 import Web3

from devnet.contracts import load_artifact
from devnet.deploy import Transactor, Tx, World
from devnet.legacy import deploy_legacy, upgrade_to_xstock
from devnet.node import Node as RpcNode

E18 = 10**18
X = load_artifact("XStock")
L = load_artifact("LegacyToken")
NAMES = {X.event_topic(n): n for n in ("Approval", "MultiplierUpdated", "Transfer", "TransferShares",
                                        "Initialized")}
NAMES[load_artifact("TransparentUpgradeableProxy").event_topic("Upgraded")] = "Upgraded"


class Node:
    def __init__(self, world: World) -> None:
        self.world, self.client = world, RpcNode(world.rpc_url)
        self.tx = Transactor(self.client)
        self.w3 = Web3(Web3.HTTPProvider(world.rpc_url))

    def now(self) -> int:
        return int(self.client.call("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)

    def send(self, sender: str, to: str, fn: str, args: list[Any], at: int | None = None,
             art: Any = X, revert: bool = False) -> dict[str, Any]:
        if at is not None:
            self.client.call("evm_setNextBlockTimestamp", [hex(at)])
        return self.tx.execute([Tx(sender, to, art.encode_call(fn, args), gas=None if not revert else 300_000,
                                   expect_revert=revert)])[0]

    def view(self, token: str, fn: str, *args: Any) -> Any:
        contract = self.w3.eth.contract(address=Web3.to_checksum_address(token), abi=X.abi)
        return getattr(contract.functions, fn)(*args).call()


def events(receipt: dict[str, Any]) -> list[tuple[str, int | None]]:
    return [(NAMES.get(lg["topics"][0], "?"), int(lg["data"], 16) if lg["data"] not in ("0x", "") else None)
            for lg in receipt["logs"]]


@pytest.fixture
def node(world: World) -> Node:
    return Node(world)


def test_fee_clock_setters_emit_the_update_then_move_the_clock_silently(node: Node, world: World) -> None:
    token, owner = world.tokens["TSLAx"], world.roles["owner"]
    node.send(world.roles["minter"], token, "mint", [owner, 1000 * E18])
    node.send(world.roles["multiplier_updater"], token, "setFee", [E18 // 100, 100])
    start = node.view(token, "lastTimeFeeApplied")
    t = start + 250  # 2 periods due when the call runs
    receipt = node.send(owner, token, "setLastTimeFeeApplied", [t - 550], at=t)
    emitted = 99 * (99 * E18 // 100) // 100  # 2 periods of 1%, floored at each
    assert events(receipt) == [("MultiplierUpdated", emitted)]
    now_m = node.view(token, "getCurrentMultiplier")[0]
    expected = emitted
    for _ in range(5):  # 550 s since the new clock: 5 periods counted on the emitted value
        expected = expected * 99 // 100
    assert now_m == expected != emitted  # the block's multiplier is not the event's value
    assert node.view(token, "lastTimeFeeApplied") == t - 550

    receipt = node.send(owner, token, "setPeriodLength", [50], at=t + 10)
    assert [e[0] for e in events(receipt)] == ["MultiplierUpdated"]  # the 5 periods written first
    assert node.view(token, "periodLength") == 50
    assert node.view(token, "getCurrentMultiplier")[0] < events(receipt)[0][1]  # a 50 s period passed at once

    node.send(owner, token, "updateFeePerPeriod", [0], at=t + 20)
    assert node.view(token, "feePerPeriod") == 0


def test_fee_clock_setters_refuse_while_a_schedule_is_pending(node: Node, world: World) -> None:
    token, owner = world.tokens["AAPLx"], world.roles["owner"]
    node.send(world.roles["multiplier_updater"], token, "updateMultiplierValue", [2 * E18, E18, node.now() + 600])
    node.send(owner, token, "setPeriodLength", [100], revert=True)
    node.send(owner, token, "setLastTimeFeeApplied", [node.now()], revert=True)
    node.send(owner, token, "setLastTimeFeeApplied", [0], revert=True)


def test_transfer_from_emits_approval_before_the_multiplier_update(node: Node, world: World) -> None:
    token, owner, spender = world.tokens["NVDAx"], world.roles["owner"], world.roles["operator"]
    node.send(world.roles["minter"], token, "mint", [owner, 10 * E18])
    node.send(owner, token, "approve", [spender, 5 * E18])
    node.send(world.roles["multiplier_updater"], token, "updateMultiplierValue", [2 * E18, E18, node.now() + 30])
    receipt = node.send(spender, token, "transferFrom", [owner, spender, E18], at=node.now() + 60)
    assert [e[0] for e in events(receipt)] == ["Approval", "MultiplierUpdated", "Transfer", "TransferShares"]


def test_plain_token_upgraded_in_place_becomes_a_share_token(node: Node, world: World) -> None:
    owner, a, b = world.roles["owner"], world.roles["minter"], world.roles["burner"]
    proxy = deploy_legacy(node.tx, owner, "Old", "OLD")
    node.send(owner, proxy, "mint", [a, 5 * E18], art=L)
    node.send(owner, proxy, "mint", [b, 7 * E18], art=L)
    assert node.view(proxy, "totalSupply") == 12 * E18
    node.send(owner, proxy, "getCurrentMultiplier", [], revert=True)  # no such view before
    receipt = upgrade_to_xstock(node.tx, owner, proxy, world.implementation, [a])
    assert [e[0] for e in events(receipt)] == ["Upgraded", "Transfer", "TransferShares", "Initialized"]
    assert node.view(proxy, "symbol") == "OLD"
    assert node.view(proxy, "balanceOf", Web3.to_checksum_address(a)) == 5 * E18
    assert node.view(proxy, "balanceOf", Web3.to_checksum_address(b)) == 0  # not converted: reads 0
    assert node.view(proxy, "totalSupply") == 5 * E18
    assert node.view(proxy, "getCurrentMultiplier")[0] == E18
    assert node.view(proxy, "owner").lower() == owner
