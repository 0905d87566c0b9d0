# cython: language_level=3, boundscheck=True, wraparound=False, cdivision=True
"""Scanners for ELF BPF objects: the tables every parse reads whole.

A BPF object's section headers, symbols and relocations are arrays of fixed
records, and its ``.maps`` definitions and DATASECs are a few dozen BTF
records. Reading them a record at a time in Python costs more than the rest
of a parse together; these functions read them in C and return plain Python
lists and dicts, one call per table. :mod:`fastbpf.elf` keeps the policy
(what a section or symbol means) and the error messages' context.

Every offset and size is checked against its buffer before it is read: a
malformed object raises :class:`fastbpf.ELFError` (or ``BTFError`` for BTF),
never reads out of bounds. Bounds checks of memoryview indexing stay on as a
second line of defence.
"""

from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint16_t, int32_t, uint32_t, uint64_t, int64_t
from fastbpf._btfkind cimport *
from libc.string cimport memchr, memcmp, memcpy, strlen
from libc.stdlib cimport malloc, calloc, free, qsort
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.bytearray cimport PyByteArray_Resize, PyByteArray_AS_STRING

from fastbpf.errors import BTFError, ELFError

cdef enum:
    SHT_STRTAB = 3
    SHT_NOBITS = 8
    SHT_SYMTAB = 2
    EM_BPF = 247
    ET_REL = 1
    STT_SECTION = 3


# Readers of a field in the file's byte order (sw: big-endian), byte by byte:
# the tables are not aligned in a bytes object.
cdef inline uint16_t _u16(const uint8_t *p, bint sw) noexcept nogil:
    if sw:
        return <uint16_t>((p[0] << 8) | p[1])
    return <uint16_t>(p[0] | (p[1] << 8))


cdef inline uint32_t _u32(const uint8_t *p, bint sw) noexcept nogil:
    if sw:
        return ((<uint32_t>p[0]) << 24) | ((<uint32_t>p[1]) << 16) | ((<uint32_t>p[2]) << 8) | p[3]
    return ((<uint32_t>p[3]) << 24) | ((<uint32_t>p[2]) << 16) | ((<uint32_t>p[1]) << 8) | p[0]


cdef inline uint64_t _u64(const uint8_t *p, bint sw) noexcept nogil:
    if sw:
        return ((<uint64_t>_u32(p, sw)) << 32) | _u32(p + 4, sw)
    return ((<uint64_t>_u32(p + 4, sw)) << 32) | _u32(p, sw)


cdef str _cstr(const uint8_t *tab, uint64_t n, uint64_t off, str what):
    """The NUL-terminated string at *off* of a table of *n* bytes."""
    cdef const uint8_t *end
    if off >= n:
        if off:
            raise ELFError(f"{what} offset {off} is outside its string table")
        return ""
    if tab == NULL:         # a NOBITS table: all zeros
        return ""
    end = <const uint8_t *>memchr(tab + off, 0, n - off)
    if end == NULL:
        raise ELFError(f"a {what} is not NUL-terminated")
    return PyUnicode_DecodeUTF8(<const char *>(tab + off), end - (tab + off), "surrogateescape")


def scan_elf(bytes data):
    """Check an ELF64 BPF object's header and tables; read them as lists.

    Returns ``(little, (type, flags, offset, size, link, info), names,
    symtab, (sym_names, sym_info, sym_shndx, sym_value, sym_size),
    by_section)``: the section header columns and names, the index of the
    symbol table (-1: none), its columns, and ``{shndx: {name: value}}`` of
    the named, defined, non-section symbols. ELFError if anything is out of
    bounds.
    """
    cdef const uint8_t *p = data
    cdef uint64_t n = len(data)
    cdef bint sw
    cdef uint64_t shoff, off, size, i, strn, nsym, name_off
    cdef uint32_t shnum, shentsize, shstrndx, t, link
    cdef const uint8_t *sh
    cdef const uint8_t *tab
    cdef const uint8_t *s
    cdef int64_t symtab = -1
    cdef uint16_t shndx
    cdef uint8_t info
    if n < 64 or memcmp(p, b"\x7fELF", 4) != 0:
        raise ELFError("not an ELF file (bad magic or shorter than an ELF header)")
    if p[4] != 2:
        raise ELFError(f"ELF class {p[4]}: BPF objects are ELF64")
    if p[5] == 1:
        sw = False
    elif p[5] == 2:
        sw = True
    else:
        raise ELFError(f"unknown ELF data encoding {p[5]}")
    little = p[5] == 1
    if _u16(p + 18, sw) != EM_BPF:
        raise ELFError(f"ELF machine {_u16(p + 18, sw)} is not BPF ({EM_BPF}): "
                       f"compile with clang -target bpf")
    if _u16(p + 16, sw) != ET_REL:
        raise ELFError(f"ELF type {_u16(p + 16, sw)}: a BPF object is relocatable (ET_REL)")
    shoff = _u64(p + 40, sw)
    shentsize = _u16(p + 58, sw)
    shnum = _u16(p + 60, sw)
    shstrndx = _u16(p + 62, sw)
    if shnum == 0:
        raise ELFError("ELF file has no section headers")
    if shentsize != 64:
        raise ELFError(f"ELF section header size {shentsize}, expected 64")
    if shoff > n or shnum * 64 > n - shoff:
        raise ELFError(f"ELF section headers ({shnum} at {shoff}) run past the end of "
                       f"the {n}-byte file")
    types, flags, offs, sizes, links, infos = [], [], [], [], [], []
    for i in range(shnum):
        sh = p + shoff + 64 * i
        t = _u32(sh + 4, sw)
        off = _u64(sh + 24, sw)
        size = _u64(sh + 32, sw)
        if t != SHT_NOBITS and (off > n or size > n - off):
            raise ELFError(f"ELF section {i} ({off}+{size}) runs past the end of the "
                           f"{n}-byte file")
        if t == SHT_SYMTAB:
            if symtab >= 0:
                raise ELFError("ELF file has more than one symbol table")
            symtab = i
        types.append(t)
        flags.append(_u64(sh + 8, sw))
        offs.append(off)
        sizes.append(size)
        links.append(_u32(sh + 40, sw))
        infos.append(_u32(sh + 44, sw))
    if shstrndx >= shnum:
        raise ELFError(f"ELF section name table index {shstrndx} is out of range")
    strn = sizes[shstrndx]
    if types[shstrndx] == SHT_NOBITS:
        if strn > (1 << 30):
            raise ELFError(f"ELF section {shstrndx} of {strn} bytes is too large")
        tab = NULL
    else:
        tab = p + <uint64_t>offs[shstrndx]
    names = []
    for i in range(shnum):
        names.append(_cstr(tab, strn, _u32(p + shoff + 64 * i, sw), "section name"))
    sym_names, sym_info, sym_shndx, sym_value, sym_size = [], [], [], [], []
    by_section = {}
    if symtab >= 0:
        size = sizes[symtab]
        if size % 24:
            raise ELFError(f"ELF symbol table size {size} is not a multiple of 24")
        link = links[symtab]
        if link >= shnum or types[link] != SHT_STRTAB:
            raise ELFError("ELF symbol table links to no string table")
        tab = p + <uint64_t>offs[link]
        strn = sizes[link]
        s = p + <uint64_t>offs[symtab]
        nsym = size // 24
        for i in range(nsym):
            name_off = _u32(s, sw)
            info = s[4]
            shndx = _u16(s + 6, sw)
            off = _u64(s + 8, sw)
            name = _cstr(tab, strn, name_off, "symbol name")
            sym_names.append(name)
            sym_info.append(info)
            sym_shndx.append(shndx)
            sym_value.append(off)
            sym_size.append(_u64(s + 16, sw))
            if name_off and shndx and (info & 0xF) != STT_SECTION:
                d = by_section.get(shndx)
                if d is None:
                    d = by_section[shndx] = {}
                d[name] = off
            s += 24
    return (little, (types, flags, offs, sizes, links, infos), names, symtab,
            (sym_names, sym_info, sym_shndx, sym_value, sym_size), by_section)


