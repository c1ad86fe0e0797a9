"""http1.py, the plain http:// client under rpc.py, against real local servers: an asyncio server
in this file answers each request as the test scripts it (chunks, Connection: close, a stall, an
idle close, a 429, garbage), and the https:// path through aiohttp against a TLS server."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from indexer import http1
from indexer.errors import AnswerTooLarge, RpcRangeTooLarge, RpcUnavailable
from indexer.rpc import RateLimited, Rpc, RpcTimedOut

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Seen:
    connection: int  # which of the server's connections carried it, from 0
    line: str  # the request line
    headers: dict[str, str]
    body: bytes


Answer = Callable[[Seen, asyncio.StreamWriter], Awaitable[bool]]  # False: close the connection


class Server:
    """An HTTP/1.1 server on a free port; ``answer`` writes each request's answer. ``requests``,
    ``connections`` and ``closed`` (connections ended) record what happened; ``settle`` waits for
    a condition on them, ``release`` frees answers that stall."""

    def __init__(self, answer: Answer, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.answer, self.host, self.tls = answer, host, tls
        self.requests: list[Seen] = []
        self.connections = self.closed = 0
        self.release = asyncio.Event()
        self._changed = asyncio.Condition()
        self._writers: list[asyncio.StreamWriter] = []

    def url(self, path: str = "/", userinfo: str = "") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{userinfo}{host}:{self.port}{path}"

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        for writer in self._writers:
            writer.close()
        self._server.close()

    async def settle(self, done: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(done)

    async def _note(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number, self.connections = self.connections, self.connections + 1
        self._writers.append(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                line, *rest = head.decode("latin-1").split("\r\n")
                headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in rest if h)}
                seen = Seen(number, line, headers, await reader.readexactly(int(headers.get("content-length", 0))))
                self.requests.append(seen)
                await self._note()
                if not await self.answer(seen, writer):
                    break
        finally:
            writer.close()
            self.closed += 1
            await self._note()


def reply(body: bytes, status: str = "200 OK", *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def result(seen: Seen, value: Any = "0x1") -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": orjson.loads(seen.body)["id"], "result": value})


async def echo(seen: Seen, writer: asyncio.StreamWriter) -> bool:
    writer.write(reply(result(seen)))
    return True


async def test_keep_alive_connections_are_reused_and_each_concurrent_request_gets_one() -> None:
    async def answer(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if len(server.requests) <= 4:  # the first four are answered once all four are in
            await server.settle(lambda: len(server.requests) >= 4)
        writer.write(reply(result(seen)))
        return True

    async with Server(answer) as server, Rpc([server.url()]) as rpc:
        assert await asyncio.gather(*(rpc.request("eth_chainId", []) for _ in range(4))) == ["0x1"] * 4
        for _ in range(5):
            assert await rpc.request("eth_chainId", []) == "0x1"
        assert server.connections == 4 and len(server.requests) == 9
        first = server.requests[0]
        assert first.line == "POST / HTTP/1.1" and first.headers["content-type"] == "application/json"
        await rpc.close()
        await server.settle(lambda: server.closed == 4)  # every connection closed by Rpc.close()


async def test_bodies_with_content_length_and_in_chunks() -> None:
    big = orjson.dumps(["0x" + "ab" * 32] * 50_000)  # 3.3 MB: many reads into one buffer
    pieces = [big[i:i + 7001] for i in range(0, len(big), 7001)]

    async def answer(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.body == b"length":
            writer.write(reply(big))
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i, piece in enumerate(pieces):
            size = f"{len(piece):X};ext=1" if i % 2 else f"{len(piece):x}"
            chunk = f"{size}\r\n".encode() + piece + b"\r\n"
            writer.write(chunk[:3])  # a size line split across reads
            await writer.drain()
            writer.write(chunk[3:])
        writer.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        return True

    async with Server(answer) as server:
        client = http1.Client(timeout=10)
        for body in (b"length", b"chunked", b"length", b"chunked"):
            got = await client.post(server.url(), body, max_body=len(big))
            assert got.status == 200 and got.body == big
        assert server.connections == 1  # trailers and bodies read to their end: the connection stays usable
        await client.close()


async def test_max_body_refuses_from_content_length_before_reading_and_while_reading_chunks() -> None:
    async def answer(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.body == b"length":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")  # and no body, ever
            await server.release.wait()
            return False
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"100\r\n" + b"x" * 256 + b"\r\n")
        writer.write(b"400\r\n" + b"y" * 1024 + b"\r\n0\r\n\r\n")
        return True

    async with Server(answer) as server:
        client = http1.Client(timeout=5)
        with pytest.raises(AnswerTooLarge) as refused:
            await client.post(server.url(), b"length", max_body=1000)
        assert refused.value.size == 1_000_000 and "1000000 bytes is over 1000" in str(refused.value)
        with pytest.raises(AnswerTooLarge) as refused:
            await client.post(server.url(), b"chunks", max_body=1000)
        assert refused.value.size is None
        assert (await client.post(server.url(), b"chunks", max_body=1280)).body == b"x" * 256 + b"y" * 1024
        await client.close()


async def test_connection_close_and_idle_closes_get_a_fresh_connection() -> None:
    async def answer(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.body == b"close":
            writer.write(reply(b"bye", "200 OK", "Connection: close"))
            return False
        writer.write(reply(b"ok"))
        return seen.body != b"idle"  # answered with keep-alive, then closed as an idle timeout does

    async with Server(answer) as server:
        client = http1.Client(timeout=5)
        assert (await client.post(server.url(), b"close", 100)).body == b"bye"
        assert (await client.post(server.url(), b"idle", 100)).body == b"ok"
        await server.settle(lambda: server.closed == 2)
        assert (await client.post(server.url(), b"again", 100)).body == b"ok"
        assert server.connections == 3 and len(server.requests) == 3  # nothing sent twice
        await client.close()


async def test_a_reused_connection_closed_before_answering_is_retried_once_fresh() -> None:
    """The server closes a kept-alive connection as the next request arrives (the race of an
    idle timeout): no byte of answer came, so it goes once more on a new connection. A request
    whose answer had begun, or that failed on a fresh connection, is never sent again."""
    async def answer(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.body == b"begun":
            writer.write(b"HTTP/1.1 200 OK\r\n")
            await writer.drain()
            return False
        if seen.body == b"fresh" or (seen.body, seen.connection) == (b"stale", 0):
            return False  # closed with no byte of answer
        writer.write(reply(b"ok"))
        return True

    async with Server(answer) as server:
        client = http1.Client(timeout=5)
        await client.post(server.url(), b"first", 100)
        assert (await client.post(server.url(), b"stale", 100)).body == b"ok"
        assert [(s.connection, s.body) for s in server.requests] == [(0, b"first"), (0, b"stale"), (1, b"stale")]
        with pytest.raises(http1.HttpError):
            await client.post(server.url(), b"begun", 100)  # on connection 1, reused: begun, not resent
        assert [s.body for s in server.requests].count(b"begun") == 1
        await client.close()
        with pytest.raises(http1.HttpError):
            await http1.Client(timeout=5).post(server.url(), b"fresh", 100)
        assert [s.body for s in server.requests].count(b"fresh") == 1


async def test_a_stalled_answer_times_out_and_its_connection_is_not_reused() -> None:
    async def answer(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if orjson.loads(seen.body)["method"] == "eth_stall":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")  # then nothing
            await server.release.wait()
            return False
        return await echo(seen, writer)

    async with Server(answer) as server, Rpc([server.url()], timeout=0.3, attempts=1) as rpc:
        with pytest.raises(RpcTimedOut, match="timed out"):
            await rpc.request("eth_stall", [])
        assert await rpc.request("eth_chainId", []) == "0x1"
        assert server.connections == 2


async def test_status_codes_are_classified_as_before() -> None:
    statuses = {"eth_limited": "429 Too Many Requests", "eth_big": "413 Payload Too Large",
                "eth_down": "502 Bad Gateway"}

    async def answer(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        method = orjson.loads(seen.body)["method"]
        if method in statuses:
            writer.write(reply(b"<html>no</html>", statuses[method], "Retry-After: 7"))
        else:
            writer.write(reply(result(seen)))
        return True

    errors: list[str] = []
    async with Server(answer) as server:
        async with Rpc([server.url()], attempts=1, throttle_budget=-1, on_error=errors.append) as rpc:
            with pytest.raises(RateLimited) as limited:  # over its budget of refusals at once
                await rpc.request("eth_limited", [])
        assert limited.value.retry_after == 7.0 and errors == ["http_429"]
        async with Rpc([server.url()], attempts=1, on_error=errors.append) as rpc:
            with pytest.raises(RpcRangeTooLarge, match="HTTP 413"):
                await rpc.request("eth_big", [])
            with pytest.raises(RpcUnavailable, match="HTTP 502"):
                await rpc.request("eth_down", [])
            assert errors == ["http_429", "http_502"]
            assert await rpc.request("eth_chainId", []) == "0x1"
        assert server.connections == 2  # one per client: every answer left its connection usable


async def test_userinfo_becomes_basic_auth_and_no_secret_is_printed() -> None:
    async def answer(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n")  # not HTTP; the connection stays open
        await server.release.wait()
        return False

    async with Server(answer) as server:
        url = server.url("/v2/KEY0123456789abcdef?chain=1&apikey=SECRET99", userinfo="alice:p%40ss@")
        async with Rpc([url], attempts=1, timeout=5) as rpc:
            with pytest.raises(RpcUnavailable) as failed:
                await rpc.request("eth_chainId", [])
        message = str(failed.value)
        assert "HttpError: not an HTTP answer: b'SSH-2.0" in message and "\n" not in message
        assert not any(secret in message for secret in ("p%40ss", "p@ss", "KEY0123", "SECRET99")), message
        seen = server.requests[0]
        assert seen.line == "POST /v2/KEY0123456789abcdef?chain=1&apikey=SECRET99 HTTP/1.1"
        assert seen.headers["authorization"] == "Basic " + base64.b64encode(b"alice:p@ss").decode()
        assert seen.headers["host"] == f"127.0.0.1:{server.port}"


async def test_refused_connections_and_bad_status_lines_are_one_masked_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        async with Rpc([f"http://127.0.0.1:{port}/v2/SECRETKEY0123456789"], attempts=1) as rpc:
            with pytest.raises(RpcUnavailable) as refused:
                await rpc.request("eth_chainId", [])
    assert "ConnectionRefusedError" in str(refused.value) and "/v2/***" in str(refused.value)
    assert "SECRETKEY" not in str(refused.value) and "\n" not in str(refused.value)

    async def answer(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 OK\r\n\r\n")
        return False

    async with Server(answer) as server, Rpc([server.url()], attempts=1) as rpc:
        with pytest.raises(RpcUnavailable, match=r"HttpError: bad status line b'HTTP/1.1 OK'"):
            await rpc.request("eth_chainId", [])


async def http10_and_interim(server: Server) -> None:
    """An HTTP/1.0 body read to the close, and a 100 Continue before the final answer."""
    client = http1.Client(timeout=5)
    try:
        assert (await client.post(server.url("/x"), b"old", 100)).body == b"until the close"
        assert (await client.post(server.url("/x"), b"new", 100)).body == b"final"
    finally:
        await client.close()


async def answer_old_and_interim(seen: Seen, writer: asyncio.StreamWriter) -> bool:
    if seen.body == b"old":
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil the close")
        return False
    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + reply(b"final"))
    return True


async def test_http10_bodies_to_the_close_and_interim_answers() -> None:
    async with Server(answer_old_and_interim) as server:
        await http10_and_interim(server)


async def test_an_ipv6_literal_host() -> None:
    """The same exchanges with a node at [::1]. Only this needs an IPv6 loopback, which a
    container may run without: there the test is skipped, and the URL form is still checked by
    test_url_parts."""
    server = Server(answer_old_and_interim, host="::1")
    try:
        await server.__aenter__()
    except OSError as exc:
        pytest.skip(f"this machine has no IPv6 loopback (::1): {exc}")
    try:
        await http10_and_interim(server)
        assert server.requests[0].headers["host"] == f"[::1]:{server.port}"
    finally:
        await server.__aexit__()


def test_url_parts() -> None:
    host, port, head = http1._target("http://node.internal/rpc?x=1")
    assert (host, port) == ("node.internal", 80)
    assert head.startswith(b"POST /rpc?x=1 HTTP/1.1\r\nHost: node.internal\r\n")
    host, port, head = http1._target("http://[::1]:8545/")
    assert (host, port) == ("::1", 8545) and b"\r\nHost: [::1]:8545\r\n" in head
    for bad in ("http://", "http://h:port/", "https://h/", "http://[::1/"):
        with pytest.raises(http1.HttpError):
            http1._target(bad)


async def test_https_goes_through_aiohttp() -> None:
    """Trusted (the test certificate as the only CA, in a child process: aiohttp reads the CAs
    when imported), an answer and the size guard; untrusted, one masked line."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(FIXTURES / "tls_test_cert.pem", FIXTURES / "tls_test_key.pem")
    script = """
import asyncio, sys
from indexer.errors import AnswerTooLarge
from indexer.rpc import Rpc
async def main():
    async with Rpc([sys.argv[1]], attempts=1) as rpc:
        print(await rpc.request("eth_chainId", []), "aiohttp" in sys.modules)
        try:
            await rpc.request("eth_chainId", [], max_body=10)
        except AnswerTooLarge as exc:
            print(exc.size)
asyncio.run(main())
"""
    async with Server(echo, tls=context) as server:
        env = {**os.environ, "SSL_CERT_FILE": str(FIXTURES / "tls_test_cert.pem")}
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", script, server.url("/v2/KEY0123456789abc"),
                                                     env=env, cwd=REPO, stdout=asyncio.subprocess.PIPE,
                                                     stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(child.communicate(), 60)
        assert child.returncode == 0, err.decode()
        assert out.decode().split() == ["0x1", "True", str(len(result(server.requests[0])))]
        async with Rpc([server.url("/v2/KEY0123456789abc")], attempts=1) as rpc:
            with pytest.raises(RpcUnavailable) as untrusted:
                await rpc.request("eth_chainId", [])
        assert "certificate" in str(untrusted.value) and "KEY0123" not in str(untrusted.value)
