"""Rendering values as plain Python data, following their BTF type.

The output is JSON-ready, in the spirit of ``bpftool map dump``: structs and
unions become dicts, arrays lists, integers ints, floats floats, ``_Bool``
bools, arrays of plain ``char`` strings (up to the first NUL), enums the
name of the matching enumerator (else the int). Bitfields are extracted and
sign-extended as C would. Anonymous struct/union members are flattened into
the parent dict, as in :func:`fastbpf.btf.to_dtype`.

The formatter works on the value's bytes, so a bitfield or an int128 that no
numpy dtype describes still comes out right.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from ..errors import BTFError
from .dtype import bitfield_of, spec_order
from .wire import NATIVE_ORDER
from .types import (
    Array, Composite, Datasec, Enum, Float, Int, Pointer, Type, Void, skip_qualifiers,
)

__all__ = ["format"]

_MAX_NESTING = 64
_FLOATS = {2: "e", 4: "f", 8: "d"}


def _numpy_order(dt: np.dtype) -> str:
    # Numeric numpy data carries its own byte order; "=" and "|" are native.
    if dt.byteorder == "<":
        return "little"
    if dt.byteorder == ">":
        return "big"
    return NATIVE_ORDER


def _value_bytes(value: Any, size: int) -> tuple[bytes, str | None]:
    """The bytes of *value* and, for numpy scalars, their byte order."""
    order = None
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    elif isinstance(value, np.ndarray):
        data = value.tobytes()
        if value.dtype.fields is None and value.dtype.kind != "V":
            order = _numpy_order(value.dtype)
    elif isinstance(value, np.generic):
        data = value.tobytes()
        if not isinstance(value, np.void):
            order = _numpy_order(value.dtype)
    else:
        raise TypeError("value must be bytes, a numpy record, array or scalar, "
                        f"not {type(value).__name__}")
    if len(data) != size:
        raise ValueError(f"value has {len(data)} bytes, the type has {size}")
    return data, order


def format(value: Any, t: Type, *, byte_order: str | None = None) -> Any:
    """*value* (bytes, an ``np.void`` record, a 0-d structured array or a
    numpy scalar) rendered as plain Python data following type *t*.

    *byte_order* defaults to the byte order of *t*'s spec (native for types
    built by hand); numeric numpy scalars and arrays use their own, and
    structured records the spec's (as :func:`to_dtype` builds them).
    A 1-d array whose items each have the type's size is formatted item by
    item into a list.
    """
    size = t.size
    if isinstance(skip_qualifiers(t, vars=True), Datasec):
        # clang leaves DATASEC sizes 0 in object files: take the extent of
        # its variables exactly as to_dtype does, so the two always agree
        # (also through a variable or typedef naming the section, which
        # only malformed BTF has, as the fuzzer found).
        from .dtype import to_dtype
        size = to_dtype(t, bitfields="skip", unsupported="raw").itemsize
    if (isinstance(value, np.ndarray) and value.ndim >= 1 and size
            and value.nbytes != size and value.dtype.itemsize == size):
        return [format(v, t, byte_order=byte_order) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        own: str | None
        data, own = _pack_scalar(value, t), NATIVE_ORDER
    else:
        data, own = _value_bytes(value, size)
    order = spec_order(t, byte_order or own)
    return _Formatter(data, order).value(t, 0, 0)


def _pack_scalar(value: Any, t: Type) -> bytes:
    base = skip_qualifiers(t)
    if isinstance(base, (Int, Enum, Pointer)):
        signed = getattr(base, "signed", False)
        return int(value).to_bytes(base.size, NATIVE_ORDER, signed=signed and value < 0)
    if isinstance(base, Float) and base.size in _FLOATS:
        return struct.pack("=" + _FLOATS[base.size], value)
    raise TypeError(f"a Python number cannot be formatted as {base._describe()}")


class _Formatter:
    def __init__(self, data: bytes, order: str):
        self.data = data
        self.order = order

    def _int(self, off: int, size: int, signed: bool) -> int:
        return int.from_bytes(self.data[off:off + size], self.order,  # type: ignore[arg-type]
                              signed=signed)

    def _bits(self, bit_off: int, nbits: int, signed: bool) -> int:
        if nbits == 0:      # a zero-width int (hostile BTF can say so) holds 0
            return 0
        start, end = bit_off // 8, (bit_off + nbits + 7) // 8
        chunk = int.from_bytes(self.data[start:end], self.order)  # type: ignore[arg-type]
        if self.order == "little":
            v = chunk >> (bit_off - 8 * start)
        else:
            # Big-endian bit offsets count from the most significant bit.
            v = chunk >> (8 * end - bit_off - nbits)
        v &= (1 << nbits) - 1
        if signed and v >> (nbits - 1):
            v -= 1 << nbits
        return v

    def value(self, t: Type, off: int, depth: int) -> Any:
        if depth > _MAX_NESTING:
            raise BTFError(f"types nested more than {_MAX_NESTING} deep at {t!r}")
        t = skip_qualifiers(t, vars=True)
        if isinstance(t, Int):
            if t.bits != 8 * t.size or t.bit_offset:
                return self._bits(8 * off + t.bit_offset, t.bits, t.signed)
            v = self._int(off, t.size, t.signed)
            return bool(v) if t.is_bool else v
        if isinstance(t, Enum):
            v = self._int(off, t.size, t.signed)
            name = t.name_of(v)
            return v if name is None else name
        if isinstance(t, Float):
            code = _FLOATS.get(t.size)
            if code is None:
                raise BTFError(f"cannot format a {8 * t.size}-bit float")
            c = "<" if self.order == "little" else ">"
            return struct.unpack_from(c + code, self.data, off)[0]
        if isinstance(t, Pointer):
            return self._int(off, 8, False)
        if isinstance(t, Array):
            return self._array(t, off, depth)
        if isinstance(t, Composite):
            out: dict[str, Any] = {}
            self._members(t, off, 8 * off, depth, out)
            return out
        if isinstance(t, Datasec):
            return {getattr(v.type, "name", "") or f"var{i}": self.value(v.type, off + v.offset, depth + 1)
                    for i, v in enumerate(t.vars)}
        if isinstance(t, Void):
            raise BTFError("cannot format a value of type void")
        raise BTFError(f"cannot format a value of {t._describe()}")

    def _array(self, t: Array, off: int, depth: int) -> Any:
        elem = skip_qualifiers(t.type)
        if isinstance(elem, Int) and elem.is_char and not elem.is_bool:
            raw = self.data[off:off + t.nelems]
            return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")
        step = elem.size if t.nelems else 0
        return [self.value(elem, off + i * step, depth + 1) for i in range(t.nelems)]

    def _members(self, t: Composite, off: int, bit_base: int, depth: int,
                 out: dict[str, Any]) -> None:
        for m in t.members:
            bf = bitfield_of(m)
            if bf is not None:
                base = skip_qualifiers(m.type)
                v: Any = self._bits(bit_base + bf[0], bf[1], bool(getattr(base, "signed", False)))
                if isinstance(base, Enum):
                    name = base.name_of(v)
                    v = v if name is None else name
                elif isinstance(base, Int) and base.is_bool:
                    v = bool(v)
                if m.name:
                    out[m.name] = v
                continue
            bit = bit_base + m.bit_offset
            if not m.name:
                inner = skip_qualifiers(m.type)
                if isinstance(inner, Composite):
                    if depth > _MAX_NESTING:
                        raise BTFError("anonymous members nested too deep")
                    self._members(inner, bit // 8, bit, depth + 1, out)
                continue
            out[m.name] = self.value(m.type, bit // 8, depth + 1)
