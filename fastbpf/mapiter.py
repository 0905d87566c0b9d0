"""The whole-map reads of a :class:`fastbpf.maps.Map`: ``keys()``,
``values()``, ``items()``, ``len()`` and ``bool()``, read in batches where
the kernel has BPF_MAP_LOOKUP_BATCH and key by key elsewhere, and the
buffers the kernel fills for them (also used by the batch operations in
:mod:`fastbpf.mapbatch`).
"""

from __future__ import annotations

import errno
from typing import Any, Iterator

import numpy as np

from . import _core
from .enums import MapType
from .errors import BPFError, ClosedError
from .mapspec import ARRAY_MAPS

__all__ = ["IterableMap", "map_type_of"]

#: Map types whose kernel side has BPF_MAP_LOOKUP_BATCH (items() reads them in chunks).
_BATCH_ITER_MAPS = frozenset({MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH,
                              MapType.LRU_PERCPU_HASH, MapType.ARRAY, MapType.PERCPU_ARRAY})
#: The largest chunk items() asks the kernel for.
_ITER_CHUNK_MAX = 1 << 16


def map_type_of(t: int) -> MapType | int:
    """*t* as a :class:`MapType`, or the bare number for a type this
    version does not know."""
    try:
        return MapType(t)
    except ValueError:
        return t


class IterableMap(_core.MapBase):
    """:class:`fastbpf._core.MapBase` (the per-element path, in C) with the
    dict-style reads over the whole map. Not instantiated by itself: see
    :class:`fastbpf.maps.Map`."""

    @property
    def type(self) -> MapType | int:
        """The map type."""
        return map_type_of(self.map_type)

    def _type_name(self) -> str:
        t = self.type
        return t.name if isinstance(t, MapType) else str(t)

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
            raise TypeError(f"map {self.name!r} ({self._type_name()}) has no keys")
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
            raise TypeError(f"map {self.name!r} ({self._type_name()}) has no keys")
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
            items: list[Any] = arr.tolist()
            return items
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
            raise TypeError(f"map {self.name!r} ({self._type_name()}) has no keys")
        return _core.map_get_next_key(self.fd, None, np.empty(self.key_size, np.uint8))
