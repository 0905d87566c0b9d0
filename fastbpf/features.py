"""Does this kernel have ...? Probes that ask the running kernel, not its version.

Every answer comes from doing the thing once, as small as possible: create a
one-entry map of the type, load a two-instruction program of the type, call
the helper from a program of the type, load a program with the attach type.
Answers are cached for the life of the process (a kernel does not grow
features while running).

Each question comes in three forms::

    features.have_map_type(MapType.ARENA)               # True / False
    features.probe_map_type(MapType.ARENA)              # Probe: .ok, .errno, .reason
    features.require("map_type", MapType.ARENA)         # raises NotSupportedError
    features.skip_reason("helper", ProgramType.XDP, Helper.ringbuf_output)  # str | None

``skip_reason`` is meant for tests: ``if r := skip_reason(...): pytest.skip(r)``;
the string names the feature and the errno the kernel gave.

How an answer is read from the kernel's reply:

* map types: the create succeeds, or fails (EINVAL for a type the kernel
  does not know; the probe sets up what each known type requires).
* program types: the load succeeds, or the kernel refused it before the
  verifier ran (EINVAL with an empty log: unknown type) or refused it
  outright (EPERM: e.g. LSM programs where trampolines are not allowed). A
  rejection *by the verifier* (a log) still means the type exists.
* helpers: absent when the verifier says "unknown func" or "program of this
  type cannot use helper"; present when it gets past the call (any other
  complaint is about the probe's dummy arguments).
* attach types: the load with that ``expected_attach_type`` succeeds (with a
  real target in kernel BTF for tracing and LSM attach types).

One file of about 1,100 lines on purpose: ``require`` and ``skip_reason``
dispatch by name to every probe, and the probes share one loader, one
permission check and one set of dummy programs and targets; split by
family, each part would import the others' private helpers.
"""

from __future__ import annotations

import errno as _errno
import functools
import os
import struct
from typing import Any, NamedTuple

from . import _core, _linkattr, _since
from .enums import AttachType, MapFlags, MapType, ProgramFlags, ProgramType
from .errors import (ENOTSUPP, BPFError, NotSupportedError, VerifierError, bpf_error,
                     not_supported_error, strerror)

__all__ = [
    "Probe", "probe", "require", "skip_reason", "clear_cache",
    "have_map_type", "have_program_type", "have_helper", "have_attach_type",
    "have_kprobe_pmu", "have_uprobe_pmu", "have_trampolines", "have_vmlinux_btf",
    "have_bpf_stats", "have_user_ringbuf",
    "probe_map_type", "probe_program_type", "probe_helper", "probe_attach_type",
    "probe_kprobe_pmu", "probe_uprobe_pmu", "probe_trampolines", "probe_vmlinux_btf",
    "probe_user_ringbuf",
    "probe_bpf_stats",
    "have_link", "probe_link", "have_link_create", "probe_link_create", "unsupported_link",
    "probe_prog_attach", "unsupported_prog_attach",
    "have_cgroup_v2", "probe_cgroup_v2", "cgroup_v2_root", "have_tracefs", "probe_tracefs",
    "have_bpf_command", "probe_bpf_command", "probe_kprobes", "probe_module_btf", "unsupported_command",
]


def _errno_name(code: int) -> str:
    if code == ENOTSUPP:
        return "ENOTSUPP"
    return _errno.errorcode.get(code, str(code))


class Probe(NamedTuple):
    """The answer to one feature question.

    ``ok``: whether the kernel has it. ``feature``: what was asked, in words.
    ``errno``: the kernel's error when absent (0 when present). ``detail``:
    the verifier's or kernel's words, when there are any.
    """

    ok: bool
    feature: str
    errno: int = 0
    detail: str = ""
    since: str = ""

    def __bool__(self) -> bool:
        return self.ok

    @property
    def reason(self) -> str | None:
        """Why the feature is missing (None when present), errno included."""
        if self.ok:
            return None
        text = f"kernel lacks {self.feature}"
        if self.since:
            text += f" (added in Linux {self.since})"
        text += f": {strerror(self.errno)} [{_errno_name(self.errno)}]"
        return text + (f" ({self.detail})" if self.detail else "")

    def error(self, op: str = "feature probe", obj: str | None = None) -> NotSupportedError:
        """A :class:`NotSupportedError` for *op* on *obj* that names the
        missing feature, the kernel version that brought it and the errno
        the probe got. The error's ``probe`` attribute is this probe."""
        hint = f"this kernel lacks {self.feature}"
        if self.since:
            hint += f", added in Linux {self.since}"
        hint += f"; the feature probe got {_errno_name(self.errno)}"
        if self.detail:
            hint += f": {self.detail}"
        err = not_supported_error(self.errno or _errno.EOPNOTSUPP, op,
                                  obj if obj is not None else self.feature, hint)
        err.probe = self
        return err

    def require(self) -> None:
        """Raise :meth:`error` unless the feature is present."""
        if not self.ok:
            raise self.error()


# -- "not allowed" is not "not supported" -----------------------------------------

def _check_permission(code: int) -> None:
    """Raise PermissionError if an EPERM means that this process may not use
    bpf(2) at all, rather than that the kernel refuses one feature (as
    kernels refuse arena maps or trampolines on some hosts): a one-entry
    array map, which every BPF kernel has, must then fail too."""
    if code != _errno.EPERM:
        return
    try:
        _core.map_create(int(MapType.ARRAY), 4, 4, 1).close()
    except BPFError as e:
        if e.errno == _errno.EPERM:
            raise bpf_error(_errno.EPERM, "feature probe", None,
                            "this process may not use bpf(2) at all (it needs root, or "
                            "CAP_BPF plus CAP_PERFMON/CAP_NET_ADMIN); no feature can be "
                            "probed") from None
        raise


# -- small BTF blob (storage maps need key/value BTF ids) ----------------------------

@functools.lru_cache(maxsize=None)
def _int_btf() -> bytes:
    """A BTF blob with one type: ``int`` (id 1, 4 bytes, signed)."""
    from . import btf  # the BTF model is not needed until a probe runs
    return btf.Spec.from_types([btf.Int("int", 4, btf.IntEncoding.SIGNED)]).encode()


