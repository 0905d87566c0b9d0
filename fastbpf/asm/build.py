"""Constructors for every instruction form.

Naming follows one rule: operations that come in an immediate and a register
form are objects with ``.imm(...)`` and ``.reg(...)`` methods, capitalised like
cilium/ebpf (``Mov.imm(R0, 1)``, ``Add32.reg(R1, R2)``,
``JEq.imm(R1, 0, "out")``); the ``32`` suffix selects the 32-bit class (ALU,
JMP32). Everything else is a lower-case function (``load_mem``, ``call``,
``exit``).

Argument order mirrors the C statement the instruction performs:
``load_mem(dst, src, offset, size)`` is ``dst = *(size *)(src + offset)`` and
``store_mem(dst, offset, src, size)`` is ``*(size *)(dst + offset) = src``.

Jump targets are a label (str, resolved later) or an int offset in slots
relative to the next instruction. Immediates of 64-bit operations must fit a
signed 32-bit value because the CPU sign-extends them; 32-bit operations also
take unsigned 32-bit values.
"""

from __future__ import annotations

from typing import Any

from .helpers import Helper
from .instruction import Instruction
from .opcodes import (
    LD_IMM64,
    ALUOp,
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
    Source,
)

_S32_MIN, _S32_MAX, _U32_MAX = -(1 << 31), (1 << 31) - 1, (1 << 32) - 1


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return int(value.__index__())


def _reg(name: str, value: Any, writable: bool = False) -> int:
    value = _int(name, value)
    if not 0 <= value <= 10:
        raise ValueError(f"{name} register {value} out of range: BPF has r0..r10")
    if writable and value == 10:
        raise ValueError(f"{name} cannot be r10: the frame pointer is read-only")
    return int(value)


def _imm(value: Any, wide: bool, what: str = "immediate") -> int:
    """Check an immediate; *wide* means a 64-bit operation (sign-extended)."""
    value = _int(what, value)
    top = _S32_MAX if wide else _U32_MAX
    if not _S32_MIN <= value <= top:
        hint = ("; the CPU sign-extends it to 64 bits, so use load_imm64 for a 64-bit "
                "constant" if wide else "")
        raise ValueError(f"{what} {value} ({value & ((1 << 64) - 1):#x}) does not fit "
                         f"{'a signed' if wide else 'a'} 32-bit immediate{hint}")
    return int(value)


def _size(size: Any, allowed: tuple[Size, ...] = (Size.B, Size.H, Size.W, Size.DW), what: str = "") -> Size:
    if not isinstance(size, Size):
        raise TypeError(f"size must be a Size (Size.B, Size.H, Size.W, Size.DW), "
                        f"not {size!r}")
    if size not in allowed:
        names = ", ".join(f"Size.{s.name}" for s in allowed)
        raise ValueError(f"{what or 'this instruction'} takes sizes {names}, not Size.{size.name}")
    return size


def _target(target: Any) -> tuple[int, str | None]:
    """(offset, reference) of a jump target."""
    if isinstance(target, str):
        if not target:
            raise ValueError("a jump label must be a non-empty str")
        return 0, target
    return _int("jump target", target), None


# ---------------------------------------------------------------------------
# ALU

class ALU:
    """An ALU operation of one width, e.g. ``Add`` (64-bit) or ``Add32``.

    ``op.imm(dst, value)`` computes ``dst op= value``;
    ``op.reg(dst, src)`` computes ``dst op= src``.
    """

    __slots__ = ("name", "_cls", "_op", "_off")

    def __init__(self, name: str, cls: Class, op: ALUOp, off: int = 0) -> None:
        self.name = name
        self._cls = cls
        self._op = op
        self._off = off

    def imm(self, dst: int, value: int) -> Instruction:
        """``dst = dst <op> value``."""
        wide = self._cls == Class.ALU64
        value = _imm(value, wide)
        if self._op in (ALUOp.LSH, ALUOp.RSH, ALUOp.ARSH):
            bits = 64 if wide else 32
            if not 0 <= value < bits:
                raise ValueError(f"{self.name}: shift by {value} is out of range 0..{bits - 1}")
        if self._op in (ALUOp.DIV, ALUOp.MOD) and value == 0:
            raise ValueError(f"{self.name}: division by the constant zero")
        return Instruction._raw(self._cls | self._op | Source.K, _reg("dst", dst, True), 0,
                                self._off, value - (1 << 32) if value > _S32_MAX else value)

    def reg(self, dst: int, src: int) -> Instruction:
        """``dst = dst <op> src``."""
        return Instruction._raw(self._cls | self._op | Source.X, _reg("dst", dst, True),
                                _reg("src", src), self._off, 0)

    def __repr__(self) -> str:
        return f"asm.{self.name}"