# -- BTF ---------------------------------------------------------------------------------

cdef uint64_t SAT = 0xFFFFFFFFFFFFFFFF


cdef class _BTF:
    """The validated type words of one spec (see btf.Spec.parse) and its
    string section; type ids are checked again before every use."""

    cdef const uint32_t[::1] w
    cdef const uint32_t[::1] offs
    cdef bytes buf
    cdef Py_ssize_t str_start, str_len, str_base, n

    def __init__(self, spec):
        self.w = spec._words
        self.offs = spec._offs
        self.n = len(spec._offs)
        buf = spec._buf
        self.buf = buf if type(buf) is bytes else bytes(buf)
        self.str_start = spec._str_start
        self.str_len = spec._str_len
        self.str_base = spec._str_base

    cdef inline Py_ssize_t off(self, uint64_t tid, str what) except -1:
        if tid == 0 or tid > <uint64_t>self.n:
            raise BTFError(f"{what} refers to BTF type {tid}, out of range")
        return self.offs[tid - 1]

    cdef inline int kind(self, Py_ssize_t o):
        return (self.w[o + 1] >> 24) & 0x1F

    cdef const char *cname(self, uint32_t off):
        """The C string at string offset *off*; NULL if out of range."""
        cdef Py_ssize_t p = <Py_ssize_t>off - self.str_base
        if p < 0 or p >= self.str_len:
            return NULL
        return (<const char *>self.buf) + self.str_start + p

    cdef str name(self, uint32_t off):
        cdef const char *c = self.cname(off)
        cdef const char *end
        if c == NULL:
            raise BTFError(f"BTF string offset {off} is outside the string section")
        end = <const char *>memchr(c, 0, self.str_len - (off - self.str_base))
        if end == NULL:
            raise BTFError(f"BTF string at {off} is not NUL-terminated")
        return PyUnicode_DecodeUTF8(c, end - c, "surrogateescape")

    cdef uint64_t size_of(self, uint64_t tid, int depth) except? 0xFFFFFFFFFFFFFFFE:
        cdef Py_ssize_t o
        cdef int k
        cdef uint64_t a, b
        if tid == 0 or depth > 32:
            return 0
        o = self.off(tid, "a DATASEC variable")
        k = self.kind(o)
        if k in (K_INT, K_STRUCT, K_UNION, K_ENUM, K_DATASEC, K_FLOAT, K_ENUM64):
            return self.w[o + 2]
        if k == K_PTR:
            return 8
        if k == K_ARRAY:
            a = self.w[o + 5]
            b = self.size_of(self.w[o + 4], depth + 1)
            if a and b > SAT // a:
                return SAT
            return a * b
        if k in (K_TYPEDEF, K_CONST, K_VOLATILE, K_RESTRICT, K_TYPE_TAG, K_VAR):
            return self.size_of(self.w[o + 2], depth + 1)
        return 0

    cdef uint64_t align_of(self, uint64_t tid, int depth) except 0:
        cdef Py_ssize_t o, j
        cdef int k
        cdef uint64_t a, b
        if tid == 0 or depth > 32:
            return 1
        o = self.off(tid, "a DATASEC variable")
        k = self.kind(o)
        if k in (K_INT, K_ENUM, K_FLOAT, K_ENUM64):
            a = self.w[o + 2]
            return 1 if a < 1 else (8 if a > 8 else a)
        if k == K_PTR:
            return 8
        if k == K_ARRAY:
            return self.align_of(self.w[o + 4], depth + 1)
        if k in (K_STRUCT, K_UNION):
            a = 1
            for j in range(self.w[o + 1] & 0xFFFF):
                b = self.align_of(self.w[o + 3 + 3 * j + 1], depth + 1)
                if b > a:
                    a = b
            return a
        if k in (K_TYPEDEF, K_CONST, K_VOLATILE, K_RESTRICT, K_TYPE_TAG, K_VAR):
            return self.align_of(self.w[o + 2], depth + 1)
        return 1

    cdef Py_ssize_t rec(self, uint64_t tid, int *kind) except -2:
        """The word offset of *tid* with modifiers skipped, its kind in *kind*;
        -1 if the chain meets an id out of range."""
        cdef Py_ssize_t o
        cdef int k, i
        for i in range(32):
            if tid == 0 or tid > <uint64_t>self.n:
                return -1
            o = self.offs[tid - 1]
            k = self.kind(o)
            if k not in (K_TYPEDEF, K_VOLATILE, K_CONST, K_RESTRICT, K_TYPE_TAG):
                kind[0] = k
                return o
            tid = self.w[o + 2]
        raise ELFError("BTF type chain too deep")

    cdef uint64_t target(self, uint64_t tid) except? 0xFFFFFFFFFFFFFFFF:
        """The id a modifier chain ends at (0: void)."""
        cdef int i, k
        for i in range(32):
            if tid == 0 or tid > <uint64_t>self.n:
                return tid
            k = self.kind(self.offs[tid - 1])
            if k not in (K_TYPEDEF, K_VOLATILE, K_CONST, K_RESTRICT, K_TYPE_TAG):
                return tid
            tid = self.w[self.offs[tid - 1] + 2]
        raise ELFError("BTF type chain too deep")