def _dummy_ops_value() -> tuple[int, int]:
    """The kernel BTF id and size of ``struct bpf_struct_ops_bpf_dummy_ops``,
    the value of the struct_ops maps the probes create."""
    vid = _kernel_type_id("bpf_struct_ops_bpf_dummy_ops", "STRUCT")
    if not vid:
        raise bpf_error(_errno.ENOENT, "map create", None,
                        "no bpf_struct_ops_bpf_dummy_ops in kernel BTF")
    from . import btf
    return vid, btf.load_kernel_spec().type_by_id(vid).size


@functools.lru_cache(maxsize=None)
def _kernel_type_id(name: str, kind: str) -> int:
    try:
        from . import btf
        from .btf.types import Kind
        found = btf.load_kernel_spec().types_by_name(name, Kind[kind])
    except Exception:  # no vmlinux BTF, or the parser refused it
        return 0
    return int(found[0].id or 0) if found else 0


# -- map types ----------------------------------------------------------------------

_MAP_PARAMS: dict[MapType, dict[str, Any]] = {
    MapType.LPM_TRIE: dict(key_size=8, flags=MapFlags.NO_PREALLOC),
    MapType.STACK_TRACE: dict(value_size=8),
    MapType.CGROUP_STORAGE: dict(key_size=16, value_size=8, max_entries=0),
    MapType.PERCPU_CGROUP_STORAGE: dict(key_size=16, value_size=8, max_entries=0),
    MapType.QUEUE: dict(key_size=0),
    MapType.STACK: dict(key_size=0),
    MapType.BLOOM_FILTER: dict(key_size=0),
    MapType.RINGBUF: dict(key_size=0, value_size=0, max_entries=os.sysconf("SC_PAGE_SIZE")),
    MapType.USER_RINGBUF: dict(key_size=0, value_size=0,
                               max_entries=os.sysconf("SC_PAGE_SIZE")),
    MapType.ARENA: dict(key_size=0, value_size=0, max_entries=1,
                        flags=MapFlags.MMAPABLE),
}
_STORAGE_MAPS = frozenset({MapType.SK_STORAGE, MapType.INODE_STORAGE, MapType.TASK_STORAGE,
                           MapType.CGRP_STORAGE})
_INNER_MAPS = frozenset({MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS})


def _create_probe_map(t: MapType) -> None:
    p = dict(key_size=4, value_size=4, max_entries=1, flags=0)
    p.update(_MAP_PARAMS.get(t, {}))
    extra: dict[str, Any] = {}
    owned: list[Any] = []
    try:
        if t in _INNER_MAPS:
            inner = _core.map_create(int(MapType.ARRAY), 4, 4, 1)
            owned.append(inner)
            extra["inner_map_fd"] = inner.fd
        elif t in _STORAGE_MAPS:
            b = _core.btf_load(_int_btf())
            owned.append(b)
            extra.update(btf_fd=b.fd, btf_key_type_id=1, btf_value_type_id=1)
            p.update(max_entries=0, flags=MapFlags.NO_PREALLOC)
        elif t == MapType.STRUCT_OPS:
            vid, size = _dummy_ops_value()
            b = _core.btf_load(_int_btf())
            owned.append(b)
            extra.update(btf_fd=b.fd, btf_vmlinux_value_type_id=vid)
            p.update(value_size=size)
        fd = _core.map_create(int(t), p["key_size"], p["value_size"], p["max_entries"],
                              int(p["flags"]), None, **extra)
        fd.close()
    finally:
        for o in owned:
            o.close()


@functools.lru_cache(maxsize=None)
def probe_map_type(t: MapType) -> Probe:
    """Can this kernel create maps of type *t*?"""
    t = MapType(t)
    what = f"map type {t.name}"
    since = _since.MAP_TYPE.get(t, "")
    try:
        _create_probe_map(t)
    except BPFError as e:
        _check_permission(e.errno)
        hint = getattr(e, "hint", None) or ""
        if e.errno == _errno.EPERM and hint.startswith("fastbpf needs root"):
            hint = "refused although other maps can be created"
        return Probe(False, what, e.errno, hint, since)
    return Probe(True, what, since=since)


def have_map_type(t: MapType) -> bool:
    """True if this kernel can create maps of type *t*."""
    return probe_map_type(t).ok


# -- program types, helpers, attach types ----------------------------------------------

# The expected attach type (and kernel BTF target) a type needs to load at all.
_DEFAULT_ATTACH: dict[ProgramType, AttachType] = {
    ProgramType.CGROUP_SOCK_ADDR: AttachType.CGROUP_INET4_CONNECT,
    ProgramType.CGROUP_SOCKOPT: AttachType.CGROUP_GETSOCKOPT,
    ProgramType.SK_LOOKUP: AttachType.SK_LOOKUP,
    ProgramType.NETFILTER: AttachType.NETFILTER,
    ProgramType.TRACING: AttachType.TRACE_RAW_TP,
    ProgramType.LSM: AttachType.LSM_MAC,
}
# attach type -> (BTF name, BTF kind) of a target every kernel has.
_BTF_TARGETS: dict[AttachType, tuple[str, str]] = {
    AttachType.TRACE_RAW_TP: ("btf_trace_sys_enter", "TYPEDEF"),
    AttachType.TRACE_FENTRY: ("bpf_fentry_test1", "FUNC"),
    AttachType.TRACE_FEXIT: ("bpf_fentry_test1", "FUNC"),
    AttachType.MODIFY_RETURN: ("bpf_modify_return_test", "FUNC"),
    AttachType.TRACE_ITER: ("bpf_iter_task", "FUNC"),
    AttachType.LSM_MAC: ("bpf_lsm_file_open", "FUNC"),
    AttachType.LSM_CGROUP: ("bpf_lsm_file_open", "FUNC"),
}

# BPF_MOV64_IMM(r0, 0); BPF_EXIT
_RET0 = bytes.fromhex("b700000000000000" "9500000000000000")


def _call(helper: int) -> bytes:
    # call helper; r0 = 0; exit
    return struct.pack("<BBhi", 0x85, 0, 0, int(helper)) + _RET0


# BPF_MOV64_IMM(r0, 2); BPF_EXIT: XDP_PASS, for probes that attach for real.
_RET2 = bytes.fromhex("b700000002000000" "9500000000000000")
# r0 = 1: the only return value some cgroup hooks accept.
_RET1 = bytes.fromhex("b700000001000000" "9500000000000000")