class Unary:
    """Negation: ``Neg(dst)`` is ``dst = -dst`` (``Neg32`` for 32 bits)."""

    __slots__ = ("name", "_cls")

    def __init__(self, name: str, cls: Class) -> None:
        self.name = name
        self._cls = cls

    def __call__(self, dst: int) -> Instruction:
        """``dst = -dst``."""
        return Instruction._raw(self._cls | ALUOp.NEG, _reg("dst", dst, True), 0, 0, 0)

    def __repr__(self) -> str:
        return f"asm.{self.name}"


_A64, _A32 = Class.ALU64, Class.ALU
Add, Add32 = ALU("Add", _A64, ALUOp.ADD), ALU("Add32", _A32, ALUOp.ADD)
Sub, Sub32 = ALU("Sub", _A64, ALUOp.SUB), ALU("Sub32", _A32, ALUOp.SUB)
Mul, Mul32 = ALU("Mul", _A64, ALUOp.MUL), ALU("Mul32", _A32, ALUOp.MUL)
Div, Div32 = ALU("Div", _A64, ALUOp.DIV), ALU("Div32", _A32, ALUOp.DIV)
SDiv, SDiv32 = ALU("SDiv", _A64, ALUOp.DIV, 1), ALU("SDiv32", _A32, ALUOp.DIV, 1)
Or, Or32 = ALU("Or", _A64, ALUOp.OR), ALU("Or32", _A32, ALUOp.OR)
And, And32 = ALU("And", _A64, ALUOp.AND), ALU("And32", _A32, ALUOp.AND)
Lsh, Lsh32 = ALU("Lsh", _A64, ALUOp.LSH), ALU("Lsh32", _A32, ALUOp.LSH)
Rsh, Rsh32 = ALU("Rsh", _A64, ALUOp.RSH), ALU("Rsh32", _A32, ALUOp.RSH)
Mod, Mod32 = ALU("Mod", _A64, ALUOp.MOD), ALU("Mod32", _A32, ALUOp.MOD)
SMod, SMod32 = ALU("SMod", _A64, ALUOp.MOD, 1), ALU("SMod32", _A32, ALUOp.MOD, 1)
Xor, Xor32 = ALU("Xor", _A64, ALUOp.XOR), ALU("Xor32", _A32, ALUOp.XOR)
Mov, Mov32 = ALU("Mov", _A64, ALUOp.MOV), ALU("Mov32", _A32, ALUOp.MOV)
Arsh, Arsh32 = ALU("Arsh", _A64, ALUOp.ARSH), ALU("Arsh32", _A32, ALUOp.ARSH)
Neg, Neg32 = Unary("Neg", _A64), Unary("Neg32", _A32)
del _A64, _A32


def movsx(dst: int, src: int, bits: int) -> Instruction:
    """``dst = (s<bits>)src``, sign-extending the low 8, 16 or 32 bits of src
    to 64 bits (ISA v4, kernel 6.6)."""
    if bits not in (8, 16, 32):
        raise ValueError(f"movsx sign-extends 8, 16 or 32 bits, not {bits!r}")
    return Instruction._raw(Class.ALU64 | ALUOp.MOV | Source.X, _reg("dst", dst, True),
                            _reg("src", src), bits, 0)


def movsx32(dst: int, src: int, bits: int) -> Instruction:
    """``wdst = (s<bits>)wsrc``, sign-extending the low 8 or 16 bits of src to
    32 bits (upper 32 bits of dst zeroed)."""
    if bits not in (8, 16):
        raise ValueError(f"movsx32 sign-extends 8 or 16 bits, not {bits!r}")
    return Instruction._raw(Class.ALU | ALUOp.MOV | Source.X, _reg("dst", dst, True),
                            _reg("src", src), bits, 0)


