"""One populated map of every type, for the CLI tests (and how to make it)."""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from fastbpf import Map, MapFlags, MapSpec, MapType, btf, features

_INT = btf.Int("int", 4, btf.IntEncoding.SIGNED)
PAGE = os.sysconf("SC_PAGE_SIZE")

# Per type: the spec's keyword arguments (key, value, max_entries, flags...).
SPECS: dict[MapType, dict] = {
    MapType.HASH: dict(key=np.uint32, value=np.uint64, max_entries=8),
    MapType.ARRAY: dict(key=4, value=np.uint32, max_entries=4),
    MapType.PROG_ARRAY: dict(key=4, value=4, max_entries=2),
    MapType.PERF_EVENT_ARRAY: dict(key=4, value=4, max_entries=2),
    MapType.PERCPU_HASH: dict(key=np.uint32, value=np.uint32, max_entries=8),
    MapType.PERCPU_ARRAY: dict(key=4, value=np.uint64, max_entries=3),
    MapType.STACK_TRACE: dict(key=4, value=8, max_entries=4),
    MapType.CGROUP_ARRAY: dict(key=4, value=4, max_entries=2),
    MapType.LRU_HASH: dict(key=np.uint32, value=np.uint32, max_entries=8),
    MapType.LRU_PERCPU_HASH: dict(key=np.uint32, value=np.uint32, max_entries=8),
    MapType.LPM_TRIE: dict(key=8, value=np.uint32, max_entries=8),
    MapType.ARRAY_OF_MAPS: dict(key=4, value=4, max_entries=2,
                                inner=MapSpec(MapType.ARRAY, key=4, value=4, max_entries=1)),
    MapType.HASH_OF_MAPS: dict(key=np.uint32, value=4, max_entries=2,
                               inner=MapSpec(MapType.ARRAY, key=4, value=4, max_entries=1)),
    MapType.DEVMAP: dict(key=4, value=4, max_entries=2),
    MapType.SOCKMAP: dict(key=4, value=4, max_entries=2),
    MapType.CPUMAP: dict(key=4, value=4, max_entries=2),
    MapType.XSKMAP: dict(key=4, value=4, max_entries=2),
    MapType.SOCKHASH: dict(key=4, value=4, max_entries=2),
    MapType.CGROUP_STORAGE: dict(key=16, value=8, max_entries=0),
    MapType.REUSEPORT_SOCKARRAY: dict(key=4, value=4, max_entries=2),
    MapType.PERCPU_CGROUP_STORAGE: dict(key=16, value=8, max_entries=0),
    MapType.QUEUE: dict(key=0, value=np.uint32, max_entries=4),
    MapType.STACK: dict(key=0, value=np.uint32, max_entries=4),
    MapType.SK_STORAGE: dict(key=_INT, value=_INT, max_entries=0, flags=MapFlags.NO_PREALLOC),
    MapType.DEVMAP_HASH: dict(key=4, value=4, max_entries=2),
    MapType.RINGBUF: dict(key=0, value=0, max_entries=PAGE),
    MapType.INODE_STORAGE: dict(key=_INT, value=_INT, max_entries=0,
                                flags=MapFlags.NO_PREALLOC),
    MapType.TASK_STORAGE: dict(key=_INT, value=_INT, max_entries=0,
                               flags=MapFlags.NO_PREALLOC),
    MapType.BLOOM_FILTER: dict(key=0, value=np.uint32, max_entries=4),
    MapType.USER_RINGBUF: dict(key=0, value=0, max_entries=PAGE),
    MapType.CGRP_STORAGE: dict(key=_INT, value=_INT, max_entries=0,
                               flags=MapFlags.NO_PREALLOC),
    MapType.ARENA: dict(key=0, value=0, max_entries=1, flags=MapFlags.MMAPABLE),
}


def fill(m: Map, t: MapType) -> None:
    """Put a few entries in, where user space can."""
    if t in (MapType.HASH, MapType.LRU_HASH):
        m[1] = 10
        m[7] = 70
    elif t in (MapType.ARRAY,):
        m[2] = 0xDEADBEEF
    elif t in (MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH):
        m[3] = np.arange(1, 1 + _ncpus(), dtype=np.uint32)
    elif t == MapType.PERCPU_ARRAY:
        m[1] = np.arange(5, 5 + _ncpus(), dtype=np.uint64)
    elif t == MapType.LPM_TRIE:
        m[m.lpm_key(24, b"\x0a\x01\x02\x00")] = 5
    elif t in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
        with Map.create(MapSpec(MapType.ARRAY, key=4, value=4, max_entries=1)) as inner:
            m[1] = inner
    elif t in (MapType.QUEUE, MapType.STACK, MapType.BLOOM_FILTER):
        m.push(42)


def _ncpus() -> int:
    from fastbpf import possible_cpus
    return possible_cpus()


def every_map(name: str, only: MapType | None = None) -> Iterator[tuple[MapType, Map | str]]:
    """(type, a new map) for every type in SPECS and STRUCT_OPS (or just
    *only*), or (type, the feature probe's skip reason)."""
    for t, kw in SPECS.items():
        if only is not None and t != only:
            continue
        why = features.skip_reason("map_type", t)
        if why:
            yield t, why
            continue
        yield t, Map.create(MapSpec(t, name=name, **kw))
    if only is not None and only != MapType.STRUCT_OPS:
        return
    why = features.skip_reason("map_type", MapType.STRUCT_OPS)
    if why:
        yield MapType.STRUCT_OPS, why
        return
    vt = btf.load_kernel_spec().type_by_name("bpf_struct_ops_bpf_dummy_ops")
    yield MapType.STRUCT_OPS, Map.create(MapSpec(
        MapType.STRUCT_OPS, key=4, value=vt.size, max_entries=1, name=name,
        btf_vmlinux_value_type_id=btf.load_kernel_spec().type_id(vt)))
