"""CO-RE relocation against vmlinux BTF: fastbpf vs libbpf, same run.

    python bench/bench_core.py [rounds]

The object is testdata/core_bench-el.o: 12 raw_tp programs with 285 CO-RE
relocations against task_struct, mm_struct, signal_struct and cred, no
maps. The baseline, bench/c/load_obj.c (mode ``load-open``, wall clock), is
libbpf's ``bpf_object__open_file`` + ``bpf_object__load`` timed, then
``bpf_object__close`` (it parses vmlinux BTF, relocates, loads the object's BTF and every
program). fastbpf's side, per iteration:

- *cold*: forget the cached kernel BTF and the CO-RE index, then parse
  vmlinux BTF and relocate every program (``relocate_instructions``);
- *cold + load*: the same, then ``Program.load`` of the 12 programs (the
  verifier's time, which both sides pay) and close them;
- *warm + load*: a later load in the same process (kernel BTF and its
  candidate index cached), relocate + load.

Until the ELF loader (issue 13) lands, fastbpf's side starts from
instructions decoded once by tests/core_objects.py (libbpf's open is
0.02-0.15 ms, so this leaves out little); when ``fastbpf.load_collection``
exists, ``FULL_LOADER`` switches the load rows to it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import fastbpf  # noqa: E402
from fastbpf import btf  # noqa: E402
from fastbpf.btf import core  # noqa: E402
from fastbpf.btf.core import _match, _targets  # noqa: E402

from _cbuild import build  # noqa: E402

OBJECT = os.path.join(ROOT, "testdata", "core_bench-el.o")
FULL_LOADER = hasattr(fastbpf, "load_collection")


def _flush() -> None:
    btf.flush_kernel_specs()
    _targets._indexes.clear()
    _match._member_cache.clear()


class FastbpfSide:
    """The object decoded once; each run relocates fresh copies."""

    def __init__(self, path: str = OBJECT):
        import core_objects
        self.obj = core_objects.load(path)
        self.funcs = [(name, fn.insns, fn.pairs()) for name, fn in self.obj.funcs.items()
                      if fn.relos]
        self.count = sum(len(p) for _, _, p in self.funcs)

    def relocate(self) -> list:
        cache: dict = {}
        out = []
        for name, insns, pairs in self.funcs:
            mine = insns.copy()
            core.relocate_instructions(self.obj.spec, mine, pairs, cand_cache=cache,
                                       program=name)
            out.append((name, mine))
        return out

    def load(self, progs) -> None:
        from fastbpf import Program, ProgramSpec
        from fastbpf.enums import ProgramType
        loaded = [Program.load(ProgramSpec(ProgramType.RAW_TRACEPOINT, insns, name=name))
                  for name, insns in progs]
        for p in loaded:
            p.close()

    def once(self, cold: bool, load: bool) -> float:
        """Milliseconds for one relocation (+ load) pass."""
        if FULL_LOADER and load:
            if cold:
                _flush()
            t0 = time.perf_counter()
            fastbpf.load_collection(OBJECT).close()
            return (time.perf_counter() - t0) * 1e3
        if cold:
            _flush()
        t0 = time.perf_counter()
        progs = self.relocate()
        if load:
            self.load(progs)
        return (time.perf_counter() - t0) * 1e3


def libbpf_times(iters: int) -> list[float]:
    exe = build("load_obj", ("-lbpf",))
    out = subprocess.run([exe, OBJECT, str(iters), "load-open", "wall"], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)["times_ms"]


def compare(rounds: int = 6, per_round: int = 5) -> list[dict]:
    """Rows for bench/compare.py: medians, the sides alternating in rounds."""
    side = FastbpfSide()
    side.once(True, True)   # warm imports and the page cache
    libbpf_times(1)
    cases = {("cold", False): [], ("cold", True): [], ("warm", True): [], ("warm", False): []}
    base: list[float] = []
    for _ in range(rounds):
        for (state, load), acc in cases.items():
            if state == "warm":
                side.once(True, False)   # fill the caches once, then measure
            acc += [side.once(state == "cold", load) for _ in range(per_round)]
        base += libbpf_times(per_round)
    b = statistics.median(base)
    rows = []
    names = {
        ("cold", False): f"parse vmlinux BTF + relocate {side.count} CO-RE relocations",
        ("cold", True): f"parse vmlinux BTF + relocate {side.count} + load 12 programs",
        ("warm", True): "second load in process: relocate + load 12 programs",
        ("warm", False): "second load in process: relocate only",
    }
    for key, acc in cases.items():
        f = statistics.median(acc)
        rows.append(dict(name=names[key] + " (vs libbpf open+load)", fastbpf_ns=f * 1e6,
                         c_ns=b * 1e6, ratio=f / b))
    return rows


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    for r in compare(rounds):
        print(f"{r['name']}: fastbpf {r['fastbpf_ns'] / 1e6:.2f} ms, libbpf "
              f"{r['c_ns'] / 1e6:.2f} ms, ratio {r['ratio']:.2f}")
