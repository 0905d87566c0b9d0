"""Programs on perf events: software/hardware samplers, and the perf-event
plumbing shared by tracepoints, uprobes and kprobes.

A BPF program reaches a perf event in one of two ways. Since 5.15 the
kernel has a bpf_link for it (BPF_LINK_CREATE with BPF_PERF_EVENT, which also
carries a bpf_cookie); before that, the program was set on the event with
the PERF_EVENT_IOC_SET_BPF ioctl and the event enabled. :func:`attach_perf_fd`
tries the link first and falls back to the ioctl, so callers never care.

Two different kinds of events are involved and must not be confused:

* trace events (tracepoints, uprobes, kprobes) own their BPF program, so one
  perf event (pid=-1, cpu=0) is enough and catches every CPU. Opening one per
  CPU would run the program once per event.
* sampling events (cpu-clock, cycles) fire per CPU, so :func:`attach_perf_event`
  opens one per CPU and returns one :class:`PerfEventLink` holding them all.
"""

from __future__ import annotations

import errno
import fcntl
import os
import weakref
from typing import Any, Iterable, Sequence

from .. import _core, _linkattr
from ..cpus import online_cpus
from ..enums import AttachType, ProgramType
from ..errors import BPFError, bpf_error
from ._base import DetachLink, FDLink, Link, link_create
from .common import check_program_type, fd_of

__all__ = [
    "PerfType", "SoftwareEvent", "PerfEventLink", "PerfEventGroup",
    "attach_perf_event", "attach_perf_fd",
]

# <linux/perf_event.h> ioctls: _IO('$', 0), _IO('$', 1), _IOW('$', 8, __u32).
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_SET_BPF = 0x40042408


class PerfType:
    """``perf_event_attr.type`` values (fixed ones; PMUs such as uprobe have
    dynamic types read from /sys/bus/event_source/devices/<pmu>/type)."""

    HARDWARE = 0
    SOFTWARE = 1
    TRACEPOINT = 2
    HW_CACHE = 3
    RAW = 4
    BREAKPOINT = 5


class SoftwareEvent:
    """``perf_event_attr.config`` for :attr:`PerfType.SOFTWARE`."""

    CPU_CLOCK = 0
    TASK_CLOCK = 1
    PAGE_FAULTS = 2
    CONTEXT_SWITCHES = 3
    CPU_MIGRATIONS = 4
    PAGE_FAULTS_MIN = 5
    PAGE_FAULTS_MAJ = 6
    ALIGNMENT_FAULTS = 7
    EMULATION_FAULTS = 8
    DUMMY = 9
    BPF_OUTPUT = 10
    CGROUP_SWITCHES = 11


class PerfEventLink(FDLink):
    """A bpf_link (BPF_PERF_EVENT) together with the perf event it sits on.

    Closing it closes both. ``perf_fd`` stays readable for ioctls while the
    link is open. A pinned perf-event link keeps its event alive by itself.
    """

    def __init__(self, fd: _core.FD, perf_fd: _core.FD, program: Any = None,
                 description: str = "", cleanup: Any = None) -> None:
        super().__init__(fd, program, description)
        self._perf_fd = perf_fd
        # *cleanup* (removing a tracefs probe, say) must run after both fds
        # are closed, also when the link is garbage-collected unclosed.
        self._finalizer = weakref.finalize(self, _close_all, fd, perf_fd, cleanup)

    @property
    def perf_fd(self) -> int:
        """The perf event's file descriptor."""
        return self._perf_fd.fd

    def close(self) -> None:
        self._finalizer()


def _close_all(fd: _core.FD, perf_fd: _core.FD, cleanup: Any) -> None:
    fd.close()
    perf_fd.close()
    if cleanup is not None:
        cleanup()


def _ioctl_detach(perf_fd: _core.FD, cleanup: Any) -> None:
    try:
        fcntl.ioctl(perf_fd.fd, PERF_EVENT_IOC_DISABLE, 0)
    finally:
        perf_fd.close()
        if cleanup is not None:
            cleanup()


