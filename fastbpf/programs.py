"""Programs: :class:`ProgramSpec` (a description) and :class:`Program` (loaded).

Loading follows one policy: try without a verifier log (fast, and the log
buffer costs memory); if the kernel refuses, load again with a log so the
:class:`VerifierError` explains itself, growing the buffer until the whole log
fits.
"""

from __future__ import annotations

import dataclasses
import errno
import os
from typing import Any, Mapping

import numpy as np

from . import _core
from .enums import AttachType, ProgramFlags, ProgramType
from .errors import BPFError, VerifierError

__all__ = ["ProgramSpec", "Program", "program_ids"]

#: First verifier log buffer; grown (x4) up to MAX_LOG_SIZE while ENOSPC.
DEFAULT_LOG_SIZE = 1 << 16
MAX_LOG_SIZE = 1 << 30 - 1


@dataclasses.dataclass
class ProgramSpec:
    """A description of a program, before the verifier sees it.

    ``instructions`` is an :class:`fastbpf.asm.Instructions` (or anything
    with ``encode()``), or the raw bytes of encoded instructions.
    ``attach_type`` is the expected attach type where the program type needs
    one (cgroup_sock_addr, tracing, ...). ``attach_to`` names the attach
    target (a kernel function for tracing programs).
    """

    type: ProgramType
    instructions: Any
    license: str = "GPL"
    name: str | None = None
    attach_type: AttachType | None = None
    attach_to: str | None = None
    flags: int = 0
    #: BTF id of the attach target in the kernel (tracing, lsm, struct_ops).
    attach_btf_id: int = 0
    #: fd of a BTF object holding the target (0: vmlinux), or of the target
    #: program for freplace.
    attach_btf_obj_fd: int = 0
    ifindex: int = 0
    kernel_version: int = 0

    def __post_init__(self) -> None:
        self.type = ProgramType(self.type)
        if self.attach_type is not None:
            self.attach_type = AttachType(self.attach_type)

    def copy(self) -> "ProgramSpec":
        """A copy to edit before loading (instructions copied too)."""
        c = dataclasses.replace(self)
        if hasattr(self.instructions, "copy"):
            c.instructions = self.instructions.copy()
        return c

    def encode(self, maps: Mapping[str, Any] | None = None) -> bytes:
        """The encoded instructions (map references resolved from *maps*)."""
        insns = self.instructions
        if isinstance(insns, (bytes, bytearray, memoryview)):
            return bytes(insns)
        if maps and hasattr(insns, "resolve_maps"):
            insns = insns.resolve_maps(maps)
        return insns.encode()


def _read_log(buf: bytearray) -> str:
    return bytes(buf).split(b"\0", 1)[0].decode("utf-8", "replace")


