"""Pure: the JSON shapes of a custody payload (see :mod:`.parse` for the formats) -> records.

Numbers are read exactly (Decimal); an integer too long for Python's int stays a Decimal so that
the shares check names it; NaN and Infinity stay strings so that it refuses them by name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from ..errors import InputError
from ..models import underlying_of
from . import fields as f
from .fields import ATTESTOR_FEED, ISSUER_API, At, Context, CustodyRecord

Located = Iterator[tuple[At, CustodyRecord]]

def guess(doc: Any, name: str) -> str:
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


def json_int(digits: str) -> int | Decimal:
    # Python's int() refuses more than 4300 digits with a bare ValueError: keep long ones as
    # Decimal, which the shares check then refuses by name.
    return int(digits) if len(digits) <= f.MAX_DIGITS + 1 else Decimal(digits)


def load_json(text: str, name: str) -> Any:
    try:  # NaN/Infinity stay strings, so the number check rejects them by name
        return json.loads(text, parse_float=Decimal, parse_int=json_int, parse_constant=str)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name} line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise InputError(f"{name}: JSON nested too deeply") from None
    except ValueError as exc:
        raise InputError(f"{name}: not valid JSON: {str(exc)[:80]}") from None


def from_json(doc: Any, ctx: Context) -> Located:
    if not isinstance(doc, list):
        raise At(ctx.name).fail(None, "expected an array of custody records")
    for i, item in enumerate(doc):
        at = At(ctx.name, path=f"$[{i}]")
        yield at, f.row_record(at, f.obj(at, item), ctx)


def from_attestor(doc: Any, ctx: Context) -> Located:
    root = At(ctx.name)
    feed = f.obj(root, doc)
    as_of = f.when(root, "timestamp", f.need(root, feed, "timestamp"), True, ctx)
    ripcord = f.flag(root, "ripcord", f.need(root, feed, "ripcord"))
    details = f.details(feed.get("ripcordDetails")) if ripcord else None
    for i, item in enumerate(f.array(root, "accounts", f.need(root, feed, "accounts"))):
        at = root.child(f".accounts[{i}]")
        account = f.obj(at, item)
        name = f.text(at, "accountName", f.need(at, account, "accountName"))
        target = ctx.accounts.get(name) or ctx.underlying
        if target is None:
            raise at.fail("accountName", f"{f.show(name)} is not in [custody.accounts] and no --underlying was given")
        reserve = f.shares(at, "totalReserve", f.need(at, account, "totalReserve"))
        if account.get("totalToken") is not None:
            f.shares(at, "totalToken", account["totalToken"])
        yield at, CustodyRecord(f.resolve(at, "accountName", target, ctx), name, name, reserve, Decimal(0),
                                as_of, ATTESTOR_FEED, ripcord, details)


def from_issuer(doc: Any, ctx: Context) -> Located:
    single = not isinstance(doc, list)
    for i, item in enumerate([doc] if single else doc):
        at = At(ctx.name, path="$" if single else f"$[{i}]")
        answer = f.obj(at, item)
        symbol = f.text(at, "symbol", f.need(at, answer, "symbol"))
        underlying = f.resolve(at, "symbol", ctx.underlying or symbol, ctx, fallback=underlying_of)
        as_of = f.when(at, "timestamp", f.need(at, answer, "timestamp"), True, ctx)
        for key in ("sharesHeld", "circulatingSupply"):
            if answer.get(key) is not None:
                f.shares(at, key, answer[key])
        for j, entry in enumerate(f.array(at, "holdings", f.need(at, answer, "holdings"))):
            hat = at.child(f".holdings[{j}]")
            holding = f.obj(hat, entry)
            provider = f.text(hat, "provider", f.need(hat, holding, "provider"))
            quantity = f.shares(hat, "quantity", f.need(hat, holding, "quantity"))
            if holding.get("symbol") is not None:
                f.text(hat, "symbol", holding["symbol"])
            yield hat, CustodyRecord(underlying, provider, symbol, quantity, Decimal(0), as_of, ISSUER_API, False)
