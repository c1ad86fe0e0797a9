// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ViewReader
/// @notice Never deployed. The indexer places this runtime code at an unused address with an
/// eth_call state override and reads many views of many contracts at one block in ONE call
/// (a provider counts a JSON-RPC batch of n calls as n; this is 1).
contract ViewReader {
    /// @notice For each i, a static call of `targets[i]` with `data[i]`: its answer, or empty
    /// bytes when it reverted.
    function read(address[] calldata targets, bytes[] calldata data) external view returns (bytes[] memory out) {
        out = new bytes[](targets.length);
        for (uint256 i = 0; i < targets.length; ++i) {
            (bool ok, bytes memory answer) = targets[i].staticcall(data[i]);
            out[i] = ok ? answer : bytes("");
        }
    }

    /// @notice The hashes of blocks first .. first + count - 1, all below the block the call runs
    /// at and at most 256 below it (older or later ones answer zero): the reorg-reachable tail's
    /// hashes without a header each.
    function hashes(uint256 first, uint256 count) external view returns (bytes32[] memory out) {
        out = new bytes32[](count);
        for (uint256 i = 0; i < count; ++i) {
            out[i] = blockhash(first + i);
        }
    }

    /// @notice The timestamp of the block the call runs at (its header need not be asked).
    function time() external view returns (uint256) {
        return block.timestamp;
    }
}
