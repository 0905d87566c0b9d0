"""Count this process's system calls with a compiled BPF object.

Loads examples/syscalls.bpf.o (built from syscalls.bpf.c), sets a .rodata
constant before load (the process to watch), attaches the program to the
raw_syscalls:sys_enter tracepoint named by its section, makes some system
calls, and prints live numbers: a .bss global read through the mmapped map
(no syscall per read) and the per-syscall hash map as numpy arrays.

    python examples/count_syscalls.py [seconds]
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import fastbpf

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = {0: "read", 1: "write", 2: "open", 3: "close", 4: "stat", 5: "fstat", 8: "lseek",
         9: "mmap", 11: "munmap", 16: "ioctl", 39: "getpid", 257: "openat", 262: "newfstatat",
         318: "getrandom", 321: "bpf", 110: "getppid", 228: "clock_gettime", 35: "nanosleep",
         230: "clock_nanosleep", 7: "poll", 232: "epoll_wait", 281: "epoll_pwait"}


def main(seconds: float = 2.0) -> None:
    spec = fastbpf.load_collection_spec(os.path.join(HERE, "syscalls.bpf.o"))
    print(f"object: {spec}")
    print(f"  programs: {list(spec.programs)} (section {spec.programs['count_syscalls'].section!r})")
    print(f"  maps: {', '.join(f'{k} ({m.type.name})' for k, m in spec.maps.items())}")
    spec.variables["target_tgid"].set(os.getpid())      # .rodata, before load
    with spec.load() as coll:
        total = coll.variables["total"]                   # live, mmapped .bss
        counts = coll.maps["per_syscall"]
        with coll.programs["count_syscalls"].attach():    # tracepoint from the section name
            deadline = time.monotonic() + seconds
            tick = 0
            while time.monotonic() < deadline:
                for _ in range(100):                      # some traffic of our own
                    os.getpid()
                    os.getppid()
                with open("/proc/self/stat", "rb") as f:
                    f.read()
                time.sleep(0.25)
                tick += 1
                print(f"  t={tick * 0.25:4.2f}s  total syscalls seen: {int(total.value):6d}  "
                      f"last: {NAMES.get(int(coll.variables['last_syscall'].value), '?')}")
        keys, values = counts.lookup_batch()
        order = np.argsort(values)[::-1][:8]
        print("top system calls of this process while attached:")
        for k, v in zip(keys[order], values[order]):
            print(f"  {NAMES.get(int(k), f'#{int(k)}'):>14}: {int(v)}")
        assert int(values.sum()) == int(total.value)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 2.0)
