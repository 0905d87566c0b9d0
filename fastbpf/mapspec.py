"""MapSpec: the description of a map before the kernel sees it.

Kept apart from :mod:`fastbpf.maps` (the live :class:`~fastbpf.maps.Map`) so
the ELF loader, the collection and the map layer share one description
without importing each other. ``fastbpf.maps`` re-exports everything here.

What ``key`` and ``value`` may be:

* an int: a byte size (the dtype is raw bytes, ``np.dtype(("V", n))``; array
  maps index with a u32, so a key size of 4 there means uint32);
* anything ``np.dtype()`` accepts: the size is its itemsize;
* a BTF type (:mod:`fastbpf.btf.types`): the size is the type's size, the
  dtype its C layout, and the map is created with BTF so ``bpftool map
  dump`` pretty-prints it. With ``btf`` set to a loaded :class:`btf.Handle`
  whose spec holds the types (as in a collection), the map refers to that
  BTF object; otherwise a small BTF object is built for the map alone.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import numpy as np

from .enums import MapFlags, MapType
from .errors import MapIncompatibleError

__all__ = ["MapSpec", "PinType", "lpm_key_dtype"]

#: Map types whose values are file descriptors on write and ids on read.
FD_VALUE_MAPS = frozenset({MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS, MapType.PROG_ARRAY})
#: Map types whose values are maps.
MAP_OF_MAPS = frozenset({MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS})
#: Map types with no key.
KEYLESS_MAPS = frozenset({MapType.QUEUE, MapType.STACK, MapType.BLOOM_FILTER})
#: Map types whose key is an index.
ARRAY_MAPS = frozenset({MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY,
                         MapType.ARRAY_OF_MAPS, MapType.PERF_EVENT_ARRAY,
                         MapType.CGROUP_ARRAY, MapType.DEVMAP, MapType.CPUMAP,
                         MapType.SOCKMAP, MapType.XSKMAP})
_U32 = np.dtype(np.uint32)
#: Flags the kernel reports but nobody asks for (ignored by check_compatible).
_IMPLIED_FLAGS = 0


class PinType(enum.IntEnum):
    """How a map of a collection is pinned (libbpf's ``LIBBPF_PIN_*``)."""

    NONE = 0
    #: Pinned at ``<pin_path>/<map name>``; an existing compatible pin is reused.
    BY_NAME = 1


def as_dtype(spec: Any, what: str) -> np.dtype | None:
    """A key/value description -> numpy dtype (None for size 0)."""
    if spec is None:
        return None
    if isinstance(spec, bool):
        raise TypeError(f"{what} must be a byte size or a dtype, not bool")
    if isinstance(spec, (int, np.integer)):
        n = int(spec)
        if n < 0:
            raise ValueError(f"{what} size must be >= 0, got {n}")
        if n >= 1 << 31:
            raise ValueError(f"{what} size {n} is too large: the kernel's sizes are "
                             f"32-bit and numpy's item sizes below 2**31")
        return None if n == 0 else np.dtype(("V", n))
    if is_btf_type(spec):
        # The maps of one object share a handful of key/value types: each
        # type's dtype is derived once per parsed BTF (a walk over the graph).
        owner = getattr(spec, "_spec", None)
        tid = getattr(spec, "id", None) if owner is not None else None
        memo = owner.__dict__.setdefault("_dtype_memo", {}) if tid else None
        if memo is not None and tid in memo:
            cached: np.dtype | None = memo[tid]
            return cached
        from . import btf
        try:
            dt: np.dtype | None = btf.to_dtype(spec)
        except (btf.BTFError, TypeError, ValueError):
            # A type numpy cannot express (a flexible array, a bitfield
            # soup): its bytes, at the right size.
            n = spec.size
            dt = None if n == 0 else np.dtype(("V", n))
        if memo is not None:
            memo[tid] = dt
        return dt
    try:
        dt = np.dtype(spec)
    except TypeError as e:
        raise TypeError(f"{what} must be a byte size or anything np.dtype() accepts: {e}") from None
    if dt.hasobject:
        raise TypeError(f"{what} dtype {dt} holds Python objects; map keys and values are "
                        f"plain bytes the kernel copies")
    return dt


#: class -> whether it is a BTF type class (a map is asked about its key and
#: value several times on the way to the kernel).
_BTF_CLASS: dict[type, bool] = {}


def is_btf_type(obj: Any) -> bool:
    cls = type(obj)
    hit = _BTF_CLASS.get(cls)
    if hit is None:
        hit = (cls.__module__ or "").startswith("fastbpf.btf")
        if len(_BTF_CLASS) < 256:
            _BTF_CLASS[cls] = hit
    return hit


def lpm_key_dtype(data_bytes: int) -> np.dtype:
    """The key dtype of an LPM trie: ``prefixlen`` (u32) then ``data`` bytes.

    Keys are then written ``(prefixlen, b"\\x0a\\x00\\x00\\x00")`` or with
    :meth:`Map.lpm_key`.
    """
    return np.dtype([("prefixlen", "<u4"), ("data", "u1", (data_bytes,))])


@dataclasses.dataclass
class MapSpec:
    """A description of a map, before the kernel sees it.

    ``key`` and ``value`` are an int (a byte size; the dtype is raw bytes),
    anything ``np.dtype()`` accepts, or a BTF type (see the module
    docstring). ``inner`` describes the maps an ARRAY_OF_MAPS /
    HASH_OF_MAPS holds: a MapSpec, or in a collection the name of one of
    its maps.

    ``contents`` are initial entries written right after creation: a list
    of ``(key, value)`` pairs (a dict works too). For PROG_ARRAY and maps of
    maps a value may be a name (``str``), resolved by a collection to the
    program or map of that name, or a Program/Map object. ``freeze`` makes
    the map read-only for user space once the contents are written.
    ``pinning`` = :attr:`PinType.BY_NAME` pins the map at
    ``<pin directory>/<name>`` (the directory comes from ``pin_path`` given
    to the collection's load, or ``pin_dir`` here), reusing an existing pin
    after :meth:`check_compatible`.
    """

    type: MapType
    key: Any = 0
    value: Any = 0
    max_entries: int = 1
    flags: int = 0
    name: str = ""
    inner: "MapSpec | str | None" = None
    numa_node: int | None = None
    map_extra: int = 0
    ifindex: int = 0
    #: Path to pin the map at after creation (or to reuse, see Map.create).
    pin_path: str | None = None
    #: For struct_ops maps: the BTF id of the kernel value type.
    btf_vmlinux_value_type_id: int = 0
    #: Initial entries: (key, value) pairs written right after creation.
    contents: Any = None
    #: Freeze the map (BPF_MAP_FREEZE) once ``contents`` are written.
    freeze: bool = False
    #: How a collection pins the map (PinType.NONE or PinType.BY_NAME).
    pinning: PinType = PinType.NONE
    #: Directory for PinType.BY_NAME when no collection gives one.
    pin_dir: str | None = None
    #: A loaded btf.Handle whose spec holds ``key``/``value`` (a collection's
    #: one BTF object); None builds a small BTF object per map.
    btf: Any = None

    def __post_init__(self) -> None:
        if type(self.type) is not MapType:
            self.type = MapType(self.type)
        if type(self.pinning) is not PinType:
            self.pinning = PinType(self.pinning)

    def copy(self) -> "MapSpec":
        """A copy to edit before creating (inner spec and contents copied too)."""
        c = dataclasses.replace(self)
        if isinstance(self.inner, MapSpec):
            c.inner = self.inner.copy()
        if isinstance(self.contents, dict):
            c.contents = dict(self.contents)
        elif self.contents is not None:
            c.contents = [(k, dict(v) if isinstance(v, dict) else v) for k, v in self.contents]
        return c

    @property
    def key_dtype(self) -> np.dtype | None:
        """The numpy dtype of keys (None for keyless maps).

        Array-like maps index with a u32, so a bare size of 4 means uint32.
        """
        key = self.key
        if self.type in ARRAY_MAPS:
            if isinstance(key, (int, np.integer)):
                if int(key) == 4:
                    return _U32
            elif is_btf_type(key):
                # The type's size is a walk through typedefs: remembered
                # while the field holds the same type, as its dtype is.
                cache = self.__dict__.get("_dtypes")
                if cache is None:
                    cache = self.__dict__["_dtypes"] = {}
                hit = cache.get("key4")
                if hit is None or hit[0] is not key:
                    hit = cache["key4"] = (key, key.size == 4)
                if hit[1]:
                    return _U32
        return self._cached_dtype("key", key)

    @property
    def value_dtype(self) -> np.dtype | None:
        """The numpy dtype of one value (one CPU's, for per-CPU maps)."""
        if self.type in FD_VALUE_MAPS:
            return _U32
        return self._cached_dtype("value", self.value)

    def _cached_dtype(self, what: str, desc: Any) -> np.dtype | None:
        """as_dtype(desc), remembered while the field holds the same object
        (a BTF type's dtype takes a walk over the type graph)."""
        cache = self.__dict__.get("_dtypes")
        if cache is None:
            cache = self.__dict__["_dtypes"] = {}
        else:
            hit = cache.get(what)
            if hit is not None and hit[0] is desc:
                cached: np.dtype | None = hit[1]
                return cached
        dt = as_dtype(desc, what)
        if not isinstance(desc, (int, np.integer)):
            cache[what] = (desc, dt)
        return dt

    @property
    def key_size(self) -> int:
        """The key size in bytes."""
        return self._sizes()[0]

    @property
    def value_size(self) -> int:
        """The value size in bytes."""
        return self._sizes()[1]

    def _sizes(self) -> tuple[int, int]:
        kd, vd = self.key_dtype, self.value_dtype
        if self.type in FD_VALUE_MAPS and self.value not in (0, 4, None):
            vsize = as_dtype(self.value, "value")
            if vsize is not None and vsize.itemsize != 4:
                raise ValueError(f"{self.type.name} values are 4-byte fds")
        return (kd.itemsize if kd is not None else 0, vd.itemsize if vd is not None else 0)

    def _create_flags(self) -> int:
        """map_flags as the kernel will report them for a map made from this spec."""
        flags = int(self.flags)
        if self.type == MapType.LPM_TRIE:
            flags |= MapFlags.NO_PREALLOC
        if self.numa_node is not None:
            flags |= MapFlags.NUMA_NODE
        return flags

    def check_compatible(self, m: Any) -> None:
        """Raise :class:`MapIncompatibleError` unless the live map *m* could
        have been created from this spec.

        Compares type, key size, value size, max_entries, map flags and
        map_extra (what libbpf compares before reusing a pin), and names
        every field that differs.
        """
        info = m.info()
        ks, vs = self._sizes()
        want = {
            "type": int(self.type), "key_size": ks, "value_size": vs,
            "max_entries": int(self.max_entries), "flags": self._create_flags(),
            "map_extra": int(self.map_extra),
        }
        have = {
            "type": int(info.type), "key_size": info.key_size, "value_size": info.value_size,
            "max_entries": info.max_entries, "flags": int(info.flags) & ~_IMPLIED_FLAGS,
            "map_extra": info.map_extra,
        }
        if self.type == MapType.PERF_EVENT_ARRAY and self.max_entries == 0:
            want.pop("max_entries")  # sized to the CPU count at creation
        diff: dict[str, tuple[Any, Any]] = {k: (want[k], have[k]) for k in want
                                            if want[k] != have[k]}
        if "type" in diff:
            diff["type"] = (self.type.name, _type_name(info.type))
        if diff:
            raise MapIncompatibleError(f"map {self.name or info.name!r}", diff)


_DEFAULTS: dict[str, Any] | None = None


def new_map_spec(**fields: Any) -> MapSpec:
    """A MapSpec from fields already of the right types (the ELF loader's
    path: ``type`` a MapType, ``pinning`` a PinType), without the dataclass
    ``__init__`` and its conversions; missing fields take their defaults."""
    global _DEFAULTS
    if _DEFAULTS is None:
        _DEFAULTS = {f.name: f.default for f in dataclasses.fields(MapSpec)}
    ms = object.__new__(MapSpec)
    d = ms.__dict__
    d.update(_DEFAULTS)
    d.update(fields)
    return ms


def _type_name(t: Any) -> Any:
    try:
        return MapType(int(t)).name
    except ValueError:
        return int(t)
