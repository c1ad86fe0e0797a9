"""Pure: a custody payload (a byte stream: a file, stdin or an HTTP answer) -> validated, frozen records.

Formats (``fmt``, else guessed: a JSON object with ``accounts`` is an attestor feed, one with
``holdings`` (or a list of those) an issuer API answer, another JSON array json, the rest csv):

- ``csv``: header ``underlying,custodian,account,settled_shares,in_transit_shares,as_of,
  attestor,ripcord`` in any order (``ripcord_details`` is read too, other columns ignored).
  Read as a stream: records come out one by one, so memory does not grow with the file.
- ``json``: an array of objects with those keys.
- ``attestor``: ``{timestamp, accounts:[{accountName, totalReserve, totalToken}], ripcord,
  ripcordDetails}``; one record per account (custodian = account = accountName, settled =
  totalReserve), its underlying from ``[custody.accounts]``, else ``--underlying``.
- ``issuer``: ``{symbol, timestamp, sharesHeld, circulatingSupply, holdings:[{provider,
  quantity, symbol}]}`` or a list of them; one record per holding (custodian = provider,
  account = symbol, settled = quantity); the underlying is ``--underlying``, else the symbol's.

Shares are exact decimals in underlying shares (JSON numbers are read exactly too). Times are
ISO 8601 with a zone; attestor and issuer times may also be Unix seconds (milliseconds from
10^11 up). The first bad value (not a number, more than 78 digits, negative, unknown
underlying, missing field, bad or future time) raises InputError naming the file, the CSV line
or JSON path and the field (see :mod:`.fields`). A JSON document that is not an array or
object is refused as such. :func:`parse` also refuses two records for one account and time;
the streaming importer checks that in the database.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import hashlib
import io
import json
import operator
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import IO, Any

from ..errors import InputError
from . import fields as f
from . import json_shapes as j
from .fields import ATTESTOR_FEED, COLUMNS, ISSUER_API, At, Context, CustodyRecord

__all__ = ["ATTESTOR_FEED", "COLUMNS", "FORMATS", "ISSUER_API", "Context", "CustodyRecord", "Payload", "Stream",
           "open_stream", "parse"]

FORMATS = ("csv", "json", "attestor", "issuer")
_CHUNK = 1 << 20
# Shares the fast path takes as they are: at most 40 integer and 38 fraction digits (so at most
# 78 digits, below 10^40, never negative); anything else goes through the checks that name it.
_PLAIN_SHARES = re.compile(r"\d{1,40}(?:\.\d{0,38})?|\.\d{1,38}")
_JSON_SCALARS = {type(None): "null", bool: "a boolean", str: "a string", int: "a number", Decimal: "a number"}


@dataclass(frozen=True, slots=True)
class Payload:
    format: str
    records: tuple[CustodyRecord, ...]
    sha256: str  # of the raw bytes: the same payload imported twice adds nothing


@dataclass(frozen=True)
class CsvRows:
    """A CSV payload's lines and what checks them: :meth:`open` reads the header and returns the
    reader of the rows after it with the column names. The bulk importer reads rows from here
    directly (:mod:`.copy_text`); everyone else iterates :attr:`Stream.records`."""

    lines: Iterator[str]
    ctx: Context

    def open(self) -> tuple[Any, list[str]]:
        reader = csv.reader(self.lines)
        try:
            names = [h.strip().lower() for h in next(reader, [])]
        except csv.Error as exc:
            raise At(self.ctx.name, reader.line_num).fail(None, f"not valid CSV: {exc}") from None
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise At(self.ctx.name, 1).fail(
                None, f"the header lacks {', '.join(missing)} (expected {','.join(COLUMNS)})")
        return reader, names


@dataclass(frozen=True)
class Stream:
    """The records of one payload, validated as they are read; iterating raises InputError at
    the first fault (and at the end when there was no record). ``csv``: the same payload as
    rows, for a CSV (use one or the other: both read the same lines)."""

    format: str
    records: Iterator[tuple[At, CustodyRecord]]
    csv: CsvRows | None = None


def parse(data: bytes, ctx: Context, fmt: str | None = None) -> Payload:
    """Validate a whole payload held in memory; every record, or InputError at the first fault."""
    stream = open_stream(io.BytesIO(data), ctx, fmt)
    located = list(stream.records)
    seen: dict[tuple[str, str, str, datetime], At] = {}
    for at, r in located:
        first = seen.setdefault((r.underlying, r.custodian, r.account, r.as_of), at)
        if first is not at:
            where = f"line {first.line}" if first.line is not None else first.path
            raise at.fail(None, f"a second record for {r.underlying} {r.custodian}/{r.account} at "
                                f"{r.as_of.isoformat()} (first at {where})")
    return Payload(stream.format, tuple(r for _, r in located), hashlib.sha256(data).hexdigest())


def open_stream(source: IO[bytes], ctx: Context, fmt: str | None = None) -> Stream:
    """Decide the format from ``fmt`` or the first bytes, and return the records as a stream.
    CSV is read line by line; the JSON formats are read whole (bounded by the caller's size
    limit: a real feed is a few kilobytes)."""
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"{ctx.name}: unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    head = source.read(_CHUNK)
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if not start and len(head) < _CHUNK:
        raise InputError(f"{ctx.name}: empty file")
    if fmt == "csv" or (fmt is None and start not in (b"[", b"{")):
        if fmt is None and len(head) < _CHUNK:
            _refuse_json_scalar(head, ctx.name)
        rows = CsvRows(_text(head, source, ctx.name), ctx)
        return Stream("csv", _counted(_from_csv(rows), ctx.name), rows)
    doc = j.load_json(_decode(head + source.read(), ctx.name), ctx.name)
    fmt = fmt or j.guess(doc, ctx.name)
    parser = {"json": j.from_json, "attestor": j.from_attestor, "issuer": j.from_issuer}[fmt]
    return Stream(fmt, _counted(parser(doc, ctx), ctx.name))


def _counted(records: Iterator[tuple[At, CustodyRecord]], name: str) -> Iterator[tuple[At, CustodyRecord]]:
    n = 0
    for item in records:
        n += 1
        yield item
    if not n:
        raise InputError(f"{name}: no custody records")


def _refuse_json_scalar(head: bytes, name: str) -> None:
    """A whole small payload that is a JSON null, boolean, string or number: say so, rather
    than complain about its CSV header."""
    try:
        doc = json.loads(head.decode("utf-8-sig"), parse_float=Decimal, parse_int=j.json_int)
    except (ValueError, RecursionError):
        return
    kind = _JSON_SCALARS.get(type(doc))
    if kind is not None:
        raise InputError(f"{name}: the file is JSON {kind}, not custody records (expected CSV with a header line, "
                         "or a JSON array or object)")


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text (byte {exc.start})") from None


def _text(head: bytes, source: IO[bytes], name: str) -> Iterator[str]:
    """The lines of the payload: through the C text layer when the source can be read again
    from its start (then a bad byte is located by a second pass), else decoded here."""
    if not source.seekable():
        yield from _lines(head, source, name)
        return
    source.seek(0)
    wrapper = io.TextIOWrapper(source, encoding="utf-8-sig", newline="")
    try:
        yield from wrapper
    except UnicodeDecodeError:
        source.seek(0)
        for _ in _lines(source.read(_CHUNK), source, name):
            pass
        raise InputError(f"{name}: not UTF-8 text") from None  # pragma: no cover - the pass above names the byte
    finally:
        with contextlib.suppress(ValueError):  # the caller closed the source first
            wrapper.detach()


def _lines(head: bytes, rest: IO[bytes], name: str) -> Iterator[str]:
    """The text as lines (each with its newline), decoded incrementally; a byte that is not
    UTF-8 is named by its offset in the file."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, pending, chunk, first = 0, "", head, True
    while True:
        last = len(chunk) < _CHUNK
        try:
            text = decoder.decode(chunk, final=last)
        except UnicodeDecodeError as exc:
            raise InputError(f"{name}: not UTF-8 text (byte {offset + exc.start})") from None
        if first:
            text, first = text.removeprefix("\ufeff"), False
        offset += len(chunk)
        parts = (pending + text).split("\n")
        pending = parts.pop()
        for part in parts:
            yield part + "\n"
        if last:
            break
        chunk = rest.read(_CHUNK)
    if pending:
        yield pending


