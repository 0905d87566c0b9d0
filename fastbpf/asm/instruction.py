"""`Instruction` and `Instructions`: one eBPF instruction, and a program.

An :class:`Instruction` is an immutable value: the five fields of the ISA
(``opcode``, ``dst``, ``src``, ``offset``, ``constant``) plus the symbolic
parts that exist only before load (``symbol``, ``reference``, ``map``).
``ld_imm64`` is a single Instruction whose ``constant`` is the full 64-bit
value; it encodes to 16 bytes (two *slots*).

:class:`Instructions` is a ``list`` of Instruction with encode/decode, label
resolution and disassembly. Resolution never mutates: ``resolve()`` and
``resolve_maps()`` return new programs, so a program held by a spec can be
loaded many times against different maps.
"""

from __future__ import annotations

import struct
from typing import Any, List, Mapping, NamedTuple

from .disasm import format_instruction
from .opcodes import (
    LD_IMM64,
    Class,
    JumpOp,
    PSEUDO_CALL,
    PSEUDO_FUNC,
    PSEUDO_KFUNC_CALL,
    PSEUDO_MAP_FD,
    PSEUDO_MAP_VALUE,
)

__all__ = ["Instruction", "Instructions", "INSN_SIZE", "Metadata"]

#: Size in bytes of one instruction slot.
INSN_SIZE = 8

_S16_MIN, _S16_MAX = -(1 << 15), (1 << 15) - 1
_S32_MIN, _S32_MAX = -(1 << 31), (1 << 31) - 1
_U32_MAX = (1 << 32) - 1
_S64_MIN, _U64_MAX = -(1 << 63), (1 << 64) - 1

_STRUCTS = {"little": struct.Struct("<BBhi"), "big": struct.Struct(">BBhi")}

_FIELDS = ("opcode", "dst", "src", "offset", "constant", "symbol", "reference", "map")
#: Fields replace() accepts: the eight above plus the metadata.
_REPLACEABLE = _FIELDS + ("meta",)

# What an instruction's ``reference`` names, by instruction kind.
REF_LABEL = "label"   # a jump target, a bpf-to-bpf call, a function pointer
REF_MAP = "map"       # the map of a map pointer / map value load
REF_KFUNC = "kfunc"   # the kernel function of a kfunc call (resolved by the loader)


def _struct_for(byte_order: str) -> struct.Struct:
    try:
        return _STRUCTS[byte_order]
    except (KeyError, TypeError):
        raise ValueError(f"byte_order must be 'little' or 'big', not {byte_order!r}") from None


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            return int(value.__index__())
        except AttributeError:
            raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None
    return int(value)


def _check_reg(name: str, value: Any) -> int:
    value = _check_int(name, value)
    if not 0 <= value <= 10:
        raise ValueError(f"{name} register {value} out of range: BPF has r0..r10")
    return int(value)


