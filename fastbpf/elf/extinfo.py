""".BTF.ext as numpy arrays: func_info, line_info and CO-RE records per section.

:class:`fastbpf.btf.ExtInfo` builds one Python object per record up front.
The loader needs the records of one function at a time, when it decodes that
function, so here each subsection is split into per-ELF-section ``uint32``
arrays (one row per record, the kernel's layout) and turned into
:class:`~fastbpf.btf.FuncInfo` / :class:`~fastbpf.btf.LineInfo` /
:class:`~fastbpf.btf.CoreRelo` objects only for the instructions decoded.
"""

from __future__ import annotations

import bisect
import struct
from typing import Any

import numpy as np

from ..btf.ext import CoreRelo, CoreReloKind, LineInfo
from ..btf.spec import MAGIC, Spec
from ..errors import BTFError

__all__ = ["ExtRecords"]


class ExtRecords:
    """The records of one ``.BTF.ext``, by ELF section name.

    ``func[sec]``, ``line[sec]``, ``core[sec]``: ``uint32`` arrays of shape
    (n, words per record), native byte order, first column the byte offset
    of the instruction in its section.
    """

    def __init__(self, data: bytes, spec: Spec) -> None:
        self.spec = spec
        self.func: dict[str, np.ndarray] = {}
        self.line: dict[str, np.ndarray] = {}
        self.core: dict[str, np.ndarray] = {}
        self._strings: dict[int, str] = {}
        self._by_sec: dict[Any, Any] = {}
        if len(data) < 24:
            raise BTFError(f".BTF.ext of {len(data)} bytes is shorter than its header")
        (m,) = struct.unpack_from("<H", data, 0)
        if m == MAGIC:
            c = "<"
        elif m == 0x9FEB:
            c = ">"
        else:
            raise BTFError(f".BTF.ext has bad magic {m:#06x}")
        _, version, _flags, hdr_len = struct.unpack_from(c + "HBBI", data, 0)
        if version != 1:
            raise BTFError(f"unsupported .BTF.ext version {version}")
        if hdr_len < 24 or hdr_len > len(data):
            raise BTFError(f".BTF.ext header length {hdr_len} is out of range")
        fo, fl, lo, ll = struct.unpack_from(c + "IIII", data, 8)
        co = cl = 0
        if hdr_len >= 32:
            co, cl = struct.unpack_from(c + "II", data, 24)
        body = data[hdr_len:]
        self.func = self._sub(body, fo, fl, c, 8, "func_info")
        self.line = self._sub(body, lo, ll, c, 16, "line_info")
        self.core = self._sub(body, co, cl, c, 16, "core_relo")

    def _sub(self, body: bytes, off: int, length: int, c: str, min_rec: int,
             what: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if length == 0:
            return out
        if off + length > len(body) or length < 4:
            raise BTFError(f".BTF.ext {what} ({off}+{length}) is outside the section")
        sub = body[off:off + length]
        (rec,) = struct.unpack_from(c + "I", sub, 0)
        if rec < min_rec or rec % 4 or rec > 1024:
            raise BTFError(f".BTF.ext {what} record size {rec} is invalid")
        dt = np.dtype(c + "u4")
        pos = 4
        while pos < len(sub):
            if len(sub) - pos < 8:
                raise BTFError(f".BTF.ext {what}: truncated section header at {pos}")
            name_off, num = struct.unpack_from(c + "II", sub, pos)
            pos += 8
            name = self.spec.string_at(name_off)
            if num == 0 or num * rec > len(sub) - pos:
                raise BTFError(f".BTF.ext {what} for section {name!r}: {num} records of "
                               f"{rec} bytes do not fit")
            arr = np.frombuffer(sub, dt, num * rec // 4, pos).astype(np.uint32)
            arr = arr.reshape(num, rec // 4)[:, :min_rec // 4]
            prev = out.get(name)
            out[name] = arr if prev is None else np.concatenate([prev, arr])
            pos += num * rec
        return out

    def _string(self, off: int) -> str:
        s = self._strings.get(off)
        if s is None:
            s = self._strings[off] = self.spec.string_at(off)
        return s

    def _sorted(self, table: dict[Any, Any], sec: str) -> tuple[Any, ...] | None:
        """(offsets list, rows array) of *sec*, sorted by offset (cached)."""
        key = (id(table), sec)
        got = self._by_sec.get(key)
        if got is None:
            a = table.get(sec)
            if a is None:
                return None
            a = a[np.argsort(a[:, 0], kind="stable")]
            got = self._by_sec[key] = (a[:, 0].tolist(), a)
        return got

    def sorted_funcs(self, sec: str) -> tuple[Any, ...] | None:
        """(byte offsets list, rows array) of the func_info of *sec*, sorted; None if none."""
        return self._sorted(self.func, sec)

    def sorted_lines(self, sec: str) -> tuple[Any, ...] | None:
        """(byte offsets list, rows array) of the line_info of *sec*, sorted; None if none."""
        return self._sorted(self.line, sec)

    def funcs_in(self, sec: str, start: int, end: int) -> list[tuple[int, int]]:
        """(byte offset, FUNC type id) of the functions in [start, end) of *sec*."""
        got = self._sorted(self.func, sec)
        if got is None:
            return []
        offs, a = got
        lo, hi = bisect.bisect_left(offs, start), bisect.bisect_left(offs, end)
        return [(r[0], r[1]) for r in a[lo:hi].tolist()]

    def line_rows(self, sec: str, start: int, end: int) -> np.ndarray | None:
        """The line_info rows (byte offset, file, line, line/col) in [start, end)."""
        got = self._sorted(self.line, sec)
        if got is None:
            return None
        offs, a = got
        rows: np.ndarray = a[bisect.bisect_left(offs, start):bisect.bisect_left(offs, end)]
        return rows

    def line_infos(self, rows: np.ndarray, start: int = 0) -> list[LineInfo]:
        """LineInfo objects for *rows* (``raw`` holds the native record)."""
        out = []
        for off, f_off, l_off, lc in rows.tolist():
            out.append(LineInfo(off, self._string(f_off), self._string(l_off), lc >> 10,
                                lc & 0x3FF, struct.pack("=IIII", off, f_off, l_off, lc)))
        return out

    def lines_in(self, sec: str, start: int, end: int) -> list[LineInfo]:
        """LineInfo records (with ``raw`` = the native record) in [start, end)."""
        a = self.line.get(sec)
        if a is None:
            return []
        sel = a[(a[:, 0] >= start) & (a[:, 0] < end)]
        out = []
        for r in sel:
            off, f_off, l_off, lc = (int(x) for x in r)
            out.append(LineInfo(off, self._string(f_off), self._string(l_off), lc >> 10,
                                lc & 0x3FF, struct.pack("=IIII", off, f_off, l_off, lc)))
        return out

    def core_in(self, sec: str, start: int, end: int) -> list[CoreRelo]:
        """CO-RE relocations of the instructions in [start, end) of *sec*."""
        a = self.core.get(sec)
        if a is None:
            return []
        sel = a[(a[:, 0] >= start) & (a[:, 0] < end)]
        out = []
        n = len(self.spec)
        for r in sel:
            off, tid, acc, kind = (int(x) for x in r)
            if tid >= n:
                raise BTFError(f"CO-RE relocation refers to type id {tid}, beyond the spec")
            try:
                kind = CoreReloKind(kind)
            except ValueError:
                pass
            out.append(CoreRelo(off, tid, self._string(acc), kind,
                                struct.pack("=IIII", off, tid, acc, int(kind))))
        return out

    def has_core(self) -> bool:
        """True if any section has CO-RE relocations."""
        return any(len(a) for a in self.core.values())
