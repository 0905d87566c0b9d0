"""fastbpf: eBPF for Python, with the speed of C and the comfort of numpy.

The bpf(2), perf_event_open(2) and mmap(2) calls are issued from Cython; no
libbpf, no BCC, no LLVM at run time. Map contents, per-CPU values and ring
buffer records arrive as numpy arrays the kernel wrote into.
"""

from . import _core, asm, btf
from ._core import FD, possible_cpus
from .enums import (AttachFlags, AttachType, Command, LinkType, MapFlags, MapType,
                    ProgramFlags, ProgramType, StatsType, TCAction, UpdateFlags, XDPAction,
                    XDPFlags)
from .errors import (BPFError, BTFError, BTFLoadError, ClosedError, ELFError,
                     NotSupportedError, VerifierError)
from .maps import Map, MapInfo, MapSpec, lpm_key_dtype, map_ids
from .programs import (Program, ProgramInfo, ProgramSpec, StatsHandle, TestRunResult,
                       enable_stats, program_ids)
from . import features, perf, ringbuf
from .trace import TraceLine, trace_lines
from . import link

__version__ = "0.1.0"

__all__ = [
    "FD", "possible_cpus",
    "AttachFlags", "AttachType", "Command", "LinkType", "MapFlags", "MapType",
    "ProgramFlags", "ProgramType", "StatsType", "TCAction", "UpdateFlags", "XDPAction",
    "XDPFlags",
    "BPFError", "BTFError", "BTFLoadError", "ClosedError", "ELFError", "NotSupportedError",
    "VerifierError",
    "Map", "MapInfo", "MapSpec", "lpm_key_dtype", "map_ids",
    "Program", "ProgramInfo", "ProgramSpec", "StatsHandle", "TestRunResult", "enable_stats",
    "program_ids", "features", "perf", "ringbuf", "TraceLine", "trace_lines",
    "asm", "btf", "link",
]
