"""Custody input at volume and from hostile sources: streaming all or nothing, dates from the
future, numbers too long for Python's int, JSON that is not records, size limits, and
`custody pull` refusing plain http, redirects to another host, oversized bodies and bad TLS.
Every refusal: exit 2, one line, nothing stored."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devnet.deploy import World
from indexer.custody.importer import CHUNK_RECORDS
from indexer.custody.parse import COLUMNS, Context, parse
from indexer.errors import InputError
from tests.conftest import cli
from tests.custody_desk import Desk, iso

FIXTURES = Path(__file__).parent / "fixtures"
KNOWN = {"TSLA": "TSLA", "TSLAX": "TSLA"}
HEADER = ",".join(COLUMNS)
NOW = datetime(2026, 12, 1, tzinfo=UTC)
CTX = Context("custody.csv", KNOWN, not_after=NOW + timedelta(minutes=5))


def row(account: str = "acc-1", shares: str = "10", as_of: str = "2026-11-30T00:00:00Z") -> str:
    return f"TSLA,Clearstream,{account},{shares},0,{as_of},TNF,false"


def fails(data: bytes, ctx: Context = CTX, fmt: str | None = None) -> str:
    with pytest.raises(InputError) as info:
        parse(data, ctx, fmt)
    return str(info.value)


# -- pure --------------------------------------------------------------------------------------


def test_as_of_from_the_future_is_refused_and_the_distant_past_accepted() -> None:
    message = fails(f"{HEADER}\n{row()}\n{row('acc-2', as_of='2099-01-01T00:00:00Z')}\n".encode())
    assert message.startswith('custody.csv line 3: as_of "2099-01-01T00:00:00Z" is in the future (after 2026-12-01')
    soon = (NOW + timedelta(minutes=4)).isoformat()
    early = row("b", as_of="1990-01-01T00:00:00Z")
    assert len(parse(f"{HEADER}\n{row(as_of=soon)}\n{early}".encode(), CTX).records) == 2
    feed = {"timestamp": int((NOW + timedelta(hours=1)).timestamp()), "ripcord": False,
            "accounts": [{"accountName": "A", "totalReserve": "1"}]}
    assert "$.timestamp: " in fails(json.dumps(feed).encode(), Context("feed", KNOWN, underlying="TSLA",
                                                                      not_after=CTX.not_after))


@pytest.mark.parametrize("digits", [79, 5000])
def test_numbers_longer_than_78_digits_are_refused_by_name(digits: int) -> None:
    big = "1" * digits
    assert fails(f"{HEADER}\n{row(shares=big)}".encode()) == (
        f'custody.csv line 2: settled_shares "{big[:37]}..." has more than 78 digits')
    doc = [{"underlying": "TSLA", "custodian": "C", "account": "a", "settled_shares": "1", "in_transit_shares": 0,
            "as_of": "2026-11-30T00:00:00Z", "attestor": "T", "ripcord": False}]
    doc[0]["settled_shares"] = "@"  # replaced by a bare JSON number below
    text = json.dumps(doc).replace('"@"', big)
    assert fails(text.encode()).startswith('custody.csv $[0].settled_shares: "1111')
    assert "more than 78 digits" in fails(text.replace(big, big + ".5").encode())


@pytest.mark.parametrize(("text", "kind"), [("null", "null"), ('"custody"', "a string"), ("42", "a number"),
                                            ("true", "a boolean"), ("  1e999\n", "a number")])
def test_json_scalar_is_named_as_json(text: str, kind: str) -> None:
    assert fails(text.encode()) == (f"custody.csv: the file is JSON {kind}, not custody records (expected CSV with "
                                    "a header line, or a JSON array or object)")


def test_a_quoted_csv_header_is_still_csv() -> None:
    quoted = ",".join(f'"{c}"' for c in COLUMNS)
    assert len(parse(f"{quoted}\n{row()}".encode(), CTX).records) == 1


# -- through the command line ------------------------------------------------------------------


@pytest.fixture
def desk(world: World, world_config: Path, database_url: str, tmp_path: Path) -> Desk:
    return Desk(world, world_config, database_url, tmp_path)


async def nothing_stored(desk: Desk) -> None:
    rows = await desk.fetch("SELECT 'a' FROM custody_attestations UNION ALL SELECT 'i' FROM custody_imports "
                            "UNION ALL SELECT 'c' FROM custody_accounts")
    assert rows == []


def refused(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


async def test_bad_last_record_of_a_multi_chunk_file_leaves_nothing(desk: Desk, tmp_path: Path) -> None:
    desk.mint("TSLAx", 10)
    await desk.index()
    t = desk.now()
    rows = [row(f"acc-{i}", str(i), iso(t)) for i in range(3 * CHUNK_RECORDS)]
    path = tmp_path / "big.csv"
    path.write_text("\n".join([HEADER, *rows, row("last", '"12,5"', iso(t))]) + "\n")
    refused(cli("custody", "import", str(path), config=desk.config),
            f'line {len(rows) + 2}: settled_shares "12,5" is not a number')
    await nothing_stored(desk)
    path.write_text("\n".join([HEADER, *rows, row("acc-7", "1", iso(t))]) + "\n")  # a duplicate chunks apart
    refused(cli("custody", "import", str(path), config=desk.config),
            f"line {len(rows) + 2}: a second record for TSLA Clearstream/acc-7 at", "(first at line 9)")
    await nothing_stored(desk)
    path.write_text("\n".join([HEADER, *rows[:5]]) + "\n")
    done = cli("custody", "import", "-", config=desk.config, stdin=path.read_text())
    assert done.returncode == 0 and "5 record(s) added (csv" in done.stdout, done.stderr
    assert len(await desk.fetch("SELECT 1 FROM custody_attestations")) == 5


async def test_future_date_big_number_json_scalar_and_size_limit_exit_2(desk: Desk, tmp_path: Path) -> None:
    desk.mint("TSLAx", 10)
    await desk.index()
    t = desk.now()
    cases = [
        (f"{HEADER}\n{row(as_of=iso(t))}\n{row('b', as_of='2099-01-01T00:00:00Z')}\n", ["line 3: as_of", "future"]),
        (f"{HEADER}\n{row(shares='9' * 5000)}\n", ["line 2: settled_shares", "more than 78 digits"]),
        ('[{"underlying": "TSLA", "custodian": "C", "account": "a", "settled_shares": ' + "7" * 5000 + "}]",
         ["$[0].settled_shares", "more than 78 digits"]),
        ("null", ["JSON null, not custody records"]),
        ('"TSLA,1"', ["JSON a string"]),
    ]
    for i, (text, fragments) in enumerate(cases):
        path = tmp_path / f"bad-{i}.txt"
        path.write_text(text)
        refused(cli("custody", "import", str(path), config=desk.config), str(path), *fragments)
    small = tmp_path / "small.toml"
    small.write_text(desk.config.read_text().replace("[custody]", "[custody]\nmax_payload_mb = 1"))
    large = tmp_path / "large.csv"
    large.write_text(HEADER + "\n" + "\n".join(row(f"a{i}", as_of=iso(t)) for i in range(20_000)) + "\n")
    assert large.stat().st_size > 1 << 20
    refused(cli("custody", "import", str(large), config=small), "larger than 1 MB ([custody] max_payload_mb)")
    refused(cli("custody", "import", "-", config=small, stdin=large.read_text()), "stdin: larger than 1 MB")
    await nothing_stored(desk)


# -- custody pull ------------------------------------------------------------------------------


class Feed(BaseHTTPRequestHandler):
    """/ok: an issuer answer; /elsewhere: a redirect to another host; /same: a redirect to /ok;
    /huge: 2 MB of JSON."""

    answer: dict[str, object] = {}
    port = 0

    def do_GET(self) -> None:
        if self.path.startswith("/elsewhere"):
            self._redirect(f"http://localhost:{self.port}/ok")
        elif self.path.startswith("/same"):
            self._redirect("/ok")
        elif self.path.startswith("/ok"):
            self._send(json.dumps(self.answer).encode())
        elif self.path.startswith("/huge"):
            self._send(b"[" + b" " * (2 << 20) + b"]")
        else:
            self.send_error(404)

    def _redirect(self, where: str) -> None:
        self.send_response(302)
        self.send_header("Location", where)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()  # no Content-Length: the cap must hold while reading
        self.wfile.write(data)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(server: ThreadingHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def feed() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Feed)
    Feed.port = server.server_address[1]
    for port in serve(server):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def tls_feed(tmp_path: Path) -> Iterator[str]:
    """The same feed over https with a self-signed certificate (a test-only key and certificate
    for 127.0.0.1, valid until 2126, kept in tests/fixtures so no tool is needed to make one)."""
    import ssl

    key, cert = FIXTURES / "tls_test_key.pem", FIXTURES / "tls_test_cert.pem"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Feed)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    for port in serve(server):
        yield f"https://127.0.0.1:{port}"


async def test_pull_refusals_are_one_masked_line(desk: Desk, feed: str, tls_feed: str, tmp_path: Path) -> None:
    desk.mint("TSLAx", 10)
    await desk.index()
    Feed.answer = {"symbol": "TSLAx", "timestamp": iso(desk.now()), "holdings": [{"provider": "C", "quantity": "10"}]}
    secret = "?apikey=SECRET123456"
    refused(cli("custody", "pull", f"{feed}/ok{secret}", config=desk.config), "plain http refused", "apikey=***")
    refused(cli("custody", "pull", "--allow-http", f"{feed}/elsewhere{secret}", config=desk.config),
            "redirect to http://localhost:", "refused (another host or scheme)")
    small = tmp_path / "small.toml"
    small.write_text(desk.config.read_text().replace("[custody]", "[custody]\nmax_payload_mb = 1"))
    refused(cli("custody", "pull", "--allow-http", f"{feed}/huge", config=small), "larger than 1 MB")
    refused(cli("custody", "pull", f"{tls_feed}/ok{secret}", config=desk.config), "apikey=***", "certificate")
    refused(cli("custody", "pull", "ftp://example.com/x", config=desk.config), "is not an https URL")
    for done in (cli("custody", "pull", f"{feed}/ok{secret}", config=desk.config),
                 cli("custody", "pull", f"{tls_feed}/ok{secret}", config=desk.config)):
        assert "SECRET123456" not in done.stderr + done.stdout
    await nothing_stored(desk)
    done = cli("custody", "pull", "--allow-http", f"{feed}/same", config=desk.config)
    assert done.returncode == 0 and "1 record(s) added (issuer" in done.stdout, done.stderr


async def test_every_spelling_is_stored_as_the_checked_parser_reads_it(desk: Desk, tmp_path: Path) -> None:
    """The bulk path writes plain rows from their own text and sends the rest through the
    checks: both must store exactly what `parse` returns, whatever the spelling."""
    desk.mint("TSLAx", 10)
    await desk.index()
    t = desk.now() - 3600
    zoned = datetime.fromtimestamp(t, UTC).astimezone(timezone(timedelta(hours=2))).isoformat()
    lines = [
        row("plain", "10", iso(t)),
        row("dot-end", "1.", iso(t)), row("dot-start", ".5", iso(t)), row("zeros", "007.250", iso(t)),
        f" tslax , Clearstream , padded , 3 , 1 ,{iso(t)}, TNF , FALSE ",
        f'TSLA,"Clear,stream","tab\there",4,0,{iso(t)},"back\\slash",false',
        f'TSLA,Clearstream,"two\nlines",5,0,{iso(t)},TNF,false',
        f"TSLA,Clearstream,cord,6,0,{iso(t - 60)},TNF,true",
        f"TSLA,Clearstream,zoned,7,0,{zoned},TNF,false",
        "", f"TSLA,Clearstream,after-blank,8,0,{iso(t)},TNF,false",
    ]
    path = tmp_path / "spellings.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    done = cli("custody", "import", str(path), config=desk.config)
    assert done.returncode == 0, done.stderr
    expected = parse(path.read_bytes(), Context("x", KNOWN)).records
    stored = await desk.fetch("SELECT underlying, custodian, account, settled_shares, in_transit_shares, as_of, "
                              "attestor, ripcord FROM custody_attestations ORDER BY id")
    assert [tuple(r) for r in stored] == [
        (e.underlying, e.custodian, e.account, e.settled_shares, e.in_transit_shares, e.as_of, e.attestor, e.ripcord)
        for e in expected]
    assert len(stored) == len(lines) - 1


async def test_a_json_duplicate_is_named_by_its_path(desk: Desk, tmp_path: Path) -> None:
    desk.mint("TSLAx", 10)
    await desk.index()
    at = iso(desk.now() - 60)
    record = {"underlying": "TSLA", "custodian": "C", "account": "a", "settled_shares": "1", "in_transit_shares": "0",
              "as_of": at, "attestor": "TNF", "ripcord": False}
    path = tmp_path / "dup.json"
    path.write_text(json.dumps([record, {**record, "account": "b"}, record]))
    refused(cli("custody", "import", str(path), config=desk.config),
            "$[2]: a second record for TSLA C/a at", "(first at $[0])")
    await nothing_stored(desk)
