"""``.struct_ops`` / ``.struct_ops.link`` sections: kernel ops implemented in BPF.

Each global in such a section is a ``struct <ops>`` (``tcp_congestion_ops``,
say) whose function pointers are relocated to programs of ``struct_ops/``
sections and whose other members hold data (a ``name``). The object's struct
may declare only some members, in any order: they are matched to the
kernel's struct by name at load (see :mod:`fastbpf.link.struct_ops`), so the
spec keeps ``{member: value}``, where a value is a program name (str), an
int, or bytes for char arrays.
"""

from __future__ import annotations

from typing import Any

from .. import btf as _btf
from ..enums import MapFlags, MapType
from ..errors import ELFError
from ..mapspec import MapSpec
from .reader import STT

__all__ = ["struct_ops_specs"]


def _skip(t: Any) -> Any:
    for _ in range(32):
        if isinstance(t, (_btf.Typedef, _btf.Const, _btf.Volatile, _btf.Restrict,
                          _btf.TypeTag)):
            t = t.type
        else:
            return t
    raise ELFError("BTF type chain too deep")


def struct_ops_specs(obj: Any) -> tuple[dict[str, MapSpec], dict[str, str],
                                        dict[str, tuple[Any, ...]]]:
    """``({map name: MapSpec}, {map name: ops struct}, {program: (ops, member)})``."""
    maps: dict[str, MapSpec] = {}
    ops_of: dict[str, str] = {}
    progs: dict[str, tuple[Any, ...]] = {}
    if not obj.struct_ops_secs:
        return maps, ops_of, progs
    if obj.btf is None:
        raise ELFError("struct_ops sections need BTF (compile with -g)")
    elf = obj.elf
    for shndx in obj.struct_ops_secs:
        sec = elf.names[shndx]
        data = elf.section_bytes(shndx)
        found = obj.btf.types_by_name(sec, _btf.Kind.DATASEC)
        if not found:
            raise ELFError(f"section {sec!r} has no DATASEC in the BTF")
        offsets = obj.symbols_in(sec)
        targets: dict[int, str] = {}
        rels = obj.rels.get(shndx)
        if rels is not None:
            for off, info in zip(rels["offset"].tolist(), rels["info"].tolist()):
                sym = info >> 32
                if int(obj.sym_type[sym]) != STT.FUNC:
                    raise ELFError(f"{sec}: relocation at {off} does not name a function")
                targets[off] = elf.symbol_name(sym)
        for vsi in found[0].vars:
            var = vsi.type
            if not isinstance(var, _btf.Var):
                raise ELFError(f"{sec} holds {var!r}, not a variable")
            st = _skip(var.type)
            if not isinstance(st, _btf.Struct) or not st.name:
                raise ELFError(f"{sec}: {var.name!r} is not a named struct")
            base = offsets.get(var.name)
            if base is None or base + st.size > len(data):
                raise ELFError(f"{sec}: {var.name!r} has no symbol inside the section")
            values: dict[Any, Any] = {}
            for m in st.members:
                if m.bit_offset % 8:
                    continue
                off = base + m.bit_offset // 8
                t = _skip(m.type)
                if off in targets:
                    values[m.name] = targets[off]
                    progs[targets[off]] = (st.name, m.name)
                elif isinstance(t, _btf.Array) and t.size:
                    raw = data[off:off + t.size].split(b"\0", 1)[0]
                    if raw:
                        values[m.name] = raw
                elif isinstance(t, (_btf.Int, _btf.Enum)) and t.size:
                    v = int.from_bytes(data[off:off + t.size], obj.byte_order,
                                       signed=getattr(t, "signed", False))
                    if v:
                        values[m.name] = v
            flags = MapFlags.LINK if sec.endswith(".link") else 0
            maps[var.name] = MapSpec(type=MapType.STRUCT_OPS, key=4, value=0, max_entries=1,
                                     flags=int(flags), name=var.name[:15],
                                     contents=[(0, values)])
            ops_of[var.name] = st.name
    return maps, ops_of, progs
