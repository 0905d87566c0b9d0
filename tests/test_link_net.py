"""Networking hooks with real packets: XDP, tc (tcx and cls_bpf), socket
filters, cgroup v2, sk_lookup, netfilter and flow dissector attachments.

Counters are per-CPU arrays summed over CPUs and checked exactly: the veth
pairs have IPv6 off and permanent neighbour entries, so no packet crosses
them except the test's own.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from fastbpf import _core, asm, features, link
from fastbpf.asm import R0, R1, R2, R3, R6, R7, R10, Helper, Size
from fastbpf.enums import AttachFlags, AttachType, LinkType, MapType, ProgramType, XDPAction
from fastbpf.errors import BPFError, ClosedError, TargetNotFoundError
from fastbpf.link.cgroup import open_cgroup
from fastbpf.maps import Map, MapSpec
from fastbpf.programs import Program, ProgramSpec

pytestmark = pytest.mark.kernel

sys.path.insert(0, os.path.dirname(__file__))
import netutil  # noqa: E402
import progs  # noqa: E402

UDP_PORT = 9999


# ---------------------------------------------------------------------------
# helpers


def counter_map() -> Map:
    return Map.create(MapSpec(MapType.PERCPU_ARRAY, key=np.uint32, value=np.uint64,
                              max_entries=1, name="fb_count"))


def count(m: Map) -> int:
    """The counter summed over CPUs."""
    return int(np.sum(m[0]))


def count_block(m: Map, done: str) -> list:
    """counter[0] += 1 on this CPU; falls through (or jumps to *done* if the
    lookup fails). Clobbers R0-R5."""
    # Per-CPU memory: no other CPU writes this slot, but the atomic is as
    # cheap and keeps the program correct if the map type changes.
    return progs.add_to_slot(m, 0, done)


def counting_insns(m: Map, retval: int) -> asm.Instructions:
    """counter[0] += 1 on this CPU, then return *retval*."""
    return asm.Instructions(count_block(m, "out") + [
        asm.Mov.imm(R0, retval).with_symbol("out"),
        asm.exit(),
    ])


def counting_prog(ptype: ProgramType, m: Map, retval: int, attach_type=None) -> Program:
    return Program.load(ProgramSpec(ptype, counting_insns(m, retval), name="fb_count",
                                    attach_type=attach_type))


@pytest.fixture
def veth():
    with netutil.VethPair() as vp:
        yield vp


@pytest.fixture
def counter():
    m = counter_map()
    yield m
    m.close()


def send_a_to_b(vp: netutil.VethPair, n: int, payload: bytes = b"x" * 32) -> list[bytes]:
    """Send *n* UDP datagrams from namespace a to b; return what b received."""
    rx = netutil.udp_receiver(vp.b, vp.IP_B, UDP_PORT)
    try:
        netutil.send_udp(vp.a, (vp.IP_B, UDP_PORT), n, payload)
        return netutil.drain(rx)
    finally:
        rx.close()


# ---------------------------------------------------------------------------
# XDP


@pytest.mark.parametrize("mode", ["generic", "driver"])
@pytest.mark.parametrize("use_link", [True, False])
def test_xdp_counts_packets(veth, counter, mode, use_link, no_fd_leak):
    prog = counting_prog(ProgramType.XDP, counter, XDPAction.PASS)
    with prog:
        lk = veth.b.run(link.attach_xdp, prog, veth.IF_B, mode=mode, use_link=use_link)
        with lk:
            assert isinstance(lk, link.FDLink if use_link else link.DetachLink)
            got = send_a_to_b(veth, 10)
            assert len(got) == 10
            assert count(counter) == 10
        assert lk.closed
        # Detached: more traffic is not counted.
        assert len(send_a_to_b(veth, 3)) == 3
        assert count(counter) == 10


def test_xdp_drop_really_drops(veth, counter):
    prog = counting_prog(ProgramType.XDP, counter, XDPAction.DROP)
    with prog, veth.b.run(link.attach_xdp, prog, veth.IF_B, mode="generic"):
        assert send_a_to_b(veth, 5) == []
        assert count(counter) == 5


def test_xdp_link_update_and_busy(veth, counter):
    if r := features.skip_reason("link", AttachType.XDP):
        pytest.skip(r)
    other = counter_map()
    p1 = counting_prog(ProgramType.XDP, counter, XDPAction.PASS)
    p2 = counting_prog(ProgramType.XDP, other, XDPAction.PASS)
    with other, p1, p2:
        with veth.b.run(link.attach_xdp, p1, veth.IF_B, mode="generic") as lk:
            assert len(send_a_to_b(veth, 4)) == 4
            # The link owns the hook: neither a second link nor netlink may take it.
            for use_link in (True, False):
                with pytest.raises(BPFError) as ei:
                    veth.b.run(link.attach_xdp, p2, veth.IF_B, mode="generic", use_link=use_link)
                assert ei.value.errno == errno.EBUSY
            lk.update(p2)
            assert lk.info().prog_id == p2.info().id
            assert len(send_a_to_b(veth, 6)) == 6
        assert (count(counter), count(other)) == (4, 6)



def test_xdp_netlink_never_replaces(veth, counter):
    p1 = counting_prog(ProgramType.XDP, counter, XDPAction.PASS)
    p2 = counting_prog(ProgramType.XDP, counter, XDPAction.DROP)
    with p1, p2:
        with veth.b.run(link.attach_xdp, p1, veth.IF_B, use_link=False):
            assert "xdpgeneric" in veth.b.sh(f"ip link show {veth.IF_B}").stdout
            with pytest.raises(BPFError) as ei:
                veth.b.run(link.attach_xdp, p2, veth.IF_B, use_link=False)
            assert ei.value.errno == errno.EBUSY
            assert len(send_a_to_b(veth, 2)) == 2
        assert "xdp" not in veth.b.sh(f"ip link show {veth.IF_B}").stdout
        assert count(counter) == 2

def test_xdp_bad_arguments(veth, counter):
    prog = counting_prog(ProgramType.XDP, counter, XDPAction.PASS)
    with prog:
        with pytest.raises(ValueError, match="unknown XDP mode"):
            link.attach_xdp(prog, 1, mode="fast")
        with pytest.raises(TargetNotFoundError) as ei:
            veth.b.run(link.attach_xdp, prog, "nosuchif0")
        assert ei.value.errno == errno.ENODEV


def test_attach_xdp_refuses_what_is_not_an_xdp_program(counter):
    # Checked before any syscall: no AttributeError, no bare netlink EINVAL.
    with pytest.raises(TypeError, match="attach_xdp needs a XDP program, not None"):
        link.attach_xdp(None, "lo")
    with pytest.raises(TypeError, match="attach_xdp needs a XDP program, not a Map"):
        link.attach_xdp(counter, "lo")
    prog = counting_prog(ProgramType.SCHED_CLS, counter, 0)
    with prog, pytest.raises(ValueError, match="needs a XDP program, not SCHED_CLS"):
        link.attach_xdp(prog, "lo")


def test_attach_socket_filter_names_a_bad_socket_fd(counter):
    prog = counting_prog(ProgramType.SOCKET_FILTER, counter, 0)
    with prog:
        with pytest.raises(ValueError, match="-1 is not a valid socket fd"):
            link.attach_socket_filter(prog, -1)
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.close()
        with pytest.raises(ValueError, match="is closed"):
            link.attach_socket_filter(prog, s)
        with pytest.raises(TypeError, match="needs a socket or a socket fd, not str"):
            link.attach_socket_filter(prog, "eth0")


# ---------------------------------------------------------------------------
# TC: tcx links and clsact + cls_bpf


def tcx_available(vp, prog):
    """Skip on the probe's answer; a kernel with tcx links must attach."""
    if r := features.skip_reason("link", AttachType.TCX_INGRESS):
        pytest.skip(r)