def _probe_insns(ptype: ProgramType) -> bytes:
    if ptype == ProgramType.XDP:
        return _RET2
    if ptype.name.startswith("CGROUP_") or ptype == ProgramType.SOCK_OPS:
        return _RET1
    return _RET0


class _LoadResult(NamedTuple):
    ok: bool
    errno: int
    log: str
    fd: Any = None


def _load(ptype: ProgramType, insns: bytes, attach: AttachType | None,
          keep_fd: bool = False) -> _LoadResult:
    kw: dict[str, Any] = {}
    flags = 0
    if ptype == ProgramType.SYSCALL:
        flags |= ProgramFlags.SLEEPABLE
    if ptype == ProgramType.STRUCT_OPS:
        # bpf_dummy_ops.test_1: the struct's BTF id, member index 0.
        kw["attach_btf_id"] = _kernel_type_id("bpf_dummy_ops", "STRUCT")
        attach = None
    if attach is not None:
        kw["expected_attach_type"] = int(attach)
        target = _BTF_TARGETS.get(attach)
        if target is not None:
            kw["attach_btf_id"] = _kernel_type_id(*target)
            if not kw["attach_btf_id"]:
                return _LoadResult(False, _errno.ENOENT, f"no {target[0]} in kernel BTF")
    buf = bytearray(1 << 16)
    try:
        fd, _ = _core.prog_load(int(ptype), insns, "GPL", log_level=1, log_buf=buf,
                                prog_flags=int(flags), **kw)
    except VerifierError as e:
        return _LoadResult(False, e.errno, e.log)
    except BPFError as e:
        return _LoadResult(False, e.errno, "")
    if keep_fd:
        return _LoadResult(True, 0, "", fd)
    fd.close()
    return _LoadResult(True, 0, "")


