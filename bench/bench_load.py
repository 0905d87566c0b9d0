"""Opening and loading a compiled object: fastbpf vs libbpf.

    python bench/bench_load.py [rounds]     (default 8 rounds of 10 samples)

The object is testdata/many_progs-el.o: 16 programs, 10 BTF-defined maps,
.data/.rodata/.bss, two subprograms called from every program. Two
comparisons, each side measured in this run, alternating in rounds:

* parse: ``load_collection_spec(path)`` vs ``bpf_object__open_file`` (+ close),
  in per-thread CPU time (both sides run in one thread);
* parse + load + close: ``load_collection(path).close()`` vs
  ``bpf_object__open_file`` + ``bpf_object__load`` + ``bpf_object__close``,
  with three sides: fastbpf with its default ``threads`` (programs loaded
  from up to that many threads; the CPUs this process may run on, at most
  4), fastbpf with ``threads=1`` (one by one, as libbpf loads), and libbpf.
  Each is timed two ways: wall time (what a service waits at startup; the
  median of many short samples, since the machine is shared and a
  neighbour only ever makes a sample longer) and process CPU time (every
  thread, user + system, so the verifier's work in the worker threads
  counts: ``time.process_time_ns`` and CLOCK_PROCESS_CPUTIME_ID).

Each side runs a round of 10 back to back (steady state, as every other
benchmark here measures; alternating single samples instead puts each one
right after the other side's, in caches that side emptied: parse then
takes 0.35-0.50 ms, not 0.18, and libbpf's open 0.11-0.125, not 0.08).
The baseline process stays up for the whole run and takes a round per
request over a pipe; the paired figure is the median of the rounds' own
ratios, which a slow drift of the machine moves less than the medians.

Back-to-back loads flatter nobody's cold start, so one more pair of sides
waits 3 ms (IDLE, outside the clock) before each load: fastbpf with its
default threads and libbpf. That is closer to a service, which loads its
object once after other work; the pause also lets idle CPUs sleep, which
some schedulers answer by packing new threads onto the busy one.

The kernel's share (BTF load, map creation, verifier) is the same work on
every side; it is measured as the process's system time (fastbpf, all
threads) and the thread's (libbpf, one thread), and the time outside the
kernel is printed beside the total. The baseline is bench/c/load_obj.c
(clock modes ``thread``, ``wall`` and ``process``), built here with
``gcc -lbpf``.
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
from fastbpf import collection as _collection  # noqa: E402
from _cbuild import build  # noqa: E402

#: The pause before each load of the "after idle" rows: a service loads its
#: object once, after other work, not right after the previous load.
IDLE = 0.003
OBJECT = os.path.join(os.path.dirname(HERE), "testdata", "many_progs-el.o")


def _sys_ms() -> float:
    """The process's system CPU time (ms), every thread: the kernel's share."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_stime * 1e3


def default_threads() -> int:
    """What ``threads=None`` resolves to in this process."""
    return _collection._default_threads()


