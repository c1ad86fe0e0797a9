"""``indexer export holders``: one token's holders at a block, as CSV or Parquet.

For people who work in spreadsheets (CSV) or notebooks (Parquet, through pyarrow: the
``parquet`` extra). It reads only the analyst surface (indexer_progress, token_supply,
holders_at), so a login that was granted the ``analyst`` role can run it, and it never migrates.

Columns: chain_id, token, symbol, block_number, holder, shares, balance_raw, balance; one row
per holder with a balance > 0 (no dust) at the end of the block, largest balance first. balance_raw equals
``balanceOf(holder)`` at that block. Amounts stay exact: CSV has plain decimal digits; Parquet
has decimal columns (decimal128 when every value fits 38 digits, else decimal256, else text).

Writing: ``--output -`` is stdout. A regular file (or a new path) is replaced atomically: a
temporary file beside it, renamed over it. Anything else (a symlink, a FIFO, a device such as
/dev/null, a file with several hard links) is opened and written through as it is, never
replaced, and its mode is left alone. CSV cells a spreadsheet would run as a formula (starting
with ``=``, ``+``, ``-``, ``@``, tab or CR) get a leading ``'``; the default file name keeps
to ``[A-Za-z0-9._-]`` whatever the symbol and chain are called.

Failure modes: ``InputError`` (exit 2) for an unknown token or chain, a symbol on several chains
without ``--chain``, a block past the indexed one, Parquet without pyarrow, or a path that
cannot be written.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .config import Settings
from .errors import InputError
from .store import Store

COLUMNS = ("chain_id", "token", "symbol", "block_number", "holder", "shares", "balance_raw", "balance")


@dataclass(frozen=True)
class Target:
    """The token to export, resolved from the analyst views."""

    chain_id: int
    chain: str
    token: str
    symbol: str
    decimals: int
    block: int


@dataclass(frozen=True)
class Export:
    target: Target
    rows: list[tuple[Any, ...]]
    fmt: str
    path: str  # "-" for stdout

    def summary(self) -> str:
        t = self.target
        where = "stdout" if self.path == "-" else self.path
        return f"{len(self.rows)} holders of {t.symbol} on {t.chain} at block {t.block} written to {where} ({self.fmt})"


async def export_holders(settings: Settings, token: str, block: int | None, fmt: str,
                         output: str | None, chain: str | None) -> Export:
    """Resolve the token, read its holders at ``block`` (default: its indexed block), write them."""
    if fmt == "parquet":
        _pyarrow()  # fail before touching the database
    store = await Store.open(settings.database_url, role="export")
    try:
        await store.check_schema()
        target = await resolve(store, token, block, chain)
        rows = [(target.chain_id, target.token, target.symbol, target.block, r["holder"], r["shares"],
                 r["balance_raw"], r["balance"])
                for r in await store.fetch(
                    "SELECT holder, shares, balance_raw, balance FROM holders_at($1, $2, $3) "
                    "ORDER BY balance_raw DESC, holder", target.chain_id, target.token, target.block)]
    finally:
        await store.close()
    path = output or default_name(target, fmt)
    data = to_csv(rows) if fmt == "csv" else to_parquet(rows, target)
    write(path, data)
    return Export(target, rows, fmt, path)


async def resolve(store: Store, token: str, block: int | None, chain: str | None) -> Target:
    rows = await store.fetch(
        """SELECT s.chain_id, coalesce(p.chain, s.chain_id::text) AS chain, s.token, s.symbol, s.decimals,
                  s.indexed_block
             FROM token_supply s LEFT JOIN indexer_progress p USING (chain_id)
            WHERE (s.symbol = $1 OR s.token = lower($1)) AND ($2::text IS NULL OR p.chain = $2)
            ORDER BY s.chain_id""", token, chain)
    if not rows:
        where = f" on chain {chain}" if chain else ""
        known = await store.fetch("SELECT DISTINCT symbol FROM token_supply ORDER BY symbol")
        raise InputError(f"no indexed token {token!r}{where}; indexed: "
                         f"{', '.join(r['symbol'] for r in known) or 'none yet'}")
    if len(rows) > 1:
        chains = ", ".join(f"{r['chain']} ({r['chain_id']})" for r in rows)
        raise InputError(f"{token} is indexed on several chains: {chains}; choose one with --chain NAME")
    r = rows[0]
    if block is not None and block > r["indexed_block"]:
        raise InputError(f"block {block} is past the indexed block {r['indexed_block']} of {r['symbol']} "
                         f"on {r['chain']}")
    return Target(r["chain_id"], r["chain"], r["token"], r["symbol"], r["decimals"],
                  r["indexed_block"] if block is None else block)


# ------------------------------------------------------------------------------------- formats


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def default_name(target: Target, fmt: str) -> str:
    """``holders-SYMBOL-CHAIN-BLOCK.FMT`` with every character outside [A-Za-z0-9._-] replaced by ``_``
    (a symbol comes from a contract: it must not choose the folder)."""
    return _UNSAFE_NAME.sub("_", f"holders-{target.symbol}-{target.chain}-{target.block}.{fmt}")


def _text(value: object) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    text = str(value)
    return "'" + text if isinstance(value, str) and text.startswith(_FORMULA_START) else text


def to_csv(rows: list[tuple[Any, ...]]) -> bytes:
    """RFC 4180 CSV with a header; amounts as plain decimal digits (no exponent, no rounding).
    Lines end in CRLF, so that a cell holding a CR is quoted too."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows([_text(v) for v in row] for row in rows)
    return buffer.getvalue().encode()


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise InputError("parquet export needs pyarrow: pip install 'xstock-indexer[parquet]'") from None
    return pyarrow


