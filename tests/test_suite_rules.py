"""The suite's own rules enforce themselves: a test that leaks an fd, a pin
or a thread fails, and an unregistered marker is an error."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.noroot, pytest.mark.slow]

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

LEAKY = '''
import os, threading, time
import pytest

pytestmark = pytest.mark.noroot

def test_leaks_an_fd():
    os.open("/proc/self/stat", os.O_RDONLY)

def test_leaves_a_thread():
    threading.Thread(target=time.sleep, args=(5,), daemon=True).start()

def test_clean():
    with open("/proc/self/stat") as f:
        f.read()

@pytest.mark.leaks_ok
def test_exempt():
    os.open("/proc/self/stat", os.O_RDONLY)

@pytest.mark.no_such_marker
def test_unregistered_marker():
    pass
'''


def run_suite(tmp_path, body: str) -> subprocess.CompletedProcess:
    d = tmp_path / "tests"
    d.mkdir()
    shutil.copy(os.path.join(HERE, "conftest.py"), d / "conftest.py")
    (d / "test_sample.py").write_text(textwrap.dedent(body))
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), tmp_path / "pyproject.toml")
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-c", str(tmp_path / "pyproject.toml"),
                           "-rA", str(d)], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=300)


def test_leaks_fail_and_unknown_markers_are_errors(tmp_path):
    out = run_suite(tmp_path, LEAKY)
    text = out.stdout + out.stderr
    # --strict-markers: the unregistered marker stops collection of the file.
    assert "'no_such_marker' not found in `markers` configuration option" in text, text[-3000:]


def test_each_leak_kind_is_reported(tmp_path):
    body = LEAKY.replace("@pytest.mark.no_such_marker\n", "")
    out = run_suite(tmp_path, body)
    text = out.stdout
    # The check runs at teardown: pytest reports its failure as an error.
    assert "ERROR tests/test_sample.py::test_leaks_an_fd" in text, text
    assert "file descriptors left open" in text and "/proc/" in text
    assert "ERROR tests/test_sample.py::test_leaves_a_thread" in text
    assert "threads left running" in text
    assert "PASSED tests/test_sample.py::test_clean" in text
    assert "PASSED tests/test_sample.py::test_exempt" in text
    assert "PASSED tests/test_sample.py::test_unregistered_marker" in text
