"""Rewrites of an object's raw BTF: DATASEC layout, and sanitising for a kernel.

Both work on the raw type words (a numpy copy) and keep every type id and
string offset, so the parsed :class:`btf.Spec`, the ``.BTF.ext`` records and
the line_info string offsets stay valid for the rewritten blob. New types and
strings, when needed, are appended at the end.

* :func:`fix_datasecs`: clang leaves DATASEC sizes and variable offsets at 0;
  they come from the ELF section sizes and symbol values (libbpf does the
  same). ``.kconfig`` has no ELF section: its variables are laid out here.
* :func:`sanitize`: what the kernel would refuse: extern linkage on VARs and
  FUNCs, FUNCs inside ``.ksyms``, and kinds newer than the kernel (the
  :mod:`fastbpf.features` BTF probes say which), rewritten as libbpf does.
"""

from __future__ import annotations

import struct
import sys
from typing import Any, Callable

import numpy as np

from ..btf.spec import HEADER_SIZE, MAGIC, Spec, parse_header
from ..errors import BTFError

__all__ = ["fix_datasecs", "fix_datasecs_fast", "sanitize", "encode_words"]

try:  # the C pass; fix_datasecs below is its Python twin
    from .._elfscan import fix_datasecs as _fix_c
except ImportError:  # pragma: no cover - exercised only without the build
    _fix_c = None  # type: ignore[assignment]
try:  # the C check; needs_sanitize_py below is its twin
    from .._btfscan import needs_sanitize as _needs_sanitize_c
except ImportError:  # pragma: no cover - exercised only without the build
    _needs_sanitize_c = None  # type: ignore[assignment]

K_INT, K_PTR, K_ARRAY, K_STRUCT, K_UNION, K_ENUM, K_FWD, K_TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
K_CONST, K_FUNC, K_FUNC_PROTO, K_VAR, K_DATASEC, K_FLOAT, K_DECL_TAG, K_TYPE_TAG = (
    10, 12, 13, 14, 15, 16, 17, 18)
K_ENUM64 = 19


def _kind(info: int) -> int:
    return (info >> 24) & 0x1F


def _info(kind: int, vlen: int, kflag: int = 0) -> int:
    return (kflag << 31) | (kind << 24) | (vlen & 0xFFFF)


def string_reader(spec: Spec) -> Callable[[int], str]:
    """A fast ``spec.string_at`` for the loader's few dozen lookups: each
    offset decoded once, on first use (most of an object's strings are
    never asked for); anything unusual falls back to ``spec.string_at``."""
    start, length, base = spec._str_start, spec._str_len, spec._str_base
    buf = spec._buf
    end_all = start + length
    table: dict[int, str] = {}
    get = table.get

    def string_at(o: int) -> str:
        got = get(o)
        if got is None:
            p = o - base
            end = buf.find(b"\0", start + p, end_all) if 0 <= p < length else -1
            got = (buf[start + p:end].decode("utf-8", "surrogateescape") if end >= 0
                   else spec.string_at(o))
            table[o] = got
        return got
    return string_at


def encode_words(spec: Spec, words: np.ndarray, extra_strings: bytes = b"",
                 order: str | None = None) -> bytes:
    """A BTF blob from *spec*'s string section (plus *extra_strings*) and *words*."""
    order = order or spec.byte_order
    c = "<" if order == "little" else ">"
    strings = spec._buf[spec._str_start:spec._str_start + spec._str_len] + extra_strings
    types = np.asarray(words, dtype=np.uint32).astype(c + "u4").tobytes()
    hdr = struct.pack(c + "HBBIIIII", MAGIC, 1, 0, HEADER_SIZE, 0, len(types), len(types),
                      len(strings))
    return hdr + types + strings


def _type_size(spec: Spec, words: np.ndarray, tid: int, depth: int = 0) -> int:
    """The byte size of type *tid*, read from the words (typedefs followed)."""
    if tid == 0 or depth > 32:
        return 0
    o = int(spec._offs[tid - 1])
    kind = _kind(int(words[o + 1]))
    if kind in (K_INT, K_STRUCT, K_UNION, K_ENUM, K_DATASEC, K_FLOAT, K_ENUM64):
        return int(words[o + 2])
    if kind == K_PTR:
        return 8
    if kind == K_ARRAY:
        return int(words[o + 5]) * _type_size(spec, words, int(words[o + 4]), depth + 1)
    if kind in (K_TYPEDEF, K_CONST, 9, 11, K_TYPE_TAG, K_VAR):
        return _type_size(spec, words, int(words[o + 2]), depth + 1)
    return 0


