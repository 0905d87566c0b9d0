"""BTF objects in the kernel, and the minimal BTF a map needs.

A :class:`Handle` owns the file descriptor of a BTF object: one this process
loaded (:meth:`Handle.load`) or an existing one opened by id
(:meth:`Handle.from_id`), such as vmlinux or another program's BTF.
"""

from __future__ import annotations

import dataclasses
import errno
from typing import Any, Iterable

from ..errors import BPFError, bpf_error
from .spec import Spec
from .wire import resolve_byte_order
from .types import (
    VOID, Array, Composite, Datasec, DeclTag, Func, FuncProto, Fwd, Member, Param, Pointer,
    Qualifier, Type, Union, Var, VarSecinfo, Void,
)

__all__ = ["Handle", "BTFInfo", "btf_ids", "build_map_btf", "copy_types"]


@dataclasses.dataclass(frozen=True)
class BTFInfo:
    """What the kernel says about a BTF object (``bpf_btf_info``)."""

    id: int
    #: Size of the raw BTF in bytes.
    btf_size: int
    #: "vmlinux", a module's name, or "" for BTF a program loaded.
    name: str
    #: True for the kernel's own BTF (vmlinux and modules).
    kernel_btf: bool


def btf_ids() -> list[int]:
    """Ids of every BTF object in the kernel, ascending."""
    ids: list[int] = _core().btf_ids()
    return ids


def _core() -> Any:
    from .. import _core as core  # imported late: the BTF model works without it
    return core


class Handle:
    """A BTF object loaded in the kernel.

    Use :meth:`load` or :meth:`from_id`; ``close()`` (or ``with``) releases
    the descriptor, and garbage collection does as a last resort.
    """

    def __init__(self, fd: Any, spec: Spec | None = None) -> None:
        """Take ownership of a ``_core.FD`` (internal: use :meth:`load` or
        :meth:`from_id`)."""
        if not isinstance(fd, _core().FD):
            raise TypeError("Handle() takes an owned fastbpf.FD; use Handle.load(spec) "
                            "or Handle.from_id(id)")
        self._fd = fd
        self._spec = spec
        self._id: int | None = None

    @classmethod
    def load(cls, spec: Spec, log_level: int = 0, log_size: int = 0) -> Handle:
        """Load *spec* into the kernel (BPF_BTF_LOAD), in native byte order.

        A rejection raises :class:`BTFLoadError` carrying the kernel's log.
        For a split spec only the split part is loaded; the kernel resolves
        the rest against vmlinux.
        """
        data = spec.encode("native")
        try:
            fd = _core().btf_load(data, log_level, log_size)
        except BPFError as e:
            # A kernel without BPF_BTF_LOAD is named by the layers above
            # (programs, the loader), which may consult fastbpf.features.
            if e.errno == errno.EPERM:   # not the BTF's fault: say what is missing
                raise bpf_error(errno.EPERM, "btf load", None,
                                "loading BTF needs root or CAP_BPF") from None
            raise
        return cls(fd)

    @classmethod
    def from_id(cls, btf_id: int) -> Handle:
        """Open the BTF object with id *btf_id* (BPF_BTF_GET_FD_BY_ID)."""
        return cls(_core().btf_get_fd_by_id(btf_id))

    @property
    def fd(self) -> int:
        """The file descriptor number (ClosedError once closed)."""
        return int(self._fd.fd)

    def info(self) -> BTFInfo:
        """The kernel's ``bpf_btf_info``: id, btf_size, name, kernel_btf."""
        i = _core().btf_info(self.fd)
        return BTFInfo(id=i["id"], btf_size=i["btf_size"], name=i["name"],
                       kernel_btf=bool(i["kernel_btf"]))

    @property
    def id(self) -> int:
        """The kernel's id for this BTF object."""
        if self._id is None:
            self._id = self.info().id
        return self._id

    def spec(self) -> Spec:
        """The BTF as the kernel holds it, decoded (read once, then cached).

        A module's BTF is split from vmlinux, so its spec gets the running
        kernel's vmlinux spec as base.
        """
        if self._spec is None:
            info = self.info()
            data = _core().btf_get_data(self.fd)
            base = None
            if info.kernel_btf and info.name not in ("vmlinux", ""):
                from .kernel import load_kernel_spec
                base = load_kernel_spec()
            self._spec = Spec.parse(data, base=base)
        return self._spec

    def close(self) -> None:
        """Release the descriptor; closing twice is harmless."""
        self._fd.close()

    @property
    def closed(self) -> bool:
        return bool(self._fd.closed)

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._fd.closed:
            return "<btf.Handle closed>"
        return f"<btf.Handle fd={self.fd}>"


