"""Collections: every map, program and variable of one BPF object.

:func:`load_collection_spec` reads a compiled object (``clang -O2 -g -target
bpf``) into a :class:`CollectionSpec`: plain, editable descriptions with no
file descriptor. :meth:`CollectionSpec.load` (or :func:`load_collection`)
makes the kernel objects, in this order: the object's BTF (once, sanitised
for this kernel), the maps (or existing pins, checked), the programs (linked,
externs resolved, CO-RE applied, func/line info attached), then the initial
entries of prog arrays. Any failure closes everything made so far and removes
the pins it made before the error propagates.
"""

from __future__ import annotations

import copy as _copy
import dataclasses
import errno
import io
import operator
import os
import stat
from typing import Any

from .errors import BTFError, ELFError
from .mapspec import MapSpec
from .programs import Program, ProgramSpec
from ._loader import load_spec, parse_spec
from .variables import Variable, VariableSpec

__all__ = ["CollectionSpec", "Collection", "ObjectProgram", "load_collection_spec", "load_collection"]


#: The most threads a load uses by default. Measured on a quiet 2-CPU VM,
#: the 16 programs of testdata/many_progs-el.o (~90 us of verifier each):
#: 1.47 ms one by one, 0.85 ms from 2 threads (3 and 4 threads on 2 CPUs:
#: the same), while starting and joining a thread costs ~35 us of CPU. A
#: T-th thread saves about total/(T-1) - total/T of wall time: 120 us for
#: the 4th here, 70 us for a 5th, near the cost of starting it; past that a
#: service pays CPU for little (and one starting several collections at
#: once should not take every CPU of a big machine). Pass threads= to go
#: further for objects with many programs.
_MAX_THREADS = 4


def _default_threads() -> int:
    """The CPUs this process may run on, at most :data:`_MAX_THREADS`."""
    try:
        return max(1, min(len(os.sched_getaffinity(0)), _MAX_THREADS))
    except (AttributeError, OSError):  # no sched_getaffinity: one by one
        return 1


class ObjectProgramSpec(ProgramSpec):
    """A ProgramSpec whose instructions are decoded from the object on first use."""

    @property
    def instructions(self) -> Any:
        v = self.__dict__.get("_insns")
        if callable(v):
            v = v()
            self.__dict__["_insns"] = v
        return v

    @instructions.setter
    def instructions(self, value: Any) -> None:
        self.__dict__["_insns"] = value

    def copy(self) -> ProgramSpec:
        """A copy; instructions not yet decoded stay lazy."""
        v = self.__dict__.get("_insns")
        c = _copy.copy(self)
        c.__dict__ = dict(self.__dict__)
        if not callable(v) and hasattr(v, "copy"):
            c.__dict__["_insns"] = v.copy()  # type: ignore[union-attr]
        return c


class ObjectProgram(Program):
    """A :class:`Program` loaded from an object file: it knows its ELF
    section, so it can attach itself where the section name says."""

    def attach(self, *args: Any, **kwargs: Any) -> Any:
        """Attach where the program's ELF section name says (libbpf's
        auto-attach); returns the :class:`fastbpf.link.Link`.

        ``tracepoint/cat/name``, ``raw_tp/name``, ``tp_btf/...``,
        ``kprobe/sym``, ``uprobe/path:sym`` need no arguments; ``xdp`` and
        ``tc`` take the interface (``prog.attach("eth0")``), ``cgroup*`` the
        cgroup. See :func:`fastbpf.link.auto.auto_attach`.
        """
        from .link.auto import auto_attach
        return auto_attach(self, *args, **kwargs)


