"""Histograms in a terminal, the way BCC's ``print_log2_hist`` draws them.

    >>> print(render_histogram(m, bucket_type="exp2", unit="usecs"))
         usecs               : count    distribution
             0 -> 1          : 3        |************                            |
             2 -> 3          : 10       |****************************************|

The source is a map whose key is (or has a field holding) the bucket index,
or a plain array of counts indexed by bucket; per-CPU values are summed;
``group_by`` draws one histogram per distinct value of a key field.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING, Sequence, TextIO

import numpy as np

from ..maps import Map
from ._common import BatchReader, field_column, value_numbers

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = ["histogram_counts", "render_histogram", "render_counts", "cli_hist"]

_BAR = 40


def _bucket_range(bucket_type: str, i: int, mult: float) -> tuple[str, str]:
    if bucket_type == "exp2":
        # libbpf-tools' log2 slots: slot i holds [2**i, 2**(i+1)), slot 0 also holds 0.
        lo, hi = 1 << i, (1 << (i + 1)) - 1
        if i == 0:
            lo = 0
        lo_v, hi_v = lo * mult, hi * mult
    else:
        step_int = mult >= 1 and float(mult).is_integer()
        lo_v, hi_v = i * mult, (i + 1) * mult - (1 if step_int else 0)

    def f(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else f"{x:.6g}"
    return f(lo_v), f(hi_v)


def render_counts(counts: np.ndarray, bucket_type: str = "exp2", bucket_multiplier: float = 1.0,
                  unit: str = "value", first: int = 0) -> str:
    """The bars for *counts*, where ``counts[j]`` is bucket ``first + j``.

    Trailing empty buckets are left out, as BCC does (and leading ones of
    linear histograms).
    """
    counts = np.asarray(counts, dtype=np.float64)
    nz = np.flatnonzero(counts)
    if not len(nz):
        return f"{'':5}{unit:<19} : count    distribution\n{'':5}(no samples)\n"
    if bucket_type == "exp2" and first > 0:
        counts = np.concatenate([np.zeros(first), counts])
        nz, first = nz + first, 0
    # log2 histograms start at slot 0, as BCC draws them; linear ones at the first count.
    lo_i, hi_i = (0 if bucket_type == "exp2" else int(nz[0])), int(nz[-1])
    top = counts.max()
    ranges = [_bucket_range(bucket_type, first + j, bucket_multiplier)
              for j in range(lo_i, hi_i + 1)]
    w = 10 if all(len(a) <= 10 and len(b) <= 10 for a, b in ranges) else 20  # BCC's two widths
    rows = [f"{'':5}{unit:<{2 * w - 1}} : count    distribution"]
    for (lo, hi), j in zip(ranges, range(lo_i, hi_i + 1)):
        c = counts[j]
        stars = int(round(c / top * _BAR)) if top else 0
        cnt = str(int(c)) if float(c).is_integer() else f"{c:.6g}"
        rows.append(f"{lo:>{w}} -> {hi:<{w}} : {cnt:<8} |{'*' * stars:<{_BAR}}|")
    return "\n".join(rows) + "\n"


def histogram_counts(source: Map | ArrayLike, bucket_field: str | None = None,
                     group_by: str | None = None,
                     value_field: str | None = None) -> dict[str, tuple[int, np.ndarray]]:
    """``{group: (first bucket index, counts)}`` from a map or an array of counts."""
    if isinstance(source, Map):
        reader = BatchReader(source)
        keys, values = reader.read()
        v = value_numbers(values, value_field, source.percpu)
        b = field_column(keys, bucket_field) if bucket_field else keys
        if b.dtype.kind == "V":
            b = b.view(f"=u{b.dtype.itemsize}")
        if b.dtype.kind not in "iu":
            raise TypeError(f"the bucket index must be an integer, the key is {keys.dtype}; "
                            f"name it with bucket_field=")
        b = b.astype(np.int64)
        groups = {"": np.ones(len(b), bool)}
        if group_by:
            g = field_column(keys, group_by)
            uniq, inv = np.unique(g, return_inverse=True)
            groups = {}
            for k, u in enumerate(uniq):
                text = (u.split(b"\0", 1)[0].decode("utf-8", "replace")
                        if isinstance(u, bytes) else str(u))
                groups[f"{group_by} = {text}"] = inv.reshape(-1) == k
        out: dict[str, tuple[int, np.ndarray]] = {}
        for name, sel in groups.items():
            bs, vs = b[sel], v[sel]
            if not len(bs):
                out[name] = (0, np.zeros(0))
                continue
            first = int(bs.min())
            out[name] = (first, np.bincount(bs - first, weights=vs))
        return out
    arr = np.asarray(source)
    if arr.ndim == 2:  # (buckets, CPUs)
        arr = arr.sum(axis=1)
    if arr.ndim != 1:
        raise ValueError("an array of counts is 1-d (buckets) or 2-d (buckets, CPUs)")
    return {"": (0, arr.astype(np.float64))}


def render_histogram(source: Map | ArrayLike, bucket_type: str = "exp2", *,
                     bucket_multiplier: float = 1.0,
                     unit: str = "value", bucket_field: str | None = None,
                     group_by: str | None = None, value_field: str | None = None) -> str:
    """Text bars for a bucketed map (or array of counts), one block per group.

    *bucket_type* is "exp2" (slot i holds [2**i, 2**(i+1)), what
    libbpf-tools' ``log2l`` computes; BCC's rows) or "linear" (bucket i holds [i*m, (i+1)*m)); *bucket_multiplier*
    scales the printed ranges. *bucket_field* names the key field holding
    the bucket index when the key is a struct; *group_by* another key field
    to draw one histogram per value of.
    """
    if bucket_type not in ("exp2", "linear"):
        raise ValueError("bucket_type must be 'exp2' or 'linear'")
    parts = []
    for name, (first, counts) in histogram_counts(source, bucket_field, group_by,
                                                  value_field).items():
        head = f"\n{name}\n" if name else ""
        parts.append(head + render_counts(counts, bucket_type, bucket_multiplier, unit, first))
    return "".join(parts)


def cli_hist(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """``fastbpf map hist ID|PIN [options]``: draw a histogram map, optionally refreshing.

    Returns the exit status. ``out`` defaults to stdout.
    """
    out = out or sys.stdout
    p = argparse.ArgumentParser(prog="fastbpf map hist",
                                description="draw a bucketed map as a histogram (BCC style)")
    p.add_argument("map", help="map id, or the path of a pin on bpffs")
    p.add_argument("--bucket-type", default="exp2", choices=("exp2", "linear"))
    p.add_argument("--multiplier", type=float, default=1.0, help="scale of one bucket step")
    p.add_argument("--unit", default="value", help="name of the value column")
    p.add_argument("--bucket-field", help="key field with the bucket index (struct keys)")
    p.add_argument("--group-by", help="key field to draw one histogram per value of")
    p.add_argument("--value-field", help="value field to count (struct values)")
    p.add_argument("--interval", type=float, help="redraw every N seconds")
    p.add_argument("--count", type=int, default=0, help="stop after N draws (with --interval)")
    args = p.parse_args(argv)
    m = Map.from_id(int(args.map)) if args.map.isdigit() and not os.path.exists(args.map) \
        else Map.from_pin(args.map)
    with m:
        n = 0
        while True:
            out.write(render_histogram(m, args.bucket_type, bucket_multiplier=args.multiplier,
                                       unit=args.unit, bucket_field=args.bucket_field,
                                       group_by=args.group_by, value_field=args.value_field))
            out.flush()
            n += 1
            if args.interval is None or (args.count and n >= args.count):
                return 0
            try:
                time.sleep(args.interval)
            except KeyboardInterrupt:
                return 0
            out.write("\n")