def _opaque_target(t: Type) -> Type:
    """What a copied pointer points to instead of a struct or union."""
    if isinstance(t, Composite) and t.name:
        return Fwd(t.name, union=isinstance(t, Union))
    if isinstance(t, Composite):
        return VOID
    return t


def copy_types(roots: Iterable[Type], *, opaque_pointers: bool = False) -> list[Type]:
    """Deep copies of *roots* and everything reachable from them.

    Returns the copies of *roots*, in order; the other copies are reachable
    from them. With *opaque_pointers*, a pointer to a named struct or union
    points to a forward declaration of it instead (and to void for an
    anonymous one), which keeps the copy of, say, a struct holding a
    ``struct task_struct *`` small.
    """
    roots = list(roots)
    copies: dict[int, Type] = {}
    originals: list[Type] = []
    stack = list(roots)
    while stack:
        t = stack.pop()
        if isinstance(t, Void) or id(t) in copies:
            continue
        c = t.copy()
        copies[id(t)] = c
        originals.append(t)
        if opaque_pointers and isinstance(t, Pointer):
            target = _opaque_target(t.target)
            if target is not t.target:
                c.target = target  # type: ignore[attr-defined]
                continue
        stack.extend(t.references())

    def m(x: Type) -> Type:
        if isinstance(x, Void):
            return VOID
        return copies.get(id(x), x)

    for t in originals:
        c = copies[id(t)]
        if isinstance(c, Pointer):
            c.target = m(c.target)
        elif isinstance(c, Array):
            c.type = m(c.type)
            c.index_type = m(c.index_type)
        elif isinstance(c, Composite):
            c.members = [Member(x.name, m(x.type), x.bit_offset, x.bitfield_size) for x in c.members]
        elif isinstance(c, (Qualifier, Func, Var, DeclTag)):
            c.type = m(c.type)
        elif isinstance(c, FuncProto):
            c.return_type = m(c.return_type)
            c.params = [Param(p.name, m(p.type)) for p in c.params]
        elif isinstance(c, Datasec):
            c.vars = [VarSecinfo(m(v.type), v.offset, v.size) for v in c.vars]
    return [m(r) for r in roots]


def build_map_btf(key_type: Type | None, value_type: Type | None,
                  byte_order: str = "native") -> tuple[Spec, int, int]:
    """A minimal spec describing a map's key and value, ready for
    :meth:`Handle.load`.

    Returns ``(spec, key_type_id, value_type_id)``; ``None`` for either type
    gives id 0 (for map types without keys). The spec holds copies of both
    types and everything their layout depends on; pointers to structs and
    unions point to forward declarations, so a value holding a
    ``struct task_struct *`` does not drag the kernel's type graph along.
    """
    roots = [t for t in (key_type, value_type) if t is not None and not isinstance(t, Void)]
    for t in roots:
        if not isinstance(t, Type):
            raise TypeError(f"expected a btf Type, got {type(t).__name__}")
        t.size  # raises BTFError for types without a layout
    copies = copy_types(roots, opaque_pointers=True)
    if byte_order is not None:
        byte_order = resolve_byte_order(byte_order)
    spec = Spec.from_types(copies, byte_order=byte_order)
    ids = iter(spec.type_id(c) for c in copies)
    key_id = next(ids) if key_type is not None and not isinstance(key_type, Void) else 0
    value_id = next(ids) if value_type is not None and not isinstance(value_type, Void) else 0
    return spec, key_id, value_id
