"""BTF type -> numpy dtype with the same layout as C.

Rules (the tests check them against what gcc says about the same structs):

- Integers become ``i1``..``i8``/``u1``..``u8``, ``_Bool`` becomes ``?``,
  enums the integer of their size and signedness, floats ``f2``/``f4``/``f8``,
  pointers ``u8`` (BPF is a 64-bit target). Typedefs, const, volatile,
  restrict and type tags are looked through.
- Arrays become subarrays; nested arrays give a multi-dimensional shape
  (``u32 m[2][3]`` -> ``('u4', (2, 3))``). Arrays of plain ``char`` become
  ``S<n>`` strings (``char comm[16]`` -> ``S16``; ``char s[4][8]`` ->
  ``('S8', (4,))``), other byte arrays stay numbers.
- Structs become structured dtypes with C's field names, offsets and
  itemsize, padding included. Unions become structured dtypes whose fields
  all start at offset 0.
- Anonymous struct/union members are flattened: their fields appear in the
  parent at their absolute offsets, which is how C code names them too
  (``s.x`` for ``struct { struct { int x; }; } s``). A name clash after
  flattening is a :class:`BTFError`.
- Bitfields cannot be expressed. By default they raise :class:`BTFError`;
  ``bitfields="raw"`` puts each run of adjacent bitfields into one
  ``('u1', (n,))`` field named ``_bitfield_<first member>`` covering the
  bytes that hold them; ``bitfields="skip"`` leaves those bytes as padding.
  Use :func:`fastbpf.btf.format` to read bitfield values.
- Other things numpy cannot express (``__int128``, ``long double``) raise
  :class:`BTFError` unless ``unsupported="raw"``, which gives ``V<size>``.
- The byte order is the spec's (big-endian BTF gives ``>`` dtypes), or
  ``byte_order=`` (``"little"``, ``"big"``, ``"native"``).
"""

from __future__ import annotations

from typing import Any


import numpy as np

from ..errors import BTFError
from .wire import order_char, resolve_byte_order
from .types import (
    Array, Composite, Datasec, Enum, Float, Fwd, Int, Member, Pointer, Qualifier, Type, Var,
    Typedef, Void, MAX_RESOLVE_DEPTH, skip_qualifiers,
)

__all__ = ["to_dtype", "bitfield_of", "spec_order"]

_MAX_NESTING = 64


def spec_order(t: Type, byte_order: str | None) -> str:
    """*byte_order* resolved ("little"/"big"), defaulting to the byte order
    of *t*'s spec (native for types built by hand)."""
    spec = getattr(t, "_spec", None)
    return resolve_byte_order(byte_order, spec.byte_order if spec is not None else None)


def to_dtype(t: Type, *, bitfields: str = "error", unsupported: str = "error",
             byte_order: str | None = None) -> np.dtype:
    """A numpy dtype with the size, field names and offsets C gives *t*.

    See the module documentation for the rules. Raises :class:`BTFError`
    for types without a memory layout (functions, forward declarations,
    void) and for what numpy cannot express, unless asked for a fallback.
    """
    if bitfields not in ("error", "raw", "skip"):
        raise ValueError("bitfields must be 'error', 'raw' or 'skip'")
    if unsupported not in ("error", "raw"):
        raise ValueError("unsupported must be 'error' or 'raw'")
    builder = _Builder(order_char(spec_order(t, byte_order)), bitfields, unsupported)
    try:
        return builder.dtype(t, 0)
    except BTFError:
        raise
    except (ValueError, TypeError, OverflowError, MemoryError) as e:
        # Sizes numpy cannot hold (huge arrays, empty void fields, ...).
        raise BTFError(f"numpy cannot represent {t._describe()}: {e}") from None


def bitfield_of(m: Member) -> tuple[int, int] | None:
    """``(bit_offset, bit_size)`` if member *m* is a bitfield, else None.

    Understands both encodings: the member's own bitfield size (kind flag
    set) and the legacy one where the member's INT type carries the bit
    count and offset. A "bitfield" that fills whole, aligned bytes of its
    type is an ordinary member.
    """
    size = m.bitfield_size
    off = m.bit_offset
    base = skip_qualifiers(m.type)
    if not size and isinstance(base, Int) and (base.bits != 8 * base.size or base.bit_offset):
        size = base.bits
        off += base.bit_offset
    if not size:
        return None
    try:
        full = 8 * base.size
    except BTFError:
        full = -1
    if size == full and off % 8 == 0:
        return None
    return off, size


#: Typedef names whose integer is stored big-endian (network byte order).
BIG_ENDIAN_TYPEDEFS = frozenset({"__be16", "__be32", "__be64", "__sum16"})


def _big_endian_typedef(t: Type) -> bool:
    """Whether *t* is (a qualified) ``__be16``/``__be32``/``__be64``/``__sum16``."""
    for _ in range(MAX_RESOLVE_DEPTH):
        if isinstance(t, Typedef) and t.name in BIG_ENDIAN_TYPEDEFS:
            return True
        if not isinstance(t, (Qualifier, Var)):
            return False
        t = t.type
    return False


