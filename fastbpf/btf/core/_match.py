"""CO-RE access specs: parsing, matching against a candidate, computing values.

A faithful reading of libbpf's rules (``relo_core.c``): the same accessors,
the same compatibility relations, the same values and the same failure
cases, so that every relocation resolves to what libbpf would compute.
Errors libbpf reports as ``-EINVAL`` for a relocation become
:class:`ReloFailure` here; the caller adds the relocation's context.
"""

from __future__ import annotations

import re
import weakref
from typing import Any

from ...errors import BTFError
from ..ext import CoreReloKind as K
from ..spec import Spec
from ..types import (
    VOID, Array, Composite, Enum, Int, IntEncoding, Kind, Pointer, Type, resolve_size,
    skip_qualifiers,
)

#: libbpf's BPF_CORE_SPEC_MAX_LEN: the longest access string.
SPEC_MAX_LEN = 64
_MASK64 = (1 << 64) - 1
_ACCESS_RE = re.compile(r"\A[0-9]+(?::[0-9]+)*\Z")

FIELD_KINDS = frozenset((K.FIELD_BYTE_OFFSET, K.FIELD_BYTE_SIZE, K.FIELD_EXISTS,
                         K.FIELD_SIGNED, K.FIELD_LSHIFT_U64, K.FIELD_RSHIFT_U64))
TYPE_KINDS = frozenset((K.TYPE_ID_LOCAL, K.TYPE_ID_TARGET, K.TYPE_EXISTS, K.TYPE_MATCHES,
                        K.TYPE_SIZE))
ENUMVAL_KINDS = frozenset((K.ENUMVAL_EXISTS, K.ENUMVAL_VALUE))

# libbpf's short names for the kinds, used in messages and paths.
KIND_TEXT: dict[int, str] = {
    K.FIELD_BYTE_OFFSET: "byte_off", K.FIELD_BYTE_SIZE: "byte_sz",
    K.FIELD_EXISTS: "field_exists", K.FIELD_SIGNED: "signed",
    K.FIELD_LSHIFT_U64: "lshift_u64", K.FIELD_RSHIFT_U64: "rshift_u64",
    K.TYPE_ID_LOCAL: "local_type_id", K.TYPE_ID_TARGET: "target_type_id",
    K.TYPE_EXISTS: "type_exists", K.TYPE_MATCHES: "type_matches", K.TYPE_SIZE: "type_size",
    K.ENUMVAL_EXISTS: "enumval_exists", K.ENUMVAL_VALUE: "enumval_value",
}

_MAX_DEPTH = 32  # libbpf's recursion limit for compat/match checks


class ReloFailure(Exception):
    """A relocation that libbpf would refuse (it aborts the load)."""


# ------------------------------------------------------------------ names

def essential_name(name: str) -> str:
    """*name* without its flavor: ``task_struct___v2`` -> ``task_struct``.

    As libbpf: the last ``X___Y`` separator (X and Y not underscores),
    searched from five characters before the end, cuts the name after X.
    """
    n = len(name)
    for i in range(n - 5, -1, -1):
        if (name[i] != "_" and name[i + 1] == "_" and name[i + 2] == "_"
                and name[i + 3] == "_" and name[i + 4] != "_"):
            return name[:i + 1]
    return name


def kinds_compatible(a: Type, b: Type) -> bool:
    """libbpf's btf_kind_core_compat: same kind, or enum vs enum64."""
    ka, kb = a.kind, b.kind
    return ka == kb or (ka in (Kind.ENUM, Kind.ENUM64) and kb in (Kind.ENUM, Kind.ENUM64))


def _skip(t: Type) -> Any:  # Any: callers read the attributes of the kind they checked
    return skip_qualifiers(t)


def _size(t: Type) -> int:
    try:
        return resolve_size(t)
    except BTFError as e:
        raise ReloFailure(f"cannot size {t._describe()}: {e}") from None


def _is_enum(t: Type) -> bool:
    return isinstance(t, Enum)  # Enum64 derives from Enum


