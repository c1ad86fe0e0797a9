// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title LegacyTokenStorage
/// @notice The storage of `LegacyToken` (a plain upgradeable ERC-20), kept in an ERC-7201
/// namespace so that `XStock`, whose own variables start at slot 0, can replace it in place
/// behind the same proxy without either layout overwriting the other.
library LegacyTokenStorage {
    /// @custom:storage-location erc7201:xstock.storage.LegacyToken
    struct Layout {
        string name;
        string symbol;
        uint256 totalSupply;
        mapping(address account => uint256) balances;
        mapping(address owner => mapping(address spender => uint256)) allowances;
    }

    // keccak256(abi.encode(uint256(keccak256("xstock.storage.LegacyToken")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 private constant SLOT = 0x22f63f8269a9eff600792bf8aebcb696b6962ce34733959bf883e3a4fcfc7800;

    function layout() internal pure returns (Layout storage l) {
        bytes32 slot = SLOT;
        assembly {
            l.slot := slot
        }
    }
}