class Program:
    """A program loaded into the kernel, owned through its fd.

    Load one with :meth:`load`, or open an existing one with
    :meth:`from_pin`, :meth:`from_id` or :meth:`from_fd`.
    """

    def __init__(self, fd: _core.FD, type: ProgramType | int, name: str = "",
                 spec: ProgramSpec | None = None, log: str = "") -> None:
        self._fd = fd
        try:
            self.type = ProgramType(type)
        except ValueError:
            self.type = type
        self.name = name
        self.spec = spec
        #: The verifier log of a successful load (when asked with log_level).
        self.log = log

    @classmethod
    def load(cls, spec: ProgramSpec, *, log_level: int = 0, log_size: int | None = None,
             maps: Mapping[str, Any] | None = None) -> "Program":
        """Load *spec* into the kernel.

        *log_level* > 0 keeps the verifier log of a successful load in
        ``.log`` (1: basic, 2: every instruction, 4: statistics).
        *maps* resolves map references by name (``asm.load_map_ptr(R1, "x")``).
        Raises :class:`VerifierError` with the whole log when the verifier
        refuses the program.
        """
        if not isinstance(spec, ProgramSpec):
            raise TypeError(f"Program.load takes a ProgramSpec, not {type(spec).__name__}")
        insns = spec.encode(maps)
        if not insns or len(insns) % 8:
            raise ValueError("a program needs at least one instruction")
        kwargs = dict(
            name=spec.name, prog_flags=int(spec.flags),
            expected_attach_type=int(spec.attach_type) if spec.attach_type is not None else 0,
            attach_btf_id=spec.attach_btf_id, attach_prog_fd=spec.attach_btf_obj_fd,
            prog_ifindex=spec.ifindex, kern_version=spec.kernel_version,
        )
        if spec.type == ProgramType.SYSCALL:
            kwargs["prog_flags"] |= ProgramFlags.SLEEPABLE  # the kernel insists
        size = log_size or DEFAULT_LOG_SIZE
        level = log_level
        while True:
            buf = bytearray(size) if level else None
            try:
                fd, _ = _core.prog_load(int(spec.type), insns, spec.license,
                                        log_level=level, log_buf=buf, **kwargs)
                return cls(fd, spec.type, spec.name or "", spec, _read_log(buf) if buf else "")
            except VerifierError as e:
                if e.errno == errno.ENOSPC and size < MAX_LOG_SIZE:
                    size = max(size * 4, getattr(e, "log_true_size", 0) or 0)
                    continue
                raise
            except BPFError as e:
                if level == 0 and e.errno in (errno.EACCES, errno.EINVAL, errno.EPERM, errno.E2BIG):
                    level = 1  # again, with a log that says why
                    continue
                raise

    @classmethod
    def from_fd(cls, fd: int) -> "Program":
        """Open the program behind *fd* (duplicated; the caller keeps *fd*)."""
        return cls._from_owned(_core.dup_fd(int(fd)))

    @classmethod
    def from_pin(cls, path: str | os.PathLike) -> "Program":
        """Open the program pinned at *path*."""
        return cls._from_owned(_core.obj_get(os.fspath(path)))

    @classmethod
    def from_id(cls, prog_id: int) -> "Program":
        """Open the program with kernel id *prog_id*."""
        return cls._from_owned(_core.prog_get_fd_by_id(int(prog_id)))

    @classmethod
    def _from_owned(cls, fd: _core.FD) -> "Program":
        try:
            info = _core.prog_info(fd.fd)
        except BaseException:
            fd.close()
            raise
        return cls(fd, info["type"], info["name"])

    @property
    def fd(self) -> int:
        """The program's file descriptor; raises ClosedError once closed."""
        return self._fd.fd

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self._fd.closed

    def close(self) -> None:
        """Release the program's fd (attachments made through links stay
        until their links close)."""
        self._fd.close()

    def __enter__(self) -> "Program":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        t = self.type.name if isinstance(self.type, ProgramType) else self.type
        return f"<Program {self.name!r} {t} {'closed' if self.closed else f'fd={self._fd.fd}'}>"

    def pin(self, path: str | os.PathLike) -> None:
        """Pin the program at *path* on a bpffs."""
        from .maps import check_pin_path
        _core.obj_pin(self.fd, check_pin_path(path))

    def unpin(self, path: str | os.PathLike) -> None:
        """Remove the pin at *path*."""
        os.unlink(os.fspath(path))

    def test_run(self, data: Any = None, ctx: Any = None, repeat: int = 1,
                 data_out_size: int | None = None, ctx_out_size: int | None = None,
                 flags: int = 0, cpu: int = 0) -> "TestRunResult":
        """Run the program once (or *repeat* times) on *data* (BPF_PROG_TEST_RUN).

        Returns the return value, the output packet as a numpy array the
        kernel wrote into, the output context, and the mean duration in ns.
        """
        din = None if data is None else _as_bytes_view(data)
        out_size = data_out_size if data_out_size is not None else (
            len(din) + 512 if din is not None else 0)
        dout = np.empty(out_size, dtype=np.uint8) if out_size else None
        cin = None if ctx is None else _as_bytes_view(ctx)
        csize = ctx_out_size if ctx_out_size is not None else (len(cin) if cin is not None else 0)
        cout = np.empty(csize, dtype=np.uint8) if csize else None
        retval, dsize, csz, duration = _core.prog_test_run(
            self.fd, din, dout, cin, cout, repeat, flags, cpu)
        return TestRunResult(
            retval=retval,
            data=dout[:min(dsize, out_size)] if dout is not None else np.empty(0, np.uint8),
            ctx=cout[:min(csz, csize)] if cout is not None else None,
            duration_ns=duration)

    def info(self) -> "ProgramInfo":
        """The kernel's view of the program (id, type, tag, maps, run stats)."""
        i = _core.prog_info(self.fd)
        return ProgramInfo(**{f.name: i[f.name] for f in dataclasses.fields(ProgramInfo)
                              if f.name in i})


def _as_bytes_view(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return np.ascontiguousarray(obj).view(np.uint8).reshape(-1)
    return memoryview(obj).cast("B") if not isinstance(obj, (bytes, bytearray)) else obj


@dataclasses.dataclass(frozen=True)
class TestRunResult:
    """The outcome of :meth:`Program.test_run`."""

    __test__ = False  # not a pytest class

    retval: int
    data: np.ndarray
    ctx: np.ndarray | None
    duration_ns: int


@dataclasses.dataclass(frozen=True)
class ProgramInfo:
    """What the kernel says about a program."""

    id: int
    type: int
    name: str
    tag: str
    map_ids: list
    run_cnt: int = 0
    run_time_ns: int = 0
    load_time: int = 0
    created_by_uid: int = 0
    gpl_compatible: bool = False
    btf_id: int = 0
    verified_insns: int = 0
    jited_prog_len: int = 0
    xlated_prog_len: int = 0
    recursion_misses: int = 0


def program_ids() -> list[int]:
    """Ids of every program in the kernel."""
    ids, cur = [], 0
    while (nxt := _core.prog_get_next_id(cur)) is not None:
        ids.append(nxt)
        cur = nxt
    return ids