# ------------------------------------------------------------------ specs

class Accessor:
    """One high-level step of an access: a named member or an array index.

    ``type`` is the (qualifier-free) type that holds the member, or the
    array's element type; ``name`` is None for an index.
    """

    __slots__ = ("type", "idx", "name")

    def __init__(self, type: Type, idx: int, name: str | None) -> None:
        self.type: Any = type  # read by kind, like _skip's result
        self.idx = idx
        self.name = name


class CoreSpec:
    """A parsed (local) or matched (target) access: libbpf's bpf_core_spec."""

    __slots__ = ("btf", "root", "kind", "raw", "accs", "bit_offset")

    def __init__(self, btf: Spec, root: Type, kind: int):
        self.btf = btf
        self.root = root
        self.kind = kind
        self.raw: list[int] = []
        self.accs: list[Accessor] = []
        self.bit_offset = 0

    def path(self) -> str:
        """The access as C-like text: ``struct task_struct.comm[3]``."""
        root = self.root
        base = f"{_kind_word(root)} {root.name or '<anon>'}"
        if self.kind in ENUMVAL_KINDS:
            return f"{base}::{self.accs[0].name}" if self.accs else base
        if self.kind not in FIELD_KINDS:
            return base
        parts = [base]
        for i, a in enumerate(self.accs):
            if a.name:
                parts.append("." + a.name)
            elif i > 0 or a.idx > 0:
                parts.append(f"[{a.idx}]")
        return "".join(parts)


_KIND_WORDS = {k: k.name.lower() for k in Kind}
_KIND_WORDS[Kind.UNKN] = "void"


def _kind_word(t: Type) -> str:
    return _KIND_WORDS[t.kind]


def _is_flex(acc: Accessor | None, arr: Array) -> bool:
    """A zero-length array that is the last member of the enclosing struct."""
    if acc is None or not acc.name or arr.nelems > 0:
        return False
    holder = acc.type
    return isinstance(holder, Composite) and acc.idx == len(holder.members) - 1


def parse_spec(btf: Spec, root_id: int, access: str, kind: int) -> CoreSpec:
    """Parse the access string of a relocation against local BTF.

    Raises :class:`BTFError` for anything malformed (libbpf: "parsing ...
    failed"), since it means the object is broken.
    """
    root = btf.type_by_id(root_id)
    spec = CoreSpec(btf, root, kind)
    if kind in TYPE_KINDS:
        if access != "0":
            raise BTFError(f"type-based relocation with access string {access!r}, expected '0'")
        return spec
    if not isinstance(access, str) or not _ACCESS_RE.match(access):
        raise BTFError(f"malformed CO-RE access string {access!r}")
    raw = [int(x) for x in access.split(":")]
    if len(raw) > SPEC_MAX_LEN:
        raise BTFError(f"CO-RE access string {access!r} is longer than {SPEC_MAX_LEN} steps")
    spec.raw = raw
    t = _skip(root)
    idx = raw[0]
    acc = Accessor(t, idx, None)
    spec.accs.append(acc)
    if kind in ENUMVAL_KINDS:
        if not _is_enum(t) or len(raw) > 1 or idx >= len(t.values):
            raise BTFError(f"enum value relocation {access!r} does not name a value of "
                           f"{t._describe()}")
        acc.name = t.values[idx].name
        return spec
    if kind not in FIELD_KINDS:
        raise BTFError(f"unknown CO-RE relocation kind {int(kind)}")
    spec.bit_offset = idx * _local_size(t) * 8
    for i in range(1, len(raw)):
        t = _skip(t)
        idx = raw[i]
        if isinstance(t, Composite):
            members = t.members
            if idx >= len(members):
                raise BTFError(f"CO-RE access {access!r}: {t._describe()} has no member #{idx}")
            m = members[idx]
            spec.bit_offset += m.bit_offset
            if m.name:
                spec.accs.append(Accessor(t, idx, m.name))
            t = m.type
        elif isinstance(t, Array):
            elem = _skip(t.type)
            if not _is_flex(spec.accs[-1], t) and idx >= t.nelems:
                raise BTFError(f"CO-RE access {access!r}: index {idx} is outside "
                               f"an array of {t.nelems}")
            spec.accs.append(Accessor(elem, idx, None))
            spec.bit_offset += idx * _local_size(elem) * 8
            t = elem
        else:
            raise BTFError(f"CO-RE access {access!r} (step {i}) goes into "
                           f"{t._describe()}, which has no members or elements")
    return spec


