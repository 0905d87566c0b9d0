"""A structure-aware mutator for BPF ELF objects.

Byte flips, inserts and cuts of a whole object almost always break the
section header table's offset, so ~85% of such inputs stop at the first
check of the ELF reader. This mutator keeps the file's layout and changes
one field of one record instead: a section header, a symbol, a relocation,
a BTF header or type word, a ``.BTF.ext`` word, an instruction, or a byte
inside a section, with values chosen near the boundaries the loader checks
(0, 1, -1, the file size, the section count, the symbol count, ...).
Pure Python, no dependency: used by the atheris custom mutator
(``scripts/fuzz.py``) and by the short in-suite run (``tests/test_fuzz.py``).
"""

from __future__ import annotations

import random
import struct

# (offset in record, size) of the fields worth changing.
_SHDR_FIELDS = [(0, 4), (4, 4), (8, 8), (24, 8), (32, 8), (40, 4), (44, 4), (48, 8), (56, 8)]
_SYM_FIELDS = [(0, 4), (4, 1), (5, 1), (6, 2), (8, 8), (16, 8)]
_REL_FIELDS = [(0, 8), (8, 4), (12, 4)]     # offset, type, symbol (little-endian view)
_EHDR_FIELDS = [(16, 2), (18, 2), (40, 8), (58, 2), (60, 2), (62, 2)]


def _interesting(rng: random.Random, size: int, hints: list[int]) -> int:
    top = (1 << (8 * size)) - 1
    pool = [0, 1, 2, 3, 4, 7, 8, 15, 16, 24, 63, 64, 0x7F, 0x80, 0xFF, 0x100,
            0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, top, top - 1]
    pool += [h + d for h in hints for d in (-1, 0, 1)]
    r = rng.random()
    if r < 0.6:
        v = rng.choice(pool)
    elif r < 0.8:
        v = rng.randrange(256)
    else:
        v = rng.getrandbits(8 * size)
    return v & top


class _Layout:
    """Where the records of one object are; None if the headers are unreadable."""

    def __init__(self, data: bytes) -> None:
        self.ok = False
        if len(data) < 64 or data[:4] != b"\x7fELF" or data[5] not in (1, 2):
            return
        self.order = "<" if data[5] == 1 else ">"
        shoff, = struct.unpack_from(self.order + "Q", data, 40)
        shnum, shstrndx = struct.unpack_from(self.order + "HH", data, 60)
        if shoff + 64 * shnum > len(data) or shnum == 0:
            return
        self.shoff, self.shnum = shoff, shnum
        self.sections = [struct.unpack_from(self.order + "IIQQQQIIQQ", data, shoff + 64 * i)
                         for i in range(shnum)]
        names = b""
        if shstrndx < shnum:
            s = self.sections[shstrndx]
            names = data[s[4]:s[4] + s[5]]
        self.names = []
        for s in self.sections:
            end = names.find(b"\0", s[0])
            self.names.append(names[s[0]:end].decode("latin-1") if end >= 0 else "")
        self.ok = True

    def in_file(self, i: int, n: int) -> bool:
        s = self.sections[i]
        return s[1] != 8 and s[4] + s[5] <= n and s[5] > 0

    def of_type(self, t: int, n: int) -> list[int]:
        return [i for i, s in enumerate(self.sections) if s[1] == t and self.in_file(i, n)]

    def named(self, name: str, n: int) -> list[int]:
        return [i for i, nm in enumerate(self.names) if nm == name and self.in_file(i, n)]


def _put(b: bytearray, off: int, size: int, v: int, order: str) -> None:
    b[off:off + size] = v.to_bytes(size, "little" if order == "<" else "big")


def mutate_elf(data: bytes, rng: random.Random) -> bytes:
    """One to three structure-aware changes to *data*, same length."""
    lay = _Layout(data)
    if not lay.ok:
        return data
    b = bytearray(data)
    n = len(b)
    o = lay.order
    symtabs = lay.of_type(2, n)
    nsyms = lay.sections[symtabs[0]][5] // 24 if symtabs else 0
    hints = [n, lay.shnum, nsyms, lay.shoff]
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(9)
        if kind == 0:                                   # ELF header
            off, size = rng.choice(_EHDR_FIELDS)
            _put(b, off, size, _interesting(rng, size, hints), o)
        elif kind == 1:                                 # a section header
            i = rng.randrange(lay.shnum)
            off, size = rng.choice(_SHDR_FIELDS)
            s = lay.sections[i]
            _put(b, lay.shoff + 64 * i + off, size,
                 _interesting(rng, size, hints + [s[4], s[5]]), o)
        elif kind == 2 and symtabs:                     # a symbol
            s = lay.sections[symtabs[0]]
            j = rng.randrange(s[5] // 24) if s[5] >= 24 else 0
            off, size = rng.choice(_SYM_FIELDS)
            _put(b, s[4] + 24 * j + off, size, _interesting(rng, size, hints), o)
        elif kind == 3:                                 # a relocation
            rels = lay.of_type(9, n)
            if not rels:
                continue
            s = lay.sections[rng.choice(rels)]
            if s[5] < 16:
                continue
            at = s[4] + 16 * rng.randrange(s[5] // 16)
            off, size = rng.choice(_REL_FIELDS)
            if off == 8:                                # r_info = sym << 32 | type
                info = int.from_bytes(b[at + 8:at + 16], "little" if o == "<" else "big")
                v = _interesting(rng, 4, hints)
                info = (info & ~0xFFFFFFFF) | v if rng.random() < 0.5 else \
                    (info & 0xFFFFFFFF) | (v << 32)
                _put(b, at + 8, 8, info & (1 << 64) - 1, o)
            else:
                _put(b, at + off, size, _interesting(rng, size, hints), o)
        elif kind in (4, 5):                            # BTF / .BTF.ext words
            secs = lay.named(".BTF" if kind == 4 else ".BTF.ext", n)
            if not secs:
                continue
            s = lay.sections[secs[0]]
            if s[5] < 4:
                continue
            hdr_len = 24 if kind == 4 else 32
            if rng.random() < 0.3:                      # header field
                at = s[4] + 4 * rng.randrange(min(hdr_len, s[5]) // 4)
            else:                                       # a word of the body
                at = s[4] + (rng.randrange(s[5]) & ~3)
            if at + 4 > s[4] + s[5]:
                continue
            if rng.random() < 0.5:                      # one byte of it (kind, vlen)
                b[at + rng.randrange(4)] = _interesting(rng, 1, [])
            else:
                _put(b, at, 4, _interesting(rng, 4, hints + [s[5]]), o)
        elif kind == 6:                                 # an instruction
            code = [i for i, sec in enumerate(lay.sections)
                    if sec[1] == 1 and sec[2] & 4 and lay.in_file(i, n) and sec[5] >= 8]
            if not code:
                continue
            s = lay.sections[rng.choice(code)]
            at = s[4] + 8 * rng.randrange(s[5] // 8)
            part = rng.randrange(4)
            if part == 0:
                b[at] = rng.randrange(256)              # opcode
            elif part == 1:
                b[at + 1] = rng.randrange(256)          # registers
            elif part == 2:
                _put(b, at + 2, 2, _interesting(rng, 2, [s[5] // 8]), o)
            else:
                _put(b, at + 4, 4, _interesting(rng, 4, hints), o)
        else:                                           # a byte inside any section
            secs = [i for i in range(lay.shnum) if lay.in_file(i, n)]
            if not secs:
                continue
            s = lay.sections[rng.choice(secs)]
            b[s[4] + rng.randrange(s[5])] = rng.randrange(256)
    return bytes(b)
