"""Maps: :class:`MapSpec` (a description) and :class:`Map` (a live kernel map).

:class:`Map` is built in layers, each in its own module, dependencies
pointing down:

- :class:`fastbpf._core.MapBase`: the per-element operations (``m[k]``,
  ``m[k] = v``, ``del m[k]``, ``k in m``, ``lookup``, ``update``,
  ``delete``, ``pop``, ``push``, ``peek``), in C;
- :mod:`fastbpf.mapiter`: ``keys()``, ``values()``, ``items()``, ``len()``;
- :mod:`fastbpf.mapbatch`: the batch operations and ``clear()``;
- :mod:`fastbpf.mapcreate`: the steps of creating a map in the kernel;
- here: construction (create, open by pin, id or fd), info, pinning,
  freeze, mmap. ``MapSpec`` and its dtype rules live in
  :mod:`fastbpf.mapspec`; every name is re-exported here.
"""

from __future__ import annotations

import dataclasses
import errno
import mmap as _mmap
import os
import re
from typing import Any

import numpy as np

from . import _core
from .enums import MapFlags, MapType
from .errors import BPFError, BTFError, bpf_error
from .mapbatch import BatchMap
from .mapcreate import create_fd, spec_pin_path
from .mapiter import map_type_of
from .pin import BPF_FS_MAGIC, Pinnable, check_pin_path  # noqa: F401 (their old home)
from .programs import Program
# MapSpec and its dtype rules live in mapspec.py; re-exported here.
from .mapspec import (ARRAY_MAPS, FD_VALUE_MAPS, KEYLESS_MAPS, MAP_OF_MAPS, MapSpec,  # noqa: F401
                      PinType, as_dtype, is_btf_type, lpm_key_dtype)

__all__ = ["MapSpec", "PinType", "Map", "MapInfo", "map_ids", "lpm_key_dtype", "BPF_FS_MAGIC"]

#: fd_kind() answers, for error messages.
_KIND_NAMES = {"prog": "a BPF program", "link": "a BPF link", "btf": "a BTF object",
               "other": "not a BPF object"}


@dataclasses.dataclass(frozen=True)
class MapInfo:
    """What the kernel says about a map (BPF_OBJ_GET_INFO_BY_FD)."""

    id: int
    type: MapType | int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    name: str
    btf_id: int = 0
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    map_extra: int = 0
    ifindex: int = 0

    @classmethod
    def from_fd(cls, fd: int) -> MapInfo:
        """What the kernel says about the map behind the descriptor *fd*."""
        i = _core.map_info(fd)
        return cls(id=i["id"], type=map_type_of(i["type"]), key_size=i["key_size"],
                   value_size=i["value_size"], max_entries=i["max_entries"],
                   flags=i["flags"], name=i["name"], btf_id=i["btf_id"],
                   btf_key_type_id=i["btf_key_type_id"],
                   btf_value_type_id=i["btf_value_type_id"],
                   map_extra=i["map_extra"], ifindex=i["ifindex"])


_U32 = np.dtype(np.uint32)
#: A name the kernel keeps as it is (what _core.kernel_name leaves alone).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.]{1,15}").fullmatch


def _kernel_name(name: str) -> str:
    """_core.kernel_name(name), without its byte-by-byte pass for a plain name."""
    return name if name.__class__ is str and _PLAIN_NAME(name) else _core.kernel_name(name)


#: Map types Map._create_prechecked leaves to Map.create (an inner
#: template, a vmlinux value type, a CPU count for max_entries 0).
_NOT_PRECHECKED = frozenset({MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS, MapType.STRUCT_OPS,
                             MapType.PERF_EVENT_ARRAY})


