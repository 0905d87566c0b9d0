"""An ELF BPF object -> :class:`fastbpf.collection.CollectionSpec`.

What comes from where (the conventions of clang and libbpf):

* program sections (executable): every function symbol outside ``.text`` is
  a program, typed from its section name (:mod:`.sections`); functions in
  ``.text`` (and every function, for calls between sections) are
  subprograms, linked into the programs that call them at load;
* ``.maps``: BTF-defined maps (:mod:`.btfmaps`); ``maps``: legacy
  ``struct bpf_map_def`` maps;
* ``.data``, ``.rodata``, ``.bss``, ``.data.*``, ``.rodata.*``, ``.bss.*``:
  one array map each, with a :class:`VariableSpec` per BTF variable;
* ``.kconfig`` / ``.ksyms`` externs (undefined symbols named in those BTF
  DATASECs), resolved by :mod:`fastbpf.linker` at load;
* ``license``, ``version``, ``.BTF``, ``.BTF.ext``.

Instructions are decoded per function, lazily: parsing keeps the section
bytes and relocation arrays, and the first look at
``ProgramSpec.instructions`` (or the load) decodes them.
"""

from __future__ import annotations

import bisect
import functools
import os
import re
from typing import Any, Callable

import numpy as np

from .. import btf as _btf
from ..asm.instruction import Instruction, Instructions, Metadata
from ..asm.opcodes import (LD_IMM64, PSEUDO_CALL, PSEUDO_FUNC, PSEUDO_KFUNC_CALL,
                           PSEUDO_MAP_FD, PSEUDO_MAP_VALUE)
from ..enums import MapFlags, MapType, ProgramFlags, ProgramType
from ..errors import BTFError, ELFError
from ..mapspec import MapSpec, new_map_spec
from . import btffix
from .extinfo import ExtRecords
from .reader import SHF_EXECINSTR, SHN_LORESERVE, SHN_UNDEF, SHT, STB, STT, ELFFile
from .sections import SectionDef, match_section

__all__ = ["ObjectFile", "internal_map_name", "object_name"]

_CALL = 0x85
_DATA_RE = re.compile(r"\.(data|rodata|bss)(\..*)?\Z", re.S)
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.]")
BPF_F_XDP_HAS_FRAGS = 1 << 5
_EMPTY: dict[str, int] = {}
_NO_KINDS = np.zeros(0, dtype=np.uint8)
_NO_ROWS = (b"", b"", b"")


@functools.lru_cache(maxsize=256)   # a regex per map costs more than the rest of it
def internal_map_name(obj_name: str, section: str) -> str:
    """The kernel name libbpf gives the map of a data section.

    Up to 8 characters of the object name, then the section name, cut at 15
    characters; custom sections (``.data.foo``) drop the object prefix.
    Characters the kernel refuses become ``_``.
    """
    sfx = max(7, len(section))
    pfx = 0 if "." in section[1:] else min(16 - sfx - 1, len(obj_name))
    name = (obj_name[:max(pfx, 0)] + section)[:15]
    return _NAME_BAD.sub("_", name)


def object_name(path: str | None) -> str:
    """libbpf's object name: the file's base name up to its first dot."""
    if not path:
        return ""
    return os.path.basename(path).split(".", 1)[0]


try:  # the C index of functions; _FuncPy and _index_python below are its twins
    from .._elfscan import Func as _Func
    from .._elfscan import index_functions as _index_c
    from .._elfscan import classify_sections as _classify_c
    from .._elfscan import scan_code as _scan_code
    from .._elfscan import LinkTables as _LinkTables
    from .._elfscan import ext_rows as _ext_rows
except ImportError:  # pragma: no cover - exercised only without the build
    _scan_code = None  # type: ignore[assignment]
    _LinkTables = None  # type: ignore[assignment,misc]
    _ext_rows = None  # type: ignore[assignment]
    _Func = None  # type: ignore[assignment,misc]
    _index_c = None  # type: ignore[assignment]
    _classify_c = None  # type: ignore[assignment]


class _FuncPy:
    """One function of the object: where its code is, and its label."""

    __slots__ = ("label", "shndx", "start", "size", "section", "cache", "code")

    def __init__(self, label: str, shndx: int, start: int, size: int, section: str) -> None:
        self.label = label
        self.shndx = shndx
        self.start = start
        self.size = size
        self.section = section
        self.cache: Instructions | None = None
        self.code: Code | None = None