def _check_name(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty str or None, not {value!r}")
    return value


class Metadata(NamedTuple):
    """What an object file says about one instruction, beyond the ISA.

    Carried by :attr:`Instruction.meta`; it survives ``replace()``, copying
    and linking and is ignored by equality and hashing. The loader builds
    the kernel's func_info, line_info and CO-RE records from it.

    * ``func``: the BTF ``Func`` type of the function that starts here.
    * ``line``: the source position (a :class:`fastbpf.btf.LineInfo`).
    * ``core_relo``: the CO-RE relocation of this instruction
      (a :class:`fastbpf.btf.CoreRelo`).
    * ``section``: the ELF section the instruction came from.
    """

    func: Any = None
    line: Any = None
    core_relo: Any = None
    section: str | None = None


_NO_META = Metadata()


class Instruction:
    """One eBPF instruction (two slots for ``ld_imm64``).

    ``Instruction(opcode, dst=0, src=0, offset=0, constant=0, *, symbol=None,
    reference=None, map=None)``

    * ``opcode``: the opcode byte (0..255).
    * ``dst``, ``src``: register numbers 0..10 (for ``ld_imm64`` and ``call``
      ``src`` is the pseudo kind, see :mod:`fastbpf.asm.opcodes`).
    * ``offset``: signed 16-bit.
    * ``constant``: the immediate. Signed 32-bit; unsigned 32-bit values are
      accepted and stored as their signed equivalent (the same bits). For
      ``ld_imm64`` it is the 64-bit value, stored signed (-2**63..2**63-1;
      unsigned input is accepted likewise). For the map loads
      (``PSEUDO_MAP_VALUE``) the low 32 bits are the fd and the high 32 bits
      the offset into the value, as in the encoding.
    * ``symbol``: a label naming this instruction (the first instruction of a
      function carries the function's name).
    * ``reference``: the label a jump / bpf-to-bpf call / function pointer
      targets, the name of the map a map load loads, or the name of the kfunc a
      kfunc call calls. Resolved by :meth:`Instructions.resolve` (labels) and
      :meth:`Instructions.resolve_maps` (maps).
    * ``map``: for map loads, an int fd or an object with an ``.fd`` attribute;
      its fd is read at encode time and replaces the low 32 bits of
      ``constant``.

    * ``meta``: a :class:`Metadata` (source line, function BTF, CO-RE
      relocation) or None; ignored by equality.

    Instructions are immutable and hashable; derive changed copies with
    :meth:`replace`, :meth:`with_symbol`, :meth:`with_reference`,
    :meth:`with_meta`.
    ``str(insn)`` is one line of verifier-style disassembly.
    """

    __slots__ = _FIELDS + ("meta",)

    opcode: int
    dst: int
    src: int
    offset: int
    constant: int
    symbol: str | None
    reference: str | None
    map: Any
    meta: Metadata | None

    def __init__(self, opcode: int, dst: int = 0, src: int = 0, offset: int = 0,
                 constant: int = 0, *, symbol: str | None = None,
                 reference: str | None = None, map: Any = None,
                 meta: Metadata | None = None) -> None:
        opcode = _check_int("opcode", opcode)
        if not 0 <= opcode <= 0xFF:
            raise ValueError(f"opcode {opcode:#x} does not fit one byte")
        dst = _check_reg("dst", dst)
        src = _check_reg("src", src)
        offset = _check_int("offset", offset)
        if not _S16_MIN <= offset <= _S16_MAX:
            raise ValueError(f"offset {offset} does not fit a signed 16-bit field "
                             f"({_S16_MIN}..{_S16_MAX})")
        constant = _check_int("constant", constant)
        if opcode == LD_IMM64:
            if not _S64_MIN <= constant <= _U64_MAX:
                raise ValueError(f"ld_imm64 constant {constant:#x} does not fit 64 bits")
            if constant > 0x7FFFFFFFFFFFFFFF:
                constant -= 1 << 64
        else:
            if not _S32_MIN <= constant <= _U32_MAX:
                raise ValueError(
                    f"constant {constant} ({constant:#x}) does not fit the 32-bit "
                    f"immediate; only ld_imm64 (load_imm64) takes 64-bit constants")
            if constant > _S32_MAX:
                constant -= 1 << 32
        if map is not None and not isinstance(map, int) and not hasattr(map, "fd"):
            raise TypeError(f"map must be an int fd or an object with an .fd attribute, "
                            f"not {type(map).__name__}")
        s = object.__setattr__
        s(self, "opcode", opcode)
        s(self, "dst", dst)
        s(self, "src", src)
        s(self, "offset", offset)
        s(self, "constant", constant)
        s(self, "symbol", _check_name("symbol", symbol))
        s(self, "reference", _check_name("reference", reference))
        s(self, "map", map)
        if meta is not None and not isinstance(meta, Metadata):
            raise TypeError(f"meta must be an asm.Metadata or None, not {type(meta).__name__}")
        s(self, "meta", meta)

    @classmethod
    def _raw(cls, opcode: int, dst: int, src: int, offset: int, constant: int,
             symbol: str | None = None, reference: str | None = None,
             map: Any = None, meta: Metadata | None = None) -> Instruction:
        """Build without validation, from fields known to be in range."""
        self = object.__new__(cls)
        s = object.__setattr__
        s(self, "opcode", opcode)
        s(self, "dst", dst)
        s(self, "src", src)
        s(self, "offset", offset)
        s(self, "constant", constant)
        s(self, "symbol", symbol)
        s(self, "reference", reference)
        s(self, "map", map)
        s(self, "meta", meta)
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Instruction is immutable; use insn.replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Instruction is immutable")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_rebuild, (self.opcode, self.dst, self.src, self.offset, self.constant,
                           self.symbol, self.reference, self.map, self.meta))

    # -- derived copies ----------------------------------------------------

    def replace(self, **changes: Any) -> Instruction:
        """A copy with the given fields changed (validated like the constructor).

        The metadata is kept unless ``meta=`` is among the changes.
        """
        for name in changes:
            if name not in _REPLACEABLE:
                raise TypeError(f"Instruction has no field {name!r}")
        fields = {name: getattr(self, name) for name in _REPLACEABLE}
        fields.update(changes)
        opcode = fields.pop("opcode")
        return Instruction(opcode, **fields)

    def with_symbol(self, name: str | None) -> Instruction:
        """A copy labelled *name* (``None`` removes the label)."""
        return self.replace(symbol=name)

    def with_reference(self, name: str | None) -> Instruction:
        """A copy referring to *name* (``None`` removes the reference)."""
        return self.replace(reference=name)

    def with_meta(self, **changes: Any) -> "Instruction":
        """A copy whose metadata has the given :class:`Metadata` fields changed."""
        base = self.meta if self.meta is not None else _NO_META
        return Instruction._raw(self.opcode, self.dst, self.src, self.offset, self.constant,
                                self.symbol, self.reference, self.map, base._replace(**changes))

    # -- classification ----------------------------------------------------

    @property
    def size(self) -> int:
        """Encoded size in bytes: 16 for ``ld_imm64``, 8 otherwise."""
        return 16 if self.opcode == LD_IMM64 else 8

    @property
    def slots(self) -> int:
        """Number of 8-byte slots: 2 for ``ld_imm64``, 1 otherwise."""
        return 2 if self.opcode == LD_IMM64 else 1

    @property
    def cls(self) -> Class:
        """The instruction class."""
        return Class(self.opcode & 0x07)

    @property
    def is_ld_imm64(self) -> bool:
        """True for the 16-byte ``ld_imm64``."""
        return self.opcode == LD_IMM64

    @property
    def is_jump(self) -> bool:
        """True for jumps with a target (``goto``, ``gotol``, conditionals,
        ``may_goto``), false for ``call`` and ``exit``."""
        c = self.opcode & 0x07
        return (c == Class.JMP or c == Class.JMP32) and (self.opcode & 0xF0) not in (
            JumpOp.CALL, JumpOp.EXIT)

    @property
    def is_call(self) -> bool:
        """True for ``call`` of any kind (helper, bpf-to-bpf, kfunc)."""
        return self.opcode == Class.JMP | JumpOp.CALL

    @property
    def is_helper_call(self) -> bool:
        """True for a call of a helper (``constant`` is the helper id)."""
        return self.is_call and self.src == 0

    @property
    def is_pseudo_call(self) -> bool:
        """True for a bpf-to-bpf call (``constant`` is the slot offset)."""
        return self.is_call and self.src == PSEUDO_CALL

    @property
    def is_kfunc_call(self) -> bool:
        """True for a kfunc call (``constant`` is the BTF id)."""
        return self.is_call and self.src == PSEUDO_KFUNC_CALL

    @property
    def is_exit(self) -> bool:
        """True for ``exit``."""
        return self.opcode == Class.JMP | JumpOp.EXIT

    @property
    def is_map_load(self) -> bool:
        """True for ``ld_imm64`` of a map pointer or map value by fd."""
        return self.opcode == LD_IMM64 and self.src in (PSEUDO_MAP_FD, PSEUDO_MAP_VALUE)

    @property
    def reference_kind(self) -> str | None:
        """What ``reference`` names for this kind of instruction: ``"label"``
        (jumps, bpf-to-bpf calls, function pointers), ``"map"`` (map loads),
        ``"kfunc"`` (kfunc calls), or ``None`` if it cannot carry one."""
        return _reference_kind(self)

    # -- encoding ----------------------------------------------------------

    def encode(self, byte_order: str = "little") -> bytes:
        """The 8 (16 for ``ld_imm64``) bytes of this instruction.

        Jump offsets are encoded as stored: a labelled jump must have been
        resolved (see :meth:`Instructions.encode`). A map load with a ``map``
        takes its fd now.
        """
        st = _struct_for(byte_order)
        return _encode_one(self, st, byte_order == "big", None)

    @classmethod
    def decode(cls, raw: bytes, byte_order: str = "little") -> Instruction:
        """Decode exactly one instruction (8 bytes, 16 for ``ld_imm64``)."""
        insns = Instructions.decode(raw, byte_order)
        if len(insns) != 1:
            raise ValueError(f"{len(raw)} bytes hold {len(insns)} instructions, not one")
        first: Instruction = insns[0]
        return first

    # -- value protocol ----------------------------------------------------

    def _key(self) -> tuple[Any, ...]:
        return (self.opcode, self.dst, self.src, self.offset, self.constant,
                self.symbol, self.reference)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Instruction):
            return NotImplemented
        return self._key() == other._key() and (
            self.map is other.map or self.map == other.map)

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        extra = ""
        if self.symbol is not None:
            extra += f", symbol={self.symbol!r}"
        if self.reference is not None:
            extra += f", reference={self.reference!r}"
        if self.map is not None:
            extra += f", map={self.map!r}"
        return (f"Instruction({self.opcode:#04x}, dst={self.dst}, src={self.src}, "
                f"offset={self.offset}, constant={self.constant}{extra})  # {self}")

    def __str__(self) -> str:
        return format_instruction(self)


