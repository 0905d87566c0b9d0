"""Text form of instructions, in the dialect of the kernel verifier and bpftool.

``r0 = *(u32 *)(r1 +4)``, ``if w1 == 0x0 goto pc+3``,
``call bpf_map_lookup_elem#1``, ``lock *(u64 *)(r1 +0) += r2`` ... The goal is
that a line of our output can be put next to a line of a verifier log and read
the same. Where the kernel prints something we cannot know (map ids after
load), we print what we do know: ``map_fd(5)`` or the map's name.
"""

from __future__ import annotations

from typing import Any

from .helpers import Helper
from .opcodes import (
    LD_IMM64,
    AtomicOp,
    Class,
    JumpOp,
    Mode,
    PSEUDO_BTF_ID,
    PSEUDO_CALL,
    PSEUDO_FUNC,
    PSEUDO_KFUNC_CALL,
    PSEUDO_MAP_FD,
    PSEUDO_MAP_IDX,
    PSEUDO_MAP_IDX_VALUE,
    PSEUDO_MAP_VALUE,
    Size,
)

__all__ = ["format_instruction"]

_ALU_OPS = {
    0x00: "+=", 0x10: "-=", 0x20: "*=", 0x30: "/=", 0x40: "|=", 0x50: "&=",
    0x60: "<<=", 0x70: ">>=", 0x90: "%=", 0xA0: "^=", 0xB0: "=", 0xC0: "s>>=",
}
_JMP_OPS = {
    0x10: "==", 0x20: ">", 0x30: ">=", 0x40: "&", 0x50: "!=", 0x60: "s>",
    0x70: "s>=", 0xA0: "<", 0xB0: "<=", 0xC0: "s<", 0xD0: "s<=",
}
_ATOMIC_OPS = {AtomicOp.ADD: ("+=", "add"), AtomicOp.OR: ("|=", "or"),
               AtomicOp.AND: ("&=", "and"), AtomicOp.XOR: ("^=", "xor")}
_SIZES = {Size.B: "u8", Size.H: "u16", Size.W: "u32", Size.DW: "u64"}
_SIZES_SX = {Size.B: "s8", Size.H: "s16", Size.W: "s32", Size.DW: "s64"}
_HELPER_NAMES = {h.value: "bpf_" + h.name for h in Helper}


def _target(pc: int, ref: str | None, resolved: bool) -> str:
    """A jump/call target: ``pc+3``, ``<label>`` or ``pc+3 <label>``."""
    if ref is None:
        return f"pc{pc:+d}"
    if resolved:
        return f"pc{pc:+d} <{ref}>"
    return f"<{ref}>"


def format_instruction(insn: Any, resolved: bool = False) -> str:
    """One line of disassembly for *insn*.

    With ``resolved=True`` the jump offsets are known to be final and are
    printed beside the label names; otherwise a labelled jump prints the label
    only (its offset field is not meaningful before resolution).
    """
    code = insn.opcode
    cls = code & 0x07
    dst, src, off, imm = insn.dst, insn.src, insn.offset, insn.constant
    ref = insn.reference

    if cls == Class.ALU or cls == Class.ALU64:
        r = "r" if cls == Class.ALU64 else "w"
        op = code & 0xF0
        x = code & 0x08
        if op == 0xD0:  # END
            if cls == Class.ALU64:
                return f"r{dst} = bswap{imm} r{dst}"
            return f"r{dst} = {'be' if x else 'le'}{imm} r{dst}"
        if op == 0x80:
            return f"{r}{dst} = -{r}{dst}"
        if op == 0xB0 and x and off:
            if off == 1 and cls == Class.ALU64:
                return (f"r{dst} = addr_space_cast(r{src}, "
                        f"{(imm & 0xFFFFFFFF) >> 16}, {imm & 0xFFFF})")
            return f"{r}{dst} = (s{off}){r}{src}"
        sym = _ALU_OPS.get(op)
        if sym is None:
            return _invalid(insn)
        if off == 1 and op in (0x30, 0x90):
            sym = "s" + sym
        if x:
            return f"{r}{dst} {sym} {r}{src}"
        return f"{r}{dst} {sym} {imm}"

    if cls == Class.JMP or cls == Class.JMP32:
        op = code & 0xF0
        if op == JumpOp.JA:
            if cls == Class.JMP32:
                return f"gotol {_target(imm, ref, resolved)}"
            return f"goto {_target(off, ref, resolved)}"
        if op == JumpOp.CALL and cls == Class.JMP:
            if src == PSEUDO_CALL:
                return f"call {_target(imm, ref, resolved)}"
            if src == PSEUDO_KFUNC_CALL:
                name = f" <{ref}>" if ref is not None else ""
                mod = f"[btf_fd_idx {off}]" if off else ""
                return f"call kfunc#{imm}{mod}{name}"
            return f"call {_HELPER_NAMES.get(imm, 'unknown')}#{imm}"
        if op == JumpOp.EXIT and cls == Class.JMP:
            return "exit"
        if op == JumpOp.JCOND and cls == Class.JMP:
            return f"may_goto {_target(off, ref, resolved)}"
        sym = _JMP_OPS.get(op)
        if sym is None:
            return _invalid(insn)
        r = "r" if cls == Class.JMP else "w"
        rhs = f"{r}{src}" if code & 0x08 else f"{imm & 0xFFFFFFFF:#x}"
        return f"if {r}{dst} {sym} {rhs} goto {_target(off, ref, resolved)}"

    size = code & 0x18
    mode = code & 0xE0
    sz = _SIZES[size]
    if cls == Class.LD:
        if code == LD_IMM64:
            return _format_ld_imm64(insn, resolved)
        if mode == Mode.ABS:
            return f"r0 = *({sz} *)skb[{imm}]"
        if mode == Mode.IND:
            return f"r0 = *({sz} *)skb[r{src} + {imm}]"
        return _invalid(insn)
    if cls == Class.LDX:
        if mode == Mode.MEM:
            return f"r{dst} = *({sz} *)(r{src} {off:+d})"
        if mode == Mode.MEMSX:
            return f"r{dst} = *({_SIZES_SX[size]} *)(r{src} {off:+d})"
        return _invalid(insn)
    if cls == Class.ST:
        if mode == Mode.MEM:
            return f"*({sz} *)(r{dst} {off:+d}) = {imm}"
        return _invalid(insn)
    # STX
    if mode == Mode.MEM:
        return f"*({sz} *)(r{dst} {off:+d}) = r{src}"
    if mode == Mode.ATOMIC:
        return _format_atomic(insn, sz)
    return _invalid(insn)


