"""Records per second drained from a BPF ring buffer and a perf event array:
fastbpf's batch readers against libbpf's callback readers (C), same run.

Method: a filler XDP program (sequence number in every u64 of the record)
fills the ring with N records through one BPF_PROG_TEST_RUN (repeat=N, not
timed); then the ring is drained and timed, and every record is touched (the
first u64 summed). Repeated, median taken. The C program
(``bench/c/rings.c``, built here with ``gcc -lbpf``) opens the same map and
filler program by id and does the same with ``ring_buffer__poll`` /
``perf_buffer__poll``. The process is pinned to CPU 0 so all perf samples
land in one ring.

Cases: 64-byte records and a variable-size mix (16..128 bytes). fastbpf is
measured in up to three forms: ``read_batch`` (copies into a new array, the
form whose result outlives the call), ``read_batch(out=)`` (copies into a
reused array) and ``view`` (zero-copy, like libbpf's callback). ``ratio`` = C ns / fastbpf ns per record (>= 1: fastbpf faster).

    python bench/bench_rings.py        # table
    python -m pytest bench/bench_rings.py --benchmark-only
"""

from __future__ import annotations

import mmap
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from fastbpf import Map, MapSpec, MapType, asm, perf, possible_cpus, ringbuf  # noqa: E402
from fastbpf.asm import R0, R1, R2, R3, R4, R5, R6, R7, R10, Helper, Size  # noqa: E402
from fastbpf.enums import ProgramType  # noqa: E402
from fastbpf.programs import Program, ProgramSpec  # noqa: E402

PKT = bytes(64)
REC64 = np.dtype([("seq", "<u8"), ("rest", "<u8", 7)])
# Rings large enough that a drain is dominated by records, not by the fixed
# cost of the first calls after a fill (the kernel's fill evicts the caches,
# so the first Python/numpy calls run cold: tens of µs, which at 12k records
# would be several ns per record).
RB_BYTES = 1 << 24            # ring buffer data area
RB_N = {"fixed": 200_000, "mix": 160_000}    # 72 B/record, mix averages 80 B
PERF_BYTES = 1 << 23          # per CPU
PERF_N = {"fixed": 95_000, "mix": 85_000}    # 80 B/sample, mix averages ~88 B
REPS = 15


def _filler(kind: str, target: Map, ctr: Map, mix: bool) -> Program:
    """XDP: seq = ctr[0]++; write a record of 64 bytes (or 16 * (1 + seq % 8)
    with *mix*) holding seq in every u64, via ringbuf_output or
    perf_event_output(BPF_F_CURRENT_CPU)."""
    body = [
        asm.Mov.reg(R6, R1),
        asm.store_imm(R10, -4, 0, Size.W),
        asm.Mov.reg(R2, R10), asm.Add.imm(R2, -4),
        asm.load_map_ptr(R1, "ctr"), asm.call(Helper.map_lookup_elem),
        asm.JEq.imm(R0, 0, "out"),
        asm.Mov.imm(R7, 1), asm.atomic_add(R0, 0, R7, Size.DW, fetch=True),
    ]
    body += [asm.store_mem(R10, -136 + off, R7, Size.DW) for off in range(0, 128, 8)]
    size = ([asm.Mov.reg(R0, R7), asm.And.imm(R0, 7), asm.Add.imm(R0, 1), asm.Lsh.imm(R0, 4)]
            if mix else [asm.Mov.imm(R0, 64)])
    body += size
    if kind == "ringbuf":
        body += [asm.load_map_ptr(R1, "out"), asm.Mov.reg(R2, R10), asm.Add.imm(R2, -136),
                 asm.Mov.reg(R3, R0), asm.Mov.imm(R4, 0), asm.call(Helper.ringbuf_output)]
    else:
        body += [asm.Mov.reg(R5, R0), asm.Mov.reg(R1, R6), asm.load_map_ptr(R2, "out"),
                 asm.Mov32.imm(R3, 0xFFFFFFFF), asm.Mov.reg(R4, R10), asm.Add.imm(R4, -136),
                 asm.call(Helper.perf_event_output)]
    body += [asm.Mov.imm(R0, 2).with_symbol("out"), asm.exit()]
    return Program.load(ProgramSpec(type=ProgramType.XDP, instructions=asm.Instructions(body)),
                        maps={"out": target, "ctr": ctr})


