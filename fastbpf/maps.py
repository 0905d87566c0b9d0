"""Maps: :class:`MapSpec` (a description) and :class:`Map` (a live kernel map).

The per-element operations (``m[k]``, ``m[k] = v``, ``del m[k]``, ``k in m``,
``lookup``, ``update``, ``delete``, ``pop``, ``push``, ``peek``) are inherited
from :class:`fastbpf._core.MapBase` and run in C. Everything else — creation,
batches, iteration, pinning, info, mmap — is here.
"""

from __future__ import annotations

import dataclasses
import errno
import mmap as _mmap
import os
from typing import Any, Iterator

import numpy as np

from . import _core, features
from .enums import MapFlags, MapType, UpdateFlags
from .errors import BPFError, ClosedError, bpf_error, not_supported_error
from .pin import BPF_FS_MAGIC, Pinnable, check_pin_path  # noqa: F401 (their old home)
from .programs import Program
# MapSpec and its dtype rules live in mapspec.py; re-exported here.
from .mapspec import (ARRAY_MAPS, FD_VALUE_MAPS, KEYLESS_MAPS, MapSpec,  # noqa: F401
                      PinType, as_dtype, is_btf_type, lpm_key_dtype)

__all__ = ["MapSpec", "PinType", "Map", "MapInfo", "map_ids", "lpm_key_dtype", "BPF_FS_MAGIC"]

#: fd_kind() answers, for error messages.
_KIND_NAMES = {"prog": "a BPF program", "link": "a BPF link", "btf": "a BTF object",
               "other": "not a BPF object"}
#: Map types whose kernel side has BPF_MAP_LOOKUP_BATCH (items() reads them in chunks).
_BATCH_ITER_MAPS = frozenset({MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH,
                              MapType.LRU_PERCPU_HASH, MapType.ARRAY, MapType.PERCPU_ARRAY})
#: The largest chunk items() asks the kernel for.
_ITER_CHUNK_MAX = 1 << 16


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


def _map_type(t: int) -> MapType | int:
    try:
        return MapType(t)
    except ValueError:
        return t


