"""A log2 histogram of how long this process's sleeps really take.

Two tracepoint programs time every ``clock_nanosleep`` of this process:
the entry one stores the start time in a hash keyed by thread, the exit one
computes the latency, takes its log2 (in units of 1024 ns, about a
microsecond) and counts it in an array of 64 buckets. Python sleeps a few
different durations and prints the histogram, like BCC's ``funclatency``.

Run as root: ``python3 examples/latency_histogram.py``.
"""

from __future__ import annotations

import os
import time

import numpy as np

from fastbpf import Map, MapSpec, MapType, Program, ProgramSpec, ProgramType, asm
from fastbpf.asm import R0, R1, R2, R3, R4, R6, R7, R10, Helper, Size
from fastbpf.link import attach_tracepoint

SLEEPS = {0.001: 20, 0.004: 10, 0.016: 5}     # seconds -> how many times


def log2(reg: int, out: int, tmp: int) -> list[asm.Instruction]:
    """out = floor(log2(reg)) (0 for 0 and 1), by binary search; clobbers reg, tmp."""
    code = [asm.Mov.imm(out, 0),
            asm.load_imm64(tmp, 1 << 32),
            asm.JLT.reg(reg, tmp, "b16"),
            asm.Rsh.imm(reg, 32), asm.Add.imm(out, 32)]
    for bits, label, nxt in ((16, "b16", "b8"), (8, "b8", "b4"), (4, "b4", "b2"),
                             (2, "b2", "b1"), (1, "b1", "done")):
        code += [asm.JLT.imm(reg, 1 << bits, nxt).with_symbol(label),
                 asm.Rsh.imm(reg, bits), asm.Add.imm(out, bits)]
    code.append(asm.Mov.reg(tmp, tmp).with_symbol("done"))   # a landing spot
    return code


def main() -> np.ndarray:
    """Sleep as in SLEEPS while the programs watch; return the 64 buckets."""
    tgid = os.getpid()
    with Map.create(MapSpec(MapType.HASH, key=np.uint64, value=np.uint64, max_entries=1024,
                            name="sleep_start")) as start, \
            Map.create(MapSpec(MapType.ARRAY, key=4, value=np.uint64, max_entries=64,
                               name="sleep_hist")) as hist:
        enter = asm.Instructions([
            asm.call(Helper.get_current_pid_tgid),
            asm.Mov.reg(R1, R0), asm.Rsh.imm(R1, 32),
            asm.JNE.imm(R1, tgid, "out"),                   # another process's sleep
            asm.store_mem(R10, -8, R0, Size.DW),            # key: this thread
            asm.call(Helper.ktime_get_ns),
            asm.store_mem(R10, -16, R0, Size.DW),
            asm.load_map_ptr(R1, start),
            asm.Mov.reg(R2, R10), asm.Add.imm(R2, -8),
            asm.Mov.reg(R3, R10), asm.Add.imm(R3, -16),
            asm.Mov.imm(R4, 0),
            asm.call(Helper.map_update_elem),
            asm.Mov.imm(R0, 0).with_symbol("out"),
            asm.exit(),
        ])
        leave = asm.Instructions([
            asm.call(Helper.get_current_pid_tgid),
            asm.Mov.reg(R6, R0), asm.Rsh.imm(R0, 32),
            asm.JNE.imm(R0, tgid, "out"),
            asm.store_mem(R10, -8, R6, Size.DW),
            asm.load_map_ptr(R1, start),
            asm.Mov.reg(R2, R10), asm.Add.imm(R2, -8),
            asm.call(Helper.map_lookup_elem),
            asm.JEq.imm(R0, 0, "out"),                      # slept before we attached
            asm.load_mem(R7, R0, 0, Size.DW),
            asm.call(Helper.ktime_get_ns),
            asm.Sub.reg(R0, R7),
            asm.Rsh.imm(R0, 10),                            # ns -> ~us
            *log2(R0, R6, R7),
            asm.store_mem(R10, -12, R6, Size.W),            # bucket index
            asm.load_map_ptr(R1, hist),
            asm.Mov.reg(R2, R10), asm.Add.imm(R2, -12),
            asm.call(Helper.map_lookup_elem),
            asm.JEq.imm(R0, 0, "forget"),
            asm.Mov.imm(R1, 1),
            asm.atomic_add(R0, 0, R1, Size.DW),
            asm.load_map_ptr(R1, start).with_symbol("forget"),
            asm.Mov.reg(R2, R10), asm.Add.imm(R2, -8),
            asm.call(Helper.map_delete_elem),
            asm.Mov.imm(R0, 0).with_symbol("out"),
            asm.exit(),
        ])
        with Program.load(ProgramSpec(ProgramType.TRACEPOINT, enter, name="sleep_enter")) as a, \
                Program.load(ProgramSpec(ProgramType.TRACEPOINT, leave, name="sleep_exit")) as b, \
                attach_tracepoint(a, "syscalls", "sys_enter_clock_nanosleep"), \
                attach_tracepoint(b, "syscalls", "sys_exit_clock_nanosleep"):
            for seconds, times in SLEEPS.items():
                for _ in range(times):
                    time.sleep(seconds)
        _, counts = hist.lookup_batch()
        counts = counts.copy()
    print("     usecs        : count  distribution")
    top = max(int(counts.max()), 1)
    for i in np.nonzero(counts)[0]:
        lo, hi = (1 << int(i)) if i else 0, (1 << (int(i) + 1)) - 1
        bar = "*" * int(40 * counts[i] / top)
        print(f"{lo:>8} -> {hi:<8}: {int(counts[i]):<5}  |{bar:<40}|")
    out: np.ndarray = counts
    return out


if __name__ == "__main__":
    main()
