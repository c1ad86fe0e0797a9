"""`pip install .` in any venv gives a working `indexer`: the wheel carries the schema, the
contract artifacts the devnet deploys, and the console script."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_wheel_carries_schema_artifacts_and_entry_point(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                           "-w", str(tmp_path), str(REPO_ROOT)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("xstock_indexer-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert z.read("indexer/schema.sql") == (REPO_ROOT / "schema.sql").read_bytes()
        for artifact in (REPO_ROOT / "contracts" / "artifacts").glob("*.json"):
            assert z.read(f"indexer/devnet/artifacts/{artifact.name}") == artifact.read_bytes()
        entry = next(n for n in names if n.endswith("entry_points.txt"))
        assert "indexer = indexer.cli:main" in z.read(entry).decode()
