"""The ELF container of a BPF object: headers, sections, symbols, relocations.

A BPF object is a small ELF64 relocatable file (``ET_REL``, ``EM_BPF``). Its
section header, symbol and relocation tables are arrays of fixed-size
records, so they are read here as numpy structured arrays in one call each,
in either byte order, instead of one Python object per record. Every offset
and size is checked against the file before use: a malformed file raises
:class:`ELFError`, never an IndexError or a crash.
"""

from __future__ import annotations

from typing import Any, Literal

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


def scan_python(data: bytes) -> tuple[Any, ...]:
    """The Python twin of :func:`fastbpf._elfscan.scan_elf` (same results,
    same errors): used when the extension is not built, and by the fuzzer
    to check the two agree."""
    n = len(data)
    if n < 64 or data[:4] != b"\x7fELF":
        raise ELFError("not an ELF file (bad magic or shorter than an ELF header)")
    if data[4] != 2:
        raise ELFError(f"ELF class {data[4]}: BPF objects are ELF64")
    if data[5] == 1:
        order = "little"
    elif data[5] == 2:
        order = "big"
    else:
        raise ELFError(f"unknown ELF data encoding {data[5]}")
    ehdr_t, shdr_t, sym_t, _ = _DT[order]
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
    sh = np.frombuffer(data, shdr_t, shnum, shoff)
    cols = tuple(sh[f].tolist() for f in ("type", "flags", "offset", "size", "link", "info"))
    types, _flags, offs, sizes, links, _infos = cols
    symtab = -1
    for i in range(shnum):
        if types[i] != SHT.NOBITS and (offs[i] > n or sizes[i] > n - offs[i]):
            raise ELFError(f"ELF section {i} ({offs[i]}+{sizes[i]}) runs past the end of "
                           f"the {n}-byte file")
        if types[i] == SHT.SYMTAB:
            if symtab >= 0:
                raise ELFError("ELF file has more than one symbol table")
            symtab = i
    shstrndx = int(eh["shstrndx"])
    if shstrndx >= shnum:
        raise ELFError(f"ELF section name table index {shstrndx} is out of range")
    if types[shstrndx] == SHT.NOBITS:
        if sizes[shstrndx] > 1 << 30:
            raise ELFError(f"ELF section {shstrndx} of {sizes[shstrndx]} bytes is too large")
        shstr = bytes(sizes[shstrndx])
    else:
        shstr = data[offs[shstrndx]:offs[shstrndx] + sizes[shstrndx]]
    names = _strings(shstr, sh["name"].tolist(), "section name")
    symcols: tuple[list[Any], ...] = ([], [], [], [], [])
    by_section: dict[int, dict[str, int]] = {}
    if symtab >= 0:
        if sizes[symtab] % 24:
            raise ELFError(f"ELF symbol table size {sizes[symtab]} is not a multiple of 24")
        link = links[symtab]
        if link >= shnum or types[link] != SHT.STRTAB:
            raise ELFError("ELF symbol table links to no string table")
        syms = np.frombuffer(data, sym_t, sizes[symtab] // 24, offs[symtab])
        strtab = data[offs[link]:offs[link] + sizes[link]]
        name_offs = syms["name"].tolist()
        symcols = (_strings(strtab, name_offs, "symbol name"), syms["info"].tolist(),
                   syms["shndx"].tolist(), syms["value"].tolist(), syms["size"].tolist())
        for name, off, info, shndx, value in zip(symcols[0], name_offs, symcols[1],
                                                 symcols[2], symcols[3]):
            if off and shndx and info & 0xF != STT.SECTION:
                by_section.setdefault(shndx, {})[name] = value
    return data[5] == 1, cols, names, symtab, symcols, by_section


try:  # the C scanner; scan_python above gives the same answers, slowly
    from .._elfscan import check_rels as _check_rels
    from .._elfscan import scan_elf as _scan
except ImportError:  # pragma: no cover - exercised only without the build
    _scan = scan_python
    _check_rels = None  # type: ignore[assignment]


class ELFFile:
    """One ELF64 BPF object held in memory.

    The section headers are plain lists (``sh_type``, ``sh_flags``,
    ``sh_offset``, ``sh_size``, ``sh_link``, ``sh_info``) beside ``names``;
    so are the symbols (``sym_info``, ``sym_shndx``, ``sym_value``,
    ``sym_size``, names from :meth:`symbol_names`). ``sections`` and
    ``symbols`` give the same tables as numpy structured arrays (fields
    ``name type flags addr offset size link info addralign entsize`` and
    ``name info other shndx value size``). ``by_section`` maps a section
    index to ``{name: value}`` of its named symbols. ``byte_order`` is
    ``"little"`` or ``"big"``.
    """

    def __init__(self, data: bytes) -> None:
        if type(data) is not bytes:
            data = bytes(data)
        self.data = data
        little, cols, self.names, self._sym_index, symcols, self.by_section = _scan(data)
        self.byte_order: Literal["little", "big"] = "little" if little else "big"
        (self.sh_type, self.sh_flags, self.sh_offset, self.sh_size, self.sh_link,
         self.sh_info) = cols
        (self._all_names, self.sym_info, self.sym_shndx, self.sym_value,
         self.sym_size) = symcols
        _, self._shdr_t, self._sym_t, self._rel_t = _DT[self.byte_order]
        self._sections: np.ndarray | None = None
        self._symbols: np.ndarray | None = None

    @property
    def sections(self) -> np.ndarray:
        """The section headers as a structured array (made on first use)."""
        if self._sections is None:
            shoff = int.from_bytes(self.data[40:48], self.byte_order)
            self._sections = np.frombuffer(self.data, self._shdr_t, len(self.names), shoff)
        return self._sections

    @property
    def symbols(self) -> np.ndarray:
        """The symbol table as a structured array (made on first use)."""
        if self._symbols is None:
            i = self._sym_index
            self._symbols = (np.frombuffer(self.section_bytes(i), self._sym_t) if i >= 0
                             else np.zeros(0, self._sym_t))
        return self._symbols

    # -- pieces -----------------------------------------------------------------

    def section_bytes(self, index: int) -> bytes:
        """The contents of section *index* (zeros for NOBITS, like .bss)."""
        size = self.sh_size[index]
        if self.sh_type[index] == SHT.NOBITS:
            if size > 1 << 30:
                raise ELFError(f"ELF section {self.names[index]!r} of {size} bytes is too large")
            return bytes(size)
        off = self.sh_offset[index]
        return self.data[off:off + size]

    def symbol_name(self, i: int) -> str:
        """The name of symbol *i*."""
        name: str = self._all_names[i]
        return name

    def symbol_names(self) -> list[str]:
        """Every symbol's name (decoded when the file was read)."""
        names: list[str] = self._all_names
        return names

    def relocations(self, index: int) -> np.ndarray:
        """The records of SHT_REL section *index*: fields ``offset``, ``info``."""
        size = self.sh_size[index]
        if size % 16:
            raise ELFError(f"relocation section {self.names[index]!r} size {size} is "
                           f"not a multiple of 16")
        if self.sh_link[index] != self._sym_index:
            raise ELFError(f"relocation section {self.names[index]!r} does not use the "
                           f"symbol table")
        nsyms = len(self._all_names)
        if self.sh_type[index] == SHT.NOBITS:
            rels = np.frombuffer(self.section_bytes(index), self._rel_t)
            bad = 0 if len(rels) and not nsyms else -1
        else:
            off = self.sh_offset[index]
            rels = np.frombuffer(self.data, self._rel_t, size // 16, off)
            bad = (_check_rels(self.data, off, size, self.byte_order == "little", nsyms)
                   if _check_rels is not None else
                   (0 if len(rels) and int((rels["info"] >> 32).max()) >= nsyms else -1))
        if bad >= 0:
            raise ELFError(f"relocation section {self.names[index]!r} refers to a symbol "
                           f"beyond the symbol table")
        return rels
