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
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

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
    FN_SEC = 0      # index into the section tables, -1: no table (Python path)
    FN_START = 1    # first slot in its section
    FN_N = 2        # slots
    FN_RLO = 3      # its rows of the section's rel table
    FN_RHI = 4
    FN_FLO = 5      # its func_info rows
    FN_FHI = 6
    FN_LLO = 7      # its line_info rows
    FN_LHI = 8
    FN_COLS = 9

cdef int64_t _SHN_UNDEF = 0
cdef int64_t _SHN_LORESERVE = 0xFF00
cdef int64_t ROLE_NONE = -1
cdef int64_t ROLE_PROG = -2
cdef int64_t ROLE_MAPS = -3


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


cdef Py_ssize_t _bisect(const uint32_t[:, ::1] rows, uint64_t off):
    """The first row whose column 0 is >= *off* (rows sorted by column 0)."""
    cdef Py_ssize_t lo = 0, hi = rows.shape[0], mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if rows[mid, 0] < off:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef bint _sorted_rows(const uint32_t[:, ::1] rows):
    cdef Py_ssize_t i
    for i in range(1, rows.shape[0]):
        if rows[i, 0] < rows[i - 1, 0]:
            return False
    return True


cdef class _SecTables:
    """The link tables of one executable section (see LinkTables.add_section)."""
    cdef readonly bytes raw
    cdef readonly object rel          # int64 (k, 4): slot, kind, target, extra
    cdef readonly object func         # uint32 (n, 2): byte offset, FUNC type id
    cdef readonly object line         # uint32 (n, 4): byte offset, file, line, col
    cdef const int64_t[:, ::1] r
    cdef const uint32_t[:, ::1] f
    cdef const uint32_t[:, ::1] l


