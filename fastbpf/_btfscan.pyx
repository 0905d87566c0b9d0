# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Scanner for the type section of a BTF blob.

BTF type records have variable length (the length follows from the kind and
``vlen``), so finding where record *n* starts needs a walk over all records
before it. That walk, and the validation that makes lazy decoding safe later
(every record in bounds, every type id and string offset in range, no
reference cycle that does not pass through a pointer), are the only parts of
parsing that must touch every record; they live here, in C. Everything else
in :mod:`fastbpf.btf` is Python working on the index this module returns.

``fastbpf.btf.spec`` has a pure-Python version of both functions with the
same results, used when this extension is not built.
"""

import numpy as np

cimport numpy as cnp
from libc.stdint cimport uint8_t, int32_t, uint32_t, int64_t

cnp.import_array()

# Extra words after the 3-word common header: fixed part and part per vlen
# item, indexed by kind (0 and anything above 19 are invalid).
cdef int FIXED[20]
cdef int PER_ITEM[20]
# Kinds with no references that need the target's layout: a DFS can stop there.
cdef uint8_t IS_LEAF[32]
IS_LEAF[:] = [1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1,
              1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
FIXED[:] = [0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0]
PER_ITEM[:] = [0, 0, 0, 0, 3, 3, 2, 0, 0, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 3]

cdef enum:
    K_INT = 1
    K_PTR = 2
    K_ARRAY = 3
    K_STRUCT = 4
    K_UNION = 5
    K_ENUM = 6
    K_FWD = 7
    K_TYPEDEF = 8
    K_VOLATILE = 9
    K_CONST = 10
    K_RESTRICT = 11
    K_FUNC = 12
    K_FUNC_PROTO = 13
    K_VAR = 14
    K_DATASEC = 15
    K_FLOAT = 16
    K_DECL_TAG = 17
    K_TYPE_TAG = 18
    K_ENUM64 = 19


def scan(const uint32_t[::1] w):
    """Walk the records of a type section given as native-order words.

    Returns ``(offsets, kinds, name_offsets, max_type_ref, max_name_off,
    error)``: per record its word offset (uint32), kind (uint8) and name
    offset (uint32); the largest type id any record refers to and the
    largest string offset any name uses. ``error`` is ``None`` or a message
    naming the first malformed record; the other values then cover the
    records before it.
    """
    cdef Py_ssize_t n = w.shape[0]
    cdef Py_ssize_t o = 0, count = 0, end, j, items, i, per
    cdef uint32_t info, kind, vlen, t
    cdef int64_t max_ref = 0, max_str = 0
    cdef Py_ssize_t cap = n // 3 + 1
    cdef cnp.ndarray offs_arr = np.empty(cap, dtype=np.uint32)
    cdef cnp.ndarray kinds_arr = np.empty(cap, dtype=np.uint8)
    cdef cnp.ndarray names_arr = np.empty(cap, dtype=np.uint32)
    cdef uint32_t *offs = <uint32_t *>cnp.PyArray_DATA(offs_arr)
    cdef uint8_t *kinds = <uint8_t *>cnp.PyArray_DATA(kinds_arr)
    cdef uint32_t *names = <uint32_t *>cnp.PyArray_DATA(names_arr)
    cdef const uint32_t *p = &w[0] if n else NULL
    cdef int err = 0
    with nogil:
        while o < n:
            if n - o < 3:
                err = 1
                break
            info = p[o + 1]
            kind = (info >> 24) & 0x1f
            vlen = info & 0xffff
            if kind == 0 or kind > 19:
                err = 2
                break
            per = PER_ITEM[kind]
            items = vlen if per else 0
            end = o + 3 + FIXED[kind] + items * per
            if end > n:
                err = 3
                break
            if p[o] > max_str:
                max_str = p[o]
            if (kind == K_PTR or kind == K_TYPEDEF or kind == K_VOLATILE or kind == K_CONST
                    or kind == K_RESTRICT or kind == K_FUNC or kind == K_VAR
                    or kind == K_DECL_TAG or kind == K_TYPE_TAG or kind == K_FUNC_PROTO):
                t = p[o + 2]
                if t > max_ref:
                    max_ref = t
            if kind == K_ARRAY:
                for j in range(2):
                    t = p[o + 3 + j]
                    if t > max_ref:
                        max_ref = t
            elif kind == K_STRUCT or kind == K_UNION or kind == K_FUNC_PROTO:
                j = o + 3
                for i in range(items):
                    if p[j] > max_str:
                        max_str = p[j]
                    if p[j + 1] > max_ref:
                        max_ref = p[j + 1]
                    j += per
            elif kind == K_ENUM or kind == K_ENUM64:
                j = o + 3
                for i in range(items):
                    if p[j] > max_str:
                        max_str = p[j]
                    j += per
            elif kind == K_DATASEC:
                j = o + 3
                for i in range(items):
                    if p[j] > max_ref:
                        max_ref = p[j]
                    j += 3
            offs[count] = <uint32_t>o
            kinds[count] = <uint8_t>kind
            names[count] = p[o]
            count += 1
            o = end
    error = None
    if err == 1:
        error = f"type record {count + 1} at byte {4 * o}: truncated header"
    elif err == 2:
        error = f"type record {count + 1} at byte {4 * o}: unknown kind {kind}"
    elif err == 3:
        error = (f"type record {count + 1} at byte {4 * o}: kind {kind} with "
                 f"vlen {vlen} runs past the end of the type section")
    return (offs_arr[:count], kinds_arr[:count], names_arr[:count], max_ref, max_str, error)


cdef inline int64_t _edge(const uint32_t[::1] w, uint32_t o, Py_ssize_t k) noexcept nogil:
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


def find_cycle(const uint32_t[::1] w, const uint32_t[::1] offs, const uint8_t[::1] kinds,
               Py_ssize_t first_id):
    """Return the id of a type on a reference cycle, or -1 if there is none.

    Only edges that need the target's layout count (qualifiers, typedefs,
    array elements, members, parameters, variables, tags): a cycle through a
    pointer is ordinary C (``struct list { struct list *next; }``). Ids below
    ``first_id`` belong to a base spec that was checked on its own. All ids
    must already be known to be in range.
    """
    cdef Py_ssize_t n = offs.shape[0]
    # Types of leaf kinds start out finished (2), so the walk below needs
    # one random access per edge, not two.
    cdef cnp.ndarray color_arr = np.empty(n, dtype=np.uint8)
    cdef uint8_t[::1] color = color_arr
    cdef Py_ssize_t q
    for q in range(n):
        color[q] = IS_LEAF[kinds[q]] * 2
    cdef cnp.ndarray stack_arr = np.empty(n + 1, dtype=np.int32)
    cdef cnp.ndarray edge_arr = np.empty(n + 1, dtype=np.int32)
    cdef int32_t[::1] stack = stack_arr
    cdef int32_t[::1] edge = edge_arr
    cdef Py_ssize_t root, top, node
    cdef int64_t nxt, found = -1
    with nogil:
        for root in range(n):
            if color[root]:
                continue
            top = 0
            stack[0] = root
            edge[0] = 0
            color[root] = 1
            while top >= 0:
                node = stack[top]
                nxt = _edge(w, offs[node], edge[top])
                if nxt < 0:
                    color[node] = 2
                    top -= 1
                    continue
                edge[top] += 1
                nxt -= first_id
                if nxt < 0:
                    continue
                if color[nxt] == 1:
                    found = nxt + first_id
                    break
                if color[nxt] == 0:
                    color[nxt] = 1
                    top += 1
                    stack[top] = <int32_t>nxt
                    edge[top] = 0
            if found >= 0:
                break
    return found
