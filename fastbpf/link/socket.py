"""Socket filters: a socket_filter program on one socket (SO_ATTACH_BPF).

The program sees each packet queued to the socket and returns how many bytes
of it to keep: 0 drops the packet, ``skb->len`` (or more) keeps all of it.
"""

from __future__ import annotations

import os
import socket as _socket
from typing import Any

from ..enums import ProgramType
from ..errors import ClosedError, bpf_error
from ._base import DetachLink
from .common import check_program

__all__ = ["attach_socket_filter", "SO_ATTACH_BPF", "SO_DETACH_BPF"]

#: From <asm-generic/socket.h>; Python's socket module has neither.
SO_ATTACH_BPF = 50
SO_DETACH_BPF = 27  # the same number as SO_DETACH_FILTER


def attach_socket_filter(program: Any, sock: Any) -> DetachLink:
    """Attach the socket_filter *program* to *sock* (a ``socket.socket``,
    anything with ``fileno()``, or a socket fd).

    A socket holds at most one filter: attaching replaces the one there, and
    closing the returned link removes whatever filter the socket has then.
    The link keeps a duplicate of the socket so it can detach even after the
    caller's socket object is gone; the duplicate shares the filter.
    """
    check_program(program, (ProgramType.SOCKET_FILTER,), "attach_socket_filter")
    if isinstance(sock, int) and not isinstance(sock, bool):
        fd = sock
        if fd < 0:
            raise ValueError(f"attach_socket_filter: {fd} is not a valid socket fd")
    elif hasattr(sock, "fileno"):
        fd = sock.fileno()
        if fd < 0:
            raise ClosedError(f"attach_socket_filter: the socket {sock!r} is closed")
    else:
        raise TypeError(f"attach_socket_filter needs a socket or a socket fd, "
                        f"not {type(sock).__name__}")
    # A private duplicate: works for raw fds too, and outlives the caller's
    # socket object without keeping that object alive.
    own = _socket.socket(fileno=os.dup(fd))
    try:
        own.setsockopt(_socket.SOL_SOCKET, SO_ATTACH_BPF, program.fd)
    except OSError as e:
        own.close()
        raise bpf_error(e.errno or 0, "socket filter attach", f"socket fd {fd}") from None

    def detach() -> None:
        try:
            own.setsockopt(_socket.SOL_SOCKET, SO_DETACH_BPF, 0)
        finally:
            own.close()

    return DetachLink(detach, program, f"socket filter on fd {fd}")