@pytest.mark.parametrize("direction", ["ingress", "egress"])
def test_tcx_counts_packets(veth, counter, direction):
    prog = counting_prog(ProgramType.SCHED_CLS, counter, -1)  # TCX_NEXT
    with prog:
        tcx_available(veth, prog)
        # ingress: count on b's end as packets arrive; egress: on a's as they leave.
        ns, ifname = (veth.b, veth.IF_B) if direction == "ingress" else (veth.a, veth.IF_A)
        with ns.run(link.attach_tcx, prog, ifname, direction=direction) as lk:
            assert lk.info().type == LinkType.TCX
            assert len(send_a_to_b(veth, 6)) == 6
            assert count(counter) == 6
        assert len(send_a_to_b(veth, 2)) == 2
        assert count(counter) == 6


def test_tcx_update_and_order(veth, counter):
    other, third = counter_map(), counter_map()
    p1 = counting_prog(ProgramType.SCHED_CLS, counter, -1)
    p2 = counting_prog(ProgramType.SCHED_CLS, other, -1)
    p3 = counting_prog(ProgramType.SCHED_CLS, third, -1)
    with other, third, p1, p2, p3:
        tcx_available(veth, p1)
        l1 = veth.b.run(link.attach_tcx, p1, veth.IF_B)
        l2 = veth.b.run(link.attach_tcx, p2, veth.IF_B, before=l1)
        with l1, l2:
            q = veth.b.run(_core.prog_query, veth.ifindex_b, AttachType.TCX_INGRESS)
            assert q["prog_ids"] == [p2.info().id, p1.info().id]
            assert q["link_ids"] == [l2.id, l1.id]
            assert len(send_a_to_b(veth, 3)) == 3
            assert (count(counter), count(other)) == (3, 3)
            # A program may sit on a hook once only.
            with pytest.raises(BPFError) as ei:
                l1.update(p2)
            assert ei.value.errno == errno.EEXIST
            l1.update(p3)
            assert len(send_a_to_b(veth, 2)) == 2
            assert (count(counter), count(other), count(third)) == (3, 5, 2)