def fastbpf_parse(n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.thread_time_ns()
        spec = fastbpf.load_collection_spec(OBJECT)
        out.append((time.thread_time_ns() - t0) / 1e6)
        assert len(spec.programs) == 16
    return out


def fastbpf_load(n: int, threads: int | None, wall: list[float], cpu: list[float],
                 sys_ms: list[float] | None = None, settle: float = 0.0) -> None:
    """*n* loads, each after a pause of *settle* seconds; appends each one's
    wall and process CPU time (ms)."""
    for _ in range(n):
        if settle:
            time.sleep(settle)
        s0 = _sys_ms() if sys_ms is not None else 0.0
        w0 = time.perf_counter_ns()
        c0 = time.process_time_ns()
        fastbpf.load_collection(OBJECT, threads=threads).close()
        c1 = time.process_time_ns()
        w1 = time.perf_counter_ns()
        wall.append((w1 - w0) / 1e6)
        cpu.append((c1 - c0) / 1e6)
        if sys_ms is not None:
            sys_ms.append(_sys_ms() - s0)


class Libbpf:
    """bench/c/load_obj.c kept running (``serve`` mode): each request is a
    round of iterations timed in C, without a process start (and libbpf's
    feature probes) per round."""

    def __init__(self) -> None:
        exe = build("load_obj", ("-lbpf",))
        self.proc = subprocess.Popen([exe, OBJECT, "serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def run(self, n: int, mode: str, clock: str = "thread",
            sys_ms: list[float] | None = None, settle: float = 0.0) -> list[float]:
        """*n* iterations of *mode* (open, load) timed with *clock* (ms each),
        each after a pause of *settle* seconds."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{n} {mode} {clock} {int(settle * 1e6)}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"load_obj failed (exit {self.proc.wait()})")
        out = json.loads(line)
        if sys_ms is not None:
            sys_ms += out["sys_ms"]
        return out["times_ms"]  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()


def _paired(a: list[float], b: list[float], per: int) -> float:
    """Median over rounds of (round median of *a*) / (round median of *b*):
    each ratio compares samples taken within a few ms of each other."""
    med = statistics.median
    return med(med(a[i:i + per]) / med(b[i:i + per]) for i in range(0, len(a), per))


def measure(rounds: int = 8, per: int = 10, kernel_loads: int = 400) -> dict:
    """Medians (ms) of every side, alternating rounds of *per* iterations."""
    lib = Libbpf()
    try:
        fastbpf_parse(3)
        fastbpf_load(2, None, [], [])
        fastbpf_load(2, 1, [], [])
        lib.run(2, "load")
        fp: list[float] = []
        lo: list[float] = []
        nw: list[float] = []   # fastbpf, default threads: wall, process CPU
        nc: list[float] = []
        ow: list[float] = []   # fastbpf, threads=1
        oc: list[float] = []
        lw: list[float] = []   # libbpf
        lc: list[float] = []
        iw: list[float] = []   # after an idle pause: fastbpf default threads, libbpf
        li: list[float] = []
        for _ in range(rounds):
            fp += fastbpf_parse(per)
            lo += lib.run(per, "open")
            fastbpf_load(per, None, nw, nc)
            lw += lib.run(per, "load", "wall")
            fastbpf_load(per, 1, ow, oc)
            lc += lib.run(per, "load", "process")
            fastbpf_load(per, None, iw, [], settle=IDLE)
            li += lib.run(per, "load", "wall", settle=IDLE)
        # The kernel's share, from runs long enough for the tick-sampled
        # user/system split (a few hundred ticks each).
        fsys: list[float] = []
        lsys: list[float] = []
        for _ in range(2):
            fastbpf_load(kernel_loads // 2, None, [], [], fsys)
            lib.run(kernel_loads // 2, "load", "thread", lsys)
    finally:
        lib.close()
    med = statistics.median
    return dict(parse=med(fp), open=med(lo),
                wall=med(nw), cpu=med(nc), wall1=med(ow), cpu1=med(oc),
                libbpf_wall=med(lw), libbpf_cpu=med(lc),
                paired_wall=_paired(nw, lw, per), paired_wall1=_paired(ow, lw, per),
                idle_wall=med(iw), libbpf_idle_wall=med(li), paired_idle=_paired(iw, li, per),
                kernel=statistics.mean(fsys), libbpf_kernel=statistics.mean(lsys),
                samples=len(nw), threads=default_threads(),
                best=(min(fp), min(lo), min(nw), min(ow), min(lw)))


def compare(rounds: int = 8) -> list[dict]:
    """Rows for bench/compare.py."""
    m = measure(rounds)
    t = m["threads"]
    return [
        dict(name="parse a 16-program object (vs bpf_object__open)",
             fastbpf_ns=m["parse"] * 1e6, c_ns=m["open"] * 1e6, ratio=m["parse"] / m["open"]),
        dict(name=f"parse + load + close, wall, threads={t} (vs open + load + close)",
             fastbpf_ns=m["wall"] * 1e6, c_ns=m["libbpf_wall"] * 1e6,
             ratio=m["wall"] / m["libbpf_wall"]),
        dict(name=f"parse + load + close after {IDLE * 1e3:.0f} ms idle, wall, threads={t}",
             fastbpf_ns=m["idle_wall"] * 1e6, c_ns=m["libbpf_idle_wall"] * 1e6,
             ratio=m["idle_wall"] / m["libbpf_idle_wall"]),
        dict(name=f"parse + load + close, process CPU, threads={t} (vs libbpf)",
             fastbpf_ns=m["cpu"] * 1e6, c_ns=m["libbpf_cpu"] * 1e6,
             ratio=m["cpu"] / m["libbpf_cpu"]),
        dict(name="parse + load + close, process CPU, threads=1 (vs libbpf)",
             fastbpf_ns=m["cpu1"] * 1e6, c_ns=m["libbpf_cpu"] * 1e6,
             ratio=m["cpu1"] / m["libbpf_cpu"]),
    ]


def _vs(a: float, b: float) -> str:
    return f"{a / b:.2f}x ({(a - b) * 1e6:+.0f} ns)"


def main(rounds: int = 8) -> None:
    m = measure(rounds)
    t = m["threads"]
    print(f"object: {os.path.relpath(OBJECT)} (16 programs, 13 maps incl. data, subprograms)")
    print(f"  parse:  fastbpf {m['parse']:.3f} ms   libbpf open {m['open']:.3f} ms   "
          f"ratio {m['parse'] / m['open']:.2f}x (goal <= 3x), "
          f"overhead {(m['parse'] - m['open']) * 1e6:+.0f} ns")
    print(f"  parse + load + close, medians of {m['samples']} samples each "
          f"(goal <= 1.0x libbpf):")
    print("                          wall ms   process CPU ms")
    for label, w, c in ((f"fastbpf threads={t}", m["wall"], m["cpu"]),
                        ("fastbpf threads=1", m["wall1"], m["cpu1"]),
                        ("libbpf", m["libbpf_wall"], m["libbpf_cpu"])):
        print(f"    {label:20s} {w:8.3f}   {c:8.3f}")
    print(f"    threads={t} vs libbpf:    wall {_vs(m['wall'], m['libbpf_wall'])}, "
          f"CPU {_vs(m['cpu'], m['libbpf_cpu'])}")
    print(f"    threads=1 vs libbpf:    wall {_vs(m['wall1'], m['libbpf_wall'])}, "
          f"CPU {_vs(m['cpu1'], m['libbpf_cpu'])}")
    print(f"    paired (median over rounds of the round's ratio): threads={t} "
          f"{m['paired_wall']:.2f}x, threads=1 {m['paired_wall1']:.2f}x libbpf's wall time")
    print(f"  after {IDLE * 1e3:.0f} ms idle before each load (as a service loads once): "
          f"fastbpf threads={t} {m['idle_wall']:.3f} ms, libbpf {m['libbpf_idle_wall']:.3f} ms "
          f"wall: {_vs(m['idle_wall'], m['libbpf_idle_wall'])}, paired "
          f"{m['paired_idle']:.2f}x")
    print(f"    threads={t} vs threads=1: wall {_vs(m['wall'], m['wall1'])}, "
          f"CPU {_vs(m['cpu'], m['cpu1'])}")
    print(f"  in the kernel (system time, mean): fastbpf threads={t} {m['kernel']:.3f} ms "
          f"(all threads), libbpf {m['libbpf_kernel']:.3f} ms; outside the kernel "
          f"(process CPU - system): fastbpf {m['cpu'] - m['kernel']:.3f} ms, "
          f"libbpf {m['libbpf_cpu'] - m['libbpf_kernel']:.3f} ms")
    bp, bo, bw, bw1, blw = m["best"]
    print(f"  best of each (the machine is shared; minima show the floor): parse "
          f"{bp:.3f} vs {bo:.3f} ms ({bp / bo:.2f}x), wall threads={t} {bw:.3f}, "
          f"threads=1 {bw1:.3f}, libbpf {blw:.3f} ms ({bw / blw:.2f}x)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
