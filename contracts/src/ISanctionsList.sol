// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice The one question a token asks its sanctions oracle.
interface ISanctionsList {
    function isSanctioned(address account) external view returns (bool);
}
