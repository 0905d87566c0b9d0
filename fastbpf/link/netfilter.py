"""Netfilter hooks: a netfilter program as a hook function (kernel 6.4+).

The program returns ``NF_DROP`` (0) or ``NF_ACCEPT`` (1). The hook is
registered in the calling thread's network namespace.
"""

from __future__ import annotations

import enum
from typing import Any

from .. import _linkattr
from ..enums import AttachType
from ._base import FDLink, link_create

__all__ = ["attach_netfilter", "NFProto", "NFHook", "NF_DROP", "NF_ACCEPT",
           "NFPROTO_IPV4", "NFPROTO_IPV6", "NF_INET_PRE_ROUTING", "NF_INET_LOCAL_IN",
           "NF_INET_FORWARD", "NF_INET_LOCAL_OUT", "NF_INET_POST_ROUTING",
           "NETFILTER_IP_DEFRAG"]


class NFProto(enum.IntEnum):
    """Protocol families of netfilter hooks (``NFPROTO_*``)."""
    IPV4 = 2
    IPV6 = 10


class NFHook(enum.IntEnum):
    """The inet hooks (``NF_INET_*``)."""
    PRE_ROUTING = 0
    LOCAL_IN = 1
    FORWARD = 2
    LOCAL_OUT = 3
    POST_ROUTING = 4


NFPROTO_IPV4, NFPROTO_IPV6 = NFProto.IPV4, NFProto.IPV6
NF_INET_PRE_ROUTING = NFHook.PRE_ROUTING
NF_INET_LOCAL_IN = NFHook.LOCAL_IN
NF_INET_FORWARD = NFHook.FORWARD
NF_INET_LOCAL_OUT = NFHook.LOCAL_OUT
NF_INET_POST_ROUTING = NFHook.POST_ROUTING
NF_DROP, NF_ACCEPT = 0, 1
#: BPF_F_NETFILTER_IP_DEFRAG: see reassembled packets (priority must then
#: be above the defrag hook's, -400).
NETFILTER_IP_DEFRAG = 1 << 0


def attach_netfilter(program: Any, pf: int = NFPROTO_IPV4, hook: int = NF_INET_LOCAL_IN,
                     priority: int = -128, flags: int = 0) -> FDLink:
    """Register the netfilter *program* at (*pf*, *hook*) with *priority*
    (lower runs earlier; -128 is before the iptables filter table at 0) in
    the calling thread's network namespace.

    *flags* may hold ``NETFILTER_IP_DEFRAG``. The priorities INT_MIN and
    INT_MAX are reserved by netfilter.
    """
    if not -(1 << 31) < priority < (1 << 31) - 1:
        raise ValueError(f"priority {priority} is out of range (INT_MIN and INT_MAX are reserved)")
    extra = _linkattr.netfilter(int(pf), int(hook), int(priority), int(flags))
    fd = link_create(program.fd, 0, AttachType.NETFILTER, 0, extra)
    pname = NFProto(pf).name if pf in NFProto._value2member_map_ else str(pf)
    hname = NFHook(hook).name if hook in NFHook._value2member_map_ else str(hook)
    return FDLink(fd, program, f"netfilter {pname}/{hname} prio {priority}")
