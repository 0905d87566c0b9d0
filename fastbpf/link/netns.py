"""Programs attached to a network namespace: sk_lookup and flow_dissector.

Both take a bpf_link on a netns fd (kernel 5.8+ for flow_dissector links,
5.9 for sk_lookup). The namespace defaults to the calling thread's.
"""

from __future__ import annotations

import os
from typing import Any

from .. import _core
from ..enums import AttachType
from ..errors import bpf_error
from ._base import FDLink, link_create

__all__ = ["attach_sk_lookup", "attach_flow_dissector", "open_netns"]

#: The calling thread's network namespace (threads may differ after setns).
THREAD_NETNS = "/proc/thread-self/ns/net"


def open_netns(netns: str | os.PathLike[str] | int | None = None) -> _core.FD:
    """An :class:`FD` for a network namespace: a path such as
    ``/proc/PID/ns/net`` or ``/var/run/netns/NAME``, an open fd (duplicated),
    or None for the calling thread's namespace."""
    if isinstance(netns, int) and not isinstance(netns, bool):
        return _core.dup_fd(netns)
    if hasattr(netns, "fileno"):  # an FD, a file object
        return _core.dup_fd(netns.fileno())  # type: ignore[union-attr]
    path = os.fspath(netns) if netns is not None else THREAD_NETNS  # type: ignore[arg-type]
    try:
        return _core.FD(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
    except OSError as e:
        raise bpf_error(e.errno or 0, "open network namespace", repr(path)) from None


def _attach_netns(program: Any, netns: Any, attach_type: AttachType, what: str) -> FDLink:
    with open_netns(netns) as ns:
        fd = link_create(program.fd, ns.fd, attach_type, obj=what)
    where = "this thread's netns" if netns is None else f"netns {netns!r}"
    return FDLink(fd, program, f"{what} on {where}")


def attach_sk_lookup(program: Any, netns: str | os.PathLike[str] | int | None = None) -> FDLink:
    """Attach the sk_lookup *program* to a network namespace.

    It runs when a TCP SYN or UDP datagram looks for a local socket, and can
    pick one (``bpf_sk_assign``, usually from a SOCKMAP) regardless of the
    address it is bound to. Several sk_lookup links may share a namespace;
    they run in attach order. Updatable and pinnable.
    """
    return _attach_netns(program, netns, AttachType.SK_LOOKUP, "sk_lookup")


def attach_flow_dissector(program: Any, netns: str | os.PathLike[str] | int | None = None) -> FDLink:
    """Attach the flow_dissector *program* to a network namespace, replacing
    the kernel's C flow dissector there. A namespace holds one: a second
    link fails with E2BIG (update the first instead)."""
    return _attach_netns(program, netns, AttachType.FLOW_DISSECTOR, "flow dissector")