def decimal_type(values: list[Decimal], scale: int) -> Any:
    """The narrowest exact Arrow type for ``values`` at ``scale``: decimal128(38), decimal256(76),
    else text (a uint256 can have 78 digits)."""
    pa = _pyarrow()
    digits = max((len(format(abs(v).scaleb(scale).to_integral_value(), "f")) for v in values), default=1)
    if digits <= 38:
        return pa.decimal128(38, scale)
    if digits <= 76:
        return pa.decimal256(76, scale)
    return pa.string()


def to_parquet(rows: list[tuple[Any, ...]], target: Target) -> bytes:
    pa = _pyarrow()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in COLUMNS]
    types = [pa.int64(), pa.string(), pa.string(), pa.int64(), pa.string(),
             decimal_type(list(columns[5]), 0), decimal_type(list(columns[6]), 0),
             decimal_type(list(columns[7]), target.decimals)]
    arrays = [pa.array([_arrow_value(v, t, pa) for v in col], type=t) for col, t in zip(columns, types, strict=True)]
    schema = pa.schema([pa.field(n, t, nullable=False) for n, t in zip(COLUMNS, types, strict=True)],
                       metadata={"chain": target.chain, "chain_id": str(target.chain_id), "token": target.token,
                                 "symbol": target.symbol, "block_number": str(target.block),
                                 "decimals": str(target.decimals), "source": "xstock-indexer holders_at"})
    sink = io.BytesIO()
    pa.parquet.write_table(pa.Table.from_arrays(arrays, schema=schema), sink)
    return sink.getvalue()


def _arrow_value(value: Any, arrow_type: Any, pa: Any) -> Any:
    if isinstance(value, Decimal):
        return _text(value) if arrow_type == pa.string() else value
    return value


def write(path: str, data: bytes) -> None:
    """Write to stdout ("-"); replace a regular file (or create one) atomically; write through
    anything else. InputError when the path cannot be written."""
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        if info is not None and (not stat.S_ISREG(info.st_mode) or info.st_nlink > 1):
            with open(path, "wb") as out:  # a link, FIFO or device: ours to write, not to replace
                out.write(data)
            return
        _replace(path, data, None if info is None else stat.S_IMODE(info.st_mode))
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None


def _replace(path: str, data: bytes, mode: int | None) -> None:
    folder, name = os.path.split(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            if mode is None:  # a new file gets what open() would have given it
                umask = os.umask(0)
                os.umask(umask)
                mode = 0o666 & ~umask
            os.fchmod(out.fileno(), mode)  # our temporary file, not the user's path
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
