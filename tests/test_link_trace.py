"""Tracing hooks against the real kernel: tracepoints, raw_tp, tp_btf,
uprobes, kprobes, perf events, iterators, struct_ops, fentry/LSM.

Counters are exact where the hook can be filtered to this process (the
programs compare bpf_get_current_pid_tgid's tgid with our pid, baked in as
an immediate), and ``>=`` where the hook is system-wide.

One file past 700 lines because the tracing hooks share their fixtures
(counter maps, the uprobe target binary, kernel BTF); split it by hook
when it grows further.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
import uuid

import numpy as np
import pytest

import progs
from fastbpf import asm, btf, features, link, online_cpus
from fastbpf.asm import R0, R1, R2, R3, R4, R5, R6, R7, R10, Helper, Size
from fastbpf.enums import AttachType, LinkType, MapType, ProgramType
from fastbpf.errors import BPFError, NotSupportedError
from fastbpf.link.tracing import attach_raw_tracepoint, attach_tp_btf, attach_tracepoint, attach_tracing
from fastbpf.maps import Map, MapSpec
from fastbpf.programs import Program, ProgramSpec

pytestmark = pytest.mark.kernel

PID = os.getpid()


# ---------------------------------------------------------------------------
# helpers


def counter_map() -> Map:
    return Map.create(MapSpec(MapType.ARRAY, key=np.uint32, value=np.uint64, max_entries=4,
                              name="fbtrace_cnt"))


def count_insns(filter_pid: bool = True, slot: int = 0, value_reg: int | None = None):
    """``counters[slot] += 1`` (or ``+= value_reg`` saved in R7) when the
    current tgid is ours."""
    insns = []
    if value_reg is not None:
        insns.append(asm.Mov.reg(R7, value_reg))
    if filter_pid:
        insns += [
            asm.call(Helper.get_current_pid_tgid),
            asm.Rsh.imm(R0, 32),
            asm.JNE.imm(R0, PID, "out"),
        ]
    insns += progs.add_to_slot("counters", slot, "out", R7 if value_reg is not None else None)
    insns += [asm.Mov.imm(R0, 0).with_symbol("out"), asm.exit()]
    return insns


def load(ptype, insns, counters, **spec_kw) -> Program:
    spec = ProgramSpec(ptype, asm.Instructions(insns), **spec_kw)
    return Program.load(spec, maps={"counters": counters})


def _wait_gone(link_id: int, timeout: float = 2.0) -> None:
    import time
    end = time.monotonic() + timeout
    while link_id in link.link_ids():
        assert time.monotonic() < end, f"link {link_id} still exists"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def kspec():
    """vmlinux BTF, loaded (and cached, file held open) before any
    fd-leak check starts counting."""
    return btf.load_kernel_spec()


@pytest.fixture
def counters():
    m = counter_map()
    yield m
    m.close()


# ---------------------------------------------------------------------------
# tracepoints


def test_tracepoint_counts_exactly(counters, no_fd_leak):
    prog = load(ProgramType.TRACEPOINT, count_insns(), counters)
    with prog, link.attach_tracepoint(prog, "syscalls", "sys_enter_getpid") as l:
        assert counters[0] == 0
        for _ in range(37):
            os.getpid()  # CPython does a real getpid(2) every time
        assert counters[0] == 37
        assert not l.closed
    assert l.closed
    os.getpid()
    assert counters[0] == 37  # detached


def test_tracepoint_is_a_perf_event_link(counters, no_fd_leak):
    if r := features.skip_reason("link", AttachType.PERF_EVENT):
        pytest.skip(r)
    prog = load(ProgramType.TRACEPOINT, count_insns(), counters)
    with prog, attach_tracepoint(prog, "syscalls", "sys_enter_getpid") as l:
        assert isinstance(l, link.FDLink)
        info = l.info()
        assert info.type == LinkType.PERF_EVENT
        assert info.prog_id == prog.info().id


def test_tracepoint_cookie(counters, no_fd_leak):
    insns = [asm.Mov.reg(R6, R1), asm.call(Helper.get_attach_cookie)] + count_insns(value_reg=R0)
    prog = load(ProgramType.TRACEPOINT, insns, counters)
    with prog, attach_tracepoint(prog, "syscalls", "sys_enter_getpid", cookie=1000):
        for _ in range(3):
            os.getpid()
        assert counters[0] == 3000


def test_tracepoint_pin_and_reopen(counters, bpffs_dir, no_fd_leak):
    if r := features.skip_reason("link", AttachType.PERF_EVENT):
        pytest.skip(r)
    prog = load(ProgramType.TRACEPOINT, count_insns(), counters)
    pin = os.path.join(bpffs_dir, "tp_link")
    with prog:
        l = attach_tracepoint(prog, "syscalls", "sys_enter_getpid")
        l.pin(pin)
        l.close()
        # The pin keeps the link, and with it the perf event, attached.
        for _ in range(5):
            os.getpid()
        assert counters[0] == 5
        with link.FDLink.from_pin(pin) as again:
            assert again.info().prog_id == prog.info().id
            link_id = again.id
        os.unlink(pin)
    # Pin gone and every fd closed: the link is destroyed. bpffs drops its
    # reference from an RCU callback, so wait for the id to go away.
    _wait_gone(link_id)
    os.getpid()
    assert counters[0] == 5


def test_tracepoint_unknown_and_bad_names(counters):
    prog = load(ProgramType.TRACEPOINT, count_insns(), counters)
    with prog:
        with pytest.raises(FileNotFoundError):
            attach_tracepoint(prog, "syscalls", "sys_enter_no_such_call_" + uuid.uuid4().hex[:6])
        with pytest.raises(ValueError):
            attach_tracepoint(prog, "..", "x")


def test_tracepoint_wrong_program_type(counters):
    prog = load(ProgramType.RAW_TRACEPOINT, count_insns(), counters)
    with prog, pytest.raises(ValueError, match="TRACEPOINT"):
        attach_tracepoint(prog, "syscalls", "sys_enter_getpid")


def test_raw_tracepoint(counters, no_fd_leak):
    # Filtered by tgid, so exact: only our getpid calls... and every other
    # syscall we make. Count getpid ourselves via the syscall id in ctx.
    insns = [
        asm.load_mem(R6, R1, 8, Size.DW),       # args[1]: the syscall number
        asm.JNE.imm(R6, 39, "out"),             # __NR_getpid on x86_64
    ] + count_insns()
    if os.uname().machine != "x86_64":
        insns = count_insns()
    prog = load(ProgramType.RAW_TRACEPOINT, insns, counters)
    with prog, attach_raw_tracepoint(prog, "sys_enter") as l:
        for _ in range(20):
            os.getpid()
        if os.uname().machine == "x86_64":
            assert counters[0] == 20
        else:
            assert counters[0] >= 20
        assert l.info().type == LinkType.RAW_TRACEPOINT


def test_raw_tracepoint_unknown(counters):
    prog = load(ProgramType.RAW_TRACEPOINT, count_insns(), counters)
    with prog, pytest.raises(BPFError) as ei:
        attach_raw_tracepoint(prog, "no_such_tp_" + uuid.uuid4().hex[:6])
    assert ei.value.errno == errno.ENOENT


def test_tp_btf(counters, kspec, no_fd_leak):
    tid = kspec.type_id(kspec.type_by_name("btf_trace_sys_enter"))
    insns = [
        # tp_btf ctx: u64 args[]: (struct pt_regs *regs, long id)
        asm.load_mem(R6, R1, 8, Size.DW),
        asm.JNE.imm(R6, 39, "out"),
    ] + count_insns()
    prog = load(ProgramType.TRACING, insns, counters, attach_type=AttachType.TRACE_RAW_TP,
                attach_btf_id=tid, attach_to="sys_enter")
    with prog, attach_tp_btf(prog) as l:
        for _ in range(11):
            os.getpid()
        assert counters[0] == 11
        assert l.info().prog_id == prog.info().id


# ---------------------------------------------------------------------------
# perf events


def _busy(seconds: float) -> None:
    """Spin for *seconds* of this thread's CPU time (not wall time: on a
    loaded machine wall time overstates what the cpu-clock event sees)."""
    import time
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_perf_event_cpu_clock(counters, no_fd_leak):
    prog = load(ProgramType.PERF_EVENT, count_insns(filter_pid=False), counters)
    with prog:
        l = link.attach_perf_event(prog, sample_period=100_000)  # every 100 us of CPU
        with l:
            assert len(l.links) == len(online_cpus())
            _busy(0.1)
            assert counters[0] > 0
        assert l.closed
        n = int(counters[0])
        _busy(0.02)
        assert counters[0] == n


def test_perf_event_own_task(counters, no_fd_leak):
    # pid=ours, cpu=-1: the event follows this task only, on any CPU, and
    # the tgid filter in the program never drops a sample.
    prog = load(ProgramType.PERF_EVENT, count_insns() + [], counters)
    with prog, link.attach_perf_event(prog, sample_period=100_000, pid=PID) as l:
        assert len(l.links) == 1
        _busy(0.1)
        # ~1000 samples for 100 ms of CPU at 100 us; be generous with jitter.
        assert 100 <= counters[0] <= 2000


def test_perf_event_arguments(counters):
    prog = load(ProgramType.PERF_EVENT, count_insns(filter_pid=False), counters)
    with prog:
        with pytest.raises(ValueError):
            link.attach_perf_event(prog)
        with pytest.raises(ValueError):
            link.attach_perf_event(prog, sample_period=1, sample_freq=1)


# ---------------------------------------------------------------------------
# fentry / fexit / LSM: run-time probes decide


def _func_id(name: str) -> int:
    spec = btf.load_kernel_spec()
    return spec.type_id(spec.type_by_name(name, kind=btf.Kind.FUNC))


def _load_or_skip(ptype, attach_type, target, counters):
    # Trampolines back fentry/fexit/LSM: the probe decides, nothing else skips.
    if r := features.skip_reason("trampolines"):
        pytest.skip(r)
    return load(ptype, [asm.Mov.imm(R0, 0), asm.exit()], counters,
                attach_type=attach_type, attach_btf_id=_func_id(target))


@pytest.mark.parametrize("attach_type", [AttachType.TRACE_FENTRY, AttachType.TRACE_FEXIT])
def test_fentry_fexit(counters, kspec, attach_type, no_fd_leak):
    prog = _load_or_skip(ProgramType.TRACING, attach_type, "bpf_fentry_test1", counters)
    with prog, attach_tracing(prog) as l:
        assert l.info().type == LinkType.TRACING


def test_lsm(counters, kspec, no_fd_leak):
    prog = _load_or_skip(ProgramType.LSM, AttachType.LSM_MAC, "bpf_lsm_file_open", counters)
    with prog, attach_tracing(prog) as l:
        assert l.info().prog_id == prog.info().id


# ---------------------------------------------------------------------------
# uprobes on a small C program built here

TARGET_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((noinline)) int fbpf_target(int x) { __asm__ volatile(""); return x * 3 + 1; }
__attribute__((noinline)) int fbpf_other(int x) { __asm__ volatile(""); return x + 100; }

int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    long s = 0;
    if (argc > 2) {          /* wait until the test says go */
        char c;
        if (read(0, &c, 1) != 1) return 2;
    }
    for (int i = 0; i < n; i++)
        s += fbpf_target(i) + fbpf_other(i);
    printf("%ld\n", s);
    return 0;
}
"""

