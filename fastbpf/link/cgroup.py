"""cgroup v2 programs: cgroup_skb, cgroup_sock, cgroup_sock_addr, sock_ops,
cgroup_sockopt, cgroup_sysctl, cgroup_device.

The program applies to every process in the cgroup and its descendants.
"""

from __future__ import annotations

import os
from typing import Any

from .. import _core
from ..enums import AttachFlags, AttachType
from ..errors import bpf_error
from ._base import DetachLink, FDLink, Link, link_create, prog_attach

__all__ = ["attach_cgroup", "open_cgroup"]


CGROUP2_SUPER_MAGIC = 0x63677270


def open_cgroup(cgroup: str | os.PathLike[str] | int) -> _core.FD:
    """An :class:`FD` for *cgroup*: a cgroup v2 directory path, or an open
    fd of one (duplicated; the caller keeps theirs)."""
    if isinstance(cgroup, int) and not isinstance(cgroup, bool):
        return _core.dup_fd(cgroup)
    if hasattr(cgroup, "fileno"):  # an FD, a file object
        return _core.dup_fd(cgroup.fileno())
    path = os.fspath(cgroup)  # type: ignore[arg-type]
    try:
        fd = _core.FD(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    except OSError as e:
        raise bpf_error(e.errno or 0, "open cgroup", repr(path),
                        "give a cgroup v2 directory, e.g. /sys/fs/cgroup/unified/NAME") from None
    if _core.fs_type(path) != CGROUP2_SUPER_MAGIC:
        fd.close()
        from .. import features
        root = features.cgroup_v2_root()
        raise ValueError(f"open cgroup {path!r}: not a cgroup v2 directory"
                         + (f" (cgroup v2 is mounted at {root})" if root else
                            " (no cgroup v2 hierarchy is mounted)"))
    return fd


def attach_cgroup(program: Any, cgroup: str | os.PathLike[str] | int, attach_type: AttachType | int,
                  *, use_link: bool = True, flags: int = 0, replace: Any = None) -> Link:
    """Attach *program* to *cgroup* (a cgroup v2 path or fd) at *attach_type*
    (``AttachType.CGROUP_INET_EGRESS``, ``CGROUP_INET4_CONNECT``, ...).

    By default a bpf_link is made (kernel 5.7+): it coexists with other
    programs on the cgroup, can be updated and pinned, and detaches on close.
    ``use_link=False`` uses BPF_PROG_ATTACH with *flags*
    (``AttachFlags.ALLOW_MULTI`` to coexist, ``ALLOW_OVERRIDE`` to let
    sub-cgroups override, none for exclusive) and, with ``ALLOW_MULTI``,
    *replace* (a Program attached now, swapped atomically); close runs
    BPF_PROG_DETACH for this program.
    """
    at = AttachType(attach_type) if attach_type in AttachType._value2member_map_ else attach_type
    what = f"cgroup {cgroup!r} {getattr(at, 'name', at)}"
    if use_link:
        if replace is not None:
            raise ValueError("replace= is for use_link=False; update() the link instead")
        with open_cgroup(cgroup) as cg:   # the link holds the cgroup itself
            fd = link_create(program.fd, cg.fd, int(at), int(flags), obj=what)
        return FDLink(fd, program, what)
    aflags = int(flags)
    rfd = 0
    if replace is not None:
        aflags |= AttachFlags.REPLACE
        rfd = replace.fd
    cg = open_cgroup(cgroup)
    try:
        prog_attach(cg.fd, program.fd, int(at), aflags, rfd, obj=what)
        # PROG_DETACH names the program by fd: keep one even if the caller
        # closes the Program first.
        prog = _core.dup_fd(program.fd)
    except BaseException:
        cg.close()
        raise

    multi = bool(aflags & AttachFlags.ALLOW_MULTI)
    prog_id = _core.prog_info(prog.fd)["id"]

    def detach() -> None:
        try:
            # Without ALLOW_MULTI the kernel detaches whatever is attached,
            # whichever program we name: only detach if it is still ours.
            if multi or prog_id in _core.prog_query(cg.fd, int(at))["prog_ids"]:
                _core.prog_detach(cg.fd, prog.fd, int(at))
        finally:
            prog.close()
            cg.close()

    return DetachLink(detach, program, what)
