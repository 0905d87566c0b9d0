"""Feature probes against the real kernel.

Answers are checked against facts that hold on any kernel fastbpf supports
(hash maps and XDP exist, a helper restricted to one program type is absent
elsewhere, an unknown type is absent), and against what the probe's own
operation does when tried directly.
"""

from __future__ import annotations

import errno
import os

import pytest

from fastbpf import Map, MapSpec, Program, ProgramSpec, _core, asm, features
from fastbpf.asm import Helper
from fastbpf.enums import AttachType, MapFlags, MapType, ProgramType
from fastbpf.errors import BPFError, NotSupportedError

pytestmark = pytest.mark.kernel


PAGE = os.sysconf("SC_PAGE_SIZE")
# type -> (key size, value size, max_entries) that Map.create accepts.
SIMPLE_MAPS = {
    MapType.HASH: (4, 8, 1), MapType.ARRAY: (4, 8, 1), MapType.PERCPU_ARRAY: (4, 8, 1),
    MapType.PROG_ARRAY: (4, 4, 1), MapType.LPM_TRIE: (8, 8, 1), MapType.QUEUE: (0, 8, 1),
    MapType.RINGBUF: (0, 0, PAGE), MapType.USER_RINGBUF: (0, 0, PAGE),
    MapType.BLOOM_FILTER: (0, 8, 1), MapType.ARENA: (0, 0, 1),
}


def test_hash_and_array_present():
    # Every kernel with bpf(2) has them: a probe saying otherwise is broken.
    for t in (MapType.HASH, MapType.ARRAY):
        p = features.probe_map_type(t)
        assert p.ok, p.reason
        assert p.errno == 0 and p.reason is None and bool(p) is True
        assert features.have_map_type(t) is True


@pytest.mark.parametrize("t", list(SIMPLE_MAPS), ids=lambda t: t.name)
def test_map_type_probe_agrees_with_map_create(t):
    key, value, n = SIMPLE_MAPS[t]
    p = features.probe_map_type(t)
    flags = MapFlags.MMAPABLE if t == MapType.ARENA else 0
    try:
        Map.create(MapSpec(type=t, key=key, value=value, max_entries=n, flags=flags)).close()
    except NotSupportedError as e:
        # Map.create consulted the same probe and names the feature and release.
        assert e.probe is p and not p.ok
        assert t.name in str(e) and f"Linux {p.since}" in str(e)
    else:
        assert p.ok, p.reason
    if not p.ok:
        assert p.since and f"added in Linux {p.since}" in p.reason


def test_every_map_type_answers():
    for t in MapType:
        if t == MapType.UNSPEC:
            continue
        p = features.probe_map_type(t)
        assert t.name in p.feature
        # Present means no errno and no reason; absent names the errno.
        assert p.ok == (p.errno == 0) == (p.reason is None), p
        if not p.ok:
            assert p.errno in (errno.EINVAL, errno.EPERM, errno.EOPNOTSUPP, 524, errno.ENOENT)


def test_unknown_map_type_absent():
    p = features.probe_map_type.__wrapped__(MapType.UNSPEC)
    assert not p.ok and p.errno == errno.EINVAL
    assert "UNSPEC" in p.reason and "EINVAL" in p.reason


def test_program_types():
    # Socket filters and XDP exist on every kernel fastbpf supports.
    for t in (ProgramType.SOCKET_FILTER, ProgramType.XDP):
        p = features.probe_program_type(t)
        assert p.ok, p.reason
    p = features.probe_program_type.__wrapped__(ProgramType.UNSPEC)
    assert not p.ok and p.errno == errno.EINVAL


@pytest.mark.parametrize("ptype,attach", [
    (ProgramType.SCHED_CLS, None),
    (ProgramType.RAW_TRACEPOINT, None),
    (ProgramType.SYSCALL, None),
    (ProgramType.NETFILTER, AttachType.NETFILTER),
    (ProgramType.SK_LOOKUP, AttachType.SK_LOOKUP),
    (ProgramType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET4_CONNECT),
], ids=lambda v: getattr(v, "name", str(v)))
def test_program_probe_agrees_with_program_load(ptype, attach):
    p = (features.probe_program_type(ptype) if attach is None
         else features.probe_attach_type(ptype, attach))
    spec = ProgramSpec(type=ptype, attach_type=attach, instructions=asm.Instructions([
        asm.Mov.imm(asm.R0, 1 if ptype == ProgramType.CGROUP_SOCK_ADDR else 0), asm.exit()]))
    try:
        Program.load(spec).close()
    except NotSupportedError as e:
        assert not p.ok and e.probe.ok is False
        assert ptype.name in str(e) or (attach is not None and attach.name in str(e))
    else:
        assert p.ok, p.reason


