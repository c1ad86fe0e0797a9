// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TransparentUpgradeableProxy} from "@openzeppelin/contracts/proxy/transparent/TransparentUpgradeableProxy.sol";
import {Create2} from "@openzeppelin/contracts/utils/Create2.sol";
import {XStock} from "./XStock.sol";

/// @title XStockFactory
/// @notice Deploys XStock tokens behind OpenZeppelin transparent proxies with CREATE2,
/// salt = keccak256(abi.encodePacked(name, symbol)). Each proxy creates its own ProxyAdmin
/// owned by the token owner.
contract XStockFactory {
    /// @notice XStock implementation every new proxy points to.
    address public immutable implementation;

    event NewToken(address indexed newToken, string name, string symbol);

    error ZeroImplementation();
    error TokenAlreadyDeployed(address token);

    constructor(address implementation_) {
        if (implementation_ == address(0)) revert ZeroImplementation();
        implementation = implementation_;
    }

    /// @notice Deploy and initialize a token; returns the proxy address (the token).
    function deployToken(string calldata name, string calldata symbol, address owner) external returns (address) {
        bytes32 salt = _salt(name, symbol);
        address predicted = Create2.computeAddress(salt, keccak256(_initCode(name, symbol, owner)));
        if (predicted.code.length != 0) revert TokenAlreadyDeployed(predicted);
        TransparentUpgradeableProxy proxy =
            new TransparentUpgradeableProxy{salt: salt}(implementation, owner, _initData(name, symbol, owner));
        emit NewToken(address(proxy), name, symbol);
        return address(proxy);
    }

    /// @notice Address `deployToken(name, symbol, owner)` deploys to (or has deployed to).
    function predictAddress(string calldata name, string calldata symbol, address owner)
        external
        view
        returns (address)
    {
        return Create2.computeAddress(_salt(name, symbol), keccak256(_initCode(name, symbol, owner)));
    }

    function _salt(string calldata name, string calldata symbol) private pure returns (bytes32) {
        return keccak256(abi.encodePacked(name, symbol));
    }

    function _initData(string calldata name, string calldata symbol, address owner)
        private
        pure
        returns (bytes memory)
    {
        return abi.encodeCall(XStock.initialize, (name, symbol, owner));
    }

    function _initCode(string calldata name, string calldata symbol, address owner)
        private
        view
        returns (bytes memory)
    {
        return abi.encodePacked(
            type(TransparentUpgradeableProxy).creationCode,
            abi.encode(implementation, owner, _initData(name, symbol, owner))
        );
    }
}