def _type_align(spec: Spec, words: np.ndarray, tid: int, depth: int = 0) -> int:
    if tid == 0 or depth > 32:
        return 1
    o = int(spec._offs[tid - 1])
    kind = _kind(int(words[o + 1]))
    if kind in (K_INT, K_ENUM, K_FLOAT, K_ENUM64):
        return max(1, min(8, int(words[o + 2])))
    if kind == K_PTR:
        return 8
    if kind == K_ARRAY:
        return _type_align(spec, words, int(words[o + 4]), depth + 1)
    if kind in (K_STRUCT, K_UNION):
        a = 1
        for j in range(int(words[o + 1]) & 0xFFFF):
            a = max(a, _type_align(spec, words, int(words[o + 3 + 3 * j + 1]), depth + 1))
        return a
    if kind in (K_TYPEDEF, K_CONST, 9, 11, K_TYPE_TAG, K_VAR):
        return _type_align(spec, words, int(words[o + 2]), depth + 1)
    return 1


#: An array map's largest value (KMALLOC_MAX_SIZE with 4 KiB pages).
_KMALLOC_MAX_SIZE = 1 << 22


def fix_datasecs(spec: Spec, section_sizes: dict[str, int],
                 var_offsets: Callable[[str, str], int | None],
                 string_at: Callable[[int], str] | None = None) -> tuple[bytes | None, dict[Any, Any]]:
    """Fill DATASEC sizes and variable offsets; lay out ``.kconfig``.

    *section_sizes* maps ELF section names to sizes; *var_offsets(section,
    variable)* gives a variable's symbol value. Returns the patched blob (in
    the spec's byte order; None if nothing changed) and the ``.kconfig``
    layout ``{name: (offset, size)}``.
    """
    if spec._raw_count == 0:
        return None, {}
    string_at = string_at or string_reader(spec)
    # A list: this loop reads and writes single words, which lists do fast.
    words = spec._words.tolist()
    changed = False
    kconfig: dict[str, tuple[int, int]] = {}
    for idx in np.flatnonzero(spec._kinds == K_DATASEC):
        o = int(spec._offs[idx])
        name = string_at(words[o])
        vlen = int(words[o + 1]) & 0xFFFF
        base = o + 3
        if name in (".kconfig", ".ksyms"):
            off = 0
            for j in range(vlen):
                vid = int(words[base + 3 * j])
                vo = int(spec._offs[vid - 1])
                size = _type_size(spec, words, vid) if _kind(int(words[vo + 1])) == K_VAR else 0
                align = _type_align(spec, words, vid)
                off = (off + align - 1) // align * align
                words[base + 3 * j + 1] = off
                words[base + 3 * j + 2] = size
                if name == ".kconfig":
                    kconfig[string_at(words[vo])] = (off, size)
                off += size
            # .kconfig becomes a map value (so at most KMALLOC_MAX_SIZE); .ksyms
            # is only laid out, but its size is still a 32-bit BTF word.
            limit = _KMALLOC_MAX_SIZE if name == ".kconfig" else 0xFFFFFFFF
            if off > limit:
                raise BTFError(f"the {name} externs take {off} bytes, more than {limit}")
            words[o + 2] = off
            changed = True
            continue
        size = section_sizes.get(name)  # type: ignore[assignment]  # None checked below
        if size is None:
            continue
        if size > 0xFFFFFFFF:   # an ELF size is 64-bit (NOBITS: any), a BTF size 32
            raise BTFError(f"section {name!r} of {size} bytes is too large for its DATASEC")
        if int(words[o + 2]) != size:
            words[o + 2] = size
            changed = True
        recs = []
        for j in range(vlen):
            vid, voff, vsize = words[base + 3 * j:base + 3 * j + 3]
            if not 0 < vid <= len(spec._offs):
                raise BTFError(f"DATASEC {name!r} refers to type {vid}, out of range")
            vo = int(spec._offs[vid - 1])
            if _kind(int(words[vo + 1])) == K_VAR:
                vname = string_at(words[vo])
                found = var_offsets(name, vname)
                if found is not None:
                    if found > size:    # a symbol value is 64-bit, a BTF offset 32
                        raise BTFError(f"variable {vname!r} of DATASEC {name!r}: its symbol "
                                       f"is at offset {found}, past the {size}-byte section")
                    voff = found
            recs.append((voff, vid, vsize))
        recs.sort()
        for j, (voff, vid, vsize) in enumerate(recs):
            new = [vid, voff, vsize]
            if words[base + 3 * j:base + 3 * j + 3] != new:
                words[base + 3 * j:base + 3 * j + 3] = new
                changed = True
    if not changed:
        return None, kconfig
    return encode_words(spec, np.array(words, dtype=np.uint32)), kconfig