def _last_line(log: str) -> str:
    lines = [ln for ln in log.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


@functools.lru_cache(maxsize=None)
def probe_program_type(t: ProgramType) -> Probe:
    """Can this kernel load programs of type *t*?"""
    t = ProgramType(t)
    what = f"program type {t.name}"
    since = _since.PROGRAM_TYPE.get(t, "")
    r = _load(t, _RET0, _DEFAULT_ATTACH.get(t))
    if r.ok:
        return Probe(True, what, since=since)
    if r.errno in (_errno.EINVAL, _errno.EACCES) and r.log.strip():
        # The verifier ran: the type exists, the probe program just did not
        # suit it.
        return Probe(True, what, since=since)
    _check_permission(r.errno)
    return Probe(False, what, r.errno, _last_line(r.log), since)


def have_program_type(t: ProgramType) -> bool:
    """True if this kernel can load programs of type *t*."""
    return probe_program_type(t).ok


_HELPER_ABSENT = ("unknown func", "program of this type cannot use helper",
                  "invalid func")


@functools.lru_cache(maxsize=None)
def probe_helper(ptype: ProgramType, helper: int) -> Probe:
    """Can programs of type *ptype* call *helper* (an :class:`asm.Helper` or id)?"""
    ptype = ProgramType(ptype)
    try:
        from .asm import Helper
        hname = f"bpf_{Helper(helper).name}"
    except (ImportError, ValueError):
        hname = f"#{int(helper)}"
    what = f"helper {hname} in {ptype.name} programs"
    pt = probe_program_type(ptype)
    if not pt.ok:
        return Probe(False, what, pt.errno, pt.reason or "")
    r = _load(ptype, _call(helper), _DEFAULT_ATTACH.get(ptype))
    if r.ok:
        return Probe(True, what)
    if r.errno == _errno.EINVAL and any(s in r.log for s in _HELPER_ABSENT):
        said = [ln for ln in r.log.splitlines() if any(s in ln for s in _HELPER_ABSENT)]
        return Probe(False, what, r.errno, said[0])
    if r.errno in (_errno.EINVAL, _errno.EACCES) and r.log.strip():
        return Probe(True, what)  # rejected for the dummy arguments, after the call check
    return Probe(False, what, r.errno, _last_line(r.log))


def have_helper(ptype: ProgramType, helper: int) -> bool:
    """True if programs of type *ptype* may call *helper* on this kernel."""
    return probe_helper(ptype, helper).ok


@functools.lru_cache(maxsize=None)
def probe_attach_type(ptype: ProgramType, attach: AttachType) -> Probe:
    """Does a *ptype* program load with expected attach type *attach*?

    Tracing and LSM attach types load against a target every kernel has
    (``bpf_fentry_test1``, ``sys_enter``, ``bpf_lsm_file_open``, ...).
    """
    ptype, attach = ProgramType(ptype), AttachType(attach)
    what = f"attach type {attach.name} for {ptype.name} programs"
    since = _since.ATTACH_TYPE.get(attach, "")
    pt = probe_program_type(ptype)
    if not pt.ok:
        return Probe(False, what, pt.errno, pt.reason or "", since)
    r = _load(ptype, _RET0, attach)
    if r.ok:
        return Probe(True, what, since=since)
    _check_permission(r.errno)
    return Probe(False, what, r.errno, _last_line(r.log), since)


def have_attach_type(ptype: ProgramType, attach: AttachType) -> bool:
    """True if *ptype* programs load with expected attach type *attach*."""
    return probe_attach_type(ptype, attach).ok


# -- everything else ----------------------------------------------------------------------

def _pmu(name: str) -> Probe:
    what = f"the {name} PMU (/sys/bus/event_source/devices/{name})"
    if os.path.exists(f"/sys/bus/event_source/devices/{name}/type"):
        return Probe(True, what)
    return Probe(False, what, _errno.ENOENT)


@functools.lru_cache(maxsize=None)
def probe_kprobe_pmu() -> Probe:
    """Is the kprobe PMU there (perf_event_open kprobes; CONFIG_KPROBES)?"""
    return _pmu("kprobe")


@functools.lru_cache(maxsize=None)
def probe_uprobe_pmu() -> Probe:
    """Is the uprobe PMU there (CONFIG_UPROBE_EVENTS)?"""
    return _pmu("uprobe")


@functools.lru_cache(maxsize=None)
def probe_kprobes() -> Probe:
    """Can kprobes be placed at all (the kprobe PMU or tracefs
    ``kprobe_events``; CONFIG_KPROBES)?"""
    what = "kprobes (a kprobe PMU or tracefs kprobe_events; CONFIG_KPROBES)"
    if probe_kprobe_pmu().ok:
        return Probe(True, what)
    for root in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if os.path.exists(os.path.join(root, "kprobe_events")):
            return Probe(True, what)
    return Probe(False, what, _errno.EOPNOTSUPP,
                 "no /sys/bus/event_source/devices/kprobe and no tracefs kprobe_events")


def have_kprobe_pmu() -> bool:
    """True if kprobes can be created through perf_event_open."""
    return probe_kprobe_pmu().ok


def have_uprobe_pmu() -> bool:
    """True if uprobes can be created through perf_event_open."""
    return probe_uprobe_pmu().ok


@functools.lru_cache(maxsize=None)
def probe_trampolines() -> Probe:
    """Are BPF trampolines allowed (an fentry program on bpf_fentry_test1
    loads)? They back fentry, fexit, fmod_ret, LSM and freplace."""
    p = probe_attach_type(ProgramType.TRACING, AttachType.TRACE_FENTRY)
    return p._replace(feature="BPF trampolines (fentry/fexit/fmod_ret/lsm/freplace)")


def have_trampolines() -> bool:
    """True if fentry/fexit/fmod_ret/LSM programs can be loaded here."""
    return probe_trampolines().ok


@functools.lru_cache(maxsize=None)
def probe_vmlinux_btf() -> Probe:
    """Does the kernel expose its BTF (/sys/kernel/btf/vmlinux)?"""
    what = "kernel BTF (/sys/kernel/btf/vmlinux)"
    if os.path.exists("/sys/kernel/btf/vmlinux"):
        return Probe(True, what)
    return Probe(False, what, _errno.ENOENT)


@functools.lru_cache(maxsize=None)
def probe_module_btf() -> Probe:
    """Do kernel modules expose BTF (/sys/kernel/btf/<module>;
    CONFIG_MODULES and CONFIG_DEBUG_INFO_BTF_MODULES)?"""
    what = "module BTF (/sys/kernel/btf/<module>)"
    try:
        mods = [n for n in os.listdir("/sys/kernel/btf") if n != "vmlinux"]
    except OSError as e:
        return Probe(False, what, e.errno or _errno.ENOENT)
    if mods:
        return Probe(True, what)
    return Probe(False, what, _errno.ENOENT,
                 "no modules with BTF (CONFIG_MODULES or CONFIG_DEBUG_INFO_BTF_MODULES unset)")


def have_vmlinux_btf() -> bool:
    """True if the kernel's BTF is readable."""
    return probe_vmlinux_btf().ok


@functools.lru_cache(maxsize=None)
def probe_bpf_stats() -> Probe:
    """Can run-time statistics be switched on with BPF_ENABLE_STATS?"""
    what = "BPF_ENABLE_STATS"
    try:
        _core.enable_stats(0).close()
    except BPFError as e:
        _check_permission(e.errno)
        return Probe(False, what, e.errno, since="5.8")
    return Probe(True, what)


def have_bpf_stats() -> bool:
    """True if BPF_ENABLE_STATS works."""
    return probe_bpf_stats().ok


# -- BTF kinds (the loader sanitises object BTF by these) ----------------------------

def _btf_feature_types(name: str) -> list[Any]:
    """The smallest set of BTF types using the feature *name*, in type-id
    order (each blob is what a probe loads; see :func:`probe_btf_feature`)."""
    from . import btf
    i = btf.Int("int", 4, btf.IntEncoding.SIGNED)
    if name in ("func", "func_global"):
        proto = btf.FuncProto(i)
        linkage = btf.Linkage.GLOBAL if name == "func_global" else btf.Linkage.STATIC
        return [i, proto, btf.Func("f", proto, linkage)]
    if name == "datasec":
        v = btf.Var("v", i)
        return [i, v, btf.Datasec(".data", 4, [btf.VarSecinfo(v, 0, 4)])]
    if name == "float":
        return [btf.Float("float", 4)]
    if name == "decl_tag":
        v = btf.Var("v", i)
        return [i, v, btf.DeclTag("tag", v)]
    if name == "type_tag":
        tag = btf.TypeTag("tag", i)
        return [i, tag, btf.Pointer(tag)]
    assert name == "enum64"
    return [btf.Enum64("e", 8, [btf.EnumValue("v", 1)])]


#: The BTF features :func:`probe_btf_feature` knows.
_BTF_FEATURES = ("func", "func_global", "datasec", "float", "decl_tag", "type_tag", "enum64")


@functools.lru_cache(maxsize=None)
def probe_btf_feature(name: str) -> Probe:
    """Does the kernel accept BTF using *name*: ``"func"``, ``"func_global"``,
    ``"datasec"``, ``"float"``, ``"decl_tag"``, ``"type_tag"``, ``"enum64"``?"""
    if name not in _BTF_FEATURES:
        raise ValueError(f"unknown BTF feature {name!r}; one of {sorted(_BTF_FEATURES)}")
    from . import btf
    blob = btf.Spec.from_types(_btf_feature_types(name)).encode()
    what = f"BTF {name}"
    try:
        _core.btf_load(blob).close()
    except BPFError as e:
        return Probe(False, what, e.errno)
    return Probe(True, what)


@functools.lru_cache(maxsize=1)
def missing_btf_features() -> frozenset[str]:
    """The BTF features this kernel lacks (empty on any recent kernel)."""
    return frozenset(n for n in _BTF_FEATURES if not probe_btf_feature(n).ok)

# -- link kinds (BPF_LINK_CREATE) ----------------------------------------------------------
#
# A link kind is probed the way cilium/ebpf probes them: load the smallest
# program for the kind, then BPF_LINK_CREATE against a target that cannot
# exist. A kernel that knows the kind gets as far as looking the target up
# and says so with its own errno (EBADF for an fd, ENODEV for an ifindex,
# ENOENT/ESRCH for a symbol, ...); a kernel that does not know it refuses
# the attach type first, with EINVAL (or EOPNOTSUPP when compiled out).

_BAD_FD = 0x7FFFFFF0       # no process has this many fds open
_BAD_IFINDEX = 0xFFFFFFF0  # no interface has this index


class _LinkKind(NamedTuple):
    what: str
    ptype: ProgramType
    expected: bool                 # load with expected_attach_type = the attach type
    target: int
    ok_errnos: frozenset[Any]           # errnos that mean "kind known, target bad"
    since: str


def _kind(what: str, ptype: ProgramType, expected: bool, target: int, *oks: int,
          since: str = "") -> _LinkKind:
    return _LinkKind(what, ptype, expected, target, frozenset(oks), since)


_LINK_KINDS: dict[AttachType, _LinkKind] = {
    AttachType.TCX_INGRESS: _kind("tcx links", ProgramType.SCHED_CLS, False, _BAD_IFINDEX,
                                  _errno.ENODEV, since="6.6"),
    AttachType.TCX_EGRESS: _kind("tcx links", ProgramType.SCHED_CLS, False, _BAD_IFINDEX,
                                 _errno.ENODEV, since="6.6"),
    AttachType.NETKIT_PRIMARY: _kind("netkit links", ProgramType.SCHED_CLS, False,
                                     _BAD_IFINDEX, _errno.ENODEV, since="6.7"),
    AttachType.NETKIT_PEER: _kind("netkit links", ProgramType.SCHED_CLS, False,
                                  _BAD_IFINDEX, _errno.ENODEV, since="6.7"),
    AttachType.SK_LOOKUP: _kind("sk_lookup links", ProgramType.SK_LOOKUP, True, _BAD_FD,
                                _errno.EBADF, since="5.9"),
    AttachType.FLOW_DISSECTOR: _kind("flow_dissector links", ProgramType.FLOW_DISSECTOR,
                                     False, _BAD_FD, _errno.EBADF, since="5.8"),
    AttachType.PERF_EVENT: _kind("perf_event links", ProgramType.PERF_EVENT, False, _BAD_FD,
                                 _errno.EBADF, since="5.15"),
    AttachType.NETFILTER: _kind("netfilter links", ProgramType.NETFILTER, True, 0,
                                _errno.EAFNOSUPPORT, since="6.4"),
    AttachType.TRACE_KPROBE_MULTI: _kind("kprobe_multi links", ProgramType.KPROBE, True, 0,
                                         _errno.ENOENT, _errno.ESRCH, since="5.18"),
    AttachType.TRACE_UPROBE_MULTI: _kind("uprobe_multi links", ProgramType.KPROBE, True, 0,
                                         _errno.EBADF, since="6.6"),
    AttachType.TRACE_ITER: _kind("bpf_iter links", ProgramType.TRACING, True, 0,
                                 _errno.EFAULT, since="5.8"),
    AttachType.XDP: _kind("XDP links", ProgramType.XDP, True, 1, 0, _errno.EBUSY, since="5.9"),
    AttachType.STRUCT_OPS: _kind("struct_ops links", ProgramType.STRUCT_OPS, False, 0,
                                 _errno.EBADF, since="6.4"),
}

# cgroup attach types: (program type, loaded with expected_attach_type?)
_CGROUP_KINDS: dict[str, tuple[ProgramType, bool]] = {
    "CGROUP_INET_INGRESS": (ProgramType.CGROUP_SKB, False),
    "CGROUP_INET_EGRESS": (ProgramType.CGROUP_SKB, False),
    "CGROUP_INET_SOCK_CREATE": (ProgramType.CGROUP_SOCK, False),
    "CGROUP_INET_SOCK_RELEASE": (ProgramType.CGROUP_SOCK, True),
    "CGROUP_INET4_POST_BIND": (ProgramType.CGROUP_SOCK, True),
    "CGROUP_INET6_POST_BIND": (ProgramType.CGROUP_SOCK, True),
    "CGROUP_SOCK_OPS": (ProgramType.SOCK_OPS, False),
    "CGROUP_DEVICE": (ProgramType.CGROUP_DEVICE, False),
    "CGROUP_SYSCTL": (ProgramType.CGROUP_SYSCTL, False),
    "CGROUP_GETSOCKOPT": (ProgramType.CGROUP_SOCKOPT, True),
    "CGROUP_SETSOCKOPT": (ProgramType.CGROUP_SOCKOPT, True),
}
for _a in AttachType:
    if _a.name.startswith("CGROUP_") and _a.name not in _CGROUP_KINDS and \
            _a.name.startswith(("CGROUP_INET4_", "CGROUP_INET6_", "CGROUP_UDP", "CGROUP_UNIX_")):
        _CGROUP_KINDS[_a.name] = (ProgramType.CGROUP_SOCK_ADDR, True)
for _name, (_pt, _exp) in _CGROUP_KINDS.items():
    _LINK_KINDS[AttachType[_name]] = _kind("cgroup links", _pt, _exp, _BAD_FD, _errno.EBADF,
                                           since="5.7")
# BPF_PROG_ATTACH kinds (the older, fd-less attachment): the same bad targets.
_PROG_ATTACH_KINDS: dict[AttachType, _LinkKind] = {
    a: k._replace(what=k.what.replace("links", "BPF_PROG_ATTACH"),
                  since=_since.ATTACH_TYPE.get(a, ""))
    for a, k in _LINK_KINDS.items()
    if k.what in ("cgroup links", "tcx links")}
for _a, _pt in ((AttachType.SK_SKB_STREAM_VERDICT, ProgramType.SK_SKB),
                (AttachType.SK_SKB_STREAM_PARSER, ProgramType.SK_SKB),
                (AttachType.SK_SKB_VERDICT, ProgramType.SK_SKB),
                (AttachType.SK_MSG_VERDICT, ProgramType.SK_MSG)):
    _PROG_ATTACH_KINDS[_a] = _kind("sockmap BPF_PROG_ATTACH", _pt, False, _BAD_FD,
                                   _errno.EBADF, since=_since.ATTACH_TYPE.get(_a, ""))

# Keep the probe's buffers alive while the kernel reads them.
_NO_SUCH_SYMBOL = b"fastbpf_probe_no_such_function\0"
_ROOT_PATH = b"/\0"


def _link_extra(attach: AttachType, keep: list[Any]) -> bytes | None:
    """The link_create union for the kinds that need one, pointing at a
    target that cannot be attached to."""
    import numpy as np
    if attach == AttachType.NETFILTER:
        return _linkattr.netfilter(255, 0, 0)  # pf 255: EAFNOSUPPORT
    if attach == AttachType.TRACE_KPROBE_MULTI:
        ptrs = np.array([_core.address_of(_NO_SUCH_SYMBOL)], dtype=np.uint64)
        keep.append(ptrs)
        return _linkattr.kprobe_multi(0, 1, syms=_core.address_of(ptrs))
    if attach == AttachType.TRACE_UPROBE_MULTI:
        offs = np.zeros(1, dtype=np.uint64)
        keep.append(offs)
        # path "/" is a directory: EBADF once the kind is known.
        return _linkattr.uprobe_multi(_core.address_of(_ROOT_PATH), 1, _core.address_of(offs))
    if attach == AttachType.TRACE_ITER:
        return _linkattr.iter_info(1, 8)  # iter_info at address 1: EFAULT
    return None


def _in_private_netns(fn: Any) -> Any:
    """Run *fn* in a thread that has its own, empty network namespace, so a
    probe that must attach to a real device (XDP links give EINVAL for a
    missing one) touches nobody's interfaces."""
    import ctypes
    import threading
    box: dict[str, Any] = {}

    def body() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET, this thread only
            box["err"] = bpf_error(ctypes.get_errno(), "unshare(CLONE_NEWNET)", "link probe")
            return
        try:
            box["result"] = fn()
        except BaseException as e:  # handed to the caller's thread
            box["err"] = e

    t = threading.Thread(target=body, name="fastbpf-link-probe")
    t.start()
    t.join()
    if "err" in box:
        raise box["err"]
    return box["result"]


def _struct_ops_link_map() -> Any:
    """A bpf_dummy_ops struct_ops map with BPF_F_LINK (the flag came with
    struct_ops links), or raise the kernel's refusal."""
    vid, size = _dummy_ops_value()
    b = _core.btf_load(_int_btf())
    try:
        return _core.map_create(int(MapType.STRUCT_OPS), 4, size, 1, int(MapFlags.LINK), None,
                                btf_fd=b.fd, btf_vmlinux_value_type_id=vid)
    finally:
        b.close()


def _try_link(attach: AttachType, kind: _LinkKind) -> int:
    """0 if the kernel attached (then detached) or got to the target, else
    the errno with which it refused."""
    if attach == AttachType.STRUCT_OPS:
        # The link's "program" is the map. Older kernels refuse BPF_F_LINK
        # on the map; newer ones give EBADF for a closed map fd.
        try:
            _struct_ops_link_map().close()
        except BPFError as e:
            return e.errno
        try:
            _core.link_create(_BAD_FD, 0, int(attach)).close()
        except BPFError as e:
            return 0 if e.errno in kind.ok_errnos else e.errno
        return 0
    r = _load(kind.ptype, _probe_insns(kind.ptype), attach if kind.expected else None,
              keep_fd=True)
    if not r.ok:
        return r.errno
    prog = r.fd
    keep: list[Any] = []
    try:
        extra = _link_extra(attach, keep)

        def attempt() -> int:
            try:
                _core.link_create(prog.fd, kind.target, int(attach), 0, extra).close()
            except BPFError as e:
                return 0 if e.errno in kind.ok_errnos else e.errno
            return 0

        if attach == AttachType.XDP:
            return _in_private_netns(attempt)  # type: ignore[no-any-return]
        return attempt()
    finally:
        prog.close()


@functools.lru_cache(maxsize=None)
def probe_link(attach: AttachType) -> Probe:
    """Can this kernel create bpf_links of kind *attach* (BPF_LINK_CREATE with
    that attach type): tcx, netkit, XDP, cgroup, sk_lookup, flow_dissector,
    perf_event, netfilter, kprobe_multi, uprobe_multi, bpf_iter, struct_ops?"""
    attach = AttachType(attach)
    kind = _LINK_KINDS.get(attach)
    if kind is None:
        raise ValueError(f"no link probe for attach type {attach.name}; one of "
                         f"{sorted(a.name for a in _LINK_KINDS)}")
    what = f"{kind.what} (BPF_LINK_CREATE, attach type {attach.name})"
    code = _try_link(attach, kind)
    if not code:
        return Probe(True, what, since=kind.since)
    _check_permission(code)
    return Probe(False, what, code, "", kind.since)


@functools.lru_cache(maxsize=None)
def probe_prog_attach(attach: AttachType) -> Probe:
    """Does BPF_PROG_ATTACH take attach type *attach* (cgroup, tcx,
    flow_dissector, sockmap kinds)? Asked with a target that cannot exist,
    as :func:`probe_link` does."""
    attach = AttachType(attach)
    kind = _PROG_ATTACH_KINDS.get(attach)
    if kind is None:
        raise ValueError(f"no BPF_PROG_ATTACH probe for attach type {attach.name}; one of "
                         f"{sorted(a.name for a in _PROG_ATTACH_KINDS)}")
    what = f"{kind.what} (attach type {attach.name})"
    r = _load(kind.ptype, _probe_insns(kind.ptype), attach if kind.expected else None,
              keep_fd=True)
    if not r.ok:
        code = r.errno
    else:
        try:
            _core.prog_attach(kind.target, r.fd.fd, int(attach))
            code = _errno.EEXIST  # attached to something: should not happen
            _core.prog_detach(kind.target, r.fd.fd, int(attach))
        except BPFError as e:
            code = 0 if e.errno in kind.ok_errnos else e.errno
        finally:
            r.fd.close()
    if not code:
        return Probe(True, what, since=kind.since)
    _check_permission(code)
    return Probe(False, what, code, "", kind.since)


def unsupported_prog_attach(attach: AttachType | int, err: BPFError, obj: str | None = None,
                            op: str = "prog attach") -> NotSupportedError | None:
    """The :class:`NotSupportedError` to raise instead of *err* (a failed
    BPF_PROG_ATTACH) when the kernel does not take that attach type there."""
    return _unsupported_kind(_PROG_ATTACH_KINDS, probe_prog_attach, attach, err, obj, op)


def _unsupported_kind(kinds: dict[Any, Any], probe: Any, attach: AttachType | int, err: BPFError,
                      obj: str | None, op: str) -> NotSupportedError | None:
    """The refusal *err* as the NotSupportedError of *probe* (a probe of one
    of the attach types in *kinds*) when that probe fails, else None."""
    if err.errno not in _REFUSALS or int(attach) not in [int(a) for a in kinds]:
        return None
    try:
        p = probe(AttachType(attach))
    except PermissionError:
        return None  # no bpf(2) at all: the caller's own EPERM says so
    return None if p.ok else p.error(op, obj)


def have_link(attach: AttachType) -> bool:
    """True if bpf_links of kind *attach* can be created here."""
    return probe_link(attach).ok


@functools.lru_cache(maxsize=None)
def probe_link_create() -> Probe:
    """Does the kernel have BPF_LINK_CREATE at all (bpf_link, Linux 5.7)?"""
    p = probe_link(AttachType.CGROUP_INET_INGRESS)
    return p._replace(feature="bpf_link (BPF_LINK_CREATE)")


def have_link_create() -> bool:
    """True if the kernel has BPF_LINK_CREATE."""
    return probe_link_create().ok


def unsupported_link(attach: AttachType | int, err: BPFError, obj: str | None = None,
                     op: str = "link create") -> NotSupportedError | None:
    """The :class:`NotSupportedError` to raise instead of *err* (a failed
    BPF_LINK_CREATE) when the kernel lacks that kind of link, else None."""
    return _unsupported_kind(_LINK_KINDS, probe_link, attach, err, obj, op)


# -- cgroup v2, tracefs -------------------------------------------------------------------

_CGROUP2_MAGIC = 0x63677270


def cgroup_v2_root() -> str | None:
    """Where the cgroup v2 hierarchy is mounted (the first cgroup2 mount in
    /proc/self/mounts), or None."""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "cgroup2":
                    return parts[1].replace("\\040", " ")
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=None)
def probe_cgroup_v2() -> Probe:
    """Is a cgroup v2 hierarchy mounted (cgroup programs attach to one)?"""
    what = "a cgroup v2 hierarchy (mount -t cgroup2)"
    root = cgroup_v2_root()
    if root is None or not os.path.isfile(os.path.join(root, "cgroup.procs")):
        return Probe(False, what, _errno.ENOENT)
    return Probe(True, f"{what} at {root}")


