"""Test helper: CO-RE relocations and instructions out of an object file.

A stand-in for the ELF loader (issue 13) so the CO-RE tests can run before
it lands: pyelftools reads the sections, ``btf.Spec.parse`` and
``btf.ExtInfo.parse`` the BTF, ``asm.Instructions.decode`` the code. Each
function symbol of an executable section becomes one "program" in
libbpf's frame of reference (subprograms are not linked), so relocation
numbers (``#i`` within the section) and instruction numbers (slots from the
function's start) are those libbpf prints in its debug log.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from elftools.elf.elffile import ELFFile

from fastbpf import asm, btf


@dataclass
class Func:
    """One function of an executable section, with its CO-RE relocations."""

    name: str
    section: str
    insns: asm.Instructions
    # (index into insns, section relocation number, slot in the function, record)
    relos: list = field(default_factory=list)

    def pairs(self) -> list:
        """(instruction index, CoreRelo) pairs for relocate_instructions."""
        return [(i, r) for i, _, _, r in self.relos]


@dataclass
class CoreObject:
    """Local BTF, byte order and functions of one object file."""

    path: str
    spec: btf.Spec
    byte_order: str
    funcs: dict


def load(path: str) -> CoreObject:
    """Read *path* (an object compiled with clang -g -target bpf)."""
    with open(path, "rb") as f:
        data = f.read()
    elf = ELFFile(io.BytesIO(data))
    order = "little" if elf.little_endian else "big"
    spec = btf.Spec.parse(elf.get_section_by_name(".BTF").data())
    ext = btf.ExtInfo.parse(elf.get_section_by_name(".BTF.ext").data(), spec)
    symtab = elf.get_section_by_name(".symtab")
    funcs: dict[str, Func] = {}
    by_section: dict[str, list] = {}
    for sym in symtab.iter_symbols():
        if sym["st_info"]["type"] != "STT_FUNC" or not isinstance(sym["st_shndx"], int):
            continue
        sec = elf.get_section(sym["st_shndx"])
        by_section.setdefault(sec.name, []).append((sym["st_value"], sym["st_size"], sym.name))
    # libbpf relocates section by section in .BTF.ext order, then by
    # record: functions are listed in that order.
    sections = list(ext.core_relos) + [n for n in by_section if n not in ext.core_relos]
    for sec_name in sections:
        syms = by_section.get(sec_name)
        if not syms:
            continue
        data = elf.get_section_by_name(sec_name).data()
        for start, size, name in sorted(syms):
            insns = asm.Instructions.decode(data[start:start + size], order)
            funcs[name] = Func(name, sec_name, insns)
        for n, rec in enumerate(ext.core_relos.get(sec_name, [])):
            for start, size, name in syms:
                if start <= rec.insn_off < start + size:
                    fn = funcs[name]
                    slot = (rec.insn_off - start) // 8
                    fn.relos.append((_index_of_slot(fn.insns, slot), n, slot, rec))
                    break
    return CoreObject(path, spec, order, funcs)


def _index_of_slot(insns, slot: int) -> int:
    pos = 0
    for i, insn in enumerate(insns):
        if pos == slot:
            return i
        pos += insn.slots
    raise ValueError(f"slot {slot} is inside an instruction")