def _c_binary() -> str:
    src = os.path.join(HERE, "c", "rings.c")
    out = os.path.join(tempfile.gettempdir(), f"fastbpf_bench_rings_{os.getuid()}")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        subprocess.run(["gcc", "-O2", "-o", out, src, "-lbpf"], check=True)
    return out


def _run_c(kind: str, target: Map, prog: Program, n: int, reps: int) -> list[float]:
    args = [_c_binary(), kind, str(target.id), str(prog.info().id), str(n), str(reps),
            str(PERF_BYTES // mmap.PAGESIZE)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    times = []
    for line in out.split("\n"):
        if line.strip():
            ns, count, _ = (int(x) for x in line.split())
            if count != n:
                raise RuntimeError(f"C reader got {count} of {n} records")
            times.append(ns / n)
    return times


def _touch_fixed(arr: np.ndarray) -> int:
    return int(arr["seq"].sum())


def _touch_var(batch) -> int:
    # Sum the first u64 of each record. Records are 8-aligned except in a
    # perf view, where every raw sample sits at 4 mod 8 (after the 8-byte
    # header and the u32 size): view the data from that residue as
    # (unaligned) u64s and gather, like the aligned case.
    offs = batch.offsets
    data = batch.data
    r = int(offs[0]) % 8 if len(offs) else 0
    if r:
        words = data[r:r + (len(data) - r) // 8 * 8].view("<u8")
        return int(words[(offs - r) // 8].sum())
    return int(data.view("<u8")[offs // 8].sum())


def _time_py(reader, prog: Program, n: int, reps: int, form: str, mix: bool) -> list[float]:
    """Per-record ns of draining n records, *reps* times."""
    times = []
    out = np.empty(n, REC64)
    for _ in range(reps):
        prog.test_run(data=PKT, repeat=n)
        got = 0
        t0 = time.perf_counter_ns()
        while got < n:
            if form.startswith("read_batch"):
                if form == "read_batch" or mix:
                    res = reader.read_batch(dtype=None if mix else REC64, timeout=1.0)
                elif form == "read_batch(fields=)":
                    # only the column the loop reads: one pass, 8 bytes out
                    res = reader.read_batch(dtype=REC64, fields=("seq",), timeout=1.0)
                else:
                    res = reader.read_batch(out=out, timeout=1.0)
                if len(res) == 0:
                    break
                (_touch_var if mix else _touch_fixed)(res)
                got += len(res)
            else:
                with reader.view(dtype=None if mix else REC64, timeout=1.0) as res:
                    if len(res) == 0:
                        break
                    (_touch_var if mix else _touch_fixed)(res)
                    got += len(res)
        t1 = time.perf_counter_ns()
        if got != n:
            raise RuntimeError(f"fastbpf {form} got {got} of {n} records")
        times.append((t1 - t0) / n)
    return times


def _case(kind: str, mix: bool, reps: int = REPS) -> list[dict]:
    label = f"{kind} {'mix 16-128B' if mix else '64B'}"
    n = (RB_N if kind == "ringbuf" else PERF_N)["mix" if mix else "fixed"]
    if kind == "ringbuf":
        target = Map.create(MapSpec(type=MapType.RINGBUF, max_entries=RB_BYTES, name="fbbench_rb"))
    else:
        target = Map.create(MapSpec(type=MapType.PERF_EVENT_ARRAY, key=4, value=4,
                                    max_entries=possible_cpus(), name="fbbench_pe"))
    ctr = Map.create(MapSpec(type=MapType.ARRAY, key="<u4", value="<u8", max_entries=1))
    prog = _filler(kind, target, ctr, mix)
    rows = []
    try:
        results = {}
        reader = (ringbuf.Reader(target) if kind == "ringbuf"
                  else perf.Reader(target, per_cpu_bytes=PERF_BYTES))
        try:
            for form in ("read_batch", "view") if mix else ("read_batch", "read_batch(out=)", "read_batch(fields=)", "view"):
                _time_py(reader, prog, n, 2, form, mix)          # warm up
                results[form] = statistics.median(_time_py(reader, prog, n, reps, form, mix))
        finally:
            reader.close()     # the perf reader takes its events out of the map
        c = statistics.median(_run_c(kind, target, prog, n, reps))
        for form, ns in results.items():
            rows.append(dict(name=f"{label} {form}", fastbpf_ns=ns, c_ns=c, ratio=c / ns,
                             records=n))
    finally:
        prog.close()
        ctr.close()
        target.close()
    return rows


def _pinned(fn):
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    try:
        return fn()
    finally:
        os.sched_setaffinity(0, old)


def compare() -> list[dict]:
    """Rows of {name, fastbpf_ns, c_ns, ratio}: ns per record drained (and
    touched), ratio = c_ns / fastbpf_ns."""
    def run():
        rows = []
        for kind in ("ringbuf", "perf"):
            for mix in (False, True):
                rows += _case(kind, mix)
        return rows
    return _pinned(run)


# -- pytest-benchmark ---------------------------------------------------------------


def _bench(benchmark, kind: str, mix: bool, form: str) -> None:
    n = (RB_N if kind == "ringbuf" else PERF_N)["mix" if mix else "fixed"]
    if kind == "ringbuf":
        target = Map.create(MapSpec(type=MapType.RINGBUF, max_entries=RB_BYTES))
    else:
        target = Map.create(MapSpec(type=MapType.PERF_EVENT_ARRAY, key=4, value=4,
                                    max_entries=possible_cpus()))
    ctr = Map.create(MapSpec(type=MapType.ARRAY, key="<u4", value="<u8", max_entries=1))
    prog = _filler(kind, target, ctr, mix)
    reader = (ringbuf.Reader(target) if kind == "ringbuf"
              else perf.Reader(target, per_cpu_bytes=PERF_BYTES))
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    try:
        def fill():
            prog.test_run(data=PKT, repeat=n)
            return (), {}

        def drain():
            _time_py_once(reader, n, form, mix)

        benchmark.pedantic(drain, setup=fill, rounds=10)
    finally:
        os.sched_setaffinity(0, old)
        reader.close()
        prog.close()
        ctr.close()
        target.close()


def _time_py_once(reader, n: int, form: str, mix: bool) -> None:
    got = 0
    while got < n:
        if form == "read_batch":
            res = reader.read_batch(dtype=None if mix else REC64, timeout=1.0)
            (_touch_var if mix else _touch_fixed)(res)
            got += len(res)
        else:
            with reader.view(dtype=None if mix else REC64, timeout=1.0) as res:
                (_touch_var if mix else _touch_fixed)(res)
                got += len(res)


def test_ringbuf_batch_64(benchmark):
    _bench(benchmark, "ringbuf", False, "read_batch")


def test_ringbuf_view_64(benchmark):
    _bench(benchmark, "ringbuf", False, "view")


def test_perf_batch_64(benchmark):
    _bench(benchmark, "perf", False, "read_batch")


def test_ringbuf_batch_mix(benchmark):
    _bench(benchmark, "ringbuf", True, "read_batch")


def main() -> None:
    rows = compare()
    print(f"{'case':40} {'fastbpf ns/rec':>15} {'C ns/rec':>10} {'ratio':>7}  Mrec/s fastbpf / C")
    for r in rows:
        print(f"{r['name']:40} {r['fastbpf_ns']:15.2f} {r['c_ns']:10.2f} {r['ratio']:7.2f}  "
              f"{1e3 / r['fastbpf_ns']:6.1f} / {1e3 / r['c_ns']:.1f}")


if __name__ == "__main__":
    main()