def _local_size(t: Type) -> int:
    return resolve_size(t)  # BTFError: the local BTF is what is broken


# ------------------------------------------------------------------ compat

def types_are_compat(lt: Any, tt: Any, level: int = _MAX_DEPTH) -> bool:
    """libbpf's bpf_core_types_are_compat (type-based relocations)."""
    if not kinds_compatible(lt, tt):
        return False
    for _ in range(_MAX_DEPTH):
        lt, tt = _skip(lt), _skip(tt)
        if not kinds_compatible(lt, tt):
            return False
        k = lt.kind
        if k in (Kind.UNKN, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.FWD, Kind.ENUM64):
            return True
        if k == Kind.INT:
            return lt.bit_offset == 0 and tt.bit_offset == 0  # type: ignore[no-any-return]
        if k == Kind.PTR:
            lt, tt = lt.target, tt.target
        elif k == Kind.ARRAY:
            lt, tt = lt.type, tt.type
        elif k == Kind.FUNC_PROTO:
            lp, tp = lt.params, tt.params
            if len(lp) != len(tp):
                return False
            for a, b in zip(lp, tp):
                if level <= 0:
                    raise ReloFailure("types nest too deeply for a compatibility check")
                if not types_are_compat(_skip(a.type), _skip(b.type), level - 1):
                    return False
            lt, tt = lt.return_type, tt.return_type
        else:
            return False
    raise ReloFailure("types nest too deeply for a compatibility check")


def fields_are_compat(lt: Any, tt: Any) -> bool:
    """libbpf's bpf_core_fields_are_compat (a member found by name)."""
    for _ in range(_MAX_DEPTH):
        lt, tt = _skip(lt), _skip(tt)
        if isinstance(lt, Composite) and isinstance(tt, Composite):
            return True
        if not kinds_compatible(lt, tt):
            return False
        k = lt.kind
        if k in (Kind.PTR, Kind.FLOAT):
            return True
        if k in (Kind.FWD, Kind.ENUM, Kind.ENUM64):
            a, b = essential_name(lt.name), essential_name(tt.name)
            return not a or not b or a == b
        if k == Kind.INT:
            return lt.bit_offset == 0 and tt.bit_offset == 0  # type: ignore[no-any-return]
        if k == Kind.ARRAY:
            lt, tt = lt.type, tt.type
            continue
        return False
    raise ReloFailure("types nest too deeply for a compatibility check")


def _names_match(a: str, b: str) -> bool:
    if not b:
        return not a
    return essential_name(a) == essential_name(b)


def _enums_match(lt: Enum, tt: Enum) -> bool:
    if lt.size != tt.size:
        return False
    lv, tv = lt.values, tt.values
    if len(lv) > len(tv):
        return False
    return all(any(_names_match(v.name, w.name) for w in tv) for v in lv)


