"""The load of a CollectionSpec: BTF, maps, programs, variables, in that order.

Kept apart from :mod:`fastbpf.collection` (the public types) so each stays
short. Everything created is recorded as it is made; any exception closes it
all again and removes the pins made here, so a failed load leaves no fd and no
pin behind.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
from typing import Any

from . import _core, features
from . import btf as _btf
from .elf.btffix import sanitize
from .elf.build import parse_spec as parse_spec  # re-exported for collection.py
import numpy as np

from .enums import MapType, ProgramType
from .errors import (BPFError, BTFError, ELFError, MapIncompatibleError, VerifierError,
                     target_not_found_error)
from .linker import apply_core, fd_array_buffer, kconfig_contents, link_program, \
    resolve_externs
from .mapspec import FD_VALUE_MAPS, MAP_OF_MAPS, MapSpec, PinType, is_btf_type
from .maps import Map
from .mapcreate import spec_pin_path
from .programs import Program, ProgramSpec
from ._linkraw import link_raw, unedited_label

# Every field but the instructions (reading those would decode them).
_PROGRAM_FIELDS = [f for f in dataclasses.fields(ProgramSpec) if f.name != "instructions"]

_NAME_BAD = re.compile(r"[^A-Za-z0-9_.]")
#: Map types the kernel takes no key/value BTF for (libbpf drops it too).
_NO_BTF_MAPS = frozenset({
    MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY, MapType.STACK_TRACE,
    MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS, MapType.DEVMAP, MapType.DEVMAP_HASH,
    MapType.CPUMAP, MapType.XSKMAP, MapType.SOCKMAP, MapType.SOCKHASH, MapType.QUEUE,
    MapType.STACK, MapType.ARENA, MapType.PROG_ARRAY})


def _missing_btf_features() -> frozenset[str]:
    return features.missing_btf_features()


def _load_btf(spec: Any) -> Any:
    """The object's BTF, sanitised and loaded once; None if the kernel refuses it."""
    blob = sanitize(spec.btf, spec.btf_blob, features.missing_btf_features())
    try:
        raw = _core.btf_load(blob)
    except BTFError:
        return None  # libbpf goes on without BTF too; maps then carry none
    return _btf.Handle(raw, spec.btf)


#: BTF blob -> {type id: numpy dtype}, shared by the specs parsed from the
#: same object (a service loads one object again and again; a key/value
#: dtype is a walk over the type graph, 10-30 us each). The kernel gets the
#: blob, so the dtypes follow the blob's types, as the map's BTF does.
_DTYPE_MEMOS: dict[bytes, dict[int, Any]] = {}


def _share_dtype_memo(spec: Any) -> None:
    blob = spec.btf_blob
    if not isinstance(blob, bytes) or "_dtype_memo" in spec.btf.__dict__:
        return
    memo = _DTYPE_MEMOS.get(blob)
    if memo is None:
        if len(_DTYPE_MEMOS) >= 8:
            del _DTYPE_MEMOS[next(iter(_DTYPE_MEMOS))]
        memo = _DTYPE_MEMOS[blob] = {}
    spec.btf.__dict__["_dtype_memo"] = memo


def _map_order(maps: dict[str, MapSpec]) -> list[str]:
    """Map names with every map named in another's contents created first."""
    for ms in maps.values():
        if ms.contents and ms.type in MAP_OF_MAPS:
            break
    else:
        return list(maps)  # no map names another: the object's order
    done: list[str] = []
    seen: set[str] = set()

    def visit(name: str, depth: int = 0) -> None:
        if name in seen or depth > len(maps):
            return
        seen.add(name)
        ms = maps[name]
        if ms.type in MAP_OF_MAPS and ms.contents:
            for _, v in (ms.contents.items() if isinstance(ms.contents, dict) else ms.contents):
                if isinstance(v, str) and v in maps:
                    visit(v, depth + 1)
        done.append(name)

    for n in maps:
        visit(n)
    return done


