"""Programs against the real kernel: load, verifier logs, test runs, pins,
info and statistics, tail calls, map binding and BTF attach targets."""

from __future__ import annotations

import errno
import os
import struct

import numpy as np
import pytest

from fastbpf import asm, features
from progs import ret
from fastbpf.asm import R0, R1, R2, R3, R4, R5, R6, R7, R10, Helper, Size
from fastbpf.enums import AttachType, MapType, ProgramFlags, ProgramType
from fastbpf.errors import (BPFError, ClosedError, NotSupportedError, TargetNotFoundError,
                            VerifierError)
from fastbpf.maps import Map, MapSpec
from fastbpf.programs import (Program, ProgramSpec, TestRunResult, enable_stats,
                              program_ids)

pytestmark = pytest.mark.kernel

XDP_PASS, XDP_DROP = 2, 1


def load(ptype, insns, name=None, **kw) -> Program:
    return Program.load(ProgramSpec(ptype, insns, name=name), **kw)


def ipv4_tcp_packet(src=b"\x0a\x00\x00\x01", dst=b"\x0a\x00\x00\x02", sport=1234,
                    dport=80, payload=b"hello") -> bytes:
    """Ethernet + IPv4 + TCP, with a correct IP header checksum."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0) + payload
    total = 20 + len(tcp)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 64, 6, 0, src, dst)
    s = sum(struct.unpack("!10H", hdr))
    s = (s & 0xFFFF) + (s >> 16)
    csum = ~((s & 0xFFFF) + (s >> 16)) & 0xFFFF
    hdr = hdr[:10] + struct.pack("!H", csum) + hdr[12:]
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + hdr + tcp


# -- load, log, errors ---------------------------------------------------------

def test_load_and_run_xdp(unique_name):
    with load(ProgramType.XDP, ret(XDP_PASS), unique_name) as p:
        assert p.type == ProgramType.XDP and p.name == unique_name
        pkt = np.arange(64, dtype=np.uint8)
        r = p.test_run(data=pkt)
        assert isinstance(r, TestRunResult)
        assert r.retval == XDP_PASS
        assert r.data.dtype == np.uint8 and len(r.data) == 64
        np.testing.assert_array_equal(r.data, pkt)
        assert r.ctx is None
        # The kernel's average per run: a real, small figure (an XDP_PASS
        # takes tens of ns; a second would mean a mis-read field).
        timed = p.test_run(data=pkt, repeat=1000)
        assert 0 < timed.duration_ns < 10**9 and timed.retval == XDP_PASS
        retval, data, ctx, dur = r  # unpacks like a tuple
        assert retval == XDP_PASS and data is r.data
    assert p.closed
    with pytest.raises(ClosedError):
        p.test_run(data=b"x" * 64)


def test_load_accepts_raw_bytes():
    with load(ProgramType.SOCKET_FILTER, ret(7).encode()) as p:
        assert p.test_run(data=bytes(64)).retval == 7


def test_verifier_error_carries_log():
    # Reading r0 before it is written: the classic rejection.
    with pytest.raises(VerifierError) as ei:
        load(ProgramType.XDP, asm.Instructions([asm.exit()]), "fbbad")
    e = ei.value
    assert e.errno == errno.EACCES
    assert "R0 !read_ok" in e.log
    assert "R0 !read_ok" in str(e)        # the short form ends with the reason
    assert "program load" in str(e)


def test_verifier_log_of_invalid_access():
    insns = asm.Instructions([asm.load_mem(R0, R10, 8, Size.DW), asm.exit()])
    with pytest.raises(VerifierError) as ei:
        load(ProgramType.SOCKET_FILTER, insns)
    assert "invalid read from stack" in ei.value.log or "invalid" in ei.value.log


def _long_program(n: int) -> asm.Instructions:
    body = [asm.Mov.imm(R0, 0)]
    for i in range(n):
        body.append(asm.Add.imm(R0, 1))
    return asm.Instructions(body + [asm.exit()])


def test_log_of_passed_program_is_kept_whole():
    n = 600
    # log_level=2 logs every instruction: far more than 128 bytes, so the
    # buffer must grow (ENOSPC, then the size the kernel asks for).
    p = load(ProgramType.SOCKET_FILTER, _long_program(n), log_level=2, log_size=128)
    with p:
        assert p.test_run(data=bytes(64)).retval == n
        assert len(p.log) > 128 * 10
        assert f"{n + 1}: (95) exit" in p.log
        assert "processed" in p.log
        lines = p.log.splitlines()
        assert lines[0].startswith("func#0") or lines[0].startswith("0:")


def test_log_level_1_on_success():
    with load(ProgramType.XDP, ret(2), log_level=1) as p:
        assert "processed 2 insns" in p.log
    with load(ProgramType.XDP, ret(2)) as p:
        assert p.log == ""


def test_huge_failure_log_arrives_whole():
    # A long program that fails at its very end: with a 128-byte first
    # buffer the whole per-instruction log must still come back.
    insns = _long_program(500)[:-1] + asm.Instructions([asm.load_mem(R0, R10, 8, Size.DW),
                                                          asm.exit()])
    with pytest.raises(VerifierError) as ei:
        Program.load(ProgramSpec(ProgramType.SOCKET_FILTER, insns), log_level=2, log_size=128)
    log = ei.value.log
    assert len(log) > 10_000
    assert "0: (b7) r0 = 0" in log                # the first instruction...
    assert "500: (" in log                        # ...and the last
    assert "invalid read from stack" in log.splitlines()[-2] + log.splitlines()[-1] \
        or "invalid read from stack" in log
    assert "invalid read from stack" in str(ei.value)


def test_bad_arguments():
    with pytest.raises(TypeError):
        Program.load(ret(0))
    with pytest.raises(ValueError):
        Program.load(ProgramSpec(ProgramType.XDP, b""))
    with pytest.raises(ValueError):
        ProgramSpec(1234, ret(0))


# -- test runs of the program types ---------------------------------------------

def test_xdp_rewrites_packet():
    insns = asm.Instructions([
        asm.load_mem(R2, R1, 0, Size.W),       # data
        asm.load_mem(R3, R1, 4, Size.W),       # data_end
        asm.Mov.reg(R4, R2),
        asm.Add.imm(R4, 20),
        asm.JGT.reg(R4, R3, "out"),
        asm.store_imm(R2, 3, 0x42, Size.B),    # packet[3] = 0x42
        asm.Mov.imm(R0, XDP_PASS),
        asm.exit(),
        asm.Mov.imm(R0, XDP_DROP).with_symbol("out"),
        asm.exit(),
    ])
    with load(ProgramType.XDP, insns) as p:
        pkt = bytes(range(64))
        r = p.test_run(data=pkt)
        assert r.retval == XDP_PASS
        expect = bytearray(pkt)
        expect[3] = 0x42
        assert r.data.tobytes() == bytes(expect)
        assert pkt[3] == 3                     # the input is untouched
        r2 = p.test_run(data=bytes(14))        # too short: the bounds check drops
        assert r2.retval == XDP_DROP
        assert r.data[3] == 0x42               # earlier results keep their buffer


def test_xdp_ctx_in_and_out():
    # xdp_md as ctx: data/data_end must be 0 and data_end == len(data).
    with load(ProgramType.XDP, ret(XDP_PASS)) as p:
        ctx = np.zeros(6, dtype=np.uint32)
        ctx[1] = 64
        r = p.test_run(data=bytes(64), ctx=ctx)
        assert r.retval == XDP_PASS
        assert r.ctx is not None and len(r.ctx) == 24
        assert r.ctx.view(np.uint32)[1] == 64


def test_output_buffer_too_small():
    with load(ProgramType.XDP, ret(XDP_PASS)) as p:
        with pytest.raises(BPFError) as ei:
            p.test_run(data=bytes(64), data_out_size=10)
        assert ei.value.errno == errno.ENOSPC
        assert "data_out_size" in str(ei.value)
        assert len(p.test_run(data=bytes(64), data_out_size=64).data) == 64


def test_sched_cls_sees_skb_len():
    insns = asm.Instructions([asm.load_mem(R0, R1, 0, Size.W), asm.exit()])  # skb->len
    with load(ProgramType.SCHED_CLS, insns) as p:
        for n in (60, 100, 1500):
            assert p.test_run(data=bytes(n)).retval == n


def test_socket_filter_reads_packet():
    # ld_abs reads relative to the network header for socket filters.
    insns = asm.Instructions([asm.Mov.reg(R6, R1), asm.load_abs(9, Size.B), asm.exit()])
    with load(ProgramType.SOCKET_FILTER, insns) as p:
        r = p.test_run(data=ipv4_tcp_packet())
        assert r.retval == 6                  # IPPROTO_TCP
    len_insns = asm.Instructions([asm.load_mem(R0, R1, 0, Size.W), asm.exit()])
    with load(ProgramType.SOCKET_FILTER, len_insns) as p:
        pkt = ipv4_tcp_packet()
        assert p.test_run(data=pkt).retval == len(pkt) - 14   # past the Ethernet header


def test_flow_dissector_ipv4_tcp():
    skb_data, skb_data_end, skb_flow_keys = 76, 80, 144
    insns = asm.Instructions([
        asm.load_mem(R7, R1, skb_flow_keys, Size.DW),
        asm.load_mem(R2, R1, skb_data, Size.W),
        asm.load_mem(R3, R1, skb_data_end, Size.W),
        asm.Mov.reg(R4, R2),
        asm.Add.imm(R4, 14 + 20 + 4),
        asm.JGT.reg(R4, R3, "drop"),
        asm.load_mem(R5, R2, 14 + 9, Size.B),     # ip->protocol
        asm.store_mem(R7, 9, R5, Size.B),         # keys->ip_proto
        asm.load_mem(R5, R2, 14 + 12, Size.W),    # ip->saddr
        asm.store_mem(R7, 16, R5, Size.W),        # keys->ipv4_src
        asm.load_mem(R5, R2, 14 + 16, Size.W),    # ip->daddr
        asm.store_mem(R7, 20, R5, Size.W),        # keys->ipv4_dst
        asm.load_mem(R5, R2, 14 + 20, Size.H),    # tcp->source
        asm.store_mem(R7, 12, R5, Size.H),        # keys->sport
        asm.load_mem(R5, R2, 14 + 22, Size.H),    # tcp->dest
        asm.store_mem(R7, 14, R5, Size.H),        # keys->dport
        asm.store_imm(R7, 2, 14 + 20, Size.H),    # keys->thoff
        asm.store_imm(R7, 4, 0x0008, Size.H),     # keys->addr_proto = htons(ETH_P_IP)
        asm.Mov.imm(R0, 0),                       # BPF_OK
        asm.exit(),
        asm.Mov.imm(R0, 2).with_symbol("drop"),   # BPF_DROP
        asm.exit(),
    ])
    pkt = ipv4_tcp_packet(src=b"\xc0\xa8\x01\x02", dst=b"\x0a\x01\x02\x03", sport=4321, dport=443)
    with load(ProgramType.FLOW_DISSECTOR, insns) as p:
        r = p.test_run(data=pkt, repeat=3)
        assert r.retval == 0
        keys = r.data.tobytes()
        assert len(keys) == 56                     # struct bpf_flow_keys
        nhoff, thoff, addr_proto = struct.unpack_from("<HHH", keys, 0)
        assert (nhoff, thoff) == (14, 34)
        assert keys[9] == 6                        # ip_proto
        assert struct.unpack_from("!HHH", keys, 10) == (0x0800, 4321, 443)
        assert keys[16:20] == b"\xc0\xa8\x01\x02" and keys[20:24] == b"\x0a\x01\x02\x03"


def test_raw_tracepoint_ctx():
    # raw_tp ctx is the tracepoint's u64 arguments; repeat must be 0 in the
    # kernel, which test_run handles.
    insns = asm.Instructions([asm.load_mem(R0, R1, 8, Size.DW), asm.exit()])
    with load(ProgramType.RAW_TRACEPOINT, insns) as p:
        args = np.array([11, 4242], dtype=np.uint64)
        r = p.test_run(ctx=args)
        assert r.retval == 4242
        assert p.test_run(ctx=np.array([0, 7], dtype=np.uint64), repeat=5).retval == 7
        assert r.duration_ns == 0                  # the kernel's figure: it does not time raw_tp


def test_syscall_program_ctx_roundtrip():
    insns = asm.Instructions([
        asm.load_mem(R0, R1, 0, Size.W),          # ctx->a
        asm.Mov.reg(R2, R0),
        asm.Add.imm(R2, 1),
        asm.store_mem(R1, 4, R2, Size.W),         # ctx->b = a + 1
        asm.exit(),
    ])
    with load(ProgramType.SYSCALL, insns) as p:
        assert p.info().type == ProgramType.SYSCALL
        ctx = struct.pack("<II", 99, 0)
        r = p.test_run(ctx=ctx)
        assert r.retval == 99
        assert r.ctx.view(np.uint32).tolist() == [99, 100]
        assert ctx == struct.pack("<II", 99, 0)   # the caller's bytes are untouched


def test_repeat_counts_under_enable_stats():
    with load(ProgramType.XDP, ret(XDP_PASS)) as p, enable_stats() as stats:
        assert not stats.closed
        before = p.info()
        p.test_run(data=bytes(64), repeat=50)
        p.test_run(data=bytes(64))
        after = p.info()
        assert after.run_cnt - before.run_cnt == 51
        assert after.run_time_ns > before.run_time_ns
    assert stats.closed


# -- identity: pin, ids, info ----------------------------------------------------

def test_pin_and_reopen(bpffs_dir, unique_name):
    with load(ProgramType.XDP, ret(XDP_PASS), unique_name) as p:
        info = p.info()
        path = os.path.join(bpffs_dir, "prog")
        p.pin(path)
        with Program.from_pin(path) as q:
            assert q.info().id == info.id
            assert q.type == ProgramType.XDP and q.name == unique_name
            assert q.test_run(data=bytes(64)).retval == XDP_PASS
        with Program.from_id(info.id) as q:
            assert q.info().tag == info.tag
        with Program.from_fd(p.fd) as q:
            assert q.id == info.id and q.fd != p.fd
        assert info.id in program_ids()
        p.unpin(path)
        assert not os.path.exists(path)
    with pytest.raises(ValueError):
        load(ProgramType.XDP, ret(0)).pin("/tmp/not-bpffs-" + unique_name)


def test_info_fields(unique_name):
    with load(ProgramType.SCHED_CLS, ret(0), unique_name) as p:
        i = p.info()
        assert i.type == ProgramType.SCHED_CLS
        assert i.name == unique_name
        assert len(i.tag) == 16 and int(i.tag, 16) >= 0
        assert i.map_ids == []
        assert i.id > 0 and i.load_time > 0
        assert i.gpl_compatible
        assert i.xlated_prog_len == 16 and i.verified_insns >= 2
        x = p.xlated()
        assert [insn.opcode for insn in x] == [insn.opcode for insn in ret(0)]


def test_program_ids_missing_after_close():
    p = load(ProgramType.XDP, ret(0))
    pid = p.id
    assert pid in program_ids()
    p.close()
    with pytest.raises(FileNotFoundError):
        Program.from_id(pid)


# -- maps: binding by name, references, tail calls -----------------------------------

def _counter_program(ref) -> asm.Instructions:
    return asm.Instructions([
        asm.store_imm(R10, -4, 0, Size.W),
        asm.Mov.reg(R2, R10),
        asm.Add.imm(R2, -4),
        asm.load_map_ptr(R1, ref),
        asm.call(Helper.map_lookup_elem),
        asm.JEq.imm(R0, 0, "out"),
        asm.Mov.imm(R1, 1),
        asm.atomic_add(R0, 0, R1, Size.DW),
        asm.Mov.imm(R0, XDP_PASS).with_symbol("out"),
        asm.exit(),
    ])


def test_maps_resolved_by_name_and_kept(unique_name):
    counters = Map.create(MapSpec(MapType.ARRAY, key=4, value=np.uint64, max_entries=1,
                                  name=unique_name))
    with counters:
        spec = ProgramSpec(ProgramType.XDP, _counter_program("counters"))
        with pytest.raises(ValueError, match="counters"):
            Program.load(spec)                    # unresolved reference
        with Program.load(spec, maps={"counters": counters}) as p:
            assert p.maps == [counters]
            assert p.info().map_ids == [counters.id]
            p.test_run(data=bytes(64), repeat=5)
            assert int(counters[0]) == 5
    # The kernel holds the map for the program: a map object passed
    # directly and closed later does not stop the program.
    m = Map.create(MapSpec(MapType.ARRAY, key=4, value=np.uint64, max_entries=1))
    p = Program.load(ProgramSpec(ProgramType.XDP, _counter_program(m)))
    with p:
        mid = m.id
        m.close()
        p.test_run(data=bytes(64), repeat=3)
        with Map.from_id(mid, np.uint32, np.uint64) as again:
            assert int(again[0]) == 3


def test_tail_call_through_prog_array(unique_name):
    jumps = Map.create(MapSpec(MapType.PROG_ARRAY, key=4, value=4, max_entries=4,
                               name=unique_name))
    with jumps:
        callee = load(ProgramType.XDP, ret(XDP_DROP), "fbcallee")
        caller_insns = asm.Instructions([
            asm.load_map_ptr(R2, "jumps"),
            asm.Mov.imm(R3, 2),
            asm.call(Helper.tail_call),            # r1 is still the ctx
            asm.Mov.imm(R0, XDP_PASS),             # reached only when the slot is empty
            asm.exit(),
        ])
        with callee, Program.load(ProgramSpec(ProgramType.XDP, caller_insns),
                                  maps={"jumps": jumps}) as caller:
            assert caller.test_run(data=bytes(64)).retval == XDP_PASS
            jumps[2] = callee
            assert caller.test_run(data=bytes(64)).retval == XDP_DROP
            with jumps[2] as slot:
                assert isinstance(slot, Program) and slot.id == callee.id
            del jumps[2]
            assert caller.test_run(data=bytes(64)).retval == XDP_PASS


# -- BTF attach targets ------------------------------------------------------------

def test_tp_btf_attach_target_from_kernel_btf():
    from fastbpf import btf
    from fastbpf.btf.types import Kind
    want = btf.load_kernel_spec().type_by_name("btf_trace_sys_enter", Kind.TYPEDEF).id
    spec = ProgramSpec(ProgramType.TRACING, ret(0), attach_type=AttachType.TRACE_RAW_TP,
                       attach_to="sys_enter")
    with Program.load(spec) as p:
        assert p.info().attach_btf_id == want


def test_iter_attach_target():
    spec = ProgramSpec(ProgramType.TRACING, ret(0), attach_type=AttachType.TRACE_ITER,
                       attach_to="task")
    with Program.load(spec) as p:
        assert p.info().attach_btf_id > 0


def test_unknown_attach_target():
    spec = ProgramSpec(ProgramType.TRACING, ret(0), attach_type=AttachType.TRACE_RAW_TP,
                       attach_to="no_such_tracepoint_fb")
    with pytest.raises(TargetNotFoundError) as ei:
        Program.load(spec)
    assert ei.value.errno == errno.ENOENT and "no_such_tracepoint_fb" in str(ei.value)
    with pytest.raises(ValueError):
        Program.load(ProgramSpec(ProgramType.XDP, ret(0), attach_to="x"))


def test_fentry_attach_target():
    reason = features.skip_reason("trampolines")
    if reason:
        pytest.skip(reason)
    spec = ProgramSpec(ProgramType.TRACING, ret(0), attach_type=AttachType.TRACE_FENTRY,
                       attach_to="bpf_fentry_test1")
    with Program.load(spec) as p:
        assert p.info().attach_btf_id > 0


def test_lsm_attach_target():
    reason = features.skip_reason("trampolines")
    if reason:
        pytest.skip(reason)
    spec = ProgramSpec(ProgramType.LSM, ret(0), attach_type=AttachType.LSM_MAC,
                       attach_to="file_open")
    with Program.load(spec) as p:
        assert p.info().attach_btf_id > 0


def test_fentry_refusal_keeps_errno_class():
    # Where trampolines are refused the error is the errno's, not an empty
    # VerifierError; where they work the load succeeds.
    spec = ProgramSpec(ProgramType.TRACING, ret(0), attach_type=AttachType.TRACE_FENTRY,
                       attach_to="bpf_fentry_test1")
    probe = features.probe_trampolines()
    if probe.ok:
        Program.load(spec).close()
        return
    # Refused: the feature's NotSupportedError, in the errno's class too.
    with pytest.raises(NotSupportedError) as ei:
        Program.load(spec).close()
    assert ei.value.errno == probe.errno and not ei.value.probe.ok
    # The program type itself, or its fentry attach type, is what is missing.
    assert "TRACE_FENTRY" in str(ei.value) or "program type TRACING" in str(ei.value)
    if probe.errno == errno.EPERM:
        assert isinstance(ei.value, PermissionError)


def test_syscall_gets_sleepable_flag():
    spec = ProgramSpec(ProgramType.SYSCALL, ret(0))
    assert spec.flags == 0
    with Program.load(spec) as p:
        assert p.test_run().retval == 0
    assert ProgramFlags.SLEEPABLE == 1 << 4


# -- functions: bpf-to-bpf calls and callbacks -------------------------------------

def test_bpf_to_bpf_call():
    insns = asm.Instructions([
        asm.Mov.imm(R1, 20),
        asm.call_func("double"),
        asm.Add.imm(R0, 1),
        asm.exit(),
        asm.Mov.reg(R0, R1).with_symbol("double"),
        asm.Add.reg(R0, R1),
        asm.exit(),
    ])
    with Program.load(ProgramSpec(ProgramType.XDP, insns)) as p:
        assert p.test_run(bytes(64)).retval == 41


def _loop_program():
    # bpf_loop(10, cb, &acc, 0); cb(i, ctx) adds i to *ctx; return acc
    return asm.Instructions([
        asm.store_imm(R10, -8, 0, Size.DW),
        asm.Mov.imm(R1, 10),
        asm.load_func_ptr(R2, "cb"),
        asm.Mov.reg(R3, R10), asm.Add.imm(R3, -8),
        asm.Mov.imm(R4, 0),
        asm.call(Helper.loop),
        asm.load_mem(R0, R10, -8, Size.DW),
        asm.exit(),
        asm.load_mem(R3, R2, 0, Size.DW).with_symbol("cb"),
        asm.Add.reg(R3, R1),
        asm.store_mem(R2, 0, R3, Size.DW),
        asm.Mov.imm(R0, 0),
        asm.exit(),
    ])


def test_callbacks_get_generated_func_info():
    # The verifier wants BTF func_info for programs that pass a callback;
    # fastbpf describes hand-written functions itself.
    with Program.load(ProgramSpec(ProgramType.XDP, _loop_program(), name="loop")) as p:
        assert p.test_run(bytes(64)).retval == sum(range(10))
        assert p.info().btf_id > 0


def test_explicit_btf_is_used_as_given():
    from fastbpf.programs import _static_funcs_btf
    spec = ProgramSpec(ProgramType.XDP, _loop_program(), btf=_static_funcs_btf(2),
                       func_info=[(0, 4), (10, 6)])
    with Program.load(spec) as p:
        assert p.test_run(bytes(64)).retval == 45
    bad = ProgramSpec(ProgramType.XDP, _loop_program(), btf=_static_funcs_btf(2),
                      func_info=[(0, 4), (9, 6)])  # wrong start of cb
    with pytest.raises(BPFError):
        Program.load(bad)


def test_raw_test_run_with_empty_output_buffer_writes_nothing():
    from fastbpf import _core
    insns = asm.Instructions([asm.Mov.imm(R0, 2), asm.exit()])
    with Program.load(ProgramSpec(ProgramType.XDP, insns)) as p:
        backing = bytearray(128)
        retval, size_out, _, _ = _core.prog_test_run(p.fd, b"\xab" * 64,
                                                      memoryview(backing)[0:0])
        assert retval == 2 and backing == bytearray(128)


def test_test_run_without_data_names_the_argument():
    with load(ProgramType.XDP, ret(XDP_PASS)) as p:
        with pytest.raises(BPFError, match="pass data=") as ei:
            p.test_run()
        assert ei.value.errno == errno.EINVAL


def test_test_run_duration_is_the_kernels_figure():
    with load(ProgramType.XDP, ret(XDP_PASS)) as p:
        r = p.test_run(data=bytes(64), repeat=1000)
        # the kernel's mean per run: far below a system call's cost
        assert 0 < r.duration_ns < 100_000


def test_run_once_types_honour_or_refuse_output_sizes():
    insns = asm.Instructions([asm.load_mem(R0, R1, 0, Size.DW), asm.exit()])
    with load(ProgramType.RAW_TRACEPOINT, insns) as p:
        args = np.array([5, 6], dtype=np.uint64)
        with pytest.raises(BPFError) as ei:          # passed on, the kernel refuses
            p.test_run(ctx=args, ctx_out_size=16)
        assert ei.value.errno == errno.EINVAL
        assert p.test_run(ctx=args, repeat=3).retval == 5
    with load(ProgramType.SYSCALL, ret(0)) as s:
        with pytest.raises(ValueError, match="ctx_out_size"):
            s.test_run(ctx=bytes(8), ctx_out_size=8)


def test_test_run_results_are_not_overwritten_while_held():
    with load(ProgramType.XDP, ret(XDP_PASS)) as p:
        a = p.test_run(data=bytes([1]) * 64)
        b = p.test_run(data=bytes([2]) * 64)
        assert a is not b and a.data.tolist() == [1] * 64 and b.data.tolist() == [2] * 64


def test_test_run_keeps_its_signature_and_argument_checks():
    # test_run is compiled unbound (a method descriptor, for call speed);
    # its signature stays introspectable and its arguments are still checked.
    import inspect
    sig = inspect.signature(Program.test_run)
    assert list(sig.parameters)[1:4] == ["data", "ctx", "repeat"]
    assert sig.parameters["flags"].kind is inspect.Parameter.KEYWORD_ONLY
    with load(ProgramType.XDP, ret(XDP_PASS)) as p:
        run = p.test_run                       # a bound method, kept
        assert run(bytes(64), None, 1).retval == XDP_PASS      # positional
        assert run(data=bytes(64), repeat=1).retval == XDP_PASS
        with pytest.raises(TypeError, match="unexpected keyword|keyword argument"):
            run(data=bytes(64), bogus=1)
        with pytest.raises(TypeError):
            run(bytes(64), None, 1, 0)         # flags is keyword-only
        with pytest.raises(OverflowError, match="repeat"):
            run(data=bytes(64), repeat=-1)