def fix_datasecs_fast(spec: Spec, section_sizes: dict[str, int],
                      symbols: dict[str, dict[str, int]]
                      ) -> tuple[bytes | None, dict[Any, Any], Spec | None,
                                 dict[str, int] | None]:
    """:func:`fix_datasecs` in one C pass (:func:`fastbpf._elfscan.fix_datasecs`);
    *symbols* maps a section name to ``{symbol name: value}``. Returns the
    patched blob (None if nothing changed), the ``.kconfig`` layout and the
    spec of the patched blob, and ``{DATASEC name: type id}`` (None when
    not collected)."""
    if _fix_c is None or spec._raw_count == 0:
        blob, kconfig = fix_datasecs(spec, section_sizes,
                                     lambda sec, var: symbols.get(sec, {}).get(var))
        return blob, kconfig, (Spec.parse(blob) if blob is not None else None), None
    words = np.array(spec._words, dtype=np.uint32)
    changed, kconfig, datasecs = _fix_c(spec, words, section_sizes, symbols)
    if not changed:
        return None, kconfig, None, datasecs
    blob = encode_words(spec, words)
    return blob, kconfig, spec._with_words(blob, words), datasecs


def sanitize(spec: Spec, blob: bytes, missing: frozenset[str] = frozenset()) -> bytes:
    """The blob as this kernel accepts it, in native byte order.

    *missing* names BTF features the kernel lacks (``"func"``,
    ``"func_global"``, ``"datasec"``, ``"float"``, ``"decl_tag"``,
    ``"type_tag"``, ``"enum64"``), as :func:`fastbpf.features.probe_btf`
    reports them; their kinds are rewritten into older ones of the same
    record length.
    """
    if not missing and spec._buf is blob and _nothing_to_fix(spec, blob):
        return blob
    return _sanitize(spec, blob, missing)


def _nothing_to_fix(s: Spec, blob: bytes) -> bool:
    """True when :func:`_sanitize` with nothing missing would give *blob*
    back byte for byte: a native-order blob laid out as :func:`encode_words`
    lays it out (header, types, strings), no ``.ksyms`` DATASEC, and no VAR
    or FUNC with extern linkage (what an object without externs compiles
    to). Spares every load the copy and re-encoding (20-30 us)."""
    words = s._words
    if s.byte_order != sys.byteorder or s.base is not None or words is None:
        return False
    type_len, str_len = 4 * len(words), s._str_len
    if len(blob) != HEADER_SIZE + type_len + str_len or blob[:HEADER_SIZE] != struct.pack(
            "=HBBIIIII", MAGIC, 1, 0, HEADER_SIZE, 0, type_len, type_len, str_len):
        return False
    if _needs_sanitize_c is not None:
        return not _needs_sanitize_c(words, s._offs, s._kinds, blob, s._str_start, str_len)
    return not needs_sanitize_py(words, s._offs, s._kinds, blob, s._str_start, str_len)


def needs_sanitize_py(words: np.ndarray, offs: np.ndarray, kinds: np.ndarray, buf: bytes,
                      str_start: int, str_len: int) -> bool:
    """The numpy twin of :func:`fastbpf._btfscan.needs_sanitize`: an extern
    VAR or FUNC, or a ``.ksyms`` DATASEC."""
    at = offs[kinds == K_VAR]
    if len(at) and int(words[at + 3].max()) > 1:
        return True
    at = offs[kinds == K_FUNC]
    if len(at) and int((words[at + 1] & 0xFFFF).max()) > 1:
        return True
    for o in offs[kinds == K_DATASEC].tolist():
        name = int(words[o])
        if name + 7 <= str_len and buf.startswith(b".ksyms\0", str_start + name):
            return True
    return False


