"""The pieces an eBPF opcode is made of, and the registers.

An opcode byte is ``class | ...``: the low three bits select the instruction
class, the rest depends on the class (see the kernel's
``Documentation/bpf/standardization/instruction-set.rst``):

* ALU / ALU64 / JMP / JMP32: ``op (4 bits) | source (1 bit) | class``
* LD / LDX / ST / STX:       ``mode (3 bits) | size (2 bits) | class``

These enums are public so that code which inspects decoded programs (the ELF
loader, relocation, tests) can take an opcode apart without magic numbers.
"""

from __future__ import annotations

import enum

__all__ = [
    "Register",
    "R0", "R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10", "RFP",
    "Class",
    "Size",
    "Mode",
    "Source",
    "ALUOp",
    "JumpOp",
    "AtomicOp",
    "FETCH",
    "PSEUDO_MAP_FD",
    "PSEUDO_MAP_VALUE",
    "PSEUDO_BTF_ID",
    "PSEUDO_FUNC",
    "PSEUDO_MAP_IDX",
    "PSEUDO_MAP_IDX_VALUE",
    "PSEUDO_CALL_HELPER",
    "PSEUDO_CALL",
    "PSEUDO_KFUNC_CALL",
    "LD_IMM64",
]


class Register(enum.IntEnum):
    """A BPF register. R0 holds return values, R1-R5 arguments, R6-R9 are
    callee-saved, R10 is the read-only frame pointer (alias ``RFP``)."""

    R0 = 0
    R1 = 1
    R2 = 2
    R3 = 3
    R4 = 4
    R5 = 5
    R6 = 6
    R7 = 7
    R8 = 8
    R9 = 9
    R10 = 10

    def __str__(self) -> str:
        return f"r{self.value}"


R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = Register
RFP = Register.R10


class Class(enum.IntEnum):
    """Instruction class, the low three bits of the opcode."""

    LD = 0x00
    LDX = 0x01
    ST = 0x02
    STX = 0x03
    ALU = 0x04
    JMP = 0x05
    JMP32 = 0x06
    ALU64 = 0x07


class Size(enum.IntEnum):
    """Access size of a load or store (bits 3-4 of the opcode).

    ``Size.B.bytes`` is the width in bytes; ``Size.from_bytes(4)`` is ``W``.
    """

    W = 0x00
    H = 0x08
    B = 0x10
    DW = 0x18

    @property
    def bytes(self) -> int:
        """Width of the access in bytes."""
        return _SIZE_BYTES[self]

    @classmethod
    def from_bytes(cls, n: int) -> Size:  # type: ignore[override]  # not int.from_bytes: a width
        """The size that moves *n* (1, 2, 4 or 8) bytes."""
        for size, width in _SIZE_BYTES.items():
            if width == n:
                return size
        raise ValueError(f"no access size of {n} bytes (1, 2, 4 or 8)")


_SIZE_BYTES = {Size.B: 1, Size.H: 2, Size.W: 4, Size.DW: 8}


class Mode(enum.IntEnum):
    """Addressing mode of a load or store (bits 5-7 of the opcode)."""

    IMM = 0x00
    ABS = 0x20
    IND = 0x40
    MEM = 0x60
    MEMSX = 0x80
    ATOMIC = 0xC0


class Source(enum.IntEnum):
    """Operand source of ALU and jump instructions (bit 3 of the opcode)."""

    K = 0x00  # the 32-bit immediate
    X = 0x08  # the src register


class ALUOp(enum.IntEnum):
    """Operation of an ALU/ALU64 instruction (bits 4-7 of the opcode)."""

    ADD = 0x00
    SUB = 0x10
    MUL = 0x20
    DIV = 0x30
    OR = 0x40
    AND = 0x50
    LSH = 0x60
    RSH = 0x70
    NEG = 0x80
    MOD = 0x90
    XOR = 0xA0
    MOV = 0xB0
    ARSH = 0xC0
    END = 0xD0


class JumpOp(enum.IntEnum):
    """Operation of a JMP/JMP32 instruction (bits 4-7 of the opcode)."""

    JA = 0x00
    JEQ = 0x10
    JGT = 0x20
    JGE = 0x30
    JSET = 0x40
    JNE = 0x50
    JSGT = 0x60
    JSGE = 0x70
    CALL = 0x80
    EXIT = 0x90
    JLT = 0xA0
    JLE = 0xB0
    JSLT = 0xC0
    JSLE = 0xD0
    JCOND = 0xE0  # may_goto (src=0); kernel 6.9


class AtomicOp(enum.IntEnum):
    """The ``imm`` of a ``STX | ATOMIC`` instruction."""

    ADD = 0x00
    OR = 0x40
    AND = 0x50
    XOR = 0xA0
    FETCH_ADD = 0x01
    FETCH_OR = 0x41
    FETCH_AND = 0x51
    FETCH_XOR = 0xA1
    XCHG = 0xE1
    CMPXCHG = 0xF1
    LOAD_ACQ = 0x100   # kernel 6.15
    STORE_REL = 0x110  # kernel 6.15


#: The BPF_FETCH flag of atomic operations.
FETCH = 0x01


# The src field of ld_imm64: what the constant means (uapi BPF_PSEUDO_*).
PSEUDO_MAP_FD = 1          # imm = map fd; loads a map pointer
PSEUDO_MAP_VALUE = 2       # imm = map fd, next imm = offset into value 0
PSEUDO_BTF_ID = 3          # imm = BTF id of a kernel variable
PSEUDO_FUNC = 4            # imm = insn offset of a function (from the next slot)
PSEUDO_MAP_IDX = 5         # imm = index into fd_array
PSEUDO_MAP_IDX_VALUE = 6   # imm = index into fd_array, next imm = offset

# The src field of call: what imm means.
PSEUDO_CALL_HELPER = 0     # imm = helper id
PSEUDO_CALL = 1            # imm = insn offset of a bpf function (from the next slot)
PSEUDO_KFUNC_CALL = 2      # imm = BTF id of a kfunc, off = index of module BTF fd


#: Opcode of the 16-byte ``ld_imm64`` (``LD | IMM | DW``).
LD_IMM64 = Class.LD | Mode.IMM | Size.DW