def _end(cls: Class, source: Source, name: str, dst: int, bits: int) -> Instruction:
    if bits not in (16, 32, 64):
        raise ValueError(f"{name} swaps 16, 32 or 64 bits, not {bits!r}")
    return Instruction._raw(cls | ALUOp.END | source, _reg("dst", dst, True), 0, 0, bits)


def to_le(dst: int, bits: int) -> Instruction:
    """``dst = le<bits> dst``: convert the low *bits* of dst between host and
    little-endian order (zero-extending)."""
    return _end(Class.ALU, Source.K, "to_le", dst, bits)


def to_be(dst: int, bits: int) -> Instruction:
    """``dst = be<bits> dst``: convert between host and big-endian order."""
    return _end(Class.ALU, Source.X, "to_be", dst, bits)


def bswap(dst: int, bits: int) -> Instruction:
    """``dst = bswap<bits> dst``: unconditional byte swap (ISA v4, kernel 6.6)."""
    return _end(Class.ALU64, Source.K, "bswap", dst, bits)


def addr_space_cast(dst: int, src: int, dst_as: int, src_as: int) -> Instruction:
    """``dst = addr_space_cast(src, dst_as, src_as)``: convert an arena
    pointer between address spaces (kernel 6.9; 0 = kernel, 1 = user)."""
    dst_as, src_as = _int("dst_as", dst_as), _int("src_as", src_as)
    if not (0 <= dst_as <= 0xFFFF and 0 <= src_as <= 0xFFFF):
        raise ValueError("address space numbers must fit 16 bits")
    value = dst_as << 16 | src_as
    return Instruction._raw(Class.ALU64 | ALUOp.MOV | Source.X, _reg("dst", dst, True),
                            _reg("src", src), 1, value - (1 << 32) if value > _S32_MAX else value)


# ---------------------------------------------------------------------------
# Jumps

class Jump:
    """A conditional jump of one width, e.g. ``JEq`` (64-bit) or ``JEq32``.

    ``j.imm(dst, value, target)`` jumps if ``dst <cond> value``;
    ``j.reg(dst, src, target)`` jumps if ``dst <cond> src``. *target* is a
    label (str) or an offset in slots relative to the next instruction.
    """

    __slots__ = ("name", "_cls", "_op")

    def __init__(self, name: str, cls: Class, op: JumpOp) -> None:
        self.name = name
        self._cls = cls
        self._op = op

    def imm(self, dst: int, value: int, target: str | int) -> Instruction:
        """Jump to *target* if ``dst <cond> value``."""
        value = _imm(value, self._cls == Class.JMP)
        off, ref = _target(target)
        return Instruction(self._cls | self._op | Source.K, _reg("dst", dst), 0, off,
                           value, reference=ref)

    def reg(self, dst: int, src: int, target: str | int) -> Instruction:
        """Jump to *target* if ``dst <cond> src``."""
        off, ref = _target(target)
        return Instruction(self._cls | self._op | Source.X, _reg("dst", dst),
                           _reg("src", src), off, 0, reference=ref)

    def __repr__(self) -> str:
        return f"asm.{self.name}"


_J64, _J32 = Class.JMP, Class.JMP32
JEq, JEq32 = Jump("JEq", _J64, JumpOp.JEQ), Jump("JEq32", _J32, JumpOp.JEQ)
JNE, JNE32 = Jump("JNE", _J64, JumpOp.JNE), Jump("JNE32", _J32, JumpOp.JNE)
JGT, JGT32 = Jump("JGT", _J64, JumpOp.JGT), Jump("JGT32", _J32, JumpOp.JGT)
JGE, JGE32 = Jump("JGE", _J64, JumpOp.JGE), Jump("JGE32", _J32, JumpOp.JGE)
JLT, JLT32 = Jump("JLT", _J64, JumpOp.JLT), Jump("JLT32", _J32, JumpOp.JLT)
JLE, JLE32 = Jump("JLE", _J64, JumpOp.JLE), Jump("JLE32", _J32, JumpOp.JLE)
JSGT, JSGT32 = Jump("JSGT", _J64, JumpOp.JSGT), Jump("JSGT32", _J32, JumpOp.JSGT)
JSGE, JSGE32 = Jump("JSGE", _J64, JumpOp.JSGE), Jump("JSGE32", _J32, JumpOp.JSGE)
JSLT, JSLT32 = Jump("JSLT", _J64, JumpOp.JSLT), Jump("JSLT32", _J32, JumpOp.JSLT)
JSLE, JSLE32 = Jump("JSLE", _J64, JumpOp.JSLE), Jump("JSLE32", _J32, JumpOp.JSLE)
JSet, JSet32 = Jump("JSet", _J64, JumpOp.JSET), Jump("JSet32", _J32, JumpOp.JSET)
del _J64, _J32


