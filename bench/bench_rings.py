"""Records per second drained from a BPF ring buffer and a perf event array:
fastbpf's batch readers against libbpf's callback readers (C), same run.

Method. A filler XDP program (sequence number in every u64 of the record)
fills the ring with N records through one BPF_PROG_TEST_RUN (repeat=N, not
timed); then the ring is drained and timed, and every record is touched (its
first u64 summed). The reader runs on CPU 0. The fill runs in a forked child
pinned to CPU 1, as a kernel producer would on a busy machine; the reader
asks for a fill through a pipe and waits for it by spinning on shared memory,
so no system call or context switch happens on the reader's CPU between the
fill and the drain. (A test run on the reader's own CPU leaves the next tens
of microseconds of user code running cold on this VM, which would mostly
measure the size of each side's code.) Without a second CPU the reader fills
on its own CPU.

The C program (``bench/c/rings.c``, built here with ``gcc -O2 -lbpf``) opens
the same map and filler program by id and does the same with
``ring_buffer__poll`` / ``perf_buffer__poll`` and a callback, with its own
forked filler. C and fastbpf take turns in rounds, so drift in the machine
hits both; the figure is the median over all rounds. In every round each
side drops its first drain of each form (a fresh reader faults in the
ring's pages; a form's first large array faults in its memory).

Cases: 64-byte records and a variable-size mix (16..128 bytes), 200k
records per fill for the ring buffer, 190k (170k mix) for perf. fastbpf forms:
``view`` (zero-copy batches, like the callback's pointer into the ring),
``read_batch(fields=)`` (copies only the column the loop reads),
``read_batch(out=)`` (copies whole records into a reused array, 16k at a
time), ``read_batch`` (copies everything ready into a new array); for the
mix, ``view(head=)`` also copies each record's first u64 (the header that
variable-size events share) during the scan, and ``read_batch(dtype=header)``
copies that header and nothing else.
``ratio`` = C ns / fastbpf ns per record (>= 1: fastbpf is faster).

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
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))  # progs.py

from fastbpf import Map, MapSpec, MapType, asm, perf, possible_cpus, ringbuf  # noqa: E402
from fastbpf.asm import R0, R1, R2, R3, R4, R5, R6, R7, R10, Helper, Size  # noqa: E402
from fastbpf.enums import ProgramType  # noqa: E402
from fastbpf.programs import Program, ProgramSpec  # noqa: E402
import progs  # noqa: E402

PKT = bytes(64)
REC64 = np.dtype([("seq", "<u8"), ("rest", "<u8", 7)])
HEAD = np.dtype([("seq", "<u8")])   # the first u64 of a mix record: its header
# Rings large enough that a drain is dominated by records, not by the fixed
# cost of the first calls after a fill (the kernel's fill evicts the caches,
# so the first Python/numpy calls run cold: tens of µs, which at 12k records
# would be several ns per record).
RB_BYTES = 1 << 24            # ring buffer data area
RB_N = {"fixed": 200_000, "mix": 160_000}    # 72 B/record, mix averages 80 B
PERF_BYTES = 1 << 24          # per CPU: as many records as the ring buffer's
PERF_N = {"fixed": 190_000, "mix": 170_000}  # 80 B/sample, mix averages ~88 B
ROUNDS = 5                    # C and fastbpf take turns this many times
REPS = 4                      # drains per form per round
OUT_RECORDS = 16384           # read_batch(out=): the reused array's length


def _filler(kind: str, target: Map, ctr: Map, mix: bool) -> Program:
    """XDP: seq = ctr[0]++; write a record of 64 bytes (or 16 * (1 + seq % 8)
    with *mix*) holding seq in every u64, via ringbuf_output or
    perf_event_output(BPF_F_CURRENT_CPU)."""
    body = progs.seq_prologue("ctr")
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


class _Fill:
    """Fills through *prog* from a forked child pinned to another CPU (see
    the module's notes), or in-process when there is one CPU."""

    def __init__(self, prog: Program, n: int, reader_cpu: int = 0) -> None:
        self.prog, self.n = prog, n
        # (the reader may already be pinned: ask for the machine's CPUs)
        others = sorted(set(perf.online_cpus()) - {reader_cpu})
        self.cpu = others[0] if others else None
        self.pid = None
        if self.cpu is None:
            return
        self._shm = mmap.mmap(-1, mmap.PAGESIZE)
        self._done = np.frombuffer(self._shm, np.uint64, 1)
        self._asked = 0
        rfd, self._wfd = os.pipe()
        pid = os.fork()
        if pid == 0:                               # the filler: test runs only
            try:
                os.close(self._wfd)
                os.sched_setaffinity(0, {self.cpu})
                while os.read(rfd, 1) == b"f":
                    prog.test_run(data=PKT, repeat=n)
                    self._done[0] += 1
            finally:
                os._exit(0)
        os.close(rfd)
        self.pid = pid

    def __call__(self) -> None:
        if self.pid is None:
            self.prog.test_run(data=PKT, repeat=self.n)
            return
        self._asked += 1
        os.write(self._wfd, b"f")
        spins = 0
        while int(self._done[0]) != self._asked:   # spin: no syscall on the reader's CPU
            spins += 1
            if spins % 1_000_000 == 0 and os.waitpid(self.pid, os.WNOHANG)[0]:
                self.pid = None
                raise RuntimeError("the filler process died")

    def close(self) -> None:
        if self.pid is not None:
            os.close(self._wfd)
            os.waitpid(self.pid, 0)
            self.pid = None


def _c_binary() -> str:
    src = os.path.join(HERE, "c", "rings.c")
    out = os.path.join(tempfile.gettempdir(), f"fastbpf_bench_rings_{os.getuid()}")
    newest = max(os.path.getmtime(os.path.join(HERE, "c", f)) for f in ("rings.c", "ring_common.h"))
    if not os.path.exists(out) or os.path.getmtime(out) < newest:
        subprocess.run(["gcc", "-O2", "-o", out, src, "-lbpf"], check=True)
    return out


def _run_c(kind: str, target: Map, prog: Program, n: int, reps: int,
           fill_cpu: int | None) -> list[float]:
    # one more rep than asked: the first drain after opening a reader
    # faults in the ring's pages, and is dropped (as on the Python side)
    args = [_c_binary(), kind, str(target.id), str(prog.info().id), str(n), str(reps + 1),
            str(PERF_BYTES // mmap.PAGESIZE), str(-1 if fill_cpu is None else fill_cpu)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    times = []
    for line in out.split("\n"):
        if line.strip():
            ns, count, _ = (int(x) for x in line.split())
            if count != n:
                raise RuntimeError(f"C reader got {count} of {n} records")
            times.append(ns / n)
    return times[1:]


def _touch_fixed(arr: np.ndarray) -> int:
    return int(arr["seq"].sum())


_HEADS = np.empty(max(RB_N["mix"], PERF_N["mix"]), "<u8")


def _touch_var(batch) -> int:
    # The first u64 of every record, gathered by one C loop into a reused
    # aligned array (a perf view's samples sit at 4 mod 8), then summed.
    return int(batch.as_array("<u8", out=_HEADS).sum())


def _drain(reader, n: int, form: str, mix: bool, out: np.ndarray) -> None:
    # (a RecordBatch's records are gathered; arrays have a "seq" column)
    touch = _touch_var if mix and form in ("view", "read_batch") else _touch_fixed
    got = 0
    while got < n:
        if form in ("view", "view(head=)"):
            # view(head=): zero-copy records, their header gathered in the scan
            head = HEAD if form == "view(head=)" else None
            with reader.view(dtype=None if mix else REC64, head=head, timeout=1.0) as res:
                if len(res) == 0:
                    break
                touch(res if head is None else res.heads)
                got += len(res)
            continue
        if form == "read_batch":
            res = reader.read_batch(dtype=None if mix else REC64, timeout=1.0)
        elif form == "read_batch(fields=)":
            # only the column the loop reads: one pass, 8 bytes out
            res = reader.read_batch(dtype=REC64, fields=("seq",), timeout=1.0)
        elif form == "read_batch(dtype=header)":
            # the header variable-size records share: their first u64
            res = reader.read_batch(dtype=HEAD, timeout=1.0)
        else:
            res = reader.read_batch(out=out, timeout=1.0)
        if len(res) == 0:
            break
        touch(res)
        got += len(res)
    if got != n:
        raise RuntimeError(f"fastbpf {form} got {got} of {n} records")


def _time_py(reader, fill: _Fill, n: int, reps: int, form: str, mix: bool) -> list[float]:
    """Per-record ns of draining n records, *reps* times."""
    times = []
    out = np.empty(OUT_RECORDS, REC64)
    for _ in range(reps):
        fill()
        t0 = time.perf_counter_ns()
        _drain(reader, n, form, mix, out)
        times.append((time.perf_counter_ns() - t0) / n)
    return times


def _forms(mix: bool) -> tuple[str, ...]:
    if mix:
        return ("view", "view(head=)", "read_batch(dtype=header)", "read_batch")
    return ("view", "read_batch(fields=)", "read_batch(out=)", "read_batch")


def _open(kind: str, target: Map):
    return (ringbuf.Reader(target) if kind == "ringbuf"
            else perf.Reader(target, per_cpu_bytes=PERF_BYTES))


def _case(kind: str, mix: bool, rounds: int = ROUNDS, reps: int = REPS) -> list[dict]:
    label = f"{kind} {'mix 16-128B' if mix else '64B'}"
    n = (RB_N if kind == "ringbuf" else PERF_N)["mix" if mix else "fixed"]
    if kind == "ringbuf":
        target = Map.create(MapSpec(type=MapType.RINGBUF, max_entries=RB_BYTES, name="fbbench_rb"))
    else:
        target = Map.create(MapSpec(type=MapType.PERF_EVENT_ARRAY, key=4, value=4,
                                    max_entries=possible_cpus(), name="fbbench_pe"))
    ctr = Map.create(MapSpec(type=MapType.ARRAY, key="<u4", value="<u8", max_entries=1))
    prog = _filler(kind, target, ctr, mix)
    fill = _Fill(prog, n)
    try:
        results: dict[str, list[float]] = {f: [] for f in _forms(mix)}
        c_times: list[float] = []
        for rnd in range(rounds):
            # A ring has one consumer: the reader is closed (the perf one
            # takes its events out of the map) before the C reader runs.
            with _open(kind, target) as reader:
                for form in results:
                    _time_py(reader, fill, n, 1, form, mix)       # warm up (see _run_c)
                    results[form] += _time_py(reader, fill, n, reps, form, mix)
            c_times += _run_c(kind, target, prog, n, reps, fill.cpu)
        c = statistics.median(c_times)
        return [dict(name=f"{label} {form}", fastbpf_ns=statistics.median(ts), c_ns=c,
                     ratio=c / statistics.median(ts), records=n)
                for form, ts in results.items()]
    finally:
        fill.close()
        prog.close()
        ctr.close()
        target.close()


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
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    fill = _Fill(prog, n)
    reader = _open(kind, target)
    out = np.empty(OUT_RECORDS, REC64)
    try:
        def setup():
            fill()
            return (), {}

        benchmark.pedantic(lambda: _drain(reader, n, form, mix, out), setup=setup, rounds=10)
    finally:
        reader.close()
        fill.close()
        os.sched_setaffinity(0, old)
        prog.close()
        ctr.close()
        target.close()


def test_ringbuf_view_64(benchmark):
    _bench(benchmark, "ringbuf", False, "view")


def test_ringbuf_fields_64(benchmark):
    _bench(benchmark, "ringbuf", False, "read_batch(fields=)")


def test_ringbuf_batch_64(benchmark):
    _bench(benchmark, "ringbuf", False, "read_batch")


def test_ringbuf_view_mix(benchmark):
    _bench(benchmark, "ringbuf", True, "view")


def test_perf_view_64(benchmark):
    _bench(benchmark, "perf", False, "view")


def test_perf_batch_64(benchmark):
    _bench(benchmark, "perf", False, "read_batch")


def main() -> None:
    rows = compare()
    print(f"{'case':40} {'fastbpf ns/rec':>15} {'C ns/rec':>10} {'ratio':>7}  Mrec/s fastbpf / C")
    for r in rows:
        print(f"{r['name']:40} {r['fastbpf_ns']:15.2f} {r['c_ns']:10.2f} {r['ratio']:7.2f}  "
              f"{1e3 / r['fastbpf_ns']:6.1f} / {1e3 / r['c_ns']:.1f}")


if __name__ == "__main__":
    main()
