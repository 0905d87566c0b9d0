"""One vocabulary across the library: the exception families, pinning,
updating, truthiness and the CPU lists (issue 12, section 3)."""

from __future__ import annotations

import errno
import inspect
import os
import socket

import numpy as np
import pytest

import fastbpf
from fastbpf import link
from progs import ret
from fastbpf.enums import MapType, ProgramType
from fastbpf.errors import (BPFError, ClosedError, NotSupportedError, TargetNotFoundError,
                            target_not_found_error)
from fastbpf.maps import Map, MapSpec
from fastbpf.programs import Program, ProgramSpec


def _prog(ptype=ProgramType.SOCKET_FILTER) -> Program:
    return Program.load(ProgramSpec(ptype, ret(0)))


# -- "target not found" ------------------------------------------------------------

def test_target_not_found_is_one_family_and_keeps_the_old_builtins():
    e = target_not_found_error(errno.ENOENT, "find function", "f in /bin/x", key_error=True)
    assert isinstance(e, TargetNotFoundError) and isinstance(e, BPFError)
    assert isinstance(e, FileNotFoundError) and isinstance(e, KeyError)
    assert isinstance(e, LookupError)
    assert str(e).startswith("find function f in /bin/x: ")
    e = target_not_found_error(errno.ENODEV, "find interface", "'x'")
    assert isinstance(e, TargetNotFoundError) and e.errno == errno.ENODEV
    assert not isinstance(e, KeyError)


def test_missing_targets_raise_target_not_found():
    with _prog(ProgramType.TRACEPOINT) as p:
        with pytest.raises(TargetNotFoundError) as ei:
            link.attach_tracepoint(p, "syscalls", "sys_enter_fb_no_such_call")
        assert isinstance(ei.value, FileNotFoundError)
    with _prog(ProgramType.RAW_TRACEPOINT) as p:
        with pytest.raises(TargetNotFoundError) as ei:
            link.attach_raw_tracepoint(p, "fb_no_such_tp")
        assert ei.value.errno == errno.ENOENT
    with _prog(ProgramType.KPROBE) as p:
        with pytest.raises(TargetNotFoundError):
            link.attach_uprobe(p, "/nonexistent/fb_binary", "main")
        with pytest.raises(TargetNotFoundError) as ei:
            link.attach_uprobe(p, "/proc/self/exe", "fb_no_such_function")
        assert isinstance(ei.value, KeyError)
    with _prog(ProgramType.XDP) as p, pytest.raises(TargetNotFoundError) as ei:
        link.attach_xdp(p, "fbnosuchif0")
    assert ei.value.errno == errno.ENODEV


# -- closed objects, unpinnable links --------------------------------------------------

def test_closed_socket_is_a_closed_error():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.close()
    with _prog() as p, pytest.raises(ClosedError):
        link.attach_socket_filter(p, s)


def test_detach_links_refuse_pin_unpin_update_with_not_supported():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with _prog() as p, link.attach_socket_filter(p, s) as lk:
            for call in (lambda: lk.pin("/sys/fs/bpf/fb_never"), lk.unpin,
                         lambda: lk.update(p)):
                with pytest.raises(NotSupportedError) as ei:
                    call()
                assert ei.value.errno == errno.EOPNOTSUPP
                assert "DetachLink" in str(ei.value)
    finally:
        s.close()


# -- one signature ----------------------------------------------------------------------

def test_unpin_and_update_have_one_signature():
    def params(f):
        return [(p.name, p.default) for p in inspect.signature(f).parameters.values()]
    want = [("self", inspect.Parameter.empty), ("path", None)]
    for cls in (Map, Program, link.Link, link.FDLink, link.PerfEventGroup):
        assert params(cls.unpin) == want, cls
    update = params(link.Link.update)
    for cls in (link.FDLink, link.TCFilterLink, link.DetachLink, link.PerfEventLink):
        assert params(cls.update) == update, cls


