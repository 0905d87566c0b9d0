"""A minimal rtnetlink transport for the attachments that predate bpf_link
(netlink XDP, clsact + cls_bpf).

pyroute2 (the optional ``netlink`` extra) encodes and decodes the messages;
the socket is our own. Two reasons: an attachment must be detached in the
network namespace it was made in, and a netlink socket is bound to the
namespace of the thread that created it, so each attachment keeps the socket
it was made with; pyroute2's IPRoute instead opens a fresh socket per thread
(in whatever namespace that thread is in) and holds an event loop.
"""

from __future__ import annotations

import errno as _errno
import os
import socket
import struct
from typing import Any

from ..errors import bpf_error, target_not_found_error

NETLINK_ROUTE = 0
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
SOL_NETLINK = 270

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_ACK_TLVS = 0x200  # in the flags of an NLMSG_ERROR reply

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSGERR_ATTR_MSG = 1

_HDR = struct.Struct("=IHHII")


def pyroute2() -> Any:
    """Import the pyroute2 message classes, or explain how to get them."""
    try:
        # pyroute2 ships no type information: its classes are Any here.
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from pyroute2.netlink.rtnl.tcmsg import tcmsg  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "this attachment uses rtnetlink, which needs pyroute2: "
            "pip install 'fastbpf[netlink]' (or pip install pyroute2)") from e
    return ifinfmsg, tcmsg


class RtNetlink:
    """One NETLINK_ROUTE socket, bound to the caller's network namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_ROUTE)
        try:
            self.sock.bind((0, 0))
            # Extended acks carry the kernel's own error text ("Exclusivity
            # flag on, cannot modify"); CAP_ACK keeps the request out of acks.
            for opt in (NETLINK_EXT_ACK, NETLINK_CAP_ACK):
                try:
                    self.sock.setsockopt(SOL_NETLINK, opt, 1)
                except OSError:
                    pass
        except BaseException:
            self.sock.close()
            raise
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def request(self, msg: Any, msg_type: int, flags: int, op: str, obj: str | None = None,
                reply_class: Any = None) -> list[Any]:
        """Send the pyroute2 message *msg*; return decoded replies (dumps) or
        [] after an ack. A negative ack raises BPFError with the kernel's text."""
        self._seq += 1
        seq = self._seq
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = NLM_F_REQUEST | flags
        msg["header"]["sequence_number"] = seq
        msg["header"]["pid"] = 0
        msg.reset()
        msg.encode()
        self.sock.send(msg.data)
        replies: list[Any] = []
        while True:
            data = self.sock.recv(1 << 16)
            off = 0
            while off + _HDR.size <= len(data):
                length, mtype, mflags, mseq, _ = _HDR.unpack_from(data, off)
                if length < _HDR.size:
                    raise OSError(_errno.EPROTO, "malformed netlink reply")
                chunk = data[off:off + length]
                off += (length + 3) & ~3
                if mseq != seq:
                    continue
                if mtype == NLMSG_DONE:
                    return replies
                if mtype == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", chunk, _HDR.size)
                    if code == 0:
                        return replies
                    raise bpf_error(-code, op, obj, _ext_ack_message(chunk, mflags))
                if reply_class is not None:
                    m = reply_class(chunk)
                    m.decode()
                    replies.append(m)
            if not flags & NLM_F_DUMP and not flags & NLM_F_ACK:
                return replies


def _ext_ack_message(chunk: bytes, mflags: int) -> str | None:
    if not mflags & NLM_F_ACK_TLVS:
        return None
    # nlmsgerr = error (4) + the original header (16, payload capped).
    off = _HDR.size + 4 + _HDR.size
    while off + 4 <= len(chunk):
        alen, atype = struct.unpack_from("=HH", chunk, off)
        if alen < 4:
            break
        if atype & 0x3FFF == NLMSGERR_ATTR_MSG:
            return chunk[off + 4:off + alen].split(b"\0", 1)[0].decode("utf-8", "replace") or None
        off += (alen + 3) & ~3
    return None


def ifindex(interface: str | int) -> int:
    """The index of *interface* (a name or an index) in the caller's namespace."""
    if isinstance(interface, bool):
        raise TypeError("interface must be a name or an index")
    if isinstance(interface, int):
        if interface <= 0:
            raise ValueError(f"invalid interface index {interface}")
        return interface
    name = os.fsdecode(interface)
    try:
        return socket.if_nametoindex(name)
    except OSError as e:
        raise target_not_found_error(_errno.ENODEV, "find interface", repr(name),
                                     "no such interface in this network namespace") from e
