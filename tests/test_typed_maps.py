"""Maps created from numpy dtypes carry BTF built from them, and reopen typed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from fastbpf import Map, MapSpec, MapType, btf, lpm_key_dtype
from fastbpf.btf.from_dtype import UnsupportedDtype, from_dtype

FLOW = np.dtype([("saddr", ">u4"), ("daddr", ">u4"), ("sport", ">u2"), ("dport", ">u2"),
                 ("proto", "u1")], align=True)
STATS = np.dtype([("packets", "<u8"), ("bytes", "<u8"), ("comm", "S16"),
                  ("lat", "<u4", (2, 4)), ("ratio", "<f8"), ("seen", "?"),
                  ("inner", [("a", "<i2"), ("b", "<i1")])])


@pytest.mark.parametrize("dt", [
    np.dtype("<u4"), np.dtype("<i8"), np.dtype("<f4"), np.dtype("<f8"), np.dtype("?"),
    np.dtype(">u2"), np.dtype(">u4"), np.dtype(">u8"), np.dtype(">i4"), np.dtype("S12"),
    FLOW, STATS, lpm_key_dtype(4), np.dtype([("m", "<u2", (3, 2, 2))]),
], ids=str)
def test_dtype_to_btf_and_back(dt):
    t = from_dtype(dt, "thing")
    assert t.size == dt.itemsize
    assert btf.to_dtype(t, byte_order="little") == dt


def test_big_endian_fields_are_be_typedefs():
    t = from_dtype(FLOW, "flow")
    members = {m.name: m.type for m in t.members}
    assert isinstance(members["dport"], btf.Typedef) and members["dport"].name == "__be16"
    assert isinstance(members["saddr"], btf.Typedef) and members["saddr"].name == "__be32"
    assert isinstance(members["proto"], btf.Int) and members["proto"].size == 1
    # and a __be64 typedef read from BTF (say, a kernel header's) is '>u8'
    be64 = btf.Typedef("__be64", btf.Int("unsigned long long", 8))
    assert btf.to_dtype(be64) == np.dtype(">u8")
    s = btf.Struct("k", 8, [btf.Member("x", btf.Const(be64), 0)])
    assert btf.to_dtype(s)["x"] == np.dtype(">u8")


@pytest.mark.parametrize("dt", [np.dtype("c16"), np.dtype("M8[s]"), np.dtype(">f4"),
                                np.dtype([("not an identifier", "u4")])], ids=str)
def test_unsupported_dtypes_say_so(dt):
    with pytest.raises(UnsupportedDtype):
        from_dtype(dt, "x")


def test_typed_map_reopens_with_the_same_dtypes(unique_name, bpffs_dir):
    with Map.create(MapSpec(MapType.HASH, key=FLOW, value=STATS, max_entries=16,
                            name=unique_name)) as m:
        info = m.info()
        assert info.btf_id and info.btf_key_type_id and info.btf_value_type_id
        k = np.zeros((), FLOW)
        k["saddr"], k["dport"], k["proto"] = 0x0A000001, 8080, 17
        v = np.zeros((), STATS)
        v["packets"], v["comm"], v["lat"][1, 3], v["ratio"], v["inner"]["b"] = \
            7, b"nginx", 99, 0.5, -1
        m[k] = v
        pin = os.path.join(bpffs_dir, "flows")
        m.pin(pin)
        for other in (Map.from_pin(pin), Map.from_id(info.id)):
            with other:
                assert other.key_dtype == FLOW and other.value_dtype == STATS
                (key, val), = list(other.items())
                assert key["dport"] == 8080 and key["saddr"] == 0x0A000001
                assert val["comm"] == b"nginx" and val["lat"][1, 3] == 99
                assert val["ratio"] == 0.5 and val["inner"]["b"] == -1
                assert other[k]["packets"] == 7
        # The bytes in the kernel are network order, as in a packet.
        raw = Map.from_pin(pin, key=FLOW.itemsize, value=STATS.itemsize)
        with raw:
            rk = bytes(next(iter(raw.keys())).tobytes())
        assert rk[10:12] == (8080).to_bytes(2, "big") and rk[0:4] == bytes([10, 0, 0, 1])


def test_explicit_dtypes_still_win(unique_name):
    with Map.create(MapSpec(MapType.HASH, key=np.uint32, value=np.uint64, max_entries=2,
                            name=unique_name)) as m:
        with Map.from_id(m.id, value=np.dtype("<i8")) as again:
            assert again.key_dtype == np.uint32 and again.value_dtype == np.dtype("<i8")


def test_raw_byte_maps_stay_without_btf(unique_name):
    with Map.create(MapSpec(MapType.HASH, key=4, value=8, max_entries=2,
                            name=unique_name)) as m:
        assert m.info().btf_id == 0
        with Map.from_id(m.id) as again:
            assert again.value_dtype == np.dtype("V8")


def test_unsupported_value_dtype_creates_an_untyped_map(unique_name):
    with Map.create(MapSpec(MapType.HASH, key=np.uint32, value=np.complex64, max_entries=2,
                            name=unique_name)) as m:
        m[1] = 1 + 2j
        assert m[1] == 1 + 2j and m.info().btf_id == 0


@pytest.mark.parametrize("mtype", [MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PERCPU_HASH,
                                   MapType.LRU_HASH, MapType.LRU_PERCPU_HASH], ids=str)
def test_typed_maps_of_each_kind(mtype, unique_name):
    key = 4 if mtype in (MapType.ARRAY, MapType.PERCPU_ARRAY) else np.uint32
    vd = np.dtype([("n", "<u8"), ("port", ">u2")])
    with Map.create(MapSpec(mtype, key=key, value=vd, max_entries=4, name=unique_name)) as m:
        with Map.from_id(m.id) as again:
            assert again.key_dtype == np.uint32 and again.value_dtype == vd
            v = np.zeros((), vd)
            v["port"] = 443
            again[1] = v
            got = again[1]
            got = got[0] if mtype.is_percpu else got
            assert got["port"] == 443


def test_lpm_trie_with_a_struct_key(unique_name):
    kd = lpm_key_dtype(4)
    with Map.create(MapSpec(MapType.LPM_TRIE, key=kd, value=np.uint32, max_entries=4,
                            name=unique_name)) as m:
        assert m.info().btf_key_type_id
        m[m.lpm_key(8, b"\x0a\x00\x00\x00")] = 3
        with Map.from_id(m.id) as again:
            assert again.key_dtype == kd
            assert again[again.lpm_key(32, b"\x0a\x01\x02\x03")] == 3


def test_bpftool_pretty_prints_field_names(unique_name):
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool not installed")
    vd = np.dtype([("packets", "<u8"), ("comm", "S8"), ("lat", "<u4", (3,))])
    with Map.create(MapSpec(MapType.HASH, key=FLOW, value=vd, max_entries=2,
                            name=unique_name)) as m:
        k = np.zeros((), FLOW)
        k["proto"] = 6
        v = np.zeros((), vd)
        v["packets"], v["comm"], v["lat"] = 12, b"curl", [1, 2, 3]
        m[k] = v
        out = subprocess.run(["bpftool", "-j", "map", "dump", "id", str(m.id)],
                             capture_output=True, text=True, check=True).stdout
        f = json.loads(out)[0]["formatted"]
        assert f["key"]["proto"] == 6 and set(f["key"]) == set(FLOW.names)
        assert f["value"] == {"packets": 12, "comm": "curl", "lat": [1, 2, 3]}


def test_padded_struct_keys_match_whatever_form_they_come_in(unique_name):
    """Keys are compared bytewise by the kernel: the padding after ``proto``
    must be zero (tuples) or as read (records), never uninitialised memory."""
    with Map.create(MapSpec(MapType.HASH, key=FLOW, value=np.uint32, max_entries=8,
                            name=unique_name)) as m:
        for i in range(4):
            m[(i, 0, 0, 80, 6)] = i
        for _ in range(50):
            junk = [np.full(64, 0xAB, np.uint8) for _ in range(20)]  # dirty the heap
            del junk
            assert sorted(int(m[k]) for k in m.keys()) == [0, 1, 2, 3]
            assert m[(2, 0, 0, 80, 6)] == 2
            assert dict((int(k["saddr"]), int(v)) for k, v in m.items()) == {0: 0, 1: 1, 2: 2,
                                                                              3: 3}
