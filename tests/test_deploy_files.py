"""Deployment files: docker-compose.yml, Dockerfile, deploy/ (Prometheus, Grafana, initdb) and
examples/. Without a Docker engine these checks are static (docker-compose config, structure,
cross-references) plus what runs here for real: the example configs through the config parser,
the devnet deploy step against anvil, and the Grafana SQL and initdb script against PostgreSQL.
"""

from __future__ import annotations

import csv
import importlib.resources
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
import pytest
import yaml

from devnet import deploy_cli
from devnet.anvil import Anvil
from devnet.postgres import pg_bin_dir
from indexer import metrics
from indexer.config import parse_settings
from tests.conftest import PgServer, cli, execute, run_sync

REPO = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = REPO / ".env.example"
DASHBOARD = REPO / "deploy/grafana/dashboards/xstock-indexer.json"
EXAMPLES = REPO / "examples"
SERVICES = {"postgres", "anvil", "deploy", "indexer", "prometheus", "grafana"}
SECRETS = ("POSTGRES_PASSWORD", "INDEXER_DB_PASSWORD", "DATABASE_URL", "GRAFANA_ADMIN_PASSWORD", "GRAFANA_DB_PASSWORD")
# The analyst relations of DESIGN.md Part 1: the only ones a dashboard may query.
ANALYST_RELATIONS = {"transfers", "holders", "token_supply", "custody_attestations", "backing",
                     "backing_flags"}
CHAIN_CODES = {"ethereum": "eth", "bsc": "bsc", "arbitrum": "arb", "optimism": "op", "ink": "ink",
               "mantle": "mantle", "xlayer": "xlayer", "hyperevm": "hyperevm"}
METRIC = re.compile(r"\bindexer_[a-z0-9_]+\b")