def _prepared(ms: MapSpec, handle: Any, pin_dir: str | None, created: dict[Any, Any],
              specs: dict[Any, Any] | None = None) -> MapSpec:
    """A copy of *ms* ready for Map.create: shared BTF, pin dir, names resolved."""
    # A shallow copy (what copy.copy makes, without its reduce protocol),
    # edited through its __dict__ (a dozen maps a load: attribute writes cost).
    src = ms.__dict__
    m = object.__new__(type(ms))
    d = m.__dict__
    d.update(src)
    # The copy shares the key/value dtypes already derived (a BTF walk each):
    # MapSpec's cache checks that the field still holds the same object.
    dtypes = src.get("_dtypes")
    if dtypes is None:
        dtypes = src["_dtypes"] = {}
    d["_dtypes"] = dtypes
    inner = d["inner"]
    if isinstance(inner, str):
        # An inner map named symbolically: the shape of that map of the collection.
        if inner not in (specs or {}):
            raise ValueError(f"map {ms.name!r}: inner map {inner!r} is not in the collection")
        d["inner"] = specs[inner]  # type: ignore[index]  # checked just above
    mtype = d["type"]
    if is_btf_type(d["key"]) or is_btf_type(d["value"]):
        if handle is not None and mtype not in _NO_BTF_MAPS:
            d["btf"] = handle
        else:  # no BTF object in the kernel: plain dtypes, as libbpf falls back to
            d["key"], d["value"] = ms.key_dtype or 0, ms.value_dtype or 0
    if pin_dir is not None and d["pinning"] == PinType.BY_NAME:
        d["pin_dir"] = pin_dir
    contents = d["contents"]
    if not contents:
        return m
    items = contents.items() if isinstance(contents, dict) else contents
    if mtype in FD_VALUE_MAPS:
        resolved = []
        for k, v in items:
            if isinstance(v, str):
                if mtype == MapType.PROG_ARRAY:
                    continue  # written once the programs are loaded
                if v not in created:
                    raise ValueError(f"map {ms.name!r}: initial value names map {v!r}, "
                                     f"which the collection does not have")
                v = created[v]
            resolved.append((k, v))
        d["contents"] = resolved
    else:
        d["contents"] = [(k, bytes(v) if isinstance(v, bytearray) else v) for k, v in items]
    return m


