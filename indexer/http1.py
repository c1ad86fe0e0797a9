"""HTTP/1.1 POSTs over plain http://: the wire under rpc.py (node -> http1.py -> rpc.py -> chain.py).

Most nodes are reached without TLS (a local node, anvil, one in the same cluster); for them this
client stands in for aiohttp, whose import alone (it builds TLS contexts) was half of what
``indexer status`` and ``backfill`` loaded. rpc.py keeps aiohttp for https://.

``Client.post`` sends a JSON body and reads the whole answer over a pool of keep-alive connections
(one per concurrent request): a Content-Length body in place into one bytearray (orjson and msgspec
read it as it is), a chunked one chunk by chunk, else up to the close. Failure modes:
``AnswerTooLarge`` past ``max_body`` bytes (before reading, from Content-Length); ``TimeoutError``
past ``timeout`` for the whole exchange; ``OSError`` for the network (refused, reset, unknown host),
and its subclass ``HttpError`` for a bad URL or an answer not HTTP/1.x or cut short. A request that
fails on a reused idle connection before any byte of answer (the server closed it meanwhile) is
sent once more on a fresh connection; no other request is ever sent twice.
"""

from __future__ import annotations

import asyncio
import base64
from typing import NamedTuple, cast
from urllib.parse import unquote, urlsplit

from .errors import AnswerTooLarge

_MAX_HEAD = 64 * 1024  # status line and headers
_SCRATCH = 256 * 1024  # what one read takes when not reading a body in place
_KEEP_IDLE = 64  # idle connections kept per host


class HttpError(OSError):
    """The server's answer is not HTTP/1.x that this client reads, or it ended early."""


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytearray


_Target = tuple[str, int, bytes]  # host, port, the request's head up to the Content-Length value


def _target(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or 80
    except ValueError:
        host = None
    if not host or parts.scheme.lower() != "http":
        raise HttpError("the URL is not http://host[:port]/path")
    netloc = parts.netloc.rpartition("@")[2]
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"POST {path} HTTP/1.1", f"Host: {netloc}", "User-Agent: xstock-indexer",
             "Content-Type: application/json"]
    if parts.username is not None or parts.password is not None:
        secret = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
        lines.append("Authorization: Basic " + base64.b64encode(secret).decode())
    return host, port, ("\r\n".join(lines) + "\r\nContent-Length: ").encode()


class _Connection(asyncio.BufferedProtocol):
    """One socket. Bytes land in ``inbox`` through a scratch buffer, or straight into the buffer of
    a body of known length; the reader waits on ``_waiter`` for enough of them (``more``)."""

    def __init__(self, scratch: memoryview) -> None:
        self.transport: asyncio.Transport | None = None
        self.inbox = bytearray()
        self.received = 0  # bytes read since the request was sent
        self.ended: Exception | None = None  # why the connection ended (HttpError at a clean EOF)
        self._scratch = scratch  # the client's, shared: each read is copied out of it at once
        self._target: memoryview | None = None
        self._filled = 0
        self._want = 0
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._scratch if self._target is None else self._target[self._filled:]

    def buffer_updated(self, nbytes: int) -> None:
        self.received += nbytes
        if self._target is None:
            self.inbox += self._scratch[:nbytes]
        else:
            self._filled += nbytes
            self._target = None if self._filled == len(self._target) else self._target
        if self._target is None and len(self.inbox) >= self._want and self._waiter and not self._waiter.done():
            self._waiter.set_result(None)

    def eof_received(self) -> bool:
        self.connection_lost(None)
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = self.ended or exc or HttpError("the server closed the connection")
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def more(self, want: int) -> None:
        """Wait for ``want`` bytes in ``inbox`` and the end of a read in place; the connection's end raises."""
        self._want = want
        while len(self.inbox) < want or self._target is not None:
            if self.ended is not None:
                raise self.ended
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def exactly(self, size: int) -> bytearray:
        """The next ``size`` bytes, read in place into one buffer."""
        have = len(self.inbox)
        if have >= size:
            body = self.inbox[:size]
            del self.inbox[:size]
            return body
        body = bytearray(size)
        body[:have] = self.inbox
        self.inbox.clear()
        self._target, self._filled = memoryview(body), have
        try:
            await self.more(0)
        except HttpError:
            raise HttpError(f"the server closed the connection after {self._filled} of {size} bytes") from None
        finally:
            self._target = None
        return body

    async def chunked(self, max_body: int) -> bytearray:
        """A chunked body; every chunk already in ``inbox`` is taken in one pass."""
        body, inbox, pos = bytearray(), self.inbox, 0
        while True:
            end = inbox.find(b"\r\n", pos)
            if end < 0:
                if len(inbox) - pos > 1024:
                    raise HttpError("chunk size line is too long")
                del inbox[:pos]
                pos = 0
                await self.more(len(inbox) + 1)
                continue
            if (size := _chunk_size(inbox[pos:end])) == 0:
                del inbox[:end]  # "\r\n", trailers if any, "\r\n"
                await self.block()
                return body
            if len(body) + size > max_body:
                raise AnswerTooLarge(f"answer is over {max_body} bytes", None)
            stop = end + 2 + size
            if len(inbox) < stop + 2:  # the chunk is not all in: wait for it, not for every read
                del inbox[:pos]
                stop, pos = stop - pos, 0
                await self.more(stop + 2)
                continue
            if not inbox.startswith(b"\r\n", stop):
                raise HttpError("a chunk is not followed by CRLF")
            body += memoryview(inbox)[end + 2:stop]
            pos = stop + 2

    async def block(self, status: bool = False) -> bytes:
        """``inbox`` up to its first empty line: a head (``status``: starting HTTP/, or fail at once) or trailers."""
        while True:
            end = self.inbox.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.inbox[:end])
                del self.inbox[:end + 4]
                return head
            if len(self.inbox) > _MAX_HEAD:
                raise HttpError(f"answer head is over {_MAX_HEAD} bytes")
            if status and not self.inbox.startswith(b"HTTP/"[:len(self.inbox)]):
                raise HttpError(f"not an HTTP answer: {bytes(self.inbox[:40])!r}")
            await self.more(len(self.inbox) + 1)

    async def to_end(self, max_body: int) -> bytearray:
        """A body framed by the end of the connection (the server's clean close)."""
        try:
            while len(self.inbox) <= max_body:
                await self.more(len(self.inbox) + 1)
        except HttpError:
            return self.inbox[:]
        raise AnswerTooLarge(f"answer is over {max_body} bytes", None)

    async def exchange(self, request: bytes, max_body: int) -> tuple[Answer, bool]:
        """Send ``request``, read its answer; also whether the connection may carry another."""
        assert self.transport is not None
        self.received = 0
        self.transport.write(request)
        status = 100
        while status < 200:  # 1xx: an interim answer, the final one follows
            status, headers, version = _head(await self.block(status=True))
        tokens = headers.get("connection", "").lower()
        reusable = "close" not in tokens if version == b"HTTP/1.1" else "keep-alive" in tokens
        if status in (204, 304):
            body = bytearray()
        elif "transfer-encoding" in headers:
            if headers["transfer-encoding"].lower().rpartition(",")[2].strip() != "chunked":
                raise HttpError(f"answer in {headers['transfer-encoding']} transfer encoding")
            body = await self.chunked(max_body)
        elif (length := headers.get("content-length")) is not None:
            if not (length.isascii() and length.isdigit()):
                raise HttpError(f"bad Content-Length {length[:20]!r}")
            if int(length) > max_body:
                raise AnswerTooLarge(f"answer of {length} bytes is over {max_body}", int(length))
            body = await self.exactly(int(length))
        else:
            body, reusable = await self.to_end(max_body), False
        return Answer(status, headers, body), reusable and self.ended is None and not self.inbox

    def close(self) -> None:
        self.connection_lost(self.ended or HttpError("the connection was closed by this client"))
        if self.transport is not None:
            self.transport.close()