def fix_datasecs(spec, uint32_t[::1] words, dict section_sizes, dict symbols):
    """Fill DATASEC sizes and variable offsets in *words* (a writable copy of
    *spec*'s type words); lay out ``.kconfig`` and ``.ksyms``.

    *section_sizes*: ELF section name -> size; *symbols*: section name ->
    {symbol name: value}. Returns ``(changed, {kconfig name: (offset, size)},
    {DATASEC name: type id})`` (the first DATASEC of a name).
    The C twin of :func:`fastbpf.elf.btffix.fix_datasecs_python`.
    """
    cdef _BTF b = _BTF(spec)
    cdef Py_ssize_t idx, o, base, vo, j, vlen
    cdef uint64_t off, size, align, limit, vid, voff, vsize
    cdef bint changed = False
    cdef const uint8_t[::1] kinds = spec._kinds
    kconfig = {}
    datasecs = {}
    for idx in range(b.n):
        if kinds[idx] != K_DATASEC:
            continue
        o = b.offs[idx]
        name = b.name(words[o])
        if name not in datasecs:
            datasecs[name] = idx + 1
        vlen = words[o + 1] & 0xFFFF
        base = o + 3
        if name == ".kconfig" or name == ".ksyms":
            off = 0
            for j in range(vlen):
                vid = words[base + 3 * j]
                vo = b.off(vid, f"DATASEC {name!r}")
                size = b.size_of(vid, 0) if b.kind(vo) == K_VAR else 0
                align = b.align_of(vid, 0)
                off = SAT if off > SAT - align else (off + align - 1) // align * align
                words[base + 3 * j + 1] = <uint32_t>off
                words[base + 3 * j + 2] = <uint32_t>size
                if name == ".kconfig":
                    kconfig[b.name(words[vo])] = (off, size)
                off = SAT if size > SAT - off else off + size
            # .kconfig becomes a map value (so at most KMALLOC_MAX_SIZE); .ksyms
            # is only laid out, but its size is still a 32-bit BTF word.
            limit = (1 << 22) if name == ".kconfig" else 0xFFFFFFFF
            if off > limit:
                raise BTFError(f"the {name} externs take {off} bytes, more than {limit}")
            words[o + 2] = <uint32_t>off
            changed = True
            continue
        found = section_sizes.get(name)
        if found is None:
            continue
        size = found
        if size > 0xFFFFFFFF:   # an ELF size is 64-bit (NOBITS: any), a BTF size 32
            raise BTFError(f"section {name!r} of {size} bytes is too large for its DATASEC")
        if words[o + 2] != size:
            words[o + 2] = <uint32_t>size
            changed = True
        syms = symbols.get(name) or {}
        recs = []
        for j in range(vlen):
            vid = words[base + 3 * j]
            voff = words[base + 3 * j + 1]
            vsize = words[base + 3 * j + 2]
            if vid == 0 or vid > <uint64_t>b.n:
                raise BTFError(f"DATASEC {name!r} refers to type {vid}, out of range")
            vo = b.offs[vid - 1]
            if b.kind(vo) == K_VAR:
                vname = b.name(words[vo])
                at = syms.get(vname)
                if at is not None:
                    if at > size:    # a symbol value is 64-bit, a BTF offset 32
                        raise BTFError(f"variable {vname!r} of DATASEC {name!r}: its symbol "
                                       f"is at offset {at}, past the {size}-byte section")
                    voff = at
            recs.append((voff, vid, vsize))
        recs.sort()
        for j in range(vlen):
            voff, vid, vsize = recs[j]
            if (words[base + 3 * j] != vid or words[base + 3 * j + 1] != voff
                    or words[base + 3 * j + 2] != vsize):
                words[base + 3 * j] = <uint32_t>vid
                words[base + 3 * j + 1] = <uint32_t>voff
                words[base + 3 * j + 2] = <uint32_t>vsize
                changed = True
    return changed, kconfig, datasecs


# Map definition fields (libbpf's __uint/__type/__array names).
cdef enum:
    F_OTHER = 0
    F_UINT = 1
    F_KEY = 2
    F_VALUE = 3
    F_VALUES = 4

_FIELDS = {b"key": (F_KEY, None), b"value": (F_VALUE, None), b"values": (F_VALUES, None)}
for _n in ("type", "max_entries", "map_flags", "numa_node", "key_size", "value_size",
           "pinning", "map_extra"):
    _FIELDS[_n.encode()] = (F_UINT, _n)


cdef str _where(_BTF b, str name, uint32_t member):
    return f"map {name!r} field {b.name(member)!r}"


cdef _out_of_range(str where):
    raise ELFError(f"{where} refers to a BTF type out of range")


cdef tuple _map_def(_BTF b, str name, uint64_t tid, bint inner_ok):
    """(fields, key id, value id, inner def or None, values offset or None)."""
    cdef int kind = 0, pk = 0, ak = 0, tk = 0, f
    cdef Py_ssize_t o, po, ao, j, vlen
    cdef uint32_t m_name, m_type, m_off, info
    cdef uint64_t key = 0, value = 0, tgt
    cdef const char *c
    o = b.rec(tid, &kind)
    if o < 0:
        _out_of_range(f"map {name!r} definition")
    if kind != K_STRUCT:
        raise ELFError(f"map {name!r}: definition is not a struct")
    info = b.w[o + 1]
    vlen = info & 0xFFFF
    fields = {}
    inner = None
    values_off = None
    for j in range(vlen):
        m_name = b.w[o + 3 + 3 * j]
        m_type = b.w[o + 4 + 3 * j]
        m_off = b.w[o + 5 + 3 * j]
        c = b.cname(m_name)
        if c == NULL:
            continue
        got = _FIELDS.get(<bytes>c)
        if got is None:
            continue
        f, uint_name = got
        if f == F_UINT:
            po = b.rec(m_type, &pk)
            ao = b.rec(b.w[po + 2], &ak) if po >= 0 and pk == K_PTR else -1
            if ao < 0 or ak != K_ARRAY:
                raise ELFError(f"{_where(b, name, m_name)}: expected __uint (a pointer to "
                               f"an array)")
            fields[uint_name] = b.w[ao + 5]
        elif f == F_KEY or f == F_VALUE:
            po = b.rec(m_type, &pk)
            if po < 0 or pk != K_PTR:
                raise ELFError(f"{_where(b, name, m_name)}: expected __type (a pointer)")
            # A pointer to void (modifiers skipped) says nothing: no type.
            tgt = b.w[po + 2]
            if b.target(tgt) == 0:
                tgt = 0
            if f == F_KEY:
                key = tgt
            else:
                value = tgt
        else:
            ao = b.rec(m_type, &ak)
            if ao < 0 or ak != K_ARRAY:
                raise ELFError(f"{_where(b, name, m_name)}: expected __array")
            values_off = ((m_off & 0xFFFFFF) if info >> 31 else m_off) // 8
            po = b.rec(b.w[ao + 3], &pk)
            if po < 0 or pk != K_PTR:
                raise ELFError(f"{_where(b, name, m_name)}: expected an array of pointers")
            tgt = b.target(b.w[po + 2])
            tk = 0
            if tgt and b.rec(tgt, &tk) < 0:
                _out_of_range(_where(b, name, m_name))
            if tk == K_STRUCT:
                if not inner_ok:
                    raise ELFError(f"{_where(b, name, m_name)}: maps of maps of maps are "
                                   f"not supported")
                inner = _map_def(b, name + ".inner", tgt, False)
    return fields, key, value, inner, values_off


