"""``fastbpf link list|show``."""

from __future__ import annotations

import argparse
import struct
from typing import Any

from .. import _abi_layout, _core
from ..enums import LinkType
from ..errors import BPFError
from ._common import add_list_show, list_objects, type_name

__all__ = ["register", "link_facts"]

# The type-specific member of struct bpf_link_info (the "extra" bytes
# _core.link_info returns): its name in fastbpf._abi_layout (offsets
# declared in _abi.pxd, checked by tests/test_abi.py) and its fields as
# (field, struct format, bpftool's name).
_EXTRA: dict[int, tuple[str, tuple[tuple[str, str, str], ...]]] = {
    LinkType.TRACING: ("tracing", (("attach_type", "I", "attach_type"),
                                   ("target_obj_id", "I", "target_obj_id"),
                                   ("target_btf_id", "I", "target_btf_id"))),
    LinkType.CGROUP: ("cgroup", (("cgroup_id", "Q", "cgroup_id"),
                                 ("attach_type", "I", "attach_type"))),
    LinkType.NETNS: ("netns", (("netns_ino", "I", "netns_ino"),
                               ("attach_type", "I", "attach_type"))),
    LinkType.XDP: ("xdp", (("ifindex", "I", "ifindex"),)),
    LinkType.STRUCT_OPS: ("struct_ops", (("map_id", "I", "map_id"),)),
    LinkType.NETFILTER: ("netfilter", (("pf", "I", "pf"), ("hooknum", "I", "hook"),
                                       ("priority", "i", "prio"), ("flags", "I", "flags"))),
    LinkType.TCX: ("tcx", (("ifindex", "I", "ifindex"), ("attach_type", "I", "attach_type"))),
    LinkType.NETKIT: ("netkit", (("ifindex", "I", "ifindex"),
                                 ("attach_type", "I", "attach_type"))),
    LinkType.SOCKMAP: ("sockmap", (("map_id", "I", "map_id"),
                                   ("attach_type", "I", "attach_type"))),
}
_LAYOUT = _abi_layout.layout()


def _extra_fields(link_type: int, extra: bytes) -> dict[str, Any]:
    """bpftool's names and values of the type-specific fields of a link."""
    kind = _EXTRA.get(link_type)
    if kind is None:
        return {}
    member, fields = kind
    offsets = _LAYOUT[f"bpf_link_info.{member}"][1]
    return {shown: struct.unpack_from("=" + fmt, extra, offsets[field])[0]
            for field, fmt, shown in fields}


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
    out.update(_extra_fields(i["type"], i["extra"]))
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
