"""Linking one program of a collection: subprograms, externs, CO-RE.

* **Subprograms.** A program's instructions refer to the functions it calls
  (bpf-to-bpf calls, callbacks) by label. :func:`link_program` appends each
  function it reaches, once, after the program, so labels resolve when the
  program is encoded. Metadata (func/line info, CO-RE) travels with the
  instructions, which is why func_info and line_info are computed from the
  linked program and never copied from the object.
* **.kconfig.** :func:`kconfig_contents` fills the ``.kconfig`` map's value:
  ``LINUX_KERNEL_VERSION``, ``LINUX_HAS_BPF_COOKIE``, ``LINUX_HAS_SYSCALL_WRAPPER``
  and ``CONFIG_*`` from ``/proc/config.gz`` or ``/boot/config-$(uname -r)``.
* **.ksyms.** :func:`resolve_externs` turns typed ksyms into ``ld_imm64``
  of ``PSEUDO_BTF_ID``, typeless ones into the address from
  ``/proc/kallsyms``, and kfunc calls into the kfunc's BTF id (vmlinux or a
  module, whose BTF object goes into ``fd_array``). ``__weak`` externs that
  are absent become 0.
* **CO-RE.** :func:`apply_core` is the one call site of
  :func:`fastbpf.btf.core.relocate_instructions`.
"""

from __future__ import annotations

import errno
import functools
import gzip
import os
import re
from typing import Any, Mapping

import numpy as np

from . import _core
from .asm.instruction import Instructions
from .asm.opcodes import LD_IMM64, PSEUDO_BTF_ID, PSEUDO_FUNC
from .errors import BPFError, ELFError, not_supported_error, target_not_found_error

__all__ = ["link_program", "kconfig_contents", "resolve_externs", "apply_core",
           "read_kconfig"]

_CALL = 0x85


def link_program(insns: Instructions, functions: Mapping[str, Any]) -> Instructions:
    """*insns* followed by every function it reaches, each once.

    *functions* maps a label to the function's Instructions (or a callable
    returning them, for lazy decoding). Labels the program defines itself
    win over *functions*.
    """
    out = Instructions(insns)
    have = {i.symbol for i in out if i.symbol is not None}
    pending = [out]
    while pending:
        block = pending.pop()
        for insn in block:
            ref = insn.reference
            if ref is None or ref in have:
                continue
            if not (insn.opcode == _CALL and insn.src == 1) and not (
                    insn.opcode == LD_IMM64 and insn.src == PSEUDO_FUNC):
                continue
            fn = functions.get(ref)
            if fn is None:
                raise ELFError(f"program calls {ref!r}, which is not a function of the object")
            body = fn() if callable(fn) else fn
            have.add(ref)
            out.extend(body)
            pending.append(body)
    return out


# -- CO-RE ------------------------------------------------------------------------

def core_relos(insns: Instructions) -> list[tuple[int, Any]]:
    """``(instruction index, btf.CoreRelo)`` pairs from the metadata."""
    return [(i, insn.meta.core_relo) for i, insn in enumerate(insns)
            if insn.meta is not None and insn.meta.core_relo is not None]


def apply_core(local_spec: Any, insns: Instructions, target: Any, program: str,
               cand_cache: dict[Any, Any] | None = None) -> list[Any]:
    """Apply the program's CO-RE relocations in place; returns their results.

    The one call site of ``fastbpf.btf.core.relocate_instructions(local_spec,
    insns, relos, target)`` (*target*: a ``btf.Spec``, or None for the
    running kernel); *cand_cache* is shared by the programs of one object,
    as libbpf shares its candidate cache.
    """
    relos = core_relos(insns)
    if not relos:
        return []
    try:
        from .btf import core
    except ImportError:
        raise not_supported_error(errno.EOPNOTSUPP, "CO-RE relocations", f"program {program!r}",
                                  f"{len(relos)} CO-RE relocation(s), and fastbpf.btf.core "
                                  f"is not available yet") from None
    return core.relocate_instructions(local_spec, insns, relos, target, cand_cache=cand_cache,
                                      program=program)