# struct pt_regs offsets of the first argument and the return value.
_REGS = {"x86_64": (112, 80), "aarch64": (0, 0)}


@pytest.fixture(scope="module")
def target_bin():
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the uprobe target")
    d = tempfile.mkdtemp(prefix="fastbpf-uprobe-")
    src, exe = os.path.join(d, "target.c"), os.path.join(d, "fbpf_target")
    with open(src, "w") as f:
        f.write(TARGET_C)
    subprocess.run(["gcc", "-O1", "-o", exe, src], check=True)
    yield exe
    shutil.rmtree(d, ignore_errors=True)


def run_target(exe: str, n: int) -> int:
    out = subprocess.run([exe, str(n)], check=True, capture_output=True, text=True).stdout
    return int(out)


def _ret_sum(n: int) -> int:
    return sum(3 * i + 1 for i in range(n))


def _uprobe_prog(counters, value_from_ret=False, attach_type=None):
    arg_off, ret_off = _REGS[os.uname().machine]
    insns = []
    if value_from_ret:
        insns = [asm.load_mem(R6, R1, ret_off, Size.W)] + count_insns(False, value_reg=R6)
    else:
        insns = count_insns(False)
    kw = {"attach_type": attach_type} if attach_type is not None else {}
    return load(ProgramType.KPROBE, insns, counters, **kw)