def types_match(lt: Any, tt: Any, behind_ptr: bool = False, level: int = _MAX_DEPTH) -> bool:
    """libbpf's bpf_core_types_match (TYPE_MATCHES relocations)."""
    if level <= 0:
        raise ReloFailure("types nest too deeply for a match check")
    for _ in range(_MAX_DEPTH):
        lt, tt = _skip(lt), _skip(tt)
        if not _names_match(lt.name, tt.name):
            return False
        lk, tk = lt.kind, tt.kind
        if lk == Kind.UNKN:
            return lk == tk  # type: ignore[no-any-return]
        if lk == Kind.FWD:
            if behind_ptr:
                if lk == tk:
                    return lt.union == tt.union  # type: ignore[no-any-return]
                return (tk == Kind.STRUCT and not lt.union) or (tk == Kind.UNION and lt.union)
            return lk == tk and lt.union == tt.union  # type: ignore[no-any-return]
        if lk in (Kind.ENUM, Kind.ENUM64):
            return _is_enum(tt) and _enums_match(lt, tt)
        if lk in (Kind.STRUCT, Kind.UNION):
            if behind_ptr:
                if lk == tk:
                    return True
                return tk == Kind.FWD and (lk == Kind.UNION) == tt.union  # type: ignore[no-any-return]
            if lk != tk:
                return False
            lm, tm = lt.members, tt.members
            if len(lm) > len(tm):
                return False
            for m in lm:
                for n in tm:
                    if _names_match(m.name, n.name) and types_match(m.type, n.type, behind_ptr,
                                                                    level - 1):
                        break
                else:
                    return False
            return True
        if lk == Kind.INT:
            signed = IntEncoding.SIGNED
            return (lk == tk and lt.size == tt.size
                    and bool(lt.encoding & signed) == bool(tt.encoding & signed))
        if lk == Kind.PTR:
            if lk != tk:
                return False
            behind_ptr = True
            lt, tt = lt.target, tt.target
        elif lk == Kind.ARRAY:
            if lk != tk or lt.nelems != tt.nelems:
                return False
            lt, tt = lt.type, tt.type
        elif lk == Kind.FUNC_PROTO:
            if lk != tk or len(lt.params) != len(tt.params):
                return False
            for a, b in zip(lt.params, tt.params):
                if not types_match(a.type, b.type, behind_ptr, level - 1):
                    return False
            lt, tt = lt.return_type, tt.return_type
        else:
            return False
    raise ReloFailure("types nest too deeply for a match check")


# ------------------------------------------------------------------ matching

def _member_index(t: Composite) -> tuple[dict[Any, Any], list[Any]]:
    """(first index of each member name, indexes of anonymous members) of
    a target composite, cached: vmlinux structs have hundreds of members
    and each relocation looks one up."""
    idx = _member_cache.get(t)
    if idx is None:
        names: dict[str, int] = {}
        anon: list[int] = []
        for i, m in enumerate(t.members):
            if m.name:
                names.setdefault(m.name, i)
            else:
                anon.append(i)
        idx = (names, anon)
        _member_cache[t] = idx
    return idx


_member_cache: "weakref.WeakKeyDictionary[Type, tuple[Any, ...]]" = weakref.WeakKeyDictionary()


def _match_member(local_acc: Accessor, tt: Type, spec: CoreSpec) -> Any:
    """Find the local accessor's member by name in target type *tt*,
    descending into anonymous members; append the accessor to *spec* and
    return the member's type, None, or _NO_MATCH (libbpf's
    bpf_core_match_member, which scans the members in order: only anonymous
    members before the first one with the name can change the outcome)."""
    tt = _skip(tt)
    if not isinstance(tt, Composite):
        return None
    local_m = local_acc.type.members[local_acc.idx]
    name = local_m.name
    members = tt.members
    if not members:
        return None
    if len(spec.raw) == SPEC_MAX_LEN:
        raise ReloFailure("struct/union/array nesting too deep")
    names, anon = _member_index(tt)
    hit = names.get(name)
    for i in anon:
        if hit is not None and i > hit:
            break
        m = members[i]
        spec.bit_offset += m.bit_offset
        spec.raw.append(i)
        found = _match_member(local_acc, m.type, spec)
        if found is not None and found is not _NO_MATCH:
            return found
        spec.bit_offset -= m.bit_offset
        spec.raw.pop()
        if len(spec.raw) == SPEC_MAX_LEN:
            raise ReloFailure("struct/union/array nesting too deep")
    if hit is None:
        return None
    m = members[hit]
    spec.bit_offset += m.bit_offset
    spec.raw.append(hit)
    if fields_are_compat(local_m.type, m.type):
        spec.accs.append(Accessor(tt, hit, m.name))
        return m.type
    # libbpf returns here without undoing this member's offset and index;
    # an enclosing anonymous member's search then goes on from that state.
    return _NO_MATCH


