# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Scanner for the type section of a BTF blob.

BTF type records have variable length (the length follows from the kind and
``vlen``), so finding where record *n* starts needs a walk over all records
before it. That walk, and the validation that makes lazy decoding safe later
(every record in bounds, every type id and string offset in range, no
reference cycle that does not pass through a pointer), are the only parts of
parsing that must touch every record; they live here, in C, in one call.
Everything else in :mod:`fastbpf.btf` is Python working on the index this
module returns.

The walk also notes the records that refer to themselves or to a later
record other than through a pointer. Every reference cycle has such an edge
(ids cannot decrease all the way round), so the cycle check that follows
only searches from those records: in vmlinux a few thousand of 126k, which
reach about a tenth of the types, instead of every type.

``fastbpf.btf.spec`` has a pure-Python version with the same results, used
when this extension is not built.
"""

import numpy as np

cimport numpy as cnp
from libc.stdint cimport uint8_t, int32_t, uint32_t, int64_t, uint64_t
from fastbpf._btfkind cimport *
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memcmp, memcpy

cnp.import_array()

# Extra words after the 3-word common header: fixed part and part per vlen
# item, indexed by kind (0 and anything above 19 are invalid).
cdef int FIXED[20]
cdef int PER_ITEM[20]
# Words of a record with vlen 0 (3 + FIXED) and per vlen item, by the 5-bit
# kind field; 0 words marks an invalid kind.
cdef uint32_t REC_BASE[32]
cdef uint32_t REC_PER[32]
# Kinds with no references that need the target's layout: a DFS can stop there.
cdef uint8_t IS_LEAF[32]
IS_LEAF[:] = [1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1,
              1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
FIXED[:] = [0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0]
PER_ITEM[:] = [0, 0, 0, 0, 3, 3, 2, 0, 0, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 3]
for _k in range(32):
    REC_BASE[_k] = 3 + FIXED[_k] if 0 < _k < 20 else 0
    REC_PER[_k] = PER_ITEM[_k] if _k < 20 else 0

cdef inline int64_t _edge(const uint32_t *w, uint32_t o, Py_ssize_t k) noexcept nogil:
    """The k-th type a record refers to other than through a pointer, or -1."""
    cdef uint32_t info = w[o + 1]
    cdef uint32_t kind = (info >> 24) & 0x1f
    cdef Py_ssize_t vlen = info & 0xffff
    if (kind == K_TYPEDEF or kind == K_VOLATILE or kind == K_CONST or kind == K_RESTRICT
            or kind == K_FUNC or kind == K_VAR or kind == K_DECL_TAG or kind == K_TYPE_TAG):
        return w[o + 2] if k == 0 else -1
    if kind == K_ARRAY:
        return w[o + 3] if k == 0 else -1
    if kind == K_STRUCT or kind == K_UNION:
        return w[o + 3 + 3 * k + 1] if k < vlen else -1
    if kind == K_FUNC_PROTO:
        if k == 0:
            return w[o + 2]
        return w[o + 3 + 2 * (k - 1) + 1] if k - 1 < vlen else -1
    if kind == K_DATASEC:
        return w[o + 3 + 3 * k] if k < vlen else -1
    return -1


cdef int64_t _find_cycle(const uint32_t *w, const uint32_t *offs, const uint8_t *kinds,
                         Py_ssize_t n, uint32_t first, const uint32_t *roots,
                         Py_ssize_t nroots, uint8_t *color, int32_t *stack,
                         int32_t *pos) noexcept nogil:
    """Depth-first search for a cycle: a local index on one, or -1.

    *roots* (ascending) are the records with an edge to themselves or a
    later record. Every cycle has such an edge, to a type that has edges of
    its own (not a leaf), and the first node of a cycle that a search
    reaches leads it round the cycle back to that node while it is still on
    the stack; so searching from the roots with such an edge misses
    nothing. Leaves are never entered. Edges are taken in record order, so
    the answer is the one the pure-Python twin gives. *color* must be
    zeroed. Targets below *first* (void, base types) end a path; all ids
    must be known to be in range."""
    cdef Py_ssize_t r, root, top, node, k
    cdef int64_t nxt
    for r in range(nroots):
        root = roots[r]
        if color[root]:
            continue
        k = 0
        while True:
            nxt = _edge(w, offs[root], k)
            if nxt < 0 or (nxt >= first + root and not IS_LEAF[kinds[nxt - first]]):
                break
            k += 1
        if nxt < 0:
            continue
        top = 0
        stack[0] = <int32_t>root
        pos[0] = 0
        color[root] = 1
        while top >= 0:
            node = stack[top]
            nxt = _edge(w, offs[node], pos[top])
            if nxt < 0:
                color[node] = 2
                top -= 1
                continue
            pos[top] += 1
            if nxt < first:
                continue
            nxt -= first
            if IS_LEAF[kinds[nxt]]:
                continue
            if color[nxt] == 0:
                color[nxt] = 1
                top += 1
                stack[top] = <int32_t>nxt
                pos[top] = 0
            elif color[nxt] == 1:
                return nxt
    return -1


def scan(const uint32_t[::1] w, Py_ssize_t first_id=1):
    """Walk the records of a type section given as native-order words.

    Returns ``(offsets, kinds, name_offsets, max_type_ref, max_name_off,
    error, cycle)``: per record its word offset (uint32), kind (uint8) and
    name offset (uint32); the largest type id any record refers to and the
    largest string offset any name uses. ``error`` is ``None`` or a message
    naming the first malformed record; the other values then cover the
    records before it. ``cycle`` is the id of a type on a reference cycle
    that does not pass through a pointer, or -1; it is only looked for
    when there is no error and every type id is in range (else -1). Ids
    below *first_id* (void, or a base spec checked on its own) end a path.

    Only edges that need the target's layout count for cycles (qualifiers,
    typedefs, array elements, members, parameters, variables, tags): a
    cycle through a pointer is ordinary C (``struct list { struct list
    *next; }``).
    """
    cdef Py_ssize_t n = w.shape[0]
    cdef Py_ssize_t o = 0, count = 0, end, j, items, i, per
    cdef uint32_t info, kind = 0, vlen = 0, t, fwd
    cdef uint32_t max_ref = 0, max_str = 0
    cdef Py_ssize_t cap = n // 3 + 1
    if first_id < 0 or first_id > 0xFFFFFFFF:
        raise ValueError("first_id out of range")
    cdef uint32_t first = <uint32_t>first_id
    cdef cnp.ndarray offs_arr = np.empty(cap, dtype=np.uint32)
    cdef cnp.ndarray kinds_arr = np.empty(cap, dtype=np.uint8)
    cdef cnp.ndarray names_arr = np.empty(cap, dtype=np.uint32)
    cdef uint32_t *offs = <uint32_t *>cnp.PyArray_DATA(offs_arr)
    cdef uint8_t *kinds = <uint8_t *>cnp.PyArray_DATA(kinds_arr)
    cdef uint32_t *names = <uint32_t *>cnp.PyArray_DATA(names_arr)
    cdef const uint32_t *p = &w[0] if n else NULL
    cdef int err = 0
    # Search roots for the cycle check; the array's tail is only touched
    # as far as it is used.
    cdef uint32_t *roots = <uint32_t *>malloc(cap * sizeof(uint32_t))
    cdef Py_ssize_t nroots = 0
    cdef uint8_t *color = NULL
    cdef int32_t *stack = NULL
    cdef int32_t *pos = NULL
    cdef int64_t cycle = -1
    if roots == NULL:
        raise MemoryError()
    try:
        with nogil:
            while o < n:
                if n - o < 3:
                    err = 1
                    break
                info = p[o + 1]
                kind = (info >> 24) & 0x1f
                vlen = info & 0xffff
                per = REC_PER[kind]
                end = o + REC_BASE[kind] + vlen * per
                if end == o:
                    err = 2
                    break
                items = vlen
                if end > n:
                    err = 3
                    break
                if p[o] > max_str:
                    max_str = p[o]
                # An edge to id >= fwd goes to this record or a later one.
                fwd = first + <uint32_t>count
                t = 0
                if (kind == K_TYPEDEF or kind == K_VOLATILE or kind == K_CONST
                        or kind == K_RESTRICT or kind == K_FUNC or kind == K_VAR
                        or kind == K_DECL_TAG or kind == K_TYPE_TAG):
                    t = p[o + 2]
                    if t > max_ref:
                        max_ref = t
                elif kind == K_PTR:
                    if p[o + 2] > max_ref:
                        max_ref = p[o + 2]
                elif kind == K_ARRAY:
                    t = p[o + 3]
                    if t > max_ref:
                        max_ref = t
                    if p[o + 4] > max_ref:
                        max_ref = p[o + 4]
                elif kind == K_STRUCT or kind == K_UNION:
                    j = o + 3
                    for i in range(items):
                        if p[j] > max_str:
                            max_str = p[j]
                        if p[j + 1] > t:
                            t = p[j + 1]
                        j += 3
                    if t > max_ref:
                        max_ref = t
                elif kind == K_FUNC_PROTO:
                    t = p[o + 2]
                    j = o + 3
                    for i in range(items):
                        if p[j] > max_str:
                            max_str = p[j]
                        if p[j + 1] > t:
                            t = p[j + 1]
                        j += 2
                    if t > max_ref:
                        max_ref = t
                elif kind == K_ENUM or kind == K_ENUM64:
                    j = o + 3
                    for i in range(items):
                        if p[j] > max_str:
                            max_str = p[j]
                        j += per
                elif kind == K_DATASEC:
                    j = o + 3
                    for i in range(items):
                        if p[j] > t:
                            t = p[j]
                        j += 3
                    if t > max_ref:
                        max_ref = t
                # t is the largest id the record refers to other than
                # through a pointer (or the index type of an array).
                if t >= fwd and fwd >= first:
                    roots[nroots] = <uint32_t>count
                    nroots += 1
                offs[count] = <uint32_t>o
                kinds[count] = <uint8_t>kind
                names[count] = p[o]
                count += 1
                o = end
        if not err and nroots and max_ref < first + <uint64_t>count:
            color = <uint8_t *>calloc(count, 1)
            stack = <int32_t *>malloc(count * sizeof(int32_t))
            pos = <int32_t *>malloc(count * sizeof(int32_t))
            if color == NULL or stack == NULL or pos == NULL:
                raise MemoryError()
            with nogil:
                cycle = _find_cycle(p, offs, kinds, count, first, roots, nroots, color, stack, pos)
            if cycle >= 0:
                cycle += first_id
    finally:
        free(roots)
        free(color)
        free(stack)
        free(pos)
    error = None
    if err == 1:
        error = f"type record {count + 1} at byte {4 * o}: truncated header"
    elif err == 2:
        error = f"type record {count + 1} at byte {4 * o}: unknown kind {kind}"
    elif err == 3:
        error = (f"type record {count + 1} at byte {4 * o}: kind {kind} with "
                 f"vlen {vlen} runs past the end of the type section")
    return (offs_arr[:count], kinds_arr[:count], names_arr[:count], max_ref, max_str, error,
            cycle)


def match_names(const uint32_t[::1] offs, const uint8_t[::1] table, const uint8_t[::1] needle):
    """Indices ``i`` (ascending, uint32) where the bytes of *table* from
    ``offs[i]`` are *needle* followed by a NUL: the types whose name is
    *needle*. Reads past the end of *table* see its last byte, like
    ``numpy.take(mode="clip")`` (the pure-Python version). One pass over
    *offs* that reads a byte or two of the table per entry."""
    cdef Py_ssize_t n = offs.shape[0], L = table.shape[0], m = needle.shape[0]
    cdef Py_ssize_t i, k, nhits = 0
    cdef size_t off
    cdef cnp.ndarray out = np.empty(0, dtype=np.uint32)
    cdef uint32_t *hits = NULL
    cdef const uint8_t *tb = &table[0] if L else NULL
    cdef const uint8_t *nd = &needle[0] if m else NULL
    cdef uint8_t first_byte = nd[0] if m else 0
    cdef int ok
    if L == 0 or n == 0:
        return out
    hits = <uint32_t *>malloc(64 * sizeof(uint32_t))
    cdef Py_ssize_t cap = 64
    cdef uint32_t *grown
    if hits == NULL:
        raise MemoryError()
    try:
        with nogil:
            for i in range(n):
                off = offs[i]
                if off + <size_t>m < <size_t>L:
                    # In bounds: the common case, one byte usually decides.
                    if tb[off] != first_byte and m:
                        continue
                    if tb[off + m] != 0 or (m and memcmp(tb + off, nd, m) != 0):
                        continue
                else:
                    ok = 1
                    for k in range(m + 1):
                        if tb[off + k if off + k < <size_t>L else L - 1] != (nd[k] if k < m else 0):
                            ok = 0
                            break
                    if not ok:
                        continue
                if nhits == cap:
                    grown = <uint32_t *>realloc(hits, 2 * cap * sizeof(uint32_t))
                    if grown == NULL:
                        break
                    hits = grown
                    cap *= 2
                hits[nhits] = <uint32_t>i
                nhits += 1
            else:
                i = -1
        if i != -1:
            raise MemoryError()
        out = np.empty(nhits, dtype=np.uint32)
        if nhits:
            memcpy(cnp.PyArray_DATA(out), hits, nhits * sizeof(uint32_t))
    finally:
        free(hits)
    return out


def needs_sanitize(const uint32_t[::1] w, const uint32_t[::1] offs, const uint8_t[::1] kinds,
                   const uint8_t[::1] buf, Py_ssize_t str_start, Py_ssize_t str_len):
    """True when the type section (*w*, indexed by :func:`scan`'s *offs* and
    *kinds*; the string section is *str_len* bytes of *buf* from
    *str_start*) holds what :func:`fastbpf.elf.btffix.sanitize` rewrites
    for every kernel: a VAR or
    FUNC with extern linkage, or a DATASEC named ``.ksyms``. One pass, no
    copy; ``fastbpf.elf.btffix`` has the numpy twin."""
    cdef Py_ssize_t i, n = offs.shape[0], nw = w.shape[0]
    cdef Py_ssize_t ns = min(str_len, buf.shape[0] - str_start) if 0 <= str_start else 0
    if ns < 0:
        ns = 0
    cdef uint32_t o
    cdef size_t name
    cdef const uint8_t *ksyms = <const uint8_t *>b".ksyms"    # 6 bytes and its NUL
    if kinds.shape[0] < n:
        n = kinds.shape[0]
    for i in range(n):
        o = offs[i]
        if kinds[i] == K_VAR:
            if <Py_ssize_t>o + 3 >= nw or w[o + 3] > 1:
                return True
        elif kinds[i] == K_FUNC:
            if <Py_ssize_t>o + 1 >= nw or (w[o + 1] & 0xFFFF) > 1:
                return True
        elif kinds[i] == K_DATASEC:
            if <Py_ssize_t>o >= nw:
                return True
            name = w[o]
            if name + 7 <= <size_t>ns and memcmp(&buf[str_start + <Py_ssize_t>name], ksyms, 7) == 0:
                return True
    return False
