// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ISanctionsList} from "./ISanctionsList.sol";

/// @title SanctionsList
/// @notice An owner-managed set of blocked addresses, consulted by XStock on every transfer.
contract SanctionsList is ISanctionsList, Ownable {
    mapping(address account => bool) private _sanctioned;

    event SanctionedSet(address indexed account, bool sanctioned);

    constructor(address initialOwner) Ownable(initialOwner) {}

    /// @inheritdoc ISanctionsList
    function isSanctioned(address account) external view returns (bool) {
        return _sanctioned[account];
    }

    /// @notice Add `account` to the list (`sanctioned = true`) or remove it.
    function setSanctioned(address account, bool sanctioned) external onlyOwner {
        _sanctioned[account] = sanctioned;
        emit SanctionedSet(account, sanctioned);
    }
}
