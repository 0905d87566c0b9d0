"""fastbpf.ringbuf.UserWriter against the kernel: samples written from user
space are drained by a syscall program (``bpf_user_ringbuf_drain``) that
sums them into an array map."""

from __future__ import annotations

import os
import signal
import sys
import threading

import numpy as np
import pytest

from fastbpf import Map, MapSpec, MapType, asm, features, ringbuf
from fastbpf.asm import R0, R1, R2, R3, R4, R5, R6, R10, Helper, Size
from fastbpf.enums import ProgramType
from fastbpf.errors import ClosedError
from fastbpf.programs import Program

sys.path.insert(0, os.path.dirname(__file__))
from ringutil import forked_calls, run_in_child  # noqa: E402


@pytest.fixture
def need_user_ringbuf():
    """Skip unless the kernel has user ring buffers (Linux 6.1)."""
    reason = features.skip_reason("user_ringbuf")
    if reason:
        pytest.skip(reason)


def _callback_btf() -> bytes:
    """A minimal BTF blob: ``int main(void *ctx)`` and
    ``int cb(void *dynptr, void *ctx)``, both static. The verifier wants
    func_info for programs whose callbacks are passed by pointer."""
    import struct
    strings = b"\0int\0main\0cb\0ctx\0d\0"
    s_int, s_main, s_cb, s_ctx, s_d = 1, 5, 10, 13, 17
    t = b""
    t += struct.pack("<III", s_int, 1 << 24, 4) + struct.pack("<I", (1 << 24) | 32)  # 1 int
    t += struct.pack("<III", 0, 2 << 24, 0)                                        # 2 void *
    t += struct.pack("<III", 0, (13 << 24) | 1, 1) + struct.pack("<II", s_ctx, 2)   # 3 proto(ctx)
    t += struct.pack("<III", s_main, 12 << 24, 3)                                  # 4 main
    t += struct.pack("<III", 0, (13 << 24) | 2, 1) + struct.pack("<IIII", s_d, 2, s_ctx, 2)  # 5
    t += struct.pack("<III", s_cb, 12 << 24, 5)                                    # 6 cb
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(t), len(t), len(strings))
    return hdr + t + strings


def drain_prog(urb: Map, sums: Map) -> Program:
    """syscall program: bpf_user_ringbuf_drain(urb, cb), whose callback adds
    each sample's first u64 into sums[0]; returns the number drained."""
    import struct
    from fastbpf import _core
    body = [
        asm.load_map_ptr(R1, "urb"), asm.load_func_ptr(R2, "cb"),
        asm.Mov.imm(R3, 0), asm.Mov.imm(R4, 0),
        asm.call(Helper.user_ringbuf_drain),
        asm.exit(),
        # cb(struct bpf_dynptr *dynptr, void *ctx), at slot 8
        asm.Mov.reg(R3, R1).with_symbol("cb"),
        asm.Mov.reg(R1, R10), asm.Add.imm(R1, -8),
        asm.Mov.imm(R2, 8), asm.Mov.imm(R4, 0), asm.Mov.imm(R5, 0),
        asm.call(Helper.dynptr_read),
        asm.JNE.imm(R0, 0, "cb_out"),
        asm.load_mem(R6, R10, -8, Size.DW),
        asm.store_imm(R10, -12, 0, Size.W),
        asm.Mov.reg(R2, R10), asm.Add.imm(R2, -12),
        asm.load_map_ptr(R1, "sums"), asm.call(Helper.map_lookup_elem),
        asm.JEq.imm(R0, 0, "cb_out"),
        asm.atomic_add(R0, 0, R6, Size.DW),
        asm.Mov.imm(R0, 0).with_symbol("cb_out"), asm.exit(),
    ]
    code = asm.Instructions(body).resolve_maps({"urb": urb, "sums": sums}).encode()
    func_info = struct.pack("<IIII", 0, 4, 8, 6)     # (insn_off, type_id) per function
    with _core.btf_load(_callback_btf()) as btf_fd:
        log = bytearray(1 << 20)
        fd, _ = _core.prog_load(int(ProgramType.SYSCALL), code, "GPL", prog_flags=1 << 4,
                                prog_btf_fd=btf_fd.fd, func_info=func_info,
                                func_info_rec_size=8, log_level=1, log_buf=log)
    return Program(fd, ProgramType.SYSCALL, "")


@pytest.fixture
def user_ring(unique_name, no_fd_leak, need_user_ringbuf):
    urb = Map.create(MapSpec(type=MapType.USER_RINGBUF, max_entries=1 << 12,
                             name=unique_name[:12] + "ur"))
    sums = Map.create(MapSpec(type=MapType.ARRAY, key="<u4", value="<u8", max_entries=1))
    try:
        prog = drain_prog(urb, sums)
    except BaseException:
        urb.close()
        sums.close()
        raise
    yield urb, sums, prog
    prog.close()
    urb.close()
    sums.close()


