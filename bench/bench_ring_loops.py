"""The ring drain loops alone, in C (``bench/c/ring_loops.c``): libbpf's
callback loop, fastbpf's copy loop and a bare header walk, on the same ring
in one process, with no Python in the timed part.

``bench_rings.py`` measures what a Python user gets; this separates the
loops from the calls around them. The fastbpf loop is the C the module
runs: ``fastbpf/_ring_loops.h`` (which ``_ring.pyx`` includes), compiled
with the flags ``setup.py`` uses for the module. Each
mode copies (or sums) the first u64 of every record, 16k records per call
for fastbpf. Perf rings of both kinds stay open; before each drain the
map is pointed at the rings of that drain's reader.

Measured spread on the 2-vCPU VM (seven runs): fastbpf's loop took 0.74-0.99
of libbpf's time on 64-byte ring buffer records, 0.97-1.05 on the mix,
0.94-1.10 on 64-byte perf samples. libbpf's perf loop on the mix moved
between 4 and 10 ns a record from run to run here (not understood; the same
loop in ``bench_rings.py``'s C program holds at about 3.4).

    python bench/bench_ring_loops.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import bench_rings as rings  # noqa: E402
from fastbpf import Map, MapSpec, MapType, possible_cpus  # noqa: E402

REPS = 15


def _binary() -> str:
    tmp = tempfile.mkdtemp(prefix="fastbpf_ring_loops_")
    out = os.path.join(tmp, "ring_loops")
    # the module's flags: Python's CFLAGS, then setup.py's for _ring
    flags = sysconfig.get_config_var("CFLAGS").split() + [
        "-O2", "-fno-tree-loop-distribute-patterns", "-Wno-unused-function"]
    subprocess.run(["gcc", *flags, "-I", os.path.join(ROOT, "fastbpf"), "-o", out, os.path.join(HERE, "c", "ring_loops.c"),
                    "-lbpf"], check=True)
    return out


def _case(binary: str, kind: str, mix: bool) -> dict[str, tuple[float, float]]:
    n = (rings.RB_N if kind == "ringbuf" else rings.PERF_N)["mix" if mix else "fixed"]
    if kind == "ringbuf":
        target = Map.create(MapSpec(type=MapType.RINGBUF, max_entries=rings.RB_BYTES))
        size = rings.RB_BYTES
    else:
        target = Map.create(MapSpec(type=MapType.PERF_EVENT_ARRAY, key=4, value=4,
                                    max_entries=possible_cpus()))
        size = rings.PERF_BYTES
    ctr = Map.create(MapSpec(type=MapType.ARRAY, key="<u4", value="<u8", max_entries=1))
    prog = rings._filler(kind, target, ctr, mix)
    try:
        run = subprocess.run([binary, kind, str(target.id), str(prog.info().id), str(n),
                              str(REPS), str(size)], capture_output=True, text=True)
        if run.returncode:
            raise RuntimeError(f"ring_loops {kind} failed: {run.stderr.strip()}")
        out = run.stdout
    finally:
        prog.close()
        ctr.close()
        target.close()
    res = {}
    for line in out.split("\n"):
        if line.strip():
            mode, med, low = line.split()
            res[mode] = (float(med), float(low))
    return res


def main() -> None:
    if len(os.sched_getaffinity(0)) < 2 and os.cpu_count() and os.cpu_count() < 2:
        sys.exit("needs two CPUs (a filler on CPU 1, the reader on CPU 0)")
    binary = _binary()
    print(f"{'case':22} {'libbpf':>8} {'fastbpf':>8} {'scan':>8}   ns/record, median of {REPS}"
          " (fastbpf / libbpf)")
    for kind in ("ringbuf", "perf"):
        for mix in (False, True):
            r = _case(binary, kind, mix)
            label = f"{kind} {'mix 16-128B' if mix else '64B'}"
            print(f"{label:22} {r['libbpf'][0]:8.2f} {r['fastbpf'][0]:8.2f} {r['scan'][0]:8.2f}"
                  f"   ({r['fastbpf'][0] / r['libbpf'][0]:.2f})")


if __name__ == "__main__":
    main()
