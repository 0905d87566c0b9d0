"""``fastbpf gen skeleton OBJ -o OUT``: a typed Python module for one
compiled object (:mod:`fastbpf.gen`)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add ``gen``; its arguments go to :func:`fastbpf.gen.main`."""
    p = sub.add_parser("gen", help="generate a typed skeleton module from an object",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=lambda a: run(a.rest))


def run(rest: list[str]) -> int:
    """Run the command with its own arguments; returns the exit status."""
    from ..gen import main
    return main(rest)
