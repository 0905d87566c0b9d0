"""Build the C baselines of the benchmarks (gcc, into bench/build/)."""

from __future__ import annotations

import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "build")


def build(name: str, libs: tuple[str, ...] = ()) -> str:
    """Compile bench/c/<name>.c (if newer than the binary); return its path."""
    src = os.path.join(HERE, "c", name + ".c")
    out = os.path.join(BUILD, name)
    os.makedirs(BUILD, exist_ok=True)
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        subprocess.run(["gcc", "-O2", "-o", out, src, *libs], check=True)
    return out