# ---------------------------------------------------------------------------- docker-compose


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`docker-compose --env-file F -f docker-compose.yml ARGS` with an environment that holds
    none of the stack's variables, so only `env_file` decides the interpolation."""
    binary = shutil.which("docker-compose")
    assert binary is not None, ("docker-compose is not installed: `make tools` installs it "
                                "(apt-get install docker-compose)")
    names = set(read_env_file(ENV_EXAMPLE))
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("COMPOSE_")}
    return subprocess.run([binary, "--env-file", str(env_file), "--project-directory", str(REPO),
                           "-f", str(REPO / "docker-compose.yml"), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The compose file as docker-compose resolves it with the .env.example values."""
    result = compose(ENV_EXAMPLE, "config")
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    loaded = yaml.safe_load(result.stdout)
    assert isinstance(loaded, dict)
    return loaded


def test_compose_config_is_valid(config: dict[str, Any]) -> None:
    assert set(config["services"]) == SERVICES


@pytest.mark.parametrize("secret", SECRETS)
def test_compose_needs_every_secret_from_the_env_file(secret: str, tmp_path: Path) -> None:
    values = read_env_file(ENV_EXAMPLE)
    del values[secret]
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    result = compose(env_file, "config")
    assert result.returncode != 0 and secret in result.stderr, result.stderr
    text = (REPO / "docker-compose.yml").read_text()
    assert not re.search(rf"\$\{{{secret}:?-", text), f"{secret} has a default in docker-compose.yml"
    assert read_env_file(ENV_EXAMPLE)[secret] not in text


def services_with_build(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in config["services"].items() if "build" in s}


def test_compose_build_context_and_dockerfile_exist(config: dict[str, Any]) -> None:
    built = services_with_build(config)
    assert set(built) == {"deploy", "indexer"}
    for service in built.values():
        context = Path(service["build"]["context"])
        assert context.is_dir(), context
        assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file()


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of every bind mount (short and long volume syntax)."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((Path(volume["source"]), volume["target"]))
        elif volume.startswith(("/", ".")):
            source, target = volume.split(":")[:2]
            mounts.append((REPO / source if source.startswith(".") else Path(source), target))
    return mounts


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """The file in the repository that `container_path` of `service` is mounted from."""
    for source, target in bind_mounts(service):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / os.path.relpath(container_path, target)
    raise AssertionError(f"{container_path} is not bind-mounted into the service")


def test_compose_mounted_files_exist(config: dict[str, Any]) -> None:
    services = config["services"]
    mounts = [m for s in services.values() for m in bind_mounts(s)]
    assert len(mounts) >= 4
    for source, target in mounts:
        assert source.exists(), f"{source} (mounted at {target}) is missing"
        assert REPO in source.resolve().parents, f"{source} is outside the repository"
    prometheus_config = next(a.split("=", 1)[1] for a in services["prometheus"]["command"]
                             if a.startswith("--config.file="))
    assert host_path(services["prometheus"], prometheus_config) == REPO / "deploy/prometheus.yml"
    grafana = services["grafana"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path(grafana, home) == DASHBOARD
    assert host_path(grafana, "/etc/grafana/provisioning/datasources").is_dir()
    assert (REPO / "deploy/postgres/initdb/10-grafana-reader.sh").is_file()


def test_compose_wiring(config: dict[str, Any]) -> None:
    services = config["services"]
    indexer, deploy = services["indexer"], services["deploy"]
    assert indexer["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert indexer["depends_on"]["deploy"]["condition"] == "service_completed_successfully"
    assert deploy["depends_on"]["anvil"]["condition"] == "service_healthy"
    assert "run" in indexer["command"]
    # the deploy step writes the config where the indexer reads it, with the scraped port
    out = deploy["command"][deploy["command"].index("--out") + 1]
    assert out == indexer["environment"]["INDEXER_CONFIG"]
    port = deploy["command"][deploy["command"].index("--metrics-port") + 1]
    assert deploy["command"][deploy["command"].index("--metrics-host") + 1] == "0.0.0.0"
    assert indexer["environment"]["METRICS_PORT"] == port
    assert any(str(p).endswith(f":{port}/tcp") or str(p).endswith(f":{port}") or
               (isinstance(p, dict) and str(p.get("target")) == port) for p in indexer["ports"])
    scrape = yaml.safe_load((REPO / "deploy/prometheus.yml").read_text())
    targets = [t for job in scrape["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"indexer:{port}"]
    anvil_command = " ".join(services["anvil"]["entrypoint"] + services["anvil"]["command"])
    assert anvil_command == "anvil --host 0.0.0.0 --chain-id 31337 --prune-history 20000"
    for name in ("postgres", "anvil", "prometheus", "grafana"):
        image = services[name]["image"]
        assert ":" in image and not image.endswith((":latest", ":stable", ":nightly")), image
        assert services[name]["healthcheck"]["test"], name


# ---------------------------------------------------------------------------- Grafana


def exposition_names() -> set[str]:
    """Series names /metrics can serve: Counter `x` is `x_total`, histograms add suffixes."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                "gauge": ("",), "summary": ("", "_count", "_sum", "_created")}
    return {family.name + suffix for family in metrics.REGISTRY.collect()
            for suffix in suffixes[family.type]}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def prometheus_targets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for p in dashboard["panels"] for t in p["targets"] if "expr" in t]


def sql_targets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for p in dashboard["panels"] for t in p["targets"] if "rawSql" in t]