def map_defs(spec, uint64_t datasec, dict offsets):
    """The map definitions of the ``.maps`` DATASEC *datasec*: a list of
    ``(name, symbol offset, size, (fields, key id, value id, inner, values
    offset))``; *offsets* maps the section's symbol names to their values."""
    cdef _BTF b = _BTF(spec)
    cdef int kind = 0
    cdef Py_ssize_t o, vo, j
    cdef uint32_t vid, vsize
    o = b.rec(datasec, &kind)
    if o < 0 or kind != K_DATASEC:
        raise ELFError(f".maps is type {datasec}, not a DATASEC")
    out = []
    for j in range(b.w[o + 1] & 0xFFFF):
        vid = b.w[o + 3 + 3 * j]
        vsize = b.w[o + 5 + 3 * j]
        vo = b.rec(vid, &kind)
        if vo < 0 or kind != K_VAR:
            raise ELFError(f".maps DATASEC holds type {vid}, not a variable")
        name = b.name(b.w[vo])
        off = offsets.get(name)
        if off is None:
            raise ELFError(f"map {name!r} has no symbol in .maps")
        out.append((name, off, vsize, _map_def(b, name, b.w[vo + 2], True)))
    return out


# -- functions ---------------------------------------------------------------------------

cdef class Func:
    """One function of an object: where its code is, and its label.

    ``cache`` (decoded Instructions) and ``code`` (the loader's view) are
    filled on first use by :mod:`fastbpf.elf.objfile`.
    """

    cdef public str label
    cdef public str section
    cdef public Py_ssize_t shndx
    cdef public uint64_t start
    cdef public uint64_t size
    cdef public object cache
    cdef public object code

    def __init__(self, str label, Py_ssize_t shndx, uint64_t start, uint64_t size,
                 str section):
        self.label = label
        self.shndx = shndx
        self.start = start
        self.size = size
        self.section = section
        self.cache = None
        self.code = None


def index_functions(list sym_names, list sym_info, list sym_shndx, list sym_value,
                    list sym_size, list sec_names, list sec_sizes, prog_set):
    """The functions of the executable sections *prog_set*: ``(funcs, labels,
    programs)``: ``{(shndx, start): Func}``, ``{label: Func}`` and ``[(Func,
    symbol index)]`` of the functions outside ``.text`` (ELFError for one
    that is not whole instructions inside its section)."""
    cdef Py_ssize_t j, n = len(sym_info)
    cdef uint64_t start, size, sec_size
    cdef int info, bind
    cdef Py_ssize_t shndx
    cdef Func f
    funcs, labels, programs = {}, {}, []
    if len(sym_shndx) != n or len(sym_value) != n or len(sym_size) != n or len(sym_names) != n:
        raise ELFError("symbol table columns differ in length")
    for j in range(n):
        info = sym_info[j]
        if info & 0xF != 2:             # STT_FUNC
            continue
        shndx = sym_shndx[j]
        if shndx not in prog_set:
            continue
        start = sym_value[j]
        size = sym_size[j]
        sec_size = sec_sizes[shndx]
        if start % 8 or size % 8 or start > sec_size or size > sec_size - start:
            raise ELFError(f"function {sym_names[j]!r} ({start}+{size}) is not "
                           f"whole instructions inside its section")
        key = (shndx, start)
        if key in funcs:
            continue  # an alias
        name = sym_names[j]
        sec = sec_names[shndx]
        label = name if name and name not in labels else f"{name}@{sec}+{start}"
        f = Func.__new__(Func)
        f.label = label
        f.shndx = shndx
        f.start = start
        f.size = size or (sec_size - start)
        f.section = sec
        funcs[key] = f
        labels[label] = f
        bind = info >> 4
        if sec != ".text" and bind <= 2:     # STB_LOCAL, STB_GLOBAL, STB_WEAK
            programs.append((f, j))
    return funcs, labels, programs


_SPECIAL = frozenset(("license", "version", ".BTF", ".BTF.ext", ".maps", "maps"))


def classify_sections(list names, list types, list flags, list sizes, list infos):
    """What each section is: ``(index by name, {target: rel section},
    program sections, data sections, {special name: index}, struct_ops
    sections)``. Special names are ``license version .BTF .BTF.ext .maps
    maps``; data sections are PROGBITS/NOBITS ``.data``, ``.rodata``,
    ``.bss`` and ``.data.*`` etc.; program sections are non-empty
    executable PROGBITS. ELFError for a relocation section whose target is
    out of range."""
    cdef Py_ssize_t i, n = len(names)
    cdef uint64_t t
    if len(types) != n or len(flags) != n or len(sizes) != n or len(infos) != n:
        raise ELFError("section table columns differ in length")
    index, rel_of, special = {}, {}, {}
    progs, data, struct_ops = [], [], []
    for i in range(n):
        name = <str>names[i]
        index[name] = i
        t = types[i]
        if t == 9:                                      # SHT_REL
            target = infos[i]
            if target >= n:
                raise ELFError(f"relocation section {name!r} targets section {target}, "
                               f"out of range")
            rel_of[target] = i
        elif t == 1 and (<uint64_t>flags[i]) & 0x4:     # PROGBITS, SHF_EXECINSTR
            if sizes[i]:
                progs.append(i)
        elif name.startswith(".debug_"):
            continue
        elif name in _SPECIAL:
            special[name] = i
        elif name.startswith(".struct_ops"):
            struct_ops.append(i)
        elif (t == 1 or t == 8) and _is_data(name):
            data.append(i)
    return index, rel_of, progs, data, special, struct_ops


cdef bint _is_data(str name):
    for base in (".data", ".rodata", ".bss"):
        if name == base or name.startswith(base + "."):
            return True
    return False


