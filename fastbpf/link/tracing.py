"""Tracing hooks: tracepoints, raw tracepoints, tp_btf, and the
trampoline-based fentry / fexit / fmod_ret / LSM programs.

* :func:`attach_tracepoint` -- a TRACEPOINT program on a trace event
  (``events/<category>/<name>`` in tracefs), through one perf event.
* :func:`attach_raw_tracepoint` -- a RAW_TRACEPOINT program by tracepoint name
  (BPF_RAW_TRACEPOINT_OPEN); its context is the raw tracepoint arguments.
* :func:`attach_tp_btf` -- a TRACING program loaded with attach type
  TRACE_RAW_TP and the BTF id of ``btf_trace_<name>``: typed arguments.
* :func:`attach_tracing` -- fentry / fexit / fmod_ret / LSM programs: the
  target was fixed at load time (attach_btf_id), so attaching only names
  the program.
"""

from __future__ import annotations

import errno
import itertools
import os
from typing import Any, Callable

from .. import _core, _linkattr
from ..enums import AttachType, ProgramType
from ..errors import BPFError, target_not_found_error
from ._base import FDLink, Link
from .common import check_program_type, fd_of
from .perf_event import PerfType, attach_perf_fd

__all__ = [
    "tracefs_root", "tracepoint_id", "attach_tracepoint", "attach_raw_tracepoint",
    "attach_tp_btf", "attach_tracing",
]

_TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


def tracefs_root() -> str:
    """Where tracefs is mounted. Raises FileNotFoundError (with the mount
    command) when it is nowhere."""
    for path in _TRACEFS_CANDIDATES:
        if os.path.exists(os.path.join(path, "events")):
            return path
    for path in _TRACEFS_CANDIDATES:
        # Mounted, but this user may not look inside (tracefs is 0700).
        if os.path.ismount(path) or (os.path.isdir(path) and not os.access(path, os.R_OK | os.X_OK)):
            raise PermissionError(
                errno.EACCES, f"tracefs is mounted at {path} but this process may not read it "
                "(it needs root, or CAP_PERFMON and read access to tracefs)", path)
    raise FileNotFoundError(
        errno.ENOENT, "tracefs is not mounted (mount -t tracefs tracefs /sys/kernel/tracing)",
        _TRACEFS_CANDIDATES[0])


def _check_name(what: str, name: str) -> None:
    # The names become path components; refuse anything that could walk.
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"bad {what} {name!r}")


def tracepoint_id(category: str, name: str) -> int:
    """The id of the trace event ``category:name`` (tracefs
    ``events/<category>/<name>/id``), as perf_event_open wants it.
    Raises :class:`TargetNotFoundError` (a FileNotFoundError) when there is none."""
    _check_name("tracepoint category", category)
    _check_name("tracepoint name", name)
    path = os.path.join(tracefs_root(), "events", category, name, "id")
    try:
        with open(path) as f:
            return int(f.read())
    except FileNotFoundError:
        raise target_not_found_error(errno.ENOENT, "find tracepoint", f"{category}:{name}",
                                     f"no {path}") from None


_counter = itertools.count()
_GROUP = "fastbpf"


