"""The type stubs match the runtime: mypy's stubtest compares `_ipcall.pyi`
with the compiled module (and the package's annotations with its code),
and mypy --strict type-checks the tests' use of the API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is not installed (python/requirements-dev.txt pins it)")

HERE = Path(__file__).resolve().parent


def test_stubtest_finds_no_mismatch(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "ipcall", "--mypy-config-file", str(tmp_path / "none.ini")],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not python/, whose ipcall/ has no compiled module
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_type_checks_strictly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "-p", "ipcall"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
