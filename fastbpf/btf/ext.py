"""Decoding of ``.BTF.ext``: func_info, line_info and CO-RE relocations.

The section starts with a header (magic 0xeB9F, version 1, flags, hdr_len,
then offset/length pairs for func_info, line_info and, if hdr_len allows,
core_relo, relative to the end of the header). Each subsection is a record
size followed by one block per ELF section: the section's name (an offset
into the ``.BTF`` string table), a record count, and the records.

Records are kept as the object file has them: ``insn_off`` is a byte offset
into the ELF section (clang's convention; the kernel wants instruction
indexes, which the loader computes when it relocates).
"""

from __future__ import annotations

import enum
import struct
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import BTFError
from .spec import Spec
from .wire import magic_order, order_char

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["ExtInfo", "FuncInfo", "LineInfo", "CoreRelo", "CoreReloKind"]

_EXT_HEADER_MIN = 24      # up to line_info_len
_EXT_HEADER_CORE = 32     # with core_relo_off/len


class CoreReloKind(enum.IntEnum):
    """``enum bpf_core_relo_kind``: what a CO-RE relocation computes."""

    FIELD_BYTE_OFFSET = 0
    FIELD_BYTE_SIZE = 1
    FIELD_EXISTS = 2
    FIELD_SIGNED = 3
    FIELD_LSHIFT_U64 = 4
    FIELD_RSHIFT_U64 = 5
    TYPE_ID_LOCAL = 6
    TYPE_ID_TARGET = 7
    TYPE_EXISTS = 8
    TYPE_SIZE = 9
    ENUMVAL_EXISTS = 10
    ENUMVAL_VALUE = 11
    TYPE_MATCHES = 12


class FuncInfo(NamedTuple):
    """A function starting at byte ``insn_off`` with BTF FUNC ``type_id``.

    ``raw`` holds the whole record when the record size is larger than the
    two fields known here (the kernel takes such records as they are).
    """

    insn_off: int
    type_id: int
    raw: bytes = b""


class LineInfo(NamedTuple):
    """Source position of the instruction at byte ``insn_off``."""

    insn_off: int
    file_name: str
    line: str
    line_num: int
    column: int
    raw: bytes = b""


class CoreRelo(NamedTuple):
    """A CO-RE relocation of the instruction at byte ``insn_off``.

    ``access`` is the access string ("0:1" = member 1 of the root type,
    dereferenced as element 0), relative to local BTF type ``type_id``.
    """

    insn_off: int
    type_id: int
    access: str
    kind: "CoreReloKind | int"
    raw: bytes = b""


class ExtInfo:
    """The decoded ``.BTF.ext`` of one object file.

    Attributes map ELF section names to record lists: ``func_info``,
    ``line_info``, ``core_relos``. ``func_info_rec_size`` and
    ``line_info_rec_size`` are the record sizes in the file (the kernel
    needs them with the records).
    """

    def __init__(self) -> None:
        self.byte_order = "little"
        self.func_info: dict[str, list[FuncInfo]] = {}
        self.line_info: dict[str, list[LineInfo]] = {}
        self.core_relos: dict[str, list[CoreRelo]] = {}
        self.func_info_rec_size = 8
        self.line_info_rec_size = 16
        self.core_relo_rec_size = 16

    @classmethod
    def parse(cls, data: Buffer, spec: Spec) -> ExtInfo:
        """Decode *data* (the ``.BTF.ext`` section); names come from *spec*,
        the ``.BTF`` of the same object. Raises :class:`BTFError`."""
        data = bytes(data)
        if len(data) < _EXT_HEADER_MIN:
            raise BTFError(f".BTF.ext of {len(data)} bytes is shorter than its header")
        self = cls()
        self.byte_order = magic_order(data, ".BTF.ext")
        c = order_char(self.byte_order)
        _, version, _flags, hdr_len = struct.unpack_from(c + "HBBI", data, 0)
        if version != 1:
            raise BTFError(f"unsupported .BTF.ext version {version}")
        if hdr_len < _EXT_HEADER_MIN or hdr_len > len(data):
            raise BTFError(f".BTF.ext header length {hdr_len} is out of range")
        fo, fl, lo, ll = struct.unpack_from(c + "IIII", data, 8)
        co = cl = 0
        if hdr_len >= _EXT_HEADER_CORE:
            co, cl = struct.unpack_from(c + "II", data, 24)
        body = data[hdr_len:]
        self.func_info_rec_size, self.func_info = _subsection(
            body, fo, fl, c, 8, "func_info", spec, _func_rec)
        self.line_info_rec_size, self.line_info = _subsection(
            body, lo, ll, c, 16, "line_info", spec, _line_rec)
        self.core_relo_rec_size, self.core_relos = _subsection(
            body, co, cl, c, 16, "core_relo", spec, _core_rec)
        return self

    def __repr__(self) -> str:
        def n(d: dict[Any, Any]) -> int:
            return sum(len(v) for v in d.values())

        return (f"<btf.ExtInfo {n(self.func_info)} func_info, {n(self.line_info)} line_info, "
                f"{n(self.core_relos)} core_relos>")


def _func_rec(fields: Any, raw: Any, spec: Spec) -> Any:
    return FuncInfo(fields[0], fields[1], raw)


def _line_rec(fields: Any, raw: Any, spec: Spec) -> Any:
    insn_off, file_off, line_off, line_col = fields[:4]
    return LineInfo(insn_off, spec.string_at(file_off), spec.string_at(line_off),
                    line_col >> 10, line_col & 0x3FF, raw)


def _core_rec(fields: Any, raw: Any, spec: Spec) -> Any:
    insn_off, type_id, access_off, kind = fields[:4]
    if type_id >= len(spec):
        raise BTFError(f"CO-RE relocation refers to type id {type_id}, beyond the spec")
    try:
        kind = CoreReloKind(kind)
    except ValueError:
        pass
    return CoreRelo(insn_off, type_id, spec.string_at(access_off), kind, raw)


def _subsection(body: Any, off: int, length: int, c: Any, min_rec: int, what: str, spec: Spec,
                make: Any) -> tuple[int, dict[str, Any]]:
    out: dict[str, Any] = {}
    if length == 0:
        return min_rec, out
    if off + length > len(body) or length < 4:
        raise BTFError(f".BTF.ext {what} ({off}+{length}) is outside the section")
    sub = body[off:off + length]
    (rec_size,) = struct.unpack_from(c + "I", sub, 0)
    if rec_size < min_rec or rec_size % 4:
        raise BTFError(f".BTF.ext {what} record size {rec_size} is invalid "
                       f"(at least {min_rec}, a multiple of 4)")
    nfields = min_rec // 4
    pos = 4
    while pos < len(sub):
        if len(sub) - pos < 8:
            raise BTFError(f".BTF.ext {what}: truncated section header at {pos}")
        name_off, num = struct.unpack_from(c + "II", sub, pos)
        pos += 8
        name = spec.string_at(name_off)
        if num == 0:
            raise BTFError(f".BTF.ext {what} for section {name!r} has no records")
        if num * rec_size > len(sub) - pos:
            raise BTFError(f".BTF.ext {what} for section {name!r}: {num} records of "
                           f"{rec_size} bytes run past the end")
        recs = out.setdefault(name, [])
        for _ in range(num):
            raw = sub[pos:pos + rec_size]
            fields = struct.unpack_from(c + "I" * nfields, raw, 0)
            recs.append(make(fields, raw if rec_size > min_rec else b"", spec))
            pos += rec_size
    return rec_size, out