# -- .kconfig -------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def read_kconfig(path: str | None = None) -> dict[str, str]:
    """The kernel configuration as ``{"CONFIG_X": "y"}`` ({} if none is found)."""
    paths = [path] if path else ["/proc/config.gz", f"/boot/config-{os.uname().release}"]
    for p in paths:
        try:
            if p.endswith(".gz"):
                with gzip.open(p, "rt", errors="replace") as f:
                    text = f.read()
            else:
                with open(p, errors="replace") as f:
                    text = f.read()
        except (OSError, EOFError):
            continue
        out = {}
        for line in text.splitlines():
            if line.startswith("CONFIG_") and "=" in line:
                k, v = line.split("=", 1)
                out[k] = v
        return out
    return {}


def _kernel_version() -> int:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", os.uname().release)
    if not m:
        return 0
    a, b, c = (int(x or 0) for x in m.groups())
    return (a << 16) | (b << 8) | min(c, 255)


def _kconfig_value(name: str, raw: str | None, t: Any, size: int) -> bytes | None:
    """The bytes of one .kconfig extern (None when absent)."""
    if raw is None:
        return None
    from . import btf
    inner = t
    while isinstance(inner, (btf.Typedef, btf.Const, btf.Volatile)):
        inner = inner.type
    if isinstance(inner, btf.Array):  # char[N]: a string
        if not (raw.startswith('"') and raw.endswith('"')):
            raise ELFError(f".kconfig {name}: {raw!r} is not a string")
        s = raw[1:-1].encode()[:size - 1]
        return s + bytes(size - len(s))
    if isinstance(inner, btf.Enum) or (isinstance(inner, btf.Int) and raw in "ynm"
                                       and len(raw) == 1):
        # bool or enum libbpf_tristate: y=1, m=2, n=0
        v = {"y": 1, "n": 0, "m": 2}.get(raw)
        if v is None:
            raise ELFError(f".kconfig {name}: {raw!r} is not a tristate")
        if isinstance(inner, btf.Int) and inner.is_bool and v == 2:
            raise ELFError(f".kconfig {name}: 'm' does not fit a bool")
        return v.to_bytes(size, "little")
    try:
        v = int(raw, 0)
    except ValueError:
        raise ELFError(f".kconfig {name}: {raw!r} is not a number") from None
    signed = isinstance(inner, btf.Int) and inner.signed
    try:
        return v.to_bytes(size, "little", signed=signed)
    except OverflowError:
        raise ELFError(f".kconfig {name}: {v} does not fit {size} bytes") from None


def kconfig_contents(externs: Mapping[str, tuple[int, int, Any, bool]], size: int,
                     config: Mapping[str, str] | None = None) -> bytearray:
    """The ``.kconfig`` map value. *externs*: name -> (offset, size, type, weak)."""
    cfg = dict(read_kconfig() if config is None else config)
    buf = bytearray(size)
    for name, (off, sz, t, weak) in externs.items():
        if name == "LINUX_KERNEL_VERSION":
            raw: str | None = str(_kernel_version())
        elif name == "LINUX_HAS_BPF_COOKIE":
            raw = "1"  # every kernel with BTF-typed externs has bpf_get_attach_cookie
        elif name == "LINUX_HAS_SYSCALL_WRAPPER":
            raw = "1" if os.uname().machine in ("x86_64", "aarch64", "s390x") else "0"
        elif name.startswith("CONFIG_"):
            raw = cfg.get(name)
        else:
            raise ELFError(f".kconfig extern {name!r} is not LINUX_* or CONFIG_*")
        val = _kconfig_value(name, raw, t, sz)
        if val is None:
            if not weak:
                raise ELFError(f".kconfig extern {name!r} is not set in this kernel's "
                               f"configuration (declare it __weak to default to 0)")
            continue
        buf[off:off + sz] = val[:sz]
    return buf


# -- .ksyms -----------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _kallsyms() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open("/proc/kallsyms") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] not in out:
                    out[parts[2]] = int(parts[0], 16)
    except OSError:
        pass
    return out


def _module_btf_fd(module: str) -> _core.FD:
    for bid in _core.btf_ids():
        try:
            fd = _core.btf_get_fd_by_id(bid)
        except BPFError:
            continue
        try:
            info = _core.btf_info(fd.fd)
        except BPFError:
            fd.close()
            continue
        if info.get("kernel_btf") and info.get("name") == module:
            return fd
        fd.close()
    raise target_not_found_error(errno.ENOENT, "kfunc lookup", f"module {module!r}",
                                 "its BTF object is not loaded")


