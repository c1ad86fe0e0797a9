"""Pure: the values of one custody record, checked one by one (used by :mod:`.parse`).

Every check takes the place (``At``: a CSV line or a JSON path) and the field name, and raises
InputError naming both and the value as given (shortened): ``custody.csv line 14:
settled_shares "12,5" is not a number``.

Bounds: shares are exact decimals, never negative, at most ``MAX_DIGITS`` digits (a uint256
has 78) and below 10^40; a time carries a zone and is at most ``Context.not_after`` (a record
from the future would stay the newest forever and hide staleness).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ..errors import InputError

MAX_DIGITS = 78
ATTESTOR_FEED = "attestor feed"
ISSUER_API = "issuer API"
COLUMNS = ("underlying", "custodian", "account", "settled_shares", "in_transit_shares", "as_of", "attestor",
           "ripcord")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_MAX_EXPONENT = 40  # 10^40 shares: far beyond any custody account, well inside numeric


@dataclass(frozen=True, slots=True)
class CustodyRecord:
    underlying: str
    custodian: str
    account: str
    settled_shares: Decimal
    in_transit_shares: Decimal
    as_of: datetime
    attestor: str
    ripcord: bool
    ripcord_details: str | None = None

    @property
    def custody_shares(self) -> Decimal:
        """What backs the token: settled plus in transit (bought, owed to the custodian)."""
        return self.settled_shares + self.in_transit_shares


@dataclass(frozen=True)
class Context:
    """Names the parser resolves. ``known``: accepted spelling in upper case (an underlying or a
    token symbol) -> underlying; empty means nothing is indexed yet and names are not checked.
    ``accounts``: attestor accountName -> underlying (``[custody.accounts]``). ``not_after``: the
    latest acceptable as_of (None: no limit)."""

    name: str
    known: Mapping[str, str] = field(default_factory=dict)
    accounts: Mapping[str, str] = field(default_factory=dict)
    underlying: str | None = None
    not_after: datetime | None = None


@dataclass(frozen=True)
class At:
    """A place in the payload for messages: a CSV line, or a JSON path."""

    name: str
    line: int | None = None
    path: str = "$"

    def child(self, step: str) -> At:
        return At(self.name, None, f"{self.path}{step}")

    def fail(self, key: str | None, problem: str) -> InputError:
        if self.line is not None:
            return InputError(f"{self.name} line {self.line}: {key + ' ' if key else ''}{problem}")
        return InputError(f"{self.name} {self.path}{'.' + key if key else ''}: {problem}")


def show(value: Any) -> str:
    text = value if isinstance(value, str) else str(value) if isinstance(value, Decimal) else json.dumps(value)
    return '"' + (text if len(text) <= 40 else text[:37] + "...") + '"'


def need(at: At, row: Mapping[str, Any], key: str) -> Any:
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise at.fail(key, "is missing")
    return value


def obj(at: At, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise at.fail(None, "expected an object")
    return value


def array(at: At, key: str, value: Any) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise at.fail(key, "must be a non-empty array")
    return value


def text(at: At, key: str, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise at.fail(key, f"{show(value)} is not text")
    return value.strip()


def shares(at: At, key: str, value: Any) -> Decimal:
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        number = Decimal(value)
        digits = len(number.as_tuple().digits) if number.is_finite() else 0
    elif isinstance(value, str) and _NUMBER.match(value.strip()):
        digits = sum(c.isdigit() for c in value)
        number = Decimal(value.strip()) if digits <= MAX_DIGITS else Decimal(0)
    else:
        raise at.fail(key, f"{show(value)} is not a number")
    if digits > MAX_DIGITS:
        raise at.fail(key, f"{show(value)} has more than {MAX_DIGITS} digits")
    if not number.is_finite():
        raise at.fail(key, f"{show(value)} is not a number")
    if number < 0:
        raise at.fail(key, f"{show(value)} is negative")
    if number and number.adjusted() >= _MAX_EXPONENT:
        raise at.fail(key, f"{show(value)} is too large")
    return number


def when(at: At, key: str, value: Any, epoch: bool, ctx: Context) -> datetime:
    """A time with a zone (ISO 8601; Unix seconds or milliseconds where ``epoch``), at most
    ``ctx.not_after``."""
    moment = _time(at, key, value, epoch)
    if ctx.not_after is not None and moment > ctx.not_after:
        raise at.fail(key, f"{show(value)} is in the future (after {ctx.not_after.isoformat(timespec='seconds')}: "
                           "the clock and the latest indexed block, plus 5 minutes)")
    return moment


def _time(at: At, key: str, value: Any, epoch: bool) -> datetime:
    if epoch and isinstance(value, int) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000 if value >= 10**11 else value, UTC)
        except (OverflowError, OSError, ValueError):
            raise at.fail(key, f"{show(value)} is not a time") from None
    if not isinstance(value, str):
        raise at.fail(key, f"{show(value)} is not an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise at.fail(key, f"{show(value)} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise at.fail(key, f"{show(value)} has no time zone (add Z or +00:00)")
    return moment


def flag(at: At, key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise at.fail(key, f"{show(value)} is not true or false")


def details(value: Any) -> str | None:
    if value is None or value == "" or value == []:
        return None
    return value if isinstance(value, str) else json.dumps(value, default=str)


def resolve(at: At, key: str, name: str, ctx: Context, fallback: Callable[[str], str] = str) -> str:
    if not ctx.known:
        return fallback(name)
    found = ctx.known.get(name.upper())
    if found is None:
        names = sorted(set(ctx.known.values()))
        listed = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise at.fail(key, f"{show(name)} is not a known underlying (known: {listed})")
    return found


def row_record(at: At, row: Mapping[str, Any], ctx: Context) -> CustodyRecord:
    """One record from a row of named values (a CSV line, a JSON object), checked in column
    order so that the first bad column is the one named."""
    record = CustodyRecord(  # checked in column order, so the first bad column is the one named
        underlying=resolve(at, "underlying", text(at, "underlying", need(at, row, "underlying")), ctx),
        custodian=text(at, "custodian", need(at, row, "custodian")),
        account=text(at, "account", need(at, row, "account")),
        settled_shares=shares(at, "settled_shares", need(at, row, "settled_shares")),
        in_transit_shares=shares(at, "in_transit_shares", need(at, row, "in_transit_shares")),
        as_of=when(at, "as_of", need(at, row, "as_of"), False, ctx),
        attestor=text(at, "attestor", need(at, row, "attestor")),
        ripcord=flag(at, "ripcord", need(at, row, "ripcord")),
    )
    return replace(record, ripcord_details=details(row.get("ripcord_details"))) if record.ripcord else record
