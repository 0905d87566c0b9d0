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

import numpy as np

from .asm.opcodes import PSEUDO_FUNC, PSEUDO_KFUNC_CALL, PSEUDO_MAP_FD, PSEUDO_MAP_VALUE
from .errors import ELFError
from .linker import resolve_kfunc, resolve_ksym

__all__ = ["link_raw"]



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


def link_raw(spec: Any, ps: Any, maps: dict[str, Any], module_fds: dict[str, Any]
             ) -> tuple[Any, ...] | None:
    """(instructions, func_info, line_info, fd_array) as bytes, or None when
    the program must take the Instructions path."""
    obj_ctx = getattr(spec, "_object", None)
    label = ps.__dict__.get("_label")
    if obj_ctx is None or label is None or not callable(ps.__dict__.get("_insns")):
        return None
    obj, ctx, originals = obj_ctx
    if obj.byte_order != sys.byteorder:
        return None
    order = [label]
    codes = []
    seen = {label}
    i = 0
    while i < len(order):
        lb = order[i]
        i += 1
        if spec.functions.get(lb) is not originals.get(lb):
            return None  # the user replaced a function
        f = obj.labels.get(lb)
        if f is None:
            raise ELFError(f"program {ps.name!r} calls {lb!r}, which is not a function "
                           f"of the object")
        code = obj.analyze(f, *ctx)
        if code.ext[2]:
            return None  # CO-RE relocations go through btf.core on Instructions
        codes.append((f, code))
        for rel in code.relocs.values():
            if rel[0] in ("call", "func") and rel[1] not in seen:
                seen.add(rel[1])
                order.append(rel[1])
    base = {}
    total = 0
    for f, code in codes:
        base[f.label] = total
        total += code.nslots
    buf = bytearray(b"".join(code.raw for _, code in codes))
    fd_array: list[int] = []
    ksyms = spec.ksyms
    funcs, lines = [], []
    for f, code in codes:
        b = base[f.label]
        for slot, rel in code.relocs.items():
            s = b + slot
            kind = rel[0]
            if kind == "call":
                _patch(buf, s, None, base[rel[1]] - s - 1)
            elif kind == "func":
                _patch(buf, s, PSEUDO_FUNC, base[rel[1]] - s - 1, 0)
            elif kind == "map" or kind == "mapval":
                m = maps.get(rel[1])
                if m is None:
                    raise ELFError(f"program {ps.name!r} uses map {rel[1]!r}, which the "
                                   f"collection does not have")
                if kind == "map":
                    _patch(buf, s, PSEUDO_MAP_FD, m.fd, 0)
                else:
                    _patch(buf, s, PSEUDO_MAP_VALUE, m.fd, rel[2])
            elif kind == "kfunc":
                _kk, weak, _typed = ksyms[rel[1]]
                found = resolve_kfunc(rel[1], weak, module_fds, fd_array)
                if found is None:
                    _patch(buf, s, 0, 0, off=0)
                else:
                    _patch(buf, s, PSEUDO_KFUNC_CALL, found[0], off=found[1])
            else:  # ksym
                kk, weak, typed = ksyms[rel[1]]
                src, value = resolve_ksym(rel[1], kk, weak, typed, module_fds)
                _patch(buf, s, src, value & 0xFFFFFFFF, value >> 32)
        fi_rel, li_rel = _relative_ext(f, code)
        if b == 0:
            funcs.append(fi_rel)
            lines.append(li_rel)
        else:
            funcs.append(_shifted(fi_rel, 2, b))
            lines.append(_shifted(li_rel, 4, b))
    func_info = b"".join(funcs)
    if not func_info or func_info[:4] != b"\0\0\0\0":
        return bytes(buf), b"", b"", fd_array
    return bytes(buf), func_info, b"".join(lines), fd_array


def _relative_ext(f: Any, code: Any) -> tuple[bytes, bytes]:
    """func_info and line_info of one function, slots relative to its start (cached)."""
    got = getattr(code, "rel_ext", None)
    if got is None:
        fi, rows, _ = code.ext
        func = b"".join(struct.pack("=II", slot, tid) for slot, tid in fi)
        line = b""
        if rows is not None and len(rows):
            r = rows.astype(np.uint32)
            r[:, 0] = (r[:, 0] - f.start) // 8
            line = r.tobytes()
        got = code.rel_ext = (func, line)
    return got


def _shifted(records: bytes, width: int, base: int) -> bytes:
    """*records* (rows of *width* u32, the first a slot) moved by *base* slots."""
    if not records:
        return records
    a = array.array("I", records)     # a few rows: plain ints beat numpy here
    for i in range(0, len(a), width):
        a[i] += base
    return a.tobytes()
