"""The hand-written ``.pyi`` stubs of the compiled modules agree with the
modules themselves, checked by ``mypy.stubtest`` against the built
extensions (names, signatures, classes).

Three stubtest checks are off: positional-only markers on dunder
parameters and PEP 800 disjoint bases are stub pedantry that callers never
see; everything Cython adds on its own (``__test__``, pickling hooks) and
two deliberate differences are allowlisted below with their reasons. The
Python modules' own type errors are not this test's business
(``ignore_errors`` for ``fastbpf.*``): it checks the stubs only.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ALLOWLIST = r"""
# Cython adds these to every module and extension type.
fastbpf\.\w+\.__test__
fastbpf\.\w+\.(\w+\.)?__reduce_cython__
fastbpf\.\w+\.(\w+\.)?__setstate_cython__
fastbpf\.\w+\.\w+\.__test__
# _core imports the errno constant for its own use; it is errors.ENOTSUPP's.
fastbpf\._core\.ENOTSUPP
# Buffer is a typing alias of the stub (what the buffer arguments accept).
fastbpf\._core\.Buffer
# FD takes its fd in __cinit__; the stub shows callers the same as __init__.
fastbpf\._core\.FD\.__init__
"""


def _compiled_modules() -> list[str]:
    return sorted("fastbpf." + os.path.basename(p)[:-4]
                  for p in glob.glob(os.path.join(ROOT, "fastbpf", "*.pyx")))


def test_every_compiled_module_has_a_stub():
    for mod in _compiled_modules():
        assert os.path.exists(os.path.join(ROOT, *mod.split(".")) + ".pyi"), mod


def test_stubs_match_the_compiled_modules(tmp_path):
    pytest.importorskip("mypy")
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n[mypy-fastbpf.*]\nignore_errors = True\n")
    allow = tmp_path / "allowlist.txt"
    allow.write_text(ALLOWLIST)
    r = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "--mypy-config-file", str(config),
         "--allowlist", str(allow), "--ignore-positional-only", "--ignore-disjoint-bases",
         "--concise", *_compiled_modules()],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
