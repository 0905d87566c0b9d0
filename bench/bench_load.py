"""Opening and loading a compiled object: fastbpf vs libbpf.

    python bench/bench_load.py [rounds]

The object is testdata/many_progs-el.o: 16 programs, 10 BTF-defined maps,
.data/.rodata/.bss, two subprograms called from every program. Two
comparisons, each side measured in this run, alternating in rounds:

* parse: ``load_collection_spec(path)`` vs ``bpf_object__open_file`` (+ close);
* parse + load + close: ``load_collection(path).close()`` vs
  ``bpf_object__open_file`` + ``bpf_object__load`` + ``bpf_object__close``.

Both sides are timed in per-thread CPU time (user + system, so the
verifier's work counts): the machine is shared, and wall time there measures
the neighbours. The kernel's share (BTF load, map creation, verifier) is the same work on
both sides; for fastbpf it is measured by timing the bpf(2) calls, and the
time outside the kernel is printed beside the total. The baseline is
bench/c/load_obj.c, built here with ``gcc -lbpf``.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import fastbpf  # noqa: E402
from _cbuild import build  # noqa: E402

OBJECT = os.path.join(os.path.dirname(HERE), "testdata", "many_progs-el.o")


def _sys_ms() -> float:
    """The calling thread's system CPU time (ms): the kernel's share."""
    ru = resource.getrusage(resource.RUSAGE_THREAD)
    return ru.ru_stime * 1e3


def fastbpf_parse(n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.thread_time_ns()
        spec = fastbpf.load_collection_spec(OBJECT)
        out.append((time.thread_time_ns() - t0) / 1e6)
        assert len(spec.programs) == 16
    return out


def fastbpf_load(n: int, sys_ms: list[float] | None = None) -> list[float]:
    out = []
    for _ in range(n):
        s0 = _sys_ms()
        t0 = time.thread_time_ns()
        fastbpf.load_collection(OBJECT).close()
        out.append((time.thread_time_ns() - t0) / 1e6)
        if sys_ms is not None:
            sys_ms.append(_sys_ms() - s0)
    return out


def libbpf(n: int, mode: str, sys_ms: list[float] | None = None) -> list[float]:
    exe = build("load_obj", ("-lbpf",))
    res = subprocess.run([exe, OBJECT, str(n), mode], capture_output=True, text=True,
                         check=True)
    out = json.loads(res.stdout)
    if sys_ms is not None:
        sys_ms += out["sys_ms"]
    return out["times_ms"]  # type: ignore[no-any-return]


def measure(rounds: int = 8, per: int = 10, kernel_loads: int = 400) -> dict:
    """Medians (ms) of every side, alternating rounds of *per* iterations."""
    fastbpf_parse(3)
    fastbpf_load(2)
    libbpf(2, "load")
    fp: list[float] = []
    fl: list[float] = []
    lo: list[float] = []
    ll: list[float] = []
    for _ in range(rounds):
        fp += fastbpf_parse(per)
        lo += libbpf(per, "open")
        fl += fastbpf_load(per)
        ll += libbpf(per, "load")
    # The kernel's share, from runs long enough for the tick-sampled
    # user/system split (a few hundred ticks each).
    fsys: list[float] = []
    lsys: list[float] = []
    for _ in range(2):
        fastbpf_load(kernel_loads // 2, fsys)
        libbpf(kernel_loads // 2, "load", lsys)
    med = statistics.median
    return dict(parse=med(fp), open=med(lo), load=med(fl), libbpf_load=med(ll),
                kernel=statistics.mean(fsys), libbpf_kernel=statistics.mean(lsys),
                best=(min(fp), min(lo), min(fl), min(ll)))


def compare(rounds: int = 6) -> list[dict]:
    """Rows for bench/compare.py."""
    m = measure(rounds)
    return [
        dict(name="parse a 16-program object (vs bpf_object__open)",
             fastbpf_ns=m["parse"] * 1e6, c_ns=m["open"] * 1e6, ratio=m["parse"] / m["open"]),
        dict(name="parse + load + close (vs open + load + close)",
             fastbpf_ns=m["load"] * 1e6, c_ns=m["libbpf_load"] * 1e6,
             ratio=m["load"] / m["libbpf_load"]),
    ]


def main(rounds: int = 8) -> None:
    m = measure(rounds)
    print(f"object: {os.path.relpath(OBJECT)} (16 programs, 13 maps incl. data, subprograms)")
    print(f"  parse:  fastbpf {m['parse']:.3f} ms   libbpf open {m['open']:.3f} ms   "
          f"ratio {m['parse'] / m['open']:.2f}x (goal <= 3x), "
          f"overhead {(m['parse'] - m['open']) * 1e6:+.0f} ns")
    print(f"  load:   fastbpf {m['load']:.3f} ms   libbpf {m['libbpf_load']:.3f} ms   "
          f"ratio {m['load'] / m['libbpf_load']:.2f}x (goal <= 1.0x), "
          f"overhead {(m['load'] - m['libbpf_load']) * 1e6:+.0f} ns")
    print(f"          in the kernel (thread system time, mean): fastbpf {m['kernel']:.3f} ms, "
          f"libbpf {m['libbpf_kernel']:.3f} ms; outside the kernel: fastbpf "
          f"{m['load'] - m['kernel']:.3f} ms, libbpf {m['libbpf_load'] - m['libbpf_kernel']:.3f} ms")
    bp, bo, bl, bll = m["best"]
    print(f"  best of each (the machine is shared; minima show the floor): parse "
          f"{bp:.3f} vs {bo:.3f} ms ({bp / bo:.2f}x), load {bl:.3f} vs {bll:.3f} ms "
          f"({bl / bll:.2f}x)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
