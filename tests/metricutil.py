"""Programs and typed maps for the metrics tests: real BPF filling real maps.

- :func:`flow_counter`: an XDP program counting packets per (IP protocol,
  destination address, destination port) in a per-CPU hash whose key
  carries BTF (``struct flow_key``), as a clang-built object's map would.
- :func:`length_histograms`: an XDP program (driven by test_run) that puts
  each packet's length into an exp2 histogram (per-CPU array, log2 slots,
  the sum of lengths in slot ``EXP2_SUM``) and a linear one (hash keyed by
  ``{kind = first byte, bucket = len / 32}``).
"""

from __future__ import annotations

import numpy as np

from fastbpf import Map, MapSpec, MapType, asm, btf
from fastbpf.asm import R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10, Helper, Size
from fastbpf.enums import ProgramType, XDPAction
from fastbpf.programs import Program, ProgramSpec

EXP2_BUCKETS = 64
EXP2_SUM = 21         # the sum slot: bucket_max (20) + 1, as ebpf_exporter reads it
LINEAR_SHIFT = 5      # linear buckets of 32 bytes

U8 = btf.Int("__u8", 1)
U16 = btf.Int("__u16", 2)
U32 = btf.Int("__u32", 4)
U64 = btf.Int("__u64", 8)
CHAR = btf.Int("char", 1, btf.IntEncoding.SIGNED)  # as clang emits it

#: struct flow_key { __u8 proto; __u8 pad[3]; __be32 daddr; __u16 dport; __u16 pad2; }
FLOW_KEY = btf.Struct("flow_key", 12, [("proto", U8, 0), ("pad", btf.Array(U8, 3), 8),
                                       ("daddr", U32, 32), ("dport", U16, 64),
                                       ("pad2", U16, 80)])
#: struct len_key { __u32 kind; __u32 bucket; }
LEN_KEY = btf.Struct("len_key", 8, [("kind", U32, 0), ("bucket", U32, 32)])


def flow_map(name: str, max_entries: int = 1024) -> Map:
    """PERCPU_HASH struct flow_key -> __u64."""
    return Map.create(MapSpec(MapType.PERCPU_HASH, key=FLOW_KEY, value=U64,
                              max_entries=max_entries, name=name))


def _count(m: Map, key_off: int, tmp_off: int, done: str, tag: str, add=None) -> list:
    """*m*[key at R10+key_off] += add (1 if None): lookup, then atomic add or insert."""
    add_insn = asm.Mov.imm(R1, 1) if add is None else asm.Mov.reg(R1, add)
    return [
        asm.load_map_ptr(R1, m),
        asm.Mov.reg(R2, R10), asm.Add.imm(R2, key_off),
        asm.call(Helper.map_lookup_elem),
        asm.JEq.imm(R0, 0, f"insert_{tag}"),
        add_insn,
        asm.atomic_add(R0, 0, R1, Size.DW),
        asm.ja(done),
        (asm.Mov.imm(R1, 1) if add is None else asm.Mov.reg(R1, add)).with_symbol(f"insert_{tag}"),
        asm.store_mem(R10, tmp_off, R1, Size.DW),
        asm.load_map_ptr(R1, m),
        asm.Mov.reg(R2, R10), asm.Add.imm(R2, key_off),
        asm.Mov.reg(R3, R10), asm.Add.imm(R3, tmp_off),
        asm.Mov.imm(R4, 0),
        asm.call(Helper.map_update_elem),
    ]


def flow_counter(m: Map) -> Program:
    """XDP: count IPv4 packets into *m* by (proto, daddr, bytes 36-37 = UDP dport)."""
    insns = [
        asm.Mov.reg(R6, R1),
        asm.load_mem(R2, R6, 0, Size.W),
        asm.load_mem(R3, R6, 4, Size.W),
        asm.Mov.reg(R4, R2), asm.Add.imm(R4, 38),
        asm.JGT.reg(R4, R3, "out"),
        asm.store_imm(R10, -16, 0, Size.DW),
        asm.store_imm(R10, -8, 0, Size.W),
        asm.load_mem(R5, R2, 23, Size.B), asm.store_mem(R10, -16, R5, Size.B),
        asm.load_mem(R5, R2, 30, Size.W), asm.store_mem(R10, -12, R5, Size.W),
        asm.load_mem(R5, R2, 36, Size.H), asm.store_mem(R10, -8, R5, Size.H),
    ] + _count(m, -16, -24, "out", "flow") + [
        asm.Mov.imm(R0, XDPAction.PASS).with_symbol("out"),
        asm.exit(),
    ]
    return Program.load(ProgramSpec(ProgramType.XDP, asm.Instructions(insns), name="fb_flows"))