def test_helpers():
    assert features.have_helper(ProgramType.XDP, Helper.map_lookup_elem)
    assert features.have_helper(ProgramType.XDP, Helper.xdp_adjust_head)
    # An XDP-only helper is absent from socket filters: the verifier's words.
    p = features.probe_helper(ProgramType.SOCKET_FILTER, Helper.xdp_adjust_head)
    assert not p.ok and p.errno == errno.EINVAL
    assert "bpf_xdp_adjust_head" in p.reason
    assert "cannot use helper" in p.detail or "unknown func" in p.detail
    # An id past the last helper is unknown everywhere.
    p = features.probe_helper(ProgramType.XDP, 100_000)
    assert not p.ok and "invalid func" in p.detail


def test_attach_types():
    if r := features.skip_reason("program_type", ProgramType.CGROUP_SOCK_ADDR):
        pytest.skip(r)
    assert features.have_attach_type(ProgramType.CGROUP_SOCK_ADDR,
                                     AttachType.CGROUP_INET4_CONNECT)
    # A cgroup attach type makes no sense for a cgroup_sock_addr program... of
    # the wrong family: the kernel refuses it before verifying.
    p = features.probe_attach_type(ProgramType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET_INGRESS)
    assert not p.ok and p.errno == errno.EINVAL


def test_trampolines_agree_with_fentry_load():
    p = features.probe_trampolines()
    assert "trampolines" in p.feature
    if p.ok:
        assert features.have_attach_type(ProgramType.TRACING, AttachType.TRACE_FENTRY)
    else:
        # What KERNEL.md reports for a kernel that refuses text patching.
        assert p.errno in (errno.EPERM, errno.EINVAL, 524, errno.EOPNOTSUPP)
        assert features.skip_reason("trampolines") == p.reason
        assert errno.errorcode.get(p.errno, "ENOTSUPP") in p.reason


def test_pmus_agree_with_sysfs():
    assert features.have_kprobe_pmu() == os.path.exists("/sys/bus/event_source/devices/kprobe/type")
    assert features.have_uprobe_pmu() == os.path.exists("/sys/bus/event_source/devices/uprobe/type")
    if not features.have_kprobe_pmu():
        assert "ENOENT" in features.skip_reason("kprobe_pmu")


def test_misc_probes():
    assert features.have_vmlinux_btf() == os.path.exists("/sys/kernel/btf/vmlinux")
    try:
        _core.enable_stats(0).close()
        stats = True
    except BPFError:
        stats = False
    assert features.have_bpf_stats() is stats


def test_require_and_skip_reason():
    features.require("map_type", MapType.HASH)          # present: no error
    assert features.skip_reason("program_type", ProgramType.XDP) is None
    absent = features.probe_helper(ProgramType.SOCKET_FILTER, Helper.xdp_adjust_head)
    with pytest.raises(NotSupportedError) as ei:
        features.require("helper", ProgramType.SOCKET_FILTER, Helper.xdp_adjust_head)
    assert ei.value.errno == absent.errno
    assert "bpf_xdp_adjust_head" in str(ei.value)
    assert isinstance(absent.error(), NotSupportedError)
    with pytest.raises(ValueError):
        features.probe("no_such_feature")


def test_answers_are_cached():
    a = features.probe_map_type(MapType.HASH)
    assert features.probe_map_type(MapType.HASH) is a
    features.clear_cache()
    b = features.probe_map_type(MapType.HASH)
    assert b == a and b is not a


# ---------------------------------------------------------------------------
# link kinds, BPF_PROG_ATTACH kinds, commands, cgroup v2, tracefs


@pytest.mark.parametrize("attach", sorted(features._LINK_KINDS, key=int), ids=lambda a: a.name)
def test_link_probe_answers(attach):
    p = features.probe_link(attach)
    assert attach.name in p.feature and p.since
    assert p.ok == (p.errno == 0) == (p.reason is None), p
    if not p.ok:
        assert f"Linux {p.since}" in p.reason
        err = p.error("link create", "x")
        assert isinstance(err, NotSupportedError) and err.probe is p and attach.name in str(err)


def test_link_probe_refuses_unknown_kind():
    with pytest.raises(ValueError, match="no link probe for attach type LIRC_MODE2"):
        features.probe_link(AttachType.LIRC_MODE2)


