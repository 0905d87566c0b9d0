"""Encoding a :class:`~.spec.Spec` back into raw BTF (``Spec.encode``).

The inverse of the lazy decoder in :mod:`.spec`: type objects become
records of 4-byte words in the chosen byte order, names go into a
deduplicating string table, and a header goes in front.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np

from ..errors import BTFError
from .types import (
    Array, Composite, Datasec, DeclTag, Enum, Float, Func, FuncProto, Fwd, Int, Kind, Pointer,
    Qualifier, Type, Var,
)
from .wire import HEADER_SIZE, MAGIC, MAX_VLEN, order_char, resolve_byte_order

if TYPE_CHECKING:  # pragma: no cover
    from .spec import Spec

__all__ = ["encode", "StringTable", "check_vlen"]


def encode(spec: Spec, byte_order: str | None = None) -> bytes:
    """Encode *spec* as raw BTF (only the split part for a split spec).

    *byte_order* is ``"little"``, ``"big"`` or ``"native"``; the default
    is the order the spec was read in. Every type referred to must be in
    the spec (or its base): otherwise :class:`BTFError`.
    """
    order = resolve_byte_order(byte_order, spec.byte_order)
    strtab = StringTable(spec._str_base, spec.base is None)
    words: list[int] = []
    put = words.extend
    sid = strtab.add
    tid = spec.type_id
    for t in spec:
        kind = t.kind
        name = sid(t.name)
        if isinstance(t, Int):
            put((name, Kind.INT << 24, t.size,
                 (int(t.encoding) << 24) | (t.bit_offset << 16) | t.bits))
        elif isinstance(t, Pointer):
            put((name, Kind.PTR << 24, tid(t.target)))
        elif isinstance(t, Array):
            put((name, Kind.ARRAY << 24, 0, tid(t.type), tid(t.index_type), t.nelems))
        elif isinstance(t, Composite):
            members = t.members
            check_vlen(t, len(members))
            kflag = any(m.bitfield_size for m in members)
            put((name, (kflag << 31) | (kind << 24) | len(members), t.size))
            for m in members:
                if kflag:
                    if m.bit_offset >= 1 << 24 or m.bitfield_size >= 256:
                        raise BTFError(f"member {m.name!r} of {t!r}: bit offset or "
                                       "bitfield size too large to encode")
                    off = (m.bitfield_size << 24) | m.bit_offset
                else:
                    off = m.bit_offset
                put((sid(m.name), tid(m.type), off))
        elif isinstance(t, Enum):
            values = t.values
            check_vlen(t, len(values))
            put((name, (int(t.signed) << 31) | (kind << 24) | len(values), t.size))
            for v in values:
                if kind == Kind.ENUM64:
                    u = v.value & 0xFFFFFFFFFFFFFFFF
                    put((sid(v.name), u & 0xFFFFFFFF, u >> 32))
                else:
                    put((sid(v.name), v.value & 0xFFFFFFFF))
        elif isinstance(t, Fwd):
            put((name, (int(t.union) << 31) | (Kind.FWD << 24), 0))
        elif isinstance(t, Qualifier):
            put((name, kind << 24, tid(t.type)))
        elif isinstance(t, Func):
            put((name, (Kind.FUNC << 24) | int(t.linkage), tid(t.type)))
        elif isinstance(t, FuncProto):
            params = t.params
            check_vlen(t, len(params))
            put((name, (Kind.FUNC_PROTO << 24) | len(params), tid(t.return_type)))
            for p in params:
                put((sid(p.name), tid(p.type)))
        elif isinstance(t, Var):
            put((name, Kind.VAR << 24, tid(t.type), int(t.linkage)))
        elif isinstance(t, Datasec):
            vs = t.vars
            check_vlen(t, len(vs))
            put((name, (Kind.DATASEC << 24) | len(vs), t.size))
            for v in vs:
                put((tid(v.type), v.offset, v.size))
        elif isinstance(t, Float):
            put((name, Kind.FLOAT << 24, t.size))
        elif isinstance(t, DeclTag):
            put((name, Kind.DECL_TAG << 24, tid(t.type), t.component_idx & 0xFFFFFFFF))
        else:  # pragma: no cover
            raise BTFError(f"cannot encode {t!r}")
    try:
        type_bytes = np.array(words, dtype=np.uint32).astype(order_char(order) + "u4").tobytes()
    except OverflowError as e:
        raise BTFError(f"a BTF field does not fit in 32 bits: {e}") from None
    str_bytes = strtab.bytes()
    c = order_char(order)
    header = struct.pack(c + "HBBIIIII", MAGIC, 1, 0, HEADER_SIZE, 0, len(type_bytes),
                         len(type_bytes), len(str_bytes))
    return header + type_bytes + str_bytes


def check_vlen(t: Type, n: int) -> None:
    if n > MAX_VLEN:
        raise BTFError(f"{t!r} has {n} items; BTF allows at most {MAX_VLEN}")


class StringTable:
    """Deduplicating string table builder for :func:`encode`."""

    def __init__(self, base_len: int, leading_empty: bool):
        self._base = base_len
        self._parts: list[bytes] = []
        self._index: dict[str, int] = {}
        self._len = 0
        if leading_empty:
            self._index[""] = self._append(b"")

    def _append(self, b: bytes) -> int:
        off = self._base + self._len
        self._parts.append(b + b"\0")
        self._len += len(b) + 1
        return off

    def add(self, s: str) -> int:
        off = self._index.get(s)
        if off is None:
            if not s and self._base:
                # A split spec names anonymous types with the base's
                # leading empty string, as the kernel expects.
                off = 0
            else:
                if not isinstance(s, str):
                    raise BTFError(f"BTF names must be str, not {type(s).__name__}")
                off = self._append(s.encode("utf-8", "surrogateescape"))
            self._index[s] = off
        return off

    def bytes(self) -> bytes:
        return b"".join(self._parts)
