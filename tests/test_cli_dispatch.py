"""The `fastbpf` command hands `export`, `gen` and `map hist` to the modules
that own them, --help included."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fastbpf.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("argv,usage", [
    (["export", "--help"], "usage: fastbpf export"),
    (["gen", "--help"], "usage: fastbpf gen"),
    (["map", "hist", "--help"], "usage: fastbpf map hist"),
])
def test_passthrough_commands_show_their_own_help(argv, usage, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own --help exits
        rc = e.code
    assert rc == 0
    assert capsys.readouterr().out.startswith(usage)


def test_gen_skeleton_through_the_command(tmp_path):
    obj = os.path.join(ROOT, "testdata", "loader-el.o")
    out = tmp_path / "skel.py"
    r = subprocess.run([sys.executable, "-m", "fastbpf.cli", "gen", "skeleton", obj, "-o",
                        str(out)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "class LoaderElSkel(" in text and "fastbpf.ObjectProgram" in text
