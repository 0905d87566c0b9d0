"""The running kernel's BTF: vmlinux and the split BTF of modules.

Both are read from ``/sys/kernel/btf`` once per process and cached; the
cache can be dropped with :func:`flush_kernel_specs` (after loading a
module, say). Parsing is lazy (see :mod:`fastbpf.btf.spec`), so the first
call costs little more than mapping the file (see :meth:`Spec.from_file`).
"""

from __future__ import annotations

import os
import threading

from ..errors import BTFError
from .spec import Spec

__all__ = ["load_kernel_spec", "kernel_module_names", "flush_kernel_specs", "BTF_DIR"]

#: Where the kernel exposes its BTF.
BTF_DIR = "/sys/kernel/btf"

_lock = threading.Lock()
_cache: dict[str, Spec] = {}


def _parse(path: str, base: Spec | None) -> Spec:
    try:
        return Spec.from_file(path, base=base)
    except FileNotFoundError:
        raise BTFError(f"{path} does not exist: the kernel was built without "
                       "CONFIG_DEBUG_INFO_BTF (or the module has no BTF)") from None


def load_kernel_spec(module: str | None = None) -> Spec:
    """The kernel's BTF: vmlinux, or the split spec of *module*.

    A module's spec is split from vmlinux: its type ids continue after the
    last vmlinux id, and lookups fall back to vmlinux types. Both are cached.
    """
    name = module or "vmlinux"
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"bad kernel module name {module!r}")
    spec = _cache.get(name)
    if spec is not None:
        return spec
    base = load_kernel_spec() if module and module != "vmlinux" else None
    with _lock:
        spec = _cache.get(name)
        if spec is None:
            spec = _parse(os.path.join(BTF_DIR, name), base)
            _cache[name] = spec
    return spec


def kernel_module_names() -> list[str]:
    """Names of the modules that have BTF in this kernel (may be empty)."""
    try:
        names = os.listdir(BTF_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n != "vmlinux")


def flush_kernel_specs() -> None:
    """Forget the cached kernel specs; the next call reads them again."""
    with _lock:
        _cache.clear()