class Map(_core.MapBase, Pinnable):
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
    _keep: Any
    _inner_spec: MapSpec | None
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
        mt = _map_type(map_type)
        if key_dtype is None and mt in ARRAY_MAPS and key_size == 4:
            key_dtype = np.dtype(np.uint32)
        if key_dtype is None and key_size:
            key_dtype = np.dtype(("V", key_size))
        if value_dtype is None and value_size:
            value_dtype = np.dtype(("V", value_size))
        percpu = isinstance(mt, MapType) and mt.is_percpu
        self._init_handle(fd, map_type, key_size, value_size, max_entries, flags, name,
                          key_dtype, value_dtype, percpu, mt in FD_VALUE_MAPS)
        self.spec = spec
        self._keep = keep
        # A name (str) is resolved by a collection before it creates the map.
        self._inner_spec = spec.inner if spec is not None else None  # type: ignore[assignment]
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
            m = cls.from_pin(pin)
            try:
                spec.check_compatible(m)
            except BaseException:
                m.close()
                raise
            return m._retyped(spec)
        ks, vs = spec._sizes()
        mtype = spec.type
        flags = spec._create_flags()
        max_entries = int(spec.max_entries)
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        if mtype == MapType.PERF_EVENT_ARRAY and max_entries == 0:
            max_entries = _core.possible_cpus()  # one slot per CPU, as libbpf does
        if mtype in ARRAY_MAPS and ks not in (0, 4):
            raise ValueError(f"{mtype.name} keys are 4-byte indexes, the spec says {ks} bytes")
        inner_fd = None
        btf_handle = None
        own_btf = False
        btf_ids = (0, 0)
        try:
            if mtype.is_map_of_maps:
                if not isinstance(spec.inner, MapSpec):
                    raise ValueError(f"{mtype.name} needs inner=MapSpec(...) describing its maps"
                                     + (f" (the name {spec.inner!r} means something only in a "
                                        f"collection)" if isinstance(spec.inner, str) else ""))
                # A template map gives the kernel the inner map's shape; it
                # can be closed as soon as the outer map exists.
                inner_fd = Map.create(dataclasses.replace(
                    spec.inner, pin_path=None, pinning=0, contents=None,  # type: ignore[arg-type]
                    freeze=False))
            if is_btf_type(spec.key) or is_btf_type(spec.value):
                btf_handle, btf_ids, own_btf = _map_btf(spec)
            elif mtype == MapType.STRUCT_OPS:
                # The value type comes from vmlinux (btf_vmlinux_value_type_id),
                # but the kernel still insists on *some* BTF object.
                btf_handle, own_btf = _placeholder_btf(), True
            else:
                # BTF from the numpy dtypes: the map reopens typed (btf/from_dtype.py).
                from .btf.from_dtype import load_dtype_btf
                btf_handle, btf_ids = load_dtype_btf(mtype, spec.key_dtype, spec.value_dtype,
                                                     spec.name)
                own_btf = btf_handle is not None
            kw = {}
            if spec.numa_node is not None:
                kw["numa_node"] = spec.numa_node
            fd = _core.map_create(
                int(mtype), ks, vs, max_entries, flags, spec.name or None,
                inner_map_fd=inner_fd.fd if inner_fd is not None else 0,
                map_ifindex=spec.ifindex, map_extra=spec.map_extra,
                btf_fd=btf_handle.fd if btf_handle is not None else 0,
                btf_key_type_id=btf_ids[0], btf_value_type_id=btf_ids[1],
                btf_vmlinux_value_type_id=spec.btf_vmlinux_value_type_id, **kw)
        except BPFError as e:
            missing = features.unsupported_map_type(
                mtype, e, f"map {spec.name!r}" if spec.name else None)
            if missing is not None:
                raise missing from e
            if e.errno == errno.EINVAL and not e.hint:
                e.hint = _create_hint(spec)
            raise
        finally:
            if inner_fd is not None:
                inner_fd.close()
            if own_btf and btf_handle is not None:
                btf_handle.close()  # the map holds its own reference to the BTF
        # m.name is the kernel's name (what bpftool and info() show): at most
        # 15 characters of [A-Za-z0-9_.], anything else replaced by "_".
        m = cls._wrap(fd, int(mtype), ks, vs, max_entries, flags,
                      _core.kernel_name(spec.name), spec.key_dtype, spec.value_dtype, spec)
        try:
            if spec.contents:
                m._write_contents(spec.contents)
            if spec.freeze:
                m.freeze()
            if pin:
                m.pin(pin)
        except BaseException:
            m.close()
            raise
        return m

    def _write_contents(self, contents: Any) -> None:
        """Write a spec's initial entries (objects in fd maps become fds)."""
        items = contents.items() if isinstance(contents, dict) else contents
        for k, v in items:
            if self.map_type in FD_VALUE_MAPS and not isinstance(v, (int, np.integer)):
                if isinstance(v, str):
                    raise ValueError(f"map {self.name!r}: initial value {v!r} names a program "
                                     f"or map; load it through a collection to resolve names")
                v = getattr(v, "fd", v)
            if isinstance(v, (bytes, bytearray, memoryview)) and self.value_dtype is not None \
                    and len(v) == self.value_size:
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
        mt = _map_type(info["type"])
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

    @property
    def type(self) -> MapType | int:
        """The map type."""
        return _map_type(self.map_type)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self.fd}"
        t = self.type
        tn = t.name if isinstance(t, MapType) else str(t)
        return (f"<Map {self.name!r} {tn} key={self.key_dtype} value={self.value_dtype} "
                f"max_entries={self.max_entries} {state}>")

    def info(self) -> MapInfo:
        """The kernel's view of the map (id, type, sizes, flags, name)."""
        i = _core.map_info(self.fd)
        return MapInfo(id=i["id"], type=_map_type(i["type"]), key_size=i["key_size"],
                       value_size=i["value_size"], max_entries=i["max_entries"],
                       flags=i["flags"], name=i["name"], btf_id=i["btf_id"],
                       btf_key_type_id=i["btf_key_type_id"],
                       btf_value_type_id=i["btf_value_type_id"],
                       map_extra=i["map_extra"], ifindex=i["ifindex"])

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

    # -- keys, values, items -----------------------------------------------------

    def _alloc_keys(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        raw = np.empty(max(n, 1) * self.key_size, dtype=np.uint8)
        return raw, raw.view(self.key_dtype)[:n]

    def _alloc_values(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """A raw buffer the kernel fills and the numpy view of it."""
        stride = self.value_stride
        raw = np.empty(max(n, 1) * stride, dtype=np.uint8)
        if not self.percpu:
            return raw, raw.view(self.value_dtype)[:n]
        ncpus = _core.possible_cpus()
        cpu_stride = stride // ncpus
        view = np.ndarray((n, ncpus), dtype=self.value_dtype, buffer=raw,
                          strides=(stride, cpu_stride))
        return raw, view

    def _key_snapshot(self) -> np.ndarray:
        """Every key, read with GET_NEXT_KEY into one array."""
        if self.key_size == 0:
            raise TypeError(f"map {self.name!r} ({_type_name(self.type)}) has no keys")
        cap = max(self.max_entries, 1)
        raw, keys = self._alloc_keys(cap)
        n = self._scan_keys(raw)
        return keys[:n]

    def _chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """(keys, values) arrays, chunk by chunk, for keys()/values()/items().

        Maps whose kernel side has BPF_MAP_LOOKUP_BATCH are read in batches
        (growing from 256 to 64k entries), fresh arrays per chunk, so what
        was yielded is never overwritten. The kernel walks hash maps bucket
        by bucket and arrays index by index, with a resume token: a key
        deleted meanwhile is simply not returned, one added may or may not
        be, and no key comes twice (a key lives in one bucket). Other maps
        (and kernels without batch lookups) are walked with GET_NEXT_KEY
        into a key snapshot, then looked up key by key (values None).
        """
        if self.key_size == 0:
            raise TypeError(f"map {self.name!r} ({self.type.name}) has no keys")  # type: ignore[attr-defined]
        if self.map_type in _BATCH_ITER_MAPS and not getattr(self, "_no_batch", False):
            step = min(max(self.max_entries, 1), 256)
            token_in = np.zeros(max(self.key_size, 8), dtype=np.uint8)
            token_out = np.zeros_like(token_in)
            first = True
            # Our own fd for the whole walk: the generator may be resumed
            # after another thread closed the map.
            with self._own_fd() as own:
                while True:
                    kraw, kview = self._alloc_keys(step)
                    vraw, vview = self._alloc_values(step)
                    try:
                        got, done = _core.map_lookup_batch(own.fd, None if first else token_in,
                                                           token_out, kraw, vraw, step)
                    except BPFError as e:
                        if first and e.errno in (errno.EINVAL, 524, errno.EOPNOTSUPP):
                            self._no_batch = True
                            break
                        if e.errno == errno.ENOSPC:
                            # A hash bucket holds more entries than the chunk.
                            step *= 2
                            continue
                        raise
                    if got:
                        yield kview[:got], vview[:got]
                    if done:
                        return
                    token_in[:] = token_out
                    first = False
                    step = min(step * 2, _ITER_CHUNK_MAX)
        yield self._key_snapshot(), None

    def _py_items(self, arr: np.ndarray) -> list[Any]:
        """Elements of a chunk as the element path returns them: Python
        numbers for scalar dtypes, records or per-CPU rows otherwise."""
        dt = arr.dtype
        if arr.ndim == 1 and dt.fields is None and dt.subdtype is None and dt.kind in "iufb":
            return arr.tolist()  # type: ignore[no-any-return]
        return list(arr)

    def keys(self) -> Iterator[Any]:
        """Iterate over the keys (Python ints for integer keys).

        Read in chunks (see :meth:`items`); deleting or adding entries while
        iterating is safe: nothing raises, no key comes twice.
        """
        for ks, _ in self._chunks():
            yield from self._py_items(ks)

    __iter__ = keys

    def items(self) -> Iterator[tuple[Any, Any]]:
        """Iterate over (key, value) pairs.

        Hash and array maps are read with BPF_MAP_LOOKUP_BATCH in chunks,
        several times faster than a GET_NEXT_KEY + lookup walk; others are
        walked key by key. Values come as from ``m[k]``. Entries deleted
        while iterating are skipped, added ones may or may not appear, no
        key comes twice, and nothing raises for either.
        """
        missing = object()
        for ks, vs in self._chunks():
            if vs is not None:
                yield from zip(self._py_items(ks), self._py_items(vs))
                continue
            for k in self._py_items(ks):
                v = self.lookup(k, missing)
                if v is not missing:
                    yield k, v

    def values(self) -> Iterator[Any]:
        """Iterate over values (see :meth:`items`)."""
        for _, v in self.items():
            yield v

    def __len__(self) -> int:
        """The number of entries (for hash-like maps this reads the map, in
        batches where the kernel has them)."""
        if self.map_type in ARRAY_MAPS:
            return self.max_entries
        return sum(len(ks) for ks, _ in self._chunks())

    def __bool__(self) -> bool:
        """The dict protocol: true when the map holds an entry (array maps:
        when they have a slot), without counting them all. Raises
        ClosedError on a closed map and TypeError on a keyless one (queue,
        stack, bloom filter), as ``len()`` does."""
        if self.closed:
            raise ClosedError(f"map {self.name!r} is closed")
        if self.map_type in ARRAY_MAPS:
            return self.max_entries > 0
        if self.key_size == 0:
            raise TypeError(f"map {self.name!r} ({self.type.name}) has no keys")  # type: ignore[attr-defined]
        return _core.map_get_next_key(self.fd, None, np.empty(self.key_size, np.uint8))

    # -- batches -------------------------------------------------------------------

    def lookup_batch(self, keys: np.ndarray | None = None, values: np.ndarray | None = None,
                     *, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Read the whole map into numpy arrays with BPF_MAP_LOOKUP_BATCH.

        Returns ``(keys, values)``; values of per-CPU maps have shape
        (n, possible CPUs). Pass preallocated *keys* and *values* arrays
        (C-contiguous, the map's dtypes, at least ``max_entries`` long) to
        have the kernel fill them; the results are then views of them.
        Maps without batch support are walked key by key instead, into the
        same arrays.
        """
        return self._read_batch(keys, values, delete=False, chunk=chunk)

    def lookup_and_delete_batch(self, keys: np.ndarray | None = None,
                                values: np.ndarray | None = None,
                                *, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Read and remove every entry (BPF_MAP_LOOKUP_AND_DELETE_BATCH).

        Arrays (ARRAY, PERCPU_ARRAY) cannot delete and raise NotSupportedError.
        """
        return self._read_batch(keys, values, delete=True, chunk=chunk)

    def _out_buffers(self, keys: np.ndarray | None, values: np.ndarray | None,
                     cap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """(raw key bytes, key view, raw value bytes, value view, capacity)."""
        if keys is None:
            kraw, kview = self._alloc_keys(cap)
        else:
            kraw, kview = self._check_out(keys, self.key_dtype, "keys"), keys
        if values is None:
            vraw, vview = self._alloc_values(cap)
        else:
            if self.percpu:
                ncpus = _core.possible_cpus()
                if values.ndim != 2 or values.shape[1] != ncpus:
                    raise ValueError(f"per-CPU values need shape (n, {ncpus})")
                if values.dtype.itemsize % 8:
                    raise ValueError("preallocated per-CPU values need an itemsize that is a "
                                     "multiple of 8 (the kernel's stride); omit values= instead")
            vraw, vview = self._check_out(values, self.value_dtype, "values"), values
        n = min(kraw.nbytes // self.key_size, vraw.nbytes // self.value_stride)
        return kraw, kview, vraw, vview, n

    @staticmethod
    def _check_out(arr: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
        """The raw bytes of a caller's output array, after checking it."""
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"{what} must be a numpy array")
        if not arr.flags.c_contiguous or not arr.flags.writeable:
            raise ValueError(f"{what} must be a writable C-contiguous array")
        if arr.dtype.itemsize != dtype.itemsize:
            raise ValueError(f"{what} has dtype {arr.dtype}; the map wants {dtype}")
        return arr.reshape(-1).view(np.uint8)

    def _read_batch(self, keys: np.ndarray | None, values: np.ndarray | None, *, delete: bool,
                    chunk: int | None) -> tuple[np.ndarray, np.ndarray]:
        if self.key_size == 0:
            raise TypeError(f"map {self.name!r} has no keys")
        kraw, kview, vraw, vview, cap = self._out_buffers(keys, values, max(self.max_entries, 1))
        if cap < self.max_entries:
            # A hash map may hold max_entries entries; stopping short would
            # return (or delete) part of the map without a word.
            raise ValueError(f"keys/values hold {cap} entries; map {self.name!r} can hold "
                             f"{self.max_entries}: pass arrays of at least that length")
        token_in = np.zeros(max(self.key_size, 8), dtype=np.uint8)
        token_out = np.zeros_like(token_in)
        step = cap if chunk is None else max(1, int(chunk))
        total = 0
        first = True
        ks, vs = self.key_size, self.value_stride
        # Our own fd for the whole walk: between chunks the GIL is free, and
        # a close() from another thread must not let the number be reused.
        with _core.dup_fd(self.fd) as own:
            fd = own.fd
            while total < cap:
                want = min(step, cap - total)
                try:
                    got, done = _core.map_lookup_batch(
                        fd, None if first else token_in, token_out,
                        kraw[total * ks:(total + want) * ks], vraw[total * vs:(total + want) * vs],
                        want, delete=delete)
                except BPFError as e:
                    if first and e.errno in (errno.EINVAL, 524, errno.EOPNOTSUPP) and not delete:
                        return self._read_by_iteration(kraw, kview, vraw, vview, cap)
                    if e.errno == errno.ENOSPC and want < cap - total:
                        # The next hash bucket holds more entries than this
                        # chunk has room for: ask again with more room.
                        step = min(cap - total, max(2 * want, 16))
                        continue
                    if e.errno in (524, errno.EOPNOTSUPP) and delete:
                        raise not_supported_error(e.errno, "map lookup_and_delete_batch",
                                                  f"map {self.name!r}",
                                                  f"{self.type.name} maps have no batch "  # type: ignore[attr-defined]
                                                  f"lookup-and-delete") from None
                    raise
                total += got
                first = False
                if done:
                    break
                token_in[:] = token_out
        return kview[:total], vview[:total]

    def _read_by_iteration(self, kraw: np.ndarray, kview: np.ndarray, vraw: np.ndarray,
                           vview: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
        n = self._scan_keys(kraw[:cap * self.key_size])
        found = self._lookup_many(kraw, vraw, n).astype(bool)
        if found.all():
            return kview[:n], vview[:n]
        # Entries deleted between the key walk and the lookups are dropped.
        return kview[:n][found], vview[:n][found]

    def _pack_keys(self, keys: Any) -> np.ndarray:
        """*keys* as a contiguous 1-d array of the key dtype, under the one
        conversion rule of the element path (see _core.cast_exact)."""
        kd = self.key_dtype
        if kd.fields is not None and not isinstance(keys, np.ndarray):
            # A list of tuples: each checked as m[k] would check it.
            packed = b"".join(self._pack_key(k) for k in keys)
            return np.frombuffer(packed, dtype=kd).copy()
        arr = _core.cast_exact(keys, kd, "keys")
        return np.ascontiguousarray(arr).reshape(-1)

    def _pack_values(self, values: Any, n: int) -> np.ndarray:
        vd = self.value_dtype
        if vd.fields is not None and not isinstance(values, np.ndarray) and not self.percpu:
            packed = b"".join(self._pack_value(v) for v in values)
            arr = np.frombuffer(packed, dtype=vd).copy()
        else:
            arr = _core.cast_exact(values, vd, "values")
        if not self.percpu:
            arr = np.ascontiguousarray(arr).reshape(-1)
            if arr.shape[0] != n:
                raise ValueError(f"{n} keys but {arr.shape[0]} values")
            return arr
        ncpus = _core.possible_cpus()
        if arr.ndim == 1:  # one value per key, for every CPU
            arr = np.broadcast_to(arr[:, None], (arr.shape[0], ncpus))
        if arr.shape != (n, ncpus):
            raise ValueError(f"per-CPU values need shape ({n}, {ncpus}) or ({n},), got {arr.shape}")
        stride = self.value_stride
        if vd.itemsize % 8 == 0 and arr.flags.c_contiguous:
            return arr
        # Copy, because the kernel wants each CPU's value padded to 8 bytes.
        raw = np.zeros(n * stride, dtype=np.uint8)
        view = np.ndarray((n, ncpus), dtype=vd, buffer=raw, strides=(stride, stride // ncpus))
        view[...] = arr
        return raw

    def update_batch(self, keys: Any, values: Any, flags: int = 0) -> int:
        """Write many entries with one BPF_MAP_UPDATE_BATCH.

        *keys* and *values* are arrays (or anything numpy converts) of the
        map's dtypes, converted exactly (no wrapping, no dropped fractions);
        per-CPU values have shape (n, possible CPUs) or (n,) for the same
        value on every CPU. Returns the count written.

        Maps without batch support, and *flags* NOEXIST/EXIST (which the
        kernel's batch command refuses), are updated entry by entry, in
        order. When an entry fails, the BPFError's ``count`` is the number
        of entries written before it, and the map holds exactly those.
        """
        k = self._pack_keys(keys)
        n = k.shape[0]
        v = self._pack_values(values, n)
        if n == 0:
            return 0
        flags = int(flags)
        with self._own_fd() as own:   # the GIL is free during the call: see _own_fd
            if flags & (UpdateFlags.NOEXIST | UpdateFlags.EXIST):
                return self._update_each(own.fd, k, v, n, flags)
            try:
                return _core.map_update_batch(own.fd, k, v, n, flags)
            except BPFError as e:
                if e.count >= n:
                    # Refused before the first entry (the kernel leaves the
                    # count it was given): nothing was written.
                    e.count = 0
                if e.errno in (errno.EINVAL, 524, errno.EOPNOTSUPP) and e.count == 0 \
                        and self.map_type not in FD_VALUE_MAPS and self.key_size:
                    return self._update_each(own.fd, k, v, n, flags)
                if e.errno == errno.E2BIG and not e.hint:
                    e.hint = f"map full (max_entries={self.max_entries})"
                raise

    def _update_each(self, fd: int, k: np.ndarray, v: np.ndarray, n: int, flags: int) -> int:
        kb = k.view(np.uint8).reshape(n, self.key_size)
        vb = np.ascontiguousarray(v).view(np.uint8).reshape(n, -1)
        for i in range(n):
            try:
                _core.map_update_elem(fd, kb[i], vb[i], flags)
            except BPFError as e:
                full = (f"map full (max_entries={self.max_entries}); "
                        if e.errno == errno.E2BIG else "")
                err = bpf_error(e.errno, "map update_batch", f"map {self.name!r}",
                                f"{full}entry {i} failed; the {i} before it were written")
                err.count = i
                raise err from None
        return n

    def delete_batch(self, keys: Any) -> int:
        """Delete many keys with one BPF_MAP_DELETE_BATCH. Returns the count.

        A missing key raises :class:`BPFError` (ENOENT, a FileNotFoundError);
        the entries before it are deleted (the error's ``count`` says how
        many). Maps without batch support are deleted from key by key, with
        the same outcome. Arrays cannot delete: NotSupportedError, count 0.
        """
        k = self._pack_keys(keys)
        n: int = k.shape[0]
        if n == 0:
            return 0
        with self._own_fd() as own:   # the GIL is free during the call: see _own_fd
            try:
                return _core.map_delete_batch(own.fd, k, n)
            except BPFError as e:
                if e.count >= n:
                    e.count = 0       # refused before the first key
                if self.map_type in ARRAY_MAPS and e.count == 0:
                    err: BPFError = not_supported_error(
                        e.errno, "map delete_batch", f"map {self.name!r}",
                        f"{self.type.name} entries cannot be deleted")  # type: ignore[attr-defined]
                    err.count = 0
                    raise err from None
                if e.errno in (errno.EINVAL, 524, errno.EOPNOTSUPP) and e.count == 0:
                    kb = k.view(np.uint8).reshape(n, self.key_size)
                    for i in range(n):
                        if not _core.map_delete_elem(own.fd, kb[i]):
                            err = bpf_error(errno.ENOENT, "map delete_batch", f"map {self.name!r}",
                                            f"key {i} is missing; the {i} before it were deleted")
                            err.count = i
                            raise err
                    return n
                raise

    def clear(self) -> int:
        """Delete every entry (hash-like maps). Returns the count deleted."""
        keys = self._key_snapshot()
        if len(keys) == 0:
            return 0
        return self.delete_batch(keys)

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


def _type_name(t: MapType | int) -> str:
    return t.name if isinstance(t, MapType) else str(t)


def _create_hint(spec: MapSpec) -> str | None:
    if spec.max_entries == 0 and spec.type not in _ZERO_ENTRY_MAPS:
        return "max_entries must be > 0 for this map type"
    if spec.type == MapType.LPM_TRIE:
        return "LPM trie keys are a u32 prefix length followed by the data"
    if spec.type in (MapType.RINGBUF, MapType.USER_RINGBUF):
        return "ring buffer max_entries must be a power of 2 multiple of the page size, key and value 0"
    if spec.type in KEYLESS_MAPS:
        return f"{spec.type.name} maps have key size 0"
    if spec.type in (MapType.PERF_EVENT_ARRAY,):
        return "perf event arrays have 4-byte keys and values"
    return None


#: Map types created with max_entries 0 (local storage; cgroup storage ignores it).
_ZERO_ENTRY_MAPS = frozenset({MapType.SK_STORAGE, MapType.TASK_STORAGE, MapType.INODE_STORAGE,
                              MapType.CGRP_STORAGE, MapType.CGROUP_STORAGE,
                              MapType.PERCPU_CGROUP_STORAGE})


def _placeholder_btf() -> _core.FD:
    """The smallest valid BTF object: one ``int``."""
    import struct
    types = struct.pack("<IIII", 1, 1 << 24, 4, (1 << 24) | 32)  # INT "int", signed, 32 bits
    strings = b"\0int\0"
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return _core.btf_load(hdr + types + strings)


def spec_pin_path(spec: MapSpec) -> str | None:
    """Where *spec* pins its map: pin_path, or pin_dir/name when pinned by name."""
    if spec.pin_path:
        return os.fspath(spec.pin_path)
    if spec.pinning and spec.pin_dir:
        if not spec.name:
            raise ValueError("a map pinned by name needs a name")
        return os.path.join(os.fspath(spec.pin_dir), spec.name)
    return None


def _map_btf(spec: MapSpec) -> tuple[Any, tuple[int, int], bool]:
    """(BTF handle, (key id, value id), whether the caller owns the handle)."""
    from . import btf
    key_t = spec.key if is_btf_type(spec.key) else None
    value_t = spec.value if is_btf_type(spec.value) else None
    shared = spec.btf
    if shared is not None and not shared.closed:
        bspec = shared.spec()
        try:
            return shared, (bspec.type_id(key_t) if key_t is not None else 0,
                            bspec.type_id(value_t) if value_t is not None else 0), False
        except btf.BTFError:
            pass  # types from elsewhere: build their own object below
    bspec, kid, vid = btf.build_map_btf(key_t, value_t)
    handle = btf.Handle.load(bspec)
    return handle, (kid if key_t is not None else 0, vid if value_t is not None else 0), True


def map_ids() -> list[int]:
    """Ids of every map in the kernel (not only this process's), ascending."""
    return _core.map_ids()
