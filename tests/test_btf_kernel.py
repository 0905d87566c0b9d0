"""BTF objects in the kernel: BPF_BTF_LOAD, GET_FD_BY_ID, reading back, and
map BTF that bpftool pretty-prints."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from fastbpf import btf, features

_core = pytest.importorskip("fastbpf._core", reason="fastbpf._core is not built")

pytestmark = pytest.mark.kernel

from elfutil import btf_spec, data_path
BPF_MAP_TYPE_HASH = 1


def _testdata_spec():
    return btf_spec(data_path("btf_types-el.o"))


def test_load_map_btf_and_read_it_back():
    spec = _testdata_spec()
    mspec, key_id, value_id = btf.build_map_btf(spec.type_by_name("flow_key"),
                                                spec.type_by_name("flow"))
    assert mspec.type_by_id(key_id).name == "flow_key"
    assert mspec.type_by_id(value_id).name == "flow"
    assert {t.name for t in mspec} >= {"flow_key", "flow", "u32", "color"}
    assert "everything" not in {t.name for t in mspec}
    with btf.Handle.load(mspec) as h:
        assert h.fd >= 3 and h.id > 0
        info = h.info()
        assert info.id == h.id and not info.kernel_btf
        assert h.spec() == mspec
        with btf.Handle.from_id(h.id) as again:
            assert again.id == h.id and again.fd != h.fd
            assert again.spec() == mspec
    assert h.closed
    with pytest.raises(ValueError):
        h.fd


def test_big_endian_spec_is_loaded_in_native_order():
    spec = btf_spec(data_path("btf_types-eb.o"))
    mspec, k, v = btf.build_map_btf(spec.type_by_name("flow_key"), spec.type_by_name("flow"))
    with btf.Handle.load(mspec) as h:
        assert h.spec().type_by_id(v).name == "flow"


def test_kernel_rejection_carries_the_log():
    bad = btf.Spec([btf.Struct("1bad name", 4, [("x", btf.Int("int", 4), 0)])])
    bad.add(bad.type_by_id(1).members[0].type)
    with pytest.raises(btf.BTFLoadError) as e:
        btf.Handle.load(bad)
    assert e.value.log and "Invalid name" in e.value.log
    assert isinstance(e.value, btf.BTFError)


@pytest.mark.skipif(bool(features.skip_reason("vmlinux_btf")),
                    reason=str(features.skip_reason("vmlinux_btf")))
def test_vmlinux_by_id_matches_sysfs():
    start, found = 0, None
    while found is None:
        try:
            start = _core.btf_get_next_id(start)
        except FileNotFoundError:
            break
        try:
            with btf.Handle.from_id(start) as h:
                if h.info().name == "vmlinux":
                    found = _core.btf_get_data(h.fd)
        except FileNotFoundError:
            continue
    assert found is not None, "no BTF object named vmlinux"
    with open("/sys/kernel/btf/vmlinux", "rb") as f:
        assert found == f.read()


@pytest.mark.skipif(bool(features.skip_reason("vmlinux_btf")),
                    reason=str(features.skip_reason("vmlinux_btf")))
def test_map_btf_from_kernel_types_stays_small():
    k = btf.load_kernel_spec()
    # struct sk_buff is full of pointers to big structs; they become fwds.
    mspec, key_id, value_id = btf.build_map_btf(k.type_by_name("pid_t"),
                                                k.type_by_name("sk_buff"))
    assert len(mspec) < 200
    assert mspec.type_by_id(value_id).size == k.type_by_name("sk_buff").size
    with btf.Handle.load(mspec) as h:
        assert h.id > 0


@pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool is not installed")
def test_bpftool_pretty_prints_what_format_prints():
    spec = _testdata_spec()
    key_t, value_t = spec.type_by_name("flow_key"), spec.type_by_name("flow")
    mspec, key_id, value_id = btf.build_map_btf(key_t, value_t)
    kdt, vdt = btf.to_dtype(key_t), btf.to_dtype(value_t)
    with btf.Handle.load(mspec) as h:
        fd = _core.map_create(BPF_MAP_TYPE_HASH, kdt.itemsize, vdt.itemsize, 4, 0, "fbpf_btf_t",
                              btf_fd=h.fd, btf_key_type_id=key_id,
                              btf_value_type_id=value_id)
    with fd:
        key = np.zeros((), kdt)
        key["saddr"], key["sport"], key["proto"] = 0x0100007F, 80, 6
        value = np.zeros((), vdt)
        value["packets"], value["comm"], value["active"], value["color"] = 9, b"nginx", 1, 2
        _core.map_update_elem(fd.fd, key.tobytes(), value.tobytes())
        info = _core.map_info(fd.fd)
        out = subprocess.run(["bpftool", "-j", "map", "dump", "id", str(info["id"])],
                             capture_output=True, text=True, check=True).stdout
    dumped = json.loads(out)[0]["formatted"]
    assert dumped["key"] == btf.format(key, key_t)
    assert dumped["value"] == btf.format(value, value_t)
    assert dumped["value"]["color"] == "BLUE" and dumped["value"]["comm"] == "nginx"
