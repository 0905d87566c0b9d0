"""The ``fastbpf`` command: look at (and poke) the BPF objects in the kernel.

    fastbpf prog list|show|dump|tracelog     programs
    fastbpf map list|show|dump|lookup|update|delete
    fastbpf link list|show                   links
    fastbpf btf list|dump                    BTF objects and files
    fastbpf top                              live per-program run statistics
    fastbpf map hist ID|PIN                  a bucketed map drawn as a histogram
    fastbpf export CONFIG.yaml               serve maps as Prometheus metrics
    fastbpf gen skeleton OBJ -o OUT          a typed Python module for one object

Objects are named as bpftool names them: ``ID``, ``id ID``, ``pinned PATH``,
``name NAME`` or a bare pin path. ``--json``/``-j`` prints bpftool's field
names.

Each subcommand lives in its own module with a ``register(subparsers)``
function; :data:`COMMANDS` lists them in help order.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ..errors import BPFError
from ._common import CLIError

__all__ = ["main", "COMMANDS", "build_parser"]

#: Modules of ``fastbpf.cli`` whose ``register(subparsers)`` adds one
#: top-level command. Add new commands here (``hist``, ``export``, ...).
COMMANDS: list[str] = [
    "prog",
    "map",
    "link",
    "btf",
    "top",
    "export",
    "gen",
]


def build_parser() -> argparse.ArgumentParser:
    """The whole argument parser, with every registered command."""
    from .. import __version__
    p = argparse.ArgumentParser(prog="fastbpf", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"fastbpf {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastbpf`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Commands with parsers of their own take every argument, --help included
    # (argparse's REMAINDER does not capture a leading option).
    if argv[:1] in (["export"], ["gen"]):
        mod = importlib.import_module(f"{__name__}.{argv[0]}")
        return int(mod.run(argv[1:]))
    if argv[:2] == ["map", "hist"]:
        from ..metrics import cli_hist
        return int(cli_hist(argv[2:]))
    args = build_parser().parse_args(argv)
    try:
        rc: int = args.fn(args)
        return rc
    except (CLIError, BPFError, ValueError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"fastbpf: {msg}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0  # `fastbpf ... | head` is fine
    except KeyboardInterrupt:
        return 130