if _Func is None:  # pragma: no cover
    _Func = _FuncPy  # type: ignore[assignment,misc]


def _ext_section(ext: Any, sec: str) -> tuple[Any, ...]:
    """Once per section: the func_info and line_info of *sec* sorted by
    offset (as lists to bisect, the line rows also as an array and as bytes
    whose first column is the instruction slot), and whether it has CO-RE."""
    foffs: list[int] = []
    frows: list[Any] = []
    fa = ext.func.get(sec)
    if fa is not None:
        frows = fa.tolist()
        foffs = [r[0] for r in frows]
        if foffs != sorted(foffs):   # clang writes them sorted: check, sort rarely
            frows.sort(key=lambda r: r[0])  # stable, as libbpf's order is
            foffs = [r[0] for r in frows]
    loffs: list[int] = []
    lrows = None
    lslots = b""
    la = ext.line.get(sec)
    if la is not None:
        loffs = la[:, 0].tolist()
        if loffs != sorted(loffs):
            la = la[np.argsort(la[:, 0], kind="stable")]
            loffs = la[:, 0].tolist()
        lrows = la
        slots = la.copy()     # C-contiguous native u32, whatever la's stride
        slots[:, 0] >>= 3     # functions start at a multiple of 8
        lslots = slots.tobytes()
    return foffs, frows, loffs, lrows, lslots, sec in ext.core


class Code:
    """One function as the loader's fast path uses it: the raw bytes, the
    relocations by slot, and the .BTF.ext records (see ObjectFile.analyze)."""

    __slots__ = ("raw", "relocs", "ext", "nslots", "rel_ext", "line_raw")

    def __init__(self, raw: bytes, relocs: dict[int, tuple[Any, ...]], ext: tuple[Any, ...],
                 line_raw: tuple[bytes, int] = (b"", 0)) -> None:
        self.raw = raw
        self.relocs = relocs
        self.ext = ext
        self.nslots = len(raw) // 8
        self.rel_ext: tuple[Any, ...] | None = None
        # The line_info rows as native u32 bytes, their first column the
        # slot in the section (not the function), and the function's first slot.
        self.line_raw = line_raw


_INSN_DT = {o: np.dtype([("code", "u1"), ("regs", "u1"), ("off", c + "i2"), ("imm", c + "i4")])
            for o, c in (("little", "<"), ("big", ">"))}


def _second_halves(codes: np.ndarray) -> set[int]:
    """Slots holding the second half of an ld_imm64."""
    out: set[int] = set()
    cand = np.flatnonzero(codes == LD_IMM64).tolist()
    # Walk only the ld_imm64 candidates: a candidate right after a first half
    # is a second half (whatever its byte says), and is no first half itself.
    nxt = -1
    for i in cand:
        if i == nxt:
            continue
        out.add(i + 1)
        nxt = i + 1
    return out


def _apply(insn: Instruction, rel: tuple[Any, ...], raw_: Callable[..., Instruction]
           ) -> Instruction:
    """*insn* with relocation *rel* (from ObjectFile._reloc_kind) made symbolic."""
    kind = rel[0]
    i = insn
    if kind == "call":
        return raw_(i.opcode, i.dst, i.src, i.offset, i.constant, i.symbol, rel[1], i.map, i.meta)
    if kind == "func":
        return raw_(i.opcode, i.dst, PSEUDO_FUNC, i.offset, 0, i.symbol, rel[1], i.map, i.meta)
    if kind == "map":
        return raw_(i.opcode, i.dst, PSEUDO_MAP_FD, i.offset, 0, i.symbol, rel[1], i.map,
                    i.meta)
    if kind == "mapval":
        return raw_(i.opcode, i.dst, PSEUDO_MAP_VALUE, i.offset, rel[2] << 32, i.symbol,
                    rel[1], i.map, i.meta)
    if kind == "kfunc":
        return raw_(i.opcode, i.dst, PSEUDO_KFUNC_CALL, i.offset, 0, i.symbol, rel[1], i.map,
                    i.meta)
    return raw_(i.opcode, i.dst, i.src, i.offset, 0, i.symbol, rel[1], i.map, i.meta)  # ksym