@pytest.mark.parametrize("direction", ["ingress", "egress"])
def test_tc_clsact_counts_packets(veth, counter, direction, no_fd_leak):
    prog = counting_prog(ProgramType.SCHED_CLS, counter, 0)  # TC_ACT_OK
    ns, ifname = (veth.b, veth.IF_B) if direction == "ingress" else (veth.a, veth.IF_A)
    with prog:
        lk = ns.run(link.attach_tc, prog, ifname, direction=direction)
        with lk:
            assert lk.priority > 0 and lk.handle == 1
            out = ns.sh(f"tc filter show dev {ifname} {direction}").stdout
            assert "direct-action" in out and f"pref {lk.priority}" in out
            assert "clsact" in ns.sh(f"tc qdisc show dev {ifname}").stdout
            assert len(send_a_to_b(veth, 5)) == 5
            assert count(counter) == 5
        # The filter and the qdisc this attachment created are gone.
        assert ns.sh(f"tc filter show dev {ifname} {direction}").stdout.strip() == ""
        assert "clsact" not in ns.sh(f"tc qdisc show dev {ifname}").stdout
        assert len(send_a_to_b(veth, 2)) == 2
        assert count(counter) == 5



def test_tc_failed_attach_leaves_nothing(veth, counter, no_fd_leak):
    xdp = counting_prog(ProgramType.XDP, counter, XDPAction.PASS)   # wrong program type
    with xdp:
        with pytest.raises(BPFError) as ei:
            veth.b.run(link.attach_tc, xdp, veth.IF_B)
        assert ei.value.errno == errno.EINVAL
    assert "clsact" not in veth.b.sh(f"tc qdisc show dev {veth.IF_B}").stdout

def test_tc_clsact_shared_qdisc_and_update(veth, counter):
    other = counter_map()
    p1 = counting_prog(ProgramType.SCHED_CLS, counter, 0)
    p2 = counting_prog(ProgramType.SCHED_CLS, other, 0)
    with other, p1, p2:
        veth.b.sh(f"tc qdisc add dev {veth.IF_B} clsact")   # not ours: must survive
        l1 = veth.b.run(link.attach_tc, p1, veth.IF_B, priority=7)
        l2 = veth.b.run(link.attach_tc, p2, veth.IF_B, direction="egress")
        with l2:
            with l1:
                assert l1.priority == 7
                assert len(send_a_to_b(veth, 3)) == 3
                with pytest.raises(BPFError):     # p1 is not attached there
                    l1.update(p1, old_program=p2)
                l1.update(p2, old_program=p1)
                assert len(send_a_to_b(veth, 4)) == 4
                assert (count(counter), count(other)) == (3, 4)
                with pytest.raises(BPFError) as ei:   # same priority and handle
                    veth.b.run(link.attach_tc, p2, veth.IF_B, priority=7)
                assert ei.value.errno == errno.EEXIST
            with pytest.raises(ClosedError):
                l1.update(p1)
            assert "pref 7" not in veth.b.sh(f"tc filter show dev {veth.IF_B} ingress").stdout
            assert "direct-action" in veth.b.sh(f"tc filter show dev {veth.IF_B} egress").stdout
        assert "clsact" in veth.b.sh(f"tc qdisc show dev {veth.IF_B}").stdout


