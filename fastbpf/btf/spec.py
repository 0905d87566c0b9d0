"""Spec: the types and strings of one BTF blob, decoded lazily.

Decoding is lazy. :meth:`Spec.parse` validates the whole blob up front (every
record in bounds, every type id and string offset in range, no reference
cycle except through pointers) with one pass in C (:mod:`fastbpf._btfscan`)
and keeps a numpy index of record offsets, kinds and name offsets. Type
objects are built when asked for, and name lookups search the string table
for the name and then the index for records using that string, so neither
needs a Python loop over all types. Once :meth:`Spec.parse` returns, no
later access can meet malformed data.

Layout of a BTF blob (Documentation/bpf/btf.rst): a header (magic 0xeB9F,
version 1, flags, hdr_len, then type_off/type_len/str_off/str_len relative to
the end of the header), a type section of 4-byte words, and a string section
of NUL-terminated strings starting with an empty one. The magic, read in the
wrong byte order, tells a big-endian blob.

Next door: :mod:`.wire` (header, magic, byte order), :mod:`.scan` (the
Python twin of the C scanner) and :mod:`.encode` (``Spec.encode``).
"""

from __future__ import annotations

import mmap
import os
import sys
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from ..errors import BTFError
from .encode import encode as _encode
from .scan import PER_ITEM, scan_python
from .wire import HEADER_SIZE, MAGIC, NATIVE_ORDER, order_char, parse_header

if TYPE_CHECKING:
    from typing_extensions import Buffer
from .types import (
    KIND_CLASSES, VOID, Array, Composite, Datasec, DeclTag, Enum, EnumValue, Float, Func,
    FuncProto, Fwd, Int, IntEncoding, Kind, Linkage, Member, Param, Pointer, Qualifier, Type, Var,
    VarSecinfo, Void,
)

try:  # the C scanner; its Python twin (.scan) gives the same answers, slowly
    from .. import _btfscan as _scanmod
except ImportError:  # pragma: no cover - exercised only without the build
    _scanmod = None  # type: ignore[assignment]

__all__ = ["Spec", "MAGIC", "HEADER_SIZE", "parse_header", "NATIVE_ORDER"]

_MAX_TYPES = (1 << 31) - 1


