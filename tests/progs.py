"""BPF programs the tests and benchmarks build again and again, in one place.

Blocks are lists of instructions to splice into a body; a block that can
fail jumps to the label it is given (``"out"`` by convention), which the
caller places on its final ``r0 = ...; exit``. Map references are names
bound at load time (``Program.load(spec, maps={...})``) or Map objects.
"""

from __future__ import annotations

from typing import Any

from fastbpf import asm
from fastbpf.asm import R0, R1, R2, R6, R7, R10, Helper, Size

__all__ = ["ret", "lookup_slot", "add_to_slot", "bump_counter", "seq_prologue"]


def ret(value: int) -> asm.Instructions:
    """``return value``."""
    return asm.Instructions([asm.Mov.imm(R0, value), asm.exit()])


def lookup_slot(m: Any, slot: int, done: str = "out") -> list:
    """``r0 = &m[slot]``, jumping to *done* when the lookup fails. Uses the
    4 bytes at r10-4 for the key; clobbers r0-r5."""
    return [
        asm.store_imm(R10, -4, slot, Size.W),
        asm.Mov.reg(R2, R10),
        asm.Add.imm(R2, -4),
        asm.load_map_ptr(R1, m),
        asm.call(Helper.map_lookup_elem),
        asm.JEq.imm(R0, 0, done),
    ]


def add_to_slot(m: Any, slot: int = 0, done: str = "out", value_reg: int | None = None) -> list:
    """``m[slot] += 1`` (or ``+= value_reg``, which must not be r0-r5: the
    lookup clobbers them), atomically; jumps to *done* if the lookup fails."""
    add = asm.Mov.reg(R1, value_reg) if value_reg is not None else asm.Mov.imm(R1, 1)
    return lookup_slot(m, slot, done) + [add, asm.atomic_add(R0, 0, R1, Size.DW)]


def bump_counter(m: Any = "ctr", slot: int = 0, done: str = "out") -> list:
    """``r7 = m[slot]++`` (the old value: a sequence number), atomically."""
    return lookup_slot(m, slot, done) + [
        asm.Mov.imm(R7, 1), asm.atomic_add(R0, 0, R7, Size.DW, fetch=True)]


def seq_prologue(m: Any = "ctr", done: str = "out") -> list:
    """Keep the context in r6, then ``r7 = m[0]++``: the start of every
    program that writes numbered records."""
    return [asm.Mov.reg(R6, R1)] + bump_counter(m, 0, done)
