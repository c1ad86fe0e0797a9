"""A plain upgradeable token (`LegacyToken`) on the devnet, and its upgrade in place to XStock.

The issuer upgrades proxies in place; an older plain token (ordinary balances) upgraded to the
share implementation becomes a share token at the upgrade block (XSTOCKS.md, "Upgrades in
place"). These helpers reproduce that on anvil:

    proxy = deploy_legacy(tx, owner, "Old Apple", "oAAPLx")      # Upgraded(LegacyToken impl)
    upgrade_to_xstock(tx, owner, proxy, implementation, [a, b])  # Upgraded(XStock impl)

`deploy_legacy` puts a `LegacyToken` behind the same `TransparentUpgradeableProxy` the factory
uses (the proxy creates its own ProxyAdmin owned by `owner`). `upgrade_to_xstock` calls
`ProxyAdmin.upgradeAndCall(proxy, implementation, upgradeFromLegacy(accounts))` in one
transaction: the proxy emits `Upgraded(implementation)`, then each listed account's legacy
balance becomes shares with a mint pair (`Transfer` + `TransferShares` from 0x0); unlisted
balances read 0 from then on.

Failure modes: `TxFailed` when a transaction reverts (e.g. the sender is not the admin's owner).
"""

from __future__ import annotations

from collections.abc import Sequence

from .contracts import load_artifact
from .deploy import Transactor, Tx

# ERC-1967 admin slot: bytes32(uint256(keccak256("eip1967.proxy.admin")) - 1)
ADMIN_SLOT = "0xb53127684a568b3173ae13b9f8a6016e243e63b6e8ee1178d6a717850b5d6103"


def deploy_legacy(tx: Transactor, owner: str, name: str, symbol: str,
                  implementation: str | None = None) -> str:
    """Deploy (or reuse `implementation`) a LegacyToken behind a transparent proxy initialized
    with (name, symbol, owner); return the proxy address (lowercase)."""
    legacy = load_artifact("LegacyToken")
    if implementation is None:
        receipt = tx.execute([Tx(owner, None, legacy.deploy_data(), label="deploy LegacyToken")])
        implementation = str(receipt[0]["contractAddress"]).lower()
    init = legacy.encode_call("initialize", [name, symbol, owner])
    proxy_art = load_artifact("TransparentUpgradeableProxy")
    receipt = tx.execute([Tx(owner, None, proxy_art.deploy_data(
        [implementation, owner, bytes.fromhex(init[2:])]), label=f"deploy proxy {symbol}")])
    return str(receipt[0]["contractAddress"]).lower()


def proxy_admin(tx: Transactor, proxy: str) -> str:
    """The ProxyAdmin contract of `proxy` (read from the ERC-1967 admin slot)."""
    word = str(tx.client.call("eth_getStorageAt", [proxy, ADMIN_SLOT, "latest"]))
    return "0x" + word[-40:].lower()


def upgrade_to_xstock(tx: Transactor, owner: str, proxy: str, implementation: str,
                      accounts: Sequence[str] = ()) -> dict[str, object]:
    """Upgrade `proxy` in place to the XStock `implementation`, converting the legacy balances
    of `accounts` to shares in the same transaction; return the receipt."""
    call = load_artifact("XStock").encode_call("upgradeFromLegacy", [list(accounts)])
    data = load_artifact("ProxyAdmin").encode_call(
        "upgradeAndCall", [proxy, implementation, bytes.fromhex(call[2:])])
    return tx.execute([Tx(owner, proxy_admin(tx, proxy), data, label=f"upgrade {proxy}")])[0]