def _sanitize(spec: Spec, blob: bytes, missing: frozenset[str]) -> bytes:
    """:func:`sanitize`, always rewriting (the words copied and re-encoded)."""
    s = spec if spec._buf is blob else Spec.parse(blob)
    words = np.array(s._words, dtype=np.uint32)
    offs, kinds = s._offs, s._kinds
    extra = b""
    dummy_var = 0
    arg_name = 0
    n_types = len(offs)
    appended: list[int] = []
    str_len = s._str_len

    def add_string(text: str) -> int:
        nonlocal extra
        off = str_len + len(extra)
        extra += text.encode() + b"\0"
        return off

    int_id = 0

    def ensure_int() -> int:
        """An appended 4-byte int type (placeholder for rewritten types)."""
        nonlocal int_id
        if not int_id:
            int_id = n_types + 1 + len(appended) // 4
            appended.extend([add_string("__fastbpf_int"), _info(K_INT, 0), 4, (1 << 24) | 32])
        return int_id

    # .ksyms holds FUNCs (kfuncs) and VARs that may be typeless (const void);
    # the kernel wants sized VARs in a DATASEC. Nothing reads this section's
    # layout, so every entry becomes a 4-byte int variable.
    for idx in np.flatnonzero(kinds == K_DATASEC):
        o = int(offs[idx])
        if s.string_at(int(words[o])) != ".ksyms":
            continue
        vlen = int(words[o + 1]) & 0xFFFF
        if not dummy_var:
            tid = ensure_int()
            dummy_var = n_types + 1 + len(appended) // 4
            if "datasec" in missing:   # no VARs either: an int of the same length
                appended.extend([add_string("__fastbpf_ksym"), _info(K_INT, 0), 1, 8])
            else:
                appended.extend([add_string("__fastbpf_ksym"), _info(K_VAR, 0), tid, 1])
        for j in range(vlen):
            b = o + 3 + 3 * j
            vid = int(words[b])
            if kinds[vid - 1] == K_VAR:
                words[int(offs[vid - 1]) + 2] = ensure_int()
            else:
                words[b] = dummy_var
            words[b + 1] = 4 * j
            words[b + 2] = 4
        words[o + 2] = 4 * vlen
    # Linkage fixes, vectorised over every VAR and FUNC (objects have dozens).
    at = offs[kinds == K_VAR] + 3
    words[at] = np.minimum(words[at], 1)    # extern -> global allocated
    fo = offs[kinds == K_FUNC]
    linkage = words[fo + 1] & 0xFFFF
    demote = (linkage > 1) | ((linkage == 1) if "func_global" in missing else False)
    words[fo[demote] + 1] = _info(K_FUNC, 0)  # extern (or unsupported global) -> static
    for o in fo[linkage > 1].tolist():
        # The kernel wants named parameters; clang leaves externs' unnamed.
        proto = int(words[o + 2])
        po = int(offs[proto - 1]) if 0 < proto <= n_types else -1
        if po >= 0 and kinds[proto - 1] == K_FUNC_PROTO:
            for j in range(int(words[po + 1]) & 0xFFFF):
                b = po + 3 + 2 * j
                if int(words[b]) == 0 and int(words[b + 1]) != 0:
                    if not arg_name:
                        arg_name = add_string("arg")
                    words[b] = arg_name
    if missing:
        _downgrade(s, words, missing, ensure_int, add_string)
    out_words = np.concatenate([words, np.array(appended, dtype=np.uint32)]) \
        if appended else words
    return encode_words(s, out_words, extra, order=sys.byteorder)


def _downgrade(s: Spec, words: np.ndarray, missing: frozenset[str],
               ensure_int: Callable[[], int], add_string: Callable[[str], int]) -> None:
    """Rewrite kinds the kernel lacks into older kinds of the same length."""
    arg_name = 0
    for idx, kind in enumerate(s._kinds.tolist()):
        o = int(s._offs[idx])
        vlen = int(words[o + 1]) & 0xFFFF
        if kind == K_FUNC and "func" in missing:
            words[o + 1] = _info(K_TYPEDEF, 0)
        elif kind == K_FUNC_PROTO and "func" in missing:
            words[o + 1] = _info(K_ENUM, vlen)
            words[o + 2] = 4
            for j in range(vlen):
                b = o + 3 + 2 * j
                if not int(words[b]):              # enum values need names
                    arg_name = arg_name or add_string("arg")
                    words[b] = arg_name
                words[b + 1] = j                   # enum values instead of param types
        elif kind == K_VAR and "datasec" in missing:
            words[o + 1] = _info(K_INT, 0)
            words[o + 2] = 1
            words[o + 3] = 8
        elif kind == K_DATASEC and "datasec" in missing:
            words[o + 1] = _info(K_STRUCT, vlen)
            for j in range(vlen):
                b = o + 3 + 3 * j
                tid, off = int(words[b]), int(words[b + 1])
                words[b], words[b + 1], words[b + 2] = 0, tid, off * 8
        elif kind == K_FLOAT and "float" in missing:
            words[o + 1] = _info(K_STRUCT, 0)
        elif kind == K_DECL_TAG and "decl_tag" in missing:
            words[o + 1] = _info(K_INT, 0)
            words[o + 2] = 1
            words[o + 3] = 8
        elif kind == K_TYPE_TAG and "type_tag" in missing:
            words[o + 1] = _info(K_CONST, 0)
            words[o] = 0
        elif kind == K_ENUM64 and "enum64" in missing:
            words[o + 1] = _info(K_UNION, vlen)
            for j in range(vlen):
                b = o + 3 + 3 * j
                words[b + 1], words[b + 2] = ensure_int(), 0   # int members at offset 0


def check_blob(blob: bytes) -> None:
    """Raise BTFError unless *blob* has a valid header (used by tests)."""
    parse_header(blob)