def _write_tracefs(file: str, text: str) -> None:
    # Python's open(..., "a") seeks to the end, and tracefs refuses that
    # with EINVAL: write through a raw O_APPEND fd instead.
    fd = os.open(os.path.join(tracefs_root(), file), os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def open_probe_event(file: str, retprobe: bool, target: str,
                     pid: int = -1) -> tuple[_core.FD, Callable[[], None]]:
    """Create a dynamic trace event through tracefs *file* (``kprobe_events``
    or ``uprobe_events``) on *target* (``symbol+off`` or ``path:0xoffset``)
    and open it as a perf event. Returns the fd and a function that removes
    the event again (to run once the fd is closed).

    Event names carry our pid and a counter, so concurrent users never clash
    and a crashed process's leftovers are recognisable (``fastbpf/fbpf_<pid>_*``).
    """
    kind = "r" if retprobe else "p"
    event = f"fbpf_{os.getpid()}_{next(_counter)}_{kind}"
    _write_tracefs(file, f"{kind}:{_GROUP}/{event} {target}\n")

    def remove() -> None:
        try:
            _write_tracefs(file, f"-:{_GROUP}/{event}\n")
        except OSError:
            pass  # gone already (tracefs reset by someone else)

    try:
        tp = tracepoint_id(_GROUP, event)
        return _core.perf_event_open(PerfType.TRACEPOINT, tp, pid, 0 if pid < 0 else -1), remove
    except BaseException:
        remove()
        raise


def attach_tracepoint(program: Any, category: str, name: str, *, cookie: int = 0) -> Link:
    """Attach a TRACEPOINT program to ``category:name``, e.g.
    ``("syscalls", "sys_enter_getpid")``.

    One perf event (pid -1, cpu 0) is opened: the program belongs to the
    trace event, so it runs once per hit whatever CPU the hit is on.
    *cookie* is what ``bpf_get_attach_cookie`` returns in the program.
    """
    check_program_type(program, (ProgramType.TRACEPOINT,), "attach_tracepoint")
    tp = tracepoint_id(category, name)
    pfd = _core.perf_event_open(PerfType.TRACEPOINT, tp, -1, 0)
    return attach_perf_fd(program, pfd, cookie=cookie, description=f"tracepoint {category}:{name}")


def attach_raw_tracepoint(program: Any, name: str, *, cookie: int = 0) -> FDLink:
    """Attach a RAW_TRACEPOINT (or RAW_TRACEPOINT_WRITABLE) program to the
    tracepoint *name*, e.g. ``"sys_enter"`` or ``"sched_switch"``."""
    check_program_type(program, (ProgramType.RAW_TRACEPOINT, ProgramType.RAW_TRACEPOINT_WRITABLE),
                "attach_raw_tracepoint")
    if not name:
        raise ValueError("attach_raw_tracepoint needs a tracepoint name")
    try:
        fd = _core.raw_tracepoint_open(name, fd_of(program), cookie)
    except BPFError as e:
        if e.errno != errno.ENOENT:
            raise
        raise target_not_found_error(errno.ENOENT, "raw tracepoint open", name,
                                     "the kernel has no such tracepoint") from None
    return FDLink(fd, program, f"raw_tp {name}")


def _spec_attr(program: Any, attr: str) -> Any:
    spec = getattr(program, "spec", None)
    return getattr(spec, attr, None) if spec is not None else None


def attach_tp_btf(program: Any, *, cookie: int = 0) -> FDLink:
    """Attach a tp_btf program (TRACING, attach type TRACE_RAW_TP, loaded
    with the BTF id of ``btf_trace_<name>``). The tracepoint comes from the
    program itself, so no name is given here."""
    check_program_type(program, (ProgramType.TRACING,), "attach_tp_btf")
    target = _spec_attr(program, "attach_to") or ""
    fd = _core.raw_tracepoint_open(None, fd_of(program), cookie)
    return FDLink(fd, program, f"tp_btf {target}".strip())


_TRACING_TYPES = {
    AttachType.TRACE_FENTRY: "fentry",
    AttachType.TRACE_FEXIT: "fexit",
    AttachType.MODIFY_RETURN: "fmod_ret",
    AttachType.LSM_MAC: "lsm",
    AttachType.TRACE_RAW_TP: "tp_btf",
}


def attach_tracing(program: Any, *, attach_type: AttachType | int | None = None,
                   cookie: int = 0) -> FDLink:
    """Attach an fentry / fexit / fmod_ret (TRACING) or LSM program.

    The target was chosen when the program was loaded (``attach_to`` /
    ``attach_btf_id`` in its spec); *attach_type* defaults to the spec's.
    Uses BPF_LINK_CREATE, which takes *cookie*; kernels older than 5.13
    only have BPF_RAW_TRACEPOINT_OPEN, used then when *cookie* is 0.
    """
    check_program_type(program, (ProgramType.TRACING, ProgramType.LSM), "attach_tracing")
    if attach_type is None:
        attach_type = _spec_attr(program, "attach_type")
    if attach_type is None:
        attach_type = (AttachType.LSM_MAC if getattr(program, "type", None) == ProgramType.LSM
                       else AttachType.TRACE_FENTRY)
    attach_type = AttachType(attach_type)
    if attach_type == AttachType.TRACE_RAW_TP:
        return attach_tp_btf(program, cookie=cookie)
    kind = _TRACING_TYPES.get(attach_type)
    if kind is None:
        raise ValueError(f"attach_tracing handles fentry/fexit/fmod_ret/lsm, not {attach_type.name}")
    desc = f"{kind} {_spec_attr(program, 'attach_to') or ''}".strip()
    # target_btf_id 0: the target chosen at load time.
    extra = _linkattr.tracing(0, cookie & 0xFFFFFFFFFFFFFFFF)
    try:
        fd = _core.link_create(fd_of(program), 0, int(attach_type), 0, extra)
    except BPFError as e:
        if e.errno != errno.EINVAL or cookie:
            raise
        fd = _core.raw_tracepoint_open(None, fd_of(program), 0)
    return FDLink(fd, program, desc)