@dataclasses.dataclass
class CollectionSpec:
    """The maps, programs and variables of one object, before load.

    ``maps`` is keyed by the map's name in the object (data sections by
    their section name: ``".rodata"``, ``".bss"``); ``programs`` by function
    name; ``variables`` by global name. ``btf`` is the object's BTF (a
    :class:`btf.Spec`, or None). Edit anything before :meth:`load`.
    """

    maps: dict[str, MapSpec] = dataclasses.field(default_factory=dict)
    programs: dict[str, ProgramSpec] = dataclasses.field(default_factory=dict)
    variables: dict[str, VariableSpec] = dataclasses.field(default_factory=dict)
    btf: Any = None
    byte_order: str = "little"
    #: Functions by label (subprograms): Instructions or zero-argument callables.
    functions: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: .kconfig externs: name -> (offset, size, BTF type, weak).
    kconfig: dict[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)
    #: .ksyms externs: name -> (kind "ksym"/"kfunc", weak, typed).
    ksyms: dict[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)
    #: The BTF blob for the kernel (DATASECs filled in), before sanitising.
    btf_blob: bytes | None = None
    #: struct_ops maps: map name -> kernel struct (``"tcp_congestion_ops"``);
    #: their ``contents`` are ``[(0, {member: program name | int | bytes})]``.
    struct_ops: dict[str, str] = dataclasses.field(default_factory=dict)
    #: struct_ops programs: program name -> (kernel struct, member).
    struct_ops_programs: dict[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)
    #: (ObjectFile, decode context, original functions) for the raw fast path.
    _object: Any = dataclasses.field(default=None, repr=False, compare=False)

    def copy(self) -> "CollectionSpec":
        """A deep copy to edit independently (variables follow their maps)."""
        maps = {k: m.copy() for k, m in self.maps.items()}
        for k, m in maps.items():
            if m.contents and isinstance(m.contents, list):
                m.contents = [(a, bytearray(b) if isinstance(b, bytearray) else b)
                              for a, b in m.contents]
        variables = {}
        for k, v in self.variables.items():
            nv = _copy.copy(v)
            nv._map_spec = maps.get(v.section, v._map_spec)
            variables[k] = nv
        return dataclasses.replace(self, maps=maps, variables=variables,
                                   programs={k: p.copy() for k, p in self.programs.items()},
                                   functions=dict(self.functions), kconfig=dict(self.kconfig),
                                   ksyms=dict(self.ksyms), struct_ops=dict(self.struct_ops),
                                   struct_ops_programs=dict(self.struct_ops_programs))

    def load(self, pin_path: str | os.PathLike[str] | None = None, *, kernel_btf: Any = None,
             log_level: int = 0, threads: int | None = None) -> "Collection":
        """Create every map and load every program; returns a :class:`Collection`.

        *pin_path* is the directory where maps with ``pinning =
        PinType.BY_NAME`` (``LIBBPF_PIN_BY_NAME``) are pinned, or reused
        when a compatible pin exists there. With ``pin_path=None`` such maps
        are created unpinned (unless their ``MapSpec.pin_dir`` names a
        directory): a load never writes to bpffs unless asked. This differs
        from libbpf, which pins them under ``/sys/fs/bpf`` when no pin root
        is given; pass ``pin_path="/sys/fs/bpf"`` for that (cilium/ebpf
        refuses the load instead). *kernel_btf* is the BTF CO-RE
        relocates against (None: the running kernel's). Raises
        :class:`VerifierError` naming the program the kernel refused; on any
        error nothing created here is left open or pinned.

        *threads* is how many threads may load programs at once: the kernel
        verifies programs in parallel, and a service waits for all of them
        at startup. None uses the CPUs this process may run on, at most
        4; 1 loads them one by one in this thread (as libbpf does). With
        more, a program's verification starts as soon as it is linked,
        while the next one is linked. A load that fails anywhere is undone
        and repeated one by one with a verifier log, so its errors do not
        depend on *threads*; with *log_level* > 0 the programs load one by
        one.
        """
        if self.byte_order != _native_order():
            raise ELFError(f"the object is {self.byte_order}-endian and this machine is "
                           f"{_native_order()}-endian: it can be parsed but not loaded")
        if threads is None:
            threads = _default_threads()
        elif threads.__class__ is not int:
            try:
                threads = operator.index(threads)
            except TypeError:
                raise TypeError(f"CollectionSpec.load: threads must be an int or None, "
                                f"not {type(threads).__name__}") from None
        if threads < 1:
            raise ValueError(f"CollectionSpec.load: threads must be >= 1 or None, got {threads}")
        return load_spec(self, None if pin_path is None else os.fspath(pin_path),  # type: ignore[no-any-return]
                         kernel_btf, log_level, Collection, ObjectProgram, threads)

    def __repr__(self) -> str:
        return (f"<CollectionSpec {len(self.programs)} programs, {len(self.maps)} maps, "
                f"{len(self.variables)} variables>")