# ---------------------------------------------------------------------------
# pinning


def test_pinned_link_outlives_its_object(veth, counter, bpffs_dir):
    if r := features.skip_reason("link", AttachType.XDP):
        pytest.skip(r)
    pin = os.path.join(bpffs_dir, "xdp_link")
    prog = counting_prog(ProgramType.XDP, counter, XDPAction.PASS)
    with prog:
        lk = veth.b.run(link.attach_xdp, prog, veth.IF_B, mode="generic")
        link_id = lk.id
        lk.pin(pin)
        lk.close()
        del lk
        assert len(send_a_to_b(veth, 3)) == 3
        assert count(counter) == 3
        with link.FDLink.from_pin(pin) as again:
            assert again.id == link_id
            assert again.info().prog_id == prog.info().id
            assert again.pin_path == pin
            again.unpin()       # the path it was opened from
            assert not os.path.exists(pin)
        # Unpinned and the last fd closed: detached.
        assert len(send_a_to_b(veth, 2)) == 2
        assert count(counter) == 3
        assert link_id not in link.link_ids()


# ---------------------------------------------------------------------------
# socket filters


def length_filter(m: Map, min_len: int) -> Program:
    """Count every packet; keep those with skb->len >= min_len, drop the rest."""
    insns = asm.Instructions([asm.Mov.reg(R6, R1)] + count_block(m, "out") + [
        asm.load_mem(R0, R6, 0, Size.W).with_symbol("out"),   # __sk_buff.len
        asm.JGE.imm(R0, min_len, "keep"),
        asm.Mov.imm(R0, 0),                                    # drop
        asm.exit(),
        asm.exit().with_symbol("keep"),                        # keep all R0 bytes
    ])
    return Program.load(ProgramSpec(ProgramType.SOCKET_FILTER, insns, name="fb_lenfilter"))


def test_socket_filter_filters_udp(counter, no_fd_leak):
    rx = netutil.udp_receiver(None)
    dst = rx.getsockname()
    # UDP runs the filter with skb->data at the UDP header: len = 8 + payload.
    prog = length_filter(counter, 8 + 50)
    try:
        with prog:
            with link.attach_socket_filter(prog, rx) as lk:
                assert isinstance(lk, link.DetachLink)
                netutil.send_udp(None, dst, 3, b"s" * 10)
                netutil.send_udp(None, dst, 4, b"L" * 60)
                got = netutil.drain(rx)
                assert got == [b"L" * 60] * 4
                assert count(counter) == 7
            assert lk.closed
            netutil.send_udp(None, dst, 2, b"s" * 10)
            assert netutil.drain(rx) == [b"s" * 10] * 2
            assert count(counter) == 7
    finally:
        rx.close()


def test_socket_filter_drop_all_and_keep_all(counter):
    rx = netutil.udp_receiver(None)
    dst = rx.getsockname()
    drop = counting_prog(ProgramType.SOCKET_FILTER, counter, 0)
    keep = Program.load(ProgramSpec(ProgramType.SOCKET_FILTER, asm.Instructions([
        asm.load_mem(R0, R1, 0, Size.W), asm.exit()]), name="fb_keep"))
    try:
        with drop, keep:
            with link.attach_socket_filter(drop, rx.fileno()):
                netutil.send_udp(None, dst, 5)
                assert netutil.drain(rx) == []
                assert count(counter) == 5
            with link.attach_socket_filter(keep, rx):
                netutil.send_udp(None, dst, 5)
                assert len(netutil.drain(rx)) == 5
    finally:
        rx.close()


# ---------------------------------------------------------------------------
# cgroup v2

CGROUP_ROOT = features.cgroup_v2_root() or "/sys/fs/cgroup/unified"

# The child waits for a line on stdin (so the parent can move it into the
# cgroup and attach first), then connects a UDP socket N times and sends one
# datagram after each connect.
CHILD = """
import socket, sys
sys.stdin.readline()
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(n):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        s.send(b"c" * 16)
"""


@pytest.fixture
def cgroup():
    if r := features.skip_reason("cgroup_v2"):
        pytest.skip(r)
    path = os.path.join(CGROUP_ROOT, "fastbpf-" + uuid.uuid4().hex[:12])
    os.mkdir(path)
    try:
        yield path
    finally:
        # Children are gone by now; the kernel may need a moment to notice.
        for _ in range(100):
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise
                time.sleep(0.02)