def _uprobe_events() -> str:
    with open("/sys/kernel/tracing/uprobe_events") as f:
        return f.read()


def test_symbol_offset(target_bin):
    from fastbpf.link.uprobe import symbol_offset, symbol_offsets
    offs = symbol_offsets(target_bin, ["fbpf_target", "fbpf_other"])
    assert offs["fbpf_target"] == symbol_offset(target_bin, "fbpf_target")
    assert offs["fbpf_target"] != offs["fbpf_other"]
    # Compare with what nm says (address) mapped through the same segment.
    nm = subprocess.run(["nm", target_bin], capture_output=True, text=True).stdout
    addr = int(next(l.split()[0] for l in nm.splitlines() if l.endswith(" fbpf_target")), 16)
    assert offs["fbpf_target"] & 0xFFF == addr & 0xFFF
    with pytest.raises(KeyError, match="nope"):
        symbol_offset(target_bin, "nope")


@pytest.mark.parametrize("legacy", [False, True])
def test_uprobe_counts_exactly(counters, target_bin, legacy, no_fd_leak):
    prog = _uprobe_prog(counters)
    with prog:
        l = link.attach_uprobe(prog, target_bin, "fbpf_target", legacy=legacy)
        with l:
            if legacy:
                assert f"fastbpf/fbpf_{PID}_" in _uprobe_events()
            assert run_target(target_bin, 25) == _ret_sum(25) + sum(i + 100 for i in range(25))
            assert counters[0] == 25
            run_target(target_bin, 3)
            assert counters[0] == 28
        run_target(target_bin, 5)
        assert counters[0] == 28
        assert f"fastbpf/fbpf_{PID}_" not in _uprobe_events()


