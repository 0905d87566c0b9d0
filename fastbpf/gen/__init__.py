"""Code generation from compiled BPF objects: ``fastbpf gen skeleton``.

``main(argv)`` is the command line (``python3 -m fastbpf.gen skeleton OBJ -o
OUT [--name CLASS] [--no-embed]``); :func:`generate` returns a skeleton's
source text. See :mod:`fastbpf.gen.skeleton` for the naming rules and
:mod:`fastbpf.gen.runtime` for what generated modules build on.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from .skeleton import SkeletonError, class_name, generate, mangle

__all__ = ["main", "generate", "class_name", "mangle", "SkeletonError"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastbpf gen", description="Generate code from a "
                                "compiled BPF object.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("skeleton", help="a typed Python module for one object",
                       description="Write a Python module with a typed class for the "
                       "object's programs, maps and variables (prog.bpf.o -> ProgSkel).")
    s.add_argument("object", help="the compiled object (clang -O2 -g -target bpf)")
    s.add_argument("-o", "--output", help="the module to write (default: standard output)")
    s.add_argument("--name", help="the class name (default: from the object's file name)")
    s.add_argument("--no-embed", action="store_true",
                   help="load the object file beside the module instead of embedding it")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fastbpf gen`` with *argv* (default: ``sys.argv[1:]``); returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2): a status, not an exit
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    from ..errors import BTFError, ELFError
    try:
        with open(args.object, "rb") as f:
            data = f.read()
        text = generate(data, object_path=args.object, output_path=args.output,
                        name=args.name, embed=not args.no_embed)
    except (OSError, ELFError, BTFError, SkeletonError) as e:
        print(f"fastbpf gen skeleton: {args.object}: {e}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(text)
        return 0
    # Write beside the target and rename, so an importer never sees half a module.
    tmp = f"{args.output}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, args.output)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        print(f"fastbpf gen skeleton: {args.output}: {e}", file=sys.stderr)
        return 1
    return 0
