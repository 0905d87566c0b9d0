"""struct_ops: implement a kernel ``struct <ops>`` (say ``tcp_congestion_ops``)
with BPF programs and register it.

The pieces, all described by the kernel's BTF:

* one STRUCT_OPS program per function member, loaded with
  ``attach_btf_id`` = the BTF id of ``struct <ops>`` and the member's index
  as ``struct_ops_member`` (the kernel's expected_attach_type;
  :func:`struct_ops_program_spec` fills both);
* a STRUCT_OPS map whose single value is ``struct bpf_struct_ops_<ops>``:
  function slots hold program fds (as u64), data members hold their values
  (:func:`create_struct_ops_map`);
* the registration: with ``BPF_F_LINK`` on the map, BPF_LINK_CREATE
  (BPF_STRUCT_OPS) registers and closing the link unregisters
  (:func:`attach_struct_ops`). A map made without the flag registers when
  its value is written; its "link" unregisters by deleting the value.

Example, a TCP congestion control named "mycc"::

    specs = {m: struct_ops_program_spec("tcp_congestion_ops", m, insns[m])
             for m in ("ssthresh", "cong_avoid", "undo_cwnd")}
    progs = {m: Program.load(s) for m, s in specs.items()}
    m = create_struct_ops_map("tcp_congestion_ops", dict(progs, name="mycc"))
    with link.attach_struct_ops(m):
        ...  # "mycc" is in /proc/sys/net/ipv4/tcp_available_congestion_control
"""

from __future__ import annotations

import errno
import struct
import sys
from typing import Any, Mapping

import numpy as np

from .. import _core
from ..enums import AttachType, MapFlags, MapType, ProgramType
from ..errors import target_not_found_error
from ._base import DetachLink, FDLink, Link, link_create

__all__ = [
    "attach_struct_ops", "create_struct_ops_map", "struct_ops_program_spec",
    "struct_ops_value", "StructOpsLink",
]

_VALUE_PREFIX = "bpf_struct_ops_"


def _kernel_spec() -> Any:
    from ..btf import load_kernel_spec
    return load_kernel_spec()


def _struct(spec: Any, name: str) -> Any:
    from ..btf import Kind
    return spec.type_by_name(name, kind=Kind.STRUCT)


def _resolve(t: Any) -> Any:
    # Skip typedefs and qualifiers down to the type that has a layout.
    while t.kind.name in ("TYPEDEF", "VOLATILE", "CONST", "RESTRICT", "TYPE_TAG"):
        t = t.type
    return t


def _members(spec: Any, ops: str) -> list[Any]:
    return list(_struct(spec, ops).members)


def struct_ops_program_spec(ops: str, member: str, instructions: Any, *,
                            name: str | None = None, license: str = "GPL",
                            flags: int = 0) -> Any:
    """A :class:`ProgramSpec` for the function *member* of ``struct <ops>``
    (attach_btf_id and member index looked up in the kernel's BTF)."""
    from ..programs import ProgramSpec
    spec = _kernel_spec()
    st = _struct(spec, ops)
    for idx, m in enumerate(st.members):
        if m.name == member:
            if _resolve(m.type).kind.name != "PTR":
                raise ValueError(f"struct {ops}.{member} is not a function pointer")
            break
    else:
        raise target_not_found_error(errno.ENOENT, "find struct_ops member",
                                     f"{ops}.{member}", key_error=True)
    return ProgramSpec(ProgramType.STRUCT_OPS, instructions, license=license,
                       name=name or member[:15], attach_btf_id=spec.type_id(st), flags=flags,
                       struct_ops_member=idx)


