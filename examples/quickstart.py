"""fastbpf quickstart: maps, a program, and numpy out.

Creates a hash map and a per-CPU array, loads an XDP program written with
fastbpf.asm that counts packets per CPU, runs it on a test packet 1000 times,
and reads everything back as numpy arrays the kernel wrote into.
"""

import numpy as np

import fastbpf
from fastbpf import Map, MapSpec, MapType, Program, ProgramSpec, ProgramType, asm
from fastbpf.asm import R0, R1, R2, R10, Helper, Size

# 1. A hash map of flows -> counters, filled and read back in one batch each.
flow = np.dtype([("saddr", "<u4"), ("daddr", "<u4"), ("sport", "<u2"), ("dport", "<u2")])
with Map.create(MapSpec(type=MapType.HASH, key=flow, value=np.uint64,
                        max_entries=1 << 16, name="flows")) as flows:
    keys = np.zeros(5, dtype=flow)
    keys["saddr"] = 0x0A000001
    keys["daddr"] = 0x0A000002
    keys["sport"] = np.arange(40000, 40005)
    keys["dport"] = 443
    flows.update_batch(keys, np.arange(5, dtype=np.uint64) * 100)
    flows[(0x0A000001, 0x0A000002, 40000, 443)] += 1     # scalar ops, like a dict
    k, v = flows.lookup_batch()                           # whole map -> numpy
    order = np.argsort(k["sport"])
    print("flows (structured keys):")
    for rec, count in zip(k[order], v[order]):
        print(f"  sport={rec['sport']} dport={rec['dport']} -> {count}")

# 2. A per-CPU counter updated by an XDP program.
counters = Map.create(MapSpec(type=MapType.PERCPU_ARRAY, key=4, value=np.uint64,
                              max_entries=1, name="pkt_count"))
program = asm.Instructions([
    asm.store_imm(R10, -4, 0, Size.W),          # key = 0
    asm.Mov.reg(R2, R10),
    asm.Add.imm(R2, -4),
    asm.load_map_ptr(R1, counters),
    asm.call(Helper.map_lookup_elem),
    asm.JEq.imm(R0, 0, "out"),
    asm.load_mem(R1, R0, 0, Size.DW),           # per-CPU slot: no atomics needed
    asm.Add.imm(R1, 1),
    asm.store_mem(R0, 0, R1, Size.DW),
    asm.Mov.imm(R0, 2).with_symbol("out"),      # XDP_PASS
    asm.exit(),
])
print("\nthe program:")
print(program)
with Program.load(ProgramSpec(type=ProgramType.XDP, instructions=program,
                              name="count_pkts")) as prog:
    result = prog.test_run(data=bytes(64), repeat=1000)
    print(f"\ntest_run: retval={result.retval} (XDP_PASS), "
          f"{result.duration_ns} ns per run, output packet {result.data.nbytes} bytes")
    per_cpu = counters[0]                       # shape (possible CPUs,)
    print(f"per-CPU counts: {per_cpu} (sum {per_cpu.sum()}), "
          f"{fastbpf.possible_cpus()} possible CPUs")
    info = prog.info()
    print(f"program id {info.id}, tag {info.tag}, uses map ids {info.map_ids}")
counters.close()