def _rebuild(*fields: Any) -> "Instruction":
    return Instruction._raw(*fields)


def _reference_kind(insn: Instruction) -> str | None:
    code = insn.opcode
    cls = code & 0x07
    if code == LD_IMM64:
        if insn.src in (PSEUDO_MAP_FD, PSEUDO_MAP_VALUE):
            return REF_MAP
        if insn.src == PSEUDO_FUNC:
            return REF_LABEL
        return None
    if cls == Class.JMP or cls == Class.JMP32:
        op = code & 0xF0
        if op == JumpOp.EXIT:
            return None
        if op == JumpOp.CALL:
            if cls != Class.JMP:
                return None
            if insn.src == PSEUDO_CALL:
                return REF_LABEL
            if insn.src == PSEUDO_KFUNC_CALL:
                return REF_KFUNC
            return None
        return REF_LABEL
    return None


def _uses_imm_target(insn: Instruction) -> bool:
    """True if the target offset of a label reference lives in ``constant``
    (gotol, bpf-to-bpf call, function pointer), false if in ``offset``."""
    code = insn.opcode
    return (code == LD_IMM64 or code == Class.JMP | JumpOp.CALL
            or code == Class.JMP32 | JumpOp.JA)


def _imm_target(insn: Instruction) -> int:
    """The signed slot offset held in ``constant`` (the low 32 bits for
    ld_imm64)."""
    v = insn.constant & 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _map_fd(insn: Instruction, index: int | None) -> int:
    m = insn.map
    fd = m if isinstance(m, int) else getattr(m, "fd", None)
    where = f"instruction {index} ({insn})" if index is not None else f"{insn}"
    if isinstance(fd, bool) or not isinstance(fd, int):
        raise TypeError(f"{where}: map fd must be an int, not {type(fd).__name__}")
    if not 0 <= fd <= _S32_MAX:
        raise ValueError(f"{where}: map fd {fd} is not a valid file descriptor "
                         f"(is the map closed?)")
    return fd


