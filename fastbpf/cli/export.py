"""``fastbpf export CONFIG.yaml``: serve maps as Prometheus metrics
(:mod:`fastbpf.metrics.exporter`, which needs the ``metrics`` extra)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add ``export``; its arguments go to the exporter's own parser."""
    p = sub.add_parser("export", help="serve maps as Prometheus metrics (ebpf_exporter-style "
                       "config)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=lambda a: run(a.rest))


def run(rest: list[str]) -> int:
    """Run the command with its own arguments; returns the exit status."""
    from ..metrics.exporter import main
    return main(rest)
