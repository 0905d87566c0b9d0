"""BPF iterators (bpf_iter): a TRACING program, attach type TRACE_ITER,
loaded against the BTF function ``bpf_iter_<target>`` (task, bpf_map,
bpf_map_elem, tcp, ...), runs once per object and writes text with the
``bpf_seq_printf`` / ``bpf_seq_write`` helpers.

:func:`attach_iter` makes the link; each :meth:`IterLink.open` starts a new
pass (BPF_ITER_CREATE) whose output is read like a file::

    with link.attach_iter(program) as it:
        for line in it.open():
            ...
        text = it.read()

A pinned iterator link can be read with plain ``cat`` on its bpffs path.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from .. import _core, _linkattr
from ..enums import AttachType, ProgramType
from ._base import FDLink, link_create
from .common import check_program_type, fd_of

__all__ = ["IterLink", "attach_iter"]


class IterLink(FDLink):
    """An iterator link. Each :meth:`open` runs the iterator afresh."""

    def open_fd(self) -> _core.FD:
        """A new iterator instance as a raw fd (BPF_ITER_CREATE); reading it
        runs the program."""
        from .. import features
        from ..errors import BPFError
        try:
            return _core.iter_create(self.fd)
        except BPFError as e:
            missing = features.unsupported_command(33, e, "iter create", self.description)
            if missing is not None:
                raise missing from None
            raise

    def open(self, mode: str = "r", *, encoding: str = "utf-8",
             errors: str = "replace") -> io.IOBase:
        """A new pass of the iterator as a file object: text (``"r"``,
        iterable line by line) or binary (``"rb"``). Close it when done."""
        if mode not in ("r", "rb"):
            raise ValueError("iterators are read-only: mode is 'r' or 'rb'")
        fd = self.open_fd()
        raw = fd.detach()  # the file object owns the fd from here
        if mode == "rb":
            return io.open(raw, "rb", closefd=True)
        return io.open(raw, "r", encoding=encoding, errors=errors, closefd=True)

    def read_bytes(self) -> bytes:
        """The whole output of one pass."""
        with self.open("rb") as f:
            data: bytes = f.read()
            return data

    def read(self) -> str:
        """The whole output of one pass, as text."""
        with self.open() as f:
            text: str = f.read()
            return text


def attach_iter(program: Any, *, map: Any = None, task_tid: int = 0, task_pid: int = 0,
                task_pidfd: int = 0, cgroup_fd: int = 0, cgroup_id: int = 0,
                cgroup_order: int = 0) -> IterLink:
    """Make an iterator link for a bpf_iter program.

    Some targets take a parameter (``union bpf_iter_link_info``): *map* (a
    Map or fd) for ``bpf_map_elem`` / ``bpf_sk_storage_map``; *task_tid*,
    *task_pid* or *task_pidfd* to limit ``task`` / ``task_file`` /
    ``task_vma`` to one thread or process; *cgroup_fd* or *cgroup_id* with
    *cgroup_order* (BPF_CGROUP_ITER_*) for ``cgroup``.
    """
    check_program_type(program, (ProgramType.TRACING,), "attach_iter")
    info = b""
    if map is not None:
        info = _linkattr.iter_map(int(getattr(map, "fd", map)))
    elif task_tid or task_pid or task_pidfd:
        info = _linkattr.iter_task(task_tid, task_pid, task_pidfd)
    elif cgroup_fd or cgroup_id:
        info = _linkattr.iter_cgroup(cgroup_order, cgroup_fd, cgroup_id)
    buf = np.frombuffer(info, dtype=np.uint8) if info else None
    extra = _linkattr.iter_info(_core.address_of(buf) if buf is not None else 0, len(info))
    fd = link_create(fd_of(program), 0, AttachType.TRACE_ITER, 0, extra)
    spec = getattr(program, "spec", None)
    target = getattr(spec, "attach_to", None) or ""
    return IterLink(fd, program, f"iter {target}".strip())