def have_cgroup_v2() -> bool:
    """True if a cgroup v2 hierarchy is mounted."""
    return probe_cgroup_v2().ok


@functools.lru_cache(maxsize=None)
def probe_tracefs() -> Probe:
    """Is tracefs mounted and readable (tracepoints, legacy k/uprobes)?"""
    what = "tracefs (/sys/kernel/tracing)"
    for path in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        events = os.path.join(path, "events")
        if os.path.isdir(events):
            if not os.access(events, os.R_OK | os.X_OK):
                return Probe(False, what, _errno.EACCES, f"{events} is not readable")
            return Probe(True, what)
    return Probe(False, what, _errno.ENOENT, "not mounted")


def have_tracefs() -> bool:
    """True if tracefs is mounted and readable."""
    return probe_tracefs().ok


@functools.lru_cache(maxsize=None)
def probe_bpf_command(cmd: int) -> Probe:
    """Does the kernel know bpf command *cmd* (a :class:`Command`)? Asked
    with a zeroed attribute: an unknown command gives EINVAL before any
    field is read; a known one complains about the fields (EBADF, ENOENT,
    EFAULT, ...). Only for commands where a zeroed attribute is harmless
    and distinguishes: the batch map ops, LINK_CREATE, ENABLE_STATS (no),
    ITER_CREATE."""
    from .enums import Command
    cmd = Command(cmd)
    what = f"bpf command {cmd.name}"
    since = _COMMAND_SINCE.get(cmd, "")
    if cmd == Command.LINK_CREATE:
        return probe_link_create()._replace(feature=what, since=since)
    if cmd == Command.ENABLE_STATS:
        return probe_bpf_stats()._replace(feature=what, since=since)
    if cmd == Command.BTF_LOAD:
        try:
            _core.btf_load(_int_btf()).close()
        except BPFError as e:
            _check_permission(e.errno)
            return Probe(False, what, e.errno, "", since)
        return Probe(True, what, since=since)
    if cmd in _BATCH_COMMANDS:
        try:
            m = _core.map_create(int(MapType.HASH), 4, 4, 1)
        except BPFError as e:   # no hash maps: no batch commands to speak of
            _check_permission(e.errno)
            return Probe(False, what, e.errno, "a hash map could not be created", since)
        try:
            k = bytearray(4)
            v = bytearray(4)
            try:
                if cmd in (Command.MAP_LOOKUP_BATCH, Command.MAP_LOOKUP_AND_DELETE_BATCH):
                    _core.map_lookup_batch(m.fd, None, bytearray(4), k, v, 1,
                                           delete=cmd == Command.MAP_LOOKUP_AND_DELETE_BATCH)
                elif cmd == Command.MAP_UPDATE_BATCH:
                    _core.map_update_batch(m.fd, k, v, 1)  # the map goes with close()
                else:
                    _core.map_delete_batch(m.fd, k, 1)
            except BPFError as e:
                # An empty map: the lookups and the delete say ENOENT.
                if e.errno != _errno.ENOENT:
                    _check_permission(e.errno)
                    return Probe(False, what, e.errno, "", since)
        finally:
            m.close()
        return Probe(True, what, since=since)
    if cmd == Command.ITER_CREATE:
        try:
            _core.iter_create(_BAD_FD).close()
        except BPFError as e:
            if e.errno == _errno.EBADF:
                return Probe(True, what, since=since)
            _check_permission(e.errno)
            return Probe(False, what, e.errno, "", since)
        return Probe(True, what, since=since)
    raise ValueError(f"no probe for bpf command {cmd.name}")


