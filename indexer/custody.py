"""Pure: a custody payload (the bytes of a file or an HTTP answer) -> validated, frozen records.

Formats (``fmt``, else guessed: a JSON object with ``accounts`` is an attestor feed, one with
``holdings`` (or a list of those) an issuer API answer, another JSON array json, the rest csv):

- ``csv``: header ``underlying,custodian,account,settled_shares,in_transit_shares,as_of,
  attestor,ripcord`` in any order (``ripcord_details`` is read too, other columns ignored).
- ``json``: an array of objects with those keys.
- ``attestor``: ``{timestamp, accounts:[{accountName, totalReserve, totalToken}], ripcord,
  ripcordDetails}``; one record per account (custodian = account = accountName, settled =
  totalReserve), its underlying from ``[custody.accounts]``, else ``--underlying``.
- ``issuer``: ``{symbol, timestamp, sharesHeld, circulatingSupply, holdings:[{provider,
  quantity, symbol}]}`` or a list of them; one record per holding (custodian = provider,
  account = symbol, settled = quantity); the underlying is ``--underlying``, else the symbol's.

Shares are exact decimals in underlying shares (JSON numbers are read exactly too). Times are
ISO 8601 with a zone; attestor and issuer times may also be Unix seconds (milliseconds from
10^11 up). All or nothing: the first bad value (not a number, negative, unknown underlying,
missing field, bad time, two records for one account and time) raises InputError naming the
file, the CSV line or JSON path and the field: ``custody.csv line 14: settled_shares "12,5" is
not a number``, ``custody.json $[3].as_of: "2026-13-01" is not an ISO 8601 time``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from .errors import InputError
from .models import underlying_of

FORMATS = ("csv", "json", "attestor", "issuer")
COLUMNS = ("underlying", "custodian", "account", "settled_shares", "in_transit_shares", "as_of", "attestor",
           "ripcord")
ATTESTOR_FEED = "attestor feed"
ISSUER_API = "issuer API"
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


@dataclass(frozen=True, slots=True)
class Payload:
    format: str
    records: tuple[CustodyRecord, ...]
    sha256: str  # of the raw bytes: the same payload imported twice adds nothing


@dataclass(frozen=True)
class Context:
    """Names the parser resolves. ``known``: accepted spelling in upper case (an underlying or a
    token symbol) -> underlying; empty means nothing is indexed yet and names are not checked.
    ``accounts``: attestor accountName -> underlying (``[custody.accounts]``)."""

    name: str
    known: Mapping[str, str] = field(default_factory=dict)
    accounts: Mapping[str, str] = field(default_factory=dict)
    underlying: str | None = None


@dataclass(frozen=True)
class _At:
    """A place in the payload for messages: a CSV line, or a JSON path."""

    name: str
    line: int | None = None
    path: str = "$"

    def child(self, step: str) -> _At:
        return _At(self.name, None, f"{self.path}{step}")

    def fail(self, key: str | None, problem: str) -> InputError:
        if self.line is not None:
            return InputError(f"{self.name} line {self.line}: {key + ' ' if key else ''}{problem}")
        return InputError(f"{self.name} {self.path}{'.' + key if key else ''}: {problem}")


Located = list[tuple[_At, CustodyRecord]]


def parse(data: bytes, ctx: Context, fmt: str | None = None) -> Payload:
    """Validate a whole payload; returns every record or raises InputError on the first fault."""
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"{ctx.name}: unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{ctx.name}: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise InputError(f"{ctx.name}: empty file")
    if fmt == "csv" or (fmt is None and text.lstrip()[0] not in "[{"):
        fmt, located = "csv", _from_csv(text, ctx)
    else:
        doc = _load_json(text, ctx.name)
        fmt = fmt or _guess(doc, ctx.name)
        located = {"json": _from_json, "attestor": _from_attestor, "issuer": _from_issuer}[fmt](doc, ctx)
    if not located:
        raise InputError(f"{ctx.name}: no custody records")
    seen: dict[tuple[str, str, str, datetime], _At] = {}
    for at, r in located:
        first = seen.setdefault((r.underlying, r.custodian, r.account, r.as_of), at)
        if first is not at:
            where = f"line {first.line}" if first.line is not None else first.path
            raise at.fail(None, f"a second record for {r.underlying} {r.custodian}/{r.account} at "
                                f"{r.as_of.isoformat()} (first at {where})")
    return Payload(fmt, tuple(r for _, r in located), hashlib.sha256(data).hexdigest())


def _guess(doc: Any, name: str) -> str:
    if isinstance(doc, dict):
        if "accounts" in doc:
            return "attestor"
        if "holdings" in doc or "sharesHeld" in doc:
            return "issuer"
        raise InputError(f"{name}: a JSON object is neither an attestor feed (accounts) nor an issuer API "
                         "answer (holdings); pass --format")
    if isinstance(doc, list) and doc and isinstance(doc[0], dict) and ("holdings" in doc[0] or "sharesHeld" in doc[0]):
        return "issuer"
    return "json"


def _load_json(text: str, name: str) -> Any:
    try:  # NaN/Infinity stay strings, so the number check rejects them by name
        return json.loads(text, parse_float=Decimal, parse_constant=str)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name} line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise InputError(f"{name}: JSON nested too deeply") from None


def _from_csv(text: str, ctx: Context) -> Located:
    reader = csv.reader(io.StringIO(text, newline=""))
    out: Located = []
    try:
        names = [h.strip().lower() for h in next(reader)]
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise _At(ctx.name, 1).fail(None, f"the header lacks {', '.join(missing)} (expected {','.join(COLUMNS)})")
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            at = _At(ctx.name, reader.line_num)
            if len(row) != len(names):
                raise at.fail(None, f"{len(row)} fields, the header has {len(names)}")
            out.append((at, _record(at, dict(zip(names, row, strict=True)), ctx)))
    except csv.Error as exc:
        raise _At(ctx.name, reader.line_num).fail(None, f"not valid CSV: {exc}") from None
    return out


def _from_json(doc: Any, ctx: Context) -> Located:
    if not isinstance(doc, list):
        raise _At(ctx.name).fail(None, "expected an array of custody records")
    out: Located = []
    for i, item in enumerate(doc):
        at = _At(ctx.name, path=f"$[{i}]")
        out.append((at, _record(at, _object(at, item), ctx)))
    return out


def _record(at: _At, row: Mapping[str, Any], ctx: Context) -> CustodyRecord:
    record = CustodyRecord(  # checked in column order, so the first bad column is the one named
        underlying=_resolve(at, "underlying", _text(at, "underlying", _need(at, row, "underlying")), ctx),
        custodian=_text(at, "custodian", _need(at, row, "custodian")),
        account=_text(at, "account", _need(at, row, "account")),
        settled_shares=_shares(at, "settled_shares", _need(at, row, "settled_shares")),
        in_transit_shares=_shares(at, "in_transit_shares", _need(at, row, "in_transit_shares")),
        as_of=_time(at, "as_of", _need(at, row, "as_of"), epoch=False),
        attestor=_text(at, "attestor", _need(at, row, "attestor")),
        ripcord=_flag(at, "ripcord", _need(at, row, "ripcord")),
    )
    return replace(record, ripcord_details=_details(row.get("ripcord_details"))) if record.ripcord else record


def _from_attestor(doc: Any, ctx: Context) -> Located:
    root = _At(ctx.name)
    feed = _object(root, doc)
    as_of = _time(root, "timestamp", _need(root, feed, "timestamp"), epoch=True)
    ripcord = _flag(root, "ripcord", _need(root, feed, "ripcord"))
    details = _details(feed.get("ripcordDetails")) if ripcord else None
    out: Located = []
    for i, item in enumerate(_array(root, "accounts", _need(root, feed, "accounts"))):
        at = root.child(f".accounts[{i}]")
        account = _object(at, item)
        name = _text(at, "accountName", _need(at, account, "accountName"))
        target = ctx.accounts.get(name) or ctx.underlying
        if target is None:
            raise at.fail("accountName", f"{_show(name)} is not in [custody.accounts] and no --underlying was given")
        reserve = _shares(at, "totalReserve", _need(at, account, "totalReserve"))
        if account.get("totalToken") is not None:
            _shares(at, "totalToken", account["totalToken"])
        out.append((at, CustodyRecord(_resolve(at, "accountName", target, ctx), name, name, reserve, Decimal(0),
                                      as_of, ATTESTOR_FEED, ripcord, details)))
    return out


def _from_issuer(doc: Any, ctx: Context) -> Located:
    single = not isinstance(doc, list)
    out: Located = []
    for i, item in enumerate([doc] if single else doc):
        at = _At(ctx.name, path="$" if single else f"$[{i}]")
        answer = _object(at, item)
        symbol = _text(at, "symbol", _need(at, answer, "symbol"))
        underlying = _resolve(at, "symbol", ctx.underlying or symbol, ctx, fallback=underlying_of)
        as_of = _time(at, "timestamp", _need(at, answer, "timestamp"), epoch=True)
        for key in ("sharesHeld", "circulatingSupply"):
            if answer.get(key) is not None:
                _shares(at, key, answer[key])
        for j, entry in enumerate(_array(at, "holdings", _need(at, answer, "holdings"))):
            hat = at.child(f".holdings[{j}]")
            holding = _object(hat, entry)
            provider = _text(hat, "provider", _need(hat, holding, "provider"))
            quantity = _shares(hat, "quantity", _need(hat, holding, "quantity"))
            if holding.get("symbol") is not None:
                _text(hat, "symbol", holding["symbol"])
            out.append((hat, CustodyRecord(underlying, provider, symbol, quantity, Decimal(0), as_of, ISSUER_API,
                                           False)))
    return out


# -- values ------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return '"' + (text if len(text) <= 40 else text[:37] + "...") + '"'


def _need(at: _At, row: Mapping[str, Any], key: str) -> Any:
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise at.fail(key, "is missing")
    return value


def _object(at: _At, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise at.fail(None, "expected an object")
    return value


def _array(at: _At, key: str, value: Any) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise at.fail(key, "must be a non-empty array")
    return value


def _text(at: _At, key: str, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise at.fail(key, f"{_show(value)} is not text")
    return value.strip()


def _shares(at: _At, key: str, value: Any) -> Decimal:
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        number = Decimal(value)
    elif isinstance(value, str) and _NUMBER.match(value.strip()):
        number = Decimal(value.strip())
    else:
        raise at.fail(key, f"{_show(value)} is not a number")
    if not number.is_finite():
        raise at.fail(key, f"{_show(value)} is not a number")
    if number < 0:
        raise at.fail(key, f"{_show(value)} is negative")
    if number and number.adjusted() >= _MAX_EXPONENT:
        raise at.fail(key, f"{_show(value)} is too large")
    return number


def _time(at: _At, key: str, value: Any, epoch: bool) -> datetime:
    if epoch and isinstance(value, int) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000 if value >= 10**11 else value, UTC)
        except (OverflowError, OSError, ValueError):
            raise at.fail(key, f"{_show(value)} is not a time") from None
    if not isinstance(value, str):
        raise at.fail(key, f"{_show(value)} is not an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise at.fail(key, f"{_show(value)} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise at.fail(key, f"{_show(value)} has no time zone (add Z or +00:00)")
    return moment


def _flag(at: _At, key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise at.fail(key, f"{_show(value)} is not true or false")


def _details(value: Any) -> str | None:
    if value is None or value == "" or value == []:
        return None
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _resolve(at: _At, key: str, name: str, ctx: Context, fallback: Callable[[str], str] = str) -> str:
    if not ctx.known:
        return fallback(name)
    found = ctx.known.get(name.upper())
    if found is None:
        names = sorted(set(ctx.known.values()))
        listed = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise at.fail(key, f"{_show(name)} is not a known underlying (known: {listed})")
    return found