def load_spec(spec: Any, pin_dir: str | None, kernel_btf: Any, log_level: int,
              collection_class: type, program_class: type[Program], threads: int = 1) -> Any:
    """Create the kernel objects of *spec*; see :meth:`CollectionSpec.load`.

    The caller (:mod:`fastbpf.collection`, which sits above this module)
    passes the classes of the collection and its programs it wants back.
    The programs linked from the object's bytes go through a
    :class:`fastbpf._core.LoadQueue`: with *threads* > 1 they are verified
    in parallel, and while the next ones are linked.
    """
    maps: dict[str, Map] = {}
    programs: dict[str, Program] = {}
    pins_made: list[str] = []
    module_fds: dict[str, Any] = {}
    cand_cache: dict[Any, Any] = {}  # CO-RE candidates, shared by the object's programs
    link_cache: dict[Any, Any] = {}  # functions with this load's map fds patched in
    handle = None
    queue = None
    # A log needs the one-by-one path; a single program gains nothing.
    queueable = log_level == 0 and len(spec.programs) >= 2
    try:
        if queueable and _queue_early(spec):
            # Started before the maps are made, so its threads are waiting
            # by the time the first program is ready.
            queue = _core.LoadQueue(len(spec.programs), threads)
        if spec.btf is not None and spec.btf_blob is not None:
            handle = _load_btf(spec)
            _share_dtype_memo(spec)
        map_specs = dict(spec.maps)
        if spec.kconfig and ".kconfig" in map_specs:
            ks = map_specs[".kconfig"].copy()
            ks.contents = [(0, kconfig_contents(spec.kconfig, ks.value_size))]
            map_specs[".kconfig"] = ks
        for name in _map_order(map_specs):
            ms = map_specs[name]
            if name in spec.struct_ops:
                continue  # made once the programs it names are loaded
            prepared = _prepared(ms, handle, pin_dir, maps, map_specs)
            pin = spec_pin_path(prepared)
            existed = bool(pin) and os.path.exists(pin)  # type: ignore[arg-type]
            try:
                made = Map._create_prechecked(prepared)  # (an empty Map is falsy)
                maps[name] = made if made is not None else Map.create(prepared)
            except BPFError as e:
                if prepared.btf is None or existed or isinstance(e, MapIncompatibleError):
                    raise
                # The kernel may refuse the BTF of this map alone: like
                # libbpf, try once more without it.
                prepared.key, prepared.value = ms.key_dtype or 0, ms.value_dtype or 0
                prepared.btf = None
                maps[name] = Map.create(prepared)
            if pin and not existed:
                pins_made.append(pin)
        # Each program linked from the object's bytes is queued as soon as it
        # is ready: the queue's threads verify it while this one links the
        # next (with threads=1 the queue loads them all in finish(), after
        # the last is linked: the linking then runs back to back, in warm
        # caches, not between verifier runs that evict them).
        name = ""
        try:
            ready: list[tuple[str, tuple[Any, ...]]] = []
            queued: list[str] = []
            for name, ps in spec.programs.items():
                program = _prepare_program(spec, name, ps, maps, handle, kernel_btf,
                                           module_fds, cand_cache, link_cache)
                ready.append((name, program))
                if program[1] is None and queueable:
                    if queue is None:  # (see _queue_early)
                        queue = _core.LoadQueue(len(spec.programs), threads)
                    queue.add(*program_class._linked_args(program[0]))
                    queued.append(name)
            link_cache.clear()
            batch = _finish_queue(queue, queued) if queue is not None else {}
            queue = None
            try:
                for name, linked in ready:
                    fd = batch.pop(name, None)
                    programs[name] = (program_class._from_linked(linked[0], fd) if fd is not None
                                      else _load_prepared(program_class, name, linked, log_level))
            finally:
                for fd in batch.values():  # left by a failure of a program loaded alone
                    fd.close()
        except BPFError as e:
            # Name the program as the object does: the kernel's name is
            # cut to 15 bytes, and a missing attach target names no program.
            if e.obj and e.obj.startswith("program '") and e.obj != f"program {name!r}":
                e.obj = f"program {name!r}"
            elif e.obj and e.obj.startswith("attach target "):
                e.obj = f"{e.obj} of program {name!r}"
            raise
        for name, ops in spec.struct_ops.items():
            maps[name] = _struct_ops_map(name, ops, spec.maps[name], programs)
        for name, ms in spec.maps.items():
            if ms.type != MapType.PROG_ARRAY or not ms.contents:
                continue
            m = maps[name]
            pin = spec_pin_path(_prepared(ms, None, pin_dir, maps))
            if pin and pin not in pins_made:
                continue  # a reused pin keeps what it holds
            items = ms.contents.items() if isinstance(ms.contents, dict) else ms.contents
            for k, v in items:
                if isinstance(v, str):
                    if v not in programs:
                        raise ValueError(f"prog array {name!r}: initial value names program "
                                         f"{v!r}, which the collection does not have")
                    m._write_contents([(k, programs[v])])
        # The variables are made on first use of coll.variables, from the
        # spec's variables and the maps as they are now.
        return collection_class(spec, maps, programs, None, handle)
    except BaseException:
        if queue is not None:
            queue.cancel()  # joins its threads, closes what they loaded
        for p in programs.values():
            p.close()
        for m in maps.values():
            m.close()
        for pin in pins_made:
            try:
                os.unlink(pin)
            except OSError:
                pass
        if handle is not None:
            handle.close()
        raise
    finally:
        for fd in module_fds.values():
            fd.close()


def _struct_ops_map(name: str, ops: str, ms: MapSpec, programs: dict[Any, Any]) -> Map:
    """The STRUCT_OPS map of *ms*: the kernel's value struct, filled by member name."""
    from .link.struct_ops import struct_ops_value
    values = dict(ms.contents[0][1]) if ms.contents else {}
    for member, v in list(values.items()):
        if isinstance(v, str):
            if v not in programs:
                raise ValueError(f"struct_ops {name!r}.{member} names program {v!r}, which "
                                 f"the collection does not have")
            values[member] = programs[v]
    raw, type_id = struct_ops_value(ops, values)
    spec = MapSpec(type=MapType.STRUCT_OPS, key=np.uint32, value=len(raw), max_entries=1,
                   flags=ms.flags, name=ms.name, btf_vmlinux_value_type_id=type_id)
    m = Map.create(spec)
    try:
        m[0] = np.frombuffer(raw, dtype=np.dtype(("V", len(raw))))[0]
    except BaseException:
        m.close()
        raise
    return m


def _struct_ops_target(spec: Any, name: str) -> dict[Any, Any]:
    """attach_btf_id and member index of a struct_ops program (kernel BTF)."""
    target = spec.struct_ops_programs.get(name)
    if target is None:
        return {}
    from . import btf
    ops, member = target
    kernel = btf.load_kernel_spec()
    st: Any = kernel.type_by_name(ops, kind=btf.Kind.STRUCT)
    for idx, m in enumerate(st.members):
        if m.name == member:
            return {"attach_btf_id": kernel.type_id(st), "struct_ops_member": idx}
    raise target_not_found_error(errno.ENOENT, "struct_ops", f"{ops}.{member}",
                                 "the kernel's struct has no such member")