class Collection:
    """Loaded maps, programs and variables; ``close()`` releases them all.

    Use it in a ``with`` block, or call :meth:`close`. Pins stay (that is
    what pins are for). Take a map or program out with :meth:`detach_map` /
    :meth:`detach_program` to keep it beyond the collection.
    """

    def __init__(self, spec: CollectionSpec, maps: dict[Any, Any], programs: dict[Any, Any],
                 variables: dict[Any, Any] | None = None, btf_handle: Any = None) -> None:
        """*variables* None: a :class:`Variable` for every variable of *spec*
        whose section is among *maps*, made on first use of :attr:`variables`
        (from the spec's variables and maps as they are now)."""
        self.spec = spec
        self.maps = maps
        self.programs = programs
        self._variables = variables
        self._var_source = (dict(spec.variables), dict(maps)) if variables is None else None
        self.btf = btf_handle

    @property
    def variables(self) -> dict[str, Variable]:
        """The live global variables by name (``.data``, ``.bss``, ``.rodata``, ...)."""
        v = self._variables
        if v is None:
            var_specs, maps = self._var_source  # type: ignore[misc]
            v = {}
            for name, vs in var_specs.items():
                m = maps.get(vs.section)
                if m is not None:
                    v[name] = Variable(vs, m)
            self._variables = v
            self._var_source = None
        return v

    @variables.setter
    def variables(self, value: dict[str, Variable]) -> None:
        self._variables = value
        self._var_source = None

    def detach_map(self, name: str) -> Any:
        """Remove map *name* from the collection; the caller now owns it."""
        return self.maps.pop(name)

    def detach_program(self, name: str) -> Any:
        """Remove program *name* from the collection; the caller now owns it."""
        return self.programs.pop(name)

    def close(self) -> None:
        """Close every program, map and the BTF object (twice is harmless)."""
        if self._variables is not None:
            for v in self._variables.values():
                v._mem = None
        for p in self.programs.values():
            p.close()
        for m in self.maps.values():
            m.close()
        if self.btf is not None:
            self.btf.close()

    def __enter__(self) -> "Collection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<Collection {len(self.programs)} programs, {len(self.maps)} maps, "
                f"{len(self.variables)} variables>")


def _native_order() -> str:
    import sys
    return sys.byteorder


def _read_file(path: str) -> bytes:
    """The whole file at *path*: open, fstat, read, close, where ``open(path,
    "rb").read()`` makes nine syscalls (isatty, seeks, a second fstat and
    a read to see the end)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        size = st.st_size
        data = os.read(fd, size + 1)
        # A regular file that read no more than its size has ended; anything
        # else (it grew, or a pipe or /proc file reporting no size) is read
        # to its end.
        if len(data) > size or not stat.S_ISREG(st.st_mode):
            chunks = [data]
            while chunks[-1]:
                chunks.append(os.read(fd, 1 << 16))
            data = b"".join(chunks)
        return data
    finally:
        os.close(fd)


def _read_source(source: Any) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), ""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        return _read_file(path), path
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("the file object must be opened in binary mode")
        return bytes(data), getattr(source, "name", "") if isinstance(
            getattr(source, "name", ""), str) else ""
    raise TypeError(f"load_collection_spec takes a path, bytes or a binary file, "
                    f"not {type(source).__name__}")


def load_collection_spec(source: str | os.PathLike[str] | bytes | bytearray | io.IOBase,
                         *, name: str | None = None) -> CollectionSpec:
    """Read a compiled BPF object into a :class:`CollectionSpec`.

    *source* is a path, the bytes of the object, or a binary file object.
    *name* is the object name data maps are prefixed with (default: the
    file name up to its first dot, as libbpf does). Raises
    :class:`ELFError` for a malformed or unsupported object and
    :class:`btf.BTFError` for malformed BTF in it, never anything else.
    """
    data, path = _read_source(source)
    from .elf.objfile import object_name
    try:
        return parse_spec(data, object_name(path) if name is None else name,  # type: ignore[no-any-return]
                          CollectionSpec, ObjectProgramSpec)
    except (ELFError, BTFError):
        raise
    except RecursionError:
        raise ELFError("object is too deeply nested (BTF type chain or calls)") from None
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, UnicodeError,
            MemoryError, AttributeError, ArithmeticError) as e:
        # Anything the checks above missed is still a malformed object.
        raise ELFError(f"malformed object: {type(e).__name__}: {e}") from None


def load_collection(source: Any, pin_path: str | os.PathLike[str] | None = None, *,
                    threads: int | None = None, **kwargs: Any) -> Collection:
    """``load_collection_spec(source).load(pin_path, threads=threads, **kwargs)``
    in one call."""
    return load_collection_spec(source).load(pin_path, threads=threads, **kwargs)