class Map(BatchMap, Pinnable):
    """A live BPF map, owned through its file descriptor.

    Create one with :meth:`create`, or open an existing one with
    :meth:`from_pin`, :meth:`from_id` or :meth:`from_fd`. Use it like a dict::

        m[7] = 42; m[7]; del m[7]; 7 in m

    Integer, float and bool values come back as Python ``int``, ``float``
    and ``bool`` (keys from :meth:`keys`/:meth:`items` too); structured and
    raw values as numpy records; per-CPU values as an array of shape
    (possible CPUs,) the kernel filled in place; batches as arrays. Python
    numbers were chosen over numpy scalars for speed and for what a
    dict-like object is expected to give: making a numpy scalar and adding
    it to a Python int cost more than the rest of ``s += m[k]`` (about 160
    ns + 100 ns against 20 ns on the benchmark machine; the README's
    benchmark notes have the figures).

    Writes convert exactly or not at all: integers must fit the field
    (``OverflowError``), floats go only into float fields and strings are
    never numbers (``TypeError``), in ``m[k] = v`` and in batches alike. A
    struct key takes a tuple or a record, never a scalar.

    ``m.name`` is the name the kernel holds (15 characters of
    ``[A-Za-z0-9_.]``; other characters become ``_``). Close the map with
    :meth:`close`, a ``with`` block, or let the garbage collector do it.
    """

    #: The spec the map was created from (None when opened from the kernel).
    spec: MapSpec | None
    # Class defaults: _wrap writes them only when they are set (a
    # collection makes a dozen maps per load; each write costs).
    _keep: Any = None
    _inner_spec: MapSpec | None = None
    _pin_path: str | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("use Map.create(spec), Map.from_pin(path), Map.from_id(id) "
                        "or Map.from_fd(fd)")

    # -- construction ------------------------------------------------------

    @classmethod
    def _wrap(cls, fd: _core.FD, map_type: int, key_size: int, value_size: int,
              max_entries: int, flags: int, name: str, key_dtype: np.dtype | None,
              value_dtype: np.dtype | None, spec: MapSpec | None = None,
              keep: Any = None) -> "Map":
        self = cls.__new__(cls)
        mt = map_type if map_type.__class__ is MapType else map_type_of(map_type)
        if key_dtype is None:
            if mt in ARRAY_MAPS and key_size == 4:
                key_dtype = _U32
            elif key_size:
                key_dtype = np.dtype(("V", key_size))
        if value_dtype is None and value_size:
            value_dtype = np.dtype(("V", value_size))
        percpu = isinstance(mt, MapType) and mt.is_percpu
        self._init_handle(fd, map_type, key_size, value_size, max_entries, flags, name,
                          key_dtype, value_dtype, percpu, mt in FD_VALUE_MAPS)
        self.spec = spec
        if keep is not None:
            self._keep = keep
        # A name (str) is resolved by a collection before it creates the map.
        if spec is not None and spec.inner is not None:
            self._inner_spec = spec.inner  # type: ignore[assignment]
        return self

    @classmethod
    def create(cls, spec: MapSpec) -> "Map":
        """Create a map in the kernel from *spec*.

        If the spec's pin path (``pin_path``, or ``pin_dir/name`` for
        ``pinning=PinType.BY_NAME``) names an existing pin, that map is
        opened instead after :meth:`MapSpec.check_compatible` (which raises
        :class:`MapIncompatibleError` naming what differs); otherwise the
        new map gets ``contents`` written, is frozen if ``freeze``, and is
        pinned there. On any failure nothing is left behind.
        """
        if not isinstance(spec, MapSpec):
            raise TypeError(f"Map.create takes a MapSpec, not {type(spec).__name__}")
        pin = spec_pin_path(spec)
        if pin and os.path.exists(pin):
            return cls._reuse_pinned(spec, pin)
        fd, (mtype, ks, vs, max_entries, flags) = create_fd(spec)
        # m.name is the kernel's name (what bpftool and info() show): at most
        # 15 characters of [A-Za-z0-9_.], anything else replaced by "_".
        m = cls._wrap(fd, int(mtype), ks, vs, max_entries, flags,
                      _core.kernel_name(spec.name), spec.key_dtype, spec.value_dtype, spec)
        return m._initialise(spec, pin)

    def _initialise(self, spec: MapSpec, pin: str | None) -> "Map":
        """Write *spec*'s contents, freeze and pin the new map as it asks;
        on any failure the map is closed (nothing half-made escapes)."""
        try:
            if spec.contents:
                self._write_contents(spec.contents)
            if spec.freeze:
                self.freeze()
            if pin:
                self.pin(pin)
        except BaseException:
            self.close()
            raise
        return self

    @classmethod
    def _create_prechecked(cls, spec: MapSpec) -> "Map | None":
        """:meth:`create` for a collection's map that is neither pinned nor a
        map of maps nor struct_ops (None otherwise, or when the kernel
        refuses it: :meth:`create` then says why). The loader's maps share one
        loaded BTF; the dtypes are derived once here, not once per check."""
        mtype = spec.type
        if spec.pin_path or (spec.pinning and spec.pin_dir) or mtype in _NOT_PRECHECKED \
                or spec.numa_node is not None or spec.btf_vmlinux_value_type_id:
            return None
        kd, vd = spec.key_dtype, spec.value_dtype
        ks = kd.itemsize if kd is not None else 0
        vs = vd.itemsize if vd is not None else 0
        max_entries = int(spec.max_entries)
        if max_entries <= 0 or (mtype in ARRAY_MAPS and ks not in (0, 4)) \
                or (mtype in FD_VALUE_MAPS and vs != 4):
            return None
        handle = spec.btf
        key, value = spec.key, spec.value
        key_btf, value_btf = is_btf_type(key), is_btf_type(value)
        kid = vid = btf_fd = 0
        if handle is not None:
            if handle.closed:
                return None
            bspec = handle.spec()
            try:
                kid = bspec.type_id(key) if key_btf else 0
                vid = bspec.type_id(value) if value_btf else 0
            except BTFError:
                return None  # types from elsewhere: create() builds their BTF
            btf_fd = handle.fd
        elif key_btf or value_btf:
            return None
        flags = spec._create_flags()
        name = spec.name or None
        try:
            fd = _core.map_create(mtype, ks, vs, max_entries, flags, name,
                                  map_ifindex=spec.ifindex, map_extra=spec.map_extra,
                                  btf_fd=btf_fd, btf_key_type_id=kid, btf_value_type_id=vid)
        except BPFError:
            return None
        m = cls._wrap(fd, mtype, ks, vs, max_entries, flags,
                      _kernel_name(name) if name else "", kd, vd, spec)
        if spec.contents or spec.freeze:
            return m._initialise(spec, None)
        return m

    def _write_inner_maps(self, items: list[Any]) -> bool:
        """A map of maps' initial inner maps in one BPF_MAP_UPDATE_BATCH.

        The kernel waits for an RCU grace period after each update of a map
        of maps (8-13 ms measured here), and once after a batch: libbpf's
        slot-by-slot writes pay it per slot. False when the batch cannot be
        used (a name or non-map value, a kernel without batch ops for this
        type, any refusal): the caller then writes the same entries one by
        one, which raises what a refused entry raises.
        """
        fds = []
        for _, v in items:
            fd = v if isinstance(v, (int, np.integer)) else getattr(v, "fd", None)
            if fd is None or isinstance(v, (bool, str)):
                return False
            fds.append(fd)
        try:
            # Each key as m[k] = v converts it: a size-only key takes ints.
            keys = b"".join(self._pack_key(k) for k, _ in items)
            values = np.array(fds, dtype=np.uint32)
            with self._own_fd() as own:
                _core.map_update_batch(own.fd, keys, values, len(fds))
        except (BPFError, TypeError, ValueError, OverflowError):
            return False
        return True

    @classmethod
    def _reuse_pinned(cls, spec: MapSpec, pin: str) -> "Map":
        """The map pinned at *pin*, after :meth:`MapSpec.check_compatible`."""
        m = cls.from_pin(pin)
        try:
            spec.check_compatible(m)
        except BaseException:
            m.close()
            raise
        return m._retyped(spec)

    def _write_contents(self, contents: Any) -> None:
        """Write a spec's initial entries (objects in fd maps become fds)."""
        items = contents.items() if isinstance(contents, dict) else contents
        if self.map_type in MAP_OF_MAPS:
            items = list(items)
            if len(items) > 1 and self._write_inner_maps(items):
                return
        for k, v in items:
            if self.map_type in FD_VALUE_MAPS and not isinstance(v, (int, np.integer)):
                if isinstance(v, str):
                    raise ValueError(f"map {self.name!r}: initial value {v!r} names a program "
                                     f"or map; load it through a collection to resolve names")
                v = getattr(v, "fd", v)
            if isinstance(v, (bytes, bytearray, memoryview)) and self.value_dtype is not None \
                    and len(v) == self.value_size:
                if isinstance(v, bytes) and self.value_dtype.kind == "V" and not self.percpu:
                    # A record or raw bytes (a data section's value): the
                    # map copies exact-size bytes as they are, which is what
                    # the record made from them would hold.
                    self[k] = v
                    continue
                v = np.frombuffer(bytes(v), dtype=self.value_dtype)[0]
            self[k] = v

    def _retyped(self, spec: MapSpec) -> "Map":
        """This map's fd under the dtypes of *spec* (same sizes)."""
        fd = _core.dup_fd(self.fd)
        m = type(self)._wrap(fd, self.map_type, self.key_size, self.value_size,
                             self.max_entries, self.flags,
                             _core.kernel_name(spec.name) if spec.name else self.name,
                             spec.key_dtype, spec.value_dtype, spec)
        self.close()
        return m

    @classmethod
    def from_fd(cls, fd: int, key: Any = None, value: Any = None) -> "Map":
        """Open the map behind the descriptor *fd*.

        The descriptor is duplicated: the caller keeps ownership of *fd*.
        *key* and *value* optionally give dtypes (sizes must match).
        """
        return cls._from_owned_fd(_core.dup_fd(int(fd)), key, value)

    @classmethod
    def from_pin(cls, path: str | os.PathLike[str], key: Any = None, value: Any = None) -> "Map":
        """Open the map pinned at *path* on a bpffs; :meth:`unpin` then
        removes that pin."""
        m = cls._from_owned_fd(_core.obj_get(os.fspath(path)), key, value,
                               f"the object pinned at {os.fspath(path)!r}")
        m._remember_pin(path)
        return m

    @classmethod
    def from_id(cls, map_id: int, key: Any = None, value: Any = None) -> "Map":
        """Open the map with kernel id *map_id*."""
        return cls._from_owned_fd(_core.map_get_fd_by_id(int(map_id)), key, value)

    @classmethod
    def _from_owned_fd(cls, fd: _core.FD, key: Any, value: Any, what: str | None = None) -> "Map":
        try:
            kind = _core.fd_kind(fd.fd)
            if kind not in ("map", None):
                raise ValueError(f"{what or f'fd {fd.fd}'} is {_KIND_NAMES.get(kind, kind)}, "
                                 f"not a BPF map")
            info = _core.map_info(fd.fd)
        except BPFError as e:
            fd.close()
            if e.errno == errno.EINVAL:
                raise ValueError("the descriptor is not a BPF map") from e
            raise
        except BaseException:
            fd.close()
            raise
        kd = as_dtype(key, "key") if key is not None else None
        vd = as_dtype(value, "value") if value is not None else None
        for dt, size, what in ((kd, info["key_size"], "key"), (vd, info["value_size"], "value")):
            if dt is not None and dt.itemsize != size:
                fd.close()
                raise ValueError(f"{what} dtype {dt} is {dt.itemsize} bytes, the map's "
                                 f"{what}s are {size}")
        mt = map_type_of(info["type"])
        if (kd is None or vd is None) and info["btf_id"] and mt not in FD_VALUE_MAPS:
            from .btf.from_dtype import map_dtypes  # dtypes back from the map's BTF
            bk, bv = map_dtypes(info["btf_id"], info["btf_key_type_id"],
                                info["btf_value_type_id"], info["key_size"], info["value_size"])
            kd, vd = (kd if kd is not None else bk), (vd if vd is not None else bv)
        if vd is None and mt in FD_VALUE_MAPS:
            vd = np.dtype(np.uint32)
        return cls._wrap(fd, info["type"], info["key_size"], info["value_size"],
                         info["max_entries"], info["flags"], info["name"], kd, vd)

    # -- the object ----------------------------------------------------------

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self.fd}"
        t = self.type
        tn = t.name if isinstance(t, MapType) else str(t)
        return (f"<Map {self.name!r} {tn} key={self.key_dtype} value={self.value_dtype} "
                f"max_entries={self.max_entries} {state}>")

    def info(self) -> MapInfo:
        """The kernel's view of the map (id, type, sizes, flags, name)."""
        return MapInfo.from_fd(self.fd)

    @property
    def id(self) -> int:
        """The kernel's id of this map."""
        return int(_core.map_info(self.fd)["id"])

    def clone(self) -> "Map":
        """A second Map object for the same kernel map (a dup'ed fd)."""
        return type(self)._wrap(_core.dup_fd(self.fd), self.map_type, self.key_size,
                                self.value_size, self.max_entries, self.flags, self.name,
                                self.key_dtype, self.value_dtype, self.spec)

    # -- map-in-map / prog array values ---------------------------------------

    def _from_value_id(self, value_id: int) -> Any:
        if self.map_type == MapType.PROG_ARRAY:
            return Program.from_id(value_id)
        inner = self._inner_spec
        if inner is not None:
            return Map.from_id(value_id, inner.key_dtype, inner.value_dtype)
        return Map.from_id(value_id)

    # -- freeze, mmap ---------------------------------------------------------------

    def freeze(self) -> None:
        """Forbid further writes from user space (BPF_MAP_FREEZE)."""
        _core.map_freeze(self.fd)

    def mmap(self, writable: bool | None = None) -> np.ndarray:
        """Map the array's memory: a numpy array of shape (max_entries,).

        Needs an ARRAY created with ``MapFlags.MMAPABLE``. Writes through the
        array are seen by BPF programs at once and vice versa. A frozen map
        (or ``writable=False``) is mapped read-only. The mapping lives as
        long as the returned array (or any view of it).
        """
        if self.map_type != MapType.ARRAY or not (self.flags & MapFlags.MMAPABLE):
            raise ValueError(f"map {self.name!r} is not an ARRAY with MapFlags.MMAPABLE")
        stride = (self.value_size + 7) & ~7
        size = stride * self.max_entries
        length = (size + _mmap.PAGESIZE - 1) // _mmap.PAGESIZE * _mmap.PAGESIZE
        prot = _mmap.PROT_READ | (0 if writable is False else _mmap.PROT_WRITE)
        try:
            mm = _mmap.mmap(self.fd, length, _mmap.MAP_SHARED, prot)
        except PermissionError as e:
            if writable:
                raise bpf_error(e.errno or errno.EPERM, "map mmap", f"map {self.name!r}",
                                "the map is frozen (Map.freeze): map it with writable=False"
                                ) from None
            mm = _mmap.mmap(self.fd, length, _mmap.MAP_SHARED, _mmap.PROT_READ)
            prot = _mmap.PROT_READ
        except OSError as e:
            raise bpf_error(e.errno or 0, "map mmap", f"map {self.name!r}") from None
        arr = np.ndarray((self.max_entries,), dtype=self.value_dtype, buffer=mm,
                         strides=(stride,))
        if not prot & _mmap.PROT_WRITE:
            arr.flags.writeable = False
        return arr

    # -- LPM helper ---------------------------------------------------------------------

    def to_dataframe(self, per_cpu: str = "sum") -> Any:
        """The entries as a pandas DataFrame (see :func:`fastbpf.metrics.to_dataframe`)."""
        from .metrics.frames import to_dataframe
        return to_dataframe(self, per_cpu)

    def to_arrow(self, per_cpu: str = "sum") -> Any:
        """The entries as a pyarrow Table (see :func:`fastbpf.metrics.to_arrow`)."""
        from .metrics.frames import to_arrow
        return to_arrow(self, per_cpu)

    def lpm_key(self, prefixlen: int, data: bytes | bytearray | Any) -> np.void:
        """Build an LPM trie key from a prefix length and address bytes."""
        if self.map_type != MapType.LPM_TRIE:
            raise TypeError("lpm_key is for LPM_TRIE maps")
        nbytes = self.key_size - 4
        raw = bytes(data)
        if len(raw) != nbytes:
            raise ValueError(f"LPM data must be {nbytes} bytes, got {len(raw)}")
        if not 0 <= prefixlen <= nbytes * 8:
            raise ValueError(f"prefix length {prefixlen} out of range 0..{nbytes * 8}")
        raw_key = int(prefixlen).to_bytes(4, "little") + raw
        key: np.void = np.frombuffer(raw_key, dtype=self.key_dtype)[0]
        return key


def map_ids() -> list[int]:
    """Ids of every map in the kernel (not only this process's), ascending."""
    return _core.map_ids()