def struct_ops_value(ops: str, values: Mapping[str, Any]) -> tuple[bytes, int]:
    """Pack ``struct bpf_struct_ops_<ops>`` from *values* (member name ->
    a Program or fd for function slots, an int, or bytes/str for char
    arrays). Returns the bytes and the value type's BTF id."""
    spec = _kernel_spec()
    wrapper = _struct(spec, _VALUE_PREFIX + ops)
    data = next((m for m in wrapper.members if m.name == "data"), None)
    if data is None:
        raise ValueError(f"{_VALUE_PREFIX + ops} has no data member")
    base = data.bit_offset // 8
    buf = bytearray(wrapper.size)
    by_name = {m.name: m for m in _members(spec, ops)}
    for key, val in values.items():
        m = by_name.get(key)
        if m is None:
            raise target_not_found_error(errno.ENOENT, "find struct_ops member",
                                         f"{ops}.{key}", key_error=True)
        if m.bit_offset % 8:
            raise ValueError(f"struct {ops}.{key} is a bitfield")
        off = base + m.bit_offset // 8
        t = _resolve(m.type)
        kind = t.kind.name
        if kind == "PTR":
            fd = getattr(val, "fd", val)
            struct.pack_into("=Q", buf, off, int(fd))
        elif kind == "ARRAY":
            raw = val.encode() if isinstance(val, str) else bytes(val)
            size = t.size
            if len(raw) >= size:
                raise ValueError(f"struct {ops}.{key} holds at most {size - 1} bytes")
            buf[off:off + len(raw)] = raw
        elif kind in ("INT", "ENUM", "ENUM64"):
            size = t.size
            buf[off:off + size] = int(val).to_bytes(size, sys.byteorder, signed=int(val) < 0)
        else:
            raise TypeError(f"struct {ops}.{key}: cannot set a {kind} member")
    return bytes(buf), spec.type_id(wrapper)


def create_struct_ops_map(ops: str, values: Mapping[str, Any], *, name: str | None = None,
                          link: bool = True) -> Any:
    """Create the STRUCT_OPS map for ``struct <ops>`` and write its value.

    With *link* (the default) the map gets ``BPF_F_LINK``: nothing is
    registered until :func:`attach_struct_ops`. Without it, writing the
    value registers the ops at once.
    """
    from ..maps import Map, MapSpec
    raw, type_id = struct_ops_value(ops, values)
    flags = MapFlags.LINK if link else 0
    m = Map.create(MapSpec(type=MapType.STRUCT_OPS, key=np.uint32, value=len(raw), max_entries=1,
                           flags=flags, name=name or ops[:15],
                           btf_vmlinux_value_type_id=type_id))
    try:
        m[0] = np.frombuffer(raw, dtype=np.dtype(("V", len(raw))))[0]
    except BaseException:
        m.close()
        raise
    return m


class StructOpsLink(FDLink):
    """A registered struct_ops (BPF_LINK_TYPE_STRUCT_OPS). :meth:`update`
    swaps in another map of the same ops, atomically."""

    def update(self, map: Any, old_map: Any = None) -> None:
        """Swap in the ops of another STRUCT_OPS *map* (only if *old_map*
        is the one registered now, when given)."""
        from ..enums import AttachFlags
        flags, old = (AttachFlags.REPLACE, old_map.fd) if old_map is not None else (0, 0)
        # LINK_UPDATE takes the new map in new_map_fd, which shares its slot
        # with new_prog_fd.
        _core.link_update(self.fd, map.fd, flags, old)
        self.program = map


def attach_struct_ops(map: Any) -> Link:
    """Register the struct_ops in *map* with the kernel (e.g. a TCP
    congestion control becomes selectable). Closing the link unregisters."""
    info = _core.map_info(map.fd)
    if info["type"] != MapType.STRUCT_OPS:
        raise ValueError("attach_struct_ops needs a STRUCT_OPS map")
    if info["flags"] & MapFlags.LINK:
        # link_create.map_fd sits where prog_fd is for other attach types.
        fd = link_create(map.fd, 0, AttachType.STRUCT_OPS)
        return StructOpsLink(fd, map, f"struct_ops map {info['name']}")
    # Without BPF_F_LINK the value update already registered it; deleting
    # the value unregisters.
    own = _core.dup_fd(map.fd)   # the caller may close its Map first

    def detach() -> None:
        try:
            _core.map_delete_elem(own.fd, np.zeros(1, np.uint32))
        finally:
            own.close()

    return DetachLink(detach, map, f"struct_ops map {info['name']}", keep=map)
