"""Global variables: :class:`VariableSpec` (before load) and :class:`Variable` (live).

A global of a BPF object lives in a data section (``.data``, ``.rodata``,
``.bss``, ``.data.*``, ...), which the loader turns into a one-element array
map. Before load a :class:`VariableSpec` reads and writes the bytes that will
become the map's initial contents; after load a :class:`Variable` reads and
writes the map's memory directly (mmapped, no syscall per access). Values are
numpy scalars, arrays or structured records typed from the object's BTF.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np

__all__ = ["VariableSpec", "Variable"]


def _assign(view: np.ndarray, value: Any, name: str) -> None:
    """Write *value* into the one-element *view* (bytes of the right size work too)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) != view.dtype.itemsize:
            raise ValueError(f"variable {name!r} is {view.dtype.itemsize} bytes, "
                             f"got {len(raw)}")
        view.view(np.uint8)[:] = np.frombuffer(raw, np.uint8)
        return
    try:
        if view.dtype.kind in "iu" and not isinstance(value, np.ndarray):
            info = np.iinfo(view.dtype)
            v = int(value)
            if not info.min <= v <= info.max:
                raise ValueError(f"{v} does not fit variable {name!r} ({view.dtype})")
            view[0] = v
        else:
            view[0] = value
    except (TypeError, ValueError, OverflowError) as e:
        raise type(e)(f"cannot store {value!r} in variable {name!r} ({view.dtype}): {e}") \
            from None


class VariableSpec:
    """A global variable of an object, before load.

    ``name``, ``section`` (the ELF section, also the key of its map in
    ``CollectionSpec.maps``), ``offset`` and ``size`` in bytes, ``type`` (the
    BTF type, or None) and ``dtype``. :meth:`set` changes the value the
    program will start with; ``.value`` reads it.
    """

    def __init__(self, name: str, section: str, offset: int, size: int, type: Any,
                 map_spec: Any, dtype: np.dtype | None = None) -> None:
        self.name = name
        self.section = section
        self.offset = offset
        self.size = size
        self.type = type
        self._map_spec = map_spec
        self._dtype = dtype

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype of the value (raw bytes when BTF cannot say)."""
        if self._dtype is None:
            dt = None
            if self.type is not None:
                from . import btf
                try:
                    dt = btf.to_dtype(self.type)
                except Exception:  # a type numpy cannot express
                    dt = None
            if dt is None or dt.itemsize != self.size:
                dt = np.dtype(("V", self.size)) if self.size else np.dtype(np.uint8)
            self._dtype = dt
        return self._dtype

    @property
    def readonly(self) -> bool:
        """True for variables in read-only sections (``.rodata*``, ``.kconfig``)."""
        return self.section.startswith(".rodata") or self.section == ".kconfig"

    def _buffer(self) -> bytearray:
        contents = self._map_spec.contents
        if not contents:
            self._map_spec.contents = contents = [(0, bytearray(self._map_spec.value_size))]
        key, buf = contents[0]
        if not isinstance(buf, bytearray):
            buf = bytearray(bytes(buf))
            contents[0] = (key, buf)
        return buf

    def _view(self) -> np.ndarray:
        buf = self._buffer()
        if self.offset + self.size > len(buf):
            raise ValueError(f"variable {self.name!r} lies outside its section "
                             f"(was the map's value resized?)")
        return np.ndarray((1,), self.dtype, buffer=buf, offset=self.offset)

    @property
    def value(self) -> Any:
        """The value in the object (or as last set), a numpy scalar/array/record."""
        return self._view()[0].copy()

    def set(self, value: Any) -> None:
        """Set the value the program starts with (before load; .rodata too)."""
        _assign(self._view(), value, self.name)

    def __repr__(self) -> str:
        return (f"<VariableSpec {self.name!r} {self.section}+{self.offset} size={self.size} "
                f"dtype={self.dtype}>")


class Variable:
    """A global variable of a loaded collection, read and written in place.

    ``.value`` reads the map's memory (mmapped for ``.data``/``.bss``,
    so what the program wrote is seen at once); :meth:`set` writes it.
    Variables of frozen sections (``.rodata``) are read-only.
    """

    def __init__(self, spec: VariableSpec, map_: Any) -> None:
        self.spec = spec
        self.name = spec.name
        self._map = map_
        self._mem: np.ndarray | None = None

    def _view(self) -> np.ndarray:
        mem = self._mem
        if mem is None:
            m = self._map
            if m.closed:
                from .errors import ClosedError
                raise ClosedError(f"variable {self.name!r}: its map is closed")
            raw = m.mmap(writable=None if not self.spec.readonly else False)
            # The mapping itself (Map.mmap's array is a view of it): the
            # variable's dtype rarely matches the section's.
            data = raw.base if isinstance(raw.base, mmap.mmap) else raw
            mem = np.ndarray((1,), self.spec.dtype, buffer=data, offset=self.spec.offset)
            if not raw.flags.writeable:
                mem.flags.writeable = False
            self._mem = mem
        return mem

    @property
    def readonly(self) -> bool:
        """True when the variable's map is frozen (``.rodata``)."""
        return not self._view().flags.writeable

    @property
    def value(self) -> Any:
        """The current value (read from the map's memory)."""
        return self._view()[0].copy()

    def set(self, value: Any) -> None:
        """Write the value into the map's memory, where the program sees it."""
        view = self._view()
        if not view.flags.writeable:
            raise PermissionError(f"variable {self.name!r} is in a frozen section "
                                  f"({self.spec.section}); set it on the spec before load")
        _assign(view, value, self.name)

    def __repr__(self) -> str:
        return f"<Variable {self.name!r} {self.spec.section}+{self.spec.offset}>"
