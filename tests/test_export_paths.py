"""Where `indexer export` writes: a regular file is replaced atomically; a symlink, a FIFO or a
device is written through and stays what it was; cells and file names from a contract's symbol
cannot run as a formula or leave the folder."""

from __future__ import annotations

import csv
import io
import os
import stat
import threading
from pathlib import Path

import pytest

from indexer.errors import InputError
from indexer.export import COLUMNS, Target, default_name, to_csv, write
from tests.analyst_world import Scenario, scenario  # noqa: F401  (fixture)
from tests.conftest import cli

DATA = b"chain_id,holder\n1,0xab\n"


def test_regular_file_is_replaced_atomically_keeping_its_mode(tmp_path: Path) -> None:
    out = tmp_path / "holders.csv"
    out.write_bytes(b"old")
    out.chmod(0o640)
    inode = out.stat().st_ino
    write(str(out), DATA)
    assert out.read_bytes() == DATA and out.stat().st_ino != inode  # a new file renamed into place
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holders.csv"]  # no temporary file left


def test_new_file_gets_the_umask_mode(tmp_path: Path) -> None:
    out = tmp_path / "new.csv"
    old = os.umask(0o027)
    try:
        write(str(out), DATA)
    finally:
        os.umask(old)
    assert out.read_bytes() == DATA and stat.S_IMODE(out.stat().st_mode) == 0o640


def test_symlink_is_kept_and_its_target_written(tmp_path: Path) -> None:
    target = tmp_path / "real.csv"
    target.write_bytes(b"old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    write(str(link), DATA)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == DATA


def test_fifo_is_written_through_to_its_reader(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    write(str(fifo), DATA)
    reader.join(timeout=30)
    assert got == [DATA]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_dev_null_stays_a_character_device() -> None:
    write("/dev/null", DATA)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_hard_linked_file_is_written_through(tmp_path: Path) -> None:
    first = tmp_path / "a.csv"
    first.write_bytes(b"old")
    second = tmp_path / "b.csv"
    os.link(first, second)
    write(str(second), DATA)
    assert first.read_bytes() == DATA and first.stat().st_ino == second.stat().st_ino


def test_a_directory_or_missing_folder_is_one_line_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cannot write .*: Is a directory"):
        write(str(tmp_path), DATA)
    with pytest.raises(InputError, match=r"cannot write .*No such file or directory"):
        write(str(tmp_path / "missing" / "x.csv"), DATA)
    assert [p.name for p in tmp_path.iterdir()] == []


def test_formula_like_cells_are_escaped_and_names_kept_safe() -> None:
    target = Target(1, "../../etc", "0xab", "=HYPERLINK(\"x\")", 18, 7)
    rows = [(1, "0xab", sym, 7, "0xcd", 5, 5, 5) for sym in ("=1+1", "+A1", "-2", "@SUM(A1)", "\tx", "\rx", "TSLAx")]
    cells = [r[2] for r in csv.reader(io.StringIO(to_csv(rows).decode(), newline=""))][1:]
    assert cells == ["'=1+1", "'+A1", "'-2", "'@SUM(A1)", "'\tx", "'\rx", "TSLAx"]
    assert list(csv.reader(io.StringIO(to_csv([]).decode()))) == [list(COLUMNS)]
    name = default_name(target, "csv")
    assert name == "holders-_HYPERLINK__x__-.._.._etc-7.csv" and "/" not in name


def test_cli_export_to_dev_null(scenario: Scenario) -> None:  # noqa: F811
    done = cli("export", "holders", "--token", "SPYx", "--chain", "alpha", "--output", "/dev/null",
               config=scenario.config)
    assert done.returncode == 0, done.stderr
    assert "written to /dev/null" in done.stdout
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