def blank_row(row: list[str], width: int, name: str, line: int) -> bool:
    """For a CSV row that is not ``width`` filled cells: True when it is blank (skipped), an
    InputError when it has another number of fields, else False (its empty cells are checked
    as a record's)."""
    if not any(cell.strip() for cell in row):
        return True
    if len(row) != width:
        raise At(name, line).fail(None, f"{len(row)} fields, the header has {width}")
    return False


def _from_csv(rows: CsvRows) -> Iterator[tuple[At, CustodyRecord]]:
    reader, names = rows.open()
    ctx = rows.ctx
    try:
        width = len(names)
        fast = _FastCsv(names, ctx)
        for row in reader:
            if (len(row) != width or not all(row)) and blank_row(row, width, ctx.name, reader.line_num):
                continue
            at = At(ctx.name, reader.line_num)
            yield at, fast.record(row) or f.row_record(at, dict(zip(names, row, strict=True)), ctx)
    except csv.Error as exc:
        raise At(ctx.name, reader.line_num).fail(None, f"not valid CSV: {exc}") from None


class _FastCsv:
    """The common CSV row (plain values, known names, a time seen on the row before) checked
    without building messages; None sends the row through :func:`.fields.row_record`, which names the fault
    or accepts what the fast path does not know."""

    def __init__(self, names: list[str], ctx: Context) -> None:
        self.pick = operator.itemgetter(*(names.index(c) for c in COLUMNS))
        self.ctx = ctx
        self.known = {k: v for k, v in ctx.known.items()}
        self.last: tuple[str, datetime] | None = None

    def record(self, row: list[str]) -> CustodyRecord | None:
        u, c, a, s, t, when, att, rc = self.pick(row)
        u, c, a, s, t, when, att = u.strip(), c.strip(), a.strip(), s.strip(), t.strip(), when.strip(), att.strip()
        underlying = self.known.get(u.upper()) if self.known else u
        ripcord = rc.strip().lower()
        if (not (underlying and c and a and att) or ripcord not in ("true", "false")
                or not _PLAIN_SHARES.fullmatch(s) or not _PLAIN_SHARES.fullmatch(t)):
            return None
        as_of = self._time(when)
        if as_of is None or ripcord == "true":
            return None
        return CustodyRecord(underlying, c, a, Decimal(s), Decimal(t), as_of, att, False)

    def _time(self, text: str) -> datetime | None:
        if self.last is not None and self.last[0] == text:
            return self.last[1]
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.tzinfo is None or (self.ctx.not_after is not None and moment > self.ctx.not_after):
            return None
        self.last = (text, moment)
        return moment



