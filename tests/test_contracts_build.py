"""The committed contract artifacts match what contracts/build.js compiles from contracts/src."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_contract_artifacts_are_up_to_date() -> None:
    node = shutil.which("node")
    assert node is not None, "node is required to compile the contracts"
    result = subprocess.run(
        [node, "contracts/build.js", "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (
        f"contracts/build.js --check exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
