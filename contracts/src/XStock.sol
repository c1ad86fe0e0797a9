// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Initializable} from "@openzeppelin/contracts-upgradeable/proxy/utils/Initializable.sol";
import {OwnableUpgradeable} from "@openzeppelin/contracts-upgradeable/access/OwnableUpgradeable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {ISanctionsList} from "./ISanctionsList.sol";
import {LegacyTokenStorage} from "./LegacyTokenStorage.sol";

/// @title XStock
/// @notice Upgradeable ERC-20 for a tokenized equity. Holders own internal shares; the token
/// balance is `floor(shares * M / 1e18)` where `M` is the multiplier in force (1e18 = 1.0).
///
/// The multiplier changes in three ways:
///  - an immediate update by the multiplier updater (`MultiplierUpdated`);
///  - a scheduled update, announced with `MultiplierScheduled`, that takes effect at its
///    activation time WITHOUT an event;
///  - a management fee that multiplies M by `(1e18 - feePerPeriod) / 1e18` (floored) once per
///    whole period, also without an event.
/// Silent changes are written to storage by `_sync()` at the start of the next call that moves
/// tokens, updates the multiplier or changes the fee clock; that call then emits
/// `MultiplierUpdated` before the Transfer it emits (transferFrom emits its Approval first).
///
/// The fee clock setters (`updateFeePerPeriod`, `setLastTimeFeeApplied`, `setPeriodLength`) run
/// `_sync()` FIRST and then change the clock or the rate: the multiplier in force at the end of
/// such a transaction can differ from the `MultiplierUpdated` value it just emitted, and no
/// further event says so.
///
/// Fee decay in closed form, as the views compute it at time `t`:
///   base = schedule due at t ? newMultiplier : stored multiplier
///   periods = (periodLength == 0 || t < lastTimeFeeApplied) ? 0
///             : (t - lastTimeFeeApplied) / periodLength
///   M(t) = base, then `periods` times M = floor(M * (1e18 - feePerPeriod) / 1e18)
///
/// A proxy that held a `LegacyToken` (plain balances) can be upgraded in place to this
/// implementation with `upgradeFromLegacy` (see there).
contract XStock is Initializable, OwnableUpgradeable, IERC20, IERC20Metadata, IERC20Errors {
    uint256 private constant ONE = 1e18;

    // ---------------------------------------------------------------- storage

    string private _name;
    string private _symbol;

    mapping(address account => uint256) private _shares;
    mapping(address owner => mapping(address spender => uint256)) private _allowances;
    uint256 private _totalShares;

    /// @notice Role: may mint.
    address public minter;
    /// @notice Role: may burn from itself or from the token contract.
    address public burner;
    /// @notice Role: may pause and unpause.
    address public pauser;
    /// @notice Role: may update the multiplier and the fee.
    address public multiplierUpdater;
    /// @notice Sanctions oracle consulted on transfers; address(0) disables the check.
    address public sanctionsList;
    /// @notice Free text: terms of the certificate.
    string public terms;
    /// @notice True while transfers, mints and burns are blocked.
    bool public isPaused;

    uint256 private _multiplier;
    uint256 private _lastMultiplier;
    uint256 private _newMultiplier;
    uint256 private _newMultiplierActivationTime;
    bool private _schedulePending;

    /// @notice Fee taken from the multiplier per whole period, 1e18 scale (1e14 = 0.01%).
    uint256 public feePerPeriod;
    /// @notice Length of one fee period in seconds (0 = no periods).
    uint256 public periodLength;
    /// @notice Start of the current fee period (advanced by whole periods when fees apply;
    /// set by the owner with setLastTimeFeeApplied).
    uint256 public lastTimeFeeApplied;
    /// @notice Incremented by every explicit multiplier update (immediate or scheduled).
    uint256 public nonce;

    // ---------------------------------------------------------------- events

    event TransferShares(address indexed from, address indexed to, uint256 value);
    event MultiplierUpdated(uint256 value);
    event MultiplierScheduled(uint256 newMultiplier, uint256 activationTime);
    event MultiplierScheduleOverridden(
        uint256 oldMultiplier, uint256 oldActivationTime, uint256 newMultiplier, uint256 newActivationTime
    );
    event NewMinter(address indexed newMinter);
    event NewBurner(address indexed newBurner);
    event NewPauser(address indexed newPauser);
    event NewMultiplierUpdater(address indexed newMultiplierUpdater);
    event NewSanctionsList(address indexed newSanctionsList);
    event PauseModeChange(bool pause);
    event NewTerms(string newTerms);

    // ---------------------------------------------------------------- errors

    error CallerNotMinter(address caller);
    error CallerNotBurner(address caller);
    error CallerNotPauser(address caller);
    error CallerNotMultiplierUpdater(address caller);
    error CallerNotMultiplierUpdaterOrOwner(address caller);
    error BurnAccountNotAllowed(address account);
    error TokenPaused();
    error SanctionedAddress(address account);
    error InsufficientShares(address account, uint256 shares, uint256 needed);
    error MultiplierMismatch(uint256 current, uint256 given);
    error NonceMismatch(uint256 current, uint256 given);
    error InvalidMultiplier(uint256 value);
    error ActivationAfterFeePeriod(uint256 activationTime, uint256 nextFeePeriodStart);
    error InvalidFee(uint256 feePerPeriod, uint256 periodLength);
    error SchedulePending(uint256 newMultiplier, uint256 activationTime);
    error InvalidFeeTime(uint256 time);

    // ---------------------------------------------------------------- modifiers

    modifier onlyMinter() {
        if (msg.sender != minter) revert CallerNotMinter(msg.sender);
        _;
    }

    modifier onlyBurner() {
        if (msg.sender != burner) revert CallerNotBurner(msg.sender);
        _;
    }

    modifier onlyPauser() {
        if (msg.sender != pauser) revert CallerNotPauser(msg.sender);
        _;
    }

    modifier onlyMultiplierUpdater() {
        if (msg.sender != multiplierUpdater) revert CallerNotMultiplierUpdater(msg.sender);
        _;
    }

    modifier whenNotPaused() {
        if (isPaused) revert TokenPaused();
        _;
    }

    // ---------------------------------------------------------------- setup

    /// @custom:oz-upgrades-unsafe-allow constructor
    constructor() {
        _disableInitializers();
    }

    function initialize(string memory name_, string memory symbol_, address owner_) external initializer {
        __Ownable_init(owner_);
        _name = name_;
        _symbol = symbol_;
        _multiplier = ONE;
        _lastMultiplier = ONE;
        lastTimeFeeApplied = block.timestamp;
    }

    /// @notice Upgrade initializer for a proxy that held a `LegacyToken`: call it through
    /// `ProxyAdmin.upgradeAndCall` in the same transaction as the upgrade. Name and symbol are
    /// taken over from the legacy storage; the multiplier starts at 1e18. For each account in
    /// `accounts` the legacy balance is moved into shares (1:1 at M = 1e18) with a mint pair
    /// `Transfer(0x0, a, b)` + `TransferShares(0x0, a, b)`; every other legacy balance stays
    /// in the legacy slots, which this implementation never reads: `balanceOf` answers 0 for it.
    /// Owner (ERC-7201 storage) and roles unknown to the legacy token carry over / start empty.
    function upgradeFromLegacy(address[] calldata accounts) external reinitializer(2) {
        LegacyTokenStorage.Layout storage legacy = LegacyTokenStorage.layout();
        _name = legacy.name;
        _symbol = legacy.symbol;
        _multiplier = ONE;
        _lastMultiplier = ONE;
        lastTimeFeeApplied = block.timestamp;
        for (uint256 i = 0; i < accounts.length; ++i) {
            address account = accounts[i];
            uint256 amount = legacy.balances[account];
            if (amount == 0) continue;
            legacy.balances[account] = 0;
            legacy.totalSupply -= amount;
            _totalShares += amount;
            _shares[account] += amount;
            emit Transfer(address(0), account, amount);
            emit TransferShares(address(0), account, amount);
        }
    }

    // ---------------------------------------------------------------- ERC-20 views

    function name() external view returns (string memory) {
        return _name;
    }

    function symbol() external view returns (string memory) {
        return _symbol;
    }

    function decimals() external pure returns (uint8) {
        return 18;
    }

    /// @notice floor(shares * M / 1e18) with M the multiplier in force now.
    function balanceOf(address account) external view returns (uint256) {
        (uint256 m,,) = _effectiveMultiplier();
        return _shares[account] * m / ONE;
    }

    /// @notice floor(totalShares * M / 1e18) with M the multiplier in force now.
    function totalSupply() external view returns (uint256) {
        (uint256 m,,) = _effectiveMultiplier();
        return _totalShares * m / ONE;
    }

    function sharesOf(address account) external view returns (uint256) {
        return _shares[account];
    }

    function allowance(address owner_, address spender) external view returns (uint256) {
        return _allowances[owner_][spender];
    }

    // ---------------------------------------------------------------- multiplier views

    /// @notice Stored multiplier, or the scheduled one once its activation time has come.
    /// Fee decay not yet written to storage is NOT included; see getCurrentMultiplier().
    function multiplier() external view returns (uint256) {
        return _scheduleDue() ? _newMultiplier : _multiplier;
    }

    /// @notice The multiplier before the latest explicit update (immediate or scheduled).
    function lastMultiplier() external view returns (uint256) {
        return _scheduleDue() ? _multiplier : _lastMultiplier;
    }

    /// @notice Value of the latest schedule (kept after it activates or is cancelled).
    function newMultiplier() external view returns (uint256) {
        return _newMultiplier;
    }

    /// @notice Activation time of the latest schedule (kept after it activates or is cancelled).
    function newMultiplierActivationTime() external view returns (uint256) {
        return _newMultiplierActivationTime;
    }

    /// @notice True while a schedule exists whose activation time has not come yet.
    function hasPendingSchedule() external view returns (bool) {
        return _schedulePending && block.timestamp < _newMultiplierActivationTime;
    }

    /// @notice The multiplier in force now (schedule and fee decay included), the number of
    /// whole fee periods elapsed since `lastTimeFeeApplied`, and the current nonce.
    function getCurrentMultiplier() external view returns (uint256 multiplier_, uint256 periodsPassed, uint256 nonce_) {
        (multiplier_, periodsPassed,) = _effectiveMultiplier();
        nonce_ = nonce;
    }

    // ---------------------------------------------------------------- ERC-20 moves

    function transfer(address to, uint256 amount) external whenNotPaused returns (bool) {
        uint256 m = _sync();
        _checkSanctions(msg.sender, to);
        _move(msg.sender, to, amount, amount * ONE / m);
        return true;
    }

    /// @notice Emits Approval (unless the allowance is unlimited), then MultiplierUpdated (when a
    /// silent change is written), then Transfer and TransferShares: the real token's order.
    function transferFrom(address from, address to, uint256 amount) external whenNotPaused returns (bool) {
        _checkSanctions(from, to);
        _checkSanctioned(msg.sender);
        _spendAllowance(from, msg.sender, amount);
        uint256 m = _sync();
        _move(from, to, amount, amount * ONE / m);
        return true;
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        _approve(msg.sender, spender, amount);
        return true;
    }

    /// @notice Move `shares` shares; the Transfer event carries floor(shares * M / 1e18).
    function transferShares(address to, uint256 shares) external whenNotPaused returns (bool) {
        uint256 m = _sync();
        _checkSanctions(msg.sender, to);
        _move(msg.sender, to, shares * m / ONE, shares);
        return true;
    }

    /// @notice Move `shares` shares of `from`; the allowance is spent in token units
    /// (floor(shares * M / 1e18)).
    function transferSharesFrom(address from, address to, uint256 shares) external whenNotPaused returns (bool) {
        uint256 m = _sync();
        _checkSanctions(from, to);
        _checkSanctioned(msg.sender);
        uint256 amount = shares * m / ONE;
        _spendAllowance(from, msg.sender, amount);
        _move(from, to, amount, shares);
        return true;
    }

    // ---------------------------------------------------------------- mint and burn

    function mint(address account, uint256 amount) external onlyMinter whenNotPaused {
        if (account == address(0)) revert ERC20InvalidReceiver(address(0));
        uint256 m = _sync();
        uint256 shares = amount * ONE / m;
        _totalShares += shares;
        _shares[account] += shares;
        emit Transfer(address(0), account, amount);
        emit TransferShares(address(0), account, shares);
    }

    /// @notice Burn from the burner's own holding or from the token contract's holding.
    function burn(address account, uint256 amount) external onlyBurner whenNotPaused {
        if (account != msg.sender && account != address(this)) revert BurnAccountNotAllowed(account);
        uint256 m = _sync();
        uint256 shares = amount * ONE / m;
        uint256 held = _shares[account];
        if (held < shares) revert InsufficientShares(account, held, shares);
        unchecked {
            _shares[account] = held - shares;
            _totalShares -= shares;
        }
        emit Transfer(account, address(0), amount);
        emit TransferShares(account, address(0), shares);
    }

    // ---------------------------------------------------------------- multiplier updates

    /// @notice Set the multiplier to `newMultiplier_`. `oldMultiplier` must equal the multiplier
    /// in force. `activationTime` 0 or not in the future applies it now; a future time schedules
    /// it (it must be before the next fee period boundary while a fee is set).
    function updateMultiplierValue(uint256 newMultiplier_, uint256 oldMultiplier, uint256 activationTime)
        external
        onlyMultiplierUpdater
    {
        if (newMultiplier_ == 0) revert InvalidMultiplier(newMultiplier_);
        uint256 current = _sync();
        if (oldMultiplier != current) revert MultiplierMismatch(current, oldMultiplier);
        if (activationTime <= block.timestamp) {
            _applyNow(newMultiplier_, current);
            return;
        }
        if (feePerPeriod != 0) {
            uint256 boundary = lastTimeFeeApplied + periodLength;
            if (activationTime >= boundary) revert ActivationAfterFeePeriod(activationTime, boundary);
        }
        bool replacing = _schedulePending;
        uint256 replacedValue = _newMultiplier;
        uint256 replacedTime = _newMultiplierActivationTime;
        _newMultiplier = newMultiplier_;
        _newMultiplierActivationTime = activationTime;
        _schedulePending = true;
        ++nonce;
        emit MultiplierScheduled(newMultiplier_, activationTime);
        if (replacing) {
            emit MultiplierScheduleOverridden(replacedValue, replacedTime, newMultiplier_, activationTime);
        }
    }

    /// @notice Immediate update guarded by the nonce (replay protection).
    function updateMultiplierWithNonce(uint256 newMultiplier_, uint256 oldMultiplier, uint256 expectedNonce)
        external
        onlyMultiplierUpdater
    {
        if (newMultiplier_ == 0) revert InvalidMultiplier(newMultiplier_);
        uint256 current = _sync();
        if (oldMultiplier != current) revert MultiplierMismatch(current, oldMultiplier);
        if (expectedNonce != nonce) revert NonceMismatch(nonce, expectedNonce);
        _applyNow(newMultiplier_, current);
    }

    /// @notice Set the fee per period (1e18 scale, below 1e18) and the period length in seconds.
    /// Fee periods restart now. A pending schedule must still fall inside the first new period.
    function setFee(uint256 feePerPeriod_, uint256 periodLength_) external {
        if (msg.sender != multiplierUpdater && msg.sender != owner()) {
            revert CallerNotMultiplierUpdaterOrOwner(msg.sender);
        }
        if (feePerPeriod_ >= ONE || (feePerPeriod_ != 0 && periodLength_ == 0)) {
            revert InvalidFee(feePerPeriod_, periodLength_);
        }
        _sync();
        if (feePerPeriod_ != 0 && _schedulePending) {
            uint256 boundary = block.timestamp + periodLength_;
            if (_newMultiplierActivationTime >= boundary) {
                revert ActivationAfterFeePeriod(_newMultiplierActivationTime, boundary);
            }
        }
        feePerPeriod = feePerPeriod_;
        periodLength = periodLength_;
        lastTimeFeeApplied = block.timestamp;
    }

    /// @notice Owner: set the fee per period (1e18 scale, below 1e18). The multiplier update
    /// runs first (due fee periods and a due schedule are written, `MultiplierUpdated` when the
    /// stored value changes); the new rate then applies from the next whole period on, silently.
    function updateFeePerPeriod(uint256 feePerPeriod_) external onlyOwner {
        if (feePerPeriod_ >= ONE) revert InvalidFee(feePerPeriod_, periodLength);
        _sync();
        feePerPeriod = feePerPeriod_;
    }

    /// @notice Owner: move the fee clock to `time` (not 0), only while no schedule is pending.
    /// The multiplier update runs first; the clock then moves with no event, so the multiplier
    /// in force right after can differ from the `MultiplierUpdated` value this call emitted.
    /// A time in the future means no period has passed until then.
    function setLastTimeFeeApplied(uint256 time) external onlyOwner {
        if (time == 0) revert InvalidFeeTime(time);
        _sync();
        _requireNoSchedule();
        lastTimeFeeApplied = time;
    }

    /// @notice Owner: set the fee period length in seconds (0 = no periods), only while no
    /// schedule is pending. The multiplier update runs first; the new length then counts the
    /// periods since `lastTimeFeeApplied` at once, with no event.
    function setPeriodLength(uint256 periodLength_) external onlyOwner {
        _sync();
        _requireNoSchedule();
        periodLength = periodLength_;
    }

    // ---------------------------------------------------------------- roles and admin

    function setMinter(address newMinter) external onlyOwner {
        minter = newMinter;
        emit NewMinter(newMinter);
    }

    function setBurner(address newBurner) external onlyOwner {
        burner = newBurner;
        emit NewBurner(newBurner);
    }

    function setPauser(address newPauser) external onlyOwner {
        pauser = newPauser;
        emit NewPauser(newPauser);
    }

    function setMultiplierUpdater(address newMultiplierUpdater) external onlyOwner {
        multiplierUpdater = newMultiplierUpdater;
        emit NewMultiplierUpdater(newMultiplierUpdater);
    }

    function setSanctionsList(address newSanctionsList) external onlyOwner {
        sanctionsList = newSanctionsList;
        emit NewSanctionsList(newSanctionsList);
    }

    function setTerms(string calldata newTerms) external onlyOwner {
        terms = newTerms;
        emit NewTerms(newTerms);
    }

    function setPause(bool pause) external onlyPauser {
        isPaused = pause;
        emit PauseModeChange(pause);
    }

    // ---------------------------------------------------------------- internals

    function _requireNoSchedule() private view {
        if (_schedulePending) revert SchedulePending(_newMultiplier, _newMultiplierActivationTime);
    }

    function _scheduleDue() private view returns (bool) {
        return _schedulePending && block.timestamp >= _newMultiplierActivationTime;
    }

    /// @dev The multiplier in force at block.timestamp: the due schedule (if any) replaces the
    /// stored value, then the fee is applied once per whole period since lastTimeFeeApplied, floored
    /// at each step.
    function _effectiveMultiplier() private view returns (uint256 m, uint256 periodsPassed, bool scheduleDue) {
        scheduleDue = _scheduleDue();
        m = scheduleDue ? _newMultiplier : _multiplier;
        uint256 len = periodLength;
        uint256 since = lastTimeFeeApplied;
        if (len != 0 && block.timestamp >= since) {
            periodsPassed = (block.timestamp - since) / len;
            uint256 fee = feePerPeriod;
            if (fee != 0) {
                uint256 keep = ONE - fee;
                for (uint256 i = 0; i < periodsPassed; ++i) {
                    m = m * keep / ONE;
                }
            }
        }
    }

    /// @dev Write silent changes (due schedule, elapsed fee periods) to storage; emit
    /// MultiplierUpdated when the stored multiplier changes. Returns the multiplier in force.
    function _sync() private returns (uint256 m) {
        uint256 periodsPassed;
        bool scheduleDue;
        (m, periodsPassed, scheduleDue) = _effectiveMultiplier();
        if (m == 0) revert InvalidMultiplier(0);
        uint256 stored = _multiplier;
        if (scheduleDue) {
            _schedulePending = false;
            _lastMultiplier = stored;
        }
        if (periodsPassed != 0) {
            lastTimeFeeApplied += periodsPassed * periodLength;
        }
        if (m != stored) {
            _multiplier = m;
            emit MultiplierUpdated(m);
        }
    }

    function _applyNow(uint256 newMultiplier_, uint256 current) private {
        _lastMultiplier = current;
        _multiplier = newMultiplier_;
        ++nonce;
        emit MultiplierUpdated(newMultiplier_);
        if (_schedulePending) {
            // An immediate update cancels a schedule that has not activated yet.
            _schedulePending = false;
            emit MultiplierScheduleOverridden(
                _newMultiplier, _newMultiplierActivationTime, newMultiplier_, block.timestamp
            );
        }
    }

    function _move(address from, address to, uint256 amount, uint256 shares) private {
        if (from == address(0)) revert ERC20InvalidSender(address(0));
        if (to == address(0)) revert ERC20InvalidReceiver(address(0));
        uint256 held = _shares[from];
        if (held < shares) revert InsufficientShares(from, held, shares);
        unchecked {
            _shares[from] = held - shares;
        }
        _shares[to] += shares;
        emit Transfer(from, to, amount);
        emit TransferShares(from, to, shares);
    }

    function _approve(address owner_, address spender, uint256 amount) private {
        if (owner_ == address(0)) revert ERC20InvalidApprover(address(0));
        if (spender == address(0)) revert ERC20InvalidSpender(address(0));
        _allowances[owner_][spender] = amount;
        emit Approval(owner_, spender, amount);
    }

    function _spendAllowance(address owner_, address spender, uint256 amount) private {
        uint256 current = _allowances[owner_][spender];
        if (current == type(uint256).max) return;
        if (current < amount) revert ERC20InsufficientAllowance(spender, current, amount);
        unchecked {
            _approve(owner_, spender, current - amount);
        }
    }

    function _checkSanctions(address from, address to) private view {
        address list = sanctionsList;
        if (list == address(0)) return;
        if (ISanctionsList(list).isSanctioned(from)) revert SanctionedAddress(from);
        if (ISanctionsList(list).isSanctioned(to)) revert SanctionedAddress(to);
    }

    function _checkSanctioned(address account) private view {
        address list = sanctionsList;
        if (list != address(0) && ISanctionsList(list).isSanctioned(account)) revert SanctionedAddress(account);
    }
}
