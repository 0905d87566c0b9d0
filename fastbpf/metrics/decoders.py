"""Label decoders: map key bytes -> Prometheus label values.

A label is a dict, the same as one entry of an exporter config's ``labels:``
list (ebpf_exporter's format)::

    {"name": "proto", "field": "proto", "decoders": [{"name": "uint"}]}
    {"name": "comm", "size": 16, "decoders": [{"name": "string"}]}

``field`` names a field of the key's structured dtype (dots reach into
nested structs); without it ``size`` (plus optional ``padding``) takes the
next bytes of the key. Decoders run in order; the first sees the raw key
column, the next ones the text the previous one produced.

Decoding is vectorised: the caller factorises each key column once
(:func:`factorize`), and a decoder runs only over the distinct values of one
scrape, never once per map entry. A decoder returns ``None`` for a value
whose entries must be dropped (``regexp``).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import platform
import re
import threading
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["LabelSpec", "DecoderSpec", "DECODERS", "factorize", "decode_unique",
           "kallsyms", "syscall_names", "cgroup_paths", "ConfigError"]

log = logging.getLogger("fastbpf.metrics")


class ConfigError(ValueError):
    """A bad metric or label description; ``line`` is the config line (or None)."""

    def __init__(self, msg: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {msg}" if line else msg)


# ---------------------------------------------------------------------------
# label and decoder descriptions


class DecoderSpec:
    """One entry of a label's ``decoders:`` list, checked."""

    def __init__(self, d: Any, line: int | None = None) -> None:
        if isinstance(d, str):
            d = {"name": d}
        if not isinstance(d, dict) or "name" not in d:
            raise ConfigError(f"a decoder is a mapping with a name, not {d!r}", line)
        self.name = str(d["name"])
        self.line = getattr(d, "line", None) or line
        if self.name not in DECODERS:
            raise ConfigError(f"unknown decoder {self.name!r} (known: {', '.join(sorted(DECODERS))})",
                              self.line)
        self.opts = dict(d)
        self.static_map: dict[str, str] = {}
        self.regexps: list[re.Pattern[str]] = []
        self.allow_unknown = bool(d.get("allow_unknown", False))
        if self.name == "static_map":
            sm = d.get("static_map")
            if not isinstance(sm, dict) or not sm:
                raise ConfigError("static_map needs a non-empty 'static_map' mapping", self.line)
            # YAML gives int keys for `1: one`; labels are text, so compare as text.
            self.static_map = {str(k): str(v) for k, v in sm.items()}
        elif self.name == "regexp":
            rx = d.get("regexps")
            if isinstance(rx, str):
                rx = [rx]
            if not rx:
                raise ConfigError("regexp needs a non-empty 'regexps' list", self.line)
            try:
                self.regexps = [re.compile(str(r)) for r in rx]
            except re.error as e:
                raise ConfigError(f"bad regexp: {e}", self.line) from None


class LabelSpec:
    """One label: where its bytes are in the key and how to decode them."""

    def __init__(self, d: Any, line: int | None = None) -> None:
        if isinstance(d, LabelSpec):
            self.__dict__.update(d.__dict__)
            return
        if not isinstance(d, dict) or "name" not in d:
            raise ConfigError(f"a label is a mapping with a name, not {d!r}", line)
        self.line = getattr(d, "line", None) or line
        self.name = str(d["name"])
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", self.name) or self.name == "le":
            raise ConfigError(f"{self.name!r} is not a valid Prometheus label name", self.line)
        self.field = d.get("field")
        self.size = d.get("size")
        self.padding = int(d.get("padding", 0) or 0)
        if self.field is None and self.size is None:
            raise ConfigError(f"label {self.name!r} needs 'field' or 'size'", self.line)
        if self.size is not None and (not isinstance(self.size, int) or self.size <= 0):
            raise ConfigError(f"label {self.name!r}: size must be a positive integer", self.line)
        decs = d.get("decoders") or []
        if not isinstance(decs, list):
            raise ConfigError(f"label {self.name!r}: decoders must be a list", self.line)
        self.decoders = [DecoderSpec(x, getattr(decs, "line", None) or self.line) for x in decs]


# ---------------------------------------------------------------------------
# factorising a key column


