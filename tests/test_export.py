"""`indexer export holders`: CSV and Parquet files that equal balanceOf at the block, written by
a login that holds only the analyst role, and one-line errors for what a person can get wrong."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pyarrow.parquet as pq
import pytest

from tests.analyst_world import Scenario, scenario  # noqa: F401  (fixture)
from tests.conftest import cli, execute

LOGIN = "analyst_export_test"


@pytest.fixture
async def analyst_config(scenario: Scenario, tmp_path: Path) -> AsyncIterator[Path]:  # noqa: F811
    """The scenario's config, logging in as a role that was only granted analyst."""
    await execute(scenario.database_url, f"DROP ROLE IF EXISTS {LOGIN}; "
                                         f"CREATE ROLE {LOGIN} LOGIN PASSWORD 'pw' IN ROLE analyst")
    parts = urlsplit(scenario.database_url)
    url = urlunsplit(parts._replace(netloc=f"{LOGIN}:pw@" + parts.netloc.rpartition("@")[2]))
    config = tmp_path / "analyst.toml"
    config.write_text(scenario.config.read_text().replace(scenario.database_url, url))
    yield config
    await execute(scenario.database_url, f"DROP ROLE {LOGIN}")


def expected(s: Scenario, symbol: str, block: int) -> list[tuple[str, int, int]]:
    token = s.alpha.all_tokens[symbol]
    touched = sorted(s.sim_alpha.summary.touched[symbol])
    shares = {h: v for h, v in s.a.shares(token, touched, block).items() if v > 0}
    balances = {h: b for h, b in s.a.balances(token, list(shares), block).items() if b > 0}  # dust is not held
    return sorted(((h, shares[h], balances[h]) for h in balances), key=lambda x: (-x[2], x[0]))


def test_csv_at_a_past_block_equals_balance_of(scenario: Scenario, analyst_config: Path,  # noqa: F811
                                               tmp_path: Path) -> None:
    block = scenario.split_block - 1
    done = cli("export", "holders", "--token", "TSLAx", "--chain", "alpha", "--block", str(block),
               "--output", "-", config=analyst_config)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert list(rows[0]) == ["chain_id", "token", "symbol", "block_number", "holder", "shares", "balance_raw",
                             "balance"]
    assert [(r["holder"], int(r["shares"]), int(r["balance_raw"])) for r in rows] == expected(scenario, "TSLAx", block)
    assert all(Decimal(r["balance"]) == Decimal(r["balance_raw"]).scaleb(-18) for r in rows)
    assert {(r["chain_id"], r["symbol"], r["block_number"]) for r in rows} == {
        (str(scenario.alpha.chain_id), "TSLAx", str(block))}
    assert f"{len(rows)} holders of TSLAx on alpha at block {block}" in done.stderr


def test_parquet_at_the_indexed_block_by_default(scenario: Scenario, analyst_config: Path,  # noqa: F811
                                                 tmp_path: Path) -> None:
    head = scenario.a.head()
    done = cli("export", "holders", "--token", "SPYx", "--chain", "alpha", "--format", "parquet",
               config=analyst_config, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    path = tmp_path / f"holders-SPYx-alpha-{head}.parquet"
    assert path.name in done.stdout
    table = pq.read_table(path)
    assert str(table.schema.field("balance_raw").type) == "decimal128(38, 0)"
    assert str(table.schema.field("balance").type) == "decimal128(38, 18)"
    assert table.schema.metadata[b"block_number"] == str(head).encode()
    rows = table.to_pylist()
    assert [(r["holder"], int(r["shares"]), int(r["balance_raw"])) for r in rows] == expected(scenario, "SPYx", head)
    assert all(r["balance"] == r["balance_raw"].scaleb(-18) for r in rows)


def test_a_token_by_address_to_a_file(scenario: Scenario, analyst_config: Path,  # noqa: F811
                                              tmp_path: Path) -> None:
    out = tmp_path / "usdt0.csv"
    done = cli("export", "holders", "--token", scenario.alpha.all_tokens["USDT0"].upper().replace("0X", "0x"),
               "--chain", "alpha", "-o", str(out), config=analyst_config)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    head = scenario.a.head()
    assert [(r["holder"], int(r["balance_raw"])) for r in rows] == [
        (h, b) for h, _, b in expected(scenario, "USDT0", head)]
    assert {r["token"] for r in rows} == {scenario.alpha.all_tokens["USDT0"]}  # found by its address, any case
    assert all(Decimal(r["balance"]) == Decimal(r["balance_raw"]).scaleb(-18) for r in rows)


@pytest.mark.parametrize(("args", "message"), [
    (["--token", "TSLAx"], "TSLAx is indexed on several chains: alpha (31337), beta (31338); choose one with --chain"),
    (["--token", "MSFTx"], "no indexed token 'MSFTx'; indexed: AAPLx, NVDAx, SPYx, TSLAx, USDT0"),
    (["--token", "TSLAx", "--chain", "gamma"], "no indexed token 'TSLAx' on chain gamma"),
    (["--token", "TSLAx", "--chain", "beta", "--block", "99999"], "block 99999 is past the indexed block"),
])
def test_mistakes_exit_2_with_one_line(scenario: Scenario, analyst_config: Path, args: list[str],  # noqa: F811
                                       message: str) -> None:
    done = cli("export", "holders", *args, config=analyst_config)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
