"""BPF_PROG_TEST_RUN per call: fastbpf's ``Program.test_run`` vs raw C.

Run as a script for the comparison (both sides measured in this run):

    python bench/bench_test_run.py [calls [rounds]]

or under pytest-benchmark: ``pytest bench/bench_test_run.py``.

Both sides load the same two-instruction XDP program (``r0 = XDP_PASS;
exit``) and call BPF_PROG_TEST_RUN with repeat=1 on a 64-byte packet, with
an output buffer of 64 + 512 bytes. The C side (bench/c/test_run.c, built
here with gcc, no libbpf) is a plain loop over the syscall; the fastbpf side
is ``prog.test_run(data=pkt, repeat=1)``, returning a result with the
output packet as a numpy array. The two run in alternating short rounds and
each side's best round counts, so a burst of load on the machine hits
neither side alone, and two runs agree on the minimum. Both sides count
thread CPU time, not wall time (see bench_maps.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

# Like with like: the C baseline is a single-threaded process. numpy's
# OpenBLAS starts a thread per core at import, and in a process with threads
# the kernel's fdget() takes and drops a reference on the file at every
# bpf(2) call (the fd table is shared): +35-45 ns a call, measured with perf
# (fput, fdget), which C pays as much once it has a thread. The Python side
# runs single-threaded too, unless the caller chose otherwise.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np  # noqa: E402

from fastbpf import asm  # noqa: E402
from fastbpf.enums import ProgramType  # noqa: E402
from fastbpf.programs import Program, ProgramSpec  # noqa: E402

BUILD = os.path.join(HERE, "build")
CALLS = 20_000         # calls per sample: short, so many samples fit a quiet moment
ROUNDS = 21
XDP_PASS = 2


def build_baseline() -> str:
    """Compile bench/c/test_run.c (once) and return the binary's path."""
    src = os.path.join(HERE, "c", "test_run.c")
    exe = os.path.join(BUILD, "test_run")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        os.makedirs(BUILD, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-Wall", "-o", exe, src], check=True)
    return exe


def load_program() -> Program:
    """The XDP program both sides run."""
    insns = asm.Instructions([asm.Mov.imm(asm.R0, XDP_PASS), asm.exit()])
    return Program.load(ProgramSpec(ProgramType.XDP, insns, name="bench_test_run"))


def packet() -> np.ndarray:
    return np.full(64, 0xAB, dtype=np.uint8)


def c_ns_per_call(exe: str, calls: int) -> float:
    out = subprocess.run([exe, str(calls)], check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


def fastbpf_ns_per_call(prog: Program, pkt: np.ndarray, calls: int) -> float:
    test_run = prog.test_run
    for _ in range(calls // 10):        # warm up, as the C side does
        test_run(data=pkt, repeat=1)
    t0 = time.thread_time_ns()
    for _ in range(calls):
        test_run(data=pkt, repeat=1)
    return (time.thread_time_ns() - t0) / calls


def compare(calls: int = CALLS, rounds: int = ROUNDS) -> list[dict]:
    """Measure both sides in this run; one row."""
    exe = build_baseline()
    pkt = packet()
    with load_program() as prog:
        r = prog.test_run(data=pkt, repeat=1)
        assert r.retval == XDP_PASS and r.data.tobytes() == pkt.tobytes()
        c_best = py_best = float("inf")
        for _ in range(rounds):
            c_best = min(c_best, c_ns_per_call(exe, calls))
            py_best = min(py_best, fastbpf_ns_per_call(prog, pkt, calls))
    return [dict(name="test_run XDP, 64 B packet, repeat=1", fastbpf_ns=py_best,
                 c_ns=c_best, ratio=py_best / c_best, overhead_ns=py_best - c_best)]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    calls = int(argv[0]) if argv else CALLS
    rounds = int(argv[1]) if len(argv) > 1 else ROUNDS
    for row in compare(calls, rounds):
        print(f"{row['name']}")
        print(f"  fastbpf  {row['fastbpf_ns']:8.0f} ns/call")
        print(f"  C        {row['c_ns']:8.0f} ns/call")
        print(f"  ratio    {row['ratio']:8.2f}x  (goal <= 1.10)")
        print(f"  overhead {row['overhead_ns']:+8.0f} ns/call")
    return 0


# -- pytest-benchmark -------------------------------------------------------------

def test_bench_test_run_xdp(benchmark):
    pkt = packet()
    with load_program() as prog:
        r = benchmark(prog.test_run, data=pkt, repeat=1)
        assert r.retval == XDP_PASS


def test_bench_test_run_xdp_with_data(benchmark):
    """The same, reading the output packet (makes the numpy array)."""
    pkt = packet()
    with load_program() as prog:
        data = benchmark(lambda: prog.test_run(data=pkt, repeat=1).data)
        assert len(data) == 64


if __name__ == "__main__":
    sys.exit(main())