def test_dashboard_structure(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"]
    panels = dashboard["panels"]
    assert isinstance(panels, list) and panels
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert isinstance(panel["type"], str) and panel["type"], panel
        assert isinstance(panel["title"], str) and panel["title"], panel
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no targets"
        for target in panel["targets"]:
            assert target.get("expr") or target.get("rawSql"), panel["title"]


def test_dashboard_queries_name_real_metrics(dashboard: dict[str, Any]) -> None:
    known = exposition_names()
    exprs = [t["expr"] for t in prometheus_targets(dashboard)]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used: set[str] = set()
    for expr in exprs:
        names = set(METRIC.findall(expr))
        assert names, f"{expr!r} names no indexer metric"
        assert names <= known, f"{expr!r}: unknown {sorted(names - known)}; metrics.py has {sorted(known)}"
        used |= names
    for needed in ("indexer_lag_blocks", "indexer_lag_seconds", "indexer_logs_total", "indexer_reorgs_total",
                   "indexer_batch_seconds_bucket", "indexer_rpc_errors_total"):
        assert needed in used, f"no panel shows {needed}"
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    assert "p50" in titles and "p99" in titles


def test_dashboard_datasources_are_provisioned(dashboard: dict[str, Any]) -> None:
    provisioned = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/datasources.yml").read_text())
    uids = {d["uid"]: d["type"] for d in provisioned["datasources"]}
    for panel in dashboard["panels"]:
        for ref in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
            assert uids.get(ref["uid"]) == ref["type"], (panel["title"], ref)
    providers = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/dashboards.yml").read_text())
    assert [p["options"]["path"] for p in providers["providers"]] == ["/etc/grafana/dashboards"]


def relations(sql: str) -> set[str]:
    return set(re.findall(r"\b(?:from|join)\s+([a-z_][a-z0-9_]*)", sql, flags=re.IGNORECASE))


@pytest.fixture
def reader_url(pg_server: PgServer, database_url: str) -> Iterator[str]:
    """The schema migrated into a fresh database, then deploy/postgres/initdb run against it as
    the postgres image would; yields a URL that logs in as the read-only role it creates."""
    # The role is cluster-wide: it is dropped again below, whichever server this runs on.
    schema = importlib.resources.files("indexer").joinpath("schema.sql").read_text()
    run_sync(execute(database_url, schema))
    parts = urlsplit(database_url)
    env = dict(os.environ, PATH=f"{pg_bin_dir()}{os.pathsep}{os.environ['PATH']}",
               PGHOST=parse_qs(parts.query).get("host", [parts.hostname or ""])[0],
               PGPORT=str(parts.port or 5432), POSTGRES_USER=parts.username or "postgres",
               POSTGRES_DB=parts.path.lstrip("/"), GRAFANA_DB_PASSWORD="it's \"quoted\"")
    script = REPO / "deploy/postgres/initdb/10-grafana-reader.sh"
    result = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    try:
        yield urlunsplit(parts._replace(netloc="grafana_reader@" + parts.netloc.rpartition("@")[2]))
    finally:
        run_sync(execute(database_url, "DROP OWNED BY grafana_reader; DROP ROLE grafana_reader"))


async def present(url: str, names: set[str]) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        return {r["relname"] for r in await conn.fetch(
            "SELECT relname FROM pg_class WHERE relname = ANY($1::text[])", list(names))}
    finally:
        await conn.close()


def test_dashboard_sql_runs_as_the_read_only_role(dashboard: dict[str, Any], reader_url: str) -> None:
    """Every SQL panel queries the analyst surface only; those whose views schema.sql already has
    run as the role Grafana logs in with, which cannot write."""
    queries = [t["rawSql"] for t in sql_targets(dashboard)]
    assert queries
    for sql in queries:
        assert relations(sql) and relations(sql) <= ANALYST_RELATIONS, sql
    existing = run_sync(present(reader_url, ANALYST_RELATIONS))
    runnable = [sql for sql in queries if relations(sql) <= existing]
    assert runnable, "no SQL panel runs on the current schema"
    for sql in runnable:
        run_sync(execute(reader_url, sql))
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        run_sync(execute(reader_url, "CREATE TABLE grafana_cannot_write (x int)"))


# ---------------------------------------------------------------------------- Dockerfile


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Instructions (KEYWORD, arguments) per stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = [[]]
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), rest.strip()))
    return stages


