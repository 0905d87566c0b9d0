"""The loader's fast path: link a program straight from the object's bytes.

When a program and the functions it calls are as the object has them (the
user never touched ``ProgramSpec.instructions`` or ``CollectionSpec.functions``)
and carry no CO-RE relocation, there is no need for an Instruction object per
instruction: the functions' bytes are concatenated, and only the relocated
instructions are patched in a numpy view (map fds, data offsets, call offsets,
kfunc and ksym ids). func_info and line_info come from the .BTF.ext arrays,
shifted to each function's place. The result is the same program the
Instructions path (decode, link_program, resolve, encode) produces; a test
compares the two as the kernel translated them.
"""

from __future__ import annotations

import array
import struct
import sys
from typing import Any

from .asm.opcodes import PSEUDO_FUNC, PSEUDO_KFUNC_CALL, PSEUDO_MAP_FD, PSEUDO_MAP_VALUE
from .errors import BTFError, ELFError
from .linker import resolve_kfunc, resolve_ksym

__all__ = ["link_raw", "unedited_label"]



_LITTLE = sys.byteorder == "little"
_IMM = struct.Struct("=I")
_OFF = struct.Struct("=h")


def _patch(buf: bytearray, s: int, src: int | None, imm: int, imm2: int | None = None,
           off: int | None = None) -> None:
    """Set the src register, immediate(s) and offset of the instruction at slot *s*."""
    p = 8 * s
    if src is not None:
        regs = buf[p + 1]
        buf[p + 1] = (regs & 0x0F) | (src << 4) if _LITTLE else (regs & 0xF0) | src
    if off is not None:
        _OFF.pack_into(buf, p + 2, off)
    _IMM.pack_into(buf, p + 4, imm & 0xFFFFFFFF)
    if imm2 is not None:
        _IMM.pack_into(buf, p + 12, imm2 & 0xFFFFFFFF)


class _Linked:
    """One function as every program of one load uses it: its bytes with the
    map, data and ksym references patched (the same fds for every program
    of the load), the calls still to patch, and its func/line info."""

    __slots__ = ("raw", "calls", "callees", "func", "line", "nslots")

    def __init__(self, raw: bytes, calls: list[Any], callees: list[Any], func: bytes, line: bytes,
                 nslots: int) -> None:
        self.raw = raw
        self.calls = calls
        self.callees = callees
        self.func = func
        self.line = line
        self.nslots = nslots


def _linked(spec: Any, ps: Any, obj: Any, ctx: tuple[Any, ...], label: str, maps: dict[Any, Any],
            module_fds: dict[Any, Any], fd_array: list[Any], cache: dict[Any, Any]) -> Any:
    """The _Linked of function *label* (from *cache* when the load made it
    already); None when it needs the Instructions path (CO-RE)."""
    got = cache.get(label)
    if got is not None:
        return got
    f = obj.labels.get(label)
    if f is None:
        raise ELFError(f"program {ps.name!r} calls {label!r}, which is not a function "
                       f"of the object")
    code = obj.analyze(f, *ctx)
    if code.ext[2]:
        return None  # CO-RE relocations go through btf.core on Instructions
    buf = bytearray(code.raw)
    calls: list[Any] = []
    callees: list[Any] = []
    per_program = False
    ksyms = spec.ksyms
    for slot, rel in code.relocs.items():
        kind = rel[0]
        if kind == "call" or kind == "func":
            calls.append((slot, kind == "func", rel[1]))
            if rel[1] not in callees:
                callees.append(rel[1])
        elif kind == "map" or kind == "mapval":
            m = maps.get(rel[1])
            if m is None:
                raise ELFError(f"program {ps.name!r} uses map {rel[1]!r}, which the "
                               f"collection does not have")
            # _patch inlined: a function has a map reference every few slots.
            p = 8 * slot
            regs = buf[p + 1]
            src = PSEUDO_MAP_FD if kind == "map" else PSEUDO_MAP_VALUE
            buf[p + 1] = (regs & 0x0F) | (src << 4) if _LITTLE else (regs & 0xF0) | src
            _IMM.pack_into(buf, p + 4, m.fd)
            _IMM.pack_into(buf, p + 12, 0 if kind == "map" else rel[2] & 0xFFFFFFFF)
        elif kind == "kfunc":
            # The fd_array index of a module kfunc is the program's own.
            per_program = True
            _kk, weak, _typed = ksyms[rel[1]]
            found = resolve_kfunc(rel[1], weak, module_fds, fd_array)
            if found is None:
                _patch(buf, slot, 0, 0, off=0)
            else:
                _patch(buf, slot, PSEUDO_KFUNC_CALL, found[0], off=found[1])
        else:  # ksym
            kk, weak, typed = ksyms[rel[1]]
            src, value = resolve_ksym(rel[1], kk, weak, typed, module_fds)
            _patch(buf, slot, src, value & 0xFFFFFFFF, value >> 32)
    func, line = _relative_ext(f, code)
    got = _Linked(bytes(buf), calls, callees, func, line, code.nslots)
    if not per_program:
        cache[label] = got
    return got


