// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

interface IShareTransferFrom {
    function transferSharesFrom(address from, address to, uint256 shares) external returns (bool);
}

/// @title MoveBatch
/// @notice Packs many token moves into one transaction (load generation on a local chain).
/// Holders approve this contract with type(uint256).max, so the token emits no Approval per
/// move. Only the deployer (`operator`) may move funds, since the approvals are unlimited.
contract MoveBatch {
    using SafeERC20 for IERC20;

    address public immutable operator;

    error NotOperator(address caller);
    error LengthMismatch();

    constructor() {
        operator = msg.sender;
    }

    modifier onlyOperator() {
        if (msg.sender != operator) revert NotOperator(msg.sender);
        _;
    }

    /// @notice For each i: token.transferFrom(from[i], to[i], amounts[i]).
    function transferMany(
        address token,
        address[] calldata from,
        address[] calldata to,
        uint256[] calldata amounts
    ) external onlyOperator {
        uint256 n = from.length;
        if (to.length != n || amounts.length != n) revert LengthMismatch();
        IERC20 t = IERC20(token);
        for (uint256 i = 0; i < n; ++i) {
            t.safeTransferFrom(from[i], to[i], amounts[i]);
        }
    }

    /// @notice For each i: token.transferSharesFrom(from[i], to[i], shares[i]).
    function transferSharesMany(
        address token,
        address[] calldata from,
        address[] calldata to,
        uint256[] calldata shares
    ) external onlyOperator {
        uint256 n = from.length;
        if (to.length != n || shares.length != n) revert LengthMismatch();
        IShareTransferFrom t = IShareTransferFrom(token);
        for (uint256 i = 0; i < n; ++i) {
            t.transferSharesFrom(from[i], to[i], shares[i]);
        }
    }
}