def test_user_writer_delivers_to_program(user_ring):
    urb, sums, prog = user_ring
    with ringbuf.UserWriter(urb) as w:
        free0 = w.free
        assert free0 == 1 << 12
        for v in (1, 2, 3):
            buf = w.reserve(8)
            assert buf.dtype == np.uint8 and buf.flags.writeable
            buf.view("<u8")[0] = v
            w.submit(buf)
        x = w.reserve(dtype="<u8")
        x[...] = 1000
        w.discard(x)                            # skipped by the kernel
        w.write(np.array([40], "<u8"))
        rec = w.reserve(dtype=np.dtype([("v", "<u8"), ("pad", "<u8")]))
        rec["v"] = 500
        w.submit(rec)
        assert w.free == free0 - (5 * 16 + 24)   # 5 eight-byte samples, one 16-byte
        res = prog.test_run(repeat=0)
        assert res.retval == 5                  # drained samples (the discarded one not counted)
        assert sums[0] == 1 + 2 + 3 + 40 + 500
        assert w.free == free0                  # the kernel advanced the consumer
        with pytest.raises(ValueError, match="outstanding"):
            w.submit(buf)                       # already submitted


def test_user_writer_full_and_busy(user_ring):
    urb, sums, prog = user_ring
    with ringbuf.UserWriter(urb) as w:
        held = w.reserve(8)                     # busy: the kernel stops here
        held.view("<u8")[0] = 7
        n = 0
        with pytest.raises(BlockingIOError):
            while True:
                w.write(np.array([1], "<u8"))
                n += 1
        assert n == (1 << 12) // 16 - 1
        assert prog.test_run(repeat=0).retval == 0      # nothing passes the busy sample
        w.submit(held)
        assert prog.test_run(repeat=0).retval == n + 1
        assert sums[0] == 7 + n
        with pytest.raises(ValueError, match="cannot fit"):
            w.reserve(1 << 12)


def test_user_writer_closed(user_ring):
    urb, sums, prog = user_ring
    w = ringbuf.UserWriter(urb)
    w.close()
    with pytest.raises(ClosedError):
        w.reserve(8)


def test_user_ring_partly_full_times_out(unique_name, no_fd_leak, need_user_ringbuf):
    urb = Map.create(MapSpec(type=MapType.USER_RINGBUF, max_entries=4096, name=unique_name))
    with urb, ringbuf.UserWriter(urb) as w:
        sample = w.reserve(2000)
        w.submit(sample)
        with pytest.raises(BlockingIOError):
            w.reserve(2500, timeout=0)
        with pytest.raises(BlockingIOError):
            w.reserve(2500, timeout=0.1)


def test_user_writer_in_a_forked_child_raises_and_leaves_the_parents_ring(user_ring):
    urb, sums, prog = user_ring
    with ringbuf.UserWriter(urb) as w:
        w.write(np.array([5], "<u8"))

        def child():
            out = forked_calls([lambda: w.write(np.array([7], "<u8")),
                                 lambda: w.reserve(8), lambda: w.free])
            w.close()
            return out

        out = run_in_child(child)
        assert out.count("cannot use it") == 3, out
        w.write(np.array([6], "<u8"))
        assert prog.test_run(repeat=0).retval == 2
        assert sums[0] == 11


def test_user_writer_waiting_for_room_runs_signal_handlers(unique_name, no_fd_leak,
                                                           need_user_ringbuf):
    """A write that waits for room (timeout=None) while the ring has some,
    but not enough, still runs signal handlers: SIGALRM's handler and
    Ctrl-C's KeyboardInterrupt end the wait. The full-ring message counts
    the sample's header. (In a child, so a regression fails instead of
    hanging the suite.)"""
    urb = Map.create(MapSpec(type=MapType.USER_RINGBUF, max_entries=4096, name=unique_name))

    class Alarm(Exception):
        pass

    def on_alarm(signum, frame):
        raise Alarm()

    def child():
        signal.signal(signal.SIGALRM, on_alarm)
        with ringbuf.UserWriter(urb) as w:
            w.write(bytes(4096 - 64 - 8))       # 64 bytes left; a 64-byte sample takes 72
            assert w.free == 64
            with pytest.raises(BlockingIOError) as e:
                w.write(bytes(64), timeout=0)
            got = [str(e.value)]
            # Timers armed inside the blocks: on a slow (sanitized, loaded)
            # machine the signal may come before the call starts waiting.
            with pytest.raises(Alarm):
                signal.setitimer(signal.ITIMER_REAL, 0.1)
                w.write(bytes(64), timeout=None)
            got.append("alarm")
            with pytest.raises(KeyboardInterrupt):
                threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
                w.reserve(64, timeout=None)
            got.append("interrupt")
            assert w.free == 64                 # nothing was reserved by the interrupted calls
        return "\n".join(got)

    with urb:
        out = run_in_child(child)
    assert out.split("\n") == [
        "[Errno 11] user ring buffer full: a 64-byte sample takes 72 bytes "
        "(8-byte header, padded to 8), 64 free", "alarm", "interrupt"]