def attach_perf_fd(program: Any, perf_fd: _core.FD, *, cookie: int = 0, description: str = "",
                   cleanup: Any = None, use_link: bool = True) -> Link:
    """Attach *program* to the open perf event *perf_fd* (taken over: the
    returned link closes it). *cleanup* runs once the event is closed.

    Uses BPF_LINK_CREATE(BPF_PERF_EVENT) and, on kernels without perf-event
    links, PERF_EVENT_IOC_SET_BPF + ENABLE (then *cookie* must be 0).
    *use_link* False goes straight to the ioctls.
    """
    if cookie and not use_link:
        raise ValueError("a cookie needs a perf-event link")
    try:
        if use_link:
            try:
                fd = link_create(fd_of(program), perf_fd.fd, AttachType.PERF_EVENT, 0,
                                 _linkattr.perf_event(cookie & 0xFFFFFFFFFFFFFFFF))
                return PerfEventLink(fd, perf_fd, program, description, cleanup)
            except BPFError as e:
                # The kernel has no perf_event links (before 5.15: EINVAL, or
                # the probe says so for another errno): use the ioctls.
                no_links = e.errno == errno.EINVAL or getattr(e, "probe", None) is not None
                if not no_links or cookie:
                    raise
        try:
            fcntl.ioctl(perf_fd.fd, PERF_EVENT_IOC_SET_BPF, fd_of(program))
            fcntl.ioctl(perf_fd.fd, PERF_EVENT_IOC_ENABLE, 0)
        except OSError as e:
            raise bpf_error(e.errno or 0, "perf event set bpf", description) from None
    except BaseException:
        perf_fd.close()
        if cleanup is not None:
            cleanup()
        raise
    return DetachLink(lambda: _ioctl_detach(perf_fd, cleanup), program, description, keep=perf_fd)


class PerfEventGroup(Link):
    """Several per-CPU attachments of one program, closed together."""

    def __init__(self, links: Sequence[Link], cpus: Sequence[int], program: Any = None,
                 description: str = "") -> None:
        #: One attachment per CPU, in the order of :attr:`cpus`.
        self.links = list(links)
        #: The CPU of each link (-1: any CPU, for a per-task event).
        self.cpus = list(cpus)
        self.program = program
        self.description = description

    @property
    def closed(self) -> bool:
        return all(l.closed for l in self.links)

    def close(self) -> None:
        for l in self.links:
            l.close()

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin each CPU's link as ``<path>/cpu<N>`` (a directory on bpffs)."""
        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        for cpu, l in zip(self.cpus, self.links):
            l.pin(os.path.join(path, f"cpu{cpu}" if cpu >= 0 else "task"))
        self._pin_path: str | None = path

    def unpin(self, path: str | os.PathLike[str] | None = None) -> None:
        """Remove the pins made by :meth:`pin` (or those under *path*) and
        their directory once it is empty."""
        p = os.fspath(path) if path is not None else getattr(self, "_pin_path", None)
        if p is None:
            raise ValueError("this PerfEventGroup knows no pin of its own; pass the path")
        for cpu in self.cpus:
            os.unlink(os.path.join(p, f"cpu{cpu}" if cpu >= 0 else "task"))
        try:
            os.rmdir(p)
        except OSError:
            pass  # someone else's files are there too
        if path is None or p == getattr(self, "_pin_path", None):
            self._pin_path = None

    def __repr__(self) -> str:
        return f"<PerfEventGroup {self.description} {len(self.links)} events>"


def attach_perf_event(program: Any, type: int = PerfType.SOFTWARE,
                      config: int = SoftwareEvent.CPU_CLOCK, *,
                      sample_period: int = 0, sample_freq: int = 0,
                      cpu: int | Iterable[int] | None = None, pid: int = -1,
                      cookie: int = 0) -> PerfEventGroup:
    """Run a PERF_EVENT program on a sampling event, on every online CPU
    (or the CPUs in *cpu*).

    Give either *sample_period* (events between samples; for cpu-clock,
    nanoseconds) or *sample_freq* (samples per second). With *pid* >= 0 the
    events count that task only (then *cpu* may be -1 for any CPU).
    Returns one link holding every CPU's event.
    """
    check_program_type(program, (ProgramType.PERF_EVENT,), "attach_perf_event")
    if bool(sample_period) == bool(sample_freq):
        raise ValueError("give exactly one of sample_period and sample_freq")
    if cpu is None:
        cpus = online_cpus() if pid < 0 else [-1]
    elif isinstance(cpu, int):
        cpus = [cpu]
    else:
        cpus = list(cpu)
    bits = _core.PERF_BIT_FREQ if sample_freq else 0
    links: list[Link] = []
    desc = f"perf event type {type} config {config}"
    try:
        for c in cpus:
            pfd = _core.perf_event_open(int(type), int(config), pid, c,
                                        sample_period=int(sample_freq or sample_period),
                                        bits=bits)
            links.append(attach_perf_fd(program, pfd, cookie=cookie, description=f"{desc} cpu {c}"))
    except BaseException:
        for l in links:
            l.close()
        raise
    return PerfEventGroup(links, cpus, program, desc)
