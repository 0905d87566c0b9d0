"""The exception hierarchy of fastbpf.

Every failed bpf-related system call becomes a :class:`BPFError`, an
:class:`OSError` that names the operation (``op``) and, where there is one, the
object it was applied to. Where a Python built-in exception says the same thing
better (``PermissionError`` for EPERM, ``FileNotFoundError`` for ENOENT, ...)
the raised class derives from both, so ``except PermissionError`` works.

Malformed input files raise :class:`ELFError` or :class:`BTFError`, both
``ValueError`` subclasses: they are caught before anything reaches the kernel.
"""

from __future__ import annotations

from typing import Any

import errno as _errno
import os

__all__ = [
    "BPFError",
    "VerifierError",
    "CORERelocationError",
    "NotSupportedError",
    "BTFError",
    "BTFLoadError",
    "ELFError",
    "ClosedError",
    "TargetNotFoundError",
    "MapIncompatibleError",
    "ENOTSUPP",
    "strerror",
    "bpf_error",
    "not_supported_error",
    "target_not_found_error",
]

#: Linux-internal "operation not supported" (524). It leaks to user space
#: from several bpf commands and is missing from Python's ``errno`` module.
ENOTSUPP = 524

_EXTRA_STRERROR = {ENOTSUPP: "Operation not supported (ENOTSUPP)"}


def strerror(code: int) -> str:
    """Return the message for *code*, knowing Linux-internal errnos too."""
    if code in _EXTRA_STRERROR:
        return _EXTRA_STRERROR[code]
    return os.strerror(code)


def _errno_name(code: int) -> str:
    if code == ENOTSUPP:
        return "ENOTSUPP"
    return _errno.errorcode.get(code, str(code))


class BPFError(OSError):
    """A bpf(2) (or perf_event_open, mmap, ...) system call failed.

    Attributes:
        errno: the error number the kernel returned.
        op: the operation, e.g. ``"map create"`` or ``"map lookup"``.
        obj: a short description of the object involved (``map 'flows'``),
            or ``None``.
        hint: an explanation of the likely cause, or ``None``.
    """

    errno: int  # always set (OSError allows None)
    count: int  # set on batch operations' errors only: entries done before the error

    def __init__(self, code: int, op: str, obj: str | None = None,
                 hint: str | None = None) -> None:
        self.op = op
        self.obj = obj
        self.hint = hint
        super().__init__(code, strerror(code))

    def __str__(self) -> str:
        where = f"{self.op} {self.obj}" if self.obj else self.op
        text = f"{where}: {strerror(self.errno)} [{_errno_name(self.errno)}]"
        # Batch operations say how many entries were done before the error.
        count = getattr(self, "count", None)
        extra = [self.hint] if self.hint else []
        if count is not None:
            extra.append(f"count={count}")
        if extra:
            text += f" ({'; '.join(extra)})"
        return text

    def __reduce__(self) -> Any:
        return (type(self), (self.errno, self.op, self.obj, self.hint))


class VerifierError(BPFError):
    """The verifier rejected a program.

    ``log`` holds the complete verifier log; ``str()`` shows the last lines,
    which are nearly always the ones that say why.
    """

    def __init__(self, code: int, op: str, obj: str | None = None, log: str = "",
                 hint: str | None = None):
        self.log = log
        super().__init__(code, op, obj, hint)

    def __str__(self) -> str:
        head = super().__str__()
        lines = [ln for ln in self.log.rstrip("\n").splitlines() if ln.strip()]
        if not lines:
            return head + " (the verifier gave no log)"
        tail = lines[-6:]
        more = "" if len(lines) <= len(tail) else f"\n  ... ({len(lines) - len(tail)} earlier lines in .log)"
        return head + more + "\n  " + "\n  ".join(tail)

    def __reduce__(self) -> Any:
        return (type(self), (self.errno, self.op, self.obj, self.log, self.hint))


class CORERelocationError(VerifierError):
    """A CO-RE relocation could not be applied.

    Raised before load for relocations that cannot be resolved safely
    (ambiguous candidates, an instruction that does not hold the value the
    relocation expects), and instead of a bare :class:`VerifierError` when
    the verifier rejects a program at an instruction that an unsatisfiable
    relocation poisoned. ``hint`` names the relocation, its local type and
    field path; ``relocation`` is the
    :class:`fastbpf.btf.core.CORERelocation` (None when unknown); ``log``
    is the verifier log, if the verifier ran.
    """

    def __init__(self, code: int, op: str = "CO-RE relocation", obj: str | None = None,
                 log: str = "", hint: str | None = None, relocation: Any = None) -> None:
        self.relocation = relocation
        super().__init__(code, op, obj, log, hint)

    def __str__(self) -> str:
        if self.log:
            return VerifierError.__str__(self)
        return BPFError.__str__(self)

    def __reduce__(self) -> Any:
        return (type(self), (self.errno, self.op, self.obj, self.log, self.hint))