def _encode_one(insn: Instruction, st: struct.Struct, big: bool, index: int | None) -> bytes:
    regs = (insn.dst << 4 | insn.src) if big else (insn.src << 4 | insn.dst)
    if insn.opcode != LD_IMM64:
        return st.pack(insn.opcode, regs, insn.offset, insn.constant)
    value = insn.constant & 0xFFFFFFFFFFFFFFFF
    if insn.map is not None and insn.src in (PSEUDO_MAP_FD, PSEUDO_MAP_VALUE):
        value = (value & ~0xFFFFFFFF) | _map_fd(insn, index)
    lo, hi = value & 0xFFFFFFFF, value >> 32
    return (st.pack(insn.opcode, regs, insn.offset, lo - ((lo & 0x80000000) << 1))
            + st.pack(0, 0, 0, hi - ((hi & 0x80000000) << 1)))


class Instructions(List[Instruction]):
    """A program: a list of :class:`Instruction`.

    Positions come in two units. *Index* is the position in this list;
    *slot* is the position in the encoded program in 8-byte units, where
    ``ld_imm64`` takes two slots. Jump and call offsets are in slots, relative
    to the slot after the jumping instruction.

    ``str(insns)`` is the whole program, one instruction per line prefixed by
    its slot, labels on lines of their own. Slicing and ``+`` give
    Instructions.
    """

    __slots__ = ()

    def __getitem__(self, item: Any) -> Any:
        result = list.__getitem__(self, item)
        if isinstance(item, slice):
            return Instructions(result)
        return result

    def __add__(self, other: Any) -> "Instructions":  # type: ignore[override]
        return Instructions(list.__add__(self, list(other)))

    def __radd__(self, other: Any) -> "Instructions":
        return Instructions(list(other) + list(self))

    def copy(self) -> Instructions:
        """A shallow copy (Instructions are immutable, so that is a full copy)."""
        return Instructions(self)

    def __repr__(self) -> str:
        return f"Instructions({list.__repr__(self)})"

    # -- geometry ----------------------------------------------------------

    @property
    def size(self) -> int:
        """Encoded size in bytes."""
        return 8 * sum(2 if i.opcode == LD_IMM64 else 1 for i in self)

    def slot_offsets(self) -> list[int]:
        """The slot of every instruction, by index."""
        out = []
        pos = 0
        for insn in self:
            out.append(pos)
            pos += 2 if insn.opcode == LD_IMM64 else 1
        return out

    def symbols(self) -> dict[str, int]:
        """Label -> index of the instruction carrying it. Duplicate labels
        raise ValueError."""
        out: dict[str, int] = {}
        for i, insn in enumerate(self):
            sym = insn.symbol
            if sym is not None:
                if sym in out:
                    raise ValueError(f"label {sym!r} is carried by instructions "
                                     f"{out[sym]} and {i}; labels must be unique")
                out[sym] = i
        return out

    def references(self) -> dict[str, list[int]]:
        """Reference name -> indexes of the instructions that carry it."""
        out: dict[str, list[int]] = {}
        for i, insn in enumerate(self):
            if insn.reference is not None:
                out.setdefault(insn.reference, []).append(i)
        return out

    # -- resolution --------------------------------------------------------

    def resolve(self) -> Instructions:
        """Return a copy with the offsets of labelled jumps and calls filled in.

        Conditional jumps, ``goto`` and ``may_goto`` get ``offset``; ``gotol``,
        bpf-to-bpf calls and function pointers (``load_func_ptr``) get
        ``constant``. References stay on the instructions, so a resolved
        program can be edited and resolved again. Map and kfunc references
        are left alone. Raises ValueError for an unknown or duplicate label,
        a reference on an instruction that cannot carry one, or a target out
        of range of the offset field.
        """
        labels: dict[str, int] | None = None
        slots: list[int] = []
        # Two instructions with one label is a mistake even when no jump
        # names it yet: refuse it here, before anything is encoded.
        if all(isinstance(insn, Instruction) for insn in self):
            self.symbols()
        out = Instructions()
        append = out.append
        for i, insn in enumerate(self):
            if not isinstance(insn, Instruction):
                raise TypeError(f"instruction {i} is a {type(insn).__name__}, "
                                f"not an Instruction")
            ref = insn.reference
            if ref is None:
                append(insn)
                continue
            kind = _reference_kind(insn)
            if kind is None:
                raise ValueError(f"instruction {i} ({insn}) refers to {ref!r}, but "
                                 f"only jumps, calls and map loads can refer to anything")
            if kind != REF_LABEL:
                append(insn)
                continue
            if labels is None:
                slots = self.slot_offsets()
                labels = {name: slots[j] for name, j in self.symbols().items()}
            target = labels.get(ref)
            if target is None:
                raise ValueError(f"instruction {i} ({insn}) refers to label {ref!r}, "
                                 f"which no instruction carries")
            rel = target - slots[i] - 1
            if _uses_imm_target(insn):
                if not _S32_MIN <= rel <= _S32_MAX:
                    raise ValueError(f"instruction {i}: target {ref!r} is {rel} slots away, "
                                     f"beyond the 32-bit immediate")
                # ld_imm64 keeps its upper half zero: only the low imm is the offset
                value = rel & 0xFFFFFFFF if insn.opcode == LD_IMM64 else rel
                append(Instruction._raw(insn.opcode, insn.dst, insn.src, insn.offset,
                                        value, insn.symbol, ref, insn.map, insn.meta))
            else:
                if not _S16_MIN <= rel <= _S16_MAX:
                    raise ValueError(
                        f"instruction {i} ({insn}): target {ref!r} is {rel} slots away, "
                        f"beyond the 16-bit jump offset ({_S16_MIN}..{_S16_MAX}); "
                        f"use gotol for long unconditional jumps")
                append(Instruction._raw(insn.opcode, insn.dst, insn.src, rel,
                                        insn.constant, insn.symbol, ref, insn.map, insn.meta))
        return out

    def resolve_maps(self, maps: Mapping[str, Any]) -> Instructions:
        """Return a copy whose map loads referring to a name in *maps* are bound.

        *maps* maps a map name to an int fd or to an object with an ``.fd``
        attribute (a Map); objects are stored in the instruction's ``map``
        and their fd read at encode time. The reference names stay for
        disassembly. Names not in *maps* stay unresolved (encode will name
        them), so maps can be bound in several steps.
        """
        out = Instructions()
        for insn in self:
            ref = insn.reference
            if ref is not None and ref in maps and insn.is_map_load:
                target = maps[ref]
                if target is None or (not isinstance(target, int) and not hasattr(target, "fd")):
                    raise TypeError(f"map {ref!r}: expected an int fd or an object with "
                                    f".fd, got {type(target).__name__}")
                insn = insn.replace(map=target)
            out.append(insn)
        return out

    def label_targets(self) -> Instructions:
        """Return a copy in which every jump/call target carries a label and
        every jump/call refers to it, for decoded programs that have none.

        Functions (targets of bpf-to-bpf calls and function pointers) are
        named ``func_<slot>``, other targets ``L<slot>``; existing labels are
        kept. Out-of-program targets raise ValueError.
        """
        slots = self.slot_offsets()
        by_slot = {s: i for i, s in enumerate(slots)}
        names: dict[int, str] = {i: insn.symbol for i, insn in enumerate(self)
                                 if insn.symbol is not None}
        refs: dict[int, int] = {}
        for i, insn in enumerate(self):
            if insn.reference is not None or _reference_kind(insn) != REF_LABEL:
                continue
            if insn.opcode & 0xF0 == JumpOp.CALL or insn.opcode == LD_IMM64:
                if insn.opcode == LD_IMM64 and insn.src != PSEUDO_FUNC:
                    continue
                prefix = "func_"
            else:
                prefix = "L"
            rel = _imm_target(insn) if _uses_imm_target(insn) else insn.offset
            target = by_slot.get(slots[i] + 1 + rel)
            if target is None:
                raise ValueError(f"instruction {i} ({insn}) targets slot "
                                 f"{slots[i] + 1 + rel}, which does not start an "
                                 f"instruction of this program")
            names.setdefault(target, f"{prefix}{slots[target]}")
            refs[i] = target
        out = Instructions()
        for i, insn in enumerate(self):
            sym = names.get(i)
            ref = names[refs[i]] if i in refs else insn.reference
            if sym != insn.symbol or ref != insn.reference:
                insn = Instruction._raw(insn.opcode, insn.dst, insn.src, insn.offset,
                                        insn.constant, sym, ref, insn.map, insn.meta)
            out.append(insn)
        return out

    # -- encoding ----------------------------------------------------------

    def encode(self, byte_order: str = "little") -> bytes:
        """The program as bytes, ready for BPF_PROG_LOAD.

        Resolves labels first (see :meth:`resolve`). Every remaining
        reference must be bound: an unresolved map name or kfunc name raises
        ValueError naming it.
        """
        st = _struct_for(byte_order)
        big = byte_order == "big"
        resolved = self.resolve()
        pack = st.pack
        parts: list[bytes] = []
        append = parts.append
        for i, insn in enumerate(resolved):
            code = insn.opcode
            if insn.reference is not None:
                kind = _reference_kind(insn)
                if kind == REF_MAP and insn.map is None:
                    raise ValueError(f"instruction {i} ({insn}) loads map {insn.reference!r}, "
                                     f"which is not resolved; bind it with resolve_maps()")
                if kind == REF_KFUNC and insn.constant == 0:
                    # The loader resolves a kfunc name to its BTF id (never 0).
                    raise ValueError(f"instruction {i} ({insn}) calls kfunc "
                                     f"{insn.reference!r}, which is not resolved to a BTF id")
            if code == LD_IMM64:
                append(_encode_one(insn, st, big, i))
            elif big:
                append(pack(code, insn.dst << 4 | insn.src, insn.offset, insn.constant))
            else:
                append(pack(code, insn.src << 4 | insn.dst, insn.offset, insn.constant))
        return b"".join(parts)

    @classmethod
    def decode(cls, raw: Any, byte_order: str = "little", *,
               labels: bool = False) -> Instructions:
        """Decode a program from bytes (or any buffer).

        Jump and call targets stay numeric offsets unless *labels* is true,
        which applies :meth:`label_targets` (``L<slot>`` / ``func_<slot>``
        labels and references). Raises ValueError if the length is
        not a multiple of 8, an ``ld_imm64`` lacks its second half, or a field
        is invalid (a register above r10); the message names the slot.
        """
        st = _struct_for(byte_order)
        big = byte_order == "big"
        try:
            data = memoryview(raw).cast("B")
        except TypeError:
            raise TypeError(f"cannot decode a {type(raw).__name__}; pass bytes or a buffer") from None
        n = len(data)
        if n % INSN_SIZE:
            raise ValueError(f"program is {n} bytes, not a multiple of {INSN_SIZE} "
                             f"(the size of an instruction): truncated?")
        fields = list(st.iter_unpack(data))
        out = cls()
        append = out.append
        raw_insn = Instruction._raw
        i = 0
        count = len(fields)
        while i < count:
            code, regs, off, imm = fields[i]
            if big:
                dst, src = regs >> 4, regs & 0x0F
            else:
                dst, src = regs & 0x0F, regs >> 4
            if dst > 10 or src > 10:
                raise ValueError(f"slot {i}: invalid register (dst r{dst}, src r{src}) in "
                                 f"instruction with opcode {code:#04x}")
            if code == LD_IMM64:
                if i + 1 >= count:
                    raise ValueError(f"slot {i}: ld_imm64 is missing its second half "
                                     f"(program truncated)")
                code2, regs2, off2, imm2 = fields[i + 1]
                if code2 or regs2 or off2:
                    raise ValueError(f"slot {i + 1}: second half of ld_imm64 must have zero "
                                     f"opcode, registers and offset")
                append(raw_insn(code, dst, src, off, (imm2 << 32) | (imm & 0xFFFFFFFF)))
                i += 2
            else:
                append(raw_insn(code, dst, src, off, imm))
                i += 1
        return out.label_targets() if labels else out

    # -- text --------------------------------------------------------------

    def format(self) -> str:
        """The disassembly (same as ``str(insns)``)."""
        try:
            prog = self.resolve()
            resolved = True
        except (ValueError, TypeError):
            prog = self
            resolved = False
        slots = prog.slot_offsets()
        width = max(len(str(slots[-1])) if slots else 1, 4)
        lines = []
        for slot, insn in zip(slots, prog):
            if insn.symbol is not None:
                lines.append(f"{insn.symbol}:")
            lines.append(f"{slot:>{width}}: {format_instruction(insn, resolved)}")
        return "\n".join(lines)

    __str__ = format
