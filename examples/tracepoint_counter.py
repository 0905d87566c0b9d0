"""Count this process's getpid() calls with a tracepoint program.

A TRACEPOINT program on ``syscalls:sys_enter_getpid`` adds one to an array
slot when the calling process is this one (the tracepoint fires for every
process on the machine), and Python reads the count back.

Run as root: ``python3 examples/tracepoint_counter.py [N]``.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from fastbpf import Map, MapSpec, MapType, Program, ProgramSpec, ProgramType, asm
from fastbpf.asm import R0, R1, R2, R10, Helper, Size
from fastbpf.link import attach_tracepoint


def main(n: int = 100) -> int:
    """Attach, call getpid() *n* times, return what the program counted."""
    with Map.create(MapSpec(MapType.ARRAY, key=4, value=np.uint64, max_entries=1,
                            name="getpid_count")) as counts:
        prog = asm.Instructions([
            asm.call(Helper.get_current_pid_tgid),
            asm.Rsh.imm(R0, 32),                        # the tgid: the process id
            asm.JNE.imm(R0, os.getpid(), "out"),        # someone else's call
            asm.store_imm(R10, -4, 0, Size.W),          # key 0
            asm.Mov.reg(R2, R10),
            asm.Add.imm(R2, -4),
            asm.load_map_ptr(R1, counts),
            asm.call(Helper.map_lookup_elem),
            asm.JEq.imm(R0, 0, "out"),
            asm.Mov.imm(R1, 1),
            asm.atomic_add(R0, 0, R1, Size.DW),
            asm.Mov.imm(R0, 0).with_symbol("out"),
            asm.exit(),
        ])
        with Program.load(ProgramSpec(ProgramType.TRACEPOINT, prog, name="count_getpid")) as p:
            with attach_tracepoint(p, "syscalls", "sys_enter_getpid"):
                for _ in range(n):
                    os.getpid()
        counted = int(counts[0])
    print(f"getpid() called {n} times, the tracepoint program counted {counted}")
    return counted


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
