"""kprobes and kretprobes: a KPROBE program on a kernel function.

Three ways, tried in this order by :func:`attach_kprobe`:

1. the ``kprobe`` PMU (4.17+): perf_event_open with the symbol name in
   config1 and the offset in config2, then a perf-event link;
2. tracefs ``kprobe_events``: a named trace event opened as a tracepoint,
   removed again when the link closes;

and :func:`attach_kprobe_multi` puts one program on many functions with one
bpf_link (BPF_TRACE_KPROBE_MULTI, 5.18+, needs CONFIG_FPROBE); that program
must be loaded with attach type TRACE_KPROBE_MULTI.

A kernel built without CONFIG_KPROBES has neither the PMU nor the tracefs
file: :func:`attach_kprobe` then raises :class:`NotSupportedError` (errno
EOPNOTSUPP) saying so.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .. import _core, _linkattr
from ..enums import AttachType, ProgramType
from ._base import FDLink, Link, link_create
from ._pmu import pmu_type, retprobe_bit
from .common import check_program_type, fd_of
from .perf_event import attach_perf_fd
from .tracing import open_probe_event, tracefs_root

__all__ = ["attach_kprobe", "attach_kprobe_multi", "kprobes_supported", "KPROBE_MULTI_RETURN"]

#: link_create.kprobe_multi.flags: attach return probes.
KPROBE_MULTI_RETURN = 1



def _has_kprobe_events() -> bool:
    try:
        return os.path.exists(os.path.join(tracefs_root(), "kprobe_events"))
    except FileNotFoundError:
        return False


def kprobes_supported() -> bool:
    """True when this kernel can place kprobes (a PMU or tracefs kprobe_events)."""
    return pmu_type("kprobe") is not None or _has_kprobe_events()


def _check_symbol(symbol: str) -> None:
    # The symbol ends up in a tracefs command line: keep it one token.
    if not symbol or any(c.isspace() for c in symbol) or ":" in symbol:
        raise ValueError(f"bad kernel symbol {symbol!r}")


def attach_kprobe(program: Any, symbol: str, retprobe: bool = False, *, offset: int = 0,
                  cookie: int = 0, legacy: bool = False) -> Link:
    """Run a KPROBE program when the kernel function *symbol* is entered
    (or, with *retprobe*, returns). *offset* moves a kprobe into the function
    body. *cookie* is what ``bpf_get_attach_cookie`` returns. *legacy* forces
    tracefs ``kprobe_events`` even when the kprobe PMU exists.
    """
    check_program_type(program, (ProgramType.KPROBE,), "attach_kprobe")
    _check_symbol(symbol)
    if retprobe and offset:
        raise ValueError("a kretprobe has no offset")
    desc = f"{'kretprobe' if retprobe else 'kprobe'} {symbol}" + (f"+{offset:#x}" if offset else "")
    ptype = None if legacy else pmu_type("kprobe")
    if ptype is not None:
        name = symbol.encode() + b"\0"
        # config1 points at *name*, which stays alive across the call.
        pfd = _core.perf_event_open(ptype, retprobe_bit("kprobe") if retprobe else 0, -1, 0,
                                    config1=_core.address_of(name), config2=offset)
        return attach_perf_fd(program, pfd, cookie=cookie, description=desc)
    if not _has_kprobe_events():
        from .. import features
        raise features.probe_kprobes().error("kprobe attach", symbol)
    target = symbol + (f"+{offset}" if offset else "")
    pfd, remove = open_probe_event("kprobe_events", retprobe, target)
    return attach_perf_fd(program, pfd, cookie=cookie, description=desc, cleanup=remove)


def attach_kprobe_multi(program: Any, symbols: Sequence[str] | None = None, retprobe: bool = False,
                        *, addresses: Sequence[int] | None = None,
                        cookies: Sequence[int] | None = None) -> FDLink:
    """Attach a KPROBE program loaded with attach type TRACE_KPROBE_MULTI to
    many kernel functions with one bpf_link (by name, or by address from
    /proc/kallsyms). *cookies* has one value per function.
    """
    check_program_type(program, (ProgramType.KPROBE,), "attach_kprobe_multi")
    if (symbols is None) == (addresses is None):
        raise ValueError("give exactly one of symbols and addresses")
    keep: list[Any] = []
    syms_ptr = addrs_ptr = 0
    if symbols is not None:
        names = []
        for s in symbols:
            _check_symbol(s)
            names.append(s.encode() + b"\0")
        n = len(names)
        keep.extend(names)
        ptrs = np.array([_core.address_of(b) for b in names], dtype=np.uint64)
        keep.append(ptrs)
        syms_ptr = _core.address_of(ptrs) if n else 0
        what = ",".join(symbols)
    else:
        addrs = np.ascontiguousarray(np.asarray(addresses, dtype=np.uint64))
        n = len(addrs)
        keep.append(addrs)
        addrs_ptr = _core.address_of(addrs) if n else 0
        what = ",".join(f"{a:#x}" for a in addrs)
    if not n:
        raise ValueError("attach_kprobe_multi needs at least one function")
    cookies_ptr = 0
    if cookies is not None:
        ck = np.ascontiguousarray(np.asarray(cookies, dtype=np.uint64))
        if ck.shape != (n,):
            raise ValueError(f"cookies needs {n} values, one per function")
        keep.append(ck)
        cookies_ptr = _core.address_of(ck)
    extra = _linkattr.kprobe_multi(KPROBE_MULTI_RETURN if retprobe else 0, n,
                                   syms_ptr, addrs_ptr, cookies_ptr)
    fd = link_create(fd_of(program), 0, AttachType.TRACE_KPROBE_MULTI, 0, extra)
    del keep
    kind = "kretprobe.multi" if retprobe else "kprobe.multi"
    return FDLink(fd, program, f"{kind} {what}")