def run_in_cgroup(cg: str, dst: tuple[str, int], n: int, attach) -> None:
    """Start the child, move it into *cg*, call attach(), then let it send."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, dst[0], str(dst[1]), str(n)],
                             stdin=subprocess.PIPE)
    try:
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write(str(child.pid))
        attach()
        child.stdin.write(b"go\n")
        child.stdin.close()
        assert child.wait(timeout=10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if not child.stdin.closed:   # attach() raised before the child was told to go
            child.stdin.close()


@pytest.mark.parametrize("use_link", [True, False])
def test_cgroup_skb_counts_egress_of_its_processes(cgroup, counter, use_link, no_fd_leak):
    if use_link and (r := features.skip_reason("link", AttachType.CGROUP_INET_EGRESS)):
        pytest.skip(r)
    rx = netutil.udp_receiver(None)
    dst = rx.getsockname()
    prog = counting_prog(ProgramType.CGROUP_SKB, counter, 1)   # 1: let it pass
    links = []
    kwargs = {} if use_link else dict(use_link=False, flags=AttachFlags.ALLOW_MULTI)
    try:
        with prog:
            run_in_cgroup(cgroup, dst, 7, lambda: links.append(
                link.attach_cgroup(prog, cgroup, AttachType.CGROUP_INET_EGRESS, **kwargs)))
            lk = links[0]
            assert isinstance(lk, link.FDLink if use_link else link.DetachLink)
            assert len(netutil.drain(rx)) == 7
            assert count(counter) == 7
            # This process is outside the cgroup: not counted.
            netutil.send_udp(None, dst, 3)
            assert len(netutil.drain(rx)) == 3
            assert count(counter) == 7
            with open_cgroup(cgroup) as fd:
                q = _core.prog_query(fd, AttachType.CGROUP_INET_EGRESS)
                assert q["prog_ids"] == [prog.info().id]
            lk.close()
            with open_cgroup(cgroup) as fd:
                assert _core.prog_query(fd, AttachType.CGROUP_INET_EGRESS)["prog_ids"] == []
    finally:
        for lk in links:
            lk.close()
        rx.close()


def test_cgroup_link_update_and_sock_addr(cgroup, counter):
    other = counter_map()
    rx = netutil.udp_receiver(None)
    dst = rx.getsockname()
    p1 = counting_prog(ProgramType.CGROUP_SKB, counter, 1)
    p2 = counting_prog(ProgramType.CGROUP_SKB, other, 1)
    connects = counter_map()
    pc = counting_prog(ProgramType.CGROUP_SOCK_ADDR, connects, 1,
                       attach_type=AttachType.CGROUP_INET4_CONNECT)
    try:
        with other, connects, p1, p2, pc:
            lk = link.attach_cgroup(p1, cgroup, AttachType.CGROUP_INET_EGRESS)
            # An open fd of the cgroup works as well as its path.
            with open_cgroup(cgroup) as fd:
                lc = link.attach_cgroup(pc, fd, AttachType.CGROUP_INET4_CONNECT)
            with lk, lc:
                lk.update(p2)
                run_in_cgroup(cgroup, dst, 4, lambda: None)
                assert len(netutil.drain(rx)) == 4
                assert (count(counter), count(other), count(connects)) == (0, 4, 4)
    finally:
        rx.close()



# ---------------------------------------------------------------------------
# network namespace programs: sk_lookup, flow dissector; netfilter


@pytest.fixture
def netns():
    with netutil.NetNS() as ns:
        yield ns


def sk_lookup_prog(sockmap: Map, counter: Map, steer_port: int) -> Program:
    """Lookups for local port *steer_port* pick the socket in sockmap[0];
    the counter counts successful assignments."""
    insns = asm.Instructions([
        asm.Mov.reg(R6, R1),
        asm.load_mem(R2, R6, 60, Size.W),              # bpf_sk_lookup.local_port (host order)
        asm.JNE.imm(R2, steer_port, "pass"),
        asm.store_imm(R10, -4, 0, Size.W),
        asm.Mov.reg(R2, R10),
        asm.Add.imm(R2, -4),
        asm.load_map_ptr(R1, sockmap),
        asm.call(Helper.map_lookup_elem),              # a referenced socket, or NULL
        asm.JEq.imm(R0, 0, "pass"),
        asm.Mov.reg(R7, R0),
        asm.Mov.reg(R1, R6),
        asm.Mov.reg(R2, R7),
        asm.Mov.imm(R3, 0),
        asm.call(Helper.sk_assign),
        asm.Mov.reg(R6, R0),
        asm.Mov.reg(R1, R7),
        asm.call(Helper.sk_release),                   # the verifier insists
        asm.JNE.imm(R6, 0, "pass"),
    ] + count_block(counter, "pass") + [
        asm.Mov.imm(R0, 1).with_symbol("pass"),        # SK_PASS
        asm.exit(),
    ])
    # sk_lookup and netfilter programs must name their attach type at load.
    return Program.load(ProgramSpec(ProgramType.SK_LOOKUP, insns, name="fb_sklookup",
                                    attach_type=AttachType.SK_LOOKUP))


def _sk_lookup_scenario(counter: Map, steer_port: int, closed_port: int) -> tuple:
    """In the current (private) namespace: a listener in a SOCKMAP, the
    program attached; connect to the steered and to an unsteered port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sockmap = Map.create(MapSpec(MapType.SOCKMAP, key=np.uint32, value=np.uint64,
                                 max_entries=1, name="fb_sockmap"))
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.settimeout(2)
        sockmap[0] = listener.fileno()
        with sk_lookup_prog(sockmap, counter, steer_port) as prog:
            with link.attach_sk_lookup(prog) as lk:
                assert lk.info().type == LinkType.NETNS
                with socket.create_connection(("127.0.0.1", steer_port), timeout=2) as c:
                    conn, _ = listener.accept()
                    with conn:
                        c.sendall(b"steered")
                        steered = (conn.recv(16), conn.getsockname())
                try:
                    socket.create_connection(("127.0.0.1", closed_port), timeout=2).close()
                    other = "connected"
                except ConnectionRefusedError:
                    other = "refused"
            # Detached: the steered port is an ordinary closed port again.
            try:
                socket.create_connection(("127.0.0.1", steer_port), timeout=2).close()
                after = "connected"
            except ConnectionRefusedError:
                after = "refused"
        return steered, other, after
    finally:
        sockmap.close()
        listener.close()


