"""config: TOML + environment -> Settings; every fault is one line of ConfigError naming the key."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from indexer.config import DEFAULT_DATABASE_URL, Settings, load_settings, parse_duration, parse_settings
from indexer.errors import ConfigError

TOKEN = "0x" + "a1" * 20
FACTORY = "0x" + "fa" * 20
SOURCE = "test.toml"
CHECKSUMMED = "0x9d275685dC284C8eB1C79f6ABA7a63Dc75ec890a"  # AAPLx in its EIP-55 form

DESIGN_EXAMPLE = f"""
[database]
url = "postgresql://postgres@127.0.0.1:5432/xstocks"

[[chain]]
name = "anvil"                 # unique; chain_id is read from the node and checked
rpc = ["http://127.0.0.1:8545"]  # first is primary, the rest are fallbacks; ws:// allowed
confirmations = 0              # index only blocks at least this deep
max_reorg_depth = 64

[[token]]                      # explicit token
chain = "anvil"
address = "{TOKEN}"
symbol = "TSLAx"               # optional: read from the contract when missing
underlying = "TSLA"            # optional: symbol without the trailing x
start_block = 0

[[factory]]                    # optional: every NewToken from this factory is followed too
chain = "anvil"
address = "{FACTORY}"
start_block = 0

[custody]
stale_after = "24h"
settlement_window = "1d"
"""


def base() -> dict[str, Any]:
    return {
        "database": {"url": "postgresql://postgres@127.0.0.1:5432/xstocks"},
        "chain": [{"name": "anvil", "rpc": ["http://127.0.0.1:8545"], "confirmations": 2}],
        "token": [{"chain": "anvil", "address": TOKEN, "symbol": "TSLAx"}],
        "factory": [{"chain": "anvil", "address": FACTORY}],
        "custody": {"stale_after": "24h", "settlement_window": "1d"},
        "daemon": {},
    }


def parse(raw: dict[str, Any], env: dict[str, str] | None = None) -> Settings:
    return parse_settings(raw, env or {}, source=SOURCE)


def fails(raw: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse(raw, env)
    return one_line(info.value)


def one_line(exc: ConfigError) -> str:
    message = str(exc)
    assert message and "\n" not in message, f"not one line: {message!r}"
    assert exc.exit_code == 2
    return message


def write(tmp_path: Path, text: str, name: str = "indexer.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the documented example -------------------------------------------------------------------


def test_design_example_parses(tmp_path: Path) -> None:
    settings = load_settings(str(write(tmp_path, DESIGN_EXAMPLE)), env={})
    assert settings.database_url == "postgresql://postgres@127.0.0.1:5432/xstocks"
    [chain] = settings.chains
    assert (chain.name, chain.rpc, chain.confirmations, chain.max_reorg_depth) == (
        "anvil", ("http://127.0.0.1:8545",), 0, 64
    )
    [token] = settings.tokens
    assert (token.chain, token.address, token.symbol, token.underlying, token.start_block) == (
        "anvil", TOKEN, "TSLAx", "TSLA", 0
    )
    [factory] = settings.factories
    assert (factory.chain, factory.address, factory.start_block) == ("anvil", FACTORY, 0)
    assert (settings.custody.stale_after, settings.custody.settlement_window) == (86400.0, 86400.0)
    assert settings.chain("anvil") is chain
    assert settings.source == str(tmp_path / "indexer.toml")


def test_minimal_config_gets_defaults() -> None:
    settings = parse({"chain": [{"name": "c", "rpc": "ws://127.0.0.1:8546"}]})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.chains[0].rpc == ("ws://127.0.0.1:8546",)
    assert settings.tokens == () and settings.factories == ()
    assert settings.custody.stale_after == 86400.0


def test_unknown_chain_name_lookup_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse(base()).chain("mainnet")
    assert "mainnet" in one_line(info.value)


# --- every fault: one line that names the key -------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def set_in(section: str, key: str, value: object, index: int | None = 0) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        table = raw[section] if index is None else raw[section][index]
        table[key] = value
    return mutate


def add_token(**fields: object) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        raw["token"].append({"chain": "anvil", "address": TOKEN, **fields})
    return mutate


def add_chain(**fields: object) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        raw["chain"].append({"rpc": ["http://127.0.0.1:9545"], **fields})
    return mutate


def top_level(key: str, value: object) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        raw[key] = value
    return mutate


FAULTS: list[tuple[str, Mutation, list[str]]] = [
    ("unknown top-level key", top_level("databse", {"url": "x"}), ["databse"]),
    ("unknown top-level scalar", top_level("log_level", "debug"), ["log_level"]),
    ("unknown key in database", set_in("database", "user", "x", index=None), ["database.user"]),
    ("unknown key in chain", set_in("chain", "confirmation", 3), ["chain[0].confirmation"]),
    ("unknown key in token", set_in("token", "decimals", 18), ["token[0].decimals"]),
    ("unknown key in factory", set_in("factory", "symbol", "X"), ["factory[0].symbol"]),
    ("unknown key in custody", set_in("custody", "stale", "1h", index=None), ["custody.stale"]),
    ("short address", set_in("token", "address", "0x1234"), ["token[0].address", "0x1234"]),
    ("non-hex address", set_in("token", "address", "0x" + "g" * 40), ["token[0].address"]),
    ("address without 0x", set_in("token", "address", "ab" * 21), ["token[0].address"]),
    ("address without 0x, 40 digits", set_in("token", "address", "ab" * 20), ["token[0].address"]),
    ("address too long", set_in("token", "address", "0x" + "ab" * 21), ["token[0].address"]),
    ("address with a trailing newline", set_in("token", "address", TOKEN + "\n"), ["token[0].address"]),
    ("address not a string", set_in("token", "address", 1234), ["token[0].address"]),
    ("missing token address", lambda raw: raw["token"][0].pop("address"), ["token[0].address"]),
    ("bad factory address", set_in("factory", "address", "0xfa"), ["factory[0].address"]),
    ("token on a missing chain", set_in("token", "chain", "mainnet"), ["token[0].chain", "mainnet"]),
    ("factory on a missing chain", set_in("factory", "chain", "bsc"), ["factory[0].chain", "bsc"]),
    ("duplicate chain name", add_chain(name="anvil"), ["chain", "name", "anvil"]),
    ("duplicate token", add_token(), ["token[1].address", TOKEN]),
    ("duplicate token, other case", add_token(address=TOKEN.upper().replace("0X", "0x")), ["token[1].address"]),
    ("negative confirmations", set_in("chain", "confirmations", -1), ["chain[0].confirmations"]),
    ("string confirmations", set_in("chain", "confirmations", "5"), ["chain[0].confirmations"]),
    ("bool confirmations", set_in("chain", "confirmations", True), ["chain[0].confirmations"]),
    ("float confirmations", set_in("chain", "confirmations", 1.5), ["chain[0].confirmations"]),
    ("zero max_reorg_depth", set_in("chain", "max_reorg_depth", 0), ["chain[0].max_reorg_depth"]),
    ("negative start_block", set_in("token", "start_block", -5), ["token[0].start_block"]),
    ("bad duration", set_in("custody", "stale_after", "24x", index=None), ["custody.stale_after", "24x"]),
    ("bad window", set_in("custody", "settlement_window", "1 fortnight", index=None), ["custody.settlement_window"]),
    ("negative duration", set_in("custody", "stale_after", -1, index=None), ["custody.stale_after"]),
    ("bool duration", set_in("custody", "stale_after", True, index=None), ["custody.stale_after"]),
    ("rpc not a URL", set_in("chain", "rpc", ["127.0.0.1:8545"]), ["chain[0].rpc"]),
    ("rpc fallback not a URL", set_in("chain", "rpc", ["http://a:1", "localhost"]), ["chain[0].rpc"]),
    ("rpc empty", set_in("chain", "rpc", []), ["chain[0].rpc"]),
    ("rpc missing", lambda raw: raw["chain"][0].pop("rpc"), ["chain[0].rpc"]),
    ("rpc a number", set_in("chain", "rpc", 8545), ["chain[0].rpc"]),
    ("chain without a name", lambda raw: raw["chain"][0].pop("name"), ["chain[0].name"]),
    ("chain as a table", top_level("chain", {"name": "anvil"}), ["chain"]),
    ("no chains", top_level("chain", []), ["chain"]),
    ("metrics port above 65535", set_in("daemon", "metrics_port", 70000, index=None), ["daemon.metrics_port", "70000"]),
    ("metrics port 0", set_in("daemon", "metrics_port", 0, index=None), ["daemon.metrics_port"]),
    ("metrics port negative", set_in("daemon", "metrics_port", -1, index=None), ["daemon.metrics_port"]),
    ("metrics port a string", set_in("daemon", "metrics_port", "9100", index=None), ["daemon.metrics_port"]),
    ("database not postgres", set_in("database", "url", "mysql://x@h/db", index=None), ["database.url"]),
]


@pytest.mark.parametrize(("mutate", "names"), [(m, n) for _, m, n in FAULTS], ids=[f[0] for f in FAULTS])
def test_fault_is_one_line_naming_the_key(mutate: Mutation, names: list[str]) -> None:
    raw = copy.deepcopy(base())
    mutate(raw)
    message = fails(raw)
    assert message.startswith(SOURCE), message
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"


def test_second_chain_errors_name_their_index() -> None:
    raw = base()
    raw["chain"].append({"name": "bsc", "rpc": ["https://bsc.example"], "confirmations": "deep"})
    assert "chain[1].confirmations" in fails(raw)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "indexer.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(str(path), env={})
    assert str(path) in one_line(info.value)


def test_missing_default_file_names_it_and_says_how_to_point_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={})
    message = one_line(info.value)
    assert "indexer.toml" in message and "INDEXER_CONFIG" in message


@pytest.mark.parametrize(
    "text",
    ['[database\nurl = "x"\n', "[[chain]]\nname = anvil\n", 'a = "unterminated\n', "x = 1\nx = 2\n"],
    ids=["open-bracket", "bare-value", "open-string", "duplicate-key"],
)
def test_invalid_toml_names_the_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text, "broken.toml")
    with pytest.raises(ConfigError) as info:
        load_settings(str(path), env={})
    message = one_line(info.value)
    assert str(path) in message and "TOML" in message


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[database]\nurl = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(str(path), env={})
    assert str(path) in one_line(info.value)


# --- the environment --------------------------------------------------------------------------


def test_database_url_env_overrides_the_file() -> None:
    url = "postgresql://indexer:pw@db.internal:5432/prod"
    assert parse(base(), {"DATABASE_URL": url}).database_url == url
    assert parse(base(), {}).database_url == base()["database"]["url"]


def test_bad_database_url_env_is_a_config_error() -> None:
    assert "postgresql://" in fails(base(), {"DATABASE_URL": "sqlite:///x.db"})


def test_rpc_url_env_overrides_a_one_chain_config() -> None:
    settings = parse(base(), {"RPC_URL": "https://eth.example/v2/key"})
    [chain] = settings.chains
    assert chain.rpc == ("https://eth.example/v2/key",)
    assert (chain.name, chain.confirmations) == ("anvil", 2)  # everything else kept
    assert settings.tokens[0].chain == "anvil"


def test_rpc_url_env_with_several_chains_is_an_error() -> None:
    raw = base()
    raw["chain"].append({"name": "bsc", "rpc": ["https://bsc.example"]})
    message = fails(raw, {"RPC_URL": "https://eth.example"})
    assert "RPC_URL" in message
    assert len(parse(raw, {}).chains) == 2


def test_rpc_url_env_must_be_a_url() -> None:
    assert "RPC_URL" in fails(base(), {"RPC_URL": "127.0.0.1:8545"})


def test_indexer_config_env_is_used_without_an_explicit_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, DESIGN_EXAMPLE, "from-env.toml")
    settings = load_settings(None, env={"INDEXER_CONFIG": str(path)})
    assert settings.source == str(path)
    assert settings.tokens[0].address == TOKEN


def test_explicit_path_wins_over_indexer_config(tmp_path: Path) -> None:
    explicit = write(tmp_path, DESIGN_EXAMPLE, "explicit.toml")
    settings = load_settings(str(explicit), env={"INDEXER_CONFIG": str(tmp_path / "missing.toml")})
    assert settings.source == str(explicit)


def test_indexer_config_pointing_nowhere_names_that_path(tmp_path: Path) -> None:
    path = tmp_path / "gone.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={"INDEXER_CONFIG": str(path)})
    assert str(path) in one_line(info.value)


def test_default_path_is_indexer_toml_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, DESIGN_EXAMPLE)
    assert load_settings(None, env={}).tokens[0].symbol == "TSLAx"


def test_load_applies_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, DESIGN_EXAMPLE)
    env = {"DATABASE_URL": "postgresql://u@h/other", "RPC_URL": "http://10.0.0.1:8545"}
    settings = load_settings(str(path), env=env)
    assert settings.database_url == "postgresql://u@h/other"
    assert settings.chains[0].rpc == ("http://10.0.0.1:8545",)


# --- normalisation ----------------------------------------------------------------------------


def test_addresses_are_lowercased() -> None:
    raw = base()
    raw["token"][0]["address"] = CHECKSUMMED
    raw["factory"][0]["address"] = "0x" + "FA" * 20
    settings = parse(raw)
    assert settings.tokens[0].address == CHECKSUMMED.lower()
    assert settings.factories[0].address == "0x" + "fa" * 20


def test_a_mixed_case_address_with_a_wrong_checksum_is_refused() -> None:
    raw = base()
    wrong = CHECKSUMMED[:-1] + CHECKSUMMED[-1].swapcase()  # one letter's case flipped
    raw["token"][0]["address"] = wrong
    message = fails(raw)
    assert "token[0].address" in message and "EIP-55 checksum" in message and wrong in message


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("24h", 86400.0), ("1d", 86400.0), ("90s", 90.0), ("1.5h", 5400.0), ("30m", 1800.0), ("2w", 1209600.0),
     ("45", 45.0), (" 2h ", 7200.0), (3600, 3600.0), (0.5, 0.5), (0, 0.0)],
)
def test_durations(value: object, seconds: float) -> None:
    raw = base()
    raw["custody"] = {"stale_after": value, "settlement_window": value}
    custody = parse(raw).custody
    assert (custody.stale_after, custody.settlement_window) == (seconds, seconds)
    assert parse_duration(value, "here") == seconds


@pytest.mark.parametrize("value", ["24x", "h", "", "1.5.2h", "-1h", "24 hours", None, [1]])
def test_bad_durations_name_where(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(value, "custody.stale_after")
    assert "custody.stale_after" in one_line(info.value)


def test_secrets_lists_every_url() -> None:
    raw = base()
    raw["chain"][0]["rpc"] = ["https://a.example/key1", "wss://b.example/key2"]
    settings = parse(raw, {"DATABASE_URL": "postgresql://u:pw@h/db"})
    assert settings.secrets() == ["postgresql://u:pw@h/db", "https://a.example/key1", "wss://b.example/key2"]


def test_eip55_check_agrees_with_eth_utils() -> None:
    """The config's own EIP-55 check (eth_hash only, for start-up) against eth_utils."""
    import random

    from eth_utils import to_checksum_address

    from indexer.config_fields import address_problem

    local = random.Random(55)
    for _ in range(200):
        good = to_checksum_address("0x" + local.getrandbits(160).to_bytes(20, "big").hex())
        assert address_problem(good) is None
        letters = [i for i, c in enumerate(good) if i > 1 and c.isalpha()]
        if letters:
            i = local.choice(letters)
            bad = good[:i] + good[i].swapcase() + good[i + 1:]
            if bad[2:] not in (bad[2:].lower(), bad[2:].upper()):
                assert address_problem(bad) is not None