def test_uretprobe_sees_return_value(counters, target_bin, no_fd_leak):
    prog = _uprobe_prog(counters, value_from_ret=True)
    with prog, link.attach_uprobe(prog, target_bin, "fbpf_target", retprobe=True):
        run_target(target_bin, 10)
        assert counters[0] == _ret_sum(10)


def test_uprobe_cookie_and_offset(counters, target_bin, no_fd_leak):
    from fastbpf.link.uprobe import symbol_offset
    insns = [asm.call(Helper.get_attach_cookie)] + count_insns(False, value_reg=R0)
    prog = load(ProgramType.KPROBE, insns, counters)
    off = symbol_offset(target_bin, "fbpf_other")
    with prog, link.attach_uprobe(prog, target_bin, offset=off, cookie=7):
        run_target(target_bin, 4)
        assert counters[0] == 28


def test_uprobe_pid_filter(counters, target_bin, no_fd_leak):
    prog = _uprobe_prog(counters)
    waiting = subprocess.Popen([target_bin, "7", "wait"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE)
    try:
        with prog, link.attach_uprobe(prog, target_bin, "fbpf_target", pid=waiting.pid):
            run_target(target_bin, 5)          # another process: not counted
            assert counters[0] == 0
            waiting.communicate(b"g", timeout=10)
            assert waiting.returncode == 0
            assert counters[0] == 7
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
        for pipe in (waiting.stdin, waiting.stdout):
            if not pipe.closed:   # communicate() closes them; an early error did not
                pipe.close()


def test_uprobe_multi(counters, target_bin, no_fd_leak):
    insns = [asm.call(Helper.get_attach_cookie)] + count_insns(False, value_reg=R0)
    prog = load(ProgramType.KPROBE, insns, counters, attach_type=AttachType.TRACE_UPROBE_MULTI)
    with prog:
        # A kernel without uprobe_multi links raises the probe's
        # NotSupportedError here, which conftest turns into a skip.
        l = link.attach_uprobe_multi(prog, target_bin, ["fbpf_target", "fbpf_other"],
                                     cookies=[1, 1000])
        with l:
            assert l.info().type == LinkType.UPROBE_MULTI
            run_target(target_bin, 11)
            assert counters[0] == 11 * 1001


def test_uretprobe_multi(counters, target_bin, no_fd_leak):
    prog = _uprobe_prog(counters, value_from_ret=True, attach_type=AttachType.TRACE_UPROBE_MULTI)
    with prog, link.attach_uprobe_multi(prog, target_bin, ["fbpf_target"], retprobe=True):
        run_target(target_bin, 6)
        assert counters[0] == _ret_sum(6)


def test_uprobe_missing(counters, target_bin):
    prog = _uprobe_prog(counters)
    with prog:
        with pytest.raises(FileNotFoundError):
            link.attach_uprobe(prog, target_bin + ".nope", "fbpf_target")
        with pytest.raises(KeyError):
            link.attach_uprobe(prog, target_bin, "no_such_fn")


# ---------------------------------------------------------------------------
# kprobes: this kernel may lack them (CONFIG_KPROBES); the attach decides


def test_kprobe(counters, no_fd_leak):
    prog = load(ProgramType.KPROBE, count_insns(), counters)
    with prog:
        if r := features.skip_reason("kprobes"):
            pytest.skip(r)
        l = link.attach_kprobe(prog, "__x64_sys_getpid" if os.uname().machine == "x86_64"
                               else "__arm64_sys_getpid")
        with l:
            for _ in range(9):
                os.getpid()
            assert counters[0] == 9


def test_kprobe_multi(counters, no_fd_leak):
    prog = load(ProgramType.KPROBE, count_insns(), counters,
                attach_type=AttachType.TRACE_KPROBE_MULTI)
    sym = "__x64_sys_getpid" if os.uname().machine == "x86_64" else "__arm64_sys_getpid"
    with prog:
        if r := features.skip_reason("link", AttachType.TRACE_KPROBE_MULTI):
            pytest.skip(r)
        l = link.attach_kprobe_multi(prog, [sym])
        with l:
            for _ in range(4):
                os.getpid()
            assert counters[0] == 4


def test_kprobe_bad_symbol(counters):
    prog = load(ProgramType.KPROBE, count_insns(), counters)
    with prog, pytest.raises(ValueError):
        link.attach_kprobe(prog, "foo bar")


# ---------------------------------------------------------------------------
# iterators


def _member_off(spec, struct_name: str, member: str) -> int:
    t = spec.type_by_name(struct_name, kind=btf.Kind.STRUCT)
    m = next(m for m in t.members if m.name == member)
    assert m.bit_offset % 8 == 0
    return m.bit_offset // 8


def rodata(text: bytes) -> Map:
    """A frozen, program-read-only array holding *text*: what
    bpf_seq_printf insists its format string lives in."""
    from fastbpf.enums import MapFlags
    m = Map.create(MapSpec(MapType.ARRAY, key=np.uint32, value=len(text), max_entries=1,
                           flags=MapFlags.RDONLY_PROG, name="fbtrace_ro"))
    m[0] = np.frombuffer(text, dtype=np.dtype(("V", len(text))))[0]
    m.freeze()
    return m


def seq_printf_insns(fmt: bytes, obj_reg_off: int, fields: list[tuple[int, Size]],
                     skip_unless=None):
    """Iterator body: obj = ctx[obj_reg_off]; if obj: seq_printf(fmt, fields...)."""
    insns = [
        asm.load_mem(R6, R1, 0, Size.DW),           # meta
        asm.load_mem(R7, R1, obj_reg_off, Size.DW), # the object (NULL at the end)
        asm.JEq.imm(R7, 0, "out"),
    ]
    if skip_unless is not None:
        off, size, value = skip_unless
        insns += [asm.load_mem(R2, R7, off, size), asm.JNE.imm(R2, value, "out")]
    for i, (off, size) in enumerate(fields):
        insns += [asm.load_mem(R2, R7, off, size),
                  asm.store_mem(R10, -8 * len(fields) + 8 * i, R2, Size.DW)]
    insns += [
        asm.load_mem(R1, R6, 0, Size.DW),            # meta->seq
        asm.load_map_value(R2, "fmt", 0),
        asm.Mov.imm(R3, len(fmt)),
        asm.Mov.reg(R4, R10),
        asm.Add.imm(R4, -8 * len(fields)),
        asm.Mov.imm(R5, 8 * len(fields)),
        asm.call(Helper.seq_printf),
        asm.Mov.imm(R0, 0).with_symbol("out"),
        asm.exit(),
    ]
    return insns


def load_iter(kspec, target: str, insns, fmt: bytes):
    ro = rodata(fmt)
    fid = kspec.type_id(kspec.type_by_name("bpf_iter_" + target, kind=btf.Kind.FUNC))
    spec = ProgramSpec(ProgramType.TRACING, asm.Instructions(insns),
                       attach_type=AttachType.TRACE_ITER, attach_btf_id=fid, attach_to=target)
    try:
        return Program.load(spec, maps={"fmt": ro}), ro
    except BaseException:
        ro.close()
        raise


def test_iter_task(kspec, no_fd_leak):
    tgid = _member_off(kspec, "task_struct", "tgid")
    pid = _member_off(kspec, "task_struct", "pid")
    fmt = b"task %d %d\n\0"
    insns = seq_printf_insns(fmt, 8, [(tgid, Size.W), (pid, Size.W)], skip_unless=(tgid, Size.W, PID))
    prog, ro = load_iter(kspec, "task", insns, fmt)
    with ro, prog, link.attach_iter(prog) as it:
        want = sorted(f"task {PID} {tid}" for tid in os.listdir("/proc/self/task"))
        with it.open() as f:
            lines = [l.rstrip("\n") for l in f]
        assert sorted(lines) == want
        # Each pass runs the program anew.
        assert sorted(it.read().splitlines()) == want
        assert it.read_bytes().decode() == it.read()


def test_iter_task_one_process(kspec, no_fd_leak):
    tgid = _member_off(kspec, "task_struct", "tgid")
    pid = _member_off(kspec, "task_struct", "pid")
    fmt = b"%d %d\n\0"
    insns = seq_printf_insns(fmt, 8, [(tgid, Size.W), (pid, Size.W)])
    prog, ro = load_iter(kspec, "task", insns, fmt)
    with ro, prog, link.attach_iter(prog, task_pid=PID) as it:
        assert sorted(it.read().splitlines()) == sorted(f"{PID} {t}" for t in os.listdir("/proc/self/task"))


def test_iter_bpf_map_pinned(kspec, counters, bpffs_dir, no_fd_leak):
    idoff = _member_off(kspec, "bpf_map", "id")
    fmt = b"map %u\n\0"
    insns = seq_printf_insns(fmt, 8, [(idoff, Size.W)])
    prog, ro = load_iter(kspec, "bpf_map", insns, fmt)
    pin = os.path.join(bpffs_dir, "maps_iter")
    with ro, prog, link.attach_iter(prog) as it:
        ids = {int(l.split()[1]) for l in it.open()}
        assert counters.id in ids and ro.id in ids
        it.pin(pin)
        # A pinned iterator reads like a file, with no library involved.
        with open(pin) as f:
            assert f"map {counters.id}\n" in f.read()
        os.unlink(pin)


# ---------------------------------------------------------------------------
# struct_ops: a TCP congestion control


CC_AVAILABLE = "/proc/sys/net/ipv4/tcp_available_congestion_control"


def _available_cc() -> list[str]:
    with open(CC_AVAILABLE) as f:
        return f.read().split()


def _cc_programs():
    from fastbpf.link.struct_ops import struct_ops_program_spec
    ret_const = lambda v: asm.Instructions([asm.Mov.imm(R0, v), asm.exit()])  # noqa: E731
    bodies = {"ssthresh": ret_const(10), "undo_cwnd": ret_const(10), "cong_avoid": ret_const(0)}
    progs = {}
    try:
        for member, insns in bodies.items():
            progs[member] = Program.load(struct_ops_program_spec("tcp_congestion_ops", member, insns))
    except BaseException:
        for p in progs.values():
            p.close()
        raise
    return progs


def _wait_cc(name: str, present: bool, timeout: float = 2.0) -> None:
    import time
    end = time.monotonic() + timeout
    while (name in _available_cc()) != present:
        assert time.monotonic() < end, f"{name} {'never showed up' if present else 'stayed'}"
        time.sleep(0.005)


def test_struct_ops_tcp_congestion_control(kspec, no_fd_leak):
    import socket
    name = "fbcc" + uuid.uuid4().hex[:8]
    progs = _cc_programs()
    try:
        m = link.create_struct_ops_map("tcp_congestion_ops", dict(progs, name=name))
        with m:
            assert name not in _available_cc()      # BPF_F_LINK: nothing registered yet
            with link.attach_struct_ops(m) as l:
                assert name in _available_cc()
                assert l.info().type == LinkType.STRUCT_OPS
                # A socket can select it.
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode())
                    got = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
                    assert got.rstrip(b"\0").decode() == name
            _wait_cc(name, False)
    finally:
        for p in progs.values():
            p.close()