class ObjectFile:
    """The parsed pieces of one object that the decoder and linker need."""

    def __init__(self, data: bytes, name: str = "") -> None:
        self.elf = elf = ELFFile(data)
        self.name = name
        self.byte_order = elf.byte_order
        names = elf.names
        self._sym_type: np.ndarray | None = None
        self.license = "GPL"
        self.kernel_version = 0
        self.btf: _btf.Spec | None = None
        self.btf_raw: bytes | None = None
        self._ext_raw: bytes | None = None
        self._ext: ExtRecords | None = None
        self.rels: dict[int, np.ndarray] = {}
        self.prog_secs: list[int] = []
        self.data_secs: list[int] = []
        self.maps_shndx = -1
        self.legacy_maps_shndx = -1
        self.struct_ops_secs: list[int] = []
        self._prog_set: set[int] = set()
        self._sections: dict[int, tuple[Any, ...]] = {}
        self._syms: tuple[Any, ...] | None = None
        self._string_at: Callable[[int], str] | None = None
        self._datasecs: dict[str, int] | None = None
        self._ext_by_sec: dict[str, tuple[Any, ...]] = {}
        self._link_tables: Any = None
        cols = (names, elf.sh_type, elf.sh_flags, elf.sh_size, elf.sh_info)
        (self._sec_index, rel_of, self.prog_secs, self.data_secs, special,
         self.struct_ops_secs) = (_classify_c(*cols) if _classify_c is not None
                                  else _classify_python(*cols))
        i = special.get("license", -1)
        if i >= 0:
            self.license = elf.section_bytes(i).split(b"\0", 1)[0].decode("ascii", "replace")
        i = special.get("version", -1)
        if i >= 0:
            raw = elf.section_bytes(i)
            if len(raw) != 4:
                raise ELFError(f"section 'version' is {len(raw)} bytes, expected 4")
            self.kernel_version = int.from_bytes(raw, elf.byte_order)
        i = special.get(".BTF", -1)
        if i >= 0:
            self.btf_raw = elf.section_bytes(i)
        i = special.get(".BTF.ext", -1)
        if i >= 0:
            self._ext_raw = elf.section_bytes(i)
        self.maps_shndx = special.get(".maps", -1)
        self.legacy_maps_shndx = special.get("maps", -1)
        self._prog_set = set(self.prog_secs)
        # Only code and .maps relocations matter (not .rel.debug_*, .rel.BTF).
        for target in self.prog_secs + [self.maps_shndx] + self.struct_ops_secs:
            if target in rel_of:
                self.rels[target] = elf.relocations(rel_of[target])
        if self.btf_raw is not None:
            self.btf = _btf.Spec.parse(self.btf_raw)
        self.kconfig: dict[str, tuple[int, int]] = {}
        if self.btf is not None:
            self._fix_btf()
        self._index_functions()

    @property
    def sym_type(self) -> np.ndarray:
        """Every symbol's STT_* type (an array; made on first use)."""
        if self._sym_type is None:
            self._sym_type = np.array(self.elf.sym_info, dtype=np.uint8) & 0xF
        return self._sym_type

    # -- BTF -------------------------------------------------------------------------

    def _fix_btf(self) -> None:
        elf = self.elf
        # Every data-like section's size, for the DATASEC of the same name,
        # and the symbols of every section by name (the last of a name, as
        # symbols_in finds it).
        sizes: dict[str, int] = {}
        by_name: dict[str, dict[str, int]] = {}
        by_section = elf.by_section
        for i, (n, t, size) in enumerate(zip(elf.names, elf.sh_type, elf.sh_size)):
            if t == SHT.PROGBITS or t == SHT.NOBITS:
                if n not in sizes:
                    sizes[n] = size
            by_name[n] = by_section.get(i, _EMPTY)
        # _fix_btf runs only when there is BTF.
        blob, self.kconfig, spec, self._datasecs = btffix.fix_datasecs_fast(
            self.btf, sizes, by_name)  # type: ignore[arg-type]
        if blob is not None:
            self.btf_raw = blob
            self.btf = spec
            self._string_at = None  # the same strings, but of the new blob

    def symbols_in(self, sec: str) -> dict[str, int]:
        """name -> value of the named, non-section symbols of section *sec*."""
        idx = self._sec_index.get(sec)
        if idx is None:
            return {}
        found: dict[str, int] = self.elf.by_section.get(idx, {})
        return found

    @property
    def strings(self) -> Callable[[int], str]:
        """``string_at(offset)`` of the object's BTF, decoding on demand (shared)."""
        if self._string_at is None:
            self._string_at = btffix.string_reader(self.btf)  # type: ignore[arg-type]
        return self._string_at

    def datasec_id(self, name: str) -> int:
        """The type id of the BTF DATASEC called *name*, or 0."""
        if self.btf is None:
            return 0
        if self._datasecs is None:
            self.datasec(name)
        return self._datasecs.get(name, 0)  # type: ignore[union-attr]

    def datasec(self, name: str) -> Any:
        """The BTF DATASEC called *name*, or None (one index for every lookup:
        ``types_by_name`` would search the whole string table each time)."""
        if self.btf is None:
            return None
        if self._datasecs is None:
            btf, at = self.btf, self.strings
            ids = (np.flatnonzero(btf._kinds == btffix.K_DATASEC) + 1).tolist()
            words, offs = btf._words, btf._offs
            table: dict[str, int] = {}
            for tid in ids:
                table.setdefault(at(int(words[int(offs[tid - 1])])), tid)
            self._datasecs = table
        found = self._datasecs.get(name)
        return None if found is None else self.btf.type_by_id(found)

    @property
    def ext(self) -> ExtRecords | None:
        """The .BTF.ext records (parsed on first use)."""
        if self._ext is None and self._ext_raw is not None and self.btf is not None:
            self._ext = ExtRecords(self._ext_raw, self.btf)
        return self._ext

    # -- functions ---------------------------------------------------------------------

    def _index_functions(self) -> None:
        elf = self.elf
        self.funcs: dict[tuple[int, int], Any] = {}
        self.labels: dict[str, Any] = {}
        self.programs: list[tuple[Any, int]] = []  # (function, symbol index)
        if not self._prog_set:
            return
        cols = (elf.symbol_names(), elf.sym_info, elf.sym_shndx, elf.sym_value, elf.sym_size,
                elf.names, elf.sh_size, self._prog_set)
        self.funcs, self.labels, self.programs = (
            _index_c(*cols) if _index_c is not None else _index_python(*cols))

    def function_at(self, shndx: int, off: int, where: str) -> _Func:
        """The function starting at *off* of section *shndx* (ELFError if none)."""
        f = self.funcs.get((shndx, off))
        if f is None:
            sec = self.elf.names[shndx] if 0 <= shndx < len(self.elf.names) else shndx
            raise ELFError(f"{where}: target {sec}+{off} is not the start of a function")
        found: _Func = f
        return found

    def _section(self, shndx: int, ctx: tuple[Any, ...]) -> tuple[Any, ...]:
        """Per executable section, once: (insn fields as lists, relocations by
        absolute slot, slots that are ld_imm64 second halves)."""
        info = self._sections.get(shndx)
        if info is not None:
            return info
        raw = self.elf.section_bytes(shndx)
        if len(raw) % 8:
            raise ELFError(f"section {self.elf.names[shndx]!r} is not whole instructions")
        if _scan_code is None:
            return self._section_python(shndx, ctx, raw)
        n = len(raw) // 8
        little = self.byte_order == "little"
        relocs: dict[int, tuple[Any, ...]] = {}
        rels = self.rels.get(shndx)
        if rels is not None and len(rels):
            bad, relocated, calls = _scan_code(raw, little, rels["offset"].tolist())
            if bad is not None:
                raise ELFError(f"{self.elf.names[shndx]}: relocation at {bad} is not at "
                               f"an instruction")
            syms = self._sym_lists()
            kind = self._reloc_kind
            # Programs refer to the same maps and functions over and over: one
            # answer per (instruction fields, symbol), but for a 64-bit load
            # in the last slot (an error that names its slot).
            seen: dict[tuple[int, ...], tuple[Any, ...]] = {}
            for (slot, c, imm, reg), sym in zip(relocated, (rels["info"] >> 32).tolist()):
                key = (c, imm, reg, sym)
                got = seen.get(key)
                if got is None or slot + 1 >= n:
                    got = seen[key] = kind(c, imm, reg, slot, n, shndx, sym, syms, little, *ctx)
                relocs[slot] = got
        else:
            calls = _scan_code(raw, little, [])[2]
        # Calls to static functions of the same section carry no relocation.
        for slot, imm in calls:
            if slot not in relocs:
                target = (slot + 1 + imm) * 8
                callee = self.function_at(shndx, target, f"call at slot {slot}")
                relocs[slot] = ("call", callee.label)
        info = self._sections[shndx] = (raw, sorted(relocs), relocs)
        return info

    def _section_python(self, shndx: int, ctx: tuple[Any, ...], raw: bytes) -> tuple[Any, ...]:
        """The Python twin of _section's scan (:func:`fastbpf._elfscan.scan_code`)."""
        arr = np.frombuffer(raw, _INSN_DT[self.byte_order])
        n = len(arr)
        code_col = arr["code"]
        second = _second_halves(code_col)
        little = self.byte_order == "little"
        relocs: dict[int, tuple[Any, ...]] = {}
        rels = self.rels.get(shndx)
        if rels is not None and len(rels):
            offs = rels["offset"]
            at = offs >> 3
            bad = ((offs & 7) != 0) | (at >= n)
            slots = at.tolist()
            if bad.any() or (second and not second.isdisjoint(slots)):
                off = next(o for o, s_ in zip(offs.tolist(), slots)
                           if o % 8 or s_ >= n or s_ in second)
                raise ELFError(f"{self.elf.names[shndx]}: relocation at {off} is not at "
                               f"an instruction")
            syms = self._sym_lists()
            kind = self._reloc_kind
            for slot, sym, c, imm, reg in zip(slots, (rels["info"] >> 32).tolist(),
                                              code_col[at].tolist(), arr["imm"][at].tolist(),
                                              arr["regs"][at].tolist()):
                relocs[slot] = kind(c, imm, reg, slot, n, shndx, sym, syms, little, *ctx)
        src_col = (arr["regs"] >> 4) if little else (arr["regs"] & 0xF)
        calls = np.flatnonzero((code_col == _CALL) & (src_col == PSEUDO_CALL))
        for slot, imm in zip(calls.tolist(), arr["imm"][calls].tolist()):
            if slot not in relocs and slot not in second:
                target = (slot + 1 + imm) * 8
                callee = self.function_at(shndx, target, f"call at slot {slot}")
                relocs[slot] = ("call", callee.label)
        info = self._sections[shndx] = (raw, sorted(relocs), relocs)
        return info

    def link_tables(self, ctx: tuple[Any, ...]) -> Any:
        """The :class:`fastbpf._elfscan.LinkTables` of every executable section
        (made on first use; once per parse), or None without the C build.

        A section the C pass does not take (externs, malformed relocations or
        records) has no tables: its functions go through :meth:`analyze` and
        the Python linker, which raise the errors.
        """
        got = self._link_tables
        if got is not None or _LinkTables is None:
            return got
        elf = self.elf
        data_maps, map_syms = ctx[0], ctx[1]
        tables = _LinkTables(self.byte_order == "little", self.funcs, len(elf.names),
                             self.prog_secs, self.maps_shndx, self.legacy_maps_shndx,
                             data_maps, map_syms)
        kinds = self.btf._kinds if self.btf is not None else _NO_KINDS
        ntypes = len(self.btf) if self.btf is not None else 0
        names = {elf.names[shndx]: shndx for shndx in self.prog_secs}
        rows: dict[str, Any] | None = {}
        if self._ext_raw is not None and self.btf is not None:
            rows = _ext_rows(self._ext_raw, self.btf, names)
            if rows is None:    # something odd: ExtRecords reads it (or says what)
                rows = _ext_rows_python(self.ext, names)  # type: ignore[arg-type]
        syms = (elf.sym_shndx, elf.sym_value, elf.sym_info)
        for sec, shndx in names.items():
            rels = self.rels.get(shndx)
            fa, la, ca = rows.get(sec) or _NO_ROWS  # type: ignore[union-attr]
            tables.add_section(shndx, elf.section_bytes(shndx),
                               rels.tobytes() if rels is not None else b"", *syms,
                               bytes(fa), bytes(la), bytes(ca), kinds, ntypes)
        self._link_tables = tables
        return tables

    def _sym_lists(self) -> tuple[Any, ...]:
        if self._syms is None:
            elf = self.elf
            self._syms = (elf.sym_shndx, elf.sym_value, [i & 0xF for i in elf.sym_info])
        return self._syms

    def analyze(self, f: _Func, data_maps: dict[int, str],
                map_syms: dict[tuple[int, int], str], externs: dict[str, str]) -> "Code":
        """Function *f*'s bytes, relocations and ext records, by slot (cached)."""
        code: Code | None = f.code
        if code is not None:
            return code
        raw, keys, by_slot = self._section(f.shndx, (data_maps, map_syms, externs))
        if not f.size:
            raise ELFError(f"function {f.label!r} in {f.section!r} is empty")
        first, last = f.start // 8, (f.start + f.size) // 8
        lo, hi = bisect.bisect_left(keys, first), bisect.bisect_left(keys, last)
        relocs = {k - first: by_slot[k] for k in keys[lo:hi]}
        ext = self._ext_records(f)
        code = f.code = Code(raw[f.start:f.start + f.size], relocs, ext[:3], (ext[3], first))
        return code

    def _ext_records(self, f: _Func) -> tuple[Any, ...]:
        """(func_info [(slot, type id)], line_info rows, CO-RE [(slot, relo)],
        line_info rows as bytes with section slots: see Code.line_raw)."""
        ext = self.ext
        if ext is None or self.btf is None:
            return [], None, [], b""
        per = self._ext_by_sec.get(f.section)
        if per is None:
            per = self._ext_by_sec[f.section] = _ext_section(ext, f.section)
        foffs, frows, loffs, lrows, lslots, has_core = per
        start = f.start
        end = start + f.size
        funcs = [((off - start) // 8, tid)
                 for off, tid in frows[bisect.bisect_left(foffs, start):
                                       bisect.bisect_left(foffs, end)]]
        if funcs:
            kinds = self.btf._kinds
            for _, tid in funcs:
                if not 0 < tid < len(self.btf) or kinds[tid - 1] != 12:
                    raise BTFError(f"func_info of {f.label!r} names type {tid}, not a FUNC")
        lines = None
        line_raw = b""
        if lrows is not None:
            lo, hi = bisect.bisect_left(loffs, start), bisect.bisect_left(loffs, end)
            lines = lrows[lo:hi]
            line_raw = lslots[16 * lo:16 * hi]
        core = [((r.insn_off - start) // 8, r) for r in ext.core_in(f.section, start, end)] \
            if has_core else []
        return funcs, lines, core, line_raw

    def decode(self, f: _Func, data_maps: dict[int, str], map_syms: dict[tuple[int, int], str],
               externs: dict[str, str]) -> Instructions:
        """The instructions of function *f*, with references and metadata."""
        cached: Instructions | None = f.cache
        if cached is not None:
            return cached
        code = self.analyze(f, data_maps, map_syms, externs)
        try:
            insns = Instructions.decode(code.raw, self.byte_order)
        except ValueError as e:
            raise ELFError(f"function {f.label!r} in {f.section!r}: {e}") from None
        index_of = {}
        slot = 0
        i: int | None
        for i, insn in enumerate(insns):
            index_of[slot] = i
            slot += 2 if insn.opcode == LD_IMM64 else 1
        raw_ = Instruction._raw
        for slot, rel in code.relocs.items():
            i = index_of.get(slot)
            if i is None:
                raise ELFError(f"{f.section}: relocation at slot {slot} of {f.label!r} is "
                               f"inside an instruction")
            insns[i] = _apply(insns[i], rel, raw_)
        metas: dict[int, dict[Any, Any]] = {}
        funcs, lines, core = code.ext
        for slot, tid in funcs:
            if slot in index_of:
                metas.setdefault(index_of[slot], {})["func"] = \
                    self.btf.type_by_id(tid)  # type: ignore[union-attr]  # func_info implies BTF
        if lines is not None:
            for info in self.ext.line_infos(lines, f.start):  # type: ignore[union-attr]
                i = index_of.get((info.insn_off - f.start) // 8)
                if i is not None:
                    metas.setdefault(i, {})["line"] = info
        for slot, relo in core:
            if slot in index_of:
                metas.setdefault(index_of[slot], {})["core_relo"] = relo
        for i, m in metas.items():
            insns[i] = insns[i].replace(meta=Metadata(section=f.section, **m))
        first = insns[0]
        insns[0] = raw_(first.opcode, first.dst, first.src, first.offset, first.constant,
                        f.label, first.reference, first.map, first.meta)
        f.cache = insns
        return insns

    def _reloc_kind(self, code: int, imm: int, reg: int, slot: int, n: int, sec: int,
                    sym: int, syms: tuple[Any, ...], little: bool, data_maps: dict[int, str],
                    map_syms: dict[tuple[int, int], str], externs: dict[str, str]) -> tuple[Any, ...]:
        """What the relocation of instruction *slot* (fields *code*, *imm*,
        *reg*; *n* instructions in the section) means: ("map", name),
        ("mapval", name, offset), ("call"|"func", label), ("kfunc"|"ksym", name)."""
        elf = self.elf
        shndx, value, stype = syms[0][sym], syms[1][sym], syms[2][sym]

        def where() -> str:   # only for errors: most relocations need no text
            return f"{elf.names[sec]}: instruction {slot}"
        if code == _CALL:
            if shndx == SHN_UNDEF:
                name = elf.symbol_name(sym)
                if externs.get(name) != "kfunc":
                    raise ELFError(f"{where()} calls {name!r}, which is neither defined nor a "
                                   f"__ksym kfunc")
                return ("kfunc", name)
            src = reg >> 4 if little else reg & 0xF
            if src != PSEUDO_CALL:
                raise ELFError(f"{where()}: relocated call is not a bpf-to-bpf call")
            target = value + (imm + 1) * 8 if stype == STT.SECTION else value
            f = self.funcs.get((shndx, target))
            return ("call", (f or self.function_at(shndx, target, where())).label)
        if code != LD_IMM64 or slot + 1 >= n:
            raise ELFError(f"{where()}: relocation on an instruction that is neither a call "
                           f"nor a 64-bit load (opcode {code:#04x})")
        if shndx == SHN_UNDEF:
            name = elf.symbol_name(sym)
            kind = externs.get(name)
            if kind == "kconfig":
                return ("mapval", ".kconfig", self.kconfig[name][0])
            if kind in ("ksym", "kfunc"):
                return ("ksym", name)
            raise ELFError(f"{where()} refers to the undefined symbol {name!r}, which is not "
                           f"a .kconfig or .ksyms extern")
        if shndx >= SHN_LORESERVE or shndx >= len(elf.names):
            raise ELFError(f"{where()} refers to symbol {elf.symbol_name(sym)!r} in no section")
        if shndx in self._prog_set:
            # A function pointer (callback): target in bytes.
            target = value + (imm if stype == STT.SECTION else 0)
            f = self.funcs.get((shndx, target))
            return ("func", (f or self.function_at(shndx, target, where())).label)
        if shndx == self.maps_shndx or shndx == self.legacy_maps_shndx:
            mname = map_syms.get((shndx, value))
            if mname is None:
                raise ELFError(f"{where()} refers to no map at {elf.names[shndx]}+{value}")
            return ("map", mname)
        sec_map = data_maps.get(shndx)
        if sec_map is not None:
            off = (imm & 0xFFFFFFFF) + (0 if stype == STT.SECTION else value)
            return ("mapval", sec_map, off & 0xFFFFFFFF)
        raise ELFError(f"{where()} refers to {elf.symbol_name(sym) or elf.names[shndx]!r} in "
                       f"section {elf.names[shndx]!r}, which is neither code, a map nor data")



def _ext_rows_python(ext: ExtRecords, names: dict[str, int]) -> dict[str, tuple[bytes, ...]]:
    """The Python twin of :func:`fastbpf._elfscan.ext_rows` (from ExtRecords)."""
    out = {}
    for sec in names:
        got = [ext.func.get(sec), ext.line.get(sec), ext.core.get(sec)]
        if got[2] is not None:
            got[2] = got[2][:, :1]
        if any(a is not None for a in got):
            out[sec] = tuple(b"" if a is None else np.ascontiguousarray(a, np.uint32).tobytes()
                             for a in got)
    return out


def _classify_python(names: list[str], types: list[int], flags: list[int], sizes: list[int],
                     infos: list[int]) -> tuple[Any, ...]:
    """The Python twin of :func:`fastbpf._elfscan.classify_sections`."""
    index: dict[str, int] = {}
    rel_of: dict[int, int] = {}
    special: dict[str, int] = {}
    progs: list[int] = []
    data: list[int] = []
    struct_ops: list[int] = []
    for i, name in enumerate(names):
        index[name] = i
        t = types[i]
        if t == SHT.REL:
            if infos[i] >= len(names):
                raise ELFError(f"relocation section {name!r} targets section {infos[i]}, "
                               f"out of range")
            rel_of[infos[i]] = i
        elif t == SHT.PROGBITS and flags[i] & SHF_EXECINSTR:
            if sizes[i]:
                progs.append(i)
        elif name.startswith(".debug_"):
            continue
        elif name in ("license", "version", ".BTF", ".BTF.ext", ".maps", "maps"):
            special[name] = i
        elif name.startswith(".struct_ops"):
            struct_ops.append(i)
        elif t in (SHT.PROGBITS, SHT.NOBITS) and _DATA_RE.match(name):
            data.append(i)
    return index, rel_of, progs, data, special, struct_ops


def _index_python(names: list[str], infos: list[int], shndxs: list[int], values: list[int],
                  sizes: list[int], sec_names: list[str], sec_sizes: list[int],
                  prog_set: set[int]) -> tuple[Any, ...]:
    """The Python twin of :func:`fastbpf._elfscan.index_functions`."""
    funcs: dict[tuple[int, int], Any] = {}
    labels: dict[str, Any] = {}
    programs: list[tuple[Any, int]] = []
    for j, (info, shndx) in enumerate(zip(infos, shndxs)):
        if info & 0xF != STT.FUNC or shndx not in prog_set:
            continue
        start, size = values[j], sizes[j]
        sec_size = sec_sizes[shndx]
        if start % 8 or size % 8 or start + size > sec_size:
            raise ELFError(f"function {names[j]!r} ({start}+{size}) is not "
                           f"whole instructions inside its section")
        if (shndx, start) in funcs:
            continue  # an alias
        name = names[j]
        sec = sec_names[shndx]
        label = name if name and name not in labels else f"{name}@{sec}+{start}"
        f = _FuncPy(label, shndx, start, size or (sec_size - start), sec)
        funcs[(shndx, start)] = f
        labels[label] = f
        if sec != ".text" and (info >> 4) in (STB.GLOBAL, STB.WEAK, STB.LOCAL):
            programs.append((f, j))
    return funcs, labels, programs


_UNKNOWN = SectionDef("", ProgramType.UNSPEC, None)


def program_flags(sec: str) -> tuple[Any, ...]:
    """(SectionDef, target) for a program section.

    A name libbpf does not know gives type UNSPEC: like libbpf, the object
    still opens, and the user may set ``ProgramSpec.type`` before load.
    """
    found = match_section(sec)
    return found if found is not None else (_UNKNOWN, "")


def sleepable_flags(d: SectionDef, sec: str) -> int:
    """prog_flags a section row implies (sleepable, XDP frags)."""
    flags = 0
    if d.sleepable:
        flags |= ProgramFlags.SLEEPABLE
    if d.frags:
        flags |= BPF_F_XDP_HAS_FRAGS
    return flags


_DATA_FLAGS = int(MapFlags.MMAPABLE)
_RODATA_FLAGS = int(MapFlags.MMAPABLE | MapFlags.RDONLY_PROG)


def data_map_spec(obj: ObjectFile, shndx: int) -> MapSpec:
    """The array map of data section *shndx* (contents = the section's bytes)."""
    elf = obj.elf
    sec = elf.names[shndx]
    size = elf.sh_size[shndx]
    value: object = size
    found = obj.datasec(sec)
    if found is not None and found.size == size:
        value = found
    readonly = sec.startswith(".rodata")
    # new_map_spec: every field is already of its type (flags as int, as
    # MapSpec() would store them), so the dataclass __init__ would only copy.
    return new_map_spec(type=MapType.ARRAY, key=4, value=value, max_entries=1,
                        flags=_RODATA_FLAGS if readonly else _DATA_FLAGS,
                        name=internal_map_name(obj.name, sec),
                        contents=[(0, bytearray(elf.section_bytes(shndx)))], freeze=readonly)
