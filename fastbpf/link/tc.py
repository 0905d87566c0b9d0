"""Traffic control: sched_cls programs on an interface's ingress or egress.

* :func:`attach_tcx` makes a tcx bpf_link (kernel 6.6+): no qdisc, ordered
  relative to other tcx programs, updatable and pinnable.
* :func:`attach_tc` uses the classic path every kernel since 4.5 has: a
  ``clsact`` qdisc and a ``cls_bpf`` filter in direct-action mode, made over
  rtnetlink (pyroute2 encodes the messages). The filter goes away on close;
  the qdisc too if this attachment created it and no filter is left on it.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

from .. import _core, _linkattr
from ..enums import AttachFlags, AttachType
from ..errors import ClosedError, bpf_error
from . import _netlink
from ._base import DetachLink, FDLink, link_create

__all__ = ["attach_tcx", "attach_tc", "TCFilterLink"]

_TCX_TYPES = {"ingress": AttachType.TCX_INGRESS, "egress": AttachType.TCX_EGRESS}

# Handles from <linux/pkt_sched.h>: the clsact qdisc and its two hooks.
TC_H_CLSACT = 0xFFFFFFF1
CLSACT_HANDLE = 0xFFFF0000
TC_PARENTS = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}
TCA_BPF_FLAG_ACT_DIRECT = 1
ETH_P_ALL = 0x0003

RTM_NEWQDISC, RTM_DELQDISC = 36, 37
RTM_NEWTFILTER, RTM_DELTFILTER, RTM_GETTFILTER = 44, 45, 46
NLM_F_ECHO = 0x8


def _tcmsg(tcmsg: Any, idx: int, parent: int, *, handle: int | None = None,
           priority: int | None = None, kind: str | None = None,
           options: dict[str, Any] | None = None) -> Any:
    """One ``struct tcmsg`` (pyroute2's *tcmsg* class) for interface *idx*
    and *parent*: a qdisc or filter request, or a filter dump without
    *handle*/*priority*/*kind*."""
    m = tcmsg()
    m["family"] = socket.AF_UNSPEC
    m["index"] = idx
    m["parent"] = parent
    if handle is not None:
        m["handle"] = handle
    if priority is not None:
        m["info"] = (priority << 16) | socket.htons(ETH_P_ALL)
    if kind is not None:
        m["attrs"] = [("TCA_KIND", kind)] + ([("TCA_OPTIONS", options)] if options else [])
    return m


def _direction(direction: str, table: dict[str, Any]) -> Any:
    try:
        return table[direction]
    except (KeyError, TypeError):
        raise ValueError(f"direction must be 'ingress' or 'egress', not {direction!r}") from None


def _relative(anchor: Any) -> tuple[int, int]:
    """(extra flags, relative fd) for a before/after anchor."""
    if anchor is True:
        return 0, 0                       # no anchor: the very front / back
    if isinstance(anchor, FDLink):
        return int(AttachFlags.LINK), anchor.fd
    if hasattr(anchor, "fd"):
        return 0, anchor.fd               # a Program
    raise TypeError("before/after take a Program, an FDLink or True, "
                    f"not {type(anchor).__name__}")


def attach_tcx(program: Any, interface: str | int, direction: str = "ingress", *,
               before: Any = None, after: Any = None, expected_revision: int = 0) -> FDLink:
    """Attach the sched_cls *program* to *interface* with a tcx link.

    *direction* is ``"ingress"`` or ``"egress"``. Programs on one hook run in
    order; by default the new one goes last. ``before=p`` / ``after=p``
    place it next to the program or link *p*, and ``before=True`` puts it
    first. *expected_revision* (nonzero) makes the attach fail with ESTALE
    if the hook changed since the caller looked (``prog_query``).

    The program returns ``TCAction.NEXT`` (-1) to let the next program run,
    ``OK``/``SHOT``/``REDIRECT`` to decide. Needs kernel 6.6.
    """
    attach_type = _direction(direction, _TCX_TYPES)
    if before is not None and after is not None:
        raise ValueError("give before or after, not both")
    flags, rel = 0, 0
    if before is not None:
        extra_flags, rel = _relative(before)
        flags = int(AttachFlags.BEFORE) | extra_flags
    elif after is not None:
        extra_flags, rel = _relative(after)
        flags = int(AttachFlags.AFTER) | extra_flags
    idx = _netlink.ifindex(interface)
    extra = _linkattr.tcx(rel, expected_revision)
    fd = link_create(program.fd, idx, attach_type, flags, extra,
                     obj=f"tcx {direction} on {interface!r}")
    return FDLink(fd, program, f"tcx {direction} on {interface!r}")


class TCFilterLink(DetachLink):
    """A cls_bpf filter on a clsact qdisc; removed on close.

    ``priority`` and ``handle`` identify the filter (as ``tc filter show``
    prints them). :meth:`update` swaps the program in place.
    """

    def __init__(self, detach: Any, program: Any, description: str, nl: _netlink.RtNetlink,
                 ifindex: int, parent: int, priority: int, handle: int,
                 state: dict[str, Any] | None = None) -> None:
        super().__init__(detach, program, description)
        self._state = state if state is not None else {}
        self._nl = nl
        self.ifindex = ifindex
        self.parent = parent
        self.priority = priority
        self.handle = handle

    def update(self, program: Any, old_program: Any = None) -> None:
        """Replace the filter's program (RTM_NEWTFILTER without NLM_F_EXCL:
        cls_bpf changes the existing filter, so no packet goes unfiltered).
        With *old_program*, only if that is the program attached now."""
        if self.closed:
            raise ClosedError("the filter is detached")
        if old_program is not None and (
                _core.prog_info(old_program.fd)["id"] != self._state["prog_id"]):
            raise bpf_error(errno.EBUSY, "tc filter update", self.description,
                            hint="the filter does not run old_program")
        _filter_request(self._nl, RTM_NEWTFILTER, _netlink.NLM_F_ACK, self.ifindex, self.parent,
                        self.priority, self.handle, program, "tc filter update",
                        self.description)
        self.program = program
        self._state["prog_id"] = _core.prog_info(program.fd)["id"]


def attach_tc(program: Any, interface: str | int, direction: str = "ingress", *,
              priority: int = 0, handle: int = 1) -> TCFilterLink:
    """Attach the sched_cls *program* as a direct-action cls_bpf filter on
    the clsact qdisc of *interface* (``tc filter add dev X ingress bpf da``).

    The clsact qdisc is created if absent. *priority* 0 lets the kernel pick
    one (the returned link's ``.priority`` says which). Closing removes the
    filter, and the qdisc when this call created it and no filter remains.
    Works on any kernel with clsact (4.5+); needs pyroute2.
    """
    parent = _direction(direction, TC_PARENTS)
    if not 0 <= priority <= 0xFFFF:
        raise ValueError(f"priority must be in 0..65535, not {priority}")
    _, tcmsg = _netlink.pyroute2()
    idx = _netlink.ifindex(interface)
    what = f"tc {direction} on {interface!r}"
    nl = _netlink.RtNetlink()
    created = False
    try:
        created = _ensure_clsact(nl, tcmsg, idx, what)
        echo = _filter_request(
            nl, RTM_NEWTFILTER,
            _netlink.NLM_F_ACK | _netlink.NLM_F_CREATE | _netlink.NLM_F_EXCL | NLM_F_ECHO,
            idx, parent, priority, handle, program, "tc filter add", what)
        if priority == 0:
            # The kernel chose the priority; the echoed filter tells us which.
            infos = [m["info"] >> 16 for m in echo if m["header"]["type"] == RTM_NEWTFILTER]
            if not infos:
                raise bpf_error(errno.EPROTO, "tc filter add", what,
                                "the kernel did not echo the new filter")
            priority = infos[0]
        state = {"prog_id": _core.prog_info(program.fd)["id"]}
    except BaseException:
        try:
            if created:
                _delete_clsact_if_empty(nl, tcmsg, idx)
        finally:
            nl.close()
        raise

    def detach() -> None:
        try:
            # Delete by (priority, handle) only if the filter there still
            # runs our program: someone may have replaced it since.
            if _filter_prog_id(nl, tcmsg, idx, parent, priority, handle) == state["prog_id"]:
                m = _tcmsg(tcmsg, idx, parent, handle=handle, priority=priority, kind="bpf")
                try:
                    nl.request(m, RTM_DELTFILTER, _netlink.NLM_F_ACK, "tc filter delete", what)
                except FileNotFoundError:
                    pass  # gone meanwhile
            if created:
                _delete_clsact_if_empty(nl, tcmsg, idx)
        finally:
            nl.close()

    return TCFilterLink(detach, program, what, nl, idx, parent, priority, handle, state)


def _filter_prog_id(nl: _netlink.RtNetlink, tcmsg: Any, idx: int, parent: int, priority: int,
                    handle: int) -> int | None:
    """The id of the program in the cls_bpf filter at (priority, handle), or None."""
    m = _tcmsg(tcmsg, idx, parent)
    try:
        filters = nl.request(m, RTM_GETTFILTER, _netlink.NLM_F_DUMP, "tc filter list",
                             reply_class=tcmsg)
    except FileNotFoundError:
        return None  # no qdisc, no filter
    for f in filters:
        if f["info"] >> 16 == priority and f["handle"] == handle:
            return _bpf_id(bytes(f.data))
    return None


TCA_OPTIONS, TCA_BPF_ID = 2, 11


def _bpf_id(msg: bytes) -> int | None:
    """TCA_OPTIONS/TCA_BPF_ID of one RTM_NEWTFILTER message (pyroute2 does
    not decode that attribute)."""
    off = 16 + 20  # nlmsghdr, struct tcmsg
    while off + 4 <= len(msg):
        alen, atype = struct.unpack_from("=HH", msg, off)
        if alen < 4:
            break
        if atype & 0x3FFF == TCA_OPTIONS:
            o, end = off + 4, min(off + alen, len(msg))
            while o + 4 <= end:
                blen, btype = struct.unpack_from("=HH", msg, o)
                if blen < 4:
                    break
                if btype & 0x3FFF == TCA_BPF_ID and blen >= 8:
                    return int(struct.unpack_from("=I", msg, o + 4)[0])
                o += (blen + 3) & ~3
        off += (alen + 3) & ~3
    return None


def _filter_request(nl: _netlink.RtNetlink, msg_type: int, flags: int, idx: int, parent: int,
                    priority: int, handle: int, program: Any, op: str, what: str) -> list[Any]:
    _, tcmsg = _netlink.pyroute2()
    name = (getattr(program, "name", "") or "fastbpf")[:255]
    m = _tcmsg(tcmsg, idx, parent, handle=handle, priority=priority, kind="bpf",
               options={"attrs": [("TCA_BPF_FD", program.fd), ("TCA_BPF_NAME", name),
                                  ("TCA_BPF_FLAGS", TCA_BPF_FLAG_ACT_DIRECT)]})
    return nl.request(m, msg_type, flags, op, what, reply_class=tcmsg)


def _ensure_clsact(nl: _netlink.RtNetlink, tcmsg: Any, idx: int, what: str) -> bool:
    """Create the clsact qdisc; False if one was there already."""
    m = _tcmsg(tcmsg, idx, TC_H_CLSACT, handle=CLSACT_HANDLE, kind="clsact")
    try:
        nl.request(m, RTM_NEWQDISC,
                   _netlink.NLM_F_ACK | _netlink.NLM_F_CREATE | _netlink.NLM_F_EXCL,
                   "tc qdisc add clsact", what)
    except FileExistsError:
        return False
    return True


def _delete_clsact_if_empty(nl: _netlink.RtNetlink, tcmsg: Any, idx: int) -> None:
    for parent in TC_PARENTS.values():
        m = _tcmsg(tcmsg, idx, parent)
        if nl.request(m, RTM_GETTFILTER, _netlink.NLM_F_DUMP, "tc filter list",
                      reply_class=tcmsg):
            return  # someone else's filter still needs the qdisc
    m = _tcmsg(tcmsg, idx, TC_H_CLSACT, handle=CLSACT_HANDLE, kind="clsact")
    nl.request(m, RTM_DELQDISC, _netlink.NLM_F_ACK, "tc qdisc delete clsact")