def ja(target: str | int) -> Instruction:
    """``goto target``: unconditional jump with a 16-bit offset."""
    off, ref = _target(target)
    return Instruction(Class.JMP | JumpOp.JA, 0, 0, off, 0, reference=ref)


def gotol(target: str | int) -> Instruction:
    """``gotol target``: unconditional jump with a 32-bit offset (JMP32 | JA,
    ISA v4, kernel 6.6)."""
    off, ref = _target(target)
    return Instruction(Class.JMP32 | JumpOp.JA, 0, 0, 0, off, reference=ref)


def may_goto(target: str | int) -> Instruction:
    """``may_goto target``: jump once the loop budget is spent (JCOND,
    kernel 6.9)."""
    off, ref = _target(target)
    return Instruction(Class.JMP | JumpOp.JCOND, 0, 0, off, 0, reference=ref)


def call(helper: Helper | int) -> Instruction:
    """``call bpf_<helper>``: call a helper by :class:`Helper` or id."""
    helper = _int("helper", helper)
    if not 0 <= helper <= _S32_MAX:
        raise ValueError(f"helper id {helper} out of range")
    return Instruction._raw(Class.JMP | JumpOp.CALL, 0, 0, 0, helper)


def call_func(target: str | int) -> Instruction:
    """bpf-to-bpf call of the function labelled *target* (or at a slot
    offset relative to the next instruction)."""
    off, ref = _target(target)
    return Instruction(Class.JMP | JumpOp.CALL, 0, PSEUDO_CALL, 0, off, reference=ref)


def call_kfunc(kfunc: int | str, module: int = 0) -> Instruction:
    """Call a kernel function by BTF id (or by name, left as a reference for
    the loader to resolve). *module* is the index of the module's BTF fd in
    the program's fd_array, 0 for vmlinux."""
    module = _int("module", module)
    if isinstance(kfunc, str):
        return Instruction(Class.JMP | JumpOp.CALL, 0, PSEUDO_KFUNC_CALL, module, 0,
                           reference=kfunc)
    kfunc = _int("kfunc", kfunc)
    if not 0 <= kfunc <= _S32_MAX:
        raise ValueError(f"BTF id {kfunc} out of range")
    return Instruction(Class.JMP | JumpOp.CALL, 0, PSEUDO_KFUNC_CALL, module, kfunc)


def exit() -> Instruction:  # noqa: A001 - the ISA's name
    """``exit``: return r0 to the caller."""
    return Instruction._raw(Class.JMP | JumpOp.EXIT, 0, 0, 0, 0)


# ---------------------------------------------------------------------------
# Memory

def load_mem(dst: int, src: int, offset: int, size: Size) -> Instruction:
    """``dst = *(size *)(src + offset)``, zero-extended."""
    return Instruction(Class.LDX | Mode.MEM | _size(size), _reg("dst", dst, True),
                       _reg("src", src), offset)


def load_mem_sx(dst: int, src: int, offset: int, size: Size) -> Instruction:
    """``dst = *(s<size> *)(src + offset)``, sign-extended to 64 bits
    (BPF_MEMSX, ISA v4, kernel 6.6). Sizes B, H, W."""
    return Instruction(Class.LDX | Mode.MEMSX | _size(size, (Size.B, Size.H, Size.W),
                                                      "load_mem_sx"),
                       _reg("dst", dst, True), _reg("src", src), offset)