def link_raw(spec: Any, ps: Any, maps: dict[Any, Any], module_fds: dict[Any, Any],
             cache: dict[Any, Any] | None = None) -> tuple[Any, ...] | None:
    """(instructions, func_info, line_info, fd_array) as bytes, or None when
    the program must take the Instructions path.

    *cache* (one dict per load) keeps each function's patched bytes for the
    next program that calls it.
    """
    obj_ctx = getattr(spec, "_object", None)
    label = unedited_label(ps)
    if obj_ctx is None or label is None:
        return None
    obj, ctx, originals = obj_ctx
    if obj.byte_order != sys.byteorder:
        return None
    if cache is None:
        cache = {}
    # The C linker first (see _c_state); None: the Python linker below.
    st: tuple[Any, ...] | None = cache.get(_C)
    if st is None:
        st = cache[_C] = _c_state(spec, obj, ctx, originals, maps)
    if st:
        i = st[1].get(label)
        if i is not None:
            got = st[0].link(i)
            if got is not None:
                return got[0], got[1], got[2], []
    fd_array: list[int] = []
    functions = spec.functions
    order = [label]
    parts = []
    seen = {label}
    i = 0
    while i < len(order):
        lb = order[i]
        i += 1
        if functions.get(lb) is not originals.get(lb):
            return None  # the user replaced a function
        ln = _linked(spec, ps, obj, ctx, lb, maps, module_fds, fd_array, cache)
        if ln is None:
            return None
        parts.append(ln)
        for callee in ln.callees:
            if callee not in seen:
                seen.add(callee)
                order.append(callee)
    if len(parts) > 1:
        tail = _tail(order, parts, cache)
        if tail is not None:
            return _with_tail(label, parts[0], tail, fd_array)
    base = {}
    total = 0
    for lb, ln in zip(order, parts):
        base[lb] = total
        total += ln.nslots
    funcs, lines = [], []
    if len(parts) == 1 and not parts[0].calls:
        buf = parts[0].raw
    else:
        buf = bytearray(b"".join(ln.raw for ln in parts))
    for lb, ln in zip(order, parts):
        b = base[lb]
        for slot, is_func, target in ln.calls:
            _patch_call(buf, b + slot, is_func, base[target])
        if b == 0:
            funcs.append(ln.func)
            lines.append(ln.line)
        else:
            funcs.append(_shifted(ln.func, 2, b))
            lines.append(_shifted(ln.line, 4, b))
    return _result(buf, b"".join(funcs), b"".join(lines), fd_array)


def unedited_label(ps: Any) -> str | None:
    """The object function behind *ps* while its instructions are still the
    object's bytes (never read as Instructions, never replaced), else None."""
    d = ps.__dict__
    label = d.get("_label")
    return label if label is not None and callable(d.get("_insns")) else None


_C = 0   # the cache key of _c_state's answer (the other keys are labels and tuples)


def _c_state(spec: Any, obj: Any, ctx: tuple[Any, ...], originals: dict[Any, Any],
             maps: dict[Any, Any]) -> tuple[Any, ...]:
    """Once per load, for the C linker: (LinkTables.linker with this load's
    map fds and the functions the user left as they are, function index by
    label); () without it (no C build, or tables that failed: then
    the Python path raises whatever it finds, as it always has)."""
    try:
        tables = obj.link_tables(ctx)
    except (ELFError, BTFError):
        return ()
    if tables is None:
        return ()
    fds = []
    for name in tables.map_names:
        m = maps.get(name)
        fds.append(None if m is None else m.fd)
    functions = spec.functions
    usable = bytes([functions.get(lb) is originals.get(lb) for lb in tables.labels])
    return tables.linker(fds, usable), tables.index


