"""MapCollector: one BPF map as one Prometheus metric family.

One scrape is one batch read of the map, then numpy: each label's key column
is factorised once, the distinct values decoded once, and entries whose
decoded labels are equal summed with one ``bincount`` (the vectorised
group-by ebpf_exporter users expect when a key holds more than its labels
show). Histograms take the last label as the bucket index, as ebpf_exporter
does, and become cumulative buckets with ``_sum`` and ``_count``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..maps import Map
from ._common import BatchReader, field_column, value_numbers
from .decoders import ConfigError, LabelSpec, check_fit, decode_unique, factorize

__all__ = ["MapCollector", "Grouped", "group_labels", "histogram_le"]

log = logging.getLogger("fastbpf.metrics")

KINDS = ("counter", "gauge", "histogram")
BUCKET_TYPES = ("exp2", "linear", "fixed")
_MAX_BUCKETS = 1 << 16


# ---------------------------------------------------------------------------
# key columns and the group-by


class _Column:
    """How to cut one label's column out of a batch of keys."""

    def __init__(self, label: LabelSpec, key_dtype: np.dtype, offset: int) -> None:
        self.label = label
        self.field = label.field
        if self.field is not None:
            try:
                probe = field_column(np.zeros(0, key_dtype), str(self.field))
            except KeyError as e:
                raise ConfigError(f"label {label.name!r}: {e.args[0]}", label.line) from None
            self.size = probe.dtype.itemsize * int(np.prod(probe.shape[1:], dtype=np.int64))
            sub = probe.dtype if probe.ndim == 1 else np.dtype((probe.dtype, probe.shape[1:]))
            self.dtype = sub if sub.shape == () else np.dtype(f"V{self.size}")
            self.offset: Any = None  # bytes of the key: an int when there is no field
        else:
            self.size = int(label.size)  # type: ignore[arg-type]  # config: size without field
            self.offset = offset
            if offset + self.size > key_dtype.itemsize:
                raise ConfigError(f"label {label.name!r}: bytes {offset}..{offset + self.size} "
                                  f"run past the {key_dtype.itemsize}-byte key", label.line)
            first = label.decoders[0].name if label.decoders else "uint"
            as_int = self.size in (1, 2, 4, 8) and first not in ("string", "inet_ip")
            self.dtype = np.dtype(f"=u{self.size}" if as_int else f"V{self.size}")
        check_fit(label, self.dtype, f"key field {self.field!r}" if self.field
                  else f"key bytes {offset}..{offset + self.size}")

    def cut(self, keys: np.ndarray) -> np.ndarray:
        """This label's column of *keys* (1-d; byte runs as ``V<size>``)."""
        n = keys.shape[0]
        if self.field is not None:
            col = field_column(keys, str(self.field))
            if col.ndim == 1:
                return col
            return np.ascontiguousarray(col).view(self.dtype).reshape(n)
        raw = keys.view(np.uint8).reshape(n, keys.dtype.itemsize)
        return np.ascontiguousarray(raw[:, self.offset:self.offset + self.size]) \
            .view(self.dtype).reshape(n)


def _columns(labels: Sequence[LabelSpec], key_dtype: np.dtype | None) -> list[_Column]:
    if not labels:
        return []
    if key_dtype is None:
        raise ConfigError("labels need a map with keys", labels[0].line)
    cols, off = [], 0
    for lab in labels:
        c = _Column(lab, key_dtype, off)
        if c.offset is not None:
            off += c.size + lab.padding
        cols.append(c)
    if all(c.offset is not None for c in cols) and off != key_dtype.itemsize:
        # ebpf_exporter's rule: size-only labels describe the whole key.
        raise ConfigError(f"the labels' sizes add up to {off} bytes, the key is "
                          f"{key_dtype.itemsize}", labels[0].line)
    return cols


class Grouped:
    """Entries grouped by decoded label values.

    ``keep`` selects the entries that survived (None: all); ``index`` gives
    each kept entry its group; ``labels[g]`` is group g's label values.
    """

    __slots__ = ("keep", "index", "labels")

    def __init__(self, keep: np.ndarray | None, index: np.ndarray, labels: list[tuple[Any, ...]]) -> None:
        self.keep, self.index, self.labels = keep, index, labels


