"""uprobes and uretprobes: a KPROBE-type program on a function of a user
space binary or library.

The kernel places a uprobe on a (file, file offset) pair, so a symbol is
first turned into the file offset of its code (ELF symbol table, then the
PT_LOAD segment that maps it). Three ways to attach, tried in this order:

1. the ``uprobe`` PMU: perf_event_open with the path and offset in
   config1/config2 (4.17+), then a perf-event link;
2. the legacy ``uprobe_events`` file of tracefs, which creates a named trace
   event that perf_event_open then opens as a tracepoint; the event is
   removed again when the link closes;
3. :func:`attach_uprobe_multi`: many offsets in one bpf_link
   (BPF_TRACE_UPROBE_MULTI, 6.6+); the program must be loaded with attach
   type TRACE_UPROBE_MULTI.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .. import _core, _linkattr
from ..enums import AttachType, ProgramType
from ..errors import ELFError, target_not_found_error
from ._base import FDLink, Link, link_create
from ._pmu import pmu_type, retprobe_bit
from .common import check_program_type, fd_of
from .perf_event import attach_perf_fd
from .tracing import open_probe_event

__all__ = [
    "attach_uprobe", "attach_uprobe_multi", "symbol_offset", "symbol_offsets",
    "UPROBE_MULTI_RETURN",
]

#: link_create.uprobe_multi.flags: attach return probes.
UPROBE_MULTI_RETURN = 1

# Where perf_event_attr.config carries a reference counter's offset (USDT
# semaphores): PERF_UPROBE_REF_CTR_OFFSET_SHIFT.
_REF_CTR_SHIFT = 32


# ---------------------------------------------------------------------------
# ELF: symbol -> file offset


def _strip_version(name: str) -> str:
    # "malloc@@GLIBC_2.2.5" -> malloc
    return name.split("@", 1)[0]


def symbol_offsets(path: str | os.PathLike[str], symbols: Iterable[str]) -> dict[str, int]:
    """File offsets of the functions *symbols* in the ELF file *path*
    (.symtab first, then .dynsym). Raises :class:`TargetNotFoundError` (a
    KeyError) naming what is missing."""
    from elftools.elf.elffile import ELFFile
    from elftools.common.exceptions import ELFError as _PyELFError

    wanted = set(symbols)
    addrs: dict[str, int] = {}
    path = os.fspath(path)
    with open(path, "rb") as f:
        try:
            elf = ELFFile(f)
            for secname in (".symtab", ".dynsym"):
                sec = elf.get_section_by_name(secname)
                if sec is None or not hasattr(sec, "iter_symbols"):
                    continue
                for sym in sec.iter_symbols():
                    if sym["st_info"]["type"] not in ("STT_FUNC", "STT_GNU_IFUNC"):
                        continue
                    if sym["st_shndx"] == "SHN_UNDEF" or not sym["st_value"]:
                        continue
                    name = sym.name
                    if name not in wanted:
                        name = _strip_version(name)
                        if name not in wanted:
                            continue
                    addrs.setdefault(name, sym["st_value"])
                if len(addrs) == len(wanted):
                    break
            missing = wanted - addrs.keys()
            if missing:
                raise target_not_found_error(errno.ENOENT, "find function",
                                             f"{', '.join(sorted(missing))} in {path}",
                                             key_error=True)
            segs = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        except _PyELFError as e:
            raise ELFError(f"{path}: {e}") from None
    out: dict[str, int] = {}
    for name, addr in addrs.items():
        for s in segs:
            if s["p_vaddr"] <= addr < s["p_vaddr"] + s["p_memsz"]:
                out[name] = addr - s["p_vaddr"] + s["p_offset"]
                break
        else:
            raise target_not_found_error(errno.ENOENT, "find function", f"{name} in {path}",
                                         f"its address {addr:#x} is in no loadable segment",
                                         key_error=True)
    return out


def symbol_offset(path: str | os.PathLike[str], symbol: str) -> int:
    """The file offset of the function *symbol* in the ELF file *path*."""
    return symbol_offsets(path, [symbol])[symbol]


# ---------------------------------------------------------------------------
# the uprobe PMU


def _open_pmu(ptype: int, path: str, offset: int, retprobe: bool, pid: int, ref_ctr: int) -> _core.FD:
    cpath = os.fsencode(path) + b"\0"
    config = (retprobe_bit("uprobe") if retprobe else 0) | (ref_ctr << _REF_CTR_SHIFT)
    cpu = 0 if pid < 0 else -1
    # config1 points at the path; *cpath* stays alive across the call.
    return _core.perf_event_open(ptype, config, pid, cpu, config1=_core.address_of(cpath),
                                 config2=offset)


# ---------------------------------------------------------------------------
# public API


def _resolve(path: str | os.PathLike[str], symbol: str | None, offset: int) -> tuple[str, int, str]:
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise target_not_found_error(errno.ENOENT, "uprobe attach", path, "no such binary")
    if symbol:
        off = symbol_offset(path, symbol) + offset
        where = f"{path}:{symbol}" + (f"+{offset:#x}" if offset else "")
    else:
        if not offset:
            raise ValueError("attach_uprobe needs a symbol or a file offset")
        off = offset
        where = f"{path}:{offset:#x}"
    return path, off, where


def attach_uprobe(program: Any, path: str | os.PathLike[str], symbol: str | None = None,
                  retprobe: bool = False, *, pid: int | None = None, cookie: int = 0,
                  offset: int = 0, ref_ctr_offset: int = 0, legacy: bool = False) -> Link:
    """Run a KPROBE-type program when a function of the ELF file *path* is
    entered (or returns, with *retprobe*).

    *symbol* names the function; *offset* is added to its file offset, or is
    the file offset itself when no symbol is given. *pid* limits the probe
    to one process (None: every process mapping the file). *cookie* is what
    ``bpf_get_attach_cookie`` returns. *ref_ctr_offset* is the file offset
    of a USDT semaphore the kernel increments while the probe exists.
    *legacy* forces the tracefs ``uprobe_events`` path (otherwise used only
    when the kernel has no uprobe PMU).
    """
    check_program_type(program, (ProgramType.KPROBE,), "attach_uprobe")
    path, off, where = _resolve(path, symbol, offset)
    p = -1 if pid is None else int(pid)
    desc = f"{'uretprobe' if retprobe else 'uprobe'} {where}" + (f" pid {p}" if p >= 0 else "")
    ptype = None if legacy else pmu_type("uprobe")
    if ptype is not None:
        pfd = _open_pmu(ptype, path, off, retprobe, p, ref_ctr_offset)
        return attach_perf_fd(program, pfd, cookie=cookie, description=desc)
    if ref_ctr_offset:
        raise ValueError("ref_ctr_offset needs the uprobe PMU (kernel 4.20+)")
    if any(c.isspace() for c in str(path)):
        # tracefs commands are whitespace-separated lines: such a path would
        # be read as more commands.
        raise ValueError(f"legacy uprobes cannot take a path with white space: {path!r}")
    pfd, remove = open_probe_event("uprobe_events", retprobe, f"{path}:{off:#x}", p)
    return attach_perf_fd(program, pfd, cookie=cookie, description=desc, cleanup=remove)


def attach_uprobe_multi(program: Any, path: str | os.PathLike[str],
                        symbols: Sequence[str] | None = None, retprobe: bool = False, *,
                        offsets: Sequence[int] | None = None, cookies: Sequence[int] | None = None,
                        ref_ctr_offsets: Sequence[int] | None = None,
                        pid: int | None = None) -> FDLink:
    """Attach a KPROBE-type program, loaded with attach type
    TRACE_UPROBE_MULTI, to many functions of *path* with one bpf_link.

    Give function names in *symbols*, or file offsets in *offsets*.
    *cookies*, when given, has one value per probe (``bpf_get_attach_cookie``).
    """
    check_program_type(program, (ProgramType.KPROBE,), "attach_uprobe_multi")
    path = os.path.abspath(os.fspath(path))
    if (symbols is None) == (offsets is None):
        raise ValueError("give exactly one of symbols and offsets")
    if symbols is not None:
        symbols = list(symbols)
        table = symbol_offsets(path, symbols)
        offs = [table[s] for s in symbols]
        what = ",".join(symbols)
    else:
        offs = [int(o) for o in offsets or ()]
        what = ",".join(f"{o:#x}" for o in offs)
    n = len(offs)
    if not n:
        raise ValueError("attach_uprobe_multi needs at least one probe")

    def arr(vals: Sequence[int] | None, name: str) -> np.ndarray | None:
        if vals is None:
            return None
        a = np.ascontiguousarray(np.asarray(vals, dtype=np.uint64))
        if a.shape != (n,):
            raise ValueError(f"{name} needs {n} values, one per probe")
        return a

    cpath = os.fsencode(path) + b"\0"
    off_a = arr(offs, "offsets")
    ck_a = arr(cookies, "cookies")
    rc_a = arr(ref_ctr_offsets, "ref_ctr_offsets")
    addr: Callable[[np.ndarray | None], int] = (
        lambda a: 0 if a is None else _core.address_of(a))  # noqa: E731
    # The buffers outlive the call below.
    extra = _linkattr.uprobe_multi(_core.address_of(cpath), n, addr(off_a), addr(rc_a),
                                   addr(ck_a), UPROBE_MULTI_RETURN if retprobe else 0,
                                   0 if pid is None else int(pid))
    fd = link_create(fd_of(program), 0, AttachType.TRACE_UPROBE_MULTI, 0, extra)
    kind = "uretprobe.multi" if retprobe else "uprobe.multi"
    return FDLink(fd, program, f"{kind} {path}:{what}")
