"""Pure: validated custody records -> COPY text for custody_attestations, in chunks (the bulk
half of ``indexer custody import``, between :mod:`.parse` and :mod:`.importer`).

Each chunk is ready for ``COPY custody_attestations (...) FROM STDIN`` (text format): every line
carries the payload's source and SHA-256, so the records go straight into their table without a
staging copy. A CSV is read on a fast path: a row of plain values (known underlying, decimal
shares without sign or exponent, an ISO time seen before, ripcord false) is written from its
own text with no record object; any other row goes through :func:`.fields.row_record`,
which names its fault or accepts what the fast path does not know. Both accept the same rows.

Beside the text the encoder keeps, per record, where it was (CSV line or JSON path) and a
64-bit hash of its key (underlying, custodian, account, as_of instant): :meth:`Encoder.clashes`
finds the keys that may repeat without a pass over the stored rows (equal hashes are then
checked exactly in the database). Memory: 16 bytes per record, a 16 MB filter, and one chunk of text.

Failures: the first bad record raises its InputError; a payload without records raises one too.
"""

from __future__ import annotations

import csv
import operator
import re
from array import array
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice

from ..errors import InputError
from . import fields as f
from .fields import COLUMNS, At, CustodyRecord
from .parse import Stream, blank_row

COPY_COLUMNS = ("underlying", "custodian", "account", "settled_shares", "in_transit_shares", "as_of", "attestor",
                "ripcord", "ripcord_details", "source", "payload_sha256")
_PLAIN_SHARES = re.compile(r"\d{1,40}(?:\.\d{0,38})?|\.\d{1,38}")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FILTER_BITS = 1 << 27
_FILTER_MASK = _FILTER_BITS - 1
_SLOW = ("", -1)  # an as_of the fast path leaves to the checks
_CACHE_LIMIT = 100_000  # distinct texts remembered (names, times); cleared when full


def escape(value: str) -> str:
    """A value as a field of COPY text format."""
    return value.translate(_ESCAPES)


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH


