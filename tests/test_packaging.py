"""Type checking works however fastbpf is installed: a user's script passes
``mypy --strict`` after a wheel install and after an editable install, and
mypy sees fastbpf's names (a misspelt one is an error); ``examples/`` passes
``mypy --strict`` against the installed package.

Each test uses the interpreter running the suite when it already holds
that kind of install (the README's ``scripts/test.sh`` makes an editable
one from this tree; ``scripts/test_wheel.sh`` runs the suite in a venv
holding the wheel), and otherwise makes a fresh venv and installs into it:
the same check, without building fastbpf a second time."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
import urllib.parse
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")

USER_SCRIPT = textwrap.dedent('''
    from __future__ import annotations

    import numpy as np

    import fastbpf
    from fastbpf import Map, MapSpec, MapType, trace_lines


    def make() -> Map:
        return Map.create(MapSpec(MapType.HASH, key=np.uint32, value=np.uint64,
                                  max_entries=8, name="user"))


    def first_message() -> str | None:
        for line in trace_lines(timeout=0.1):
            return line.message
        return None


    ids: list[int] = fastbpf.map_ids()
''')


def _venv(tmp_path, name: str) -> str:
    venv = tmp_path / name
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    return str(venv / "bin" / "python")


def _pip(py: str, *args: str) -> None:
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]


def _mypy_user_scripts(py: str, tmp_path) -> None:
    work = tmp_path / "user"
    work.mkdir()
    (work / "user.py").write_text(USER_SCRIPT)
    (work / "typo.py").write_text(USER_SCRIPT.replace("fastbpf.map_ids()", "fastbpf.map_idz()"))
    # From a directory holding no fastbpf/, so only the installed package counts.
    ok = subprocess.run([py, "-m", "mypy", "--strict", "--no-incremental", "user.py"],
                        capture_output=True, text=True, cwd=work)
    assert ok.returncode == 0, ok.stdout[-3000:]
    bad = subprocess.run([py, "-m", "mypy", "--strict", "--no-incremental", "typo.py"],
                         capture_output=True, text=True, cwd=work)
    assert bad.returncode == 1 and 'has no attribute "map_idz"' in bad.stdout, bad.stdout
    examples = [os.path.join(EXAMPLES, f) for f in sorted(os.listdir(EXAMPLES))
                if f.endswith(".py")]
    ex = subprocess.run([py, "-m", "mypy", "--strict", "--no-incremental", *examples],
                        capture_output=True, text=True, cwd=work)
    assert ex.returncode == 0, ex.stdout[-3000:]


def _install_of_this_interpreter() -> tuple[str, str] | None:
    """How fastbpf is installed in the interpreter running the suite:
    ("editable", source dir) or ("archive", wheel path), from pip's
    direct_url.json; None when it is not pip-installed (a build_ext
    --inplace tree on sys.path)."""
    # The tree's own fastbpf.egg-info (left by any build) may come first on
    # sys.path; pip's record of the install is the dist-info with direct_url.
    texts = [d.read_text("direct_url.json")
             for d in importlib.metadata.distributions(name="fastbpf")]
    text = next((t for t in texts if t), None)
    if text is None:
        return None
    info = json.loads(text)
    url = urllib.parse.urlparse(info.get("url", ""))
    if url.scheme != "file":
        return None
    path = urllib.request.url2pathname(url.path)
    if info.get("dir_info", {}).get("editable"):
        return "editable", os.path.realpath(path)
    if "archive_info" in info:
        return "archive", path
    return None


def _fastbpf_dir(py: str) -> str:
    r = subprocess.run([py, "-c", "import fastbpf, os; print(os.path.dirname(fastbpf.__file__))"],
                       capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr[-3000:]
    return os.path.realpath(r.stdout.strip())


def _wheel() -> str:
    whl = os.environ.get("FASTBPF_WHEEL")
    if whl:
        return whl
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "wheel.sh"),
                        "/tmp/fastbpf-test-dist"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_user_script_typechecks_after_a_wheel_install(tmp_path):
    here = _install_of_this_interpreter()
    whl = os.environ.get("FASTBPF_WHEEL")
    if (here is not None and here[0] == "archive" and whl
            and os.path.basename(here[1]) == os.path.basename(whl)):
        # scripts/test_wheel.sh: this venv holds the wheel (and mypy, from
        # the test extra); fastbpf must come from its site-packages.
        py = sys.executable
        where = _fastbpf_dir(py)
        assert not where.startswith(os.path.realpath(ROOT) + os.sep), where
        assert where.startswith(os.path.realpath(sys.prefix) + os.sep), where
    else:
        py = _venv(tmp_path, "wheel-venv")
        _pip(py, _wheel(), "mypy>=1.8")
    _mypy_user_scripts(py, tmp_path)


@pytest.mark.slow
def test_user_script_typechecks_after_an_editable_install(tmp_path):
    if not os.path.exists(os.path.join(ROOT, "setup.py")):
        pytest.skip("the tests were copied away from the source tree (a wheel test run)")
    here = _install_of_this_interpreter()
    if here == ("editable", os.path.realpath(ROOT)):
        # scripts/setup.sh (run by scripts/test.sh) made it: the README's
        # command, in the interpreter running the suite.
        py = sys.executable
        assert _fastbpf_dir(py) == os.path.join(os.path.realpath(ROOT), "fastbpf")
    else:
        py = _venv(tmp_path, "editable-venv")
        # The README's command: compat mode puts the tree on sys.path with a
        # .pth file, which mypy follows (the default import hook is invisible
        # to it).
        _pip(py, "-e", ROOT, "--config-settings", "editable_mode=compat", "mypy>=1.8")
    _mypy_user_scripts(py, tmp_path)