def exp2_map(name: str) -> Map:
    """PERCPU_ARRAY u32 -> u64, EXP2_BUCKETS slots."""
    return Map.create(MapSpec(MapType.PERCPU_ARRAY, key=np.uint32, value=np.uint64,
                              max_entries=EXP2_BUCKETS, name=name))


def linear_map(name: str) -> Map:
    """HASH struct len_key -> __u64."""
    return Map.create(MapSpec(MapType.HASH, key=LEN_KEY, value=U64, max_entries=256, name=name))


def length_histograms(exp2: Map, linear: Map) -> Program:
    """XDP for test_run: exp2[log2(len)] += 1, exp2[EXP2_SUM] += len,
    linear[{data[0], len >> 5}] += 1."""
    log2 = []
    for s in (16, 8, 4, 2, 1):
        log2 += [asm.JLT.imm(R1, 1 << s, f"lt{s}"),
                 asm.Rsh.imm(R1, s), asm.Add.imm(R9, s),
                 asm.Mov.reg(R1, R1).with_symbol(f"lt{s}")]
    insns = [
        asm.Mov.reg(R6, R1),
        asm.load_mem(R2, R6, 0, Size.W),
        asm.load_mem(R3, R6, 4, Size.W),
        asm.Mov.reg(R7, R3), asm.Sub.reg(R7, R2),            # R7 = len
        asm.Mov.reg(R4, R2), asm.Add.imm(R4, 1),
        asm.JGT.reg(R4, R3, "out"),
        asm.load_mem(R8, R2, 0, Size.B),                     # R8 = kind
        asm.Mov.reg(R1, R7), asm.Mov.imm(R9, 0),
    ] + log2 + [
        asm.store_mem(R10, -4, R9, Size.W),
        asm.load_map_ptr(R1, exp2),
        asm.Mov.reg(R2, R10), asm.Add.imm(R2, -4),
        asm.call(Helper.map_lookup_elem),
        asm.JEq.imm(R0, 0, "sum"),
        asm.Mov.imm(R1, 1), asm.atomic_add(R0, 0, R1, Size.DW),
        asm.store_imm(R10, -4, EXP2_SUM, Size.W).with_symbol("sum"),
        asm.load_map_ptr(R1, exp2),
        asm.Mov.reg(R2, R10), asm.Add.imm(R2, -4),
        asm.call(Helper.map_lookup_elem),
        asm.JEq.imm(R0, 0, "linear"),
        asm.atomic_add(R0, 0, R7, Size.DW),
        asm.store_mem(R10, -16, R8, Size.W).with_symbol("linear"),
        asm.Mov.reg(R5, R7), asm.Rsh.imm(R5, LINEAR_SHIFT),
        asm.store_mem(R10, -12, R5, Size.W),
    ] + _count(linear, -16, -24, "out", "lin") + [
        asm.Mov.imm(R0, XDPAction.PASS).with_symbol("out"),
        asm.exit(),
    ]
    return Program.load(ProgramSpec(ProgramType.XDP, asm.Instructions(insns), name="fb_lens"))


def send_lengths(prog: Program, lengths: list[int], kinds: list[int]) -> None:
    """One test_run per packet: *lengths[i]* bytes whose first byte is *kinds[i]*."""
    for n, k in zip(lengths, kinds):
        data = bytearray(n)
        data[0] = k
        res = prog.test_run(bytes(data))
        assert res.retval == XDPAction.PASS


def exp2_slot(n: int) -> int:
    """floor(log2(n)), the slot :func:`length_histograms` uses."""
    return n.bit_length() - 1