def _format_atomic(insn: Any, sz: str) -> str:
    dst, src, off, imm = insn.dst, insn.src, insn.offset, insn.constant
    mem = f"({sz} *)(r{dst} {off:+d})"
    bits = "64" if insn.opcode & 0x18 == Size.DW else ""
    if imm in _ATOMIC_OPS:
        return f"lock *{mem} {_ATOMIC_OPS[imm][0]} r{src}"
    if imm & ~0x01 in _ATOMIC_OPS and imm & 0x01:
        return f"r{src} = atomic{bits}_fetch_{_ATOMIC_OPS[imm & ~0x01][1]}({mem}, r{src})"
    if imm == AtomicOp.XCHG:
        return f"r{src} = atomic{bits}_xchg({mem}, r{src})"
    if imm == AtomicOp.CMPXCHG:
        return f"r0 = atomic{bits}_cmpxchg({mem}, r0, r{src})"
    if imm == AtomicOp.LOAD_ACQ:
        return f"r{dst} = load_acquire(({sz} *)(r{src} {off:+d}))"
    if imm == AtomicOp.STORE_REL:
        return f"store_release({mem}, r{src})"
    return _invalid(insn)


def _format_ld_imm64(insn: Any, resolved: bool) -> str:
    dst, src, value, ref = insn.dst, insn.src, insn.constant, insn.reference
    lo = value & 0xFFFFFFFF
    hi = (value >> 32) & 0xFFFFFFFF
    if src == 0:
        return f"r{dst} = {value & 0xFFFFFFFFFFFFFFFF:#x}"
    if src in (PSEUDO_MAP_FD, PSEUDO_MAP_VALUE):
        if ref is not None:
            what = f"map[{ref}]"
        elif isinstance(insn.map, int):
            what = f"map_fd({insn.map})"
        elif insn.map is not None:
            what = f"map[{getattr(insn.map, 'name', None) or repr(insn.map)}]"
        else:
            what = f"map_fd({lo})"
        if src == PSEUDO_MAP_VALUE:
            return f"r{dst} = {what}[0]+{hi}"
        return f"r{dst} = {what}"
    if src == PSEUDO_MAP_IDX:
        return f"r{dst} = map_idx({lo})"
    if src == PSEUDO_MAP_IDX_VALUE:
        return f"r{dst} = map_idx({lo})[0]+{hi}"
    if src == PSEUDO_BTF_ID:
        return f"r{dst} = btf_id({lo})"
    if src == PSEUDO_FUNC:
        return f"r{dst} = subprog[{_target(_s32(lo), ref, resolved)}]"
    return _invalid(insn)


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def _invalid(insn: Any) -> str:
    return (f"invalid opcode {insn.opcode:#04x} (dst r{insn.dst}, src r{insn.src}, "
            f"off {insn.offset}, imm {insn.constant})")