_NO_MATCH = object()  # found by name but incompatible: stop searching


def spec_match(local: CoreSpec, btf: Spec, cand: Type) -> CoreSpec | None:
    """Match *local* against candidate root *cand* in *btf*: the target
    spec, or None if the candidate does not fit (bpf_core_spec_match)."""
    targ = CoreSpec(btf, cand, local.kind)
    kind = local.kind
    if kind in TYPE_KINDS:
        if kind == K.TYPE_MATCHES:
            ok = types_match(local.root, cand)
        else:
            ok = types_are_compat(local.root, cand)
        return targ if ok else None
    lacc = local.accs[0]
    if kind in ENUMVAL_KINDS:
        tt = _skip(cand)
        if not _is_enum(tt):
            return None
        want = essential_name(lacc.name)  # type: ignore[arg-type]  # enum accessors are named
        for i, v in enumerate(tt.values):
            if essential_name(v.name) == want:
                targ.accs.append(Accessor(tt, i, v.name))
                targ.raw.append(i)
                return targ
        return None
    tt = cand
    for i, lacc in enumerate(local.accs):
        tt = _skip(tt)
        if lacc.name:
            found = _match_member(lacc, tt, targ)
            if found is None or found is _NO_MATCH:
                return None
            tt = found
        else:
            if i > 0:
                if not isinstance(tt, Array):
                    return None
                if not _is_flex(targ.accs[-1], tt) and lacc.idx >= tt.nelems:
                    return None
                tt = _skip(tt.type)
            if len(targ.raw) == SPEC_MAX_LEN:
                raise ReloFailure("struct/union/array nesting too deep")
            targ.accs.append(Accessor(tt, lacc.idx, None))
            targ.raw.append(lacc.idx)
            targ.bit_offset += lacc.idx * _size(tt) * 8
    return targ


# ------------------------------------------------------------------ values

class Result:
    """libbpf's bpf_core_relo_res: what one candidate (or none) gives."""

    __slots__ = ("orig_val", "new_val", "poison", "validate", "fail_memsz_adjust",
                 "orig_sz", "new_sz", "orig_type", "new_type")

    def __init__(self) -> None:
        self.orig_val = self.new_val = 0
        self.poison = False
        self.validate = True
        self.fail_memsz_adjust = False
        self.orig_sz = self.new_sz = 0
        self.orig_type: Type = VOID
        self.new_type: Type = VOID


class _Poison(Exception):
    """libbpf's -EUCLEAN: the instruction is to be poisoned."""


def _field_value(kind: int, spec: CoreSpec | None, big_endian: bool, local: bool
                 ) -> tuple[int, int, Type, bool]:
    """(value, mem size, field type, validate) for a field relocation."""
    if kind == K.FIELD_EXISTS:
        return (1 if spec is not None else 0), 0, VOID, True
    if spec is None:
        raise _Poison()
    acc = spec.accs[-1]
    if not acc.name:
        if kind == K.FIELD_BYTE_OFFSET:
            return spec.bit_offset // 8, _size(acc.type), acc.type, True
        if kind == K.FIELD_BYTE_SIZE:
            return _size(acc.type), 0, VOID, True
        raise ReloFailure(f"relocation {KIND_TEXT[kind]} can't be applied to an array access")
    holder = acc.type
    m = holder.members[acc.idx]
    mt = _skip(m.type)
    bit_off = spec.bit_offset
    bit_sz = m.bitfield_size
    bitfield = bit_sz > 0
    if bitfield:
        byte_sz = _size(mt)
        if byte_sz <= 0:
            raise ReloFailure(f"bitfield {m.name!r} has a type of size {byte_sz}")
        byte_off = bit_off // 8 // byte_sz * byte_sz
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise ReloFailure(f"bitfield {m.name!r} can't be read with a 64-bit load")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = _size(mt)
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8
    # For bitfields the compiler may legitimately disagree with these
    # numbers, so libbpf checks the instruction only for non-bitfields.
    validate = not bitfield
    mem_sz, mem_type = 0, VOID
    if kind == K.FIELD_BYTE_OFFSET:
        val = byte_off
        if not bitfield:
            mem_sz, mem_type = byte_sz, mt
    elif kind == K.FIELD_BYTE_SIZE:
        val = byte_sz
    elif kind == K.FIELD_SIGNED:
        val = int((_is_enum(mt) and mt.signed)
                  or (isinstance(mt, Int) and bool(mt.encoding & IntEncoding.SIGNED)))
        validate = True
    elif kind == K.FIELD_LSHIFT_U64:
        if big_endian:
            val = (8 - byte_sz) * 8 + (bit_off - byte_off * 8)
        else:
            val = 64 - (bit_off + bit_sz - byte_off * 8)
    elif kind == K.FIELD_RSHIFT_U64:
        val = 64 - bit_sz
        validate = True
    else:  # pragma: no cover - kinds are checked by parse_spec
        raise ReloFailure(f"unsupported relocation kind {kind}")
    return val & _MASK64, mem_sz, mem_type, validate


