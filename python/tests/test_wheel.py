"""The abi3 wheel installs and works on the oldest CPython it claims (3.9),
in a fresh venv with no network: built once, it runs on every 3.9+."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python39() -> Optional[str]:
    pyenv = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")))
    candidates = [shutil.which("python3.9"), *pyenv]
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "--version"], capture_output=True).returncode == 0:
            return candidate
    return None


def test_the_wheel_runs_the_readme_on_cpython_39(tmp_path: Path) -> None:
    wheels = glob.glob(os.environ.get("IPCALL_WHEEL", "")) if os.environ.get("IPCALL_WHEEL") else []
    if not wheels:
        pytest.skip("IPCALL_WHEEL is not set (make test-python sets it to the built wheel)")
    interpreter = python39()
    if interpreter is None:
        pytest.skip("no CPython 3.9 interpreter on this machine")
    venv = tmp_path / "venv39"
    subprocess.run([interpreter, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    # Install by unpacking with the interpreter's own zipfile: no pip, no network.
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    subprocess.run(
        [str(venv / "bin" / "python"), "-c", f"import zipfile; zipfile.ZipFile({wheels[0]!r}).extractall({site!r})"],
        check=True, timeout=120,
    )
    script = (
        "import re, sys, ipcall\n"
        "assert sys.version_info[:2] == (3, 9), sys.version\n"
        "assert ipcall._ipcall.__file__.endswith('.abi3.so')\n"
        f"text = open({str(README)!r}).read()\n"
        "blocks = re.findall(r'^```python\\n(.*?)^```$', text, flags=re.S | re.M)\n"
        "for i, block in enumerate(blocks):\n"
        "    exec(compile(block, f'README block {i}', 'exec'), {'__name__': 'readme'})\n"
        "print('ok', len(blocks))\n"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")