def _find_kernel(name: str, kind: str) -> tuple[int, str | None]:
    """(BTF id, module or None) of a kernel FUNC/VAR named *name*; (0, None) if none."""
    from . import btf
    from .btf.types import Kind
    k = Kind[kind]
    found = btf.load_kernel_spec().types_by_name(name, k)
    if found:
        return found[0].id, None  # type: ignore[return-value]  # kernel types have ids
    for mod in btf.kernel_module_names():
        try:
            found = btf.load_kernel_spec(mod).types_by_name(name, k)
        except btf.BTFError:
            continue
        for t in found:
            if t.id >= len(btf.load_kernel_spec()):  # type: ignore[operator]
                return t.id, mod  # type: ignore[return-value]
    return 0, None


def resolve_kfunc(name: str, weak: bool, module_fds: dict[Any, Any],
                  fd_array: list[int]) -> tuple[int, int] | None:
    """(BTF id, fd_array index) of kfunc *name*; None for an absent ``__weak`` one.

    A kfunc in a module puts the module's BTF fd into *fd_array* (index 0
    stays for vmlinux).
    """
    tid, mod = _find_kernel(name, "FUNC")
    if not tid:
        if weak:
            return None
        raise target_not_found_error(errno.ENOENT, "kfunc lookup", f"kfunc {name!r}",
                                     "not in the kernel's BTF (vmlinux or modules)")
    if mod is None:
        return tid, 0
    fd = module_fds.get(mod)
    if fd is None:
        fd = module_fds[mod] = _module_btf_fd(mod)
    if not fd_array:
        fd_array.append(0)  # index 0 means vmlinux
    if fd.fd not in fd_array:
        fd_array.append(fd.fd)
    return tid, fd_array.index(fd.fd)


def resolve_ksym(name: str, kind: str, weak: bool, typed: bool,
                 module_fds: dict[Any, Any]) -> tuple[int, int]:
    """(src register, 64-bit value) of the ld_imm64 loading ksym *name*.

    Typed ksyms load ``PSEUDO_BTF_ID`` (BTF id, module BTF fd in the high
    half); typeless ones the address from /proc/kallsyms. Absent ``__weak``
    ones load 0.
    """
    if typed:
        tid, mod = _find_kernel(name, "VAR")
        if not tid and kind == "kfunc":
            tid, mod = _find_kernel(name, "FUNC")
        if not tid:
            if weak:
                return 0, 0
            raise target_not_found_error(errno.ENOENT, "ksym lookup", f"ksym {name!r}",
                                         "not in the kernel's BTF")
        hi = 0
        if mod is not None:
            fd = module_fds.get(mod)
            if fd is None:
                fd = module_fds[mod] = _module_btf_fd(mod)
            hi = fd.fd
        return PSEUDO_BTF_ID, (hi << 32) | tid
    addr = _kallsyms().get(name, 0)
    if not addr and not weak:
        raise target_not_found_error(errno.ENOENT, "ksym lookup", f"ksym {name!r}",
                                     "not in /proc/kallsyms")
    return 0, addr


def resolve_externs(insns: Instructions, ksyms: Mapping[str, Any],
                    module_fds: dict[str, Any]) -> tuple[Instructions, list[int] | None]:
    """Resolve ksym loads and kfunc calls in place; returns (insns, fd_array).

    *ksyms* maps a name to ``(kind, weak, typed)``, kind ``"ksym"`` or
    ``"kfunc"``. *module_fds* caches module BTF fds (the caller closes them).
    """
    fd_array: list[int] = []
    for i, insn in enumerate(insns):
        ref = insn.reference
        if ref is None or ref not in ksyms:
            continue
        kind, weak, typed = ksyms[ref]
        if kind == "kfunc" and insn.opcode == _CALL:
            found = resolve_kfunc(ref, weak, module_fds, fd_array)
            if found is None:
                # An absent __weak kfunc: the verifier drops the call when it
                # is guarded by bpf_ksym_exists(), as libbpf arranges.
                insns[i] = insn.replace(reference=None, constant=0, src=0, offset=0)
            else:
                insns[i] = insn.replace(constant=found[0], offset=found[1])
            continue
        if insn.opcode != LD_IMM64:
            raise ELFError(f"instruction {i} uses ksym {ref!r} in an unsupported way ({insn})")
        src, value = resolve_ksym(ref, kind, weak, typed, module_fds)
        insns[i] = insn.replace(src=src, constant=value, reference=None)
    return insns, (fd_array or None)


def fd_array_buffer(fds: list[int] | None) -> np.ndarray | None:
    """The fd_array as the kernel reads it (int32)."""
    return None if not fds else np.asarray(fds, dtype=np.int32)
