"""Batch operations of a :class:`fastbpf.maps.Map`: BPF_MAP_LOOKUP_BATCH,
LOOKUP_AND_DELETE_BATCH, UPDATE_BATCH and DELETE_BATCH into and out of
numpy arrays, with the entry-by-entry fallbacks for maps and kernels
without them, and ``clear()``.
"""

from __future__ import annotations

import errno
from typing import Any

import numpy as np

from . import _core
from .enums import UpdateFlags
from .errors import BPFError, bpf_error, not_supported_error
from .mapiter import IterableMap
from .mapspec import ARRAY_MAPS, FD_VALUE_MAPS

__all__ = ["BatchMap"]


class BatchMap(IterableMap):
    """:class:`fastbpf.mapiter.IterableMap` with the batch operations. Not
    instantiated by itself: see :class:`fastbpf.maps.Map`."""

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
                                                  f"{getattr(self.type, 'name', self.type)} maps have no batch "
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
        n = k.shape[0]
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
                        f"{getattr(self.type, 'name', self.type)} entries cannot be deleted")
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
                    return int(n)
                raise

    def clear(self) -> int:
        """Delete every entry (hash-like maps). Returns the count deleted."""
        keys = self._key_snapshot()
        if len(keys) == 0:
            return 0
        return self.delete_batch(keys)