cdef class LinkTables:
    """The loader's fast linking of one object, in C.

    Built once per parse from the object's function index, then one
    :meth:`add_section` per executable section: a C pass that resolves every
    relocation and bpf-to-bpf call of the section to a kind code and a target
    index (function, map) and keeps the section's func_info/line_info rows.
    :meth:`link` then writes a program's linked instructions, func_info and
    line_info in one go. Anything unusual (an extern, a CO-RE relocation, a
    malformed relocation or record) leaves the functions concerned without
    tables: the Python path (:mod:`fastbpf._linkraw`) links them, with its
    error messages. Every index and offset is checked before it is used.
    """

    cdef readonly bint little
    cdef readonly list labels         # function label by function index
    cdef readonly dict index          # function index by label
    cdef readonly list map_names      # map name by map index
    cdef dict _map_index
    cdef readonly object functions    # int64 (nfunc, FN_COLS)
    cdef int64_t[:, ::1] fn
    cdef int64_t[:, ::1] fkey         # (shndx, start byte, function index), sorted
    cdef readonly list sections       # _SecTables by FN_SEC
    cdef int64_t[::1] role            # per ELF section: map index, or ROLE_*
    cdef Py_ssize_t nsec
    cdef dict _map_syms

    def __init__(self, bint little, dict funcs, Py_ssize_t nsec, prog_secs,
                 Py_ssize_t maps_shndx, Py_ssize_t legacy_maps_shndx, dict data_maps,
                 dict map_syms):
        """*funcs*: ``{(shndx, start): Func}`` (ObjectFile.funcs); *nsec*: the
        number of ELF sections; *data_maps*: ``{shndx: map name}``;
        *map_syms*: ``{(shndx, symbol value): map name}``."""
        import numpy as np
        cdef Py_ssize_t i, n = len(funcs)
        cdef int64_t[:, ::1] fk
        self.little = little
        self.labels = []
        self.index = {}
        self.map_names = []
        self._map_index = {}
        self._map_syms = map_syms
        self.sections = []
        self.nsec = nsec
        self.functions = np.full((n, FN_COLS), -1, dtype=np.int64)
        self.fn = self.functions
        keys = np.zeros((n, 3), dtype=np.int64)
        fk = keys
        i = 0
        for key, f in funcs.items():
            shndx, start = key
            if not 0 <= shndx < nsec or not 0 <= start < (1 << 40) or f.size >= (1 << 40):
                raise ELFError(f"function {f.label!r} is outside its section")
            fk[i, 0] = shndx
            fk[i, 1] = start
            fk[i, 2] = i
            self.fn[i, FN_START] = start >> 3
            self.fn[i, FN_N] = f.size >> 3
            self.labels.append(f.label)
            self.index[f.label] = i
            i += 1
        self.fkey = keys[np.lexsort((keys[:, 1], keys[:, 0]))]
        roles = np.full(nsec, ROLE_NONE, dtype=np.int64)
        self.role = roles
        for shndx, name in data_maps.items():
            if 0 <= shndx < nsec:
                self.role[shndx] = self._map(name)
        for shndx in (maps_shndx, legacy_maps_shndx):
            if 0 <= shndx < nsec:
                self.role[shndx] = ROLE_MAPS
        for shndx in prog_secs:
            if 0 <= shndx < nsec:
                self.role[shndx] = ROLE_PROG

    cdef int64_t _map(self, name) except -1:
        got = self._map_index.get(name)
        if got is None:
            got = self._map_index[name] = len(self.map_names)
            self.map_names.append(name)
        return got

    cdef int64_t _func_at(self, int64_t shndx, int64_t start):
        """The index of the function at byte *start* of section *shndx*, or -1."""
        cdef Py_ssize_t lo = 0, hi = self.fkey.shape[0], mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if (self.fkey[mid, 0] < shndx or
                    (self.fkey[mid, 0] == shndx and self.fkey[mid, 1] < start)):
                lo = mid + 1
            else:
                hi = mid
        if lo < self.fkey.shape[0] and self.fkey[lo, 0] == shndx and self.fkey[lo, 1] == start:
            return self.fkey[lo, 2]
        return -1

    def add_section(self, Py_ssize_t shndx, bytes raw, bytes rels, list sym_shndx,
                    list sym_value, list sym_info, func_rows, line_rows, core_offsets,
                    const uint8_t[::1] btf_kinds, Py_ssize_t ntypes):
        """Scan executable section *shndx* (*raw*: its bytes; *rels*: its
        SHT_REL records as in the file, or b""). *func_rows* / *line_rows*:
        its .BTF.ext func_info (n, 2) and line_info (n, 4) uint32 rows, or
        None; *core_offsets*: byte offsets of its CO-RE relocations, or None;
        *btf_kinds*/*ntypes*: the object BTF's kinds and type count, to check
        func_info type ids. Returns False (no tables: the section's
        functions take the Python path) on anything the fast path does not
        take or that is malformed; True when the tables are made."""
        import numpy as np
        cdef const uint8_t *p = raw
        cdef const uint8_t *rp = rels
        cdef Py_ssize_t n = len(raw) // 8, i, k, nrel, nsym = len(sym_shndx), nrows, j
        cdef bint big = not self.little
        cdef uint64_t off, info, value, start, end
        cdef int64_t slot, sym, sshndx, role, target, fi, lo
        cdef int32_t imm
        cdef uint8_t code, src, stype
        cdef const uint32_t[:, ::1] fr
        cdef const uint32_t[:, ::1] lr
        cdef const uint32_t[::1] co
        if len(raw) % 8 or n == 0 or len(rels) % 16 or not 0 <= shndx < self.nsec:
            return False
        if len(sym_value) != nsym or len(sym_info) != nsym:
            return False
        kinds_b = bytearray(n + 1)      # per slot: kind, 0 = none; slot n: sentinel
        cdef unsigned char *kind = kinds_b
        second_b = bytearray(n + 1)
        cdef unsigned char *second = second_b
        tgt_a = np.zeros((n, 2), dtype=np.int64)
        cdef int64_t[:, ::1] tgt = tgt_a
        i = 0
        while i < n:
            if p[8 * i] == 0x18:
                second[i + 1] = 1
                i += 2
            else:
                i += 1
        memo = {}       # symbol index -> map index (the dict look-up of map_syms)
        nrel = len(rels) // 16
        for k in range(nrel):
            off = _u64(rp + 16 * k, big)
            info = _u64(rp + 16 * k + 8, big)
            slot = <int64_t>(off >> 3)
            if off & 7 or off >> 3 >= <uint64_t>n or second[slot]:
                return False
            sym = <int64_t>(info >> 32)
            if sym >= nsym:
                return False
            sshndx = sym_shndx[sym]
            value = sym_value[sym]
            stype = (<int>sym_info[sym]) & 0xF
            code = p[8 * slot]
            imm = <int32_t>_u32(p + 8 * slot + 4, big)
            if sshndx == _SHN_UNDEF or sshndx >= _SHN_LORESERVE or sshndx >= self.nsec:
                return False        # externs (and errors): the Python path
            if value >= (1 << 40):
                return False
            if code == 0x85:
                src = (p[8 * slot + 1] >> 4) if self.little else (p[8 * slot + 1] & 0xF)
                if src != 1:
                    return False
                target = <int64_t>value + ((<int64_t>imm + 1) * 8 if stype == STT_SECTION else 0)
                fi = self._func_at(sshndx, target)
                if fi < 0:
                    return False
                kind[slot] = R_CALL
                tgt[slot, 0] = fi
                continue
            if code != 0x18 or slot + 1 >= n:
                return False
            role = self.role[sshndx]
            if role == ROLE_PROG:
                target = <int64_t>value + (imm if stype == STT_SECTION else 0)
                fi = self._func_at(sshndx, target)
                if fi < 0:
                    return False
                kind[slot] = R_FUNC
                tgt[slot, 0] = fi
            elif role == ROLE_MAPS:
                got = memo.get(sym)
                if got is None:
                    name = self._map_syms.get((sshndx, value))
                    if name is None:
                        return False
                    got = memo[sym] = self._map(name)
                kind[slot] = R_MAP
                tgt[slot, 0] = <int64_t>got
            elif role >= 0:
                kind[slot] = R_MAPVAL
                tgt[slot, 0] = role
                tgt[slot, 1] = ((<uint32_t>imm) + (0 if stype == STT_SECTION else value)) \
                    & 0xFFFFFFFF
            else:
                return False
        # Calls to static functions of the same section carry no relocation.
        for i in range(n):
            if p[8 * i] == 0x85 and not kind[i] and not second[i]:
                src = (p[8 * i + 1] >> 4) if self.little else (p[8 * i + 1] & 0xF)
                if src == 1:
                    imm = <int32_t>_u32(p + 8 * i + 4, big)
                    fi = self._func_at(shndx, (i + 1 + <int64_t>imm) * 8)
                    if fi < 0:
                        return False
                    kind[i] = R_CALL
                    tgt[i, 0] = fi
        nrows = 0
        for i in range(n):
            if kind[i]:
                nrows += 1
        rel_a = np.zeros((nrows, 4), dtype=np.int64)
        cdef int64_t[:, ::1] rel = rel_a
        j = 0
        for i in range(n):
            if kind[i]:
                rel[j, 0] = i
                rel[j, 1] = kind[i]
                rel[j, 2] = tgt[i, 0]
                rel[j, 3] = tgt[i, 1]
                j += 1
        empty = np.zeros((0, 4), dtype=np.uint32)
        func_a = np.ascontiguousarray(func_rows if func_rows is not None else empty[:, :2],
                                      dtype=np.uint32)
        line_a = np.ascontiguousarray(line_rows if line_rows is not None else empty,
                                      dtype=np.uint32)
        if func_a.ndim != 2 or func_a.shape[1] != 2 or line_a.ndim != 2 or line_a.shape[1] != 4:
            return False
        fr = func_a
        lr = line_a
        if not _sorted_rows(fr) or not _sorted_rows(lr):
            return False            # clang writes them sorted; the Python path sorts
        co_a = np.ascontiguousarray(core_offsets if core_offsets is not None else empty[:, 0],
                                    dtype=np.uint32)
        co = co_a
        cdef _SecTables t = _SecTables.__new__(_SecTables)
        t.raw = raw
        t.rel = rel_a
        t.func = func_a
        t.line = line_a
        t.r = rel
        t.f = fr
        t.l = lr
        sec = len(self.sections)
        self.sections.append(t)
        # The rows of each function of the section.
        for j in range(self.fkey.shape[0]):
            if self.fkey[j, 0] != shndx:
                continue
            fi = self.fkey[j, 2]
            start = <uint64_t>self.fn[fi, FN_START]
            end = start + <uint64_t>self.fn[fi, FN_N]
            if self.fn[fi, FN_N] <= 0 or end > <uint64_t>n:
                continue            # empty: the Python path says so
            bad = False
            for i in range(co.shape[0]):
                if start * 8 <= co[i] < end * 8:
                    bad = True      # CO-RE: the Instructions path
            lo = _bisect(fr, start * 8)
            k = _bisect(fr, end * 8)
            for i in range(lo, k):
                if not 0 < fr[i, 1] < ntypes or fr[i, 1] - 1 >= <uint64_t>btf_kinds.shape[0] \
                        or btf_kinds[fr[i, 1] - 1] != K_FUNC:
                    bad = True      # the Python path raises BTFError
            if bad:
                continue
            self.fn[fi, FN_FLO] = lo
            self.fn[fi, FN_FHI] = k
            self.fn[fi, FN_LLO] = _bisect(lr, start * 8)
            self.fn[fi, FN_LHI] = _bisect(lr, end * 8)
            lo = 0
            while lo < nrows and rel[lo, 0] < <int64_t>start:
                lo += 1
            k = lo
            while k < nrows and rel[k, 0] < <int64_t>end:
                k += 1
            self.fn[fi, FN_RLO] = lo
            self.fn[fi, FN_RHI] = k
            self.fn[fi, FN_SEC] = sec
        return True

    def link(self, Py_ssize_t root, const int64_t[::1] fds, const uint8_t[::1] usable):
        """(instructions, func_info, line_info) bytes of the program whose
        function has index *root*: the function, then the functions it calls
        (breadth first, each once), with map fds (``fds[map index]``, -1 <<
        40: the load has no such map), data offsets and call offsets patched
        and the .BTF.ext rows moved to each function's place. None when the
        program needs the Python path (a function without tables, one that
        *usable* marks 0, a map the load lacks). func_info and line_info are
        empty unless the first func_info record is at slot 0."""
        cdef Py_ssize_t nf = self.fn.shape[0], cnt, i, j, r
        cdef int64_t f, t, nslots = 0, nfunc_rows = 0, nline_rows = 0, base, s, fd
        cdef _SecTables sec
        cdef uint8_t *out
        cdef uint8_t *fo
        cdef uint8_t *lo
        cdef uint8_t *insn
        cdef bint little = self.little
        if not 0 <= root < nf or usable.shape[0] != nf or fds.shape[0] != len(self.map_names):
            return None
        order_b = bytearray(8 * nf)
        cdef int64_t *order = <int64_t *><char *>order_b
        pos_b = bytearray(8 * nf)       # base slot of each function placed, +1 (0: not yet)
        cdef int64_t *pos = <int64_t *><char *>pos_b
        order[0] = root
        pos[root] = -1
        cnt = 1
        i = 0
        while i < cnt:
            f = order[i]
            i += 1
            if not usable[f] or self.fn[f, FN_SEC] < 0:
                return None
            sec = self.sections[self.fn[f, FN_SEC]]
            for r in range(self.fn[f, FN_RLO], self.fn[f, FN_RHI]):
                if sec.r[r, 1] == R_CALL or sec.r[r, 1] == R_FUNC:
                    t = sec.r[r, 2]
                    if not 0 <= t < nf:
                        return None
                    if not pos[t]:
                        pos[t] = -1
                        order[cnt] = t
                        cnt += 1
                elif sec.r[r, 1] == R_MAP or sec.r[r, 1] == R_MAPVAL:
                    t = sec.r[r, 2]
                    if not 0 <= t < fds.shape[0] or fds[t] < 0:
                        return None
            nslots += self.fn[f, FN_N]
            nfunc_rows += self.fn[f, FN_FHI] - self.fn[f, FN_FLO]
            nline_rows += self.fn[f, FN_LHI] - self.fn[f, FN_LLO]
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
            base += self.fn[f, FN_N]
        for i in range(cnt):
            f = order[i]
            base = pos[f] - 1
            sec = self.sections[self.fn[f, FN_SEC]]
            s = self.fn[f, FN_START]
            if s < 0 or self.fn[f, FN_N] < 0 or \
                    (s + self.fn[f, FN_N]) * 8 > <int64_t>len(sec.raw):
                return None
            memcpy(out + 8 * base, (<const uint8_t *><const char *>sec.raw) + 8 * s,
                   8 * self.fn[f, FN_N])
            for r in range(self.fn[f, FN_RLO], self.fn[f, FN_RHI]):
                j = base + sec.r[r, 0] - s          # the slot in the program
                if not base <= j < base + self.fn[f, FN_N]:
                    return None
                insn = out + 8 * j
                t = sec.r[r, 2]
                if sec.r[r, 1] == R_CALL:
                    _put32(insn + 4, <uint32_t>(pos[t] - 1 - j - 1), little)
                elif sec.r[r, 1] == R_FUNC:
                    if j + 1 >= base + self.fn[f, FN_N]:
                        return None
                    _set_src(insn, 4, little)           # BPF_PSEUDO_FUNC
                    _put32(insn + 4, <uint32_t>(pos[t] - 1 - j - 1), little)
                    _put32(insn + 12, 0, little)
                else:
                    if j + 1 >= base + self.fn[f, FN_N]:
                        return None
                    fd = fds[t]
                    if sec.r[r, 1] == R_MAP:
                        _set_src(insn, 1, little)       # BPF_PSEUDO_MAP_FD
                        _put32(insn + 4, <uint32_t>fd, little)
                        _put32(insn + 12, 0, little)
                    else:
                        _set_src(insn, 2, little)       # BPF_PSEUDO_MAP_VALUE
                        _put32(insn + 4, <uint32_t>fd, little)
                        _put32(insn + 12, <uint32_t>sec.r[r, 3], little)
            for r in range(self.fn[f, FN_FLO], self.fn[f, FN_FHI]):
                _put32(fo, <uint32_t>(base + ((sec.f[r, 0] - 8 * s) >> 3)), little)
                _put32(fo + 4, sec.f[r, 1], little)
                fo += 8
            for r in range(self.fn[f, FN_LLO], self.fn[f, FN_LHI]):
                _put32(lo, <uint32_t>(base + ((sec.l[r, 0] - 8 * s) >> 3)), little)
                _put32(lo + 4, sec.l[r, 1], little)
                _put32(lo + 8, sec.l[r, 2], little)
                _put32(lo + 12, sec.l[r, 3], little)
                lo += 16
        # The kernel refuses a first func_info record other than slot 0.
        if nfunc_rows == 0 or _u32(<const uint8_t *>PyBytes_AS_STRING(funcs), not little) != 0:
            return insns, b"", b""
        return insns, funcs, lines
