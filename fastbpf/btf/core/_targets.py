"""Where CO-RE candidates come from: target BTF and its name index.

libbpf scans every target type for every local root type. Here a target
spec gets an index once per process: exact names are found by the C name
matcher of :class:`~fastbpf.btf.Spec` (a few hundred microseconds for
vmlinux), and the few names with a flavor suffix (``foo___bar``: 5 strings
in a 6.18 vmlinux) are indexed by their essential name up front. Lists of
candidates are cached per (essential name, kind), so a second load in the
same process finds them without touching the BTF again.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Sequence

import numpy as np

from ...errors import BTFError
from ..spec import Spec
from ..types import Kind, Type
from ._match import essential_name

_lock = threading.Lock()
# id(spec) -> (weakref, len at build, index)
_indexes: dict[int, tuple[weakref.ref[Spec], int, TargetIndex]] = {}
_path_cache: dict[tuple[Any, ...], Spec] = {}


def _kind_class(kind: Kind) -> int:
    # enum and enum64 are candidates for each other (btf_kind_core_compat)
    return Kind.ENUM if kind == Kind.ENUM64 else kind


class TargetIndex:
    """Candidate lookup by essential name and kind in one target spec."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self._flavored: dict[str, list[int]] | None = None
        self._cands: dict[tuple[str, int], list[Type]] = {}

    def candidates(self, ess: str, kind: Kind) -> list[Type]:
        """Types of this spec (not its base) whose essential name is *ess*
        and whose kind is compatible with *kind*, in id order."""
        key = (ess, _kind_class(kind))
        found = self._cands.get(key)
        if found is None:
            spec = self.spec
            ids = list(spec._ids_for_name(ess))
            ids += self._flavored_ids().get(ess, ())
            ids.sort()
            want = key[1]
            found = []
            for tid in ids:
                t = spec.type_by_id(tid)
                if _kind_class(t.kind) == want and t.name:
                    found.append(t)
            self._cands[key] = found
        return found

    def _flavored_ids(self) -> dict[str, list[int]]:
        idx = self._flavored
        if idx is None:
            idx = {}
            spec = self.spec
            if spec._raw_count:
                offs = _flavored_string_offsets(spec)
                names = spec._name_offs
                if len(offs) <= 16:  # the usual case (5 such strings in a 6.18 vmlinux)
                    hits = sorted(h for off in offs for h in np.flatnonzero(names == off).tolist())
                else:
                    table = np.array(sorted(offs), dtype=np.uint32)
                    pos = np.minimum(np.searchsorted(table, names), len(table) - 1)
                    hits = np.flatnonzero(table[pos] == names).tolist()
                if hits:
                    for h in hits:
                        tid = h + spec._first_id
                        name = spec._str(int(spec._name_offs[h]))
                        idx.setdefault(essential_name(name), []).append(tid)
            for i in range(spec._raw_count, len(spec._cache)):
                t = spec._cache[i]
                ess = essential_name(t.name)
                if ess != t.name:
                    idx.setdefault(ess, []).append(i + spec._first_id)
            self._flavored = idx
        return idx


def _flavored_string_offsets(spec: Spec) -> set[int]:
    """Offsets (as type records use them) of the strings with a flavor."""
    out: set[int] = set()
    if spec.base is not None:
        out |= _flavored_string_offsets(spec.base)
    arr = spec._string_bytes()   # the table itself, no copy
    if len(arr) < 5:
        return out
    # Vectorised: a substring search crawls through identifiers full of
    # underscores; three shifted comparisons of the table do not.
    u = arr == 95
    runs = np.flatnonzero(u[:-2] & u[1:-1] & u[2:])
    if not len(runs):
        return out
    buf, base = spec._buf, spec._str_start
    end_all = base + len(arr)
    seen: set[int] = set()
    for r in runs.tolist():
        s = buf.rfind(b"\0", base, base + r) + 1
        if s <= 0:
            s = base
        if s in seen:
            continue
        seen.add(s)
        e = buf.find(b"\0", base + r, end_all)
        name = bytes(buf[s:e]).decode("utf-8", "surrogateescape")
        if essential_name(name) != name:
            out.add(s - base + spec._str_base)
    return out


