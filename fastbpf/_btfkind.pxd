# cython: language_level=3
"""The kernel's BTF kind numbers (BTF_KIND_*, include/uapi/linux/btf.h), for
the C scanners (_btfscan, _elfscan)."""

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