class NotSupportedError(BPFError):
    """The running kernel lacks a feature: the message says which one."""

    probe: Any  # the fastbpf.features probe that said no, when one made this error

    def __init__(self, code: int, op: str, obj: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(code, op, obj, hint)


class TargetNotFoundError(BPFError, LookupError):
    """What an attachment or a load names does not exist: a tracepoint, a
    kernel or user-space function, an attach target in the kernel's BTF, a
    network interface, a struct_ops member.

    Always made by :func:`target_not_found_error`, so it is also the
    built-in ``OSError`` subclass of its errno (``FileNotFoundError`` for
    ENOENT) and, for names looked up in a table (ELF symbols, struct
    members), a ``KeyError``.
    """


class MapIncompatibleError(BPFError):
    """A pinned map differs from the spec that would reuse it.

    ``fields`` maps each differing field to ``(spec's value, map's value)``.
    """

    def __init__(self, obj: str | None = None, fields: dict[str, tuple[Any, Any]] | None = None,
                 hint: str | None = None) -> None:
        self.fields = dict(fields or {})
        diff = ", ".join(f"{k}: spec {a!r}, map {b!r}" for k, (a, b) in self.fields.items())
        super().__init__(_errno.EINVAL, "map reuse", obj, hint or (diff or None))

    def __reduce__(self) -> Any:
        return (type(self), (self.obj, self.fields, None))


class ClosedError(ValueError):
    """An operation was attempted on a closed object (map, program, reader)."""


class BTFError(ValueError):
    """BTF data is malformed, unsupported, or holds no such type."""


class BTFLoadError(BTFError, BPFError):
    """The kernel refused a BTF blob (BPF_BTF_LOAD); ``log`` is its log."""

    def __init__(self, code: int, op: str = "btf load", obj: str | None = None, log: str = ""):
        self.log = log
        BPFError.__init__(self, code, op, obj)

    def __str__(self) -> str:
        head = BPFError.__str__(self)
        lines = [ln for ln in self.log.splitlines() if ln.strip()]
        return head + ("\n  " + "\n  ".join(lines[-6:]) if lines else "")

    def __reduce__(self) -> Any:
        return (type(self), (self.errno, self.op, self.obj, self.log))


class ELFError(ValueError):
    """An ELF object file is malformed or uses something fastbpf cannot load."""


# errno -> the built-in OSError subclass that means the same thing.
_BUILTIN_FOR_ERRNO = {
    _errno.EPERM: PermissionError,
    _errno.EACCES: PermissionError,
    _errno.ENOENT: FileNotFoundError,
    _errno.EEXIST: FileExistsError,
    _errno.EAGAIN: BlockingIOError,
    _errno.EINTR: InterruptedError,
    _errno.ESRCH: ProcessLookupError,
    _errno.ENOTDIR: NotADirectoryError,
    _errno.EISDIR: IsADirectoryError,
}
_NOT_SUPPORTED = {_errno.EOPNOTSUPP, ENOTSUPP}
_combined: dict[tuple[type, ...], type] = {}


def _combine(base: type, *builtins: type) -> type:
    key = (base, *builtins)
    cls = _combined.get(key)
    if cls is None:
        cls = type(base.__name__, (base, *builtins), {"__module__": base.__module__,
                                                      "__doc__": base.__doc__})
        _combined[key] = cls
    return cls


def not_supported_error(code: int, op: str, obj: str | None = None,
                        hint: str | None = None) -> NotSupportedError:
    """A :class:`NotSupportedError` that is also the built-in ``OSError``
    subclass of *code* (a kernel that refuses a feature with EPERM gives an
    error that is both ``NotSupportedError`` and ``PermissionError``)."""
    builtin = _BUILTIN_FOR_ERRNO.get(code)
    cls: type = _combine(NotSupportedError, builtin) if builtin is not None else NotSupportedError
    err: NotSupportedError = cls(code, op, obj, hint)
    return err


def target_not_found_error(code: int, op: str, obj: str | None = None,
                           hint: str | None = None, *,
                           key_error: bool = False) -> TargetNotFoundError:
    """A :class:`TargetNotFoundError` for *obj*, also the built-in ``OSError``
    subclass of *code* (ENOENT: ``FileNotFoundError``; ENODEV for network
    interfaces) and, with *key_error*, a ``KeyError`` (names looked up in a
    symbol table or a struct)."""
    extra: tuple[type, ...] = ()
    builtin = _BUILTIN_FOR_ERRNO.get(code)
    if builtin is not None:
        extra += (builtin,)
    if key_error:
        extra += (KeyError,)
    cls: type = _combine(TargetNotFoundError, *extra) if extra else TargetNotFoundError
    err: TargetNotFoundError = cls(code, op, obj, hint)
    return err


def bpf_error(code: int, op: str, obj: str | None = None, hint: str | None = None) -> BPFError:
    """Build the exception for a failed call: the class follows the errno.

    EOPNOTSUPP and ENOTSUPP give :class:`NotSupportedError`; errnos with a
    built-in meaning (EPERM, ENOENT, EEXIST, ...) give a class that is both a
    :class:`BPFError` and that built-in ``OSError`` subclass.
    """
    base: type = NotSupportedError if code in _NOT_SUPPORTED else BPFError
    builtin = _BUILTIN_FOR_ERRNO.get(code)
    if builtin is not None:
        base = _combine(base, builtin)
    if code == _errno.EPERM and hint is None:
        hint = "fastbpf needs root or CAP_BPF; unprivileged BPF may be disabled"
    err: BPFError = base(code, op, obj, hint)
    return err