def index_for(spec: Spec) -> TargetIndex:
    """The (process-wide, cached) candidate index of *spec*."""
    key = id(spec)
    entry = _indexes.get(key)
    if entry is not None:
        ref, n, idx = entry
        if ref() is spec and n == len(spec):
            return idx
    with _lock:
        idx = TargetIndex(spec)
        _indexes[key] = (weakref.ref(spec, lambda _r, k=key, d=_indexes: d.pop(k, None)),  # type: ignore[misc]
                         len(spec), idx)
    return idx


class Targets:
    """The target BTF of a relocation pass: a main spec (vmlinux) searched
    first, then the others (modules), consulted only when the main spec has
    no candidate for a name, as libbpf does."""

    def __init__(self, main: Spec, others: Sequence[Spec] = (), lazy_modules: bool = False):
        self.main = main
        self._others = list(others)
        self._lazy = lazy_modules
        self.skipped: list[str] = []   # module BTF that could not be read

    def others(self) -> list[Spec]:
        """Module specs, read on first need; unreadable ones are skipped."""
        if self._lazy:
            self._lazy = False
            from ..kernel import kernel_module_names, load_kernel_spec
            for name in kernel_module_names():
                try:
                    self._others.append(load_kernel_spec(name))
                except (BTFError, OSError, ValueError) as e:
                    # Broken module BTF must not fail relocations that do
                    # not need that module.
                    self.skipped.append(f"{name}: {e}")
        return self._others

    def candidates(self, local: Type) -> list[tuple[Spec, Type]]:
        """libbpf's bpf_core_find_cands for local root type *local*."""
        ess = essential_name(local.name)
        found = [(self.main, t) for t in index_for(self.main).candidates(ess, local.kind)]
        if found:
            return found
        for spec in self.others():
            found += [(spec, t) for t in index_for(spec).candidates(ess, local.kind)]
        return found


def resolve_targets(target: Spec | Sequence[Spec] | str | os.PathLike[str] | None) -> Targets:
    """Turn the *target* argument of the relocation functions into Targets."""
    if target is None:
        from ..kernel import load_kernel_spec
        return Targets(load_kernel_spec(), lazy_modules=True)
    if isinstance(target, Targets):
        return target
    if isinstance(target, Spec):
        return Targets(target)
    if isinstance(target, (str, os.PathLike)):
        return Targets(load_target_file(os.fspath(target)))
    try:
        specs = list(target)
    except TypeError:
        raise TypeError(f"target must be None, a btf.Spec, a list of specs or a path, "
                        f"not {type(target).__name__}") from None
    if not specs or not all(isinstance(s, Spec) for s in specs):
        raise TypeError("a target list must hold at least one btf.Spec, and only specs")
    return Targets(specs[0], specs[1:])


def load_target_file(path: str) -> Spec:
    """Parse a raw BTF blob or the ``.BTF`` section of an ELF (vmlinux);
    cached by path, size and modification time."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise BTFError(f"cannot read target BTF {path!r}: {e.strerror}") from None
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    spec = _path_cache.get(key)
    if spec is not None:
        return spec
    with open(path, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        if magic == b"\x7fELF":
            spec = _btf_from_elf(f, path)
        else:
            spec = Spec.parse(f.read())
    _path_cache[key] = spec
    return spec


def _btf_from_elf(f: Any, path: str) -> Spec:
    from elftools.common.exceptions import ELFError as _PyELFError
    from elftools.elf.elffile import ELFFile
    try:
        elf = ELFFile(f)
        sec = elf.get_section_by_name(".BTF")
        data = sec.data() if sec is not None else None
    except (_PyELFError, ValueError, OSError, KeyError) as e:
        raise BTFError(f"{path}: cannot read ELF file: {e}") from None
    if data is None:
        raise BTFError(f"{path}: ELF file has no .BTF section")
    return Spec.parse(data)
