"""`indexer custody pull URL`: the issuer API shape fetched over real HTTP from a local server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devnet.anvil import free_port
from devnet.deploy import World
from indexer.custody.importer import pull
from indexer.errors import InputError, ServiceUnreachable
from tests.conftest import cli
from tests.custody_desk import Desk, iso


class IssuerApi(BaseHTTPRequestHandler):
    """GET /<path> answers `answers[path]` as JSON; anything else is 404."""

    answers: dict[str, object] = {}

    def do_GET(self) -> None:
        body = self.answers.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404, "no such symbol")
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # keep the test output quiet
        pass


@pytest.fixture
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), IssuerApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def desk(world: World, world_config: Path, database_url: str, tmp_path: Path) -> Desk:
    return Desk(world, world_config, database_url, tmp_path)


async def test_pull_imports_one_record_per_holding(desk: Desk, api: str) -> None:
    t = desk.now() + 10
    desk.mint("TSLAx", 30, at=t)
    await desk.index()
    answer = {"symbol": "TSLAx", "timestamp": iso(t), "sharesHeld": "30", "circulatingSupply": "30",
              "holdings": [{"provider": "Clearstream", "quantity": "20.5", "symbol": "TSLA"},
                           {"provider": "Interactive Brokers", "quantity": 9.5, "symbol": "TSLA"}]}
    IssuerApi.answers = {"v1/TSLAx": answer,
                         "bad": {**answer, "holdings": [{"provider": "X", "quantity": "-1"}]}}
    done = cli("custody", "pull", "--allow-http", f"{api}/v1/TSLAx", config=desk.config)
    assert done.returncode == 0, done.stderr
    assert "2 record(s) added (issuer" in done.stdout
    rows = await desk.fetch("SELECT * FROM custody_attestations ORDER BY id")
    assert [(r["underlying"], r["custodian"], r["account"], r["settled_shares"], r["attestor"]) for r in rows] == [
        ("TSLA", "Clearstream", "TSLAx", Decimal("20.5"), "issuer API"),
        ("TSLA", "Interactive Brokers", "TSLAx", Decimal("9.5"), "issuer API")]
    # the source is stored as the masked URL: a feed's path may carry its key
    assert rows[0]["source"] == f"issuer:{api}/v1/***" and rows[0]["as_of"].timestamp() == t
    assert (await desk.backing("TSLA"))["status"] == "backed"
    again = await pull(desk.settings, f"{api}/v1/TSLAx", allow_http=True)
    assert again.duplicate and again.records == 2
    assert len(await desk.fetch("SELECT 1 FROM custody_attestations")) == 2

    with pytest.raises(InputError, match=r"/\*\*\* \$\.holdings\[0\]\.quantity: \"-1\" is negative"):
        await pull(desk.settings, allow_http=True, url=f"{api}/bad")
    with pytest.raises(InputError, match="HTTP 404"):
        await pull(desk.settings, allow_http=True, url=f"{api}/v1/GMEx")
    with pytest.raises(ServiceUnreachable):
        await pull(desk.settings, f"http://127.0.0.1:{free_port()}/v1/TSLAx", allow_http=True)
    refused = cli("custody", "pull", "--allow-http", f"{api}/v1/NVDAx", config=desk.config)
    assert refused.returncode == 2 and "HTTP 404" in refused.stderr
    assert len(await desk.fetch("SELECT 1 FROM custody_attestations")) == 2
