"""fastbpf: eBPF for Python, with the speed of C and the comfort of numpy.

The bpf(2), perf_event_open(2) and mmap(2) calls are issued from Cython; no
libbpf, no BCC, no LLVM at run time. Map contents, per-CPU values and ring
buffer records arrive as numpy arrays the kernel wrote into.

Conventions shared by every kernel object (maps, programs, links, BTF):

- Live objects come from class methods: ``create``/``load``, ``from_fd``
  (duplicates; the caller keeps its fd), ``from_pin`` and ``from_id``.
  Constructors only take ownership of an open ``fastbpf.FD`` (fastbpf's own
  modules use them); ``Map()`` refuses even that, since a map's shape comes
  from the kernel.
- ``info()`` returns a frozen dataclass; ``map_ids()``, ``program_ids()``,
  ``link_ids()`` and ``btf_ids()`` list what the kernel holds.
- ``pin(path)`` / ``unpin(path=None)``: an object remembers where it was
  pinned or opened from. ``close()``, ``with`` or the GC releases it; use
  after close raises :class:`ClosedError`.
- The program argument of every attach function is ``program``; byte
  orders are ``byte_order=`` ("little", "big", "native").
- Something named that does not exist (tracepoint, function, interface,
  member) raises :class:`TargetNotFoundError`.
"""

from __future__ import annotations

from . import _core, asm, btf
from ._core import FD
from .cpus import online_cpus, possible_cpus
from .enums import (AttachFlags, AttachType, Command, LinkType, MapFlags, MapType,
                    ProgramFlags, ProgramType, StatsType, TCAction, UpdateFlags, XDPAction,
                    XDPFlags)
from .errors import (BPFError, BTFError, BTFLoadError, ClosedError, ELFError,
                     MapIncompatibleError, NotSupportedError, TargetNotFoundError,
                     VerifierError)
from .maps import Map, MapInfo, MapSpec, PinType, lpm_key_dtype, map_ids
from .programs import (Program, ProgramInfo, ProgramSpec, StatsHandle, TestRunResult,
                       enable_stats, program_ids)
from . import features, perf, ringbuf
from .trace import TraceLine, trace_lines
from . import link
from .btf import btf_ids
from .link import link_ids
from .collection import (Collection, CollectionSpec, ObjectProgram, load_collection,
                         load_collection_spec)
from .variables import Variable, VariableSpec

__version__ = "0.1.0"

__all__ = [
    "FD", "online_cpus", "possible_cpus",
    "AttachFlags", "AttachType", "Command", "LinkType", "MapFlags", "MapType",
    "ProgramFlags", "ProgramType", "StatsType", "TCAction", "UpdateFlags", "XDPAction",
    "XDPFlags",
    "BPFError", "BTFError", "BTFLoadError", "ClosedError", "ELFError", "NotSupportedError",
    "TargetNotFoundError", "VerifierError", "MapIncompatibleError", "PinType",
    "Map", "MapInfo", "MapSpec", "lpm_key_dtype", "map_ids",
    "Program", "ProgramInfo", "ProgramSpec", "StatsHandle", "TestRunResult", "enable_stats",
    "program_ids", "link_ids", "btf_ids", "features", "perf", "ringbuf", "TraceLine",
    "trace_lines",
    "asm", "btf", "link",
    "Collection", "CollectionSpec", "ObjectProgram", "load_collection", "load_collection_spec",
    "Variable", "VariableSpec",
]
