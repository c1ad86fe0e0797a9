"""Frozen values shared by every stage: chain -> decode -> ledger -> store.

Addresses and hashes are lowercase ``0x`` hex strings everywhere. Amounts are Python ints in
base units (wei of the token). A multiplier is an int where ``10**18`` means 1.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

ONE = 10**18
ZERO_ADDRESS = "0x" + "00" * 20


class TokenKind(StrEnum):
    """How balances are derived. Told apart by asking the contract, never by the config."""

    XSTOCK = "xstock"  # share ledger from TransferShares, balance = shares * M / 1e18
    ERC20 = "erc20"  # plain ERC-20: shares = amount, M = 1e18


@dataclass(frozen=True, slots=True)
class Header:
    number: int
    hash: str
    parent_hash: str
    timestamp: int


class Wire(Protocol):
    """One eth_getLogs entry as the node sent it (hex strings): wire.Log, or wire.DictLog for
    an answer of another shape. Attributes for the hot path, ``get`` / ``[]`` with the node's
    camelCase keys for the rest."""

    @property
    def address(self) -> str: ...
    @property
    def topics(self) -> Sequence[str]: ...
    @property
    def data(self) -> str: ...
    @property
    def block_number(self) -> str: ...
    @property
    def block_hash(self) -> str: ...
    @property
    def transaction_hash(self) -> str: ...
    @property
    def log_index(self) -> str: ...
    @property
    def block_timestamp(self) -> str | None: ...
    @property
    def removed(self) -> bool: ...
    def get(self, key: str, default: Any = None) -> Any: ...
    def __getitem__(self, key: str) -> Any: ...


class RawLog(NamedTuple):
    """One eth_getLogs entry, already parsed from hex. A NamedTuple: built once per log on the
    hot path, so it must be cheap."""

    address: str
    topics: tuple[str, ...]
    data: str
    block_number: int
    block_hash: str
    block_time: int | None  # from the log's blockTimestamp when the node sends it
    tx_hash: str
    log_index: int

    def wire(self) -> dict[str, Any]:
        """Back to the node's JSON shape (tests build logs as RawLog)."""
        out: dict[str, Any] = {"address": self.address, "topics": list(self.topics), "data": self.data,
                     "blockNumber": hex(self.block_number), "blockHash": self.block_hash,
                     "transactionHash": self.tx_hash, "logIndex": hex(self.log_index)}
        if self.block_time is not None:
            out["blockTimestamp"] = hex(self.block_time)
        return out


class Transfer(NamedTuple):
    """A token move: Transfer value in token units, TransferShares value in share units."""

    token: str
    block_number: int
    block_time: int
    tx_hash: str
    log_index: int
    from_address: str
    to_address: str
    amount_raw: int
    shares: int


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """Any other event of a followed contract (multiplier, roles, pause, upgrade, NewToken)."""

    token: str
    block_number: int
    block_time: int
    tx_hash: str
    log_index: int
    name: str
    args: dict[str, object]


@dataclass(frozen=True, slots=True)
class NewToken:
    """A factory announced a token; it is followed from ``block_number`` on."""

    factory: str
    token: str
    name: str
    symbol: str
    block_number: int


@dataclass(frozen=True, slots=True)
class Decoded:
    transfers: list[Transfer] = field(default_factory=list)
    events: list[TokenEvent] = field(default_factory=list)
    new_tokens: list[NewToken] = field(default_factory=list)
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class TokenInfo:
    chain_id: int
    address: str
    symbol: str
    name: str
    underlying: str
    decimals: int
    kind: TokenKind
    start_block: int
    source: str  # "config" or "factory:<address>"


@dataclass(frozen=True, slots=True)
class Cursor:
    block_number: int
    block_hash: str
    block_time: int


@dataclass(frozen=True, slots=True)
class MultiplierChange:
    """The multiplier in force from ``block_number`` on (first block where the chain has it)."""

    token: str
    block_number: int
    block_time: int
    multiplier: int
    source: str  # "event" (MultiplierUpdated seen) or "observed" (found by eth_call)


def underlying_of(symbol: str) -> str:
    """TSLAx -> TSLA. A symbol without the trailing x is its own underlying."""
    return symbol[:-1] if symbol.endswith("x") and len(symbol) > 1 else symbol


def exact(value: object) -> str:
    """A database amount (numeric, read as Decimal) as plain digits: 25000000000000000000, never
    2.5E+19; a fraction keeps its digits without trailing zeros."""
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return str(int(value))
        return format(value.normalize(), "f")
    return str(value)