def test_link_create_probe_follows_cgroup_links():
    assert features.probe_link_create().ok == features.probe_link(
        AttachType.CGROUP_INET_INGRESS).ok


def test_kprobe_multi_attach_raises_the_probe():
    p = features.probe_link(AttachType.TRACE_KPROBE_MULTI)
    if p.ok:
        pytest.skip("this kernel has kprobe_multi links; nothing to refuse")
    spec = ProgramSpec(type=ProgramType.KPROBE, attach_type=AttachType.TRACE_KPROBE_MULTI,
                       instructions=asm.Instructions([asm.Mov.imm(asm.R0, 0), asm.exit()]))
    from fastbpf import link
    with Program.load(spec) as prog:
        with pytest.raises(NotSupportedError) as ei:
            link.attach_kprobe_multi(prog, ["do_nanosleep"])
    assert ei.value.probe == p and "kprobe_multi links" in str(ei.value)
    assert f"Linux {p.since}" in str(ei.value)


@pytest.mark.parametrize("attach", sorted(features._PROG_ATTACH_KINDS, key=int),
                         ids=lambda a: a.name)
def test_prog_attach_probe_answers(attach):
    p = features.probe_prog_attach(attach)
    assert attach.name in p.feature
    assert p.ok == (p.errno == 0), p


@pytest.mark.parametrize("cmd", [18, 24, 25, 26, 27, 28, 32, 33])
def test_command_probe_answers(cmd):
    from fastbpf.enums import Command
    p = features.probe_bpf_command(cmd)
    assert Command(cmd).name in p.feature and p.since
    assert p.ok == (p.errno == 0), p


def test_cgroup_v2_probe_agrees_with_mounts():
    with open("/proc/self/mounts") as f:
        mounted = [ln.split()[1] for ln in f if ln.split()[2] == "cgroup2"]
    p = features.probe_cgroup_v2()
    assert p.ok == bool(mounted and os.path.isfile(os.path.join(mounted[0], "cgroup.procs")))
    if p.ok:
        assert features.cgroup_v2_root() == mounted[0] and mounted[0] in p.feature


def test_tracefs_probe_agrees_with_the_file_system():
    p = features.probe_tracefs()
    readable = any(os.access(os.path.join(r, "events"), os.R_OK)
                   for r in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"))
    assert p.ok == readable


def test_kprobes_probe_agrees_with_sysfs_and_tracefs():
    expect = (os.path.exists("/sys/bus/event_source/devices/kprobe/type")
              or os.path.exists("/sys/kernel/tracing/kprobe_events")
              or os.path.exists("/sys/kernel/debug/tracing/kprobe_events"))
    assert features.probe_kprobes().ok == expect


SHIM = os.path.join(os.path.dirname(__file__), "..", "scripts", "kernel-without")


@pytest.mark.slow
def test_probes_see_a_kernel_without_features():
    """Under scripts/kernel-without, the probes report exactly what the shim
    takes away, with its errno, and nothing else."""
    import shutil
    import subprocess
    import sys
    if not shutil.which(os.environ.get("CC", "cc")):
        pytest.skip("no C compiler to build scripts/kernel_without.c")
    code = (
        "from fastbpf import features as f\n"
        "from fastbpf.enums import AttachType as A, MapType as M\n"
        "print(f.probe_map_type(M.RINGBUF).errno, f.probe_map_type(M.HASH).errno,\n"
        "      f.probe_link(A.TCX_INGRESS).errno, f.probe_link(A.NETFILTER).errno,\n"
        "      f.probe_bpf_command(24).errno, f.probe_bpf_command(26).errno,\n"
        "      f.probe_link_create().errno, f.probe_prog_attach(A.CGROUP_INET_EGRESS).errno)\n")
    # This suite may itself run under a shim: the children start clean.
    env = {k: v for k, v in os.environ.items() if k != "KERNEL_WITHOUT"}
    # Keep preloads such as a sanitizer runtime; drop only the shim.
    env["LD_PRELOAD"] = ":".join(x for x in os.environ.get("LD_PRELOAD", "").split(":")
                                 if x and "kernel-without" not in x and "kernel_without" not in x)
    base = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env=env).stdout.split()
    out = subprocess.run([SHIM, "map=27,attach=46:95,cmd=24,attach=1:1", "--", sys.executable,
                          "-c", code], capture_output=True, text=True, check=True,
                         env=env).stdout.split()
    assert out[0] == "22" and out[1] == "0"
    assert out[2] == "95" and out[3] == base[3]
    assert out[4] == "22" and out[5] == base[5]
    assert out[6] == base[6] and out[7] == "1"
