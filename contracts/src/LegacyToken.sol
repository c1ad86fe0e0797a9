// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Initializable} from "@openzeppelin/contracts-upgradeable/proxy/utils/Initializable.sol";
import {OwnableUpgradeable} from "@openzeppelin/contracts-upgradeable/access/OwnableUpgradeable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {LegacyTokenStorage} from "./LegacyTokenStorage.sol";

/// @title LegacyToken
/// @notice A plain upgradeable ERC-20 (ordinary balances, no shares, no multiplier, 18
/// decimals) behind the same transparent proxy the factory uses. The owner mints and burns.
/// Its storage is namespaced (LegacyTokenStorage), so the proxy can later be upgraded in place
/// to `XStock` with `XStock.upgradeFromLegacy`: from that block on the token is a share token.
contract LegacyToken is Initializable, OwnableUpgradeable, IERC20, IERC20Metadata, IERC20Errors {
    /// @custom:oz-upgrades-unsafe-allow constructor
    constructor() {
        _disableInitializers();
    }

    function initialize(string memory name_, string memory symbol_, address owner_) external initializer {
        __Ownable_init(owner_);
        LegacyTokenStorage.Layout storage s = LegacyTokenStorage.layout();
        s.name = name_;
        s.symbol = symbol_;
    }

    function name() external view returns (string memory) {
        return LegacyTokenStorage.layout().name;
    }

    function symbol() external view returns (string memory) {
        return LegacyTokenStorage.layout().symbol;
    }

    function decimals() external pure returns (uint8) {
        return 18;
    }

    function totalSupply() external view returns (uint256) {
        return LegacyTokenStorage.layout().totalSupply;
    }

    function balanceOf(address account) external view returns (uint256) {
        return LegacyTokenStorage.layout().balances[account];
    }

    function allowance(address owner_, address spender) external view returns (uint256) {
        return LegacyTokenStorage.layout().allowances[owner_][spender];
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        if (to == address(0)) revert ERC20InvalidReceiver(address(0));
        _update(msg.sender, to, amount);
        return true;
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        if (spender == address(0)) revert ERC20InvalidSpender(address(0));
        LegacyTokenStorage.layout().allowances[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        if (from == address(0)) revert ERC20InvalidSender(address(0));
        if (to == address(0)) revert ERC20InvalidReceiver(address(0));
        LegacyTokenStorage.Layout storage s = LegacyTokenStorage.layout();
        uint256 current = s.allowances[from][msg.sender];
        if (current != type(uint256).max) {
            if (current < amount) revert ERC20InsufficientAllowance(msg.sender, current, amount);
            unchecked {
                s.allowances[from][msg.sender] = current - amount;
            }
            emit Approval(from, msg.sender, current - amount);
        }
        _update(from, to, amount);
        return true;
    }

    function mint(address account, uint256 amount) external onlyOwner {
        if (account == address(0)) revert ERC20InvalidReceiver(address(0));
        _update(address(0), account, amount);
    }

    function burn(address account, uint256 amount) external onlyOwner {
        if (account == address(0)) revert ERC20InvalidSender(address(0));
        _update(account, address(0), amount);
    }

    /// @dev from = 0 mints, to = 0 burns, a plain move otherwise.
    function _update(address from, address to, uint256 amount) private {
        LegacyTokenStorage.Layout storage s = LegacyTokenStorage.layout();
        if (from == address(0)) {
            s.totalSupply += amount;
        } else {
            uint256 held = s.balances[from];
            if (held < amount) revert ERC20InsufficientBalance(from, held, amount);
            unchecked {
                s.balances[from] = held - amount;
            }
        }
        if (to == address(0)) {
            unchecked {
                s.totalSupply -= amount;
            }
        } else {
            s.balances[to] += amount;
        }
        emit Transfer(from, to, amount);
    }
}
