"""Map definitions of an object: BTF-defined (``.maps``) and legacy (``maps``).

A BTF-defined map is a global struct in ``.maps`` whose members say what the
map is, through libbpf's macros: ``__uint(name, n)`` is ``int (*name)[n]``
(the number is the array's length), ``__type(name, T)`` is ``T *name``,
``__array(values, struct inner)`` is ``struct inner *values[]``. Static
initial values of a map of maps or a prog array are relocations in
``.rel.maps`` at the slots of ``values``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import btf as _btf
from ..enums import MapType
from ..errors import ELFError
from ..mapspec import MapSpec, PinType, new_map_spec
from .btffix import string_reader
from .reader import STT

__all__ = ["btf_map_specs", "legacy_map_specs"]

try:  # the C walk of the definitions; _Words below is its Python twin
    from .._elfscan import map_defs as _map_defs
except ImportError:  # pragma: no cover - exercised only without the build
    _map_defs = None  # type: ignore[assignment]

_UINT_FIELDS = ("type", "max_entries", "map_flags", "numa_node", "key_size", "value_size",
                "pinning", "map_extra")


def _skip_mods(t: Any) -> Any:
    for _ in range(32):
        if isinstance(t, (_btf.Typedef, _btf.Const, _btf.Volatile, _btf.Restrict,
                          _btf.TypeTag)):
            t = t.type
        else:
            return t
    raise ELFError("BTF type chain too deep")


def _uint(t: Any, where: str) -> int:
    t = _skip_mods(t)
    if not isinstance(t, _btf.Pointer):
        raise ELFError(f"{where}: expected __uint (a pointer to an array), got {t!r}")
    arr = _skip_mods(t.target)
    if not isinstance(arr, _btf.Array):
        raise ELFError(f"{where}: expected __uint (a pointer to an array), got {t!r}")
    return arr.nelems


def map_spec_from_btf(name: str, struct: Any, inner_ok: bool = True
                      ) -> tuple[MapSpec, int | None]:
    """A MapSpec from a map definition struct; also the byte offset of ``values``."""
    struct = _skip_mods(struct)
    if not isinstance(struct, _btf.Struct):
        raise ELFError(f"map {name!r}: definition is not a struct ({struct!r})")
    fields: dict[Any, Any] = {}
    key = value = None
    inner = None
    values_off = None
    for m in struct.members:
        where = f"map {name!r} field {m.name!r}"
        if m.name in _UINT_FIELDS:
            fields[m.name] = _uint(m.type, where)
        elif m.name in ("key", "value"):
            t = _skip_mods(m.type)
            if not isinstance(t, _btf.Pointer):
                raise ELFError(f"{where}: expected __type (a pointer), got {t!r}")
            if m.name == "key":
                key = t.target
            else:
                value = t.target
        elif m.name == "values":
            arr = _skip_mods(m.type)
            if not isinstance(arr, _btf.Array):
                raise ELFError(f"{where}: expected __array, got {arr!r}")
            values_off = m.bit_offset // 8
            ptr = _skip_mods(arr.type)
            if not isinstance(ptr, _btf.Pointer):
                raise ELFError(f"{where}: expected an array of pointers")
            target = _skip_mods(ptr.target)
            if isinstance(target, _btf.Struct):
                if not inner_ok:
                    raise ELFError(f"{where}: maps of maps of maps are not supported")
                inner, _ = map_spec_from_btf(name + ".inner", target, inner_ok=False)
    return _make_spec(name, fields, key, value, inner), values_off


_MAP_TYPES = {int(t): t for t in MapType}
_FD_VALUES = (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS, MapType.PROG_ARRAY)


def _make_spec(name: str, fields: dict[Any, Any], key: Any, value: Any, inner: Any,
               voids_removed: bool = False) -> MapSpec:
    get = fields.get
    t = get("type")
    if t is None:
        raise ELFError(f"map {name!r} has no type")
    mtype = _MAP_TYPES.get(t)
    if mtype is None:
        raise ELFError(f"map {name!r}: unknown map type {t}")
    if (key is not None and "key_size" in fields) or (value is not None
                                                      and "value_size" in fields):
        for which, tp, size_field in (("key", key, "key_size"), ("value", value, "value_size")):
            if tp is not None and size_field in fields:
                tsize = _skip_mods(tp).size if not isinstance(_skip_mods(tp), _btf.Void) else 0
                if tsize != fields[size_field]:
                    raise ELFError(f"map {name!r}: {which} type is {tsize} bytes but "
                                   f"{size_field} says {fields[size_field]}")
    if not voids_removed:
        if key is not None and isinstance(_skip_mods(key), _btf.Void):
            key = None
        if value is not None and isinstance(_skip_mods(value), _btf.Void):
            value = None
    pinning = get("pinning", 0)
    if pinning not in (0, 1):
        raise ELFError(f"map {name!r}: unsupported pinning {pinning}")
    # The fields straight into a copy of the defaults (what new_map_spec
    # does, without its keyword dict and two updates): once per map.
    global _TEMPLATE
    if _TEMPLATE is None:
        _TEMPLATE = dict(new_map_spec().__dict__)
    d = _TEMPLATE.copy()
    d["type"] = mtype
    d["key"] = key if key is not None else get("key_size", 0)
    d["value"] = value if value is not None else get("value_size", 0)
    d["max_entries"] = get("max_entries", 0)
    d["flags"] = get("map_flags", 0)
    d["name"] = name[:15]
    d["inner"] = inner
    d["numa_node"] = get("numa_node") or None
    d["map_extra"] = get("map_extra", 0)
    d["pinning"] = PinType.BY_NAME if pinning else PinType.NONE
    spec = _new(MapSpec)
    spec.__dict__ = d
    if inner is None and (mtype == MapType.ARRAY_OF_MAPS or mtype == MapType.HASH_OF_MAPS):
        raise ELFError(f"map {name!r}: a map of maps needs __array(values, ...) describing "
                       f"its inner maps")
    if mtype in _FD_VALUES:
        # Values are fds: the BTF of the value type (if any) is not the kernel's business.
        if not isinstance(spec.value, int):
            spec.value = 4
        if spec.value == 0:
            spec.value = 4
        if not isinstance(spec.key, int) and mtype != MapType.HASH_OF_MAPS:
            spec.key = spec.key.size
    return spec


_TEMPLATE: dict[str, Any] | None = None
_new = object.__new__

_MODS = (8, 9, 10, 11, 18)   # typedef, volatile, const, restrict, type_tag


class _Words:
    """Map definitions read straight from the BTF type words (no Type objects
    but for key and value): a map definition is a struct of pointers."""

    def __init__(self, spec: Any, string_at: Any = None) -> None:
        self.spec = spec
        # Python lists: element access on them is ~10x cheaper than on numpy.
        self.w = spec._words.tolist()
        self.offs = spec._offs.tolist()
        self.n = len(self.offs)
        self.str = string_at or string_reader(spec)
        # Member names by string offset: clang writes each name once, so the
        # known field names are found with one search each instead of a
        # decode per member of every map.
        raw = bytes(spec._buf[spec._str_start:spec._str_start + spec._str_len])
        self.known: dict[int, str] = {}
        for name in _UINT_FIELDS + ("key", "value", "values"):
            at = raw.find(b"\0" + name.encode() + b"\0")
            if at >= 0:
                self.known[spec._str_base + at + 1] = name

    def rec(self, tid: int) -> tuple[int, int]:
        """(word offset, kind) of type *tid*, modifiers skipped."""
        for _ in range(32):
            if not 0 < tid <= self.n:
                raise ELFError(f"map definition refers to BTF type {tid}, out of range")
            o = self.offs[tid - 1]
            kind = (self.w[o + 1] >> 24) & 0x1F
            if kind not in _MODS:
                return o, kind
            tid = self.w[o + 2]
        raise ELFError("BTF type chain too deep")

    def target(self, tid: int) -> int:
        """The id a modifier chain ends at."""
        for _ in range(32):
            o = int(self.offs[tid - 1]) if 0 < tid <= self.n else -1
            if o < 0 or ((int(self.w[o + 1]) >> 24) & 0x1F) not in _MODS:
                return tid
            tid = int(self.w[o + 2])
        raise ELFError("BTF type chain too deep")

    def map_def(self, name: str, tid: int, inner_ok: bool = True) -> tuple[Any, ...]:
        """The definition struct *tid*: ``(fields, key type id, value type id,
        inner definition or None, byte offset of values or None)``; a key
        or value id is 0 when absent or void."""
        o, kind = self.rec(tid)
        if kind != 4:
            raise ELFError(f"map {name!r}: definition is not a struct")
        w = self.w
        vlen = int(w[o + 1]) & 0xFFFF
        kflag = int(w[o + 1]) >> 31
        fields: dict[Any, Any] = {}
        key = value = 0
        inner = None
        values_off = None
        for j in range(vlen):
            m_name_off, m_type, m_off = w[o + 3 + 3 * j:o + 6 + 3 * j]
            mname = self.known.get(m_name_off)
            if mname is None:
                mname = self.str(m_name_off)
            if mname in _UINT_FIELDS:
                po, pk = self.rec(m_type)
                if pk != 2:
                    raise ELFError(f"map {name!r} field {mname!r}: expected __uint "
                                   f"(a pointer to an array)")
                ao, ak = self.rec(int(w[po + 2]))
                if ak != 3:
                    raise ELFError(f"map {name!r} field {mname!r}: expected __uint "
                                   f"(a pointer to an array)")
                fields[mname] = int(w[ao + 5])
            elif mname in ("key", "value"):
                po, pk = self.rec(m_type)
                if pk != 2:
                    raise ELFError(f"map {name!r} field {mname!r}: expected __type (a pointer)")
                tid = w[po + 2]
                # A pointer to void (modifiers skipped) says nothing: no type.
                t = tid if self.target(tid) else 0
                if mname == "key":
                    key = t
                else:
                    value = t
            elif mname == "values":
                ao, ak = self.rec(m_type)
                if ak != 3:
                    raise ELFError(f"map {name!r} field {mname!r}: expected __array")
                values_off = (m_off & 0xFFFFFF if kflag else m_off) // 8
                po, pk = self.rec(int(w[ao + 3]))
                if pk != 2:
                    raise ELFError(f"map {name!r} field {mname!r}: expected an array of pointers")
                tgt = self.target(int(w[po + 2]))
                _, tk = self.rec(tgt) if tgt else (0, 0)
                if tk == 4:
                    if not inner_ok:
                        raise ELFError(f"map {name!r} field {mname!r}: maps of maps of maps "
                                       f"are not supported")
                    inner = self.map_def(name + ".inner", tgt, inner_ok=False)
        return fields, key, value, inner, values_off


def btf_map_specs(obj: Any) -> tuple[dict[str, MapSpec], dict[tuple[int, int], str]]:
    """The maps of ``.maps``: ``({name: MapSpec}, {(shndx, offset): name})``."""
    specs: dict[str, MapSpec] = {}
    syms: dict[tuple[int, int], str] = {}
    shndx = obj.maps_shndx
    if shndx < 0:
        return specs, syms
    if obj.btf is None:
        raise ELFError("section .maps needs BTF (compile with -g)")
    sec_id = obj.datasec_id(".maps")
    if not sec_id:
        raise ELFError("section .maps has no DATASEC in the BTF")
    offsets = obj.symbols_in(".maps")
    values_at: dict[str, tuple[int, int]] = {}
    if _map_defs is None:
        words = _Words(obj.btf, obj.strings)
        defs = _python_defs(words, sec_id, offsets)
    else:
        defs = _map_defs(obj.btf, sec_id, offsets)
    type_by_id = obj.btf.type_by_id
    for name, off, vsize, d in defs:
        spec, values_off = _spec_of(name, d, type_by_id)
        specs[name] = spec
        syms[(shndx, off)] = name
        if values_off is not None:
            values_at[name] = (off + values_off, vsize - values_off)
    _initial_values(obj, shndx, specs, values_at)
    return specs, syms


def _spec_of(name: str, d: tuple[Any, ...], type_by_id: Any) -> tuple[MapSpec, int | None]:
    """A MapSpec from a raw definition ``(fields, key id, value id, inner, values offset)``."""
    fields, key, value, inner, values_off = d
    inner_spec = _spec_of(name + ".inner", inner, type_by_id)[0] if inner is not None else None
    return (_make_spec(name, fields, type_by_id(key) if key else None,
                       type_by_id(value) if value else None, inner_spec, voids_removed=True),
            values_off)


def _python_defs(words: _Words, sec_id: int, offsets: dict[str, int]) -> list[Any]:
    """The Python twin of :func:`fastbpf._elfscan.map_defs`."""
    out = []
    w = words.w
    o = words.offs[sec_id - 1]
    for j in range(w[o + 1] & 0xFFFF):
        vid, _voff, vsize = w[o + 3 + 3 * j:o + 6 + 3 * j]
        vo, vk = words.rec(vid)
        if vk != 14:
            raise ELFError(f".maps DATASEC holds type {vid}, not a variable")
        name = words.str(w[vo])
        off = offsets.get(name)
        if off is None:
            raise ELFError(f"map {name!r} has no symbol in .maps")
        out.append((name, off, vsize, words.map_def(name, int(w[vo + 2]))))
    return out


def _initial_values(obj: Any, shndx: int, specs: dict[Any, Any], values_at: dict[Any, Any]
                    ) -> None:
    rels = obj.rels.get(shndx)
    if rels is None or not len(rels):
        return
    elf = obj.elf
    for r in range(len(rels)):
        off = int(rels["offset"][r])
        sym = int(rels["info"][r] >> 32)
        for name, (start, size) in values_at.items():
            if start <= off < start + size:
                break
        else:
            raise ELFError(f".maps relocation at {off} is not in a map's values")
        if (off - start) % 8:
            raise ELFError(f"map {name!r}: misaligned initial value at {off}")
        slot = (off - start) // 8
        target = elf.symbol_name(sym)
        stype = int(obj.sym_type[sym])
        if not target or stype == STT.SECTION:
            raise ELFError(f"map {name!r}: initial value {slot} refers to no named symbol")
        spec = specs[name]
        if spec.type == MapType.PROG_ARRAY and stype != STT.FUNC:
            raise ELFError(f"map {name!r}: initial value {slot} ({target!r}) is not a program")
        if spec.contents is None:
            spec.contents = []
        spec.contents.append((slot, target))


def legacy_map_specs(obj: Any) -> tuple[dict[str, MapSpec], dict[tuple[int, int], str]]:
    """Maps of the legacy ``maps`` section (``struct bpf_map_def`` each)."""
    specs: dict[str, MapSpec] = {}
    syms: dict[tuple[int, int], str] = {}
    shndx = obj.legacy_maps_shndx
    if shndx < 0:
        return specs, syms
    elf = obj.elf
    data = elf.section_bytes(shndx)
    table = sorted((v, n) for n, v in obj.symbols_in("maps").items())
    if not table:
        return specs, syms
    size = len(data) // len(table)
    if size < 20 or len(data) % len(table):
        raise ELFError(f"legacy maps section of {len(data)} bytes does not hold "
                       f"{len(table)} struct bpf_map_def")
    dt = np.dtype(("<" if obj.byte_order == "little" else ">") + "u4")
    for off, name in table:
        if off % size or off + 20 > len(data):
            raise ELFError(f"legacy map {name!r} at {off} is not a whole bpf_map_def")
        t, ks, vs, me, fl = (int(x) for x in np.frombuffer(data, dt, 5, off))
        try:
            mtype = MapType(t)
        except ValueError:
            raise ELFError(f"legacy map {name!r}: unknown map type {t}") from None
        specs[name] = MapSpec(type=mtype, key=ks, value=vs, max_entries=me, flags=fl,
                              name=name[:15])
        syms[(shndx, off)] = name
    return specs, syms
