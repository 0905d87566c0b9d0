"""The ELF container of a BPF object: headers, sections, symbols, relocations.

A BPF object is a small ELF64 relocatable file (``ET_REL``, ``EM_BPF``). Its
section header, symbol and relocation tables are arrays of fixed-size
records, so they are read here as numpy structured arrays in one call each,
in either byte order, instead of one Python object per record. Every offset
and size is checked against the file before use: a malformed file raises
:class:`ELFError`, never an IndexError or a crash.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..errors import ELFError

__all__ = ["ELFFile", "SHT", "STT", "STB", "SHN_UNDEF", "SHN_ABS", "SHN_COMMON"]

EM_BPF = 247
ET_REL = 1
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2
SHF_EXECINSTR = 0x4
SHF_ALLOC = 0x2


class SHT:
    """Section types used by BPF objects."""

    NULL, PROGBITS, SYMTAB, STRTAB, RELA, NOBITS, REL = 0, 1, 2, 3, 4, 8, 9


class STT:
    """Symbol types."""

    NOTYPE, OBJECT, FUNC, SECTION, FILE = 0, 1, 2, 3, 4


class STB:
    """Symbol bindings."""

    LOCAL, GLOBAL, WEAK = 0, 1, 2


def _dtypes(c: str) -> tuple[np.dtype, np.dtype, np.dtype, np.dtype]:
    ehdr = np.dtype([("ident", "V16"), ("type", c + "u2"), ("machine", c + "u2"),
                     ("version", c + "u4"), ("entry", c + "u8"), ("phoff", c + "u8"),
                     ("shoff", c + "u8"), ("flags", c + "u4"), ("ehsize", c + "u2"),
                     ("phentsize", c + "u2"), ("phnum", c + "u2"), ("shentsize", c + "u2"),
                     ("shnum", c + "u2"), ("shstrndx", c + "u2")])
    shdr = np.dtype([("name", c + "u4"), ("type", c + "u4"), ("flags", c + "u8"),
                     ("addr", c + "u8"), ("offset", c + "u8"), ("size", c + "u8"),
                     ("link", c + "u4"), ("info", c + "u4"), ("addralign", c + "u8"),
                     ("entsize", c + "u8")])
    sym = np.dtype([("name", c + "u4"), ("info", "u1"), ("other", "u1"),
                    ("shndx", c + "u2"), ("value", c + "u8"), ("size", c + "u8")])
    rel = np.dtype([("offset", c + "u8"), ("info", c + "u8")])
    return ehdr, shdr, sym, rel


_DT = {"little": _dtypes("<"), "big": _dtypes(">")}


def _strings(table: bytes, offs: list[int], what: str) -> list[str]:
    """The NUL-terminated strings of *table* at *offs*: every terminator found
    in one numpy pass instead of a search per string."""
    if not offs:
        return []
    n = len(table)
    top = max(offs)
    if top >= n and top:
        bad = next(o for o in offs if o >= n and o)
        raise ELFError(f"{what} offset {bad} is outside its string table")
    if not n:
        return [""] * len(offs)
    nuls = np.flatnonzero(np.frombuffer(table, np.uint8) == 0)
    at = np.searchsorted(nuls, offs)
    if int(at.max()) >= len(nuls):
        raise ELFError(f"a {what} is not NUL-terminated")
    ends = nuls[at].tolist()
    return [table[o:e].decode("utf-8", "surrogateescape") for o, e in zip(offs, ends)]


class ELFFile:
    """One ELF64 BPF object held in memory.

    ``sections`` is a structured array of the section headers (fields
    ``name type flags addr offset size link info addralign entsize``),
    ``names`` the section names, ``symbols`` the symbol table (fields
    ``name info other shndx value size``; ``symbol_names`` beside it).
    ``byte_order`` is ``"little"`` or ``"big"``.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        n = len(data)
        if n < 64 or data[:4] != b"\x7fELF":
            raise ELFError("not an ELF file (bad magic or shorter than an ELF header)")
        if data[4] != 2:
            raise ELFError(f"ELF class {data[4]}: BPF objects are ELF64")
        if data[5] == 1:
            self.byte_order: Literal["little", "big"] = "little"
        elif data[5] == 2:
            self.byte_order = "big"
        else:
            raise ELFError(f"unknown ELF data encoding {data[5]}")
        ehdr_t, shdr_t, self._sym_t, self._rel_t = _DT[self.byte_order]
        eh = np.frombuffer(data, ehdr_t, 1)[0]
        if int(eh["machine"]) != EM_BPF:
            raise ELFError(f"ELF machine {int(eh['machine'])} is not BPF ({EM_BPF}): "
                           f"compile with clang -target bpf")
        if int(eh["type"]) != ET_REL:
            raise ELFError(f"ELF type {int(eh['type'])}: a BPF object is relocatable (ET_REL)")
        shoff, shnum, shentsize = int(eh["shoff"]), int(eh["shnum"]), int(eh["shentsize"])
        if shnum == 0:
            raise ELFError("ELF file has no section headers")
        if shentsize != 64:
            raise ELFError(f"ELF section header size {shentsize}, expected 64")
        if shoff > n or shnum * 64 > n - shoff:
            raise ELFError(f"ELF section headers ({shnum} at {shoff}) run past the end of "
                           f"the {n}-byte file")
        self.sections = np.frombuffer(data, shdr_t, shnum, shoff)
        sh = self.sections
        nobits = sh["type"] == SHT.NOBITS
        ends = sh["offset"] + sh["size"]
        bad = ~nobits & ((sh["offset"] > n) | (sh["size"] > n) | (ends > n))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ELFError(f"ELF section {i} ({int(sh['offset'][i])}+{int(sh['size'][i])}) "
                           f"runs past the end of the {n}-byte file")
        shstrndx = int(eh["shstrndx"])
        if shstrndx >= shnum:
            raise ELFError(f"ELF section name table index {shstrndx} is out of range")
        self._shstr = self.section_bytes(shstrndx)
        self.names = _strings(self._shstr, sh["name"].tolist(), "section name")
        self._sym_index = -1
        self.symbols = np.zeros(0, self._sym_t)
        self._symstr = b""
        symtabs = np.flatnonzero(sh["type"] == SHT.SYMTAB)
        if len(symtabs) > 1:
            raise ELFError("ELF file has more than one symbol table")
        if len(symtabs):
            i = int(symtabs[0])
            self._sym_index = i
            raw = self.section_bytes(i)
            if len(raw) % 24:
                raise ELFError(f"ELF symbol table size {len(raw)} is not a multiple of 24")
            self.symbols = np.frombuffer(raw, self._sym_t)
            link = int(sh["link"][i])
            if link >= shnum or int(sh["type"][link]) != SHT.STRTAB:
                raise ELFError("ELF symbol table links to no string table")
            self._symstr = self.section_bytes(link)
        self._all_names: list[str] | None = None

    # -- pieces -----------------------------------------------------------------

    @staticmethod
    def _string(table: bytes, off: int, what: str) -> str:
        if off >= len(table) and off:
            raise ELFError(f"{what} offset {off} is outside its string table")
        end = table.find(b"\0", off)
        if end < 0:
            raise ELFError(f"{what} at {off} is not NUL-terminated")
        return table[off:end].decode("utf-8", "surrogateescape")

    def section_bytes(self, index: int) -> bytes:
        """The contents of section *index* (zeros for NOBITS, like .bss)."""
        sh = self.sections[index]
        size = int(sh["size"])
        if int(sh["type"]) == SHT.NOBITS:
            if size > 1 << 30:
                raise ELFError(f"ELF section {self.names[index]!r} of {size} bytes is too large")
            return bytes(size)
        off = int(sh["offset"])
        return self.data[off:off + size]

    def symbol_name(self, i: int) -> str:
        """The name of symbol *i*."""
        names = self._all_names
        if names is None:
            names = self.symbol_names()
        return names[i]

    def symbol_names(self) -> list[str]:
        """Every symbol's name, decoded in one pass (then cached)."""
        if self._all_names is None:
            self._all_names = _strings(self._symstr, self.symbols["name"].tolist(),
                                       "symbol name")
        return self._all_names

    def relocations(self, index: int) -> np.ndarray:
        """The records of SHT_REL section *index*: fields ``offset``, ``info``."""
        raw = self.section_bytes(index)
        if len(raw) % 16:
            raise ELFError(f"relocation section {self.names[index]!r} size {len(raw)} is "
                           f"not a multiple of 16")
        if int(self.sections["link"][index]) != self._sym_index:
            raise ELFError(f"relocation section {self.names[index]!r} does not use the "
                           f"symbol table")
        rels = np.frombuffer(raw, self._rel_t)
        if len(rels) and int((rels["info"] >> 32).max()) >= len(self.symbols):
            raise ELFError(f"relocation section {self.names[index]!r} refers to a symbol "
                           f"beyond the symbol table")
        return rels