_BATCH_COMMANDS = frozenset({24, 25, 26, 27})
_COMMAND_SINCE = {18: "4.18", 24: "5.6", 25: "5.6", 26: "5.6", 27: "5.6", 28: "5.7",
                  32: "5.8", 33: "5.8"}


def have_bpf_command(cmd: int) -> bool:
    """True if the kernel knows bpf command *cmd* (see :func:`probe_bpf_command`)."""
    return probe_bpf_command(cmd).ok


# -- turning a refusal into "the kernel lacks X" ------------------------------------------

# The errnos with which kernels refuse what they do not have (or do not allow).
_REFUSALS = frozenset({_errno.EINVAL, _errno.EPERM, _errno.EOPNOTSUPP, ENOTSUPP})


def unsupported_map_type(t: MapType, err: BPFError, obj: str | None = None
                         ) -> NotSupportedError | None:
    """The :class:`NotSupportedError` to raise instead of *err* (a failed map
    create) when the kernel lacks map type *t*, else None (the arguments
    were at fault)."""
    if err.errno not in _REFUSALS or int(t) not in _since.MAP_TYPE:
        return None
    try:
        p = probe_map_type(MapType(t))
    except PermissionError:
        return None  # no bpf(2) at all: the caller's own EPERM says so, naming its call
    return None if p.ok else p.error("map create", obj)


