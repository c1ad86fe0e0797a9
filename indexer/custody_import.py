"""``indexer custody import`` and ``indexer custody pull``: custody payloads into the database.

Read the bytes (a file, ``-`` for stdin, or the issuer API over HTTP), validate the whole payload
with :mod:`custody` (known underlyings: the indexed tokens' underlyings and symbols, the config's
tokens and ``[custody.accounts]``, earlier records; unchecked while no token is indexed yet),
then store it in one transaction. A payload already imported (same SHA-256) adds nothing; it
only becomes the latest statement for the times it covers again (custody_imports.seq breaks the
tie between two records of one account and one as_of). Then the backing rules run
(:func:`reconcile.evaluate`).

Failures: InputError (exit 2) for an unreadable file, a bad payload, an HTTP error status;
ServiceUnreachable (exit 2) when the URL or the database cannot be reached.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg

from . import logs, reconcile
from .config import Settings
from .custody import Context, Payload, parse
from .errors import InputError, ServiceUnreachable, mask_url
from .models import underlying_of
from .store import Store

log = logs.get("custody")
PULL_TIMEOUT = 30.0


@dataclass(frozen=True)
class ImportReport:
    source: str
    format: str
    sha256: str
    records: int
    duplicate: bool  # the same payload was imported before: nothing added
    changes: Sequence[reconcile.FlagChange]

    def render(self) -> str:
        if self.duplicate:
            head = f"{self.source}: already imported (sha256 {self.sha256[:16]}), nothing added"
        else:
            head = f"{self.source}: {self.records} record(s) added ({self.format}, sha256 {self.sha256[:16]})"
        return head + ("\n" + reconcile.render_changes(self.changes) if self.changes else "")


async def import_file(settings: Settings, path: str, fmt: str | None = None,
                      underlying: str | None = None) -> ImportReport:
    """Import one custody file (format guessed when ``fmt`` is None), then evaluate the rules."""
    return await import_payload(settings, read(path), path, fmt, underlying)


async def pull(settings: Settings, url: str, underlying: str | None = None) -> ImportReport:
    """Fetch the issuer API answer at ``url`` and import it as format ``issuer``."""
    return await import_payload(settings, await fetch(url), mask_url(url), "issuer", underlying)


async def import_payload(settings: Settings, data: bytes, name: str, fmt: str | None,
                         underlying: str | None) -> ImportReport:
    store = await Store.open(settings.database_url, role="custody")
    try:
        await store.migrate()
        known = await known_underlyings(store, settings)
        if not known:
            log.warning("custody_names_unchecked", reason="no token indexed yet")
        payload = parse(data, Context(name, known, settings.custody.accounts, underlying), fmt)
        source = f"{payload.format}:{name}"

        async def save(conn: asyncpg.Connection) -> bool:
            return await _save(conn, payload, source)

        added = await store.transact("custody_import", save)
        log.info("custody_import", source=source, records=len(payload.records), duplicate=not added)
        changes = await reconcile.evaluate(store, settings)
    finally:
        await store.close()
    return ImportReport(source, payload.format, payload.sha256, len(payload.records), not added, changes)


def read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"custody file {path} not found") from None
    except OSError as exc:
        raise InputError(f"custody file {path}: cannot read: {exc.strerror or exc}") from None


async def fetch(url: str) -> bytes:
    """GET ``url`` (PULL_TIMEOUT seconds in all); a status other than 200 is InputError, no
    answer is ServiceUnreachable."""
    shown = mask_url(url)
    if not url.startswith(("http://", "https://")):
        raise InputError(f"custody pull: {shown} is not an http(s) URL")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PULL_TIMEOUT)) as session, \
                session.get(url, headers={"Accept": "application/json"}) as response:
            if response.status != 200:
                raise InputError(f"custody pull {shown}: HTTP {response.status} {response.reason or ''}".rstrip())
            return await response.read()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise ServiceUnreachable(f"custody pull {shown}: {type(exc).__name__}: {exc}".replace(url, shown)) from None


async def known_underlyings(store: Store, settings: Settings) -> dict[str, str]:
    """Accepted spellings (upper case) -> underlying: underlyings first, then token symbols.
    Empty (names taken as given) while no token is indexed: a factory's tokens are not known
    before its first batch, so nothing could be judged."""
    if not await store.fetch("SELECT 1 FROM tokens LIMIT 1"):
        return {}
    rows = await store.fetch(
        "SELECT underlying, symbol FROM tokens UNION SELECT underlying, underlying FROM custody_attestations")
    pairs = [(r["underlying"], r["symbol"]) for r in rows]
    pairs += [(t.underlying or underlying_of(t.symbol), t.symbol) for t in settings.tokens if t.symbol]
    pairs += [(t.underlying, t.underlying) for t in settings.tokens if t.underlying]
    pairs += [(u, u) for u in settings.custody.accounts.values()]
    known = {u.upper(): u for u, _ in pairs}
    for u, symbol in pairs:
        known.setdefault(symbol.upper(), u)
    return known


async def _save(conn: asyncpg.Connection, payload: Payload, source: str) -> bool:
    """Store the payload; False when it was imported before (then only its import order moves:
    it becomes the latest statement for the times it covers)."""
    fresh = await conn.fetchval(
        """INSERT INTO custody_imports AS i (payload_sha256, source, format, records) VALUES ($1, $2, $3, $4)
           ON CONFLICT (payload_sha256) DO UPDATE
           SET seq = nextval('custody_import_seq'), imports = i.imports + 1, last_imported_at = now()
           RETURNING xmax = 0""",
        payload.sha256, source, payload.format, len(payload.records))
    if not fresh:
        return False
    rs = payload.records
    await conn.execute(
        """INSERT INTO custody_attestations (underlying, custodian, account, settled_shares, in_transit_shares, as_of,
                                            attestor, ripcord, ripcord_details, source, payload_sha256)
           SELECT u.underlying, u.custodian, u.account, u.settled, u.in_transit, u.as_of, u.attestor, u.ripcord,
                  u.details, $10, $11
             FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::numeric[], $6::timestamptz[],
                         $7::text[], $8::boolean[], $9::text[]) WITH ORDINALITY
                  AS u(underlying, custodian, account, settled, in_transit, as_of, attestor, ripcord, details, n)
            ORDER BY u.n""",
        [r.underlying for r in rs], [r.custodian for r in rs], [r.account for r in rs],
        [r.settled_shares for r in rs], [r.in_transit_shares for r in rs], [r.as_of for r in rs],
        [r.attestor for r in rs], [r.ripcord for r in rs], [r.ripcord_details for r in rs],
        source, payload.sha256)
    return True
