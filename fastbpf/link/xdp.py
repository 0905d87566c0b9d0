"""XDP: programs that see each packet in the driver, before the stack.

Two ways to attach, as in cilium/ebpf and libbpf:

* a bpf_link (BPF_LINK_CREATE, attach type XDP, kernel 5.9+): owned by its
  fd, updatable, pinnable, and it refuses to be overwritten by others;
* rtnetlink (RTM_SETLINK with IFLA_XDP), for older kernels: the attachment
  belongs to the interface until removed again with fd -1.
"""

from __future__ import annotations

import errno
from typing import Any

from .. import _core
from ..enums import AttachType, ProgramType, XDPFlags
from ..errors import ENOTSUPP, BPFError
from . import _netlink
from ._base import DetachLink, FDLink, Link, link_create
from .common import check_program

__all__ = ["attach_xdp", "XDP_MODES"]

#: Accepted values of ``mode`` and the attach flags each one means.
XDP_MODES = {
    None: XDPFlags.NONE,          # the kernel picks: driver if it can, else generic
    "auto": XDPFlags.NONE,
    "generic": XDPFlags.SKB_MODE,
    "skb": XDPFlags.SKB_MODE,
    "driver": XDPFlags.DRV_MODE,
    "native": XDPFlags.DRV_MODE,
    "offload": XDPFlags.HW_MODE,
    "hw": XDPFlags.HW_MODE,
}

# LINK_CREATE errnos that mean "this kernel has no XDP links".
_NO_LINK_ERRNOS = (errno.EINVAL, ENOTSUPP, errno.EOPNOTSUPP)

RTM_SETLINK = 19


def attach_xdp(program: Any, interface: str | int, mode: str | None = "generic", *,
               flags: int = 0, use_link: bool | None = None) -> Link:
    """Attach the XDP *program* to *interface* (a name or an ifindex in the
    caller's network namespace).

    *mode* is ``"generic"`` (skb mode, works on any device), ``"driver"``
    (also ``"native"``), ``"offload"``, or ``None`` to let the kernel choose.
    *flags* adds further ``XDPFlags``.

    *use_link* ``True`` makes a bpf_link (returns an :class:`FDLink` that
    can be updated and pinned); ``False`` attaches through rtnetlink (needs
    pyroute2; returns a :class:`DetachLink`, and refuses to replace a program
    someone else attached); ``None`` (the default) tries the link and falls
    back to netlink when the kernel has no XDP links.
    """
    check_program(program, (ProgramType.XDP,), "attach_xdp")
    try:
        mode_flags = XDP_MODES[mode]
    except (KeyError, TypeError):
        raise ValueError(f"unknown XDP mode {mode!r}; use one of "
                         f"{sorted(k for k in XDP_MODES if k)} or None") from None
    all_flags = int(mode_flags) | int(flags)
    idx = _netlink.ifindex(interface)
    what = f"XDP on {interface!r}" if isinstance(interface, str) else f"XDP on ifindex {idx}"
    if use_link is not False:
        try:
            fd = link_create(program.fd, idx, AttachType.XDP, all_flags, obj=what)
            return FDLink(fd, program, what)
        except BPFError as e:
            if use_link or e.errno not in _NO_LINK_ERRNOS:
                raise
    return _attach_netlink(program, idx, all_flags, what)


def _attach_netlink(program: Any, idx: int, flags: int, what: str) -> Link:
    ifinfmsg, _ = _netlink.pyroute2()
    nl = _netlink.RtNetlink()
    try:
        # A duplicate of the program fd names "our" program at detach time
        # even if the caller closes the Program first; taken before the
        # attach so a failure here cannot leave the program attached.
        prog = _core.dup_fd(program.fd)
    except BaseException:
        nl.close()
        raise
    try:
        # Only if nothing is attached: never silently replace someone's program.
        _setlink_xdp(nl, ifinfmsg, idx, program.fd,
                     flags | XDPFlags.UPDATE_IF_NOEXIST, "netlink XDP attach", what)
    except BaseException:
        prog.close()
        nl.close()
        raise
    mode = flags & (XDPFlags.SKB_MODE | XDPFlags.DRV_MODE | XDPFlags.HW_MODE)

    def detach() -> None:
        try:
            # REPLACE + EXPECTED_FD: remove the program only if it is still ours.
            _setlink_xdp(nl, ifinfmsg, idx, -1, mode | XDPFlags.REPLACE, "netlink XDP detach",
                         what, expected_fd=prog.fd)
        finally:
            prog.close()
            nl.close()

    return DetachLink(detach, program, what + " (netlink)")


def _setlink_xdp(nl: _netlink.RtNetlink, ifinfmsg: Any, idx: int, fd: int, flags: int,
                 op: str, what: str, expected_fd: int | None = None) -> None:
    msg = ifinfmsg()
    msg["family"] = 0
    msg["index"] = idx
    attrs: list[Any] = [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", int(flags))]
    if expected_fd is not None:
        attrs.append(("IFLA_XDP_EXPECTED_FD", expected_fd))
    msg["attrs"] = [("IFLA_XDP", {"attrs": attrs})]
    nl.request(msg, RTM_SETLINK, _netlink.NLM_F_ACK, op, what)