def unsupported_program(ptype: ProgramType, attach: AttachType | None, err: BPFError,
                        obj: str | None = None) -> NotSupportedError | None:
    """The :class:`NotSupportedError` to raise instead of *err* (a failed
    program load) when the kernel lacks the program type or its expected
    attach type, else None. A load the verifier rejected with a log is never
    a missing feature."""
    if err.errno not in _REFUSALS or (isinstance(err, VerifierError) and err.log.strip()):
        return None
    if int(ptype) not in _since.PROGRAM_TYPE:
        return None
    try:
        p = probe_program_type(ProgramType(ptype))
    except PermissionError:
        return None  # no bpf(2) at all: the caller's own EPERM says so
    if p.ok and attach is not None and int(attach) in _since.ATTACH_TYPE and \
            ptype not in (ProgramType.STRUCT_OPS, ProgramType.EXT):
        p = probe_attach_type(ProgramType(ptype), AttachType(attach))
        if not p.ok and p.errno in (_errno.EINVAL, _errno.EACCES) and "target" in p.detail:
            return None  # the probe's own target is missing, which says nothing
    return None if p.ok else p.error("program load", obj)
@functools.lru_cache(maxsize=None)
def probe_user_ringbuf() -> Probe:
    """Can user space feed programs through a user ring buffer: a
    USER_RINGBUF map that a (sleepable) program drains with
    ``bpf_user_ringbuf_drain`` (Linux 6.1)?"""
    from .asm import Helper
    what = "user ring buffers (USER_RINGBUF maps drained by bpf_user_ringbuf_drain, Linux 6.1)"
    for p in (probe_map_type(MapType.USER_RINGBUF),
              probe_helper(ProgramType.SYSCALL, Helper.user_ringbuf_drain)):
        if not p.ok:
            return Probe(False, what, p.errno, p.reason or "")
    return Probe(True, what)