def _type_value(kind: int, spec: CoreSpec | None) -> int:
    if spec is None:
        return 0  # type-based relocations give 0 when the type is missing
    if kind == K.TYPE_ID_TARGET:
        return spec.btf.type_id(spec.root)
    if kind in (K.TYPE_EXISTS, K.TYPE_MATCHES):
        return 1
    if kind == K.TYPE_SIZE:
        return _size(spec.root)
    raise ReloFailure(f"unsupported relocation kind {kind}")  # pragma: no cover


def _enum_value(kind: int, spec: CoreSpec | None) -> int:
    if kind == K.ENUMVAL_EXISTS:
        return 1 if spec is not None else 0
    if spec is None:
        raise _Poison()
    acc = spec.accs[0]
    v: int = acc.type.values[acc.idx].value
    if acc.type.kind == Kind.ENUM:
        # libbpf reads the 32-bit value as signed (struct btf_enum.val is
        # __s32) and widens it: 0xffffffff becomes 2**64 - 1.
        v &= 0xFFFFFFFF
        v = (v ^ 0x80000000) - 0x80000000
    return v & _MASK64


def calc_relo(kind: int, local: CoreSpec, targ: CoreSpec | None, big_endian: bool) -> Result:
    """libbpf's bpf_core_calc_relo for one candidate (or None)."""
    res = Result()
    try:
        if kind in FIELD_KINDS:
            res.orig_val, res.orig_sz, res.orig_type, res.validate = _field_value(
                kind, local, big_endian, True)
            res.new_val, res.new_sz, res.new_type, _ = _field_value(kind, targ, big_endian, False)
            if res.orig_sz != res.new_sz:
                ot, nt = res.orig_type, res.new_type
                # Loads may change size only for pointers and unsigned
                # integers, whose zero extension keeps the value.
                if not ((isinstance(ot, Pointer) and isinstance(nt, Pointer))
                        or (isinstance(ot, Int) and isinstance(nt, Int)
                            and ot.encoding != IntEncoding.SIGNED
                            and nt.encoding != IntEncoding.SIGNED)):
                    res.fail_memsz_adjust = True
        elif kind in TYPE_KINDS:
            res.orig_val = _type_value(kind, local)
            res.new_val = _type_value(kind, targ)
            res.validate = kind != K.TYPE_ID_TARGET
        elif kind in ENUMVAL_KINDS:
            res.orig_val = _enum_value(kind, local)
            res.new_val = _enum_value(kind, targ)
        else:
            raise ReloFailure(f"unrecognized CO-RE relocation kind {int(kind)}")
    except _Poison:
        res.poison = True
    return res


__all__ = ["essential_name", "parse_spec", "spec_match", "calc_relo", "CoreSpec", "Result",
           "types_are_compat", "types_match", "fields_are_compat", "kinds_compatible"]
