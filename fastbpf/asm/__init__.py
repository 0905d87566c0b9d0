"""The eBPF instruction set as Python objects: build, encode, decode, disassemble.

A small program, written by hand::

    from fastbpf import asm
    from fastbpf.asm import R0, R1, R2, R10, Size, Helper

    prog = asm.Instructions([
        asm.store_imm(R10, -4, 0, Size.W),           # key = 0 on the stack
        asm.Mov.reg(R2, R10),
        asm.Add.imm(R2, -4),
        asm.load_map_ptr(R1, "counters"),            # by name, bound later
        asm.call(Helper.map_lookup_elem),
        asm.JEq.imm(R0, 0, "out"),                   # forward jump to a label
        asm.Mov.imm(R1, 1),
        asm.atomic_add(R0, 0, R1, Size.DW),
        asm.Mov.imm(R0, 0).with_symbol("out"),
        asm.exit(),
    ])
    raw = prog.resolve_maps({"counters": counters_map}).encode()
    print(prog)        # verifier-style listing with labels

Building blocks:

* :class:`Instruction` (immutable value) and :class:`Instructions` (a list:
  ``encode``, ``decode``, ``resolve``, ``resolve_maps``, ``label_targets``).
* Registers ``R0``..``R10`` (``RFP`` = ``R10``), :class:`Size`,
  :class:`Helper`, and the opcode enums in :mod:`fastbpf.asm.opcodes`.
* ALU ops ``Add Sub Mul Div SDiv Mod SMod Or And Xor Lsh Rsh Arsh Mov`` and
  their ``...32`` forms with ``.imm(dst, value)`` / ``.reg(dst, src)``;
  ``Neg(dst)``/``Neg32(dst)``; ``movsx``, ``movsx32``, ``to_le``, ``to_be``,
  ``bswap``, ``addr_space_cast``.
* Jumps ``JEq JNE JGT JGE JLT JLE JSGT JSGE JSLT JSLE JSet`` and ``...32``
  with ``.imm(dst, value, target)`` / ``.reg(dst, src, target)``; ``ja``,
  ``gotol``, ``may_goto``, ``call``, ``call_func``, ``call_kfunc``, ``exit``.
* Memory: ``load_mem``, ``load_mem_sx``, ``store_mem``, ``store_imm``,
  ``load_abs``, ``load_ind``; atomics ``atomic_add/or/and/xor`` (``fetch=``),
  ``atomic_xchg``, ``atomic_cmpxchg``, ``load_acquire``, ``store_release``.
* 64-bit loads: ``load_imm64``, ``load_map_ptr``, ``load_map_value``,
  ``load_map_idx``, ``load_map_idx_value``, ``load_btf_id``, ``load_func_ptr``.
"""

from __future__ import annotations

from .build import (
    ALU,
    Add, Add32, And, And32, Arsh, Arsh32, Div, Div32, Lsh, Lsh32, Mod, Mod32,
    Mov, Mov32, Mul, Mul32, Neg, Neg32, Or, Or32, Rsh, Rsh32, SDiv, SDiv32,
    SMod, SMod32, Sub, Sub32, Xor, Xor32,
    Jump,
    JEq, JEq32, JGE, JGE32, JGT, JGT32, JLE, JLE32, JLT, JLT32, JNE, JNE32,
    JSGE, JSGE32, JSGT, JSGT32, JSLE, JSLE32, JSLT, JSLT32, JSet, JSet32,
    Unary,
    addr_space_cast,
    atomic_add,
    atomic_and,
    atomic_cmpxchg,
    atomic_or,
    atomic_xchg,
    atomic_xor,
    bswap,
    call,
    call_func,
    call_kfunc,
    exit,
    gotol,
    ja,
    load_abs,
    load_acquire,
    load_btf_id,
    load_func_ptr,
    load_imm64,
    load_ind,
    load_map_idx,
    load_map_idx_value,
    load_map_ptr,
    load_map_value,
    load_mem,
    load_mem_sx,
    may_goto,
    movsx,
    movsx32,
    store_imm,
    store_mem,
    store_release,
    to_be,
    to_le,
)
from .disasm import format_instruction
from .helpers import Helper
from .instruction import INSN_SIZE, Instruction, Instructions
from .opcodes import (
    FETCH,
    LD_IMM64,
    PSEUDO_BTF_ID,
    PSEUDO_CALL,
    PSEUDO_CALL_HELPER,
    PSEUDO_FUNC,
    PSEUDO_KFUNC_CALL,
    PSEUDO_MAP_FD,
    PSEUDO_MAP_IDX,
    PSEUDO_MAP_IDX_VALUE,
    PSEUDO_MAP_VALUE,
    R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10, RFP,
    ALUOp,
    AtomicOp,
    Class,
    JumpOp,
    Mode,
    Register,
    Size,
    Source,
)

__all__ = [
    "Instruction", "Instructions", "INSN_SIZE", "format_instruction",
    "Helper", "Register", "Size", "Class", "Mode", "Source", "ALUOp", "JumpOp",
    "AtomicOp", "FETCH", "LD_IMM64",
    "PSEUDO_MAP_FD", "PSEUDO_MAP_VALUE", "PSEUDO_BTF_ID", "PSEUDO_FUNC",
    "PSEUDO_MAP_IDX", "PSEUDO_MAP_IDX_VALUE", "PSEUDO_CALL_HELPER", "PSEUDO_CALL",
    "PSEUDO_KFUNC_CALL",
    "R0", "R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10", "RFP",
    "ALU", "Jump", "Unary",
    "Add", "Add32", "Sub", "Sub32", "Mul", "Mul32", "Div", "Div32", "SDiv",
    "SDiv32", "Mod", "Mod32", "SMod", "SMod32", "Or", "Or32", "And", "And32",
    "Xor", "Xor32", "Lsh", "Lsh32", "Rsh", "Rsh32", "Arsh", "Arsh32", "Mov",
    "Mov32", "Neg", "Neg32",
    "movsx", "movsx32", "to_le", "to_be", "bswap", "addr_space_cast",
    "JEq", "JEq32", "JNE", "JNE32", "JGT", "JGT32", "JGE", "JGE32", "JLT",
    "JLT32", "JLE", "JLE32", "JSGT", "JSGT32", "JSGE", "JSGE32", "JSLT",
    "JSLT32", "JSLE", "JSLE32", "JSet", "JSet32",
    "ja", "gotol", "may_goto", "call", "call_func", "call_kfunc", "exit",
    "load_mem", "load_mem_sx", "store_mem", "store_imm", "load_abs", "load_ind",
    "atomic_add", "atomic_or", "atomic_and", "atomic_xor", "atomic_xchg",
    "atomic_cmpxchg", "load_acquire", "store_release",
    "load_imm64", "load_map_ptr", "load_map_value", "load_map_idx",
    "load_map_idx_value", "load_btf_id", "load_func_ptr",
]
