"""Typed readers of the config's TOML values, used by config.py to build Settings.

Each reader returns the value or raises :class:`ConfigError` with one line naming
``source: key`` and what is wrong with it. Addresses: 0x and 40 hex digits; a mixed-case address
must carry a valid EIP-55 checksum (a typo in one digit changes the checksum). Ports: 1-65535.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: object, where: str) -> float:
    """'24h', '1d', '30m', '90s', '1.5h' or a number of seconds -> seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match:
        raise ConfigError(f"{where}: {value!r} is not a duration like '24h', '1d' or '90s'")
    return float(match.group(1)) * _UNITS[match.group(2)]


def address_problem(value: str) -> str | None:
    """Why ``value`` is not an address to accept, or None. All-lowercase and all-uppercase hex
    carry no checksum; mixed case is an EIP-55 checksum and must be right."""
    if not _ADDRESS.fullmatch(value):
        return "is not a 0x-prefixed 20-byte hex address"
    digits = value[2:]
    if digits != digits.lower() and digits != digits.upper() and not _is_checksummed(digits):
        return "has a wrong EIP-55 checksum (mixed case): check it for a typo, or write it in lowercase"
    return None


def _is_checksummed(digits: str) -> bool:
    """EIP-55: a letter is upper case where the nibble of keccak(lowercase hex) is >= 8.
    (eth_hash alone: eth_utils costs 0.15 s of start-up to every command.)"""
    from eth_hash.auto import keccak

    nibbles = keccak(digits.lower().encode()).hex()
    return digits == "".join(c.upper() if int(n, 16) >= 8 else c.lower() for c, n in zip(digits, nibbles, strict=False))


class Fields:
    """Typed accessors that raise ConfigError naming ``source: key``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where}: {problem}")

    def keys(self, table: Mapping[str, Any], where: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                name = f"{where}.{key}" if where else key
                raise self.fail(name, f"unknown key (allowed here: {', '.join(sorted(allowed))})")

    def table(self, raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = raw.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        return value

    def array(self, raw: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(key, f"must be an array of tables ([[{key}]])")
        return value

    def string(self, raw: Mapping[str, Any], key: str, where: str, required: bool = False) -> str | None:
        value = raw.get(key)
        if value is None:
            if required:
                raise self.fail(f"{where}.{key}", "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{where}.{key}", f"must be a non-empty string, got {value!r}")
        return value

    def integer(self, raw: Mapping[str, Any], key: str, where: str, default: int, minimum: int = 0,
                maximum: int | None = None) -> int:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum \
                or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise self.fail(f"{where}.{key}", f"must be an integer {bound}, got {value!r}")
        return value

    def port(self, raw: Mapping[str, Any], key: str, where: str) -> int | None:
        """A TCP port to listen on, 1-65535; None when the key is absent."""
        return None if raw.get(key) is None else self.integer(raw, key, where, 0, minimum=1, maximum=65535)

    def number(self, raw: Mapping[str, Any], key: str, where: str, default: float) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.fail(f"{where}.{key}", f"must be a positive number, got {value!r}")
        return float(value)

    def address(self, raw: Mapping[str, Any], where: str) -> str:
        value = self.string(raw, "address", where, required=True)
        problem = address_problem(value) if isinstance(value, str) else "is required"
        if problem:
            raise self.fail(f"{where}.address", f"{value!r} {problem}")
        return str(value).lower()

    def chain_ref(self, raw: Mapping[str, Any], where: str, names: list[str]) -> str:
        name = self.string(raw, "chain", where, required=True)
        if name not in names:
            raise self.fail(f"{where}.chain", f"no [[chain]] named {name!r} (have: {', '.join(names)})")
        return str(name)