def test_sk_lookup_steers_connection(netns, counter):
    if r := features.skip_reason("link", AttachType.SK_LOOKUP):
        pytest.skip(r)
    steered, other, after = netns.run(_sk_lookup_scenario, counter, 7777, 7778)
    assert steered == (b"steered", ("127.0.0.1", 7777))
    assert other == "refused"
    assert after == "refused"
    assert count(counter) == 1


def test_netns_links_take_paths_and_fds(netns):
    prog = Program.load(ProgramSpec(ProgramType.SK_LOOKUP, asm.Instructions([
        asm.Mov.imm(R0, 1), asm.exit()]), name="fb_skl_pass", attach_type=AttachType.SK_LOOKUP))
    with prog:
        with link.attach_sk_lookup(prog, netns.path) as l1, \
                open(netns.path) as f, link.attach_sk_lookup(prog, f.fileno()) as l2:
            ids = {l1.info().prog_id, l2.info().prog_id}
            assert ids == {prog.info().id}
            assert l1.id != l2.id


def test_flow_dissector_attach(netns):
    def load():
        return Program.load(ProgramSpec(ProgramType.FLOW_DISSECTOR, asm.Instructions([
            asm.Mov.imm(R0, 0), asm.exit()]), name="fb_flowdis"))    # BPF_OK
    prog, prog2 = load(), load()
    with prog, prog2, open(netns.path) as f:
        def query():
            return _core.prog_query(f.fileno(), AttachType.FLOW_DISSECTOR)["prog_ids"]
        with link.attach_flow_dissector(prog, netns.path) as lk:
            assert query() == [prog.info().id]
            # One flow dissector per namespace.
            with pytest.raises(BPFError) as ei:
                link.attach_flow_dissector(prog, f.fileno())
            assert ei.value.errno == errno.E2BIG
            lk.update(prog2)
            assert query() == [prog2.info().id]
        assert lk.closed
        assert query() == []


