"""Creating a map in the kernel from a :class:`MapSpec`, step by step:
the kernel's parameters (:func:`create_params`), the inner-map template of
a map of maps, the BTF to describe keys and values (:func:`map_btf_for`),
BPF_MAP_CREATE itself with the errors explained (:func:`create_fd`).
:meth:`fastbpf.maps.Map.create` adds the pin, contents and freeze.
"""

from __future__ import annotations

import dataclasses
import errno
import os
from typing import Any, NamedTuple

from . import _core, features
from .enums import MapType
from .errors import BPFError
from .mapspec import ARRAY_MAPS, KEYLESS_MAPS, MapSpec, PinType, is_btf_type

__all__ = ["CreateParams", "create_params", "create_fd", "map_btf_for", "spec_pin_path"]


class CreateParams(NamedTuple):
    """What BPF_MAP_CREATE is given for a spec, after the spec's defaults."""

    type: MapType
    key_size: int
    value_size: int
    max_entries: int
    flags: int


def create_params(spec: MapSpec) -> CreateParams:
    """The type, sizes, max_entries and flags *spec* creates its map with,
    checked (ValueError) before the kernel sees them."""
    ks, vs = spec._sizes()
    mtype = spec.type
    max_entries = int(spec.max_entries)
    if max_entries < 0:
        raise ValueError("max_entries must be >= 0")
    if mtype == MapType.PERF_EVENT_ARRAY and max_entries == 0:
        max_entries = _core.possible_cpus()  # one slot per CPU, as libbpf does
    if mtype in ARRAY_MAPS and ks not in (0, 4):
        raise ValueError(f"{mtype.name} keys are 4-byte indexes, the spec says {ks} bytes")
    return CreateParams(mtype, ks, vs, max_entries, spec._create_flags())


def _inner_template(spec: MapSpec) -> _core.FD:
    """A map of the inner spec's shape: the kernel learns from it what the
    outer map may hold. It can be closed once the outer map exists."""
    if not isinstance(spec.inner, MapSpec):
        raise ValueError(f"{spec.type.name} needs inner=MapSpec(...) describing its maps"
                         + (f" (the name {spec.inner!r} means something only in a "
                            f"collection)" if isinstance(spec.inner, str) else ""))
    fd, _ = create_fd(dataclasses.replace(spec.inner, pin_path=None, pinning=PinType.NONE,
                                          contents=None,
                                          freeze=False))
    return fd


def map_btf_for(spec: MapSpec) -> tuple[Any, tuple[int, int], bool]:
    """(BTF object or None, (key type id, value type id), whether the caller
    closes the object) to create *spec*'s map with."""
    if is_btf_type(spec.key) or is_btf_type(spec.value):
        return _map_btf(spec)
    if spec.type == MapType.STRUCT_OPS:
        # The value type comes from vmlinux (btf_vmlinux_value_type_id),
        # but the kernel still insists on *some* BTF object.
        return _placeholder_btf(), (0, 0), True
    # BTF from the numpy dtypes: the map reopens typed (btf/from_dtype.py).
    from .btf.from_dtype import load_dtype_btf
    handle, ids = load_dtype_btf(spec.type, spec.key_dtype, spec.value_dtype, spec.name)
    return handle, ids, handle is not None


def create_fd(spec: MapSpec) -> tuple[_core.FD, CreateParams]:
    """BPF_MAP_CREATE for *spec* (no pin, contents or freeze): the new map's
    fd and the parameters it was created with. A refusal names the missing
    feature (:class:`NotSupportedError`) or carries a hint for EINVAL."""
    p = create_params(spec)
    inner_fd = None
    btf_handle = None
    own_btf = False
    try:
        if p.type.is_map_of_maps:
            inner_fd = _inner_template(spec)
        btf_handle, btf_ids, own_btf = map_btf_for(spec)
        kw = {}
        if spec.numa_node is not None:
            kw["numa_node"] = spec.numa_node
        fd = _core.map_create(
            int(p.type), p.key_size, p.value_size, p.max_entries, p.flags, spec.name or None,
            inner_map_fd=inner_fd.fd if inner_fd is not None else 0,
            map_ifindex=spec.ifindex, map_extra=spec.map_extra,
            btf_fd=btf_handle.fd if btf_handle is not None else 0,
            btf_key_type_id=btf_ids[0], btf_value_type_id=btf_ids[1],
            btf_vmlinux_value_type_id=spec.btf_vmlinux_value_type_id, **kw)
    except BPFError as e:
        missing = features.unsupported_map_type(
            p.type, e, f"map {spec.name!r}" if spec.name else None)
        if missing is not None:
            raise missing from e
        if e.errno == errno.EINVAL and not e.hint:
            e.hint = _create_hint(spec)
        raise
    finally:
        if inner_fd is not None:
            inner_fd.close()
        if own_btf and btf_handle is not None:
            btf_handle.close()  # the map holds its own reference to the BTF
    return fd, p


def _create_hint(spec: MapSpec) -> str | None:
    if spec.max_entries == 0 and spec.type not in _ZERO_ENTRY_MAPS:
        return "max_entries must be > 0 for this map type"
    if spec.type == MapType.LPM_TRIE:
        return "LPM trie keys are a u32 prefix length followed by the data"
    if spec.type in (MapType.RINGBUF, MapType.USER_RINGBUF):
        return "ring buffer max_entries must be a power of 2 multiple of the page size, key and value 0"
    if spec.type in KEYLESS_MAPS:
        return f"{spec.type.name} maps have key size 0"
    if spec.type in (MapType.PERF_EVENT_ARRAY,):
        return "perf event arrays have 4-byte keys and values"
    return None


#: Map types created with max_entries 0 (local storage; cgroup storage ignores it).
_ZERO_ENTRY_MAPS = frozenset({MapType.SK_STORAGE, MapType.TASK_STORAGE, MapType.INODE_STORAGE,
                              MapType.CGRP_STORAGE, MapType.CGROUP_STORAGE,
                              MapType.PERCPU_CGROUP_STORAGE})


def _placeholder_btf() -> _core.FD:
    """The smallest valid BTF object: one ``int``."""
    from . import btf
    return _core.btf_load(btf.Spec([btf.Int("int", 4, btf.IntEncoding.SIGNED)]).encode())


def spec_pin_path(spec: MapSpec) -> str | None:
    """Where *spec* pins its map: pin_path, or pin_dir/name when pinned by name."""
    if spec.pin_path:
        return os.fspath(spec.pin_path)
    if spec.pinning and spec.pin_dir:
        if not spec.name:
            raise ValueError("a map pinned by name needs a name")
        return os.path.join(os.fspath(spec.pin_dir), spec.name)
    return None


def _map_btf(spec: MapSpec) -> tuple[Any, tuple[int, int], bool]:
    """(BTF handle, (key id, value id), whether the caller owns the handle)."""
    from . import btf
    key_t = spec.key if is_btf_type(spec.key) else None
    value_t = spec.value if is_btf_type(spec.value) else None
    shared = spec.btf
    if shared is not None and not shared.closed:
        bspec = shared.spec()
        try:
            return shared, (bspec.type_id(key_t) if key_t is not None else 0,
                            bspec.type_id(value_t) if value_t is not None else 0), False
        except btf.BTFError:
            pass  # types from elsewhere: build their own object below
    bspec, kid, vid = btf.build_map_btf(key_t, value_t)
    handle = btf.Handle.load(bspec)
    return handle, (kid if key_t is not None else 0, vid if value_t is not None else 0), True
