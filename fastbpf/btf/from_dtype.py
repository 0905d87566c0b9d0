"""numpy dtype -> BTF: the reverse of :func:`fastbpf.btf.to_dtype`.

A map created from numpy dtypes carries BTF built here, so the kernel (and
``bpftool map dump``) knows its C layout, and :meth:`Map.from_id` /
:meth:`Map.from_pin` get the same dtypes back with no arguments.

Rules, chosen so that ``to_dtype(from_dtype(dt)) == dt``:

- ``?`` -> ``_Bool``; ``i1``/``u1`` -> ``signed char``/``unsigned char``;
  ``i2 u2 i4 u4 i8 u8`` -> ``short`` ... ``unsigned long long``;
  ``f2 f4 f8`` -> ``_Float16``/``float``/``double``.
- Big-endian integers (``>u2``, ``>u4``, ``>u8``) become the typedefs
  ``__be16``, ``__be32``, ``__be64`` of the integer (network byte order, as
  the kernel's headers spell it); :func:`to_dtype` reads those typedefs
  back as big-endian fields.
- ``S<n>`` -> ``char[n]``; a subarray ``('u4', (2, 3))`` -> ``u32[2][3]``;
  raw ``V<n>`` inside a record -> ``unsigned char[n]``.
- Structured dtypes -> structs with the field names, offsets and itemsize
  (nested records become nested structs, named ``<parent>_<field>``).

Anything else (complex numbers, datetimes, objects, big-endian floats, field
names that are not C identifiers) raises :class:`UnsupportedDtype`.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..enums import MapType
from .types import Array, Float, Int, IntEncoding, Member, Struct, Type, Typedef

__all__ = ["from_dtype", "map_btf_from_dtypes", "load_dtype_btf", "map_dtypes", "UnsupportedDtype",
           "BIG_ENDIAN_TYPEDEFS", "DTYPE_BTF_MAP_TYPES"]

from .dtype import BIG_ENDIAN_TYPEDEFS, to_dtype as _to_dtype  # noqa: E402

_INT_NAMES = {(1, True): "signed char", (1, False): "unsigned char",
              (2, True): "short", (2, False): "unsigned short",
              (4, True): "int", (4, False): "unsigned int",
              (8, True): "long long", (8, False): "unsigned long long"}
_FLOAT_NAMES = {2: "_Float16", 4: "float", 8: "double"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class UnsupportedDtype(ValueError):
    """The dtype has no BTF equivalent (the map is then created without BTF)."""


class _Builder:
    """Builds types once per distinct scalar, so the BTF stays small."""

    def __init__(self) -> None:
        self.cache: dict[Any, Type] = {}

    def scalar(self, dt: np.dtype) -> Type:
        big = dt.byteorder == ">" or (dt.byteorder == "=" and np.little_endian is False)
        key = (dt.kind, dt.itemsize, big)
        got = self.cache.get(key)
        if got is not None:
            return got
        t: Type
        if dt.kind == "b":
            t = Int("_Bool", 1, IntEncoding.BOOL)
        elif dt.kind in "iu":
            signed = dt.kind == "i"
            t = Int(_INT_NAMES[(dt.itemsize, signed)], dt.itemsize,
                    IntEncoding.SIGNED if signed else IntEncoding.NONE)
            if big and dt.itemsize > 1:
                base = self.scalar(np.dtype(f"<{dt.kind}{dt.itemsize}"))
                t = Typedef(f"__be{8 * dt.itemsize}", base)
        elif dt.kind == "f" and dt.itemsize in _FLOAT_NAMES:
            if big:
                raise UnsupportedDtype(f"big-endian float {dt} has no BTF spelling")
            t = Float(_FLOAT_NAMES[dt.itemsize], dt.itemsize)
        else:
            raise UnsupportedDtype(f"numpy dtype {dt} has no BTF equivalent")
        self.cache[key] = t
        return t

    def char(self) -> Type:
        got = self.cache.get("char")
        if got is None:
            got = self.cache["char"] = Int("char", 1, IntEncoding.CHAR)
        return got

    def build(self, dt: np.dtype, name: str) -> Type:
        if dt.subdtype is not None:
            base, shape = dt.subdtype
            t = self.build(base, name)
            for n in reversed(shape):
                t = Array(t, int(n))
            return t
        if dt.fields is not None:
            return self.record(dt, name)
        if dt.kind == "S":
            return Array(self.char(), dt.itemsize)
        if dt.kind == "V":
            return Array(self.scalar(np.dtype("u1")), dt.itemsize)
        return self.scalar(dt)

    def record(self, dt: np.dtype, name: str) -> Type:
        assert dt.fields is not None
        fields = sorted(((off, fname, fdt) for fname, (fdt, off, *_) in dt.fields.items()),
                        key=lambda f: f[0])
        members = []
        for off, fname, fdt in fields:
            if not _IDENT.match(fname):
                raise UnsupportedDtype(f"field name {fname!r} is not a C identifier")
            members.append(Member(fname, self.build(fdt, f"{name}_{fname}"), 8 * off))
        return Struct(name, dt.itemsize, members)


def from_dtype(dt: Any, name: str = "") -> Type:
    """The BTF type of numpy dtype *dt*; records become a struct called *name*."""
    dt = np.dtype(dt)
    if name and not _IDENT.match(name):
        raise UnsupportedDtype(f"type name {name!r} is not a C identifier")
    return _Builder().build(dt, name)


def _type_name(map_name: str, what: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", map_name or "map")
    if base[0].isdigit():
        base = "m" + base
    return f"{base}_{what}"


def map_btf_from_dtypes(key: np.dtype | None, value: np.dtype | None,
                        map_name: str = "") -> tuple[Any, int, int] | None:
    """``(spec, key_type_id, value_type_id)`` describing a map's dtypes, or
    None when they say nothing BTF would add (raw bytes) or cannot be
    expressed. Ids are 0 for a missing key/value."""
    from .handle import build_map_btf

    def raw(dt: np.dtype | None) -> bool:
        return dt is None or (dt.kind == "V" and dt.fields is None and dt.subdtype is None)

    if raw(key) and raw(value):
        return None
    b = _Builder()
    try:
        kt = b.build(key, _type_name(map_name, "key")) if key is not None else None
        vt = b.build(value, _type_name(map_name, "value")) if value is not None else None
    except UnsupportedDtype:
        return None
    spec, kid, vid = build_map_btf(kt, vt)
    return spec, kid, vid


#: Map types that get BTF generated from their numpy dtypes (others either
#: hold fds, have no key/value, or take BTF the kernel checks specially).
DTYPE_BTF_MAP_TYPES = frozenset({MapType.HASH, MapType.ARRAY, MapType.PERCPU_HASH,
                                 MapType.PERCPU_ARRAY, MapType.LRU_HASH,
                                 MapType.LRU_PERCPU_HASH, MapType.LPM_TRIE})


def load_dtype_btf(map_type: int, key: np.dtype | None, value: np.dtype | None,
                   map_name: str = "") -> tuple[Any, tuple[int, int]]:
    """``(loaded btf.Handle or None, (key type id, value type id))`` for a
    map about to be created with these dtypes. None (and ids 0) when the map
    type takes no such BTF, the dtypes say nothing BTF would add, or the
    kernel refuses the BTF (the map then works untyped, as before)."""
    from ..errors import BPFError, BTFError
    from .handle import Handle
    if int(map_type) not in DTYPE_BTF_MAP_TYPES:
        return None, (0, 0)
    if int(map_type) == MapType.LPM_TRIE and (key is None or key.fields is None):
        return None, (0, 0)  # the kernel wants an LPM trie key's BTF to be a struct
    built = map_btf_from_dtypes(key, value, map_name)
    if built is None:
        return None, (0, 0)
    try:
        return Handle.load(built[0]), (built[1], built[2])
    except (BPFError, BTFError):
        return None, (0, 0)


def _restored(t: Type | None, size: int) -> np.dtype | None:
    if t is None:
        return None
    to_dtype = _to_dtype
    from ..errors import BTFError
    try:
        dt = to_dtype(t, bitfields="raw", unsupported="raw")
    except (BTFError, ValueError, TypeError):
        return None
    if dt.itemsize != size:
        return None
    if dt.subdtype is not None and dt.subdtype[0] == np.dtype("u1"):
        return np.dtype(("V", size))  # raw bytes, as the map was created
    return dt


def map_dtypes(btf_id: int, key_type_id: int, value_type_id: int, key_size: int,
               value_size: int) -> tuple[np.dtype | None, np.dtype | None]:
    """The key and value dtypes a map's BTF describes (None where it has no
    type, or one whose size disagrees with the map's)."""
    from ..errors import BPFError, BTFError
    from .handle import Handle
    if not btf_id or not (key_type_id or value_type_id):
        return None, None
    try:
        with Handle.from_id(btf_id) as h:
            spec = h.spec()
        kt = spec.type_by_id(key_type_id) if key_type_id else None
        vt = spec.type_by_id(value_type_id) if value_type_id else None
    except (BPFError, BTFError, OSError):
        return None, None
    return _restored(kt, key_size), _restored(vt, value_size)
