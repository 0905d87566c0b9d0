"""``fastbpf link list|show``."""

from __future__ import annotations

import argparse
import struct
from typing import Any

from .. import _core
from ..enums import LinkType
from ..errors import BPFError
from ._common import add_list_show, list_objects, type_name

__all__ = ["register", "link_facts"]

# The type-specific part of struct bpf_link_info (it starts 8-aligned, at 16;
# the "extra" bytes _core returns start there): (struct format, bpftool's names).
_EXTRA: dict[int, tuple[str, tuple[str, ...]]] = {
    LinkType.TRACING: ("<III", ("attach_type", "target_obj_id", "target_btf_id")),
    LinkType.CGROUP: ("<QI", ("cgroup_id", "attach_type")),
    LinkType.NETNS: ("<II", ("netns_ino", "attach_type")),
    LinkType.XDP: ("<I", ("ifindex",)),
    LinkType.STRUCT_OPS: ("<I", ("map_id",)),
    LinkType.NETFILTER: ("<IIiI", ("pf", "hook", "prio", "flags")),
    LinkType.TCX: ("<II", ("ifindex", "attach_type")),
    LinkType.NETKIT: ("<II", ("ifindex", "attach_type")),
    LinkType.SOCKMAP: ("<II", ("map_id", "attach_type")),
}


def register(sub: Any) -> None:
    """Add ``link`` and its subcommands to the parser."""
    p = sub.add_parser("link", help="list and show links")
    ls = p.add_subparsers(dest="link_cmd", required=True, metavar="SUBCOMMAND")
    add_list_show(ls, "link", cmd_list)


def link_facts(link_id: int, pins: dict[int, list[str]] | None = None) -> dict[str, Any] | None:
    """bpftool's ``link show`` facts for one link (None if it went away)."""
    try:
        fd = _core.link_get_fd_by_id(link_id)
    except BPFError:
        return None
    with fd:
        i = _core.link_info(fd.fd)
    out: dict[str, Any] = {"id": i["id"], "type": type_name("link", i["type"]),
                           "prog_id": i["prog_id"]}
    layout = _EXTRA.get(i["type"])
    if layout is not None:
        fmt, names = layout
        out.update(zip(names, struct.unpack_from(fmt, i["extra"])))
    if pins is not None and i["id"] in pins:
        out["pinned"] = pins[i["id"]]
    return out


def cmd_list(args: argparse.Namespace) -> int:
    """``link list`` / ``link show OBJ``."""
    skip = {"id", "type", "prog_id", "pinned"}
    return list_objects(
        args, "link", "link", link_facts, ["id", "type", "prog", "details"],
        lambda r: [r["id"], r["type"], r["prog_id"],
                   " ".join(f"{k} {v}" for k, v in r.items() if k not in skip)],
        right=(0, 2))
