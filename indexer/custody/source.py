"""Custody payload bytes, bounded and hashed before anyone parses them: a file, stdin, or an
HTTP answer (``indexer custody pull``).

A :class:`Source` is a readable binary file positioned at its start, its SHA-256 and size. A
regular file is hashed in place (read twice: once to hash, once to parse, so a payload imported
before is recognised without parsing it); stdin, a FIFO or an HTTP body is copied once to an
anonymous temporary file while it is hashed. Nothing is held in memory whole.

Bounds: a payload over ``limit`` bytes (``[custody] max_payload_mb``) is refused. HTTP: https
only unless ``allow_http``; redirects are followed only to the same scheme, host and port (at
most 5); a status other than 200 is refused; the body is read up to the limit.

Failures: InputError (exit 2) for a missing or unreadable file, a payload over the limit, a
refused URL, redirect or status; ServiceUnreachable (exit 2) when the URL cannot be reached
(connection, TLS, timeout). Messages are one line; URLs are masked.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from typing import IO
from urllib.parse import urljoin, urlsplit

import aiohttp

from ..errors import InputError, ServiceUnreachable, mask_url

PULL_TIMEOUT = 30.0
MAX_REDIRECTS = 5
_CHUNK = 1 << 20
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass
class Source:
    name: str
    file: IO[bytes]
    sha256: str
    size: int

    def close(self) -> None:
        self.file.close()


def _too_large(name: str, limit: int) -> InputError:
    return InputError(f"{name}: larger than {limit // (1 << 20)} MB ([custody] max_payload_mb)")


def open_file(path: str, limit: int) -> Source:
    """``path`` (``-``: stdin) as a Source."""
    if path == "-":
        return _spool("stdin", sys.stdin.buffer, limit)
    try:
        handle = open(path, "rb")  # the Source owns it
    except FileNotFoundError:
        raise InputError(f"custody file {path} not found") from None
    except OSError as exc:
        raise InputError(f"custody file {path}: cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            with handle:
                return _spool(path, handle, limit)
        if info.st_size > limit:
            raise _too_large(path, limit)
        digest = hashlib.sha256()
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
        handle.seek(0)
        return Source(path, handle, digest.hexdigest(), info.st_size)
    except OSError as exc:
        handle.close()
        raise InputError(f"custody file {path}: cannot read: {exc.strerror or exc}") from None
    except BaseException:
        handle.close()
        raise


class _Spool:
    """A temporary file (which the Source will own) with its digest and size, refused past
    ``limit`` bytes (``what`` names the input in that error); closed if filling it fails."""

    def __init__(self, what: str, limit: int) -> None:
        self.out = tempfile.TemporaryFile()
        self.digest, self.size, self.what, self.limit = hashlib.sha256(), 0, what, limit

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise _too_large(self.what, self.limit)
        self.digest.update(chunk)
        self.out.write(chunk)

    def source(self, name: str) -> Source:
        self.out.seek(0)
        return Source(name, self.out, self.digest.hexdigest(), self.size)

    def __enter__(self) -> _Spool:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self.out.close()


def _spool(name: str, stream: IO[bytes], limit: int) -> Source:
    with _Spool(name, limit) as spool:
        while chunk := stream.read(_CHUNK):
            spool.add(chunk)
        return spool.source(name)


def check_url(url: str, allow_http: bool) -> None:
    shown = mask_url(url)
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise InputError(f"custody pull: {shown} is not an https URL")
    if scheme == "http" and not allow_http:
        raise InputError(f"custody pull {shown}: plain http refused (the feed can open critical flags); "
                         "use https, or --allow-http for a local feed")


async def fetch(url: str, limit: int, allow_http: bool = False) -> Source:
    """GET ``url`` (PULL_TIMEOUT seconds in all) into a Source named by the masked URL."""
    check_url(url, allow_http)
    shown = mask_url(url)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PULL_TIMEOUT)) as session:
            current = url
            for _ in range(MAX_REDIRECTS + 1):
                async with session.get(current, allow_redirects=False,
                                       headers={"Accept": "application/json"}) as response:
                    if response.status in _REDIRECTS:
                        current = _follow(url, current, response.headers.get("Location", ""))
                        continue
                    if response.status != 200:
                        raise InputError(f"custody pull {shown}: HTTP {response.status} "
                                         f"{response.reason or ''}".rstrip())
                    return await _body(shown, response, limit)
            raise InputError(f"custody pull {shown}: more than {MAX_REDIRECTS} redirects")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        detail = str(exc).replace(url, shown) or type(exc).__name__
        raise ServiceUnreachable(f"custody pull {shown}: {type(exc).__name__}: {detail}".splitlines()[0]) from None


def _follow(origin: str, current: str, location: str) -> str:
    target = urljoin(current, location)
    a, b = urlsplit(origin), urlsplit(target)
    if (a.scheme, a.hostname, a.port) != (b.scheme, b.hostname, b.port):
        raise InputError(f"custody pull {mask_url(origin)}: redirect to {mask_url(target)} refused "
                         "(another host or scheme)")
    return target


async def _body(shown: str, response: aiohttp.ClientResponse, limit: int) -> Source:
    if response.content_length is not None and response.content_length > limit:
        raise _too_large(f"custody pull {shown}", limit)
    with _Spool(f"custody pull {shown}", limit) as spool:
        async for chunk in response.content.iter_chunked(1 << 16):
            spool.add(chunk)
        return spool.source(shown)