def store_mem(dst: int, offset: int, src: int, size: Size) -> Instruction:
    """``*(size *)(dst + offset) = src``."""
    return Instruction(Class.STX | Mode.MEM | _size(size), _reg("dst", dst),
                       _reg("src", src), offset)


def store_imm(dst: int, offset: int, value: int, size: Size) -> Instruction:
    """``*(size *)(dst + offset) = value`` (sign-extended for ``Size.DW``)."""
    size = _size(size)
    return Instruction(Class.ST | Mode.MEM | size, _reg("dst", dst), 0, offset,
                       _imm(value, size == Size.DW, "value"))


def load_abs(offset: int, size: Size) -> Instruction:
    """Legacy socket-filter load: ``r0 = ntoh(*(size *)(skb->data + offset))``."""
    return Instruction(Class.LD | Mode.ABS | _size(size, (Size.B, Size.H, Size.W), "load_abs"),
                       0, 0, 0, _imm(offset, True, "offset"))


def load_ind(src: int, offset: int, size: Size) -> Instruction:
    """Legacy socket-filter load: ``r0 = ntoh(*(size *)(skb->data + src + offset))``."""
    return Instruction(Class.LD | Mode.IND | _size(size, (Size.B, Size.H, Size.W), "load_ind"),
                       0, _reg("src", src), 0, _imm(offset, True, "offset"))


# ---------------------------------------------------------------------------
# Atomics (STX | ATOMIC, the operation in imm)

def _atomic(name: str, op: int, dst: int, offset: int, src: int, size: Size,
            sizes: tuple[Size, ...] = (Size.W, Size.DW)) -> Instruction:
    return Instruction(Class.STX | Mode.ATOMIC | _size(size, sizes, name), _reg("dst", dst),
                       _reg("src", src), offset, op)


def atomic_add(dst: int, offset: int, src: int, size: Size, fetch: bool = False) -> Instruction:
    """``lock *(size *)(dst + offset) += src``; with ``fetch=True`` the old
    value is returned in src. Sizes W, DW."""
    return _atomic("atomic_add", AtomicOp.FETCH_ADD if fetch else AtomicOp.ADD,
                   dst, offset, src, size)


def atomic_or(dst: int, offset: int, src: int, size: Size, fetch: bool = False) -> Instruction:
    """``lock *(size *)(dst + offset) |= src`` (``fetch``: old value to src)."""
    return _atomic("atomic_or", AtomicOp.FETCH_OR if fetch else AtomicOp.OR,
                   dst, offset, src, size)


def atomic_and(dst: int, offset: int, src: int, size: Size, fetch: bool = False) -> Instruction:
    """``lock *(size *)(dst + offset) &= src`` (``fetch``: old value to src)."""
    return _atomic("atomic_and", AtomicOp.FETCH_AND if fetch else AtomicOp.AND,
                   dst, offset, src, size)


def atomic_xor(dst: int, offset: int, src: int, size: Size, fetch: bool = False) -> Instruction:
    """``lock *(size *)(dst + offset) ^= src`` (``fetch``: old value to src)."""
    return _atomic("atomic_xor", AtomicOp.FETCH_XOR if fetch else AtomicOp.XOR,
                   dst, offset, src, size)


def atomic_xchg(dst: int, offset: int, src: int, size: Size) -> Instruction:
    """``src = xchg(*(size *)(dst + offset), src)``. Sizes W, DW."""
    return _atomic("atomic_xchg", AtomicOp.XCHG, dst, offset, src, size)


def atomic_cmpxchg(dst: int, offset: int, src: int, size: Size) -> Instruction:
    """``r0 = cmpxchg(*(size *)(dst + offset), r0, src)``: store src if the
    memory equals r0; r0 gets the old value. Sizes W, DW."""
    return _atomic("atomic_cmpxchg", AtomicOp.CMPXCHG, dst, offset, src, size)


def load_acquire(dst: int, src: int, offset: int, size: Size) -> Instruction:
    """``dst = load_acquire((size *)(src + offset))`` (kernel 6.15). All sizes."""
    return Instruction(Class.STX | Mode.ATOMIC | _size(size), _reg("dst", dst, True),
                       _reg("src", src), offset, AtomicOp.LOAD_ACQ)