def check_rels(bytes data, uint64_t off, uint64_t size, bint little, uint64_t nsyms):
    """The index of the first SHT_REL record at *off* whose symbol is not
    below *nsyms*, or -1 (the table must lie inside *data*)."""
    cdef const uint8_t *p = data
    cdef uint64_t i
    if off > <uint64_t>len(data) or size > <uint64_t>len(data) - off:
        raise ELFError(f"relocation table ({off}+{size}) runs past the end of the file")
    p += off
    for i in range(size // 16):
        if (_u64(p + 8, not little) >> 32) >= nsyms:
            return <int64_t>i
        p += 16
    return -1


# -- code --------------------------------------------------------------------------------

def scan_code(bytes raw, bint little, list rel_offsets):
    """The instructions of one executable section that the loader looks at.

    Returns ``(bad, relocated, calls)``: *bad* the first of *rel_offsets*
    (byte offsets of relocations) that is not at an instruction (misaligned,
    past the end, or the second half of an ld_imm64), else None;
    *relocated* ``[(slot, opcode, imm, regs)]`` for each relocation in
    order; *calls* ``[(slot, imm)]`` of the bpf-to-bpf calls (src =
    BPF_PSEUDO_CALL) that are not ld_imm64 second halves. *raw* must be
    whole instructions.
    """
    cdef const uint8_t *p = raw
    cdef Py_ssize_t n = len(raw) // 8, i
    cdef bint big = not little
    cdef uint8_t src
    cdef uint64_t off, slot
    if len(raw) % 8:
        raise ELFError("code section is not whole instructions")
    cdef bytearray second_b = bytearray(n + 1)
    cdef unsigned char *second = second_b
    calls = []
    i = 0
    while i < n:
        if p[8 * i] == 0x18:                    # BPF_LD | BPF_IMM | BPF_DW: two slots
            second[i + 1] = 1
            i += 2
            continue
        if p[8 * i] == 0x85:                    # BPF_JMP | BPF_CALL
            src = (p[8 * i + 1] >> 4) if little else (p[8 * i + 1] & 0xF)
            if src == 1:
                calls.append((i, <int32_t>_u32(p + 8 * i + 4, big)))
        i += 1
    relocated = []
    for o in rel_offsets:
        off = o
        slot = off >> 3
        if off & 7 or slot >= <uint64_t>n or second[slot]:
            return o, None, None
        relocated.append((slot, p[8 * slot], <int32_t>_u32(p + 8 * slot + 4, big),
                          p[8 * slot + 1]))
    return None, relocated, calls


# -- linking -----------------------------------------------------------------------------

# Relocated slot kinds of a LinkTables section table (column 1 of ``rel``).
cdef enum:
    R_CALL = 1      # bpf-to-bpf call: target = function index
    R_FUNC = 2      # ld_imm64 of a function (callback): target = function index
    R_MAP = 3       # ld_imm64 of a map: target = map index
    R_MAPVAL = 4    # ld_imm64 into a data map: target = map index, extra = offset

# Columns of LinkTables.functions.
cdef enum:
    FN_SEC = 0      # index into the section tables, -1: none (the Python path)
    FN_START = 1    # first slot in its section
    FN_N = 2        # slots
    FN_RLO = 3      # its rows of the section's rel table
    FN_RHI = 4
    FN_FLO = 5      # its func_info rows
    FN_FHI = 6
    FN_LLO = 7      # its line_info rows
    FN_LHI = 8
    FN_COLS = 9

cdef enum:
    ROLE_NONE = -1
    ROLE_PROG = -2
    ROLE_MAPS = -3
    SHN_LORESERVE = 0xFF00


cdef inline void _put32(uint8_t *p, uint32_t v, bint little) noexcept nogil:
    if little:
        p[0] = v & 0xFF
        p[1] = (v >> 8) & 0xFF
        p[2] = (v >> 16) & 0xFF
        p[3] = v >> 24
    else:
        p[3] = v & 0xFF
        p[2] = (v >> 8) & 0xFF
        p[1] = (v >> 16) & 0xFF
        p[0] = v >> 24


cdef inline void _set_src(uint8_t *insn, uint8_t src, bint little) noexcept nogil:
    if little:
        insn[1] = (insn[1] & 0x0F) | (src << 4)
    else:
        insn[1] = (insn[1] & 0xF0) | src


cdef Py_ssize_t _bisect(const uint32_t *rows, Py_ssize_t n, Py_ssize_t width,
                        uint64_t off) noexcept nogil:
    """The first of *n* rows of *width* words whose first word is >= *off*."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if rows[mid * width] < off:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef bint _sorted_rows(const uint32_t *rows, Py_ssize_t n, Py_ssize_t width) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(1, n):
        if rows[i * width] < rows[(i - 1) * width]:
            return False
    return True


cdef int _cmp_key(const void *a, const void *b) noexcept nogil:
    cdef const int64_t *x = <const int64_t *>a
    cdef const int64_t *y = <const int64_t *>b
    if x[0] != y[0]:
        return -1 if x[0] < y[0] else 1
    if x[1] != y[1]:
        return -1 if x[1] < y[1] else 1
    return 0


cdef object _table(const void *p, Py_ssize_t rows, Py_ssize_t width, str dtype):
    """A numpy copy of a C table (for tests and inspection)."""
    import numpy as np
    cdef Py_ssize_t size = 4 if dtype == "uint32" else 8
    if rows == 0:
        return np.zeros((0, width), dtype=dtype)
    return np.frombuffer(PyBytes_FromStringAndSize(<const char *>p, rows * width * size),
                         dtype=dtype).reshape(rows, width)


def ext_rows(bytes data, spec, dict sections):
    """The .BTF.ext records the linker needs, read in C: ``{section name:
    (func_info, line_info, core offsets)}`` for the names in *sections*, each
    as bytes of native u32 rows (2 words, 4 words, 1 word), in file order;
    *spec* is the object's BTF (for the section names). None when anything
    is out of the ordinary (the Python reader, ExtRecords, then says what)."""
    cdef const uint8_t *p = data
    cdef uint64_t n = len(data), hdr, off, length, rec, pos, num, name_off, j, w
    cdef uint64_t s_start, s_len
    cdef bint sw
    cdef int which
    cdef const uint8_t *sub
    cdef const char *name
    cdef const char *end
    cdef uint32_t word
    cdef uint8_t *dst
    cdef Py_ssize_t at
    cdef uint32_t minw[3]
    minw[0] = 2
    minw[1] = 4
    minw[2] = 1
    buf = spec._buf
    if type(buf) is not bytes or spec._str_base != 0 or n < 24:
        return None
    cdef const uint8_t *b = <bytes>buf
    s_start = spec._str_start
    s_len = spec._str_len
    if s_start > <uint64_t>len(buf) or s_len > <uint64_t>len(buf) - s_start:
        return None
    if p[0] == 0x9F and p[1] == 0xEB:
        sw = False
    elif p[0] == 0xEB and p[1] == 0x9F:
        sw = True
    else:
        return None
    hdr = _u32(p + 4, sw)
    if p[2] != 1 or hdr < 24 or hdr > n:
        return None
    out = {}
    for which in range(3):
        if which < 2:
            off = _u32(p + 8 + 8 * which, sw)
            length = _u32(p + 12 + 8 * which, sw)
        elif hdr >= 32:
            off = _u32(p + 24, sw)
            length = _u32(p + 28, sw)
        else:
            break
        if length == 0:
            continue
        if off + length > n - hdr or length < 4:
            return None
        sub = p + hdr + off
        rec = _u32(sub, sw)
        if rec < 4 * minw[which] or rec % 4 or rec > 1024 or (which == 2 and rec < 16):
            return None
        pos = 4
        while pos < length:
            if length - pos < 8:
                return None
            name_off = _u32(sub + pos, sw)
            num = _u32(sub + pos + 4, sw)
            pos += 8
            if name_off >= s_len:
                return None
            name = <const char *>b + s_start + name_off
            end = <const char *>memchr(name, 0, s_len - name_off)
            if end == NULL or num == 0 or num * rec > length - pos:
                return None
            sec = PyUnicode_DecodeUTF8(name, end - name, "surrogateescape")
            if sec in sections:
                got = out.get(sec)
                if got is None:
                    got = out[sec] = (bytearray(), bytearray(), bytearray())
                rows = <bytearray>got[which]
                at = len(rows)
                PyByteArray_Resize(rows, at + 4 * num * minw[which])
                dst = <uint8_t *>PyByteArray_AS_STRING(rows) + at
                for j in range(num):
                    for w in range(minw[which]):
                        word = _u32(sub + pos + j * rec + 4 * w, sw)
                        memcpy(dst, &word, 4)
                        dst += 4
            pos += num * rec
    return out


cdef class _SecTables:
    """The link tables of one executable section (see LinkTables.add_section)."""
    cdef readonly bytes raw
    cdef int64_t *r       # rows of 4: slot, kind, target, extra (data offset)
    cdef uint32_t *f      # func_info rows of 2: byte offset, FUNC type id
    cdef uint32_t *l      # line_info rows of 4: byte offset, file, line, col
    cdef Py_ssize_t nr, nf, nl

    def __dealloc__(self):
        free(self.r)
        free(self.f)
        free(self.l)

    @property
    def rel(self):
        """The relocated slots: int64 rows (slot, kind, target, extra)."""
        return _table(self.r, self.nr, 4, "int64")

    @property
    def func(self):
        """func_info rows (byte offset, type id)."""
        return _table(self.f, self.nf, 2, "uint32")

    @property
    def line(self):
        """line_info rows (byte offset, file, line, column)."""
        return _table(self.l, self.nl, 4, "uint32")


cdef uint32_t *_copy_rows(bytes rows, Py_ssize_t width, Py_ssize_t *n) except? NULL:
    cdef Py_ssize_t size = len(rows)
    cdef uint32_t *out
    if size % (4 * width):
        n[0] = -1
        return NULL
    n[0] = size // (4 * width)
    out = <uint32_t *>malloc(size + 4)
    if out == NULL:
        raise MemoryError()
    memcpy(out, <const char *>rows, size)
    return out


cdef class LinkTables:
    """The loader's fast linking of one object, in C.

    Made once per parse from the object's function index, then one
    :meth:`add_section` per executable section: a C pass that resolves
    every relocation and bpf-to-bpf call of the section to a kind code and
    a target index (function, map) and keeps the section's func_info and
    line_info rows. :meth:`linker` binds a load's map fds; its ``link``
    writes a program's instructions, func_info and line_info in one go.
    Anything unusual (an extern, a CO-RE relocation, a malformed relocation
    or record) leaves the functions concerned without tables: the Python
    linker (:mod:`fastbpf._linkraw`) links them, and raises its errors.
    Every index and offset is checked before it is used.
    """

    cdef readonly bint little
    cdef readonly list labels         # function label by function index
    cdef readonly dict index          # function index by label
    cdef readonly list map_names      # map name by map index
    cdef readonly list sections       # _SecTables by FN_SEC
    cdef dict _map_index
    cdef dict _map_syms
    cdef Py_ssize_t nfunc, nsec
    cdef int64_t *fn                  # nfunc rows of FN_COLS
    cdef int64_t *fkey                # (shndx, start byte, function index), sorted
    cdef int64_t *role                # per ELF section: data map index, or ROLE_*

    def __cinit__(self):
        self.fn = NULL
        self.fkey = NULL
        self.role = NULL

    def __dealloc__(self):
        free(self.fn)
        free(self.fkey)
        free(self.role)

    def __init__(self, bint little, dict funcs, Py_ssize_t nsec, prog_secs,
                 Py_ssize_t maps_shndx, Py_ssize_t legacy_maps_shndx, dict data_maps,
                 dict map_syms):
        """*funcs*: ``{(shndx, start): Func}`` (ObjectFile.funcs); *nsec*: the
        number of ELF sections; *data_maps*: ``{shndx: map name}``;
        *map_syms*: ``{(shndx, symbol value): map name}``."""
        cdef Py_ssize_t i, n = len(funcs)
        cdef int64_t shndx, start, size
        if nsec < 0:
            raise ELFError("negative section count")
        self.little = little
        self.labels = []
        self.index = {}
        self.map_names = []
        self.sections = []
        self._map_index = {}
        self._map_syms = map_syms
        self.nsec = nsec
        self.fn = <int64_t *>malloc(sizeof(int64_t) * (n * FN_COLS + 1))
        self.fkey = <int64_t *>malloc(sizeof(int64_t) * (n * 3 + 1))
        self.role = <int64_t *>malloc(sizeof(int64_t) * (nsec + 1))
        if self.fn == NULL or self.fkey == NULL or self.role == NULL:
            raise MemoryError()
        self.nfunc = n
        for i in range(n * FN_COLS):
            self.fn[i] = -1
        i = 0
        for key, f in funcs.items():
            if i >= n:
                raise ELFError("the function index changed while read")
            shndx, start = key
            size = f.size
            if not 0 <= shndx < nsec or not 0 <= start < (1 << 40) or \
                    not 0 <= size < (1 << 40):
                raise ELFError(f"function {f.label!r} is outside its section")
            self.fkey[3 * i] = shndx
            self.fkey[3 * i + 1] = start
            self.fkey[3 * i + 2] = i
            self.fn[FN_COLS * i + FN_START] = start >> 3
            self.fn[FN_COLS * i + FN_N] = size >> 3
            self.labels.append(f.label)
            self.index[f.label] = i
            i += 1
        qsort(self.fkey, n, 3 * sizeof(int64_t), _cmp_key)
        for i in range(nsec):
            self.role[i] = ROLE_NONE
        for shndx, name in data_maps.items():
            if 0 <= shndx < nsec:
                self.role[shndx] = self._map(name)
        for shndx in (maps_shndx, legacy_maps_shndx):
            if 0 <= shndx < nsec:
                self.role[shndx] = ROLE_MAPS
        for shndx in prog_secs:
            if 0 <= shndx < nsec:
                self.role[shndx] = ROLE_PROG

    @property
    def functions(self):
        """Per function index: int64 rows (section table or -1, first slot,
        slots, rel rows lo/hi, func_info rows lo/hi, line_info rows lo/hi)."""
        return _table(self.fn, self.nfunc, FN_COLS, "int64")

    cdef int64_t _map(self, name) except -1:
        got = self._map_index.get(name)
        if got is None:
            got = self._map_index[name] = len(self.map_names)
            self.map_names.append(name)
        return got

    cdef int64_t _func_at(self, int64_t shndx, int64_t start) noexcept:
        """The index of the function at byte *start* of section *shndx*, or -1."""
        cdef Py_ssize_t lo = 0, hi = self.nfunc, mid
        cdef const int64_t *k = self.fkey
        while lo < hi:
            mid = (lo + hi) >> 1
            if k[3 * mid] < shndx or (k[3 * mid] == shndx and k[3 * mid + 1] < start):
                lo = mid + 1
            else:
                hi = mid
        if lo < self.nfunc and k[3 * lo] == shndx and k[3 * lo + 1] == start:
            return k[3 * lo + 2]
        return -1

    def add_section(self, Py_ssize_t shndx, bytes raw, bytes rels, list sym_shndx,
                    list sym_value, list sym_info, bytes func_rows, bytes line_rows,
                    bytes core_offsets, const uint8_t[::1] btf_kinds, Py_ssize_t ntypes):
        """Scan executable section *shndx* (*raw*: its bytes; *rels*: its
        SHT_REL records as in the file, or b""). *func_rows*, *line_rows*,
        *core_offsets*: its .BTF.ext func_info, line_info and CO-RE records
        as native u32 rows of 2, 4 and 1 words (the byte offset first);
        *btf_kinds*/*ntypes*: the object BTF's kinds and type count, to
        check func_info type ids. Returns False (no tables: the section's
        functions take the Python path) on anything the fast path does not
        take or that is malformed; True when the tables are made."""
        cdef const uint8_t *p = raw
        cdef const uint8_t *rp = rels
        cdef Py_ssize_t n = len(raw) // 8, i, k, nrel, nsym = len(sym_shndx), nrows, j, lo
        cdef Py_ssize_t nco = len(core_offsets) // 4
        cdef bint big = not self.little, bad
        cdef uint64_t off, info, value, start, end
        cdef int64_t slot, sym, sshndx, role, target, fi
        cdef int32_t imm
        cdef uint8_t code, src, stype
        cdef int64_t *fn
        cdef const uint32_t *co = <const uint32_t *><const char *>core_offsets
        cdef _SecTables t
        if len(raw) % 8 or n == 0 or len(rels) % 16 or not 0 <= shndx < self.nsec:
            return False
        if len(sym_value) != nsym or len(sym_info) != nsym or len(core_offsets) % 4:
            return False
        t = _SecTables.__new__(_SecTables)
        t.raw = raw
        t.f = _copy_rows(func_rows, 2, &t.nf)
        t.l = _copy_rows(line_rows, 4, &t.nl)
        if t.nf < 0 or t.nl < 0 or not _sorted_rows(t.f, t.nf, 2) or \
                not _sorted_rows(t.l, t.nl, 4):
            return False            # clang writes them sorted; the Python path sorts
        # Per slot: 0 = nothing, 1 = ld_imm64 second half, else kind + 8.
        cdef int64_t *tab = <int64_t *>calloc(3 * (n + 1), sizeof(int64_t))
        if tab == NULL:
            raise MemoryError()
        try:
            i = 0
            while i < n:
                if p[8 * i] == 0x18:
                    tab[3 * (i + 1)] = 1
                    i += 2
                else:
                    i += 1
            memo = {}       # symbol index -> map index (the dict look-up of map_syms)
            nrel = len(rels) // 16
            for k in range(nrel):
                off = _u64(rp + 16 * k, big)
                info = _u64(rp + 16 * k + 8, big)
                if off & 7 or off >> 3 >= <uint64_t>n or tab[3 * (off >> 3)] == 1:
                    return False
                slot = <int64_t>(off >> 3)
                sym = <int64_t>(info >> 32)
                if sym >= nsym:
                    return False
                sshndx = sym_shndx[sym]
                value = sym_value[sym]
                stype = (<int>sym_info[sym]) & 0xF
                code = p[8 * slot]
                imm = <int32_t>_u32(p + 8 * slot + 4, big)
                if sshndx <= 0 or sshndx >= SHN_LORESERVE or sshndx >= self.nsec or \
                        value >= (1 << 40):
                    return False        # externs (and errors): the Python path
                if code == 0x85:
                    src = (p[8 * slot + 1] >> 4) if self.little else (p[8 * slot + 1] & 0xF)
                    if src != 1:
                        return False
                    target = <int64_t>value + \
                        ((<int64_t>imm + 1) * 8 if stype == STT_SECTION else 0)
                    fi = self._func_at(sshndx, target)
                    if fi < 0:
                        return False
                    tab[3 * slot] = 8 + R_CALL
                    tab[3 * slot + 1] = fi
                    continue
                if code != 0x18 or slot + 1 >= n:
                    return False
                role = self.role[sshndx]
                if role == ROLE_PROG:
                    target = <int64_t>value + (imm if stype == STT_SECTION else 0)
                    fi = self._func_at(sshndx, target)
                    if fi < 0:
                        return False
                    tab[3 * slot] = 8 + R_FUNC
                    tab[3 * slot + 1] = fi
                elif role == ROLE_MAPS:
                    got = memo.get(sym)
                    if got is None:
                        name = self._map_syms.get((sshndx, value))
                        if name is None:
                            return False
                        got = memo[sym] = self._map(name)
                    tab[3 * slot] = 8 + R_MAP
                    tab[3 * slot + 1] = <int64_t>got
                elif role >= 0:
                    tab[3 * slot] = 8 + R_MAPVAL
                    tab[3 * slot + 1] = role
                    tab[3 * slot + 2] = ((<uint32_t>imm) +
                                         (0 if stype == STT_SECTION else value)) & 0xFFFFFFFF
                else:
                    return False
            # Calls to static functions of the same section carry no relocation.
            nrows = 0
            for i in range(n):
                if p[8 * i] == 0x85 and tab[3 * i] == 0:
                    src = (p[8 * i + 1] >> 4) if self.little else (p[8 * i + 1] & 0xF)
                    if src == 1:
                        imm = <int32_t>_u32(p + 8 * i + 4, big)
                        fi = self._func_at(shndx, (i + 1 + <int64_t>imm) * 8)
                        if fi < 0:
                            return False
                        tab[3 * i] = 8 + R_CALL
                        tab[3 * i + 1] = fi
                if tab[3 * i] > 1:
                    nrows += 1
            t.r = <int64_t *>malloc(sizeof(int64_t) * (4 * nrows + 1))
            if t.r == NULL:
                raise MemoryError()
            t.nr = nrows
            j = 0
            for i in range(n):
                if tab[3 * i] > 1:
                    t.r[4 * j] = i
                    t.r[4 * j + 1] = tab[3 * i] - 8
                    t.r[4 * j + 2] = tab[3 * i + 1]
                    t.r[4 * j + 3] = tab[3 * i + 2]
                    j += 1
        finally:
            free(tab)
        sec = len(self.sections)
        self.sections.append(t)
        # The rows of each function of the section.
        for j in range(self.nfunc):
            if self.fkey[3 * j] != shndx:
                continue
            fn = self.fn + FN_COLS * self.fkey[3 * j + 2]
            start = <uint64_t>fn[FN_START]
            end = start + <uint64_t>fn[FN_N]
            if fn[FN_N] <= 0 or end > <uint64_t>n:
                continue            # empty: the Python path says so
            bad = False
            for i in range(nco):
                if start * 8 <= co[i] < end * 8:
                    bad = True      # CO-RE: the Instructions path
            lo = _bisect(t.f, t.nf, 2, start * 8)
            k = _bisect(t.f, t.nf, 2, end * 8)
            for i in range(lo, k):
                if not 0 < t.f[2 * i + 1] < ntypes or \
                        t.f[2 * i + 1] - 1 >= <uint64_t>btf_kinds.shape[0] or \
                        btf_kinds[t.f[2 * i + 1] - 1] != K_FUNC:
                    bad = True      # the Python path raises BTFError
            if bad:
                continue
            fn[FN_FLO] = lo
            fn[FN_FHI] = k
            fn[FN_LLO] = _bisect(t.l, t.nl, 4, start * 8)
            fn[FN_LHI] = _bisect(t.l, t.nl, 4, end * 8)
            lo = 0
            while lo < t.nr and t.r[4 * lo] < <int64_t>start:
                lo += 1
            k = lo
            while k < t.nr and t.r[4 * k] < <int64_t>end:
                k += 1
            fn[FN_RLO] = lo
            fn[FN_RHI] = k
            fn[FN_SEC] = sec
        return True

    def linker(self, list fds, bytes usable):
        """A Linker for one load: *fds* the fd of each map index (None: the
        load has no such map), *usable* per function index 1 when the
        function is as the object has it (0: the user replaced it)."""
        cdef Linker k = Linker.__new__(Linker)
        cdef Py_ssize_t i, n = len(fds)
        if n != len(self.map_names) or len(usable) != self.nfunc:
            raise ValueError("fds or usable do not match the tables")
        k.t = self
        k.usable = usable
        k.fds = <int64_t *>malloc(sizeof(int64_t) * (n + 1))
        if k.fds == NULL:
            raise MemoryError()
        k.nfds = n
        for i in range(n):
            fd = fds[i]
            # Not an fd (None: no such map): the Python linker says what is wrong.
            k.fds[i] = fd if type(fd) is int and 0 <= fd <= 0xFFFFFFFF else -1
        return k


cdef class Linker:
    """LinkTables bound to one load's map fds (see LinkTables.linker)."""

    cdef LinkTables t
    cdef bytes usable
    cdef int64_t *fds
    cdef Py_ssize_t nfds

    def __cinit__(self):
        self.fds = NULL

    def __dealloc__(self):
        free(self.fds)

    def link(self, Py_ssize_t root):
        """(instructions, func_info, line_info) bytes of the program whose
        function has index *root*: the function, then the functions it calls
        (breadth first, each once), with map fds, data offsets and call
        offsets patched and the .BTF.ext rows moved to each function's
        place. None when the program needs the Python path (a function
        without tables or replaced, a map the load lacks). func_info and
        line_info are empty unless the first func_info record is at slot 0."""
        cdef LinkTables tb = self.t
        cdef Py_ssize_t nf = tb.nfunc
        cdef int64_t *work
        if tb is None or not 0 <= root < nf:
            return None
        work = <int64_t *>calloc(2 * nf + 1, sizeof(int64_t))
        if work == NULL:
            raise MemoryError()
        try:
            return self._link(tb, root, work, work + nf)
        finally:
            free(work)

    cdef object _link(self, LinkTables tb, Py_ssize_t root, int64_t *order, int64_t *pos):
        # pos[f]: 0 = not met yet; then -1 = queued; then its first slot + 1.
        cdef Py_ssize_t nf = tb.nfunc, cnt, i, r, nsecs = len(tb.sections)
        cdef int64_t f, t, nslots = 0, nfunc_rows = 0, nline_rows = 0, base, s, j, n, kind
        cdef const int64_t *fn
        cdef const int64_t *row
        cdef const uint8_t *usable = self.usable
        cdef _SecTables sec
        cdef uint8_t *out
        cdef uint8_t *fo
        cdef uint8_t *lo
        cdef uint8_t *insn
        cdef bint little = tb.little
        order[0] = root
        pos[root] = -1
        cnt = 1
        i = 0
        while i < cnt:
            f = order[i]
            i += 1
            fn = tb.fn + FN_COLS * f
            if not usable[f] or not 0 <= fn[FN_SEC] < nsecs:
                return None
            sec = <_SecTables>tb.sections[fn[FN_SEC]]
            if not 0 <= fn[FN_RLO] <= fn[FN_RHI] <= sec.nr:
                return None
            for r in range(fn[FN_RLO], fn[FN_RHI]):
                row = sec.r + 4 * r
                t = row[2]
                if row[1] == R_CALL or row[1] == R_FUNC:
                    if not 0 <= t < nf:
                        return None
                    if not pos[t]:
                        pos[t] = -1
                        order[cnt] = t
                        cnt += 1
                elif not 0 <= t < self.nfds or self.fds[t] < 0:
                    return None         # a map the load lacks: the Python path says so
            nslots += fn[FN_N]
            nfunc_rows += fn[FN_FHI] - fn[FN_FLO]
            nline_rows += fn[FN_LHI] - fn[FN_LLO]
        if nslots >= (1 << 28):
            return None
        insns = PyBytes_FromStringAndSize(NULL, 8 * nslots)
        funcs = PyBytes_FromStringAndSize(NULL, 8 * nfunc_rows)
        lines = PyBytes_FromStringAndSize(NULL, 16 * nline_rows)
        out = <uint8_t *>PyBytes_AS_STRING(insns)
        fo = <uint8_t *>PyBytes_AS_STRING(funcs)
        lo = <uint8_t *>PyBytes_AS_STRING(lines)
        base = 0
        for i in range(cnt):
            f = order[i]
            pos[f] = base + 1
            base += tb.fn[FN_COLS * f + FN_N]
        for i in range(cnt):
            f = order[i]
            fn = tb.fn + FN_COLS * f
            base = pos[f] - 1
            sec = <_SecTables>tb.sections[fn[FN_SEC]]
            s = fn[FN_START]
            n = fn[FN_N]
            if s < 0 or n < 0 or (s + n) * 8 > <int64_t>len(sec.raw) or \
                    not 0 <= fn[FN_FLO] <= fn[FN_FHI] <= sec.nf or \
                    not 0 <= fn[FN_LLO] <= fn[FN_LHI] <= sec.nl:
                return None
            memcpy(out + 8 * base, (<const uint8_t *><const char *>sec.raw) + 8 * s, 8 * n)
            for r in range(fn[FN_RLO], fn[FN_RHI]):
                row = sec.r + 4 * r
                j = base + row[0] - s          # the slot in the program
                kind = row[1]
                t = row[2]
                if not base <= j < base + n or (kind != R_CALL and j + 1 >= base + n):
                    return None
                insn = out + 8 * j
                if kind == R_CALL:
                    _put32(insn + 4, <uint32_t>(pos[t] - 1 - j - 1), little)
                elif kind == R_FUNC:
                    _set_src(insn, 4, little)           # BPF_PSEUDO_FUNC
                    _put32(insn + 4, <uint32_t>(pos[t] - 1 - j - 1), little)
                    _put32(insn + 12, 0, little)
                elif kind == R_MAP:
                    _set_src(insn, 1, little)           # BPF_PSEUDO_MAP_FD
                    _put32(insn + 4, <uint32_t>self.fds[t], little)
                    _put32(insn + 12, 0, little)
                else:
                    _set_src(insn, 2, little)           # BPF_PSEUDO_MAP_VALUE
                    _put32(insn + 4, <uint32_t>self.fds[t], little)
                    _put32(insn + 12, <uint32_t>row[3], little)
            for r in range(fn[FN_FLO], fn[FN_FHI]):
                _put32(fo, <uint32_t>(base + ((sec.f[2 * r] - 8 * s) >> 3)), little)
                _put32(fo + 4, sec.f[2 * r + 1], little)
                fo += 8
            for r in range(fn[FN_LLO], fn[FN_LHI]):
                _put32(lo, <uint32_t>(base + ((sec.l[4 * r] - 8 * s) >> 3)), little)
                _put32(lo + 4, sec.l[4 * r + 1], little)
                _put32(lo + 8, sec.l[4 * r + 2], little)
                _put32(lo + 12, sec.l[4 * r + 3], little)
                lo += 16
        # The kernel refuses a first func_info record other than slot 0.
        if nfunc_rows == 0 or _u32(<const uint8_t *>PyBytes_AS_STRING(funcs), not little) != 0:
            return insns, b"", b""
        return insns, funcs, lines