def test_dockerfile_final_stage() -> None:
    preamble, *stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: a builder, then the runtime image"
    args = dict(a.split("=", 1) for k, a in preamble if k == "ARG")
    final = dict(stages[-1])
    assert final["FROM"].replace("${PYTHON_IMAGE}", args.get("PYTHON_IMAGE", "")) == "python:3.11-slim"
    users = [a for k, a in stages[-1] if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must run as a non-root user"
    assert json.loads(final["ENTRYPOINT"]) == ["indexer"]
    assert json.loads(final["CMD"]) == ["run"]
    assert "9100" in final["EXPOSE"].split()
    healthcheck = final["HEALTHCHECK"]
    assert "python" in healthcheck and "/healthz" in healthcheck and "${METRICS_PORT}" in healthcheck
    assert "curl" not in healthcheck


def test_dockerfile_keeps_the_devnet_out_of_the_indexer_image() -> None:
    """The builder's wheel carries no devnet; the compose deploy step runs the `devnet` stage,
    which adds devnet/ and the contract artifacts beside the installed indexer; the final
    (indexer) stage copies neither."""
    _, builder, *rest = dockerfile_stages()
    assert "pip wheel" in " ".join(a for k, a in builder if k == "RUN")
    stages = {dict(s)["FROM"].split()[-1]: s for s in rest if " AS " in dict(s)["FROM"]}
    devnet = " ".join(a for k, a in stages["devnet"] if k == "COPY")
    assert "/src/devnet" in devnet and "/src/contracts/artifacts" in devnet
    final = " ".join(a for _, a in rest[-1])
    assert "devnet" not in final and "artifacts" not in final
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert not any("devnet" in pattern for pattern in package_data["indexer"])
    assert not (REPO / "indexer" / "devnet").exists()
    assert any((REPO / "contracts/artifacts").glob("*.json"))


def test_compose_deploy_step_runs_the_devnet_stage(config: dict[str, Any]) -> None:
    deploy = config["services"]["deploy"]
    assert deploy["build"]["target"] == "devnet"
    assert deploy["entrypoint"] == ["python", "-m", "devnet"] and deploy["command"][0] == "deploy"
    assert deploy["image"] != config["services"]["indexer"]["image"]


def test_dockerignore_keeps_secrets_out_and_sources_in() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".env", ".git", ".venv", "node_modules"} <= ignored
    for needed in ("indexer", "devnet", "pyproject.toml", "schema.sql", "contracts", "contracts/artifacts",
                   "examples"):
        assert needed not in ignored


# ---------------------------------------------------------------------------- examples


def issuer_list() -> dict[str, dict[str, str]]:
    with (EXAMPLES / "xstocks-evm.csv").open(newline="") as f:
        return {row["evm_address"]: row for row in csv.DictReader(f)}


def example_files() -> list[Path]:
    files = sorted(p for p in EXAMPLES.glob("*.toml") if p.name != "local.toml")
    assert {p.stem for p in files} >= {"ethereum", "bsc", "arbitrum"}
    return files


def test_examples_parse_and_copy_the_issuer_list() -> None:
    listed = issuer_list()
    for path in example_files():
        raw = tomllib.loads(path.read_text())
        settings = parse_settings(raw, {}, source=str(path))
        assert len(settings.chains) == 1 and settings.chains[0].chain_id is not None
        code = CHAIN_CODES[settings.chains[0].name]
        assert settings.tokens, path
        for token in raw["token"]:
            row = listed.get(token["address"])
            assert row is not None, f"{path.name}: {token['address']} is not in the issuer's list"
            assert row["symbol"] == token["symbol"], f"{path.name}: {token['address']} is {row['symbol']}"
            assert code in row["chains"].split("|"), f"{path.name}: {token['symbol']} is not listed on {code}"
        overridden = parse_settings(raw, {"RPC_URL": "https://rpc.example"}, source=str(path))
        assert overridden.chains[0].rpc == ("https://rpc.example",)
        assert "RPC_URL" in path.read_text() and "start_block" in path.read_text()


