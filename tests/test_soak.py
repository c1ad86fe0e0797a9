"""`make soak` in small: a minute of the daemon under random faults, with no difference."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_a_minute_of_faults_leaves_no_difference(tmp_path: Path) -> None:
    figures = tmp_path / "soak.json"
    done = subprocess.run([sys.executable, "-m", "bench.soak", "--minutes", "1", "--seed", "12", "--max-depth", "8",
                           "--json", str(figures)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"^differences found: 0$", done.stdout, re.M), done.stdout
    result = json.loads(figures.read_text())
    assert result["differences"] == [] and result["failures"] == []
    assert sum(result["survived"].values()) >= 4, result  # the start and at least three faults
    assert len(result["survived"]) >= 3, result  # of different kinds