def _chunk_size(line: bytearray) -> int:
    try:
        size = int(line, 16)  # the common line: hex digits alone
    except ValueError:  # extensions (";name=value"), or not a size
        digits = line.partition(b";")[0].strip()
        size = int(digits, 16) if digits and not digits.lstrip(b"0123456789abcdefABCDEF") else -1
    if size < 0:
        raise HttpError(f"bad chunk size {bytes(line[:20])!r}")
    return size


def _head(head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and HTTP version of an answer's head."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    if not version.startswith(b"HTTP/1.") or not rest[:3].isdigit() or rest[3:4] not in (b"", b" "):
        raise HttpError(f"bad status line {lines[0][:40]!r}")
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            raise HttpError(f"bad header line {line[:40]!r}")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return int(rest[:3]), headers, version


class Client:
    """Keep-alive HTTP/1.1 connections to the hosts of http:// URLs; ``timeout`` bounds a whole
    exchange (connecting, sending, reading the answer). Close it with :meth:`close`."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._targets: dict[str, _Target] = {}
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._scratch = memoryview(bytearray(_SCRATCH))

    async def post(self, url: str, body: bytes, max_body: int) -> Answer:
        """POST ``body`` (JSON) to ``url``; the answer, whatever its status."""
        host, port, head = self._targets.get(url) or self._targets.setdefault(url, _target(url))
        request = b"%s%d\r\n\r\n%s" % (head, len(body), body)
        async with asyncio.timeout(self.timeout):
            conn = self._take_idle((host, port))
            if conn is not None:
                try:
                    return await self._exchange(conn, (host, port), request, max_body)
                except OSError:
                    if conn.received:  # the server read the request: never sent twice
                        raise
                    # closed by the server while idle (no byte of answer): once more on a fresh one
            _, conn = await asyncio.get_running_loop().create_connection(lambda: _Connection(self._scratch), host, port)
            return await self._exchange(conn, (host, port), request, max_body)

    def _take_idle(self, origin: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()  # the most recently used: the likeliest to be still open
            if conn.ended is None and not conn.inbox:
                return conn
            conn.close()
        return None

    async def _exchange(self, conn: _Connection, origin: tuple[str, int], request: bytes, max_body: int) -> Answer:
        self._busy.add(conn)
        try:
            answer, reusable = await conn.exchange(request, max_body)
        except BaseException:
            conn.close()
            raise
        finally:
            self._busy.discard(conn)
        idle = self._idle.setdefault(origin, [])
        if reusable and len(idle) < _KEEP_IDLE:
            idle.append(conn)
        else:
            conn.close()
        return answer

    async def close(self) -> None:
        """Close every connection, idle or in use (a request in flight then fails)."""
        for conn in [*self._busy, *(c for idle in self._idle.values() for c in idle)]:
            conn.close()
        self._idle, self._busy = {}, set()
        await asyncio.sleep(0)  # the transports release their sockets on the next loop turn