def test_ethereum_example_has_the_launch_names() -> None:
    symbols = {t["symbol"] for t in tomllib.loads((EXAMPLES / "ethereum.toml").read_text())["token"]}
    assert {"TSLAx", "AAPLx", "NVDAx", "SPYx", "QQQx", "GOOGLx", "MSFTx"} <= symbols
    chain = tomllib.loads((EXAMPLES / "ethereum.toml").read_text())["chain"][0]
    assert chain["chain_id"] == 1 and chain["confirmations"] >= 12


def test_examples_are_what_the_generator_writes() -> None:
    result = subprocess.run([sys.executable, str(EXAMPLES / "generate.py"), "--check"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


SHARED_CSV = REPO.parent / "shared/data/xstocks-evm.csv"


@pytest.mark.skipif(not SHARED_CSV.is_file(),
                    reason="the issuer's list in shared/ is only beside development checkouts")
def test_examples_csv_is_the_issuers_list() -> None:
    assert (EXAMPLES / "xstocks-evm.csv").read_bytes() == SHARED_CSV.read_bytes()


def test_local_example_follows_the_devnet_deployment(anvil: Anvil, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The compose deploy step on a fresh anvil: it writes a config that parses, that follows
    the contracts examples/local.toml names, and a rerun keeps the deployment."""
    out = tmp_path / "shared" / "indexer.toml"
    argv = ["--rpc", anvil.url, "--out", str(out), "--metrics-host", "0.0.0.0", "--metrics-port", "9100"]
    assert deploy_cli.main(argv) == 0
    written = parse_settings(tomllib.loads(out.read_text()), {}, source=str(out))
    local = parse_settings(tomllib.loads((EXAMPLES / "local.toml").read_text()), {}, source="local.toml")
    assert [f.address for f in written.factories] == [f.address for f in local.factories]
    assert [t.address for t in written.tokens] == [t.address for t in local.tokens]
    assert written.daemon.metrics_host == "0.0.0.0" and written.daemon.metrics_port == 9100
    assert local.chains[0].rpc == ("http://127.0.0.1:8545",) and local.chains[0].chain_id == 31337
    before = out.read_text()
    assert deploy_cli.main(argv) == 0
    assert "already deployed" in capsys.readouterr().out
    assert out.read_text() == before


def test_the_indexer_runs_as_its_own_non_superuser_owner(world: Any, database_url: str, tmp_path: Path) -> None:
    """deploy/postgres/initdb/05-indexer-owner.sh as the postgres image runs it, then the indexer
    migrates and indexes as that role: it owns what it creates and is no superuser."""
    parts = urlsplit(database_url)
    env = dict(os.environ, PATH=f"{pg_bin_dir()}{os.pathsep}{os.environ['PATH']}",
               PGHOST=parse_qs(parts.query).get("host", [parts.hostname or ""])[0],
               PGPORT=str(parts.port or 5432), POSTGRES_USER=parts.username or "postgres",
               POSTGRES_DB=parts.path.lstrip("/"), INDEXER_DB_PASSWORD="it's \"quoted\"")
    script = REPO / "deploy/postgres/initdb/05-indexer-owner.sh"
    result = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    owner_url = urlunsplit(parts._replace(netloc="xstock_indexer@" + parts.netloc.rpartition("@")[2]))
    try:
        config = world.write_toml(tmp_path / "indexer.toml", owner_url)
        for command in ("migrate", "backfill", "verify"):
            done = cli(command, config=config)
            assert done.returncode == 0, (command, done.stderr)
        owners = run_sync(_owners(database_url))
        assert owners == {"xstock_indexer"}
    finally:
        admin = parts.username or "postgres"
        run_sync(execute(database_url, f'ALTER DATABASE "{parts.path.lstrip("/")}" OWNER TO {admin}; '
                                       "ALTER SCHEMA public OWNER TO pg_database_owner; "
                                       "DROP OWNED BY xstock_indexer; DROP ROLE xstock_indexer"))


async def _owners(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        assert not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = 'xstock_indexer'")
        return {r["o"] for r in await conn.fetch(
            "SELECT DISTINCT pg_get_userbyid(relowner) AS o FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace")}
    finally:
        await conn.close()
