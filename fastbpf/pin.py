"""Pinning kernel objects on a bpffs, one way for maps, programs and links.

A pin is a file on a bpf filesystem that holds a reference to a map,
program or link, so the object outlives the process. :class:`Pinnable`
gives any object with an ``fd`` the same :meth:`~Pinnable.pin` and
:meth:`~Pinnable.unpin`; the object remembers the path it was pinned at (or
opened from, with ``from_pin``), so ``unpin()`` needs no argument.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from . import _core

__all__ = ["BPF_FS_MAGIC", "is_bpffs", "check_pin_path", "Pinnable"]

#: statfs f_type of a bpf filesystem.
BPF_FS_MAGIC = 0xCAFE4A11


def is_bpffs(path: str | os.PathLike[str]) -> bool:
    """True when *path* lies on a bpf filesystem."""
    try:
        return _core.fs_type(os.fspath(path)) == BPF_FS_MAGIC
    except OSError:
        return False


def check_pin_path(path: str | os.PathLike[str]) -> str:
    """Check that *path* can be a pin: its directory is on a bpffs.

    Raises ValueError before any syscall otherwise.
    """
    p = os.fspath(path)
    if not isinstance(p, str):
        p = os.fsdecode(p)
    parent = os.path.dirname(os.path.abspath(p)) or "/"
    if not os.path.isdir(parent):
        raise ValueError(f"cannot pin at {p!r}: directory {parent!r} does not exist")
    if not is_bpffs(parent):
        raise ValueError(f"cannot pin at {p!r}: {parent!r} is not on a bpf filesystem "
                         f"(mount one with: mount -t bpf bpf /sys/fs/bpf)")
    return p


class Pinnable:
    """``pin()`` / ``unpin()`` for an object with an ``fd``.

    The path of the last pin made (or of the pin the object was opened
    from) is remembered in :attr:`pin_path`.
    """

    _pin_path: str | None = None

    if TYPE_CHECKING:  # pragma: no cover - provided by the class mixed into
        @property
        def fd(self) -> int: ...

    @property
    def pin_path(self) -> str | None:
        """Where this object was pinned by :meth:`pin` or opened from, or None."""
        return self._pin_path

    def _remember_pin(self, path: str | os.PathLike[str] | None) -> None:
        self._pin_path = None if path is None else os.fspath(path)

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the object at *path* (on a bpffs) so it outlives this process."""
        p = check_pin_path(path)
        _core.obj_pin(self.fd, p)
        self._remember_pin(p)

    def unpin(self, path: str | os.PathLike[str] | None = None) -> None:
        """Remove the pin at *path*, by default the one this object made with
        :meth:`pin` or was opened from."""
        p = os.fspath(path) if path is not None else self.pin_path
        if p is None:
            raise ValueError(f"this {type(self).__name__} knows no pin of its own; pass the path")
        os.unlink(p)
        if path is None or p == self.pin_path:
            self._remember_pin(None)
