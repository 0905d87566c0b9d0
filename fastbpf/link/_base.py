"""The :class:`Link`: one attachment of a program to a hook.

Two kinds exist behind one interface:

* :class:`FDLink` wraps a kernel bpf_link (BPF_LINK_CREATE,
  BPF_RAW_TRACEPOINT_OPEN, ...). Closing its fd detaches; it can be pinned,
  updated with a new program and queried for info.
* :class:`DetachLink` stands for an attachment the kernel does not model as
  a link (BPF_PROG_ATTACH, SO_ATTACH_BPF, netlink XDP, cls_bpf, perf event
  ioctl). It keeps what it needs and runs a detach function on close.

Both detach on ``close()``, on ``with`` exit and on garbage collection.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import weakref
from typing import Any, Callable

from .. import _core
from ..enums import AttachFlags, LinkType
from ..errors import NotSupportedError, not_supported_error
from ..pin import Pinnable

__all__ = ["Link", "FDLink", "DetachLink", "LinkInfo", "link_ids"]


@dataclasses.dataclass(frozen=True)
class LinkInfo:
    """What the kernel says about a bpf_link."""

    id: int
    type: LinkType | int
    prog_id: int
    extra: bytes = b""


class Link:
    """An attachment of a program; detaches when closed."""

    def close(self) -> None:
        """Detach. Closing twice is harmless."""
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        """True once detached."""
        raise NotImplementedError

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the link on a bpffs so the attachment outlives the process.
        Raises NotSupportedError for attachments without a kernel bpf_link."""
        raise _unsupported(self, "pin")

    def unpin(self, path: str | os.PathLike[str] | None = None) -> None:
        """Remove the pin at *path*, by default the one :meth:`pin` made."""
        raise _unsupported(self, "unpin")

    def update(self, program: Any, old_program: Any = None) -> None:
        """Replace the attached program with *program*, atomically. With
        *old_program*, only if that is the program attached now.
        Raises NotSupportedError where the hook cannot swap programs."""
        raise _unsupported(self, "update")


def _unsupported(link: Link, what: str) -> NotSupportedError:
    return not_supported_error(errno.EOPNOTSUPP, f"link {what}",
                               getattr(link, "description", "") or None,
                               hint=f"{type(link).__name__} attachments have no kernel bpf_link "
                                    f"to {what}")


class FDLink(Pinnable, Link):
    """A kernel bpf_link, owned through its fd."""

    def __init__(self, fd: _core.FD, program: Any = None, description: str = "") -> None:
        """Take ownership of *fd*, a ``fastbpf.FD`` (the attach functions
        build links this way; users open one with a ``from_*``)."""
        if not isinstance(fd, _core.FD):
            raise TypeError(f"{type(self).__name__}() takes an owned fastbpf.FD; "
                            "use FDLink.from_fd(fd) for a descriptor you keep")
        self._fd = fd
        #: The program kept alive by this link (may be None when opened by pin/id).
        self.program = program
        self.description = description

    @property
    def fd(self) -> int:
        """The link's file descriptor."""
        return self._fd.fd

    @property
    def closed(self) -> bool:
        return self._fd.closed

    def close(self) -> None:
        self._fd.close()

    # pin() and unpin() come from Pinnable.

    def update(self, program: Any, old_program: Any = None) -> None:
        """Atomically replace the program (BPF_LINK_UPDATE). With
        *old_program*, only if that is the program attached now."""
        flags = 0
        old = 0
        if old_program is not None:
            flags = AttachFlags.REPLACE
            old = old_program.fd
        _core.link_update(self.fd, program.fd, flags, old)
        self.program = program

    def detach(self) -> None:
        """Detach from the hook but keep the fd (BPF_LINK_DETACH)."""
        _core.link_detach(self.fd)

    def info(self) -> LinkInfo:
        """The kernel's view of the link."""
        i = _core.link_info(self.fd)
        try:
            t: LinkType | int = LinkType(i["type"])
        except ValueError:
            t = i["type"]
        return LinkInfo(id=i["id"], type=t, prog_id=i["prog_id"], extra=i["extra"])

    @property
    def id(self) -> int:
        """The kernel's id of this link."""
        return int(_core.link_info(self.fd)["id"])

    @classmethod
    def from_pin(cls, path: str | os.PathLike[str]) -> FDLink:
        """Open the link pinned at *path*; :meth:`unpin` then removes that pin."""
        link = cls(_core.obj_get(os.fspath(path)), None, f"pinned at {os.fspath(path)}")
        link._remember_pin(path)
        return link

    @classmethod
    def from_fd(cls, fd: int) -> FDLink:
        """Open the link behind *fd* (duplicated; the caller keeps *fd*)."""
        return cls(_core.dup_fd(int(fd)), None, f"fd {int(fd)}")

    @classmethod
    def from_id(cls, link_id: int) -> FDLink:
        """Open the link with kernel id *link_id*."""
        return cls(_core.link_get_fd_by_id(int(link_id)), None, f"id {link_id}")

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd.fd}"
        return f"<{type(self).__name__} {self.description} {state}>"


class DetachLink(Link):
    """An attachment without a kernel bpf_link: *detach* runs on close.

    *keep* holds objects that must live as long as the attachment (a perf
    event fd, a socket, the program).
    """

    def __init__(self, detach: Callable[[], None], program: Any = None,
                 description: str = "", keep: Any = None) -> None:
        self.program = program
        self.description = description
        self._keep = keep
        self._finalizer = weakref.finalize(self, _run_detach, detach)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        self._finalizer()
        self._keep = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description} {'closed' if self.closed else 'attached'}>"


def _run_detach(detach: Callable[[], None]) -> None:
    try:
        detach()
    except OSError:
        # Already gone (interface deleted, cgroup removed, socket closed):
        # the attachment went with it.
        pass


def link_ids() -> list[int]:
    """Ids of every bpf_link in the kernel, ascending."""
    return _core.link_ids()


def link_create(prog_fd: int, target: int, attach: Any, flags: int = 0,
                extra: Any = None, *, obj: str | None = None) -> _core.FD:
    """BPF_LINK_CREATE; a refusal by a kernel that lacks this kind of link
    becomes the feature probe's :class:`NotSupportedError` (naming the kind
    and its Linux release), other errors pass through."""
    from .. import features
    from ..errors import BPFError
    try:
        return _core.link_create(prog_fd, target, int(attach), flags, extra)
    except BPFError as e:
        ns = features.unsupported_link(attach, e, obj)
        if ns is not None:
            raise ns from None
        if obj is not None:   # name the hook, not just the attach type number
            raise _renamed(e, obj) from None
        raise


def prog_attach(target_fd: int, prog_fd: int, attach: Any, flags: int = 0, *args: Any,
                obj: str | None = None, **kwargs: Any) -> None:
    """BPF_PROG_ATTACH, with a refusal by a kernel that does not take the
    attach type there turned into the probe's :class:`NotSupportedError`."""
    from .. import features
    from ..errors import BPFError
    try:
        _core.prog_attach(target_fd, prog_fd, int(attach), flags, *args, **kwargs)
    except BPFError as e:
        ns = features.unsupported_prog_attach(attach, e, obj)
        if ns is not None:
            raise ns from None
        if obj is not None:
            raise _renamed(e, obj) from None
        raise


def _renamed(err: Any, obj: str) -> Any:
    """*err* again (same class and errno), naming *obj* as its object."""
    from ..errors import VerifierError, bpf_error
    if isinstance(err, VerifierError):
        return err
    return bpf_error(err.errno, err.op, obj, err.hint)
