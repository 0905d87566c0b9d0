"""The BTF wire format's fixed parts: magic, header, byte order.

Shared by the ``.BTF`` decoder and encoder (:mod:`.spec`, :mod:`.encode`),
the ``.BTF.ext`` decoder (:mod:`.ext`), and the layers that take a
``byte_order=`` argument (:mod:`.dtype`, :mod:`.fmt`, :mod:`.handle`).

Both sections start with the magic 0xeB9F; read in the wrong byte order it
is 0x9FeB, which is how a big-endian blob is told apart.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

from ..errors import BTFError

__all__ = ["MAGIC", "HEADER_SIZE", "NATIVE_ORDER", "MAX_VLEN", "order_char", "magic_order",
           "resolve_byte_order", "parse_header"]

MAGIC = 0xEB9F
HEADER_SIZE = 24
NATIVE_ORDER = sys.byteorder
#: The most items (members, values, params, vars) one type record holds.
MAX_VLEN = 0xFFFF


def order_char(order: str) -> str:
    """The struct/numpy prefix of *order* ("little" or "big")."""
    return "<" if order == "little" else ">"


def magic_order(data: Any, what: str) -> str:
    """The byte order ("little" or "big") the magic at the start of *data*
    says; :class:`BTFError` naming *what* when there is no magic."""
    (m,) = struct.unpack_from("<H", data, 0)
    if m == MAGIC:
        return "little"
    if m == 0x9FEB:
        return "big"
    raise BTFError(f"{what}: bad magic {m:#06x}, expected {MAGIC:#06x} in either byte order")


def resolve_byte_order(byte_order: str | None, default: str | None = None) -> str:
    """*byte_order* ("little", "big", "native"; None takes *default*, then
    the host's) as "little" or "big". ValueError for anything else."""
    order = byte_order or default or NATIVE_ORDER
    if order == "native":
        order = NATIVE_ORDER
    if order not in ("little", "big"):
        raise ValueError("byte_order must be 'little', 'big' or 'native'")
    return order


def parse_header(data: Any) -> tuple[str, int, int, int, int, int, int]:
    """Check a BTF header; return (byte order, flags, hdr_len, type_off,
    type_len, str_off, str_len) with offsets made absolute."""
    n = len(data)
    if n < HEADER_SIZE:
        raise BTFError(f"BTF blob of {n} bytes is shorter than its {HEADER_SIZE}-byte header")
    order = magic_order(data, "not BTF")
    c = order_char(order)
    _, version, flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
        c + "HBBIIIII", data, 0)
    if version != 1:
        raise BTFError(f"unsupported BTF version {version}")
    if hdr_len < HEADER_SIZE or hdr_len > n:
        raise BTFError(f"BTF header length {hdr_len} is outside 24..{n}")
    body = n - hdr_len
    for what, off, length in (("type", type_off, type_len), ("string", str_off, str_len)):
        if off + length > body:
            raise BTFError(f"BTF {what} section ({off}+{length}) runs past the end "
                           f"of the {body} bytes after the header")
    if type_off % 4 or type_len % 4:
        raise BTFError(f"BTF type section at {type_off} with length {type_len} "
                       "is not 4-byte aligned")
    if type_off < str_off + str_len and str_off < type_off + type_len:
        raise BTFError("BTF type and string sections overlap")
    return (order, flags, hdr_len, hdr_len + type_off, type_len, hdr_len + str_off, str_len)
