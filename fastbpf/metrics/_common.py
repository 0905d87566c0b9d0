"""Pieces shared by the collectors, dataframes and histograms: a map's dtypes
(from its BTF when the Map object only knows raw bytes) and one batch read
into reusable buffers."""

from __future__ import annotations

import threading
import numpy as np

from .. import _core
from ..errors import BPFError
from ..maps import Map

__all__ = ["map_dtypes", "BatchReader", "field_column", "value_numbers"]

_btf_cache: dict[tuple[int, int, int], tuple[np.dtype | None, np.dtype | None]] = {}
_btf_lock = threading.Lock()


def _is_raw(dt: np.dtype | None) -> bool:
    return dt is None or (dt.kind == "V" and dt.names is None and dt.shape == ())


def map_dtypes(m: Map) -> tuple[np.dtype | None, np.dtype | None]:
    """The key and value dtypes of *m*: its own, or its BTF's where it only has raw bytes.

    A map opened by pin or id knows only byte sizes; when the kernel holds
    BTF for its key and value (every map from a clang-built object), the C
    types give structured dtypes with the field names.
    """
    kd, vd = m.key_dtype, m.value_dtype
    if not (_is_raw(kd) or _is_raw(vd)):
        return kd, vd
    try:
        info = m.info()
    except BPFError:
        return kd, vd
    if not info.btf_id:
        return kd, vd
    ck = (info.btf_id, info.btf_key_type_id, info.btf_value_type_id)
    with _btf_lock:
        got = _btf_cache.get(ck)
        if got is None:
            from .. import btf
            with btf.Handle.from_id(info.btf_id) as h:
                spec = h.spec()
                bk = (btf.to_dtype(spec.type_by_id(info.btf_key_type_id), bitfields="raw",
                                   unsupported="raw") if info.btf_key_type_id else None)
                bv = (btf.to_dtype(spec.type_by_id(info.btf_value_type_id), bitfields="raw",
                                   unsupported="raw") if info.btf_value_type_id else None)
            got = _btf_cache[ck] = (bk, bv)
    bk, bv = got
    if _is_raw(kd) and bk is not None and bk.itemsize == m.key_size:
        kd = bk
    if _is_raw(vd) and bv is not None and bv.itemsize == m.value_size:
        vd = bv
    return kd, vd


class BatchReader:
    """Reads a whole map with one BPF_MAP_LOOKUP_BATCH walk into buffers it reuses.

    The buffers are kept between reads (a 1M-entry map would otherwise
    allocate and fault in tens of MB per scrape); results are views of them,
    valid until the next :meth:`read`. Not thread-safe: the caller locks.
    """

    def __init__(self, m: Map, key_dtype: np.dtype | None = None,
                 value_dtype: np.dtype | None = None) -> None:
        self.map = m
        kd, vd = map_dtypes(m)
        self.key_dtype = key_dtype or kd
        self.value_dtype = value_dtype or vd
        self._kbuf: np.ndarray | None = None
        self._vbuf: np.ndarray | None = None

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, values)`` typed with this reader's dtypes; per-CPU values are (n, CPUs)."""
        m = self.map
        if self._kbuf is None:
            cap = max(m.max_entries, 1)
            self._kbuf = np.empty(cap, m.key_dtype)
            if m.percpu:
                if m.value_dtype.itemsize % 8 == 0:
                    self._vbuf = np.empty((cap, _core.possible_cpus()), m.value_dtype)
            else:
                self._vbuf = np.empty(cap, m.value_dtype)
        keys, values = m.lookup_batch(self._kbuf, self._vbuf)
        if self.key_dtype is not None and keys.dtype != self.key_dtype:
            keys = keys.view(self.key_dtype)
        if self.value_dtype is not None and values.dtype != self.value_dtype:
            values = values.view(self.value_dtype)
        return keys, values


def field_column(arr: np.ndarray, path: str) -> np.ndarray:
    """``arr[a][b]`` for the dotted *path* ``"a.b"`` (KeyError names what exists)."""
    col = arr
    for part in path.split("."):
        names = col.dtype.names
        if names is None or part not in names:
            raise KeyError(f"no field {part!r} in {col.dtype} (fields: {', '.join(names or ())})")
        col = col[part]
    return col


def value_numbers(values: np.ndarray, value_field: str | None, percpu: bool) -> np.ndarray:
    """Map values as one float64 per entry (per-CPU values summed over CPUs)."""
    v = field_column(values, value_field) if value_field else values
    if v.dtype.kind == "V" and v.dtype.names is None and v.dtype.itemsize in (1, 2, 4, 8):
        v = v.view(f"=u{v.dtype.itemsize}")
    if v.dtype.kind not in "iufb" or v.dtype.shape != ():
        raise TypeError(f"map values of dtype {v.dtype} are not numbers; name one with "
                        f"value_field=")
    if percpu and v.ndim == 2:
        # Integer sums stay exact in 64 bits; floats become float64 once, at the end.
        acc = np.float64 if v.dtype.kind == "f" else (np.int64 if v.dtype.kind == "i" else np.uint64)
        v = v.sum(axis=1, dtype=acc)
    return v.astype(np.float64, copy=False)