def _prepare_program(spec: Any, name: str, ps: ProgramSpec, maps: dict[Any, Any], handle: Any,
                     kernel_btf: Any, module_fds: dict[Any, Any], cand_cache: dict[Any, Any] | None = None,
                     link_cache: dict[Any, Any] | None = None) -> tuple[ProgramSpec, list[Any] | None]:
    """The ProgramSpec the kernel gets (linked, references resolved) and the
    CO-RE results to name a poisoned relocation by (None: linked from the
    object's bytes, ready for Program._load_linked)."""
    kname = _NAME_BAD.sub("_", ps.name or name)[:15]
    if ps.type == ProgramType.UNSPEC:
        raise ELFError(f"program {name!r}: section {ps.section!r} names no program type "
                       f"libbpf knows; set spec.programs[{name!r}].type before load")
    extra = _struct_ops_target(spec, name) if ps.type == ProgramType.STRUCT_OPS else {}
    fast = link_raw(spec, ps, maps, module_fds, link_cache) if handle is not None else None
    if fast is not None:
        raw, func_info, line_info, fd_array = fast
        # A plain ProgramSpec with the same (already validated) fields,
        # without running __init__ again.
        load_spec = object.__new__(ProgramSpec)
        d = load_spec.__dict__
        d.update(ps.__dict__)
        d.pop("_insns", None)
        d.pop("_label", None)
        d.update(instructions=raw, name=kname, btf=handle, func_info=func_info,
                 line_info=line_info,
                 fd_array=fd_array_buffer(fd_array) if fd_array else ps.fd_array, **extra)
        if load_spec.attach_to and not load_spec.attach_btf_id:
            return load_spec, []  # Program.load looks the target up
        return load_spec, None
    insns = ps.instructions
    core_results: list[Any] = []
    linked: Any
    if isinstance(insns, (bytes, bytearray, memoryview)):
        linked, fd_array = insns, None
    else:
        linked = link_program(insns, spec.functions)
        linked, fd_array = resolve_externs(linked, spec.ksyms, module_fds)
        core_results = apply_core(spec.btf, linked, kernel_btf, name, cand_cache)
        linked = linked.resolve_maps(maps)
    fields = {f.name: getattr(ps, f.name) for f in _PROGRAM_FIELDS}
    fields.update(instructions=linked, name=kname,
                  fd_array=fd_array_buffer(fd_array) if fd_array else ps.fd_array, **extra)
    if handle is not None and ps.btf is None:
        fields["btf"] = handle
    return ProgramSpec(**fields), core_results


def _queue_early(spec: Any) -> bool:
    """Whether two programs of *spec* look linkable from the object's bytes
    (not edited, no CO-RE relocation in their section, not struct_ops): the
    load queue is then made before the maps. Otherwise it is made when the
    first program is queued, so an object whose programs all take the other
    path starts no thread. A guess: either way every program loads."""
    obj_ctx = getattr(spec, "_object", None)
    if obj_ctx is None:
        return False
    ext = getattr(obj_ctx[0], "ext", None)
    core = ext.core if ext is not None else {}
    likely = 0
    for ps in spec.programs.values():
        if unedited_label(ps) is not None and ps.type != ProgramType.STRUCT_OPS \
                and ps.section not in core:
            likely += 1
            if likely == 2:
                return True
    return False


def _finish_queue(queue: Any, queued: list[str]) -> dict[str, Any]:
    """FDs of the programs of *queue* (named by *queued*, in order), by name;
    {} when a load failed. A failure closes every fd of the queue: the
    caller then loads one by one as without a queue, so the error, its
    verifier log and its explanation are those of a sequential load."""
    fds = queue.finish()
    if all(fd.__class__ is _core.FD for fd in fds):
        return dict(zip(queued, fds))
    for fd in fds:
        if fd.__class__ is _core.FD:
            fd.close()
    return {}


def _load_prepared(program_class: type[Program], name: str, prepared: tuple[Any, ...],
                   log_level: int) -> Program:
    load_spec, core_results = prepared
    try:
        if core_results is None:  # linked from the object's bytes by link_raw
            return program_class._load_linked(load_spec, log_level)
        return program_class.load(load_spec, log_level=log_level)
    except VerifierError as e:
        if not core_results:
            raise
        # A poisoned CO-RE instruction the verifier reached: name the relocation.
        from .btf import core
        raise core.poison_error(e, core_results, name) from None
