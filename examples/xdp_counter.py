"""Count packets per IP protocol with XDP on one end of a veth pair.

Sets up a network namespace joined to this one by a veth pair, attaches an
XDP program to this end, sends UDP datagrams from the other end, and reads
the per-CPU counters (one slot per IP protocol number), summed over CPUs.
Everything it creates is removed at the end.

Run as root: ``python3 examples/xdp_counter.py [N]``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import numpy as np

from fastbpf import Map, MapSpec, MapType, Program, ProgramSpec, ProgramType, asm
from fastbpf.asm import R0, R1, R2, R3, R6, R10, Helper, Size
from fastbpf.link import attach_xdp


def sh(*cmd: str) -> None:
    """Run a command; fail loudly."""
    subprocess.run(cmd, check=True, capture_output=True)


def mac(ifname: str) -> str:
    """The MAC address of *ifname* in this namespace."""
    with open(f"/sys/class/net/{ifname}/address") as f:
        return f.read().strip()


def counter_program(counts: Map) -> asm.Instructions:
    """counts[ip->protocol] += 1 for IPv4 packets; every packet passes."""
    return asm.Instructions([
        asm.load_mem(R2, R1, 0, Size.W),                # data
        asm.load_mem(R3, R1, 4, Size.W),                # data_end
        asm.Mov.reg(R6, R2),
        asm.Add.imm(R6, 24),                            # eth (14) + ip up to protocol (10)
        asm.JGT.reg(R6, R3, "pass"),                    # too short: the verifier insists
        asm.load_mem(R6, R2, 12, Size.H),               # ethertype, network order
        asm.JNE.imm(R6, 0x0008, "pass"),                # 0x0800 read little-endian
        asm.load_mem(R6, R2, 23, Size.B),               # ip->protocol
        asm.store_mem(R10, -4, R6, Size.W),
        asm.Mov.reg(R2, R10),
        asm.Add.imm(R2, -4),
        asm.load_map_ptr(R1, counts),
        asm.call(Helper.map_lookup_elem),
        asm.JEq.imm(R0, 0, "pass"),
        asm.load_mem(R1, R0, 0, Size.DW),               # per-CPU slot: plain add
        asm.Add.imm(R1, 1),
        asm.store_mem(R0, 0, R1, Size.DW),
        asm.Mov.imm(R0, 2).with_symbol("pass"),         # XDP_PASS
        asm.exit(),
    ])


def main(n: int = 20) -> dict[int, int]:
    """Send *n* UDP datagrams through the veth pair; return {protocol: packets}."""
    tag = uuid.uuid4().hex[:6]
    ns, here, there = f"fbx{tag}", f"fbxa{tag}", f"fbxb{tag}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", here, "type", "veth", "peer", "name", there, "netns", ns)
        nsenter = ["nsenter", f"--net=/var/run/netns/{ns}"]
        for cmd in (["sysctl", "-qw", f"net.ipv6.conf.{here}.disable_ipv6=1"],
                    ["ip", "addr", "add", "10.231.0.1/24", "dev", here],
                    ["ip", "link", "set", here, "up"],
                    nsenter + ["sysctl", "-qw", f"net.ipv6.conf.{there}.disable_ipv6=1"],
                    nsenter + ["ip", "addr", "add", "10.231.0.2/24", "dev", there],
                    nsenter + ["ip", "link", "set", there, "up"],
                    # No ARP: the only packets are the datagrams.
                    nsenter + ["ip", "neigh", "add", "10.231.0.1", "lladdr", mac(here),
                               "dev", there, "nud", "permanent"]):
            sh(*cmd)
        with Map.create(MapSpec(MapType.PERCPU_ARRAY, key=4, value=np.uint64, max_entries=256,
                                name="proto_count")) as counts, \
                Program.load(ProgramSpec(ProgramType.XDP, counter_program(counts),
                                         name="xdp_count")) as prog, \
                attach_xdp(prog, here, mode="generic"):
            send = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                    f"[s.sendto(b'hello', ('10.231.0.1', 9)) for _ in range({n})]")
            sh(*nsenter, sys.executable, "-c", send)
            _, per_cpu = counts.lookup_batch()
            totals = per_cpu.sum(axis=1)
            result = {int(p): int(c) for p, c in enumerate(totals) if c}
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # takes the veth along
    print(f"sent {n} UDP datagrams; XDP counted per IP protocol: {result}")
    return result


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("run as root")
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