class _Builder:
    def __init__(self, order: str, bitfields: str, unsupported: str):
        self.order = order
        self.bitfields = bitfields
        self.unsupported = unsupported

    def _raw_or_fail(self, t: Type, why: str) -> np.dtype:
        if self.unsupported == "raw":
            return np.dtype(("V", t.size))
        raise BTFError(f"{t._describe()}: {why}; numpy cannot express it "
                       "(pass unsupported='raw' for raw bytes)")

    def dtype(self, t: Type, depth: int) -> np.dtype:
        if depth > _MAX_NESTING:
            raise BTFError(f"types nested more than {_MAX_NESTING} deep at {t!r}")
        o = self.order
        if _big_endian_typedef(t):
            o = ">"  # __be16 and friends: network byte order whatever the host's
        t = skip_qualifiers(t, vars=True)
        if isinstance(t, Int):
            if t.bits != 8 * t.size or t.bit_offset:
                return self._raw_or_fail(t, f"an integer of {t.bits} bits at bit {t.bit_offset}")
            if t.is_bool and t.size == 1:
                return np.dtype("?")
            if t.size not in (1, 2, 4, 8):
                return self._raw_or_fail(t, f"a {8 * t.size}-bit integer")
            return np.dtype(f"{o}{'i' if t.signed else 'u'}{t.size}")
        if isinstance(t, Enum):
            if t.size not in (1, 2, 4, 8):
                return self._raw_or_fail(t, f"an enum of {t.size} bytes")
            return np.dtype(f"{o}{'i' if t.signed else 'u'}{t.size}")
        if isinstance(t, Float):
            if t.size not in (2, 4, 8):
                return self._raw_or_fail(t, f"a {8 * t.size}-bit float")
            return np.dtype(f"{o}f{t.size}")
        if isinstance(t, Pointer):
            return np.dtype(f"{o}u8")
        if isinstance(t, Array):
            return self._array(t, depth)
        if isinstance(t, Composite):
            return self._composite(t, depth)
        if isinstance(t, Datasec):
            return self._datasec(t, depth)
        if isinstance(t, Void):
            raise BTFError("void has no numpy dtype")
        if isinstance(t, Fwd):
            raise BTFError(f"forward declaration {t.name!r} has no layout")
        raise BTFError(f"{t._describe()} has no numpy dtype")

    def _array(self, t: Array, depth: int) -> np.dtype:
        shape = []
        elem: Type = t
        for _ in range(MAX_RESOLVE_DEPTH):
            if isinstance(elem, Array):
                shape.append(elem.nelems)
                elem = elem.type
            elif isinstance(elem, Qualifier):
                elem = elem.type
            else:
                break
        else:
            raise BTFError(f"array nested more than {MAX_RESOLVE_DEPTH} deep")
        if isinstance(elem, Int) and elem.is_char and not elem.is_bool:
            inner = np.dtype(f"S{shape.pop()}")
        else:
            inner = self.dtype(elem, depth + 1)
        if isinstance(elem, (Datasec, Var)):
            # Only malformed BTF has these as elements; their extent (a
            # DATASEC's size is 0 in objects) would make the array's size
            # disagree with its dtype's.
            raise BTFError(f"{t._describe()} has elements of kind {elem._describe()}")
        if not shape:
            return inner
        return np.dtype((inner, tuple(shape)))

    def _composite(self, t: Composite, depth: int) -> np.dtype:
        names: list[str] = []
        formats: list[Any] = []
        offsets: list[int] = []
        self._fields(t, 0, depth, names, formats, offsets, t)
        size = t.size
        for name, fmt, off in zip(names, formats, offsets):
            if off + np.dtype(fmt).itemsize > size:
                raise BTFError(f"member {name!r} of {t._describe()} ends past its size {size}")
        return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                         "itemsize": size})

    def _fields(self, t: Composite, base_bits: int, depth: int, names: list[str],
                formats: list[Any], offsets: list[int], root: Type) -> None:
        run: list[Any] | None = None   # [first name, start byte, end byte]

        def flush() -> None:
            nonlocal run
            if run is not None and self.bitfields == "raw":
                self._add(names, formats, offsets, f"_bitfield_{run[0]}",
                          np.dtype(("u1", (run[2] - run[1],))), run[1], root)
            run = None

        for m in t.members:
            bf = bitfield_of(m)
            if bf is not None:
                off, bits = bf
                off += base_bits
                if self.bitfields == "error":
                    raise BTFError(
                        f"member {m.name or '(anonymous)'!r} of {root._describe()} is a "
                        f"{bits}-bit bitfield at bit {off}: numpy cannot express it "
                        "(pass bitfields='raw' or 'skip', or read it with btf.format)")
                start, end = off // 8, (off + bits + 7) // 8
                if run is not None and start <= run[2]:
                    run[2] = max(run[2], end)
                else:
                    flush()
                    run = [m.name or f"at{start}", start, end]
                continue
            flush()
            bit = base_bits + m.bit_offset
            if bit % 8:
                raise BTFError(f"member {m.name!r} of {root._describe()} is not "
                               f"byte-aligned (bit {bit})")
            if not m.name:
                inner = skip_qualifiers(m.type)
                if isinstance(inner, Composite):
                    if depth > _MAX_NESTING:
                        raise BTFError(f"anonymous members nested more than {_MAX_NESTING} deep")
                    self._fields(inner, bit, depth + 1, names, formats, offsets, root)
                continue
            self._add(names, formats, offsets, m.name, self.dtype(m.type, depth + 1), bit // 8, root)
        flush()

    @staticmethod
    def _add(names: list[str], formats: list[Any], offsets: list[int], name: str, fmt: Any,
             off: int, root: Type) -> None:
        if name in names:
            raise BTFError(f"{root._describe()} has two fields named {name!r} "
                           "after flattening anonymous members")
        names.append(name)
        formats.append(fmt)
        offsets.append(off)

    def _datasec(self, t: Datasec, depth: int) -> np.dtype:
        names: list[str] = []
        formats: list[Any] = []
        offsets: list[int] = []
        for v in t.vars:
            var = v.type
            name = var.name if isinstance(var, Var) else f"var{len(names)}"
            self._add(names, formats, offsets, name, self.dtype(var, depth + 1), v.offset, t)
        size = max([t.size] + [o + np.dtype(f).itemsize for o, f in zip(offsets, formats)])
        return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                         "itemsize": size})

