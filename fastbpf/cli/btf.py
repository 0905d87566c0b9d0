"""``fastbpf btf list|dump``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .. import _core, btf
from ..btf.c_header import c_header, raw_listing, spec_from_path
from ..errors import BPFError
from ._common import CLIError, print_json, print_table

__all__ = ["register", "load_spec"]


def register(sub: Any) -> None:
    """Add ``btf`` and its subcommands to the parser."""
    p = sub.add_parser("btf", help="list BTF objects; dump BTF as C (vmlinux.h) or raw")
    bs = p.add_subparsers(dest="btf_cmd", required=True, metavar="SUBCOMMAND")
    ls = bs.add_parser("list", help="list the kernel's BTF objects")
    ls.add_argument("-j", "--json", action="store_true", help="JSON (bpftool's field names)")
    ls.set_defaults(fn=cmd_list)
    d = bs.add_parser("dump", help="dump BTF: an id, 'id ID', a file (raw BTF or ELF .o), "
                                   "'file PATH', or 'vmlinux'")
    d.add_argument("obj", nargs="+")
    d.add_argument("--format", choices=("c", "raw"), default="raw")
    d.add_argument("-o", "--output", help="write to this file instead of stdout")
    d.set_defaults(fn=cmd_dump)


def load_spec(tokens: list[str]) -> btf.Spec:
    """The spec named by *tokens* (``5``, ``id 5``, ``file P``, ``P``, ``vmlinux``)."""
    toks = list(tokens)
    if toks == ["vmlinux"]:
        return btf.load_kernel_spec()
    if len(toks) == 2 and toks[0] in ("id", "file"):
        kind, val = toks
    elif len(toks) == 1:
        kind, val = ("id" if toks[0].isdigit() else "file"), toks[0]
    else:
        raise CLIError(f"expected an id, 'id ID', a file or 'file PATH', got {' '.join(toks)!r}")
    if kind == "file":
        if not os.path.exists(val):
            raise CLIError(f"no such file: {val}")
        try:
            return spec_from_path(val)
        except (OSError, btf.BTFError) as e:
            raise CLIError(f"cannot read BTF from {val}: {e}") from None
    try:
        with btf.Handle.from_id(int(val)) as h:
            return h.spec()
    except BPFError as e:
        raise CLIError(f"cannot open BTF {val}: {e}") from None


def cmd_dump(args: argparse.Namespace) -> int:
    """``btf dump OBJ [--format c|raw] [-o FILE]``."""
    spec = load_spec(args.obj)
    if args.format == "c":
        text = c_header(spec)
    else:
        text = "\n".join(raw_listing(spec)) + "\n"
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """``btf list``: id, size, name and whether it is kernel BTF."""
    rows = []
    for i in _core.btf_ids():
        try:
            with _core.btf_get_fd_by_id(i) as fd:
                info = _core.btf_info(fd.fd)
        except BPFError:
            continue
        rows.append({"id": info["id"], "size": info["btf_size"],
                     "kernel": info["kernel_btf"], "name": info["name"]})
    if args.json:
        print_json(rows)
        return 0
    print_table(["id", "size", "kernel", "name"],
                [[r["id"], r["size"], "yes" if r["kernel"] else "", r["name"]] for r in rows],
                right=(0, 1))
    return 0
