"""Programs: :class:`ProgramSpec` (a description) and :class:`Program` (loaded).

Loading follows one policy: try without a verifier log (fast, and the log
buffer costs memory); if the kernel refuses, load again with a log so the
:class:`VerifierError` explains itself, growing the buffer until the whole log
fits. A program that passes keeps its log only when asked (``log_level``).

Test runs (BPF_PROG_TEST_RUN) are :meth:`ProgramBase.test_run`, in C
(``fastbpf._core``); the Python class tells it, once at construction, how the
kernel runs its type (raw tracepoint and syscall programs take no repeat
count, syscall programs write their context back).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import struct
from typing import Any, Mapping

import numpy as np

from . import _core, features
from ._core import ProgramBase, TestRunResult
from .enums import AttachType, ProgramFlags, ProgramType, StatsType
from .errors import BPFError, VerifierError, target_not_found_error
from .pin import Pinnable

__all__ = ["ProgramSpec", "Program", "ProgramInfo", "TestRunResult", "program_ids",
           "enable_stats", "StatsHandle"]

#: First verifier log buffer; grown (to the size the kernel asks for, or x4)
#: up to MAX_LOG_SIZE while the kernel says ENOSPC.
DEFAULT_LOG_SIZE = 1 << 16
#: The kernel refuses log buffers of UINT32_MAX >> 2 bytes or more.
MAX_LOG_SIZE = (1 << 30) - 1

# How BPF_PROG_TEST_RUN treats each type (see ProgramBase.test_run).
_RUN_NORMAL, _RUN_ONCE, _RUN_SYSCALL = (_core.RUN_KIND_NORMAL, _core.RUN_KIND_ONCE,
                                        _core.RUN_KIND_SYSCALL)
# Types whose test run rejects a repeat count and a ctx_out (EINVAL): the
# kernel runs them exactly once and does not time them.
_RUN_ONCE_TYPES = frozenset({ProgramType.RAW_TRACEPOINT, ProgramType.RAW_TRACEPOINT_WRITABLE,
                             ProgramType.TRACING, ProgramType.STRUCT_OPS, ProgramType.LSM})


def _run_kind(t: Any) -> int:
    if t == ProgramType.SYSCALL:
        return _RUN_SYSCALL
    if t in _RUN_ONCE_TYPES:
        return _RUN_ONCE
    return _RUN_NORMAL


_ONLY_ATTACH_TYPE = {
    ProgramType.SK_LOOKUP: AttachType.SK_LOOKUP,
    ProgramType.NETFILTER: AttachType.NETFILTER,
}


def _raise_if_unsupported(spec: ProgramSpec, e: BPFError) -> None:
    """Raise the probe's NotSupportedError when the kernel refused *spec*
    because it lacks the program type or attach type (else return)."""
    missing = features.unsupported_program(
        spec.type, spec.attach_type, e, f"program {spec.name!r}" if spec.name else None)
    if missing is not None:
        raise missing from e


@dataclasses.dataclass
class ProgramSpec:
    """A description of a program, before the verifier sees it.

    ``instructions`` is an :class:`fastbpf.asm.Instructions` (or anything
    with ``encode()``), or the raw bytes of encoded instructions.
    ``attach_type`` is the expected attach type where the program type needs
    one (cgroup_sock_addr, tracing, lsm, ...). ``attach_to`` names the attach
    target of tracing programs, looked up in the kernel's BTF at load time:
    the kernel function for fentry/fexit/fmod_ret, the tracepoint for tp_btf
    (``"sys_enter"``), the hook for lsm (``"file_open"``), the iterator for
    iter (``"task"``). ``flags`` are :class:`ProgramFlags`.
    """

    type: ProgramType
    instructions: Any
    license: str = "GPL"
    name: str | None = None
    attach_type: AttachType | None = None
    attach_to: str | None = None
    flags: int = 0
    #: BTF id of the attach target in the kernel (found from ``attach_to``
    #: when 0).
    attach_btf_id: int = 0
    #: fd of a BTF object holding the target (0: vmlinux), or of the target
    #: program for freplace.
    attach_btf_obj_fd: int = 0
    ifindex: int = 0
    kernel_version: int = 0
    #: BTF describing the program's functions: a loaded ``btf.Handle`` (a
    #: collection's one BTF object, used as it is), a ``btf.Spec`` or raw
    #: BTF bytes (loaded for this program). ``func_info`` and ``line_info``
    #: are then built from the instructions' metadata (``Metadata.func`` /
    #: ``.line``), unless ``func_info`` is given as ``(instruction slot, FUNC
    #: type id)`` pairs. Left empty, fastbpf generates minimal BTF when the
    #: kernel needs it: for programs that pass callbacks (bpf_loop, ...).
    btf: Any = None
    func_info: Any = None
    #: ``(slot, file name offset, line offset, line << 10 | column)``
    #: records; None: built from the instructions' metadata.
    line_info: Any = None
    #: File descriptors the kernel resolves kfunc calls' ``offset`` against
    #: (module BTF objects); None when every kfunc is in vmlinux.
    fd_array: Any = None
    #: The ELF section the program came from (``"xdp"``, ``"tp/syscalls/..."``);
    #: auto-attach reads the target from it.
    section: str = ""
    #: STRUCT_OPS programs only: the index of the member of the kernel
    #: struct (``attach_btf_id``) the program implements. The kernel reads
    #: it from the field it calls expected_attach_type, which is why
    #: ``attach_type`` stays None for these programs.
    struct_ops_member: int | None = None

    def __post_init__(self) -> None:
        self.type = ProgramType(self.type)
        if self.attach_type is None:
            # Types with one possible attach type: fill it in, as the
            # kernel refuses to load them without it (EINVAL, empty log).
            self.attach_type = _ONLY_ATTACH_TYPE.get(self.type)
        elif self.type == ProgramType.STRUCT_OPS:
            raise ValueError("a STRUCT_OPS program has no attach type: give the index of "
                             "the member it implements as struct_ops_member=")
        else:
            self.attach_type = AttachType(self.attach_type)
        if self.struct_ops_member is not None:
            if self.type != ProgramType.STRUCT_OPS:
                raise ValueError(f"struct_ops_member is for STRUCT_OPS programs, not "
                                 f"{self.type.name}")
            self.struct_ops_member = int(self.struct_ops_member)

    def copy(self) -> "ProgramSpec":
        """A copy to edit before loading (instructions copied too)."""
        c = dataclasses.replace(self)
        if hasattr(self.instructions, "copy"):
            c.instructions = self.instructions.copy()
        return c

    def core_relocations(self, target: Any = None, local_btf: Any = None) -> list[Any]:
        """The CO-RE relocations of the instructions, computed against
        *target* (a ``btf.Spec``; None: the running kernel) without patching
        anything: one ``btf.core.CORERelocation`` each.

        *local_btf* is the BTF the records refer to; for a program read from
        an object it is known (the object's BTF) and may be omitted.
        """
        from .btf import core
        from .linker import core_relos
        local = local_btf if local_btf is not None else self.__dict__.get("_local_btf")
        if local is None:
            raise ValueError("pass local_btf: the BTF the CO-RE records refer to")
        return core.calculate_relocations(local, core_relos(self.instructions), target,
                                          program=self.name)

    def resolved(self, maps: Mapping[str, Any] | None = None) -> Any:
        """The instructions with map references bound from *maps*."""
        insns = self.instructions
        if maps and hasattr(insns, "resolve_maps"):
            insns = insns.resolve_maps(maps)
        return insns

    def encode(self, maps: Mapping[str, Any] | None = None) -> bytes:
        """The encoded instructions (map references resolved from *maps*)."""
        insns = self.resolved(maps)
        if isinstance(insns, (bytes, bytearray, memoryview)):
            return bytes(insns)
        raw: bytes = insns.encode()
        return raw


def _func_btf(spec: ProgramSpec, insns: Any) -> tuple[bytes | None, bytes | None]:
    """The BTF blob and packed func_info to load *spec* with, or (None, None).

    The verifier insists on func_info once a program takes the address of one
    of its functions (a callback for bpf_loop, timers, user_ringbuf_drain,
    ...). Hand-written programs have no BTF, so each function is described
    as ``static long f(long, long, long, long, long)`` and the entry point as
    ``long main(void *ctx)``: static functions are not type-checked beyond
    that.
    """
    if spec.btf is not None:
        blob = spec.btf.encode() if hasattr(spec.btf, "encode") else bytes(spec.btf)
        if spec.func_info is None:
            info, _ = ext_info_records(insns, spec.btf)
            return blob, info
        return blob, _pack_func_info(spec.func_info or ())
    if isinstance(insns, (bytes, bytearray, memoryview)) or not hasattr(insns, "symbols"):
        return None, None
    from .asm.opcodes import LD_IMM64, PSEUDO_FUNC
    funcs = {insn.reference for insn in insns
             if insn.reference is not None and insn.opcode == LD_IMM64 and insn.src == PSEUDO_FUNC}
    if not funcs:
        return None, None
    # Once there is func_info, every function needs an entry: the targets
    # of bpf-to-bpf calls as well as of function pointers.
    funcs |= {insn.reference for insn in insns if insn.reference is not None
              and insn.is_pseudo_call}
    symbols = insns.symbols()
    slots = insns.slot_offsets()
    starts = sorted({0} | {slots[symbols[f]] for f in funcs if f in symbols})
    return _static_funcs_btf(len(starts)), _pack_func_info(
        (slot, 4 + 2 * k) for k, slot in enumerate(starts))


def _pack_func_info(pairs: Any) -> bytes | None:
    """``bpf_func_info`` records (two native u32: instruction slot, FUNC type
    id) from *pairs*, or None for none."""
    return b"".join(struct.pack("=II", int(off), int(tid)) for off, tid in pairs) or None


def _expected_attach_type(spec: ProgramSpec) -> int:
    """What BPF_PROG_LOAD's expected_attach_type carries: the attach type,
    or for a STRUCT_OPS program the index of the member it implements."""
    if spec.type == ProgramType.STRUCT_OPS:
        return spec.struct_ops_member or 0
    return int(spec.attach_type) if spec.attach_type is not None else 0


def ext_info_records(insns: Any, btf_spec: Any) -> tuple[bytes | None, bytes | None]:
    """func_info and line_info (native order) from the instructions' metadata.

    *btf_spec* is the ``btf.Spec`` the Func types belong to (or a Handle
    holding it). Offsets are slots of the final, linked program, which is
    why the records are built here and not kept from the object file.
    """
    if isinstance(insns, (bytes, bytearray, memoryview)) or btf_spec is None:
        return None, None
    if hasattr(btf_spec, "spec") and callable(btf_spec.spec):
        btf_spec = btf_spec.spec()
    funcs = []
    lines = []
    slot = 0
    for insn in insns:
        meta = insn.meta
        if meta is not None:
            if meta.func is not None:
                funcs.append(struct.pack("=II", slot, btf_spec.type_id(meta.func)))
            line = meta.line
            if line is not None and len(line.raw) >= 16:
                _, f_off, l_off, lc = struct.unpack_from("=IIII", line.raw, 0)
                lines.append(struct.pack("=IIII", slot, f_off, l_off, lc))
        slot += 2 if insn.opcode == 0x18 else 1
    if funcs and funcs[0][:4] != b"\0\0\0\0":
        # The kernel wants the first record at slot 0; without it, send none.
        funcs = []
    return (b"".join(funcs) or None), (b"".join(lines) if lines and funcs else None)


def _static_funcs_btf(nfuncs: int) -> bytes:
    """BTF: [1] long, [2] void *, [3] proto long(void *ctx), [4] FUNC main,
    then per further function k: [3+2k] proto long(5 x long), [4+2k] FUNC f<k>
    (the ids :func:`_func_btf`'s func_info names)."""
    from . import btf
    long_t = btf.Int("long", 8, btf.IntEncoding.SIGNED)
    main_proto = btf.FuncProto(long_t, [btf.Param("ctx", btf.Pointer(btf.VOID))])
    roots: list[Any] = [long_t, main_proto.params[0].type, main_proto, btf.Func("main", main_proto)]
    for k in range(1, nfuncs):
        proto = btf.FuncProto(long_t, [btf.Param("a", long_t)] * 5)
        roots += [proto, btf.Func(f"f{k}", proto)]
    # from_types keeps the roots in the order given: the ids above.
    return btf.Spec.from_types(roots).encode()


def _read_log(buf: bytearray | None) -> str:
    if not buf:
        return ""
    return bytes(buf).split(b"\0", 1)[0].decode("utf-8", "replace")


# -- attach targets in kernel BTF ------------------------------------------

# (program type, attach type) -> (BTF kind name, name prefix)
_TARGET_RULES = {
    (ProgramType.TRACING, AttachType.TRACE_RAW_TP): ("TYPEDEF", "btf_trace_"),
    (ProgramType.TRACING, AttachType.TRACE_FENTRY): ("FUNC", ""),
    (ProgramType.TRACING, AttachType.TRACE_FEXIT): ("FUNC", ""),
    (ProgramType.TRACING, AttachType.MODIFY_RETURN): ("FUNC", ""),
    (ProgramType.TRACING, AttachType.TRACE_ITER): ("FUNC", "bpf_iter_"),
    (ProgramType.LSM, AttachType.LSM_MAC): ("FUNC", "bpf_lsm_"),
    (ProgramType.LSM, AttachType.LSM_CGROUP): ("FUNC", "bpf_lsm_"),
}


def kernel_btf_id(spec: ProgramSpec) -> int:
    """The vmlinux BTF id of ``spec.attach_to`` for its program/attach type.

    The name may be given with or without the kernel's prefix
    (``"sys_enter"`` or ``"btf_trace_sys_enter"``, ``"file_open"`` or
    ``"bpf_lsm_file_open"``). Raises ValueError when the pair of types takes
    no named target, and :class:`TargetNotFoundError` (ENOENT) when the
    kernel has no such target.
    """
    rule = _TARGET_RULES.get((spec.type, spec.attach_type))  # type: ignore[arg-type]
    if rule is None:
        raise ValueError(f"attach_to={spec.attach_to!r}: a {spec.type.name} program with "
                         f"attach type {getattr(spec.attach_type, 'name', None)} takes no "
                         f"named kernel target (set attach_btf_id yourself)")
    kind_name, prefix = rule
    from . import btf
    from .btf.types import Kind
    kernel = btf.load_kernel_spec()
    name = spec.attach_to or ""
    names = [name] if name.startswith(prefix) else [prefix + name, name]
    for n in names:
        found = kernel.types_by_name(n, Kind[kind_name])
        if found:
            return found[0].id  # type: ignore[return-value]  # kernel types have ids
    raise target_not_found_error(errno.ENOENT, "program load", f"attach target {name!r}",
                                 f"the kernel's BTF has no {kind_name.lower()} named "
                                 f"{' or '.join(map(repr, names))}")


def _map_objects(insns: Any) -> list[Any]:
    """Map objects (not bare fds) that *insns* refer to, each once."""
    out, seen = [], set()
    for insn in insns if not isinstance(insns, (bytes, bytearray, memoryview)) else ():
        m = getattr(insn, "map", None)
        if m is not None and not isinstance(m, int) and id(m) not in seen:
            seen.add(id(m))
            out.append(m)
    return out


class Program(ProgramBase, Pinnable):
    """A program loaded into the kernel, owned through its fd.

    Load one with :meth:`load`, or open an existing one with
    :meth:`from_pin`, :meth:`from_id` or :meth:`from_fd`. ``close()`` (or a
    ``with`` block) releases the fd; pins, links and PROG_ARRAY slots keep
    the kernel object alive on their own.
    """

    def __init__(self, fd: _core.FD, type: ProgramType | int, name: str = "",
                 spec: ProgramSpec | None = None, log: str = "", maps: list[Any] | None = None) -> None:
        """Take ownership of *fd*, a ``fastbpf.FD`` (fastbpf's own modules
        build programs this way; users call :meth:`load` or a ``from_*``)."""
        if not isinstance(fd, _core.FD):
            raise TypeError("Program() takes an owned fastbpf.FD; use Program.from_fd(fd) "
                            "for a descriptor you keep")
        if type.__class__ is not ProgramType:  # (the enum call costs a µs per program)
            try:
                type = ProgramType(type)
            except ValueError:
                pass
        self._bind(fd, _run_kind(type))
        self.type: ProgramType | int = type
        self.name = name
        self.spec = spec
        #: The verifier log of a successful load (when asked with log_level).
        self.log = log
        #: Map objects the instructions referred to. The kernel holds its own
        #: reference to every map a program uses, so closing a Map does not
        #: break the program; this keeps the Python objects usable alongside.
        self.maps = maps if maps is not None else []

    @classmethod
    def load(cls, spec: ProgramSpec, *, log_level: int = 0, log_size: int | None = None,
             maps: Mapping[str, Any] | None = None) -> "Program":
        """Load *spec* into the kernel.

        *maps* resolves map references by name (``asm.load_map_ptr(R1,
        "counters")`` with ``maps={"counters": m}``); the Map objects used
        are kept in ``.maps``. *log_level* > 0 keeps the verifier log of a
        successful load in ``.log`` (1: basic, 2: every instruction, 4:
        statistics). *log_size* is the first log buffer's size; it grows to
        whatever the kernel needs.

        Raises :class:`VerifierError` with the whole log when the verifier
        refuses the program, or a plain :class:`BPFError` (with the errno)
        when the kernel refuses it without a word (e.g. EPERM for fentry on
        kernels that cannot patch their text).
        """
        if not isinstance(spec, ProgramSpec):
            raise TypeError(f"Program.load takes a ProgramSpec, not {type(spec).__name__}")
        insns = spec.resolved(maps)
        used_maps = _map_objects(insns)
        raw = bytes(insns) if isinstance(insns, (bytes, bytearray, memoryview)) else insns.encode()
        if not raw or len(raw) % 8:
            raise ValueError("a program needs at least one whole instruction (8 bytes)")
        btf_id = spec.attach_btf_id
        if not btf_id and spec.attach_to:
            btf_id = kernel_btf_id(spec)
        flags = int(spec.flags)
        if spec.type == ProgramType.SYSCALL:
            flags |= ProgramFlags.SLEEPABLE  # the kernel accepts no other kind
        kwargs: dict[str, Any] = dict(
            name=spec.name, prog_flags=flags,
            expected_attach_type=_expected_attach_type(spec),
            attach_btf_id=btf_id, attach_prog_fd=spec.attach_btf_obj_fd,
            prog_ifindex=spec.ifindex, kern_version=spec.kernel_version,
        )
        if spec.fd_array is not None:
            kwargs["fd_array"] = np.asarray(spec.fd_array, dtype=np.int32)
        line_info = None
        if spec.btf is not None and hasattr(spec.btf, "fd") and hasattr(spec.btf, "spec"):
            # A loaded btf.Handle (a collection's): use it as it is.
            btf_fd = None
            if spec.func_info is None:
                func_info, line_info = ext_info_records(insns, spec.btf)
            elif isinstance(spec.func_info, (bytes, bytearray, memoryview)):
                func_info = bytes(spec.func_info) or None  # already packed records
            else:
                func_info = _pack_func_info(spec.func_info)
            kwargs["prog_btf_fd"] = spec.btf.fd
        else:
            btf_blob, func_info = _func_btf(spec, insns)
            try:
                btf_fd = _core.btf_load(btf_blob) if btf_blob is not None else None
            except BPFError as e:   # a kernel without BTF_LOAD: say so, not "bad BTF"
                missing = features.unsupported_command(18, e, "btf load",
                                                       f"program {spec.name!r}")
                if missing is not None:
                    raise missing from None
                raise
            if btf_fd is not None:
                kwargs["prog_btf_fd"] = btf_fd.fd
                if spec.func_info is None and spec.btf is not None:
                    _, line_info = ext_info_records(insns, spec.btf)
        if isinstance(spec.line_info, (bytes, bytearray, memoryview)):
            line_info = bytes(spec.line_info) or None
        elif spec.line_info is not None:
            line_info = b"".join(struct.pack("=IIII", *map(int, r)) for r in spec.line_info) or None
        try:
            if func_info:
                kwargs.update(func_info=func_info, func_info_rec_size=8)
            if line_info and func_info:
                kwargs.update(line_info=line_info, line_info_rec_size=16)
            return cls._load_with_log(spec, raw, kwargs, log_level, log_size, used_maps)
        except BPFError as e:
            _raise_if_unsupported(spec, e)
            raise
        finally:
            if btf_fd is not None:
                btf_fd.close()  # the program keeps its own reference

    @classmethod
    def _load_linked(cls, spec: ProgramSpec, log_level: int = 0) -> "Program":
        """:meth:`load` for a spec a collection's loader built: instructions
        are bytes, func_info/line_info packed records, ``btf`` the
        collection's loaded Handle, no named attach target. Skips the checks
        and conversions :meth:`load` makes for a user's spec; the kernel's
        refusals are explained the same way."""
        _, raw, _, kwargs = cls._linked_args(spec)
        try:
            return cls._load_with_log(spec, raw, kwargs, log_level, None, [])
        except BPFError as e:
            _raise_if_unsupported(spec, e)
            raise

    @staticmethod
    def _linked_args(spec: ProgramSpec) -> tuple[int, bytes, str, dict[str, Any]]:
        """The arguments of ``_core.prog_load`` (without a log) for a spec
        :meth:`_load_linked` takes: ``(prog_type, insns, license, kwargs)``,
        the shape ``_core.prog_load_many`` takes too."""
        flags = int(spec.flags)
        if spec.type == ProgramType.SYSCALL:
            flags |= ProgramFlags.SLEEPABLE
        kwargs: dict[str, Any] = dict(
            name=spec.name, prog_flags=flags,
            expected_attach_type=_expected_attach_type(spec),
            attach_btf_id=spec.attach_btf_id, attach_prog_fd=spec.attach_btf_obj_fd,
            prog_ifindex=spec.ifindex, kern_version=spec.kernel_version,
            prog_btf_fd=spec.btf.fd)
        if spec.fd_array is not None:
            kwargs["fd_array"] = np.asarray(spec.fd_array, dtype=np.int32)
        if spec.func_info:
            kwargs.update(func_info=spec.func_info, func_info_rec_size=8)
            if spec.line_info:
                kwargs.update(line_info=spec.line_info, line_info_rec_size=16)
        return int(spec.type), spec.instructions, spec.license, kwargs

    @classmethod
    def _from_linked(cls, spec: ProgramSpec, fd: _core.FD) -> "Program":
        """The Program owning *fd*, which a batch load of *spec* (built by
        :meth:`_linked_args`) returned."""
        return cls(fd, spec.type, spec.name or "", spec)

    @classmethod
    def _load_with_log(cls, spec: ProgramSpec, raw: bytes, kwargs: dict[str, Any],
                       log_level: int, log_size: int | None,
                       used_maps: list[Any]) -> "Program":
        size = max(int(log_size or DEFAULT_LOG_SIZE), 128)
        level = int(log_level)
        first_error: BPFError | None = None
        while True:
            buf = bytearray(size) if level else None
            try:
                fd, _ = _core.prog_load(int(spec.type), raw, spec.license,
                                        log_level=level, log_buf=buf, **kwargs)
            except VerifierError as e:
                if e.errno == errno.ENOSPC and size < MAX_LOG_SIZE:
                    # The kernel (6.4+) says how big the whole log is.
                    need = getattr(e, "log_true_size", 0) or 0
                    size = min(MAX_LOG_SIZE, max(size * 4, need + 1))
                    continue
                if first_error is not None and not e.log.strip():
                    # The retry with a log learned nothing: the plain error
                    # keeps its errno-specific class (PermissionError, ...).
                    raise first_error from None
                raise
            except BPFError as e:
                if level == 0 and e.errno in (errno.EACCES, errno.EINVAL, errno.EPERM,
                                              errno.E2BIG, errno.ENOSPC, errno.EFAULT,
                                              errno.ENOENT):
                    first_error = e
                    level = 1  # again, with a log that says why
                    continue
                raise
            return cls(fd, spec.type, spec.name or "", spec,
                       _read_log(buf) if log_level else "", used_maps)

    @classmethod
    def from_fd(cls, fd: int) -> "Program":
        """Open the program behind *fd* (duplicated; the caller keeps *fd*)."""
        return cls._from_owned(_core.dup_fd(int(fd)))

    @classmethod
    def from_pin(cls, path: str | os.PathLike[str]) -> "Program":
        """Open the program pinned at *path*; :meth:`unpin` then removes that pin."""
        p = cls._from_owned(_core.obj_get(os.fspath(path)),
                            f"the object pinned at {os.fspath(path)!r}")
        p._remember_pin(path)
        return p

    @classmethod
    def from_id(cls, prog_id: int) -> "Program":
        """Open the program with kernel id *prog_id*."""
        return cls._from_owned(_core.prog_get_fd_by_id(int(prog_id)))

    @classmethod
    def _from_owned(cls, fd: _core.FD, what: str | None = None) -> "Program":
        try:
            kind = _core.fd_kind(fd.fd)
            if kind not in ("prog", None):
                is_ = {"map": "a BPF map", "link": "a BPF link", "btf": "a BTF object"}.get(
                    kind, "not a BPF object")
                raise ValueError(f"{what or f'fd {fd.fd}'} is {is_}, not a BPF program")
            info = _core.prog_info(fd.fd)
        except BaseException:
            fd.close()
            raise
        return cls(fd, info["type"], info["name"])

    @property
    def id(self) -> int:
        """The kernel's id of this program."""
        return int(_core.prog_info(self._fd.fd)["id"])

    def __enter__(self) -> "Program":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        t = self.type.name if isinstance(self.type, ProgramType) else self.type
        return f"<Program {self.name!r} {t} {'closed' if self.closed else f'fd={self._fd.fd}'}>"

    def clone(self) -> "Program":
        """A second Program object for the same kernel program (a dup'ed fd)."""
        return Program(self._fd.dup(), self.type, self.name, self.spec, self.log, list(self.maps))


    def info(self) -> "ProgramInfo":
        """The kernel's view of the program (id, type, tag, maps, run stats).

        ``run_cnt`` and ``run_time_ns`` only count while statistics are on
        (:func:`enable_stats`, or the ``kernel.bpf_stats_enabled`` sysctl).
        """
        return ProgramInfo.from_fd(self.fd)

    def xlated(self) -> Any:
        """The instructions as the kernel rewrote them (:class:`asm.Instructions`)."""
        from .asm import Instructions
        return Instructions.decode(_core.prog_xlated_insns(self.fd))


@dataclasses.dataclass(frozen=True)
class ProgramInfo:
    """What the kernel says about a program (BPF_OBJ_GET_INFO_BY_FD)."""

    id: int
    type: ProgramType | int
    name: str
    #: The program's tag: a hash of its instructions, as bpftool shows it.
    tag: str
    map_ids: list[int]
    #: Runs and total run time, counted only while statistics are enabled.
    run_cnt: int = 0
    run_time_ns: int = 0
    #: Load time in ns since boot.
    load_time: int = 0
    created_by_uid: int = 0
    gpl_compatible: bool = False
    btf_id: int = 0
    verified_insns: int = 0
    jited_prog_len: int = 0
    xlated_prog_len: int = 0
    recursion_misses: int = 0
    attach_btf_obj_id: int = 0
    attach_btf_id: int = 0
    ifindex: int = 0

    @classmethod
    def from_fd(cls, fd: int) -> ProgramInfo:
        """What the kernel says about the program behind the descriptor *fd*."""
        i = _core.prog_info(fd)
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in i.items() if k in fields}
        try:
            kw["type"] = ProgramType(kw["type"])
        except ValueError:
            pass
        return cls(**kw)


def program_ids() -> list[int]:
    """Ids of every program in the kernel, ascending."""
    return _core.prog_ids()



class StatsHandle:
    """Kernel run-time statistics, on while this object is open.

    Returned by :func:`enable_stats`; close it (or leave the ``with``
    block) to give the kernel's counter back.
    """

    def __init__(self, type: StatsType = StatsType.RUN_TIME) -> None:
        self.type = StatsType(type)
        try:
            self._fd = _core.enable_stats(int(self.type))
        except BPFError as e:
            missing = features.unsupported_command(32, e, "enable stats")  # BPF_ENABLE_STATS
            if missing is not None:
                raise missing from None
            raise

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self._fd.closed

    def close(self) -> None:
        """Stop holding statistics on (they stay on while anyone else does)."""
        self._fd.close()

    def __enter__(self) -> "StatsHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<StatsHandle {self.type.name} {'closed' if self.closed else 'on'}>"


def enable_stats(type: StatsType = StatsType.RUN_TIME) -> StatsHandle:
    """Turn on the kernel's per-program run statistics (BPF_ENABLE_STATS).

    ``with fastbpf.enable_stats(): ...`` makes :meth:`Program.info` report
    ``run_cnt`` and ``run_time_ns`` for runs inside the block. The switch is
    reference-counted by the kernel and scoped to the returned handle's fd,
    so it never touches the global ``kernel.bpf_stats_enabled`` sysctl that
    other processes share.
    """
    return StatsHandle(type)
