"""Assemble a :class:`CollectionSpec` from a parsed :class:`ObjectFile`."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any


from .. import btf as _btf
from ..enums import MapType
from ..errors import ELFError
from ..mapspec import MapSpec
from ..variables import VariableSpec
from .btfmaps import btf_map_specs, legacy_map_specs
from .structops import struct_ops_specs
from .objfile import ObjectFile, data_map_spec, internal_map_name, program_flags, \
    sleepable_flags
from .reader import SHN_UNDEF, STB

__all__ = ["parse_spec"]


def _externs(obj: ObjectFile) -> tuple[dict[str, str], dict[Any, Any], dict[Any, Any]]:
    """(name -> kind, kconfig table, ksyms table) from the .kconfig/.ksyms DATASECs."""
    kinds: dict[str, str] = {}
    kconfig: dict[str, tuple[Any, ...]] = {}
    ksyms: dict[str, tuple[Any, ...]] = {}
    if obj.btf is None:
        return kinds, kconfig, ksyms
    undef: dict[str, bool] | None = None
    for sec in (".kconfig", ".ksyms"):
        found = obj.datasec(sec)
        if found is None:
            continue
        if undef is None:   # only objects with externs need the undefined symbols
            elf = obj.elf
            names = elf.symbol_names()
            undef = {names[j]: (info >> 4) == STB.WEAK
                     for j, (info, shndx) in enumerate(zip(elf.sym_info, elf.sym_shndx))
                     if j and shndx == SHN_UNDEF and names[j]}
        for vsi in found.vars:
            t = vsi.type
            name = t.name
            weak = undef.get(name, False)
            if sec == ".kconfig":
                if not isinstance(t, _btf.Var):
                    raise ELFError(f".kconfig holds {t!r}, not a variable")
                kinds[name] = "kconfig"
                kconfig[name] = (vsi.offset, vsi.size, t.type, weak)
            elif isinstance(t, _btf.Func):
                kinds[name] = "kfunc"
                ksyms[name] = ("kfunc", weak, True)
            else:
                kinds[name] = "ksym"
                # Typeless ksyms are declared `extern const void x __ksym`.
                inner = t.type if isinstance(t, _btf.Var) else None
                while isinstance(inner, (_btf.Const, _btf.Volatile, _btf.Typedef)):
                    inner = inner.type
                typed = not isinstance(inner, _btf.Void)
                ksyms[name] = ("ksym", weak, typed)
    return kinds, kconfig, ksyms


def parse_spec(data: bytes, name: str, spec_class: type, program_spec_class: type) -> Any:
    """The CollectionSpec of the object *data* (ELFError/BTFError if malformed).

    :mod:`fastbpf.collection` passes its ``CollectionSpec`` and program spec
    classes in: it sits above this module and imports it.
    """
    CollectionSpec, ObjectProgramSpec = spec_class, program_spec_class
    obj = ObjectFile(data, name)
    elf = obj.elf
    maps, map_syms = btf_map_specs(obj)
    legacy, legacy_syms = legacy_map_specs(obj)
    for k, v in legacy.items():
        if k in maps:
            raise ELFError(f"map {k!r} is defined in both .maps and maps")
        maps[k] = v
    map_syms.update(legacy_syms)
    so_maps, so_ops, so_progs = struct_ops_specs(obj)
    for k, v in so_maps.items():
        if k in maps:
            raise ELFError(f"struct_ops {k!r} clashes with a map of that name")
        maps[k] = v
    data_maps: dict[int, str] = {}
    variables: dict[str, VariableSpec] = {}
    for shndx in obj.data_secs:
        sec: Any = elf.names[shndx]
        if sec in maps:
            raise ELFError(f"data section {sec!r} clashes with a map of that name")
        ms = data_map_spec(obj, shndx)
        maps[sec] = ms
        data_maps[shndx] = sec
        if isinstance(ms.value, _btf.Datasec):
            for vsi in ms.value.vars:
                var = vsi.type
                if isinstance(var, _btf.Var) and var.name not in variables:
                    variables[var.name] = VariableSpec(var.name, sec, vsi.offset, vsi.size,
                                                       var.type, ms)
    kinds, kconfig, ksyms = _externs(obj)
    if kconfig:
        sec = obj.datasec(".kconfig")
        size = max(sec.size, 1)
        ms = MapSpec(type=MapType.ARRAY, key=4, value=sec if sec.size else size, max_entries=1,
                     flags=(1 << 10) | (1 << 7), name=internal_map_name(name, ".kconfig"),
                     contents=[(0, bytearray(size))], freeze=True)
        maps[".kconfig"] = ms
        for k, (off, sz, t, _weak) in kconfig.items():
            variables.setdefault(k, VariableSpec(k, ".kconfig", off, sz, t, ms))

    partial = functools.partial   # each function decoded on first use
    functions = {label: partial(obj.decode, f, data_maps, map_syms, kinds)
                 for label, f in obj.labels.items()}
    programs = {}
    template = dict(_defaults(ObjectProgramSpec))
    template.update(license=obj.license, kernel_version=obj.kernel_version,
                    _local_btf=obj.btf)
    per_section: dict[str, tuple[Any, ...]] = {}
    sym_names = elf.symbol_names()
    new = object.__new__
    for f, j in obj.programs:
        sec = f.section
        row = per_section.get(sec)
        if row is None:
            d, target = program_flags(sec)
            attach_to = target if d.kind in ("tracing", "tp_btf", "lsm", "iter") and target \
                else None
            row = per_section[sec] = (d.type, d.attach_type, attach_to,
                                      sleepable_flags(d, sec))
        pname = sym_names[j]
        if pname in programs:
            raise ELFError(f"two programs are called {pname!r}")
        # The fields, set directly: the dataclass __init__ would only check
        # again what the section table already guarantees.
        ps: Any = new(ObjectProgramSpec)
        fields = template.copy()
        (fields["type"], fields["attach_type"], fields["attach_to"],
         fields["flags"]) = row
        fields["_insns"] = partial(_copy_of, functions[f.label])
        fields["name"] = pname
        fields["section"] = sec
        fields["_label"] = f.label
        ps.__dict__ = fields
        programs[pname] = ps
    return CollectionSpec(maps=maps, programs=programs, variables=variables, btf=obj.btf,
                          byte_order=obj.byte_order, functions=functions, kconfig=kconfig,
                          ksyms=ksyms, btf_blob=obj.btf_raw, struct_ops=so_ops,
                          struct_ops_programs=so_progs,
                          _object=(obj, (data_maps, map_syms, kinds), dict(functions)))


@functools.lru_cache(maxsize=8)
def _defaults(cls: type) -> dict[Any, Any]:
    """The default of every field of the ProgramSpec class *cls* but the instructions."""
    return {fl.name: (fl.default if fl.default is not dataclasses.MISSING else None)
            for fl in dataclasses.fields(cls) if fl.name != "instructions"}


def _copy_of(decode: Any) -> Any:
    return decode().copy()
