"""The Map API against the real kernel.

One file past 700 lines because it follows the Map class section by section
(dict protocol, batches, pinning, per-CPU, map-in-map, mmap); split it with
the class when MapSpec moves out.
"""

from __future__ import annotations

import errno
import fcntl
import gc
import json
import os
import shutil
import subprocess
import sys
import uuid

import numpy as np
import pytest

import fastbpf
from fastbpf import _core
from fastbpf import features
from fastbpf.enums import Command
from fastbpf import (BPFError, ClosedError, Map, MapFlags, MapIncompatibleError, MapSpec,
                     MapType, NotSupportedError, UpdateFlags)

pytestmark = pytest.mark.kernel

NCPUS = fastbpf.possible_cpus()


def _batch_ops_missing() -> str | None:
    for cmd in (Command.MAP_LOOKUP_BATCH, Command.MAP_LOOKUP_AND_DELETE_BATCH,
                Command.MAP_UPDATE_BATCH, Command.MAP_DELETE_BATCH):
        if r := features.skip_reason("bpf_command", cmd):
            return r
    return None


def needs_batch_ops(fn):
    """Skip on the probes' answer when the kernel lacks a batch command."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if r := _batch_ops_missing():
            pytest.skip(r)
        return fn(*args, **kwargs)
    return wrapper


def hash_map(n=1024, key=np.uint32, value=np.uint64, type=MapType.HASH, name="t", **kw):
    return Map.create(MapSpec(type=type, key=key, value=value, max_entries=n, name=name, **kw))


def test_possible_cpus_matches_sysfs():
    text = open("/sys/devices/system/cpu/possible").read().strip()
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count += int(hi or lo) - int(lo) + 1
    assert NCPUS == count


# -- the dict protocol --------------------------------------------------------

def test_hash_crud_roundtrip():
    with hash_map(name="flows") as m:
        m[7] = 42
        v = m[7]
        assert type(v) is int and v == 42     # scalar values come back as Python numbers
        assert 7 in m and 8 not in m
        assert m.lookup(8) is None and m.lookup(8, default=-1) == -1
        assert m.get(7) == 42
        m[7] = 43
        assert m[7] == 43
        del m[7]
        assert 7 not in m
        with pytest.raises(KeyError):
            m[7]
        with pytest.raises(KeyError):
            del m[7]
        assert m.delete(7, missing_ok=True) is False


def test_update_flags():
    with hash_map() as m:
        m.update(1, 10, flags=UpdateFlags.NOEXIST)
        with pytest.raises(FileExistsError) as ei:
            m.update(1, 11, flags=UpdateFlags.NOEXIST)
        assert isinstance(ei.value, BPFError) and ei.value.errno == errno.EEXIST
        assert "map update" in str(ei.value) and "'t'" in str(ei.value)
        m.update(1, 12, flags=UpdateFlags.EXIST)
        assert m[1] == 12
        with pytest.raises(BPFError) as ei:
            m.update(2, 1, flags=UpdateFlags.EXIST)
        assert ei.value.errno == errno.ENOENT
        assert 2 not in m


def test_pop_and_delete():
    with hash_map() as m:
        m[3] = 30
        assert m.pop(3) == 30
        assert 3 not in m
        with pytest.raises(KeyError):
            m.pop(3)
        assert m.pop(3, None) is None
        m[4] = 1
        assert m.delete(4) is True


def test_numpy_scalar_and_bool_keys():
    with hash_map(key=np.uint16, value=np.int32) as m:
        m[np.uint16(5)] = np.int32(-7)
        m[np.int64(6)] = -8
        assert m[5] == -7 and m[6] == -8
        assert type(m[5]) is int


def test_float_values():
    with hash_map(value=np.float64) as m:
        m[1] = 2.5
        m[2] = 3
        assert m[1] == 2.5 and m[2] == 3.0


def test_structured_key_and_value():
    key = np.dtype([("saddr", "<u4"), ("daddr", "<u4"), ("sport", "<u2"), ("dport", "<u2")])
    val = np.dtype([("packets", "<u8"), ("bytes", "<u8")])
    with hash_map(key=key, value=val) as m:
        k = (0x0A000001, 0x0A000002, 1234, 80)
        m[k] = (10, 1500)
        rec = m[k]
        assert rec["packets"] == 10 and rec["bytes"] == 1500
        krec = np.array(k, dtype=key)[()]
        assert m[krec]["bytes"] == 1500
        keys, values = m.lookup_batch()
        assert keys.dtype == key and values.dtype == val
        assert keys[0]["dport"] == 80 and values[0]["packets"] == 10


def test_raw_byte_keys():
    with hash_map(key=6, value=2) as m:
        m[b"abcdef"] = b"xy"
        assert bytes(m[b"abcdef"]) == b"xy"
        assert m.key_dtype == np.dtype("V6")
        with pytest.raises(ValueError, match="5 bytes, the map wants 6"):
            m[b"abcde"] = b"xy"
        with pytest.raises(ValueError, match="3 bytes, the map wants 2"):
            m[b"abcdef"] = b"xyz"


def test_bad_keys_fail_before_the_syscall():
    with hash_map() as m:
        with pytest.raises(ValueError, match="negative"):
            m[-1] = 1
        with pytest.raises(ValueError, match="does not fit"):
            m[1 << 32] = 1
        with pytest.raises(ValueError, match="does not fit"):
            m[1] = 1 << 64
        with pytest.raises(ValueError, match="negative"):
            m[1] = -1
        with pytest.raises(TypeError):
            m["seven"] = 1
        with pytest.raises(TypeError):
            m[1] = "x"
        with pytest.raises(ValueError):
            m[np.zeros(2, np.uint32)] = 1
        assert list(m.keys()) == []


def test_closed_map_raises():
    m = hash_map()
    m[1] = 1
    m.close()
    m.close()  # twice is harmless
    assert m.closed
    for op in (lambda: m[1], lambda: m.__setitem__(1, 2), lambda: 1 in m,
               lambda: m.lookup_batch(), lambda: m.info(), lambda: m.fd,
               lambda: list(m.keys())):
        with pytest.raises(ClosedError):
            op()


# -- iteration -----------------------------------------------------------------

def test_iteration_keys_values_items():
    with hash_map() as m:
        for i in range(100):
            m[i] = i * i
        assert sorted(int(k) for k in m.keys()) == list(range(100))
        assert sorted(int(v) for v in m.values()) == sorted(i * i for i in range(100))
        assert {int(k): int(v) for k, v in m.items()} == {i: i * i for i in range(100)}
        assert len(m) == 100


def test_iteration_is_safe_under_deletion():
    with hash_map() as m:
        for i in range(500):
            m[i] = i
        seen = []
        for k in m.keys():
            seen.append(int(k))
            del m[k]
        assert sorted(seen) == list(range(500))
        assert len(m) == 0


def test_items_under_deletion_never_raise_or_repeat():
    # items() reads in chunks: an entry deleted after its chunk was read may
    # still come (with the value it had), but nothing raises or repeats.
    with hash_map() as m:
        for i in range(10):
            m[i] = i * 3
        out = []
        for k, v in m.items():
            out.append((k, v))
            for j in range(10):
                if j != k:
                    m.delete(j, missing_ok=True)
        keys = [k for k, _ in out]
        assert len(keys) == len(set(keys)) and set(keys) <= set(range(10))
        assert all(v == k * 3 for k, v in out)
        # Read in batches, every key comes and each is deleted by another's
        # turn; walked key by key (no batch lookups), only the first comes.
        assert len(m) == (1 if len(keys) == 1 else 0)


def test_items_under_insertion_terminate_without_repeats():
    with hash_map(n=20000) as m:
        m.update_batch(np.arange(1000, dtype=np.uint32), np.arange(1000, dtype=np.uint64))
        seen = []
        for k, v in m.items():
            seen.append(k)
            if len(seen) <= 5000:
                m[10000 + len(seen)] = 1       # keys added while walking
        assert len(seen) == len(set(seen))
        assert set(range(1000)) <= set(seen)   # every key there from start to end comes
        assert len(seen) <= 6000


def test_items_read_in_batches_match_the_element_path():
    for mtype, value in ((MapType.HASH, np.uint64), (MapType.ARRAY, np.float64),
                         (MapType.PERCPU_HASH, np.uint32), (MapType.LRU_HASH, np.int16)):
        with Map.create(MapSpec(type=mtype, key=np.uint32, value=value,
                                max_entries=3000)) as m:
            for i in range(0, 3000, 3):
                m[i] = i % 100
            got = dict(m.items())
            if mtype == MapType.ARRAY:
                assert len(got) == 3000 and got[3] == 3.0 and got[4] == 0.0
                assert type(got[3]) is float
            elif mtype == MapType.PERCPU_HASH:
                assert len(got) == 1000 and got[6].tolist() == [6] * NCPUS
            else:
                assert len(got) == 1000 and got[2997] == 97 and type(got[2997]) is int
            assert sorted(m.keys()) == sorted(got) and all(type(k) is int for k in got)


# -- arrays -----------------------------------------------------------------------

def test_array_semantics():
    with Map.create(MapSpec(type=MapType.ARRAY, key=4, value=np.uint32, max_entries=8)) as a:
        assert a.key_dtype == np.uint32  # array keys are indexes
        assert all(a[i] == 0 for i in range(8))
        a[3] = 9
        assert a[3] == 9
        with pytest.raises(KeyError):
            a[8]
        with pytest.raises(BPFError) as ei:
            a[8] = 1
        assert ei.value.errno == errno.E2BIG
        with pytest.raises(ValueError):
            a[-1]
        with pytest.raises(BPFError):
            del a[3]  # arrays cannot delete
        assert len(a) == 8


# -- per-CPU ----------------------------------------------------------------------

@pytest.mark.parametrize("mtype", [MapType.PERCPU_ARRAY, MapType.PERCPU_HASH,
                                   MapType.LRU_PERCPU_HASH])
def test_percpu_values(mtype):
    with Map.create(MapSpec(type=mtype, key=np.uint32, value=np.uint64, max_entries=16)) as m:
        m[1] = 5  # one value for all CPUs
        v = m[1]
        assert v.shape == (NCPUS,) and v.dtype == np.uint64
        assert (v == 5).all()
        per_cpu = np.arange(NCPUS, dtype=np.uint64) + 100
        m[2] = per_cpu
        assert (m[2] == per_cpu).all()
        with pytest.raises(ValueError, match="per-CPU"):
            m[3] = np.arange(NCPUS + 1)
        keys, values = m.lookup_batch()
        assert values.shape == (len(keys), NCPUS)
        got = {int(k): values[i].tolist() for i, k in enumerate(keys)}
        assert got[1] == [5] * NCPUS
        assert got[2] == per_cpu.tolist()


@needs_batch_ops
def test_percpu_small_values_use_the_kernel_stride():
    # 4-byte values travel with an 8-byte stride per CPU.
    with Map.create(MapSpec(type=MapType.PERCPU_ARRAY, key=4, value=np.uint32,
                            max_entries=4)) as m:
        m[0] = np.arange(1, NCPUS + 1, dtype=np.uint32)
        v = m[0]
        assert v.strides == (8,)
        assert v.tolist() == list(range(1, NCPUS + 1))
        keys, values = m.lookup_batch()
        assert values.shape == (4, NCPUS) and values.strides[1] == 8
        assert values[0].tolist() == list(range(1, NCPUS + 1))
        m.update_batch(np.array([1, 2], np.uint32), np.array([[7] * NCPUS, [8] * NCPUS]))
        assert m[1].tolist() == [7] * NCPUS and m[2].tolist() == [8] * NCPUS
        m.update_batch(np.array([3], np.uint32), np.array([9], np.uint32))  # broadcast
        assert m[3].tolist() == [9] * NCPUS


def test_percpu_structured_values():
    dt = np.dtype([("a", "<u4"), ("b", "<u2")])  # 8 bytes with padding? no: 6 -> stride 8
    dt6 = np.dtype({"names": ["a", "b"], "formats": ["<u4", "<u2"], "offsets": [0, 4],
                    "itemsize": 6})
    assert dt.itemsize == 6 == dt6.itemsize
    with Map.create(MapSpec(type=MapType.PERCPU_HASH, key=np.uint32, value=dt6,
                            max_entries=4)) as m:
        m[1] = (1, 2)
        v = m[1]
        assert v.shape == (NCPUS,)
        assert v["a"].tolist() == [1] * NCPUS and v["b"].tolist() == [2] * NCPUS


@pytest.mark.parametrize("mtype", [MapType.PERCPU_ARRAY, MapType.PERCPU_HASH,
                                   MapType.LRU_PERCPU_HASH])
@pytest.mark.parametrize("vt", [np.uint64, np.uint32, np.uint8, np.int64, np.int16,
                                np.float64, np.float32, np.bool_])
def test_percpu_sum_adds_up_the_cpus(mtype, vt):
    with Map.create(MapSpec(type=mtype, key=np.uint32, value=vt, max_entries=8)) as m:
        per_cpu = (np.arange(NCPUS) % 2 if vt is np.bool_
                   else np.arange(NCPUS) * 3 - (2 if np.dtype(vt).kind == "i" else 0)).astype(vt)
        m[1] = per_cpu
        total = m.sum(1)
        assert total == sum(per_cpu.tolist())
        want = float if np.dtype(vt).kind == "f" else int
        assert type(total) is want
        m[2] = 0
        assert m.sum(2) == 0 and type(m.sum(2)) is want
        m[np.uint32(3)] = 1
        assert m.sum(np.uint32(3)) == NCPUS      # numpy keys take the same path


def test_percpu_sum_is_exact_past_the_value_type():
    with Map.create(MapSpec(type=MapType.PERCPU_ARRAY, key=np.uint32, value=np.uint64,
                            max_entries=2)) as m:
        m[0] = 2**64 - 1
        assert m.sum(0) == NCPUS * (2**64 - 1)
    with Map.create(MapSpec(type=MapType.PERCPU_ARRAY, key=np.uint32, value=np.int64,
                            max_entries=2)) as m:
        m[0] = -2**63
        assert m.sum(0) == NCPUS * -2**63
        m[1] = 2**63 - 1
        assert m.sum(1) == NCPUS * (2**63 - 1)


def test_percpu_sum_missing_keys_and_defaults():
    with Map.create(MapSpec(type=MapType.PERCPU_HASH, key=np.uint32, value=np.uint64,
                            max_entries=4)) as m:
        with pytest.raises(KeyError):
            m.sum(5)
        assert m.sum(5, None) is None and m.sum(5, default=0) == 0
        m[5] = 2
        assert m.sum(5, None) == 2 * NCPUS
    with Map.create(MapSpec(type=MapType.PERCPU_ARRAY, key=np.uint32, value=np.uint64,
                            max_entries=4)) as m:
        with pytest.raises(KeyError):
            m.sum(4)                       # past max_entries: ENOENT from the kernel
        with pytest.raises(OverflowError):
            m.sum(-1)
        with pytest.raises(TypeError, match="key"):
            m.sum("a")


def test_percpu_sum_structured_and_raw_values():
    dt = np.dtype([("pkts", np.uint64), ("bytes", np.uint32)])
    with Map.create(MapSpec(type=MapType.PERCPU_HASH, key=np.uint32, value=dt,
                            max_entries=4)) as m:
        v = np.zeros(NCPUS, dt)
        v["pkts"] = np.arange(NCPUS) + 1
        v["bytes"] = (np.arange(NCPUS) + 1) * 100
        m[1] = v
        rec = m.sum(1)
        assert rec.dtype == dt
        assert int(rec["pkts"]) == sum(range(1, NCPUS + 1))
        assert int(rec["bytes"]) == 100 * sum(range(1, NCPUS + 1))
        assert m.sum(2, "none") == "none"
    with Map.create(MapSpec(type=MapType.PERCPU_ARRAY, key=4, value=4,
                            max_entries=1)) as m:       # raw bytes: nothing to add
        with pytest.raises(TypeError, match="sum"):
            m.sum(0)
    with Map.create(MapSpec(type=MapType.PERCPU_ARRAY, key=4, value=np.dtype(">u4"),
                            max_entries=1)) as m:       # big-endian: the generic path
        m[0] = np.full(NCPUS, 7, np.dtype(">u4"))
        assert m.sum(0) == 7 * NCPUS


def test_percpu_sum_refuses_plain_maps_and_closed_maps():
    m = Map.create(MapSpec(type=MapType.HASH, key=np.uint32, value=np.uint64, max_entries=4))
    with m:
        m[1] = 1
        with pytest.raises(TypeError, match="not per CPU"):
            m.sum(1)
    with pytest.raises(ClosedError):
        m.sum(1)
    p = Map.create(MapSpec(type=MapType.PERCPU_ARRAY, key=np.uint32, value=np.uint64,
                           max_entries=1))
    p.close()
    with pytest.raises(ClosedError):
        p.sum(0)


def test_percpu_sum_leaves_a_kept_lookup_result_alone():
    with Map.create(MapSpec(type=MapType.PERCPU_ARRAY, key=np.uint32, value=np.uint64,
                            max_entries=2)) as m:
        m[0], m[1] = 3, 4
        kept = m[0]
        assert m.sum(1) == 4 * NCPUS
        assert kept.tolist() == [3] * NCPUS


# -- other map types -----------------------------------------------------------------

def test_lru_hash_evicts():
    with hash_map(n=64, type=MapType.LRU_HASH) as m:
        for i in range(1000):
            m[i] = i
        keys = [int(k) for k in m.keys()]
        assert 0 < len(keys) <= 64
        assert 999 in keys  # the newest entry survives


def test_lpm_trie_longest_prefix_match():
    kd = fastbpf.lpm_key_dtype(4)
    with Map.create(MapSpec(type=MapType.LPM_TRIE, key=kd, value=np.uint32,
                            max_entries=16)) as m:
        m[m.lpm_key(8, bytes([10, 0, 0, 0]))] = 1
        m[m.lpm_key(16, bytes([10, 1, 0, 0]))] = 2
        m[(24, [10, 1, 2, 0])] = 3
        assert m[m.lpm_key(32, bytes([10, 1, 2, 3]))] == 3
        assert m[m.lpm_key(32, bytes([10, 1, 9, 9]))] == 2
        assert m[m.lpm_key(32, bytes([10, 9, 9, 9]))] == 1
        assert m.lookup(m.lpm_key(32, bytes([11, 0, 0, 0]))) is None
        with pytest.raises(ValueError):
            m.lpm_key(33, bytes(4))
        # LPM tries have no batch operations: lookup_batch walks the keys.
        keys, values = m.lookup_batch()
        assert sorted(values.tolist()) == [1, 2, 3]
        assert sorted(keys["prefixlen"].tolist()) == [8, 16, 24]


@pytest.mark.parametrize("outer_type", [MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS])
def test_map_in_map(outer_type):
    inner = MapSpec(type=MapType.ARRAY, key=4, value=np.uint64, max_entries=4)
    with Map.create(MapSpec(type=outer_type, key=4, value=4, max_entries=4, inner=inner,
                            name="outer")) as outer, Map.create(inner) as a:
        a[1] = 77
        outer[2] = a
        got = outer[2]
        try:
            assert isinstance(got, Map)
            assert got.info().id == a.info().id
            assert got.value_dtype == np.uint64 and got[1] == 77
        finally:
            got.close()
        outer[3] = a.fd  # a bare fd works too
        del outer[3]
        with pytest.raises(KeyError):
            outer[3]
        with pytest.raises(TypeError):
            outer[0] = "not a map"


@pytest.mark.parametrize("outer_type", [MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS])
def test_map_in_map_initial_contents_in_one_batch(outer_type, monkeypatch):
    # The kernel waits for an RCU grace period after every update of a map
    # of maps: the initial inner maps go in one BPF_MAP_UPDATE_BATCH where
    # the kernel has it, one by one otherwise, with the same result.
    batch_missing = _batch_ops_missing()   # (its probe issues a batch update too)
    calls = []
    real = _core.map_update_batch

    def spy(*a, **k):
        calls.append(a[3])
        return real(*a, **k)

    monkeypatch.setattr(_core, "map_update_batch", spy)
    inner = MapSpec(type=MapType.ARRAY, key=4, value=np.uint64, max_entries=2)
    inners = [Map.create(inner) for _ in range(3)]
    try:
        for i, m in enumerate(inners):
            m[0] = 100 + i
        spec = MapSpec(type=outer_type, key=4, value=4, max_entries=4, inner=inner,
                       contents=[(0, inners[0]), (1, inners[1]), (3, inners[2].fd)])
        with Map.create(spec) as outer:
            got = {}
            for k in (0, 1, 3):
                with outer[k] as m:
                    got[k] = (m.info().id, int(m[0]))
            assert got == {k: (inners[i].info().id, 100 + i) for i, k in enumerate((0, 1, 3))}
            assert outer.get(2) is None
        if batch_missing is None:
            assert calls == [3]
    finally:
        for m in inners:
            m.close()


def test_map_in_map_bad_initial_inner_map_raises_as_one_by_one():
    inner = MapSpec(type=MapType.ARRAY, key=4, value=8, max_entries=1)
    with Map.create(inner) as a:
        spec = MapSpec(type=MapType.ARRAY_OF_MAPS, key=4, value=4, max_entries=2, inner=inner,
                       contents=[(0, a), (1, 1 << 20)])   # no such fd
        with pytest.raises(BPFError) as ei:
            Map.create(spec)
        assert ei.value.errno == errno.EBADF
        assert ei.value.op == "map update"


def test_map_in_map_needs_inner_spec():
    with pytest.raises(ValueError, match="inner"):
        Map.create(MapSpec(type=MapType.ARRAY_OF_MAPS, key=4, value=4, max_entries=2))


def test_queue_and_stack():
    with Map.create(MapSpec(type=MapType.QUEUE, value=np.uint32, max_entries=8)) as q:
        for v in (1, 2, 3):
            q.push(v)
        assert q.peek() == 1
        assert [q.pop() for _ in range(3)] == [1, 2, 3]
        with pytest.raises(KeyError):
            q.pop()
        assert q.pop(default=None) is None
        with pytest.raises(TypeError):
            q[0] = 1
    with Map.create(MapSpec(type=MapType.STACK, value=np.uint32, max_entries=8)) as s:
        for v in (1, 2, 3):
            s.push(v)
        assert s.peek() == 3
        assert [s.pop() for _ in range(3)] == [3, 2, 1]


def test_bloom_filter():
    with Map.create(MapSpec(type=MapType.BLOOM_FILTER, value=np.uint64, max_entries=100,
                            map_extra=3)) as b:
        for v in (11, 22, 33):
            b.push(v)
        assert 11 in b and 33 in b
        assert 12345678 not in b
        with pytest.raises(TypeError):
            b[1]
    with Map.create(MapSpec(type=MapType.QUEUE, value=4, max_entries=2)) as q:
        with pytest.raises(TypeError, match="bloom"):
            1 in q


@pytest.mark.parametrize("mtype,key,value,n,flags", [
    (MapType.PERF_EVENT_ARRAY, 4, 4, NCPUS, 0),
    (MapType.RINGBUF, 0, 0, 1 << 16, 0),
    (MapType.USER_RINGBUF, 0, 0, 1 << 16, 0),
    (MapType.DEVMAP, 4, 4, 4, 0),
    (MapType.DEVMAP_HASH, 4, 4, 4, 0),
    (MapType.CPUMAP, 4, 4, NCPUS, 0),
    (MapType.XSKMAP, 4, 4, 4, 0),
    (MapType.SOCKMAP, 4, 4, 4, 0),
    (MapType.SOCKHASH, 4, 4, 4, 0),
    (MapType.PROG_ARRAY, 4, 4, 4, 0),
    (MapType.STACK_TRACE, 4, 8 * 127, 16, 0),
    (MapType.CGROUP_ARRAY, 4, 4, 4, 0),
    (MapType.REUSEPORT_SOCKARRAY, 4, 4, 4, 0),
    (MapType.ARENA, 0, 0, 4, MapFlags.MMAPABLE),
])
def test_create_every_map_type(mtype, key, value, n, flags, unique_name):
    with Map.create(MapSpec(type=mtype, key=key, value=value, max_entries=n, flags=flags,
                            name=unique_name)) as m:
        info = m.info()
        assert info.type == mtype
        assert (info.key_size, info.value_size, info.max_entries) == (key, value, n)
        assert info.name == unique_name
        assert info.id in fastbpf.map_ids()


def test_create_error_names_the_map_and_errno():
    if r := features.skip_reason("map_type", MapType.RINGBUF):
        pytest.skip(r)
    with pytest.raises(BPFError) as ei:
        Map.create(MapSpec(type=MapType.RINGBUF, max_entries=1000, name="badring"))
    e = ei.value
    assert e.errno == errno.EINVAL and e.op == "map create"
    assert "badring" in str(e) and "EINVAL" in str(e) and "power of 2" in str(e)


def test_spec_validation():
    with pytest.raises(TypeError):
        Map.create("not a spec")
    with pytest.raises(ValueError, match="4-byte indexes"):
        Map.create(MapSpec(type=MapType.ARRAY, key=8, value=8, max_entries=1))
    with pytest.raises(TypeError):
        MapSpec(type=MapType.HASH, key=object(), value=8).key_dtype
    with pytest.raises(ValueError):
        MapSpec(type=999)
    with pytest.raises(TypeError):
        Map()


# -- batches ------------------------------------------------------------------------

@needs_batch_ops
def test_batch_roundtrip_million():
    n = 1_000_000
    with hash_map(n=n) as m:
        keys = np.arange(n, dtype=np.uint32)
        values = keys.astype(np.uint64) * 3
        assert m.update_batch(keys, values) == n
        k, v = m.lookup_batch()
        assert len(k) == n
        order = np.argsort(k)
        assert (k[order] == keys).all() and (v[order] == values).all()
        # into preallocated arrays: the results are views of them
        kbuf = np.empty(n, np.uint32)
        vbuf = np.empty(n, np.uint64)
        k2, v2 = m.lookup_batch(kbuf, vbuf)
        assert np.shares_memory(k2, kbuf) and np.shares_memory(v2, vbuf)
        assert len(k2) == n and (v2 == k2.astype(np.uint64) * 3).all()
        assert m.delete_batch(keys[:1000]) == 1000
        assert 5 not in m and m[1000] == 3000
        k3, v3 = m.lookup_and_delete_batch()
        assert len(k3) == n - 1000
        assert (v3 == k3.astype(np.uint64) * 3).all()
        assert len(m.lookup_batch()[0]) == 0


@needs_batch_ops
def test_batch_in_small_chunks():
    with hash_map(n=5000) as m:
        m.update_batch(np.arange(5000, dtype=np.uint32), np.ones(5000, np.uint64))
        k, v = m.lookup_batch(chunk=97)
        assert sorted(k.tolist()) == list(range(5000))


@needs_batch_ops
def test_array_batch_and_unsupported_delete():
    with Map.create(MapSpec(type=MapType.ARRAY, key=4, value=np.uint64, max_entries=100)) as a:
        a.update_batch(np.arange(100, dtype=np.uint32), np.arange(100, dtype=np.uint64) + 1)
        k, v = a.lookup_batch()
        assert k.tolist() == list(range(100)) and v.tolist() == list(range(1, 101))
        with pytest.raises(NotSupportedError):
            a.lookup_and_delete_batch()


def test_batch_input_validation():
    with hash_map() as m:
        with pytest.raises(ValueError, match="3 keys but 2 values"):
            m.update_batch(np.arange(3, dtype=np.uint32), np.arange(2, dtype=np.uint64))
        with pytest.raises(ValueError, match="negative"):
            m.update_batch(np.array([-1, 2]), np.array([1, 2]))
        with pytest.raises(ValueError):
            m.lookup_batch(np.empty(10, np.uint32)[::2], np.empty(5, np.uint64))


def test_batch_on_queue_is_a_type_error():
    with Map.create(MapSpec(type=MapType.QUEUE, value=4, max_entries=4)) as q:
        with pytest.raises(TypeError):
            q.lookup_batch()


# -- pinning, ids, fds ------------------------------------------------------------

def test_pin_from_pin_unpin(bpffs_dir):
    path = os.path.join(bpffs_dir, "counters")
    with hash_map(name="pinned") as m:
        m[1] = 11
        m.pin(path)
        with Map.from_pin(path, key=np.uint32, value=np.uint64) as again:
            assert again[1] == 11
            again[2] = 22
        assert m[2] == 22
        with pytest.raises(FileExistsError):
            m.pin(path)
        m.unpin()
        assert not os.path.exists(path)


def test_from_pin_without_dtypes_restores_them_from_btf(bpffs_dir):
    # The map carries BTF generated from its dtypes (see test_typed_maps.py);
    # a map created with byte sizes only still reopens as raw bytes.
    path = os.path.join(bpffs_dir, "raw")
    with hash_map() as m:
        m[1] = 5
        m.pin(path)
    with Map.from_pin(path) as typed:
        assert typed.key_dtype == m.key_dtype and typed.value_dtype == m.value_dtype
        assert typed[1] == 5
    with Map.from_pin(path, key=4, value=8) as raw:
        assert raw.key_dtype == np.dtype("V4") and raw.value_dtype == np.dtype("V8")
        assert bytes(raw[(1).to_bytes(4, "little")]) == (5).to_bytes(8, "little")
    with pytest.raises(ValueError, match="8 bytes"):
        Map.from_pin(path, key=np.uint64)
    os.unlink(path)


def test_spec_pin_path_reuses_existing(bpffs_dir):
    spec = MapSpec(type=MapType.HASH, key=np.uint32, value=np.uint64, max_entries=8,
                   pin_path=os.path.join(bpffs_dir, "shared"))
    with Map.create(spec) as a:
        a[1] = 1
        with Map.create(spec) as b:
            assert b[1] == 1 and b.info().id == a.info().id
    bad = spec.copy()
    bad.max_entries = 9
    bad.value = np.uint32
    with pytest.raises(fastbpf.MapIncompatibleError, match="max_entries") as ei:
        Map.create(bad)
    assert ei.value.fields == {"max_entries": (9, 8), "value_size": (4, 8)}


def test_pin_outside_bpffs_is_refused(tmp_path):
    with hash_map() as m:
        with pytest.raises(ValueError, match="bpf filesystem"):
            m.pin(str(tmp_path / "x"))
        with pytest.raises(ValueError, match="does not exist"):
            m.pin("/sys/fs/bpf/no-such-dir-" + uuid.uuid4().hex + "/x")


def test_from_id_and_from_fd():
    with hash_map(name="byid") as m:
        m[5] = 50
        mid = m.info().id
        assert mid in fastbpf.map_ids()
        with Map.from_id(mid, key=np.uint32, value=np.uint64) as again:
            assert again[5] == 50 and again.name == "byid"
        with Map.from_fd(m.fd, key=np.uint32, value=np.uint64) as dup:
            assert dup.fd != m.fd and dup[5] == 50
        assert m[5] == 50  # the original fd stays open
    with pytest.raises(FileNotFoundError):
        Map.from_id(0xFFFFFFF0)


def test_from_fd_of_a_non_map(tmp_path):
    with open(tmp_path / "f", "w") as f:
        with pytest.raises(ValueError, match="not a BPF map"):
            Map.from_fd(f.fileno())


def test_info_fields(unique_name):
    with hash_map(n=77, name=unique_name, flags=MapFlags.NO_PREALLOC) as m:
        i = m.info()
        assert (i.type, i.key_size, i.value_size, i.max_entries) == (MapType.HASH, 4, 8, 77)
        assert i.flags & MapFlags.NO_PREALLOC and i.name == unique_name and i.id > 0
        assert m.id == i.id


# -- freeze, mmap ------------------------------------------------------------------

def test_freeze():
    with Map.create(MapSpec(type=MapType.ARRAY, key=4, value=np.uint32, max_entries=2)) as a:
        a[0] = 5
        a.freeze()
        with pytest.raises(PermissionError):
            a[0] = 6
        assert a[0] == 5


def test_mmap_is_coherent_both_ways():
    spec = MapSpec(type=MapType.ARRAY, key=4, value=np.uint64, max_entries=1000,
                   flags=MapFlags.MMAPABLE)
    with Map.create(spec) as a:
        arr = a.mmap()
        assert arr.shape == (1000,) and arr.dtype == np.uint64
        arr[10] = 12345
        assert a[10] == 12345  # our write, read back through bpf(2)
        a[11] = 999
        assert arr[11] == 999  # a bpf(2) write, seen in our memory
        arr[:] = np.arange(1000)
        assert a.lookup_batch()[1].tolist() == list(range(1000))


def test_mmap_small_values_and_frozen():
    spec = MapSpec(type=MapType.ARRAY, key=4, value=np.uint32, max_entries=10,
                   flags=MapFlags.MMAPABLE)
    with Map.create(spec) as a:
        a[3] = 7
        a.freeze()
        arr = a.mmap()
        assert arr.strides == (8,) and arr[3] == 7
        assert not arr.flags.writeable
    with hash_map() as h:
        with pytest.raises(ValueError, match="MMAPABLE"):
            h.mmap()


# -- lifetimes -----------------------------------------------------------------------

def test_fds_are_cloexec_and_above_stdio():
    with hash_map() as m:
        assert m.fd >= 3
        assert fcntl.fcntl(m.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC


def test_closed_stdin_never_gets_a_map():
    code = (
        "import os, sys; os.close(0); os.close(1);"
        "import numpy as np, fastbpf;"
        "m = fastbpf.Map.create(fastbpf.MapSpec(type=fastbpf.MapType.HASH, key=4, value=4, max_entries=1));"
        "p = fastbpf.Map.from_id(m.info().id);"
        "sys.exit(0 if m.fd >= 3 and p.fd >= 3 else 3)"
    )
    r = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_garbage_collection_closes_the_fd():
    m = hash_map()
    fd = m.fd
    del m
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


@pytest.mark.slow
def test_no_fd_leak_over_100k_create_close_cycles():
    before = len(os.listdir("/proc/self/fd"))
    spec = MapSpec(type=MapType.ARRAY, key=4, value=4, max_entries=1)
    for _ in range(100_000):
        Map.create(spec).close()
    for _ in range(1000):
        Map.create(spec)  # dropped without close: the GC closes them
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) == before


def test_failed_create_leaks_nothing(no_fd_leak):
    inner = MapSpec(type=MapType.ARRAY, key=4, value=8, max_entries=1)
    for _ in range(50):
        with pytest.raises(BPFError):
            Map.create(MapSpec(type=MapType.ARRAY_OF_MAPS, key=4, value=4, max_entries=0,
                               inner=inner))


# -- bpftool as the oracle -----------------------------------------------------------

bpftool = shutil.which("bpftool")
needs_bpftool = pytest.mark.skipif(bpftool is None, reason="bpftool is not installed")


@needs_bpftool
def test_bpftool_reads_what_fastbpf_wrote(unique_name):
    with hash_map(name=unique_name) as m:
        for i in range(20):
            m[i] = i * 1000 + 7
        out = subprocess.run([bpftool, "map", "dump", "id", str(m.info().id), "-j"],
                             capture_output=True, text=True, check=True).stdout
        entries = json.loads(out)
        got = {}
        for e in entries:
            k = int.from_bytes(bytes(int(x, 16) for x in e["key"]), "little")
            v = int.from_bytes(bytes(int(x, 16) for x in e["value"]), "little")
            got[k] = v
        assert got == {i: i * 1000 + 7 for i in range(20)}


@needs_bpftool
def test_fastbpf_reads_what_bpftool_wrote(bpffs_dir, unique_name):
    path = os.path.join(bpffs_dir, "made_by_bpftool")
    subprocess.run([bpftool, "map", "create", path, "type", "hash", "key", "4", "value", "8",
                    "entries", "16", "name", unique_name], check=True)
    subprocess.run([bpftool, "map", "update", "pinned", path, "key", "7", "0", "0", "0",
                    "value", "42", "0", "0", "0", "0", "0", "0", "1"], check=True)
    with Map.from_pin(path, key=np.uint32, value=np.uint64) as m:
        assert m.name == unique_name
        assert m[7] == 42 + (1 << 56)


def test_key_conversion_that_reenters_the_map():
    # Converting this key runs Python code that uses the same map: the outer
    # operation must still write its own key (scratch buffers are not shared).
    with hash_map() as m:
        class Key:
            def __array__(self, dtype=None, copy=None):
                m[99] = 5
                assert m[99] == 5
                return np.array(7, dtype=np.uint32)

        m[Key()] = 1
        assert m[7] == 1 and m[99] == 5
        assert sorted(int(k) for k in m.keys()) == [7, 99]


@pytest.mark.parametrize("mtype", [MapType.SK_STORAGE, MapType.TASK_STORAGE,
                                   MapType.INODE_STORAGE, MapType.CGRP_STORAGE])
def test_local_storage_maps_with_btf(mtype):
    # Local storage maps need BTF for their key and value types.
    from fastbpf import btf
    i32 = btf.load_kernel_spec().type_by_name("int", kind=btf.Kind.INT)
    with Map.create(MapSpec(type=mtype, key=i32, value=i32, max_entries=0,
                            flags=MapFlags.NO_PREALLOC)) as m:
        info = m.info()
        assert info.type == mtype and info.btf_id and info.btf_value_type_id
        assert m.key_dtype == np.int32 and m.value_dtype == np.int32


@pytest.mark.parametrize("mtype", [MapType.CGROUP_STORAGE, MapType.PERCPU_CGROUP_STORAGE])
def test_cgroup_storage_maps(mtype):
    # struct bpf_cgroup_storage_key is 16 bytes with padding (12 is refused).
    with Map.create(MapSpec(type=mtype, key=16, value=8, max_entries=0)) as m:
        assert m.info().type == mtype


def test_every_map_type_has_a_creation_test():
    import inspect
    src = inspect.getsource(sys.modules[__name__])
    missing = [t.name for t in MapType if t != MapType.UNSPEC
               and f"MapType.{t.name}" not in src
               and t != MapType.STRUCT_OPS]  # created in tests/test_link_trace.py
    assert not missing, f"map types without a test: {missing}"


@needs_batch_ops
def test_batch_operations_release_the_gil():
    """With the interpreter's switch interval made huge, another thread gets
    the GIL only when the running one gives it up of its own accord. If the
    batch call releases it around the syscall, the main thread runs while
    the worker is still inside the call; if not, only after it returns."""
    import threading
    n = 200_000
    with hash_map(n=n) as m:
        keys = np.arange(n, dtype=np.uint32)
        values = np.ones(n, np.uint64)
        for op in ("update", "lookup"):
            inside = threading.Event()
            returned = threading.Event()

            def work():
                inside.set()
                if op == "update":
                    m.update_batch(keys, values)
                else:
                    m.lookup_batch()
                returned.set()

            old = sys.getswitchinterval()
            sys.setswitchinterval(100.0)
            try:
                th = threading.Thread(target=work)
                th.start()
                inside.wait()
                seen_returned = returned.is_set()   # the main thread runs here
                th.join()
            finally:
                sys.setswitchinterval(old)
            assert not seen_returned, f"{op}_batch held the GIL for the whole call"
            assert len(m) == n


def test_object_dtypes_are_refused_for_map_values():
    # Raw map bytes must never become PyObject pointers.
    with pytest.raises(TypeError, match="Python objects"):
        MapSpec(type=MapType.ARRAY, key=4, value=object, max_entries=1).value_dtype
    with hash_map() as m:
        with pytest.raises(TypeError, match="Python objects"):
            Map.from_fd(m.fd, value=np.dtype([("x", object)]))


def test_map_names_the_kernel_refuses_are_rewritten():
    with hash_map(name="flow-stats:v2") as m:
        assert m.info().name == "flow_stats_v2"


def test_map_in_map_slot_takes_only_file_descriptors():
    inner = MapSpec(type=MapType.ARRAY, key=4, value=8, max_entries=1)
    with Map.create(MapSpec(type=MapType.ARRAY_OF_MAPS, key=4, value=4, max_entries=1,
                            inner=inner)) as outer:
        with pytest.raises(ValueError, match="not a file descriptor"):
            outer[0] = -1
        with pytest.raises(KeyError):
            outer[0]                       # nothing was stored


@needs_batch_ops
def test_chunked_batch_reads_whole_buckets():
    # With a tiny chunk, a hash bucket can hold more entries than the chunk
    # has room for (ENOSPC): the read grows the chunk instead of stopping.
    with hash_map(n=4096) as m:
        m.update_batch(np.arange(3000, dtype=np.uint32), np.ones(3000, np.uint64))
        for chunk in (1, 2, 3, 100):
            k, _ = m.lookup_batch(chunk=chunk)
            assert sorted(k.tolist()) == list(range(3000)), chunk


@needs_batch_ops
def test_short_output_arrays_are_refused():
    with hash_map(n=3000) as m:
        m.update_batch(np.arange(3000, dtype=np.uint32), np.ones(3000, np.uint64))
        with pytest.raises(ValueError, match="can hold 3000"):
            m.lookup_batch(np.empty(1000, np.uint32), np.empty(1000, np.uint64))
        with pytest.raises(ValueError, match="can hold 3000"):
            m.lookup_and_delete_batch(np.empty(1000, np.uint32), np.empty(1000, np.uint64))
        assert len(m) == 3000


@needs_batch_ops
def test_delete_batch_reports_missing_keys():
    with Map.create(MapSpec(type=MapType.LPM_TRIE, key=fastbpf.lpm_key_dtype(4),
                            value=np.uint32, max_entries=4)) as m:
        k = np.zeros(2, m.key_dtype)
        k["prefixlen"] = 32
        k["data"][0] = [1, 2, 3, 4]
        k["data"][1] = [5, 6, 7, 8]
        m[k[0]] = 1
        with pytest.raises(FileNotFoundError) as ei:
            m.delete_batch(k)
        assert ei.value.count == 1 and len(m) == 0



def test_percpu_results_kept_by_the_caller_are_never_reused():
    with Map.create(MapSpec(type=MapType.PERCPU_ARRAY, key=4, value=np.uint64,
                            max_entries=3)) as m:
        m[0], m[1], m[2] = 10, 11, 12
        kept = [m[i] for i in range(3)]
        view = m[0][:1]                       # a view keeps its base alive
        again = [m[i] for i in (2, 1, 0)]
        assert [int(k[0]) for k in kept] == [10, 11, 12]
        assert int(view[0]) == 10
        assert [int(a[0]) for a in again] == [12, 11, 10]
        assert len({id(a) for a in kept}) == 3


# -- issue 11 defects, one test per behaviour ----------------------------------------

def test_batch_calls_use_a_private_fd_that_outlives_close():
    # update_batch/delete_batch run with the GIL released: they must work on
    # their own duplicate of the fd, so a close() + a new map in another thread
    # (which may get the freed number) can never receive their entries.
    with hash_map() as m:
        own = m._own_fd()
        try:
            assert own.fd != m.fd
            mid = m.id
            m.close()
            with Map.from_fd(own.fd) as again:
                assert again.id == mid          # still the first map, not a newcomer
        finally:
            own.close()


def test_batch_writes_never_land_in_a_map_created_meanwhile():
    import threading
    n = 4096
    keys = np.arange(n, dtype=np.uint32)
    vals = np.ones(n, np.uint64)
    for _ in range(40):
        m = hash_map(n=n)
        done = threading.Event()

        def writer():
            try:
                m.update_batch(keys, vals)
            except (BPFError, ClosedError):
                pass
            finally:
                done.set()

        t = threading.Thread(target=writer)
        t.start()
        m.close()
        fresh = [hash_map(n=n) for _ in range(3)]   # may reuse the closed fd number
        done.wait(10)
        t.join(10)
        try:
            assert all(len(f) == 0 for f in fresh)
        finally:
            for f in fresh:
                f.close()


def test_update_batch_noexist_applies_entries_in_order_and_counts_them():
    with hash_map() as m:
        m[3] = 99
        with pytest.raises(BPFError) as ei:
            m.update_batch(np.arange(6, dtype=np.uint32), np.arange(6, dtype=np.uint64) + 10,
                           flags=UpdateFlags.NOEXIST)
        assert ei.value.errno == errno.EEXIST and ei.value.count == 3
        assert dict(m.items()) == {0: 10, 1: 11, 2: 12, 3: 99}   # the map is what count says
        assert m.update_batch(np.array([3], np.uint32), np.array([7], np.uint64),
                              flags=UpdateFlags.EXIST) == 1
        assert m[3] == 7
        with pytest.raises(BPFError) as ei:
            m.update_batch(np.array([3, 50], np.uint32), np.array([1, 2], np.uint64),
                           flags=UpdateFlags.EXIST)
        assert ei.value.errno == errno.ENOENT and ei.value.count == 1
        assert m[3] == 1 and 50 not in m


def test_delete_batch_on_array_reports_nothing_deleted():
    with Map.create(MapSpec(type=MapType.ARRAY, key=4, value=np.uint64, max_entries=4)) as a:
        a.update_batch(np.arange(4, dtype=np.uint32), np.arange(4, dtype=np.uint64) + 1)
        with pytest.raises(NotSupportedError) as ei:
            a.delete_batch(np.arange(2, dtype=np.uint32))
        assert ei.value.count == 0
        assert [a[i] for i in range(4)] == [1, 2, 3, 4]


def test_delete_batch_count_is_keys_deleted_before_a_missing_one():
    with hash_map() as m:
        m.update_batch(np.arange(5, dtype=np.uint32), np.arange(5, dtype=np.uint64))
        with pytest.raises(FileNotFoundError) as ei:
            m.delete_batch(np.array([0, 1, 77, 2], np.uint32))
        assert ei.value.count == 2
        assert sorted(m.keys()) == [2, 3, 4]


def test_update_batch_full_map_says_so():
    with hash_map(n=4) as m:
        with pytest.raises(BPFError, match=r"map full \(max_entries=4\)") as ei:
            m.update_batch(np.arange(6, dtype=np.uint32), np.arange(6, dtype=np.uint64))
        assert ei.value.errno == errno.E2BIG and ei.value.count == 4 and len(m) == 4


def test_element_update_of_a_full_map_says_so():
    with hash_map(n=2) as m:
        m[1] = 1
        m[2] = 2
        with pytest.raises(BPFError, match=r"map full \(max_entries=2\)"):
            m[3] = 3


def test_lossy_element_conversions_are_refused():
    with hash_map() as m:
        with pytest.raises(TypeError, match="key must be an integer"):
            m[1.7] = 5
        with pytest.raises(TypeError, match="value must be an integer"):
            m[3] = 2.9
        with pytest.raises(TypeError, match="key must be an integer"):
            m["4"] = 1
        with pytest.raises(TypeError):
            m[np.float64(4.0)] = 1
        with pytest.raises(OverflowError, match="negative"):
            m[5] = -1
        assert len(m) == 0
    with hash_map(value=np.float64) as f:
        f[1] = 3                             # an int is exact in a float field
        f[2] = np.float32(0.5)
        assert f[1] == 3.0 and type(f[1]) is float and f[2] == 0.5
        with pytest.raises(TypeError):
            f[3] = "1.5"


def test_lossy_batch_conversions_are_refused():
    with hash_map() as m:
        with pytest.raises(OverflowError, match="negative"):
            m.update_batch(np.array([1, 2], np.uint32), np.array([-1, 5], np.int64))
        with pytest.raises(TypeError, match="fractions"):
            m.update_batch(np.array([1, 2], np.uint32), np.array([np.nan, 1.0]))
        with pytest.raises(TypeError, match="fractions"):
            m.update_batch(np.array([1, 2], np.uint32), np.array([3.5, 1.0]))
        with pytest.raises(TypeError):
            m.update_batch(np.array(["1", "2"]), np.array([1, 2]))
        with pytest.raises(OverflowError):
            m.delete_batch(np.array([1 << 40], np.int64))
        assert len(m) == 0
        assert m.update_batch([1, 2], [7, 8]) == 2       # exact Python ints are fine
        assert m[2] == 8


def test_lossy_percpu_conversions_are_refused():
    with Map.create(MapSpec(type=MapType.PERCPU_ARRAY, key=4, value=np.uint64,
                            max_entries=4)) as p:
        with pytest.raises(OverflowError, match="negative"):
            p[0] = np.full(NCPUS, -1, dtype=np.int64)
        with pytest.raises(OverflowError):
            p[0] = [-1] * NCPUS
        with pytest.raises(TypeError):
            p[0] = np.full(NCPUS, 1.5)
        assert p[0].tolist() == [0] * NCPUS
        p[0] = np.arange(NCPUS, dtype=np.int64)            # exact: accepted
        assert p[0].tolist() == list(range(NCPUS))


def test_scalar_is_not_broadcast_into_a_struct_key():
    kd = np.dtype([("saddr", "<u4"), ("sport", "<u2"), ("dport", "<u2")])
    with hash_map(key=kd) as m:
        with pytest.raises(TypeError, match="struct"):
            m[443] = 1
        with pytest.raises(TypeError, match="struct"):
            443 in m
        with pytest.raises(TypeError, match="field 'sport'"):
            m[(1, 2.5, 3)] = 1
        m[(1, 2, 3)] = 4
        assert m[(1, 2, 3)] == 4 and len(m) == 1


def test_map_reports_the_name_the_kernel_holds():
    with hash_map(name="my-map") as m:
        assert m.name == "my_map" == m.info().name
    with hash_map(name="a_name_longer_than_fifteen") as m:
        assert m.name == "a_name_longer_t" == m.info().name
    with hash_map(name="ñandú") as m:
        assert m.name == m.info().name == "__and__"


def test_max_entries_zero_names_the_cause():
    with pytest.raises(BPFError, match="max_entries must be > 0 for this map type"):
        hash_map(n=0)


def test_huge_value_size_is_refused_before_numpy():
    with pytest.raises(ValueError, match="value size 8589934592 is too large"):
        Map.create(MapSpec(type=MapType.HASH, key=4, value=2**33, max_entries=1))


def test_writable_mmap_of_a_frozen_map_names_the_freeze():
    spec = MapSpec(type=MapType.ARRAY, key=4, value=np.uint64, max_entries=8,
                   flags=MapFlags.MMAPABLE)
    with Map.create(spec) as m:
        m.freeze()
        with pytest.raises(PermissionError, match="frozen"):
            m.mmap(writable=True)
        assert not m.mmap().flags.writeable


def test_pin_reused_with_other_flags_names_the_field(bpffs_dir):
    path = os.path.join(bpffs_dir, "flagged")
    with Map.create(MapSpec(type=MapType.HASH, key=4, value=8, max_entries=8, pin_path=path)):
        assert os.path.exists(path)
    with pytest.raises(MapIncompatibleError, match="flags: spec 1, map 0") as err:
        Map.create(MapSpec(type=MapType.HASH, key=4, value=8, max_entries=8,
                           flags=MapFlags.NO_PREALLOC, pin_path=path))
    assert err.value.fields == {"flags": (1, 0)}
    os.unlink(path)


def test_map_from_fd_of_a_program_is_refused():
    from fastbpf import asm
    from fastbpf.enums import ProgramType
    from fastbpf.programs import Program, ProgramSpec
    insns = asm.Instructions([asm.Mov.imm(asm.R0, 2), asm.exit()])
    with Program.load(ProgramSpec(ProgramType.XDP, insns)) as p, hash_map() as m:
        with pytest.raises(ValueError, match="is a BPF program, not a BPF map"):
            Map.from_fd(p.fd)
        with pytest.raises(ValueError, match="is a BPF map, not a BPF program"):
            Program.from_fd(m.fd)
        with open("/dev/null") as f:
            with pytest.raises(ValueError, match="not a BPF object"):
                Map.from_fd(f.fileno())


def test_map_from_pin_of_a_program_names_the_path(bpffs_dir):
    from fastbpf import asm
    from fastbpf.enums import ProgramType
    from fastbpf.programs import Program, ProgramSpec
    path = os.path.join(bpffs_dir, "a_prog")
    insns = asm.Instructions([asm.Mov.imm(asm.R0, 2), asm.exit()])
    with Program.load(ProgramSpec(ProgramType.XDP, insns)) as p:
        p.pin(path)
    with pytest.raises(ValueError, match=r"pinned at .*a_prog' is a BPF program, not a BPF map"):
        Map.from_pin(path)
    with hash_map() as m:
        m.pin(os.path.join(bpffs_dir, "a_map"))
    with pytest.raises(ValueError, match=r"a_map' is a BPF map, not a BPF program"):
        Program.from_pin(os.path.join(bpffs_dir, "a_map"))
    os.unlink(path)
    os.unlink(os.path.join(bpffs_dir, "a_map"))