def have_user_ringbuf() -> bool:
    """True if this kernel has user ring buffers (see :func:`probe_user_ringbuf`)."""
    return probe_user_ringbuf().ok


def unsupported_command(cmd: int, err: BPFError, op: str | None = None,
                        obj: str | None = None) -> NotSupportedError | None:
    """The :class:`NotSupportedError` to raise instead of *err* when the
    kernel does not know bpf command *cmd* at all (BTF_LOAD, the batch map
    commands, LINK_CREATE, ENABLE_STATS, ITER_CREATE), else None."""
    if err.errno not in _REFUSALS or int(cmd) not in _COMMAND_SINCE:
        return None
    try:
        p = probe_bpf_command(int(cmd))
    except PermissionError:
        return None  # no bpf(2) at all: the caller's own EPERM says so
    return None if p.ok else p.error(op or err.op, obj)


# -- by name -----------------------------------------------------------------------

_BY_NAME = {
    "map_type": probe_map_type,
    "program_type": probe_program_type,
    "helper": probe_helper,
    "attach_type": probe_attach_type,
    "kprobe_pmu": probe_kprobe_pmu,
    "kprobes": probe_kprobes,
    "uprobe_pmu": probe_uprobe_pmu,
    "trampolines": probe_trampolines,
    "vmlinux_btf": probe_vmlinux_btf,
    "module_btf": probe_module_btf,
    "bpf_stats": probe_bpf_stats,
    "btf_feature": probe_btf_feature,
    "user_ringbuf": probe_user_ringbuf,
    "link": probe_link,
    "link_create": probe_link_create,
    "prog_attach": probe_prog_attach,
    "cgroup_v2": probe_cgroup_v2,
    "tracefs": probe_tracefs,
    "bpf_command": probe_bpf_command,
}


def probe(feature: str, *args: Any) -> Probe:
    """The :class:`Probe` for *feature* by name: ``"map_type"``,
    ``"program_type"``, ``"helper"``, ``"attach_type"``, ``"kprobe_pmu"``,
    ``"uprobe_pmu"``, ``"trampolines"``, ``"vmlinux_btf"``, ``"bpf_stats"``,
    ``"user_ringbuf"``, ``"btf_feature"`` (a BTF kind's name), ``"link"`` (an
    attach type), ``"link_create"``, ``"prog_attach"``, ``"cgroup_v2"``,
    ``"tracefs"``, ``"bpf_command"`` (a command number);
    *args* are the probe's arguments."""
    try:
        fn = _BY_NAME[feature]
    except KeyError:
        raise ValueError(f"unknown feature {feature!r}; one of {sorted(_BY_NAME)}") from None
    return fn(*args)


def require(feature: str, *args: Any) -> None:
    """Raise :class:`NotSupportedError` (naming the feature and errno) if the
    kernel lacks *feature* (see :func:`probe` for the names)."""
    probe(feature, *args).require()


def skip_reason(feature: str, *args: Any) -> str | None:
    """None if the kernel has *feature*, else a sentence for ``pytest.skip``
    naming the feature and the errno."""
    return probe(feature, *args).reason


def clear_cache() -> None:
    """Forget every cached answer (after loading a kernel module, say)."""
    for fn in _BY_NAME.values():
        if hasattr(fn, "cache_clear"):
            fn.cache_clear()
    missing_btf_features.cache_clear()
    _kernel_type_id.cache_clear()