def group_labels(cols: Sequence[_Column], keys: np.ndarray) -> Grouped:
    """Factorise, decode and combine the label columns of *keys*."""
    n = keys.shape[0]
    if not cols:
        return Grouped(None, np.zeros(n, np.intp), [()])
    codes: list[np.ndarray] = []
    texts: list[list[str]] = []
    for c in cols:
        uniq, inv = factorize(c.cut(keys))
        decoded = decode_unique(c.label, uniq)
        # Distinct raw values may decode to one text (cgroup ids of one path,
        # static_map fallbacks): number the texts, not the raw values.
        number: dict[str, int] = {}
        code_of_u = np.fromiter((-1 if s is None else number.setdefault(s, len(number))
                                 for s in decoded), dtype=np.intp, count=len(decoded))
        codes.append(code_of_u[inv])
        texts.append(list(number))
    sizes = [max(len(t), 1) for t in texts]
    if math.prod(sizes) < (1 << 62):
        comb = codes[0].astype(np.int64, copy=True)
        for code, s in zip(codes[1:], sizes[1:]):
            comb *= s
            comb += code
        dropped = codes[0] < 0
        for code in codes[1:]:
            dropped |= code < 0
    else:  # pragma: no cover - needs > 2**62 label combinations
        stacked = np.stack(codes, axis=1)
        dropped = (stacked < 0).any(axis=1)  # type: ignore[assignment]
        _, comb = np.unique(stacked, axis=0, return_inverse=True)
    keep = None
    if dropped.any():
        keep = ~dropped
        comb = comb[keep]
    uniq, index = factorize(comb)
    labels = []
    for v in uniq.tolist():
        parts = []
        for s in reversed(sizes):
            v, r = divmod(v, s)
            parts.append(r)
        parts.reverse()
        labels.append(tuple(t[p] for t, p in zip(texts, parts)))
    return Grouped(keep, index, labels)


# ---------------------------------------------------------------------------
# histograms


def histogram_le(bucket_type: str, multiplier: float, indexes: Iterable[int]) -> list[float]:
    """Upper bounds of buckets, ebpf_exporter's way: exp2 ``2**i * m``, else ``i * m``."""
    if bucket_type == "exp2":
        return [math.ldexp(multiplier, i) for i in indexes]
    return [i * multiplier for i in indexes]


class _Buckets:
    """Checked bucket settings of one histogram."""

    def __init__(self, bucket_type: str, multiplier: float | None, bmin: int | None,
                 bmax: int | None, keys: Sequence[int] | None, field_max: int | None,
                 line: int | None) -> None:
        if bucket_type not in BUCKET_TYPES:
            raise ConfigError(f"bucket_type must be one of {', '.join(BUCKET_TYPES)}, "
                              f"not {bucket_type!r}", line)
        self.type = bucket_type
        self.multiplier = 1.0 if multiplier in (None, 0) else float(multiplier)
        if not math.isfinite(self.multiplier) or self.multiplier < 0:
            raise ConfigError(f"bucket_multiplier must be a finite number >= 0", line)
        if bucket_type == "fixed":
            if not keys or not all(isinstance(k, int) and k >= 0 for k in keys):
                raise ConfigError("a fixed histogram needs bucket_keys: a list of integers >= 0",
                                  line)
            if list(keys) != sorted(set(keys)):
                raise ConfigError("bucket_keys must be ascending and distinct", line)
            self.keys = np.asarray(keys, dtype=np.int64)
            top = int(self.keys[-1])
        else:
            if bmax is None:
                raise ConfigError(f"a {bucket_type} histogram needs bucket_max", line)
            bmin = 0 if bmin is None else bmin
            if not (isinstance(bmin, int) and isinstance(bmax, int) and 0 <= bmin <= bmax):
                raise ConfigError(f"need integers 0 <= bucket_min <= bucket_max, got "
                                  f"[{bmin} .. {bmax}]", line)
            if bmax - bmin + 1 > _MAX_BUCKETS:
                raise ConfigError(f"{bmax - bmin + 1} buckets; at most {_MAX_BUCKETS}", line)
            self.keys = np.arange(bmin, bmax + 1, dtype=np.int64)
            top = bmax
        self.min, self.max = int(self.keys[0]), top
        try:
            self.le = histogram_le(bucket_type, self.multiplier, self.keys.tolist())
        except OverflowError:
            self.le = [math.inf]
        if not all(math.isfinite(x) for x in self.le):
            raise ConfigError(f"bucket bounds overflow: the top bucket ({top}) gives an "
                              f"infinite le with {bucket_type} x {self.multiplier}", line)
        if field_max is not None and top > field_max:
            raise ConfigError(f"bucket {top} does not fit the bucket key field "
                              f"(at most {field_max})", line)
        self.sum_key = top + 1  # ebpf_exporter's optional sum slot

    def table(self, g: np.ndarray, b: np.ndarray, v: np.ndarray, groups: int
              ) -> tuple[np.ndarray, np.ndarray]:
        """Per-group bucket counts (groups, buckets) and sums from bucket indexes *b*."""
        nb = len(self.keys)
        if self.type == "fixed":
            pos = np.searchsorted(self.keys, b)
            posc = np.minimum(pos, nb - 1)
            ok = (pos < nb) & (self.keys[posc] == b)
            idx = posc
        else:
            ok = (b >= self.min) & (b <= self.max)
            idx = b - self.min
        hist = np.bincount(g[ok] * nb + idx[ok], weights=v[ok], minlength=groups * nb)
        s = b == self.sum_key
        sums = np.bincount(g[s], weights=v[s], minlength=groups) * self.multiplier
        return hist.reshape(groups, nb), sums


