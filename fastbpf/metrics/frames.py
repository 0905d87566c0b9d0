"""A map's entries as columns: pandas DataFrames and Arrow tables.

One batch read gives a key array and a value array; each leaf field of
their (BTF-derived) structured dtypes becomes one column, named after the
field, nested structs flattened with dots (``addr.port``). A scalar key or
value is the column ``key`` / ``value``; when a key and a value field share
a name, both get a ``key.`` / ``value.`` prefix. Per-CPU values are summed
(``per_cpu="sum"``) or spread over one column per CPU
(``per_cpu="columns"``: ``packets.cpu0``, ``packets.cpu1``, ...).

No per-row Python work: columns are numpy views of the batch arrays (Arrow
takes contiguous ones without a copy); big-endian fields are converted to
native order, since pandas refuses them. The one exception is a key or
value of raw bytes (a map without BTF or dtype) in pandas: one bytes object
per row, as there are no fields to split it into.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

if TYPE_CHECKING:  # maps imports this module lazily for Map.to_dataframe
    from ..maps import Map
from ._common import BatchReader

__all__ = ["map_columns", "to_dataframe", "to_arrow"]


def _leaves(dt: np.dtype, prefix: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(column name, field path) for every leaf field of *dt*."""
    if dt.names is None:
        yield prefix, ()
        return
    for name in dt.names:
        sub = dt.fields[name][0]  # type: ignore[index]  # dt.names is not None
        full = f"{prefix}.{name}" if prefix else name
        if sub.names is not None:
            for col, path in _leaves(sub, full):
                yield col, (name,) + path
        else:
            yield full, (name,)


def _native(col: np.ndarray) -> np.ndarray:
    if col.dtype.byteorder == ">" or (col.dtype.byteorder == "<" and not np.little_endian):
        return col.astype(col.dtype.newbyteorder("="))
    return col


def _get(arr: np.ndarray, path: tuple[str, ...]) -> np.ndarray:
    for p in path:
        arr = arr[p]
    return arr


def map_columns(m: Map, per_cpu: str = "sum") -> dict[str, np.ndarray]:
    """Read *m* once and return ``{column name: numpy array}`` (see the module doc)."""
    if per_cpu not in ("sum", "columns"):
        raise ValueError("per_cpu must be 'sum' or 'columns'")
    keys, values = BatchReader(m).read()
    kleaves = list(_leaves(keys.dtype, "")) if keys.dtype.names else [("key", ())]
    vleaves = list(_leaves(values.dtype, "")) if values.dtype.names else [("value", ())]
    clash = {c for c, _ in kleaves} & {c for c, _ in vleaves}
    out: dict[str, np.ndarray] = {}
    for name, path in kleaves:
        out[f"key.{name}" if name in clash else name] = _native(_get(keys, path))
    for name, path in vleaves:
        col = _native(_get(values, path))
        name = f"value.{name}" if name in clash else name
        if m.percpu and col.ndim >= 2:
            if per_cpu == "columns":
                for cpu in range(col.shape[1]):
                    out[f"{name}.cpu{cpu}"] = col[:, cpu]
                continue
            if col.dtype.kind in "iub":
                col = col.sum(axis=1, dtype=np.int64 if col.dtype.kind == "i" else np.uint64)
            elif col.dtype.kind == "f":
                col = col.sum(axis=1)
            else:
                col = col[:, 0]  # bytes cannot be summed: CPU 0's copy
        out[name] = col
    return out


def _pandas_cols(name: str, col: np.ndarray) -> Iterator[tuple[str, Any]]:
    if col.dtype.kind == "V":
        # Raw bytes (a map without BTF): no fields to split on, so one bytes
        # object per row; numpy's S would drop trailing NULs.
        n = col.shape[0]
        flat = np.ascontiguousarray(col).view(np.uint8).reshape(n, -1)
        yield name, np.array([r.tobytes() for r in flat], dtype=object)
    elif col.ndim > 1:
        # Sub-arrays (u8 addr[4]) become one column per element: addr[0], addr[1], ...
        flat = col.reshape(col.shape[0], -1)
        for i in range(flat.shape[1]):
            yield f"{name}[{i}]", flat[:, i]
    else:
        yield name, col


def to_dataframe(m: Map, per_cpu: str = "sum") -> Any:
    """*m*'s entries as a pandas DataFrame, one column per key and value field.

    Numeric sub-arrays are spread over one column per element
    (``addr[0]``..``addr[3]``); char arrays are bytes columns.
    """
    import pandas as pd
    cols = map_columns(m, per_cpu)
    return pd.DataFrame({k: c for name, v in cols.items() for k, c in _pandas_cols(name, v)},
                        copy=False)


def _arrow_col(col: np.ndarray) -> Any:
    import pyarrow as pa
    if col.dtype.kind == "V" or (col.ndim > 1):
        n = col.shape[0]
        flat = np.ascontiguousarray(col).reshape(n, -1)
        if col.dtype.kind == "V":
            flat = flat.view(np.uint8).reshape(n, -1)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])
    if col.dtype.kind == "S":
        return pa.array(col, type=pa.binary(col.dtype.itemsize))
    # pa.array() wraps a contiguous numeric buffer without copying.
    return pa.array(col if col.flags.c_contiguous else np.ascontiguousarray(col))


def to_arrow(m: Map, per_cpu: str = "sum") -> Any:
    """*m*'s entries as a pyarrow Table (zero-copy where a column is contiguous)."""
    import pyarrow as pa
    cols = map_columns(m, per_cpu)
    return pa.table({k: _arrow_col(v) for k, v in cols.items()})
