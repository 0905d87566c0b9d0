"""Every benchmark comparison in one run: fastbpf against C, same syscalls.

Each bench module exposes ``compare() -> [dict(name, fastbpf_ns, c_ns, ratio)]``
and measures both sides itself, in this process's run. The table printed here
is the one in the README.

    python bench/compare.py [--only maps,test_run,rings,btf] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

# Before any bench module imports numpy: see bench_maps.py (like with like).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

AREAS = {
    "maps": "bench_maps",
    "test_run": "bench_test_run",
    "btf": "bench_btf",
    "load": "bench_load",
    "metrics": "bench_metrics",  # baseline: lookup_batch of the same map, not C
    "core": "bench_core",
    "rings": "bench_rings",      # last: it churns through caches the most
}


GOALS = {"maps": "<= 1.1", "test_run": "<= 1.1", "btf": "<= 2", "core": "<= 1.0",
         "rings": "<= 1.0", "load": "<= 1.0"}


def _fmt(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    if ns >= 100:
        return f"{ns:.0f} ns"
    return f"{ns:.1f} ns"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(AREAS), help="comma-separated areas")
    p.add_argument("--json", help="also write the rows as JSON here")
    args = p.parse_args(argv)
    rows = []
    for area in args.only.split(","):
        mod = importlib.import_module(AREAS[area])
        t0 = time.time()
        for r in mod.compare():
            r.setdefault("area", area)
            rows.append(r)
        print(f"# {area}: measured in {time.time() - t0:.0f} s", file=sys.stderr)
    print("| area | operation | fastbpf | C baseline | fastbpf / C (time) | fastbpf - C | goal |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        # One convention for every row: time per operation, lower is better.
        r["time_ratio"] = r["fastbpf_ns"] / r["c_ns"]
        goal = r["goal"] if "goal" in r else GOALS.get(r["area"], "")
        if r["area"] == "maps" and "batch" in r["name"]:
            goal = "<= 1.05"
        if r["area"] == "load" and r["name"].startswith("parse a"):
            goal = "<= 3"
        if r["area"] == "maps" and "items()" in r["name"]:
            goal = "<= 0.5"
        diff = r["fastbpf_ns"] - r["c_ns"]
        print(f"| {r['area']} | {r['name']} | {_fmt(r['fastbpf_ns'])} | {_fmt(r['c_ns'])} "
              f"| {r['time_ratio']:.2f} | {'+' if diff >= 0 else '-'}{_fmt(abs(diff))} | {goal} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