class Spec:
    """The types and strings of one BTF blob (or a set of types being built).

    Type ids run from 0 (void) to ``len(spec) - 1``. A split spec (module
    BTF) has a ``base`` spec and continues its ids and string offsets.

    Build one with :meth:`parse`, :meth:`from_types`, or ``Spec()`` and
    :meth:`add`. ``encode()`` writes it back.
    """

    def __init__(self, types: Iterable[Type] = (), base: Spec | None = None,
                 byte_order: str | None = None) -> None:
        self.base = base
        self.byte_order: str = byte_order or (base.byte_order if base else NATIVE_ORDER)
        if self.byte_order not in ("little", "big"):
            raise ValueError("byte_order must be 'little' or 'big'")
        self._first_id = len(base) if base is not None else 1
        self._raw_count = 0          # types backed by the parsed blob
        self._cache: list[Any] = []  # materialized types, by id - first_id (None: not yet)
        # The parsed blob's arrays: set by parse(), read only for ids below
        # _raw_count, which stays 0 until then.
        self._words: np.ndarray = None  # type: ignore[assignment]
        self._wmv: Any = None
        self._omv: Any = None
        self._offs: np.ndarray = None  # type: ignore[assignment]
        self._kinds: np.ndarray = None  # type: ignore[assignment]
        self._name_offs: np.ndarray = None  # type: ignore[assignment]
        self._buf: bytes | _ReadOnlyMap = b"\0"
        self._str_start = 0
        self._str_len = 1
        self._str_arr: np.ndarray | None = None
        self._str_base: int = (base._str_base + base._str_len) if base is not None else 0
        self._name_cache: dict[str, list[int]] = {}
        self._foreign: dict[int, int] = {}  # id(type) -> type id for added types from elsewhere
        for t in types:
            self.add(t)

    # ------------------------------------------------------------ parsing

    @classmethod
    def parse(cls, data: Buffer, base: Spec | None = None) -> Spec:
        """Decode a raw BTF blob (either byte order).

        *base* makes it a split spec (kernel module BTF): type ids and
        string offsets continue from the base. Raises :class:`BTFError` for
        anything malformed.
        """
        if not isinstance(data, (bytes, _ReadOnlyMap)):
            # Decoding is lazy, so keep a private, immutable copy.
            try:
                data = bytes(data)
            except TypeError as e:
                raise TypeError(f"BTF data must be bytes-like, not {type(data).__name__}") from e
        order, _flags, _hdr_len, type_start, type_len, str_start, str_len = parse_header(data)
        spec = cls(base=base, byte_order=order)
        if base is not None and base.byte_order != order:
            raise BTFError("split BTF and its base have different byte orders")
        if str_len:
            first, last = data[str_start], data[str_start + str_len - 1]
            if base is None and first != 0:
                raise BTFError("BTF string section must start with an empty string")
            if last != 0:
                raise BTFError("BTF string section does not end with a NUL byte")
        elif base is None:
            raise BTFError("BTF string section must start with an empty string")
        spec._buf = data
        spec._str_start = str_start
        spec._str_len = str_len

        dt = np.dtype(order_char(order) + "u4")
        words = np.frombuffer(data, dtype=dt, count=type_len // 4, offset=type_start)
        if order != NATIVE_ORDER:
            words = words.astype(np.uint32)
        else:
            words = words.view(np.uint32)
        scanner = _scanmod.scan if _scanmod is not None else scan_python
        offs, kinds, name_offs, max_ref, max_str, error, cyc = scanner(words, spec._first_id)
        if error:
            raise BTFError(error)
        count = len(offs)
        total = spec._first_id + count
        if total > _MAX_TYPES:
            raise BTFError(f"too many BTF types ({total})")
        if max_ref >= total:
            raise BTFError(f"BTF refers to type id {max_ref}, but there are only {total} types")
        if max_str >= spec._str_base + str_len:
            raise BTFError(f"BTF string offset {max_str} is outside the string section "
                           f"({spec._str_base + str_len} bytes)")
        if cyc >= 0:
            raise BTFError(f"BTF type {cyc} is part of a reference cycle that does "
                           "not go through a pointer")
        spec._words = words
        spec._offs = offs
        # Memoryviews for _materialize: one item read costs a tenth of numpy's.
        spec._wmv = memoryview(words)  # type: ignore[arg-type]
        spec._omv = memoryview(offs)
        spec._kinds = kinds
        spec._name_offs = name_offs
        spec._raw_count = count
        spec._cache = [None] * count
        return spec

    def _with_words(self, blob: bytes, words: np.ndarray) -> Spec:
        """The spec of *blob*, which is this spec's blob with type words
        *words* (native order) that differ only in DATASEC sizes, variable
        offsets and the order of a DATASEC's variables (what
        ``elf.btffix.fix_datasecs`` changes): the same records, references
        and strings, so the checks and index of :meth:`parse` hold as they
        are. Types are decoded afresh. Anything else is parsed in full."""
        order, _flags, _hdr_len, _ts, type_len, str_start, str_len = parse_header(blob)
        if (self.base is not None or order != self.byte_order or self._raw_count == 0
                or words.dtype != np.uint32 or type_len != 4 * len(words)
                or len(words) != len(self._words) or str_len != self._str_len):
            return Spec.parse(blob)
        spec = Spec(byte_order=order)
        spec._buf = blob
        spec._str_start = str_start
        spec._str_len = str_len
        spec._words = words
        spec._offs = self._offs
        spec._kinds = self._kinds
        spec._name_offs = self._name_offs
        spec._wmv = memoryview(words)  # type: ignore[arg-type]
        spec._omv = self._omv
        spec._raw_count = self._raw_count
        spec._cache = [None] * self._raw_count
        return spec

    @classmethod
    def from_file(cls, path: str, base: Spec | None = None) -> Spec:
        """Parse the raw BTF file at *path* (not an ELF object).

        Files under ``/sys/kernel/btf`` are memory-mapped where the kernel
        allows it (6.16+), which skips copying them; they are immutable.
        Other files are read, since a mapped file could change under the
        lazy decoder.
        """
        with open(path, "rb") as f:
            if os.path.realpath(path).startswith("/sys/kernel/btf/"):
                try:
                    size = os.fstat(f.fileno()).st_size
                    data: Any = _ReadOnlyMap(f.fileno(), size, prot=mmap.PROT_READ,
                                        flags=mmap.MAP_PRIVATE)
                except (OSError, ValueError):
                    data = f.read()
            else:
                data = f.read()
        return cls.parse(data, base=base)

    # ------------------------------------------------------------ strings

    def _string_bytes(self) -> np.ndarray:
        """The string section as a uint8 array (no copy)."""
        arr = self._str_arr
        if arr is None:
            arr = np.frombuffer(self._buf, dtype=np.uint8, count=self._str_len,
                                offset=self._str_start)
            self._str_arr = arr
        return arr

    def string_at(self, off: int) -> str:
        """The NUL-terminated string at offset *off* of the string section
        (base included for a split spec). Raises BTFError if out of range."""
        if not 0 <= off < self._str_base + self._str_len:
            raise BTFError(f"BTF string offset {off} is outside the string section")
        return self._str(off)

    def _str(self, off: int) -> str:
        if off < self._str_base:
            return self.base._str(off)  # type: ignore[union-attr]
        start = self._str_start + off - self._str_base
        buf = self._buf
        end = buf.find(b"\0", start, self._str_start + self._str_len)
        return buf[start:end].decode("utf-8", "surrogateescape")

    # ------------------------------------------------------------ lookup

    def __len__(self) -> int:
        """Number of type ids, void included (so the largest id is len - 1)."""
        return self._first_id + len(self._cache)

    def type_by_id(self, type_id: int) -> Type:
        """The type with id *type_id* (0 is void). Raises BTFError if none."""
        if type_id == 0:
            return VOID
        i = type_id - self._first_id
        if i < 0:
            if self.base is not None and 0 < type_id < self._first_id:
                return self.base.type_by_id(type_id)
            raise BTFError(f"no BTF type with id {type_id}")
        try:
            t = self._cache[i]
        except (IndexError, TypeError):
            raise BTFError(f"no BTF type with id {type_id} (largest is {len(self) - 1})") from None
        if t is None:
            t = self._materialize(i)
        found: Type = t
        return found

    def type_id(self, t: Type) -> int:
        """The id of *t* in this spec (or its base). Raises BTFError if absent."""
        if isinstance(t, Void):
            return 0
        tid = t.id
        if tid is not None:
            spec: Spec | None = self
            while spec is not None:
                if t._spec is spec:
                    return tid
                spec = spec.base
        found = self._foreign.get(id(t))
        if found is not None and self.type_by_id(found) is t:
            return found
        if self.base is not None:
            return self.base.type_id(t)
        raise BTFError(f"{t!r} is not in this spec")

    def __iter__(self) -> Iterator[Type]:
        """All types of this spec (not its base), in id order, void excluded."""
        for i in range(len(self._cache)):
            t = self._cache[i]
            yield t if t is not None else self._materialize(i)

    def __contains__(self, t: object) -> bool:
        try:
            self.type_id(t)  # type: ignore[arg-type]
        except BTFError:
            return False
        return True

    def _ids_for_name(self, name: str) -> list[int]:
        """Ids of all local types called *name*, raw and added."""
        cached = self._name_cache.get(name)
        if cached is not None:
            return cached
        ids: list[int] = []
        if self._raw_count and name:
            needle = name.encode("utf-8", "surrogateescape")
            hits = self._match_names(np.arange(self._raw_count, dtype=np.uint32),
                                     self._name_offs, needle)
            ids = [int(h) + self._first_id for h in hits]
        for i in range(self._raw_count, len(self._cache)):
            if self._cache[i].name == name:
                ids.append(i + self._first_id)
        self._name_cache[name] = ids
        return ids

    def _match_names(self, idx: np.ndarray, offs: np.ndarray, needle: bytes) -> np.ndarray:
        """The entries of *idx* whose string offset in *offs* holds *needle*.

        Compares one byte position at a time over the shrinking candidate
        set, starting with the terminating NUL, so a lookup touches a few
        bytes per type instead of the whole string table.
        """
        if self.base is not None:
            in_base = offs < self._str_base
            if in_base.any():
                a = self.base._match_names(idx[in_base], offs[in_base], needle)
                b = self._match_names(idx[~in_base], offs[~in_base], needle)
                return np.sort(np.concatenate([a, b]))
            offs = offs - self._str_base
        table = self._string_bytes()
        if _scanmod is not None:
            if not len(idx) or not len(table):
                return idx[:0]
            found: np.ndarray = idx[_scanmod.match_names(
                np.ascontiguousarray(offs, dtype=np.uint32), table, needle)]
            return found
        if len(table) > 1 << 31:
            offs = offs.astype(np.int64)
        n = len(needle)
        # Position n must hold the NUL; then the bytes, last to first.
        # take(mode="clip") reads the final NUL for positions past the end,
        # which no needle byte matches, so clipping never adds a match.
        keep = table.take(offs + offs.dtype.type(n), mode="clip") == 0
        for k in range(n - 1, -1, -1):
            idx, offs = idx[keep], offs[keep]
            if not len(idx):
                return idx
            keep = table.take(offs + offs.dtype.type(k), mode="clip") == needle[k]
        return idx[keep]

    def types_by_name(self, name: str, kind: Kind | None = None) -> list[Type]:
        """All types called *name* (optionally of one *kind*), base first."""
        out = []
        if self.base is not None:
            out.extend(self.base.types_by_name(name, kind))
        for tid in self._ids_for_name(name):
            t = self.type_by_id(tid)
            if t.name == name and (kind is None or t.kind == kind):
                out.append(t)
        return out

    def type_by_name(self, name: str, kind: Kind | None = None) -> Type:
        """The type called *name*; pass *kind* when the name is ambiguous.

        Without *kind*, a single definition wins over forward declarations
        and decl tags of the same name. Raises :class:`BTFError` (naming the
        candidates) when there is no match or more than one.
        """
        found = self.types_by_name(name, Kind(kind) if kind is not None else None)
        if len(found) > 1 and kind is None:
            defs = [t for t in found if t.kind not in (Kind.FWD, Kind.DECL_TAG)]
            if len(defs) == 1:
                return defs[0]
        if len(found) == 1:
            return found[0]
        what = f"{Kind(kind).name} " if kind is not None else ""
        if not found:
            raise BTFError(f"no BTF type {what}named {name!r}")
        raise BTFError(f"{len(found)} BTF types {what}named {name!r} "
                       f"(ids {[t.id for t in found]}); pass kind= to choose")

    # ------------------------------------------------------------ building

    def add(self, t: Type) -> int:
        """Append *t* to this spec and return its new id.

        The types *t* refers to must be added too (before or after) for the
        spec to encode; :meth:`from_types` does that for a whole graph.
        """
        if not isinstance(t, Type):
            raise TypeError(f"expected a btf Type, got {type(t).__name__}")
        if isinstance(t, Void):
            raise ValueError("void is id 0 in every spec and cannot be added")
        tid = self._first_id + len(self._cache)
        self._cache.append(t)
        if t._spec is None:
            t._spec = self
            t.id = tid
        else:
            self._foreign[id(t)] = tid
        self._name_cache.pop(t.name, None)
        return tid

    @classmethod
    def from_types(cls, roots: Iterable[Type], byte_order: str | None = None,
                   base: Spec | None = None) -> Spec:
        """A new spec holding *roots* and every type reachable from them.

        Types already in *base* are referenced, not copied. Roots come first,
        in the order given; the others follow in discovery order.
        """
        spec = cls(base=base, byte_order=byte_order)
        seen: set[int] = set()
        order: list[Type] = []
        stack = list(reversed(list(roots)))
        while stack:
            t = stack.pop()
            if isinstance(t, Void) or id(t) in seen:
                continue
            if base is not None and t in base:
                continue
            seen.add(id(t))
            order.append(t)
            stack.extend(reversed(t.references()))
        for t in order:
            spec.add(t)
        return spec

    # ------------------------------------------------------------ decoding

    def _materialize(self, i: int) -> Type:
        w = self._wmv
        o = self._omv[i]
        name_off, info, size_type = w[o], w[o + 1], w[o + 2]
        kind = (info >> 24) & 0x1F
        cls = KIND_CLASSES[kind]
        t: Any = cls.__new__(cls)  # type: ignore[call-overload]
        t.name = self._str(name_off) if name_off else ""
        t.id = i + self._first_id
        t._spec = self
        # Plain int kinds (_K_*): an IntEnum member costs a lookup per test.
        if kind in _QUALIFIERS:
            t._type = size_type
        elif kind == _K_INT:
            extra = w[o + 3]
            t._size = size_type
            t.encoding = _ENCODINGS[(extra >> 24) & 0x0F]
            t.bit_offset = (extra >> 16) & 0xFF
            t.bits = extra & 0xFF
        elif kind == _K_PTR:
            t._target = size_type
        elif kind == _K_VAR:
            t._type = size_type
            t.linkage = _linkage(w[o + 3])
        elif kind == _K_STRUCT or kind == _K_UNION:
            t._size = size_type
            t._members = None
        elif kind == _K_DATASEC:
            t._size = size_type
            t._vars = None
        elif kind == _K_ARRAY:
            t._type = w[o + 3]
            t._index_type = w[o + 4]
            t.nelems = w[o + 5]
        elif kind == _K_ENUM or kind == _K_ENUM64:
            t._size = size_type
            t._values = None
            t.signed = bool(info >> 31)
        elif kind == _K_FWD:
            t.union = bool(info >> 31)
        elif kind == _K_FUNC:
            t._type = size_type
            t.linkage = _linkage(info & 0xFFFF)
        elif kind == _K_FUNC_PROTO:
            t._return_type = size_type
            t._params = None
        elif kind == _K_FLOAT:
            t._size = size_type
        elif kind == _K_DECL_TAG:
            t._type = size_type
            comp = w[o + 3]
            t.component_idx = comp - (1 << 32) if comp >= 1 << 31 else comp
        self._cache[i] = t
        done: Type = t
        return done

    def _decode_items(self, t: Type) -> list[Any]:
        """Decode the vlen items (members, values, params, vars) of *t*."""
        i = int(t.id or 0) - self._first_id
        w = self._wmv
        o = self._omv[i]
        info = w[o + 1]
        vlen = info & 0xFFFF
        kflag = info >> 31
        kind = t.kind
        per = PER_ITEM[kind]
        items = w[o + 3:o + 3 + per * vlen].tolist()
        tb = self.type_by_id
        st = self._str
        if kind in (Kind.STRUCT, Kind.UNION):
            out: list[Any] = []
            for j in range(0, len(items), 3):
                off = items[j + 2]
                if kflag:
                    out.append(Member(st(items[j]), tb(items[j + 1]), off & 0xFFFFFF, off >> 24))
                else:
                    out.append(Member(st(items[j]), tb(items[j + 1]), off, 0))
            return out
        if kind == Kind.ENUM:
            out = []
            for j in range(0, len(items), 2):
                v = items[j + 1]
                if kflag and v >= 1 << 31:
                    v -= 1 << 32
                out.append(EnumValue(st(items[j]), v))
            return out
        if kind == Kind.ENUM64:
            out = []
            for j in range(0, len(items), 3):
                v = items[j + 1] | (items[j + 2] << 32)
                if kflag and v >= 1 << 63:
                    v -= 1 << 64
                out.append(EnumValue(st(items[j]), v))
            return out
        if kind == Kind.FUNC_PROTO:
            return [Param(st(items[j]), tb(items[j + 1])) for j in range(0, len(items), 2)]
        if kind == Kind.DATASEC:
            return [VarSecinfo(tb(items[j]), items[j + 1], items[j + 2])
                    for j in range(0, len(items), 3)]
        raise BTFError(f"{t!r} has no list items")  # pragma: no cover

    # ------------------------------------------------------------ encoding

    def encode(self, byte_order: str | None = None) -> bytes:
        """Encode this spec as raw BTF (only the split part for a split spec).

        *byte_order* is ``"little"``, ``"big"`` or ``"native"``; the default
        is the order the spec was read in. Every type referred to must be in
        the spec (or its base): otherwise :class:`BTFError`.
        """
        return _encode(self, byte_order)

    # ------------------------------------------------------------ comparing

    def _canonical(self, t: Type) -> tuple[Any, ...]:
        """A comparable description of *t* with references as ids."""
        tid = self.type_id
        if isinstance(t, Int):
            return (t.kind, t.name, t.size, int(t.encoding), t.bits, t.bit_offset)
        if isinstance(t, Pointer):
            return (t.kind, t.name, tid(t.target))
        if isinstance(t, Array):
            return (t.kind, t.name, tid(t.type), tid(t.index_type), t.nelems)
        if isinstance(t, Composite):
            return (t.kind, t.name, t.size,
                    tuple((m.name, tid(m.type), m.bit_offset, m.bitfield_size) for m in t.members))
        if isinstance(t, Enum):
            return (t.kind, t.name, t.size, t.signed, tuple(t.values))
        if isinstance(t, Fwd):
            return (t.kind, t.name, t.union)
        if isinstance(t, Qualifier):
            return (t.kind, t.name, tid(t.type))
        if isinstance(t, (Func, Var)):
            return (t.kind, t.name, tid(t.type), int(t.linkage))
        if isinstance(t, FuncProto):
            return (t.kind, tid(t.return_type), tuple((p.name, tid(p.type)) for p in t.params))
        if isinstance(t, Datasec):
            return (t.kind, t.name, t.size, tuple((tid(v.type), v.offset, v.size) for v in t.vars))
        if isinstance(t, Float):
            return (t.kind, t.name, t.size)
        if isinstance(t, DeclTag):
            return (t.kind, t.name, tid(t.type), t.component_idx)
        return (t.kind, t.name)  # pragma: no cover

    def __eq__(self, other: object) -> bool:
        """Same types with the same ids (names, sizes, members, ...); the
        string table layout and byte order do not matter."""
        if not isinstance(other, Spec):
            return NotImplemented
        if len(self) != len(other) or self._first_id != other._first_id:
            return False
        for a, b in zip(self, other):
            if type(a) is not type(b) or self._canonical(a) != other._canonical(b):
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        split = f", split from {len(self.base)} base ids" if self.base is not None else ""
        return f"<btf.Spec {len(self)} ids, {self.byte_order}-endian{split}>"


class _ReadOnlyMap(mmap.mmap):
    """A read-only mapping that Spec.parse may keep without copying."""


_LINKAGES = {int(v): v for v in Linkage}
_ENCODINGS = [IntEncoding(v) for v in range(16)]
_QUALIFIERS = frozenset(int(k) for k in (Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST,
                                         Kind.RESTRICT, Kind.TYPE_TAG))
(_K_INT, _K_PTR, _K_ARRAY, _K_STRUCT, _K_UNION, _K_ENUM, _K_FWD, _K_FUNC, _K_FUNC_PROTO, _K_VAR,
 _K_DATASEC, _K_FLOAT, _K_DECL_TAG, _K_ENUM64) = (
    int(k) for k in (Kind.INT, Kind.PTR, Kind.ARRAY, Kind.STRUCT, Kind.UNION, Kind.ENUM,
                     Kind.FWD, Kind.FUNC, Kind.FUNC_PROTO, Kind.VAR, Kind.DATASEC, Kind.FLOAT,
                     Kind.DECL_TAG, Kind.ENUM64))


def _linkage(v: int) -> Any:
    return _LINKAGES.get(v, v)