class Encoder:
    """Turns one payload's records into COPY chunks; remembers places and key hashes."""

    def __init__(self, stream: Stream, source: str, sha256: str) -> None:
        self.stream = stream
        self.name = stream.csv.ctx.name if stream.csv is not None else ""
        self.tail = f"\t{escape(source)}\t{sha256}\n"
        self.lines = array("q")  # CSV line of each record (-1: a JSON record, see paths)
        self.paths: dict[int, str] = {}  # record index -> JSON path
        self.keys = array("q")
        self.filter = bytearray(_FILTER_BITS >> 3)
        self.suspects: set[int] = set()
        self.count = 0

    def chunks(self, size: int) -> Iterator[bytes]:
        """COPY text of ``size`` records at a time."""
        if self.stream.csv is not None:
            yield from self._csv_chunks(size)
        else:
            records = self.stream.records
            while chunk := list(islice(records, size)):
                yield "".join([self._record(at, r) for at, r in chunk]).encode()
        if not self.count:
            raise InputError(f"{self.name or 'payload'}: no custody records")

    def place(self, index: int) -> str:
        """Where record ``index`` (0-based, payload order) was: ``line N`` or a JSON path."""
        line = self.lines[index]
        return f"line {line}" if line >= 0 else self.paths[index]

    def note(self, key: int) -> None:
        """Remember a record's key hash: a filter of 2^27 bits; a hash whose bit was already
        set is a suspect (one in a hundred for 1.5M records), settled by :meth:`clashes`."""
        bit = key & _FILTER_MASK
        byte, mask = bit >> 3, 1 << (bit & 7)
        if self.filter[byte] & mask:
            self.suspects.add(key)
        else:
            self.filter[byte] |= mask
        self.keys.append(key)

    def clashes(self) -> bool:
        """True when two records may share a key (equal 64-bit hashes): check in the database."""
        if not self.suspects:
            return False
        seen: set[int] = set()
        for key in self.keys:
            if key in self.suspects:
                if key in seen:
                    return True
                seen.add(key)
        return False

    def _record(self, at: At, r: CustodyRecord) -> str:
        """A checked record (slow path, JSON formats) as one COPY line."""
        if at.line is None:
            self.paths[self.count] = at.path
        self.lines.append(at.line if at.line is not None else -1)
        u, c, a = escape(r.underlying), escape(r.custodian), escape(r.account)
        self.note(hash((u, c, a, _micros(r.as_of))))
        self.count += 1
        details = "\\N" if r.ripcord_details is None else escape(r.ripcord_details)
        return (f"{u}\t{c}\t{a}\t{r.settled_shares}\t{r.in_transit_shares}\t{r.as_of.isoformat()}\t"
                f"{escape(r.attestor)}\t{'t' if r.ripcord else 'f'}\t{details}{self.tail}")

    def _csv_chunks(self, size: int) -> Iterator[bytes]:
        rows = self.stream.csv
        assert rows is not None
        ctx = rows.ctx
        reader, names = rows.open()
        width = len(names)
        pick = operator.itemgetter(*(names.index(c) for c in COLUMNS))
        known, plain, tail = ctx.known, _PLAIN_SHARES.fullmatch, self.tail
        safe: dict[str, str] = {}  # text -> escaped text
        times: dict[str, tuple[str, int]] = {}  # as_of text -> (ISO, micros), or _SLOW
        lines, note, out = self.lines, self.note, []
        try:
            for row in reader:
                if len(row) != width or not all(row):
                    if blank_row(row, width, ctx.name, reader.line_num):
                        continue
                    out.append(self._record(At(ctx.name, reader.line_num), f.row_record(
                        At(ctx.name, reader.line_num), dict(zip(names, row, strict=True)), ctx)))
                else:
                    u, c, a, s, t, when, att, rc = pick(row)
                    u, c, a, s, t, att = u.strip(), c.strip(), a.strip(), s.strip(), t.strip(), att.strip()
                    underlying = known.get(u.upper()) if known else u
                    moment = times.get(when)
                    if moment is None:
                        if len(times) >= _CACHE_LIMIT:
                            times.clear()
                        moment = times[when] = self._time(when)
                    if (moment is _SLOW or not (underlying and c and a and att) or rc.strip().lower() != "false"
                            or not plain(s) or not plain(t)):
                        at = At(ctx.name, reader.line_num)
                        out.append(self._record(at, f.row_record(at, dict(zip(names, row, strict=True)), ctx)))
                    else:
                        if len(safe) >= _CACHE_LIMIT:
                            safe.clear()
                        ue = safe.get(underlying) or safe.setdefault(underlying, escape(underlying))
                        ce = safe.get(c) or safe.setdefault(c, escape(c))
                        ae = safe.get(a) or safe.setdefault(a, escape(a))
                        te = safe.get(att) or safe.setdefault(att, escape(att))
                        lines.append(reader.line_num)
                        note(hash((ue, ce, ae, moment[1])))
                        self.count += 1
                        out.append(f"{ue}\t{ce}\t{ae}\t{s}\t{t}\t{moment[0]}\t{te}\tf\t\\N{tail}")
                if len(out) >= size:
                    yield "".join(out).encode()
                    out = []
        except csv.Error as exc:
            raise At(ctx.name, reader.line_num).fail(None, f"not valid CSV: {exc}") from None
        if out:
            yield "".join(out).encode()

    def _time(self, text: str) -> tuple[str, int]:
        """A plain, acceptable as_of as (ISO text, microseconds since 1970); _SLOW: the checks say."""
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            return _SLOW
        ctx = self.stream.csv.ctx if self.stream.csv is not None else None
        if moment.tzinfo is None or (ctx is not None and ctx.not_after is not None and moment > ctx.not_after):
            return _SLOW
        return moment.isoformat(), _micros(moment)