def factorize(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(uniques, inverse)`` of a 1-d column, like ``np.unique(return_inverse=True)``.

    Integer columns with a small value range (the common case: protocols,
    ports, bucket indexes, CPU or cgroup ids close together) take an O(n)
    presence table instead of a sort.
    """
    n = col.shape[0]
    if n and col.dtype.kind in "iub":
        lo = int(col.min())
        hi = int(col.max())
        span = hi - lo + 1
        if span <= max(1 << 16, 2 * n):
            if col.dtype.kind == "b":
                col = col.view(np.uint8)
            # Subtract in the column's own type: kernel addresses do not fit an int64.
            off = (col - col.dtype.type(lo)).astype(np.intp, copy=False) if lo \
                else col.astype(np.intp, copy=False)
            counts = np.bincount(off, minlength=span)
            present = counts > 0
            uniq = np.flatnonzero(present).astype(col.dtype) + col.dtype.type(lo)
            lut = np.cumsum(present, dtype=np.intp) - 1
            return uniq, lut[off]
    uniq, inv = np.unique(col, return_inverse=True)
    return uniq, inv.reshape(-1)


# ---------------------------------------------------------------------------
# shared lookup tables (cached, refreshed where the kernel's view changes)


class _Kallsyms:
    """/proc/kallsyms as two sorted arrays; loaded once, on first use."""

    def __init__(self, path: str = "/proc/kallsyms") -> None:
        self.path = path
        self._lock = threading.Lock()
        self._addrs: np.ndarray | None = None
        self._names: list[str] = []

    def _load(self) -> None:
        addrs, names = [], []
        with open(self.path) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3 or parts[1] not in "tTwW":
                    continue  # functions only: what stack and ip keys point into
                a = int(parts[0], 16)
                if a:
                    addrs.append(a)
                    names.append(parts[2])
        order = np.argsort(np.array(addrs, dtype=np.uint64), kind="stable")
        self._addrs = np.array(addrs, dtype=np.uint64)[order]
        self._names = [names[i] for i in order]

    def lookup(self, addrs: Sequence[int]) -> list[str]:
        """Symbol names of the functions containing *addrs*."""
        with self._lock:
            if self._addrs is None:
                self._load()
        a = np.asarray(addrs, dtype=np.uint64)
        if self._addrs is None or not len(self._addrs):
            return [f"unknown_addr:0x{int(x):x}" for x in a]
        pos = np.searchsorted(self._addrs, a, side="right") - 1
        return [self._names[p] if p >= 0 else f"unknown_addr:0x{int(x):x}"
                for p, x in zip(pos.tolist(), a.tolist())]


kallsyms = _Kallsyms()

_UNISTD = {"x86_64": "/usr/include/x86_64-linux-gnu/asm/unistd_64.h",
           "aarch64": "/usr/include/asm-generic/unistd.h"}
_syscalls: dict[int, str] | None = None


def syscall_names() -> dict[int, str]:
    """Syscall number -> name for this machine's architecture.

    The kernel exposes no number -> name table (tracefs ``events/syscalls``
    gives names and event ids, BTF has no syscall enum), so the numbers
    come from the uapi ``asm/unistd`` header of this architecture, parsed
    at run time. Unknown numbers decode to ``unknown_syscall:N``.
    """
    global _syscalls
    if _syscalls is not None:
        return _syscalls
    table: dict[int, str] = {}
    path = _UNISTD.get(platform.machine())
    if path and os.path.exists(path):
        with open(path) as f:
            for m in re.finditer(r"#define\s+__NR(?:3264)?_(\w+)\s+(\d+)\s*$", f.read(), re.M):
                table.setdefault(int(m.group(2)), m.group(1))
    _syscalls = table
    return table


class _Cgroups:
    """cgroup id -> path under the cgroup v2 mount(s); refreshed on a miss."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: dict[int, str] = {}

    @staticmethod
    def _roots() -> list[str]:
        roots = []
        try:
            with open("/proc/self/mounts") as f:
                for line in f:
                    p = line.split()
                    if len(p) > 2 and p[2] == "cgroup2":
                        roots.append(p[1].replace("\\040", " "))
        except OSError:
            pass
        return roots

    def refresh(self) -> None:
        """Walk the cgroup v2 tree again (a cgroup's id is its inode number)."""
        paths: dict[int, str] = {}
        for root in self._roots():
            for d, _, _ in os.walk(root):
                try:
                    paths.setdefault(os.stat(d).st_ino, d)
                except OSError:
                    continue
        self._paths = paths

    def lookup(self, ids: Sequence[int]) -> list[str]:
        """Paths of the cgroups with these ids (``unknown_cgroup_id:N`` if none)."""
        with self._lock:
            if any(int(i) not in self._paths for i in ids):
                self.refresh()  # a new cgroup since the last walk
            return [self._paths.get(int(i), f"unknown_cgroup_id:{int(i)}") for i in ids]


cgroup_paths = _Cgroups()


# ---------------------------------------------------------------------------
# the decoders


def _raw_bytes(vals: np.ndarray) -> list[bytes]:
    if vals.dtype.kind == "S":
        return [bytes(v) for v in vals]
    if vals.dtype.kind == "V":
        return [v.tobytes() for v in vals]
    return [np.asarray(v).tobytes() for v in vals]


def _as_ints(inp: Any) -> list[int]:
    if isinstance(inp, np.ndarray):
        if inp.dtype.kind in "iub":
            return [int(x) for x in inp.tolist()]
        return [int.from_bytes(b, "little" if np.little_endian else "big") for b in _raw_bytes(inp)]
    return [int(s, 0) for s in inp]


def _uint(inp: Any, spec: Any) -> list[str]:
    return [str(i) for i in _as_ints(inp)]


def _string(inp: Any, spec: Any) -> list[str]:
    if isinstance(inp, np.ndarray):
        return [b.split(b"\0", 1)[0].decode("utf-8", "replace") for b in _raw_bytes(inp)]
    return list(inp)


def _inet_ip(inp: Any, spec: Any) -> list[str]:
    if not isinstance(inp, np.ndarray):
        return [str(ipaddress.ip_address(s)) for s in inp]
    return [str(ipaddress.ip_address(b)) for b in _raw_bytes(inp)]


def _ksym(inp: Any, spec: Any) -> list[Any]:
    return kallsyms.lookup(_as_ints(inp))


def _syscall(inp: Any, spec: Any) -> list[str]:
    table = syscall_names()
    return [table.get(i, f"unknown_syscall:{i}") for i in _as_ints(inp)]


def _cgroup(inp: Any, spec: Any) -> list[Any]:
    return cgroup_paths.lookup(_as_ints(inp))


def _static_map(inp: Any, spec: Any) -> list[Any]:
    if isinstance(inp, np.ndarray):
        inp = _uint(inp, spec) if inp.dtype.kind in "iub" else _string(inp, spec)
    sm = spec.static_map
    return [sm[s] if s in sm else (s if spec.allow_unknown else f"unknown:{s}") for s in inp]


def _regexp(inp: Any, spec: Any) -> list[str | None]:
    if isinstance(inp, np.ndarray):
        inp = _uint(inp, spec) if inp.dtype.kind in "iub" else _string(inp, spec)
    return [s if any(r.search(s) for r in spec.regexps) else None for s in inp]


#: name -> (function(values, spec) -> list[str | None], raw column check)
DECODERS: dict[str, Callable[..., Any]] = {
    "uint": _uint, "string": _string, "inet_ip": _inet_ip, "ksym": _ksym,
    "syscall": _syscall, "cgroup": _cgroup, "static_map": _static_map, "regexp": _regexp,
}

_NEEDS_INT = {"uint", "ksym", "syscall", "cgroup"}


def check_fit(label: LabelSpec, dtype: np.dtype, what: str) -> None:
    """Raise ConfigError if the first decoder cannot read a column of *dtype*."""
    if not label.decoders:
        return
    first = label.decoders[0]
    kind, size = dtype.kind, dtype.itemsize
    is_int = kind in "iub" and dtype.shape == ()
    bytes_like = kind in "SV" or (dtype.shape != () and dtype.base.kind in "iu"
                                  and dtype.base.itemsize == 1)
    bad = None
    if first.name in _NEEDS_INT and not (is_int or (kind == "V" and size in (1, 2, 4, 8))):
        bad = "an integer (or 1, 2, 4 or 8 raw bytes)"
    elif first.name in ("ksym", "cgroup") and size != 8:
        bad = "8 bytes"
    elif first.name == "string" and not bytes_like:
        bad = "a char array"
    elif first.name == "inet_ip" and size not in (4, 16):
        bad = "4 or 16 bytes"
    if bad:
        raise ConfigError(f"label {label.name!r}: decoder {first.name!r} needs {bad}, but {what} "
                          f"is {dtype} ({size} bytes)", first.line or label.line)


def decode_unique(label: LabelSpec, uniq: np.ndarray) -> list[str | None]:
    """Decode the distinct raw values of one label column (None = drop)."""
    vals: Any = uniq
    decs = label.decoders
    if not decs:
        vals = _string(uniq, None) if uniq.dtype.kind in "SV" else _uint(uniq, None)
    for d in decs:
        keep = [v is not None for v in vals] if not isinstance(vals, np.ndarray) else None
        if keep is not None and not all(keep):
            # Dropped values stay dropped; decode only the rest.
            idx = [i for i, k in enumerate(keep) if k]
            sub = DECODERS[d.name]([vals[i] for i in idx], d)
            out: list[Any] = [None] * len(vals)
            for i, s in zip(idx, sub):
                out[i] = s
            vals = out
        else:
            vals = DECODERS[d.name](vals, d)
    if isinstance(vals, np.ndarray):  # pragma: no cover - every decoder returns a list
        vals = _uint(vals, None)
    return vals  # type: ignore[no-any-return]