def test_struct_ops_without_link_flag(kspec, no_fd_leak):
    name = "fbcc" + uuid.uuid4().hex[:8]
    progs = _cc_programs()
    try:
        m = link.create_struct_ops_map("tcp_congestion_ops", dict(progs, name=name), link=False)
        with m:
            assert name in _available_cc()          # the value update registered it
            l = link.attach_struct_ops(m)
            l.close()
            _wait_cc(name, False)
    finally:
        for p in progs.values():
            p.close()


def test_struct_ops_value_errors(kspec):
    from fastbpf.link.struct_ops import struct_ops_value
    with pytest.raises(KeyError):
        struct_ops_value("tcp_congestion_ops", {"no_such_member": 1})
    with pytest.raises(ValueError):
        struct_ops_value("tcp_congestion_ops", {"name": "x" * 16})


# ---------------------------------------------------------------------------
# the ioctl path (kernels before perf-event links) and cleanup on GC


def test_tracepoint_ioctl_attach(counters, no_fd_leak):
    from fastbpf import _core
    from fastbpf.link.perf_event import PerfType, attach_perf_fd
    from fastbpf.link.tracing import tracepoint_id
    prog = load(ProgramType.TRACEPOINT, count_insns(), counters)
    with prog:
        pfd = _core.perf_event_open(PerfType.TRACEPOINT,
                                    tracepoint_id("syscalls", "sys_enter_getpid"), -1, 0)
        l = attach_perf_fd(prog, pfd, use_link=False, description="getpid")
        assert isinstance(l, link.DetachLink)
        with l:
            for _ in range(6):
                os.getpid()
            assert counters[0] == 6
            with pytest.raises(NotSupportedError):
                l.pin("/sys/fs/bpf/never")
            with pytest.raises(NotSupportedError):
                l.update(prog)
        os.getpid()
        assert counters[0] == 6
        assert pfd.closed


def test_legacy_uprobe_removed_when_collected(counters, target_bin, no_fd_leak):
    import gc
    prog = _uprobe_prog(counters)
    with prog:
        l = link.attach_uprobe(prog, target_bin, "fbpf_target", legacy=True)
        assert f"fastbpf/fbpf_{PID}_" in _uprobe_events()
        del l
        gc.collect()
        assert f"fastbpf/fbpf_{PID}_" not in _uprobe_events()


def test_perf_event_group_pin(counters, bpffs_dir, no_fd_leak):
    if r := features.skip_reason("link", AttachType.PERF_EVENT):
        pytest.skip(r)
    prog = load(ProgramType.PERF_EVENT, count_insns(filter_pid=False), counters)
    with prog, link.attach_perf_event(prog, sample_freq=1000) as g:
        g.pin(os.path.join(bpffs_dir, "clock"))
        assert sorted(os.listdir(os.path.join(bpffs_dir, "clock"))) == sorted(
            f"cpu{c}" for c in g.cpus)