def store_release(dst: int, offset: int, src: int, size: Size) -> Instruction:
    """``store_release((size *)(dst + offset), src)`` (kernel 6.15). All sizes."""
    return _atomic("store_release", AtomicOp.STORE_REL, dst, offset, src, size,
                   (Size.B, Size.H, Size.W, Size.DW))


# ---------------------------------------------------------------------------
# ld_imm64 and its pseudo forms

def _ld64(dst: int, src: int, value: int, ref: str | None = None, map: Any = None) -> Instruction:
    return Instruction(LD_IMM64, _reg("dst", dst, True), src, 0, value, reference=ref, map=map)


def _u32(name: str, value: Any) -> int:
    value = _int(name, value)
    if not 0 <= value <= _U32_MAX:
        raise ValueError(f"{name} {value} does not fit 32 bits unsigned")
    return int(value)


def _map_arg(map: Any) -> tuple[int, str | None, Any]:
    """(fd, reference, map object) for a map given by name, fd or object."""
    if isinstance(map, str):
        if not map:
            raise ValueError("a map name must be a non-empty str")
        return 0, map, None
    if isinstance(map, bool):
        raise TypeError("map must be a name, an int fd or an object with .fd")
    if isinstance(map, int):
        if not 0 <= map <= _S32_MAX:
            raise ValueError(f"map fd {map} is not a valid file descriptor")
        return map, None, None
    if hasattr(map, "fd"):
        return 0, None, map
    raise TypeError(f"map must be a name, an int fd or an object with .fd, "
                    f"not {type(map).__name__}")


def load_imm64(dst: int, value: int) -> Instruction:
    """``dst = value`` for any 64-bit value (16 bytes, two slots)."""
    return _ld64(dst, 0, value)


def load_map_ptr(dst: int, map: Any) -> Instruction:
    """``dst = &map`` (BPF_PSEUDO_MAP_FD). *map* is a name (a reference,
    bound by :meth:`Instructions.resolve_maps`), an int fd, or an object with
    ``.fd`` (read at encode time)."""
    fd, ref, obj = _map_arg(map)
    return _ld64(dst, PSEUDO_MAP_FD, fd, ref, obj)


def load_map_value(dst: int, map: Any, offset: int = 0) -> Instruction:
    """``dst = &map[0] + offset`` (BPF_PSEUDO_MAP_VALUE), the address inside
    the value of a single-element array map (how globals are reached). *map*
    as for :func:`load_map_ptr`."""
    fd, ref, obj = _map_arg(map)
    return _ld64(dst, PSEUDO_MAP_VALUE, _u32("offset", offset) << 32 | fd, ref, obj)


def load_map_idx(dst: int, index: int) -> Instruction:
    """``dst = &fd_array[index]`` (BPF_PSEUDO_MAP_IDX)."""
    return _ld64(dst, PSEUDO_MAP_IDX, _u32("index", index))


def load_map_idx_value(dst: int, index: int, offset: int = 0) -> Instruction:
    """``dst = &fd_array[index][0] + offset`` (BPF_PSEUDO_MAP_IDX_VALUE)."""
    return _ld64(dst, PSEUDO_MAP_IDX_VALUE,
                 _u32("offset", offset) << 32 | _u32("index", index))


def load_btf_id(dst: int, btf_id: int) -> Instruction:
    """``dst = &<kernel variable btf_id>`` (BPF_PSEUDO_BTF_ID)."""
    return _ld64(dst, PSEUDO_BTF_ID, _u32("btf_id", btf_id))


def load_func_ptr(dst: int, target: str | int) -> Instruction:
    """``dst = &function`` (BPF_PSEUDO_FUNC), e.g. a callback for
    ``bpf_loop``. *target* is the function's label or a slot offset from the
    instruction after the load's first slot."""
    off, ref = _target(target)
    if not _S32_MIN <= off <= _S32_MAX:
        raise ValueError(f"function offset {off} does not fit 32 bits")
    return _ld64(dst, PSEUDO_FUNC, off & _U32_MAX, ref)