@pytest.mark.parametrize("verdict", [1, 0])   # NF_ACCEPT, NF_DROP
def test_netfilter_counts_local_in(netns, counter, verdict):
    from fastbpf.link.netfilter import NF_INET_LOCAL_IN, NFPROTO_IPV4
    prog = counting_prog(ProgramType.NETFILTER, counter, verdict,
                         attach_type=AttachType.NETFILTER)
    rx = netutil.udp_receiver(netns)
    dst = rx.getsockname()
    try:
        with prog:
            lk = netns.run(link.attach_netfilter, prog, pf=NFPROTO_IPV4, hook=NF_INET_LOCAL_IN,
                           priority=-128)
            with lk:
                assert lk.info().type == LinkType.NETFILTER
                netutil.send_udp(netns, dst, 5)
                assert len(netutil.drain(rx)) == (5 if verdict else 0)
                assert count(counter) == 5
            netutil.send_udp(netns, dst, 2)
            assert len(netutil.drain(rx)) == 2
            assert count(counter) == 5
    finally:
        rx.close()


def test_cgroup_prog_attach_replace(cgroup, counter):
    p1 = counting_prog(ProgramType.CGROUP_SKB, counter, 1)
    p2 = counting_prog(ProgramType.CGROUP_SKB, counter, 1)
    multi = dict(use_link=False, flags=AttachFlags.ALLOW_MULTI)
    with p1, p2, open_cgroup(cgroup) as fd:
        def attached():
            return _core.prog_query(fd, AttachType.CGROUP_INET_INGRESS)["prog_ids"]
        l1 = link.attach_cgroup(p1, cgroup, AttachType.CGROUP_INET_INGRESS, **multi)
        assert attached() == [p1.info().id]
        l2 = link.attach_cgroup(p2, fd, AttachType.CGROUP_INET_INGRESS, replace=p1, **multi)
        assert attached() == [p2.info().id]
        l2.close()
        assert attached() == []
        l1.close()      # p1 was replaced already: nothing left to detach, no error
        assert l1.closed


def test_tc_close_leaves_a_filter_that_replaced_ours(veth, counter):
    other = counter_map()
    p1 = counting_prog(ProgramType.SCHED_CLS, counter, 0)
    p2 = counting_prog(ProgramType.SCHED_CLS, other, 0)
    with other, p1, p2:
        l1 = veth.b.run(link.attach_tc, p1, veth.IF_B, priority=9)
        # Someone removes our filter and puts theirs at the same place.
        veth.b.sh(f"tc filter del dev {veth.IF_B} ingress pref 9 handle 1 bpf")
        l2 = veth.b.run(link.attach_tc, p2, veth.IF_B, priority=9)
        with l2:
            l1.close()
            assert len(send_a_to_b(veth, 3)) == 3
            assert (count(counter), count(other)) == (0, 3)
        assert "pref 9" not in veth.b.sh(f"tc filter show dev {veth.IF_B} ingress").stdout


def test_cgroup_exclusive_detach_leaves_a_replacement(counter, unique_name):
    from fastbpf import _core
    path = f"/sys/fs/cgroup/unified/{unique_name}"
    os.mkdir(path)
    try:
        p1 = counting_prog(ProgramType.CGROUP_SKB, counter, 1)
        p2 = counting_prog(ProgramType.CGROUP_SKB, counter, 1)
        with p1, p2:
            l1 = link.attach_cgroup(p1, path, AttachType.CGROUP_INET_EGRESS, use_link=False,
                                    flags=AttachFlags.ALLOW_OVERRIDE)
            fd = os.open(path, os.O_RDONLY)
            try:
                # Another party replaces it (override mode lets them).
                _core.prog_attach(fd, p2.fd, int(AttachType.CGROUP_INET_EGRESS),
                                  int(AttachFlags.ALLOW_OVERRIDE))
                l1.close()
                q = _core.prog_query(fd, int(AttachType.CGROUP_INET_EGRESS))
                assert q["prog_ids"] == [p2.info().id]
                _core.prog_detach(fd, p2.fd, int(AttachType.CGROUP_INET_EGRESS))
            finally:
                os.close(fd)
    finally:
        os.rmdir(path)


@pytest.mark.parametrize("use_link", [True, False])
def test_attach_cgroup_names_a_path_that_is_not_a_cgroup(counter, use_link, tmp_path):
    prog = counting_prog(ProgramType.CGROUP_SKB, counter, 1)
    with prog, pytest.raises(ValueError) as ei:
        link.attach_cgroup(prog, str(tmp_path), AttachType.CGROUP_INET_EGRESS, use_link=use_link)
    assert f"open cgroup {str(tmp_path)!r}: not a cgroup v2 directory" in str(ei.value)