def _patch_call(buf: bytearray, s: int, is_func: bool, t: int) -> None:
    """Point the call (or, *is_func*, the function reference) at slot *s* to slot *t*."""
    if is_func:
        _patch(buf, s, PSEUDO_FUNC, t - s - 1, 0)
    else:
        _patch(buf, s, None, t - s - 1)


def _result(buf: Any, func_info: bytes, line_info: bytes,
            fd_array: list[int]) -> tuple[Any, ...]:
    """link_raw's result: func/line info only when the first func_info record
    is at slot 0 (the kernel refuses any other first record)."""
    if not func_info or func_info[:4] != b"\0\0\0\0":
        return bytes(buf), b"", b"", fd_array
    return bytes(buf), func_info, line_info, fd_array


class _Tail:
    """The subprograms a program calls, linked once per load for every
    program that calls the same set in the same order: their bytes with
    the calls between them patched (relative offsets do not depend on where
    the tail lands), their func/line info relative to the tail's start."""

    __slots__ = ("raw", "base", "func", "line", "at")

    def __init__(self, raw: bytes, base: dict[str, int], func: bytes, line: bytes) -> None:
        self.raw = raw
        self.base = base
        self.func = func
        self.line = line
        # (func, line) moved behind a head of n slots, by n: programs of
        # one object often share their length.
        self.at: dict[int, tuple[bytes, bytes]] = {}


def _tail(order: list[str], parts: list[Any], cache: dict[Any, Any]) -> _Tail | None:
    """The _Tail of order[1:] (cached in *cache*); None when a subprogram
    calls back into the program or holds per-program references (kfuncs)."""
    key = tuple(order[1:])
    got = cache.get(key)
    if got is not None:
        return got  # type: ignore[no-any-return]
    base: dict[str, int] = {}
    total = 0
    for lb, ln in zip(key, parts[1:]):
        hit: Any = cache.get(lb)
        if hit is not ln:
            return None  # made for this program only (a kfunc's fd_array slot)
        base[lb] = total
        total += ln.nslots
    buf = bytearray(b"".join(ln.raw for ln in parts[1:]))
    funcs, lines = [], []
    for lb, ln in zip(key, parts[1:]):
        b = base[lb]
        for slot, is_func, target in ln.calls:
            t = base.get(target)
            if t is None:
                return None  # a call back into the program's own function
            _patch_call(buf, b + slot, is_func, t)
        funcs.append(_shifted(ln.func, 2, b))
        lines.append(_shifted(ln.line, 4, b))
    got = cache[key] = _Tail(bytes(buf), base, b"".join(funcs), b"".join(lines))
    return got


def _with_tail(label: str, head: Any, tail: _Tail, fd_array: list[int]) -> tuple[Any, ...]:
    """link_raw's result for a program function *head* followed by *tail*."""
    n = head.nslots
    buf = bytearray(head.raw)
    buf += tail.raw
    tb = tail.base
    for slot, is_func, target in head.calls:
        _patch_call(buf, slot, is_func, 0 if target == label else n + tb[target])
    moved = tail.at.get(n)
    if moved is None:
        moved = tail.at[n] = (_shifted(tail.func, 2, n), _shifted(tail.line, 4, n))
    return _result(buf, head.func + moved[0], head.line + moved[1], fd_array)


def _relative_ext(f: Any, code: Any) -> tuple[bytes, bytes]:
    """func_info and line_info of one function, slots relative to its start (cached)."""
    got: tuple[bytes, bytes] | None = code.rel_ext
    if got is None:
        func = array.array("I", [v for rec in code.ext[0] for v in rec]).tobytes()
        line, first = code.line_raw   # rows by section slot: move them by the start
        got = code.rel_ext = (func, _shifted(line, 4, -first) if first else line)
    return got


def _shifted(records: bytes, width: int, base: int) -> bytes:
    """*records* (rows of *width* u32, the first a slot) moved by *base* slots."""
    if not records or not base:
        return records
    a = array.array("I", records)     # a few rows: plain ints beat numpy here
    for i in range(0, len(a), width):
        a[i] += base
    return a.tobytes()
