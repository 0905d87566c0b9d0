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
        if t != MapType.UNSPEC:
            assert isinstance(features.probe_map_type(t), features.Probe)


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
