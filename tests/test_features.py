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

from fastbpf import _core, features
from fastbpf.asm import Helper
from fastbpf.enums import AttachType, MapType, ProgramType
from fastbpf.errors import BPFError, NotSupportedError


def test_common_map_types_present():
    for t in (MapType.HASH, MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY,
              MapType.RINGBUF, MapType.LPM_TRIE, MapType.ARRAY_OF_MAPS, MapType.QUEUE,
              MapType.CGROUP_STORAGE, MapType.SK_STORAGE):
        p = features.probe_map_type(t)
        assert p.ok, p.reason
        assert p.errno == 0 and p.reason is None and bool(p) is True
        assert features.have_map_type(t) is True


def test_every_map_type_answers_and_agrees_with_a_create():
    # The answer for a plain type must match creating one by hand.
    for t in MapType:
        if t == MapType.UNSPEC:
            continue
        assert isinstance(features.have_map_type(t), bool)
    try:
        _core.map_create(int(MapType.ARENA), 0, 0, 1, 1 << 10).close()
        arena = True
    except BPFError:
        arena = False
    assert features.have_map_type(MapType.ARENA) is arena


def test_unknown_map_type_absent():
    p = features.probe_map_type.__wrapped__(MapType.UNSPEC)
    assert not p.ok and p.errno == errno.EINVAL
    assert "UNSPEC" in p.reason and "EINVAL" in p.reason


def test_program_types():
    for t in (ProgramType.SOCKET_FILTER, ProgramType.XDP, ProgramType.SCHED_CLS,
              ProgramType.RAW_TRACEPOINT, ProgramType.SYSCALL, ProgramType.CGROUP_SOCK_ADDR,
              ProgramType.TRACING, ProgramType.SK_LOOKUP):
        p = features.probe_program_type(t)
        assert p.ok, p.reason
    p = features.probe_program_type.__wrapped__(ProgramType.UNSPEC)
    assert not p.ok and p.errno == errno.EINVAL


def test_helpers():
    assert features.have_helper(ProgramType.XDP, Helper.map_lookup_elem)
    assert features.have_helper(ProgramType.XDP, Helper.ringbuf_output)
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
    assert features.have_attach_type(ProgramType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET4_CONNECT)
    assert features.have_attach_type(ProgramType.TRACING, AttachType.TRACE_RAW_TP)
    assert features.have_attach_type(ProgramType.TRACING, AttachType.TRACE_ITER)
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
    assert features.have_bpf_stats()


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