# ---------------------------------------------------------------------------
# the collector


class MapCollector:
    """A ``prometheus_client`` collector exporting one BPF map as one metric family.

    ``MapCollector(map, name, help, kind="counter"|"gauge"|"histogram",
    labels=[{"name": ..., "field"|"size": ..., "decoders": [...]}, ...])``,
    then ``REGISTRY.register(collector)``. *map* is a :class:`Map` or a
    callable returning one at each scrape (the exporter uses that to
    follow pins). Values are the map's numbers (``value_field=`` picks one
    field of a struct value); per-CPU maps are summed over CPUs.

    Histograms read the bucket index from the last label and take
    ``bucket_type`` ("exp2", "linear" or "fixed"), ``bucket_multiplier``,
    ``bucket_min``/``bucket_max`` or ``bucket_keys``, as ebpf_exporter
    defines them; a key one past the top bucket holds the optional sum.

    A scrape that fails (the map went away, a decoder failed) logs a line,
    counts in :attr:`errors`, and yields nothing for this metric.
    """

    def __init__(self, map: Map | Callable[[], Map], name: str, help: str,
                 kind: str = "counter", labels: Sequence[dict[Any, Any] | LabelSpec] = (), *,
                 bucket_type: str = "exp2", bucket_multiplier: float | None = None,
                 bucket_min: int | None = None, bucket_max: int | None = None,
                 bucket_keys: Sequence[int] | None = None, value_field: str | None = None,
                 key_dtype: Any = None, value_dtype: Any = None, line: int | None = None) -> None:
        if kind not in KINDS:
            raise ConfigError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}", line)
        self.name, self.help, self.kind, self.line = name, help, kind, line
        self.labels = [LabelSpec(lab, line) for lab in labels]
        self.value_field = value_field
        self._source = map if callable(map) and not isinstance(map, Map) else None
        self._map = None if self._source else map
        self._key_dtype = np.dtype(key_dtype) if key_dtype is not None else None
        self._value_dtype = np.dtype(value_dtype) if value_dtype is not None else None
        self._lock = threading.Lock()
        self._reader: BatchReader | None = None
        #: Scrapes that failed, and the last failure's text.
        self.errors = 0
        self.last_error: str | None = None
        #: Wall time of the last scrape, in seconds.
        self.last_duration = 0.0
        if kind == "histogram" and not self.labels:
            raise ConfigError(f"histogram {name!r} needs at least one label: the bucket", line)
        self._hist_args = (bucket_type, bucket_multiplier, bucket_min, bucket_max, bucket_keys)
        self._setup(self._current_map())  # bad settings fail here, not at the first scrape

    # -- setup ----------------------------------------------------------------

    def _current_map(self) -> Map:
        m = self._source() if self._source is not None else self._map
        if not isinstance(m, Map):
            raise TypeError(f"metric {self.name!r}: expected a fastbpf Map, got {type(m).__name__}")
        return m

    def _setup(self, m: Map) -> None:
        """Lay out the columns for *m*'s key (again when a pin points to a new map)."""
        reader = BatchReader(m, self._key_dtype, self._value_dtype)
        kd = reader.key_dtype
        cols = _columns(self.labels, kd)
        vd = reader.value_dtype
        try:
            value_numbers(np.zeros((0, 1) if m.percpu else 0, vd), self.value_field, m.percpu)
        except (TypeError, KeyError) as e:
            raise ConfigError(f"metric {self.name!r}: {e.args[0]}", self.line) from None
        buckets = None
        if self.kind == "histogram":
            bc = cols[-1]
            if bc.dtype.kind not in "iu" and not (bc.dtype.kind == "V" and bc.size in (1, 2, 4, 8)):
                raise ConfigError(f"the bucket label {bc.label.name!r} must be an integer field",
                                  bc.label.line)
            fmax: int | None = ((1 << (8 * bc.size)) - 1 if bc.dtype.kind != "i"
                                else (1 << (8 * bc.size - 1)) - 1)
            if bc.label.decoders and [d.name for d in bc.label.decoders] != ["uint"]:
                fmax = None  # decoded buckets: checked as they are parsed
            buckets = _Buckets(*self._hist_args, field_max=fmax, line=self.line)
        self._reader, self._cols, self._buckets = reader, cols, buckets
        self._map_seen = m

    # -- prometheus_client protocol ----------------------------------------------

    def describe(self) -> list[Any]:
        """The metric family without samples (so registering does not scrape)."""
        return [self._family([l.name for l in self._label_names()])]

    def _label_names(self) -> list[LabelSpec]:
        return self.labels[:-1] if self.kind == "histogram" else self.labels

    def _family(self, names: list[str]) -> Any:
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                            HistogramMetricFamily)
        cls = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily,
               "histogram": HistogramMetricFamily}[self.kind]
        return cls(self.name, self.help, labels=names)

    def collect(self) -> list[Any]:
        """One scrape: the metric family, or nothing (logged, counted) if it fails."""
        t0 = time.perf_counter()
        try:
            with self._lock:
                fam = self._collect()
            return [fam]
        except Exception as e:  # a scrape must never take the exporter down
            self.errors += 1
            self.last_error = f"{type(e).__name__}: {e}"
            log.warning("metric %s: scrape failed: %s", self.name, self.last_error)
            return []
        finally:
            self.last_duration = time.perf_counter() - t0

    # -- the work ---------------------------------------------------------------------

    def read(self) -> tuple[list[tuple[Any, ...]], Any]:
        """Label tuples and their values: a float64 array (counter, gauge) or, for
        histograms, ``(le list, cumulative counts (groups, buckets), sums)``."""
        with self._lock:
            return self._read()

    def _read(self) -> tuple[list[tuple[Any, ...]], Any]:
        m = self._current_map()
        if m is not self._map_seen:
            self._setup(m)
        keys, values = self._reader.read()  # type: ignore[union-attr]  # _setup made it
        v = value_numbers(values, self.value_field, m.percpu)
        if self.kind != "histogram":
            grp = group_labels(self._cols, keys)
            if grp.keep is not None:
                v = v[grp.keep]
            sums = np.bincount(grp.index, weights=v, minlength=len(grp.labels))
            if not len(keys) and not self._cols:
                return [], sums[:0]
            return grp.labels, sums
        grp = group_labels(self._cols[:-1], keys)
        bcol = self._cols[-1]
        raw = bcol.cut(keys)
        if grp.keep is not None:
            raw, v = raw[grp.keep], v[grp.keep]
        b = self._bucket_numbers(bcol, raw)
        buckets: Any = self._buckets  # _setup made it for a histogram
        if not len(b):
            return [], (buckets.le, np.zeros((0, len(buckets.le))), np.zeros(0))
        hist, sums = buckets.table(grp.index, b, v, len(grp.labels))
        return grp.labels, (buckets.le, np.cumsum(hist, axis=1), sums)

    @staticmethod
    def _bucket_numbers(bcol: _Column, raw: np.ndarray) -> np.ndarray:
        decs = [d.name for d in bcol.label.decoders]
        if raw.dtype.kind == "V":
            raw = raw.view(f"=u{raw.dtype.itemsize}")
        if not decs or decs == ["uint"]:
            return raw.astype(np.int64)
        uniq, inv = factorize(raw)
        texts = decode_unique(bcol.label, uniq)
        try:
            nums = np.array([-1 if t is None else int(t, 0) for t in texts], dtype=np.int64)
        except ValueError as e:
            raise ValueError(f"bucket label {bcol.label.name!r} decoded to a non-integer: {e}") \
                from None
        return nums[inv]  # type: ignore[no-any-return]

    def _collect(self) -> Any:
        names = [l.name for l in self._label_names()]
        labels, data = self._read()
        fam = self._family(names)
        if self.kind != "histogram":
            for lab, val in zip(labels, data.tolist()):
                fam.add_metric(lab, val)
            return fam
        from prometheus_client.utils import floatToGoString
        le, cum, sums = data
        les = [floatToGoString(x) for x in le] + ["+Inf"]
        for lab, row, s in zip(labels, cum.tolist(), sums.tolist()):
            fam.add_metric(lab, list(zip(les, row + [row[-1]])), s)
        return fam
