"""``mypy --strict`` passes on fastbpf itself: its Python modules and the
.pyi stubs of its Cython modules (the settings, third-party modules without
types among them, are pyproject.toml's ``[tool.mypy]``).

From the source tree this checks the tree; in ``scripts/test_wheel.sh``'s
run (no fastbpf/ beside the tests) ``-p fastbpf`` finds the installed wheel,
so what is checked is what users get."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.noroot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_mypy_strict_passes_on_fastbpf(tmp_path):
    pytest.importorskip("mypy", reason="mypy is not installed (scripts/setup.sh installs it)")
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path),
                        "-p", "fastbpf"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    checked = r.stdout.strip().splitlines()[-1]
    assert checked.startswith("Success: no issues found in "), checked
    # Every module counts: the .py files and the stubs of the Cython modules.
    n = int(checked.split()[5])
    assert n >= 90, checked