def test_from_pin_remembers_the_path(bpffs_dir):
    path = os.path.join(bpffs_dir, "m")
    with Map.create(MapSpec(type=MapType.HASH, key=np.uint32, value=np.uint32,
                            max_entries=2)) as m:
        m.pin(path)
        assert m.pin_path == path
    with Map.from_pin(path) as again:
        assert again.pin_path == path
        again.unpin()
        assert again.pin_path is None
    assert not os.path.exists(path)
    with Map.create(MapSpec(type=MapType.HASH, key=4, value=4, max_entries=2)) as m:
        with pytest.raises(ValueError, match="pass the path"):
            m.unpin()
    ppath = os.path.join(bpffs_dir, "p")
    with _prog() as p:
        p.pin(ppath)
        with Program.from_pin(ppath) as again:
            again.unpin()
    assert not os.path.exists(ppath)


# -- bool(map) ------------------------------------------------------------------------------

def test_bool_of_a_map_follows_the_dict_protocol():
    with Map.create(MapSpec(type=MapType.HASH, key=np.uint32, value=np.uint32,
                            max_entries=4)) as m:
        assert not m and len(m) == 0
        m[1] = 1
        assert m
        del m[1]
        assert not m
    with pytest.raises(ClosedError):
        bool(m)
    with Map.create(MapSpec(type=MapType.ARRAY, key=np.uint32, value=np.uint32,
                            max_entries=4)) as a:
        assert a            # array maps always hold max_entries slots
    with Map.create(MapSpec(type=MapType.QUEUE, value=4, max_entries=4)) as q:
        with pytest.raises(TypeError):
            bool(q)


# -- CPU lists -------------------------------------------------------------------------------

def test_one_cpu_list_parser():
    from fastbpf.cpus import parse_cpu_list
    assert parse_cpu_list("0-3,6,8-9\n") == [0, 1, 2, 3, 6, 8, 9]
    assert parse_cpu_list("0") == [0]
    assert parse_cpu_list("") == []
    online = fastbpf.online_cpus()
    assert online and set(online) <= set(range(fastbpf.possible_cpus()))
    assert fastbpf.possible_cpus() == fastbpf._core.possible_cpus()
    assert fastbpf.perf.online_cpus is fastbpf.online_cpus


# -- ids, info, constructors --------------------------------------------------------

def test_one_id_listing_family():
    with Map.create(MapSpec(type=MapType.ARRAY, key=np.uint32, value=np.uint32,
                            max_entries=1)) as m, _prog() as p:
        assert m.id in fastbpf.map_ids()
        assert p.id in fastbpf.program_ids()
    ids = fastbpf.btf_ids()  # one listing: other processes create BTF objects meanwhile
    assert ids and ids == sorted(ids)
    assert fastbpf.btf.btf_ids is fastbpf.btf_ids
    assert isinstance(fastbpf.link_ids(), list)


def test_info_is_a_dataclass_everywhere():
    import dataclasses
    h = fastbpf.btf.Handle.from_id(fastbpf.btf_ids()[0])
    with h:
        info = h.info()
        assert dataclasses.is_dataclass(info) and info.id == h.id
        assert info.name == "vmlinux" and info.kernel_btf and info.btf_size > 0
    with _prog() as p, Map.create(MapSpec(type=MapType.ARRAY, key=4, value=4,
                                          max_entries=1)) as m:
        assert dataclasses.is_dataclass(p.info()) and dataclasses.is_dataclass(m.info())


def test_constructors_take_an_owned_fd_only():
    with pytest.raises(TypeError, match="Map.create"):
        Map()
    with pytest.raises(TypeError, match="from_fd"):
        Program(3, ProgramType.XDP)
    with pytest.raises(TypeError, match="from_fd"):
        link.FDLink(3)
    with pytest.raises(TypeError, match="Handle.load"):
        fastbpf.btf.Handle(3)


def test_features_int_btf_is_built_by_the_btf_package():
    from fastbpf import btf, features
    spec = btf.Spec.parse(features._int_btf())
    t = spec.type_by_id(1)
    assert isinstance(t, btf.Int) and t.name == "int" and t.size == 4 and t.signed
    with fastbpf._core.btf_load(features._int_btf()):
        pass
