"""errors: the exception tree's exit codes, and secrets kept out of messages."""

from __future__ import annotations

import pytest

from indexer import errors
from indexer.errors import mask_secrets, mask_url

ALCHEMY_KEY = "AbCdEfGhIjKlMnOpQrStUvWxYz012345"
INFURA_KEY = "9aa3d95b3bc440fa88ea12eaa4456161"


@pytest.mark.parametrize(
    ("url", "secret", "kept"),
    [
        ("postgresql://indexer:s3cr3t-Pw@db.internal:5432/xstocks", "s3cr3t-Pw",
         ["postgresql://", "indexer", "db.internal:5432", "/xstocks"]),
        ("postgres://u:p%40ss%2Fword@10.0.0.5/db", "p%40ss%2Fword", ["u", "10.0.0.5", "/db"]),
        ("postgresql://:onlypassword@h:5432/db", "onlypassword", ["h:5432", "/db"]),
        (f"https://eth-mainnet.g.alchemy.com/v2/{ALCHEMY_KEY}", ALCHEMY_KEY, ["eth-mainnet.g.alchemy.com", "/v2/"]),
        (f"wss://eth-mainnet.g.alchemy.com/v2/{ALCHEMY_KEY}", ALCHEMY_KEY, ["wss://eth-mainnet.g.alchemy.com"]),
        (f"https://mainnet.infura.io/v3/{INFURA_KEY}", INFURA_KEY, ["mainnet.infura.io", "/v3/"]),
        (f"wss://mainnet.infura.io/ws/v3/{INFURA_KEY}", INFURA_KEY, ["mainnet.infura.io", "/ws/v3/"]),
        (f"https://rpc.ankr.com/eth/{INFURA_KEY}{INFURA_KEY}", INFURA_KEY, ["rpc.ankr.com", "/eth/"]),
        ("https://rpc.example.com/?apikey=SECRET123&chain=1", "SECRET123", ["rpc.example.com", "chain=1"]),
        ("https://rpc.example.com/rpc?api_key=SECRET123", "SECRET123", ["/rpc"]),
        ("https://rpc.example.com/?foo=1&key=SECRET123", "SECRET123", ["foo=1"]),
        ("https://rpc.example.com/?token=SECRET123", "SECRET123", ["rpc.example.com"]),
        ("postgresql://u@h/db?password=SECRET123&sslmode=require", "SECRET123", ["sslmode=require"]),
        ("https://user:SECRET123@rpc.example.com", "SECRET123", ["rpc.example.com"]),
        # keys shorter than 20 characters, in a path or a query of any name
        ("https://eth-mainnet.g.alchemy.com/v2/k3y8chars", "k3y8chars", ["/v2/"]),
        ("https://rpc.ankr.com/eth/abc123", "abc123", ["rpc.ankr.com/eth/"]),
        ("https://nd-123-456-789.p2pify.com/0a1b2c3d", "0a1b2c3d", ["nd-123-456-789.p2pify.com"]),
        ("https://black-frosty-sun.quiknode.pro/shortTok/", "shortTok", ["quiknode.pro/"]),
        ("https://eth-mainnet.blastapi.io/a1b2-c3d4", "a1b2-c3d4", ["eth-mainnet.blastapi.io"]),
        ("https://lb.drpc.org/ogrpc?network=ethereum&dkey=Zq9x", "Zq9x", ["network=ethereum", "dkey="]),
        ("https://rpc.example.com/?x-api=Zq9x", "Zq9x", ["x-api="]),
        ("https://rpc.example.com/rpc#frag-secret", "frag-secret", ["/rpc"]),
        ("https://u:pw@rpc.example.com/rpc", ":pw@", ["u:***@rpc.example.com/rpc"]),
    ],
)
def test_mask_url_hides_secrets(url: str, secret: str, kept: list[str]) -> None:
    masked = mask_url(url)
    assert secret not in masked
    assert "***" in masked
    for part in kept:
        assert part in masked, f"{part!r} lost from {masked!r}"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8545",
        "http://localhost:8545/",
        "ws://127.0.0.1:8546",
        "https://rpc.ankr.com/eth",
        "postgresql://postgres@127.0.0.1:5432/xstocks",
        "postgresql://127.0.0.1/xstocks?sslmode=disable",
    ],
)
def test_mask_url_leaves_plain_urls_intact(url: str) -> None:
    assert mask_url(url) == url


def test_unparseable_url_is_masked_whole() -> None:
    assert mask_url("http://[::1:8545/secret") == "***"


def test_mask_secrets_replaces_a_dsn_in_a_message() -> None:
    dsn = "postgresql://indexer:hunter2-Secret@db.internal:5432/xstocks"
    rpc = f"https://eth-mainnet.g.alchemy.com/v2/{ALCHEMY_KEY}"
    message = f"cannot connect to {dsn}: connection refused (rpc was {rpc})"
    masked = mask_secrets(message, [dsn, rpc, ""])
    assert "hunter2-Secret" not in masked and ALCHEMY_KEY not in masked
    assert masked.startswith("cannot connect to postgresql://indexer:***@db.internal:5432/xstocks: connection refused")


def test_mask_secrets_without_secrets_changes_nothing() -> None:
    assert mask_secrets("plain text", []) == "plain text"
    assert mask_secrets("plain text", [""]) == "plain text"


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (errors.ConfigError, 2),
        (errors.InputError, 2),
        (errors.LockHeld, 2),
        (errors.ServiceUnreachable, 2),
        (errors.ReorgTooDeep, 3),
        (errors.UnindexableLog, 5),
    ],
)
def test_exit_codes(cls: type[errors.IndexerError], code: int) -> None:
    assert cls.exit_code == code
    assert cls("x").exit_code == code
    assert issubclass(cls, errors.Fatal)


@pytest.mark.parametrize(
    "cls", [errors.RpcUnavailable, errors.RpcRangeTooLarge, errors.DatabaseUnavailable, errors.ChainMoved,
            errors.StateUnavailable, errors.NodeBehind]
)
def test_retryable_branch(cls: type[errors.IndexerError]) -> None:
    assert issubclass(cls, errors.Retryable)
    assert not issubclass(cls, errors.Fatal)


def test_rpc_error_carries_its_code() -> None:
    exc = errors.RpcError("eth_call: execution reverted", 3)
    assert (str(exc), exc.code) == ("eth_call: execution reverted", 3)
    assert errors.RpcError("x").code is None
    assert isinstance(exc, errors.Fatal)
