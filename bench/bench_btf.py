"""Parsing vmlinux BTF and finding task_struct: fastbpf vs libbpf.

Run as a script for the comparison (both measured in this run):

    python bench/bench_btf.py [iterations]

or under pytest-benchmark: ``pytest bench/bench_btf.py``.

The baseline, bench/c/btf_parse.c, calls libbpf's ``btf__parse`` and
``btf__find_by_name_kind``; it is built here with ``gcc -lbpf``. Both sides
read the file, validate and index all types, and look up one name. fastbpf
does it with a lazily materialized spec (see fastbpf/btf/spec.py).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from fastbpf import btf  # noqa: E402

VMLINUX = "/sys/kernel/btf/vmlinux"
BUILD = os.path.join(HERE, "build")


def build_baseline() -> str:
    """Compile bench/c/btf_parse.c (once) and return the binary's path."""
    src = os.path.join(HERE, "c", "btf_parse.c")
    exe = os.path.join(BUILD, "btf_parse")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        os.makedirs(BUILD, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-Wall", "-o", exe, src, "-lbpf"], check=True)
    return exe


def fastbpf_once(path: str = VMLINUX, read: bool = False) -> float:
    """Milliseconds to load + parse *path* and find task_struct.

    By default through ``Spec.from_file`` (what ``load_kernel_spec`` uses:
    it maps /sys/kernel/btf files where the kernel allows); with *read*,
    through ``read()`` + ``Spec.parse`` like the libbpf baseline.
    """
    t0 = time.perf_counter()
    if read:
        with open(path, "rb") as f:
            spec = btf.Spec.parse(f.read())
    else:
        spec = btf.Spec.from_file(path)
    t = spec.type_by_name("task_struct", kind=btf.Kind.STRUCT)
    t1 = time.perf_counter()
    assert t.size > 0
    return (t1 - t0) * 1e3


def libbpf_times(iters: int, path: str = VMLINUX) -> list[float]:
    out = subprocess.run([build_baseline(), path, str(iters)], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)["times_ms"]


def compare(iters: int = 40) -> list[dict]:
    """Rows for bench/compare.py: medians over *iters* runs, the two sides
    alternating in rounds of 10 so load on the machine hits both alike."""
    fastbpf_once()  # warm the page cache and imports
    fast: list[float] = []
    base: list[float] = []
    for _ in range(max(1, iters // 10)):
        fast += [fastbpf_once() for _ in range(10)]
        base += libbpf_times(10)
    f_med, b_med = statistics.median(fast), statistics.median(base)
    return [dict(name="parse vmlinux BTF + find task_struct (vs libbpf btf__parse)",
                 fastbpf_ns=f_med * 1e6, c_ns=b_med * 1e6, ratio=f_med / b_med)]


def main(iters: int = 20) -> None:
    fastbpf_once()  # warm the page cache and imports
    fast = [fastbpf_once() for _ in range(iters)]
    fast_read = [fastbpf_once(read=True) for _ in range(iters)]
    base = libbpf_times(iters)
    f_med, b_med = statistics.median(fast), statistics.median(base)
    r_med = statistics.median(fast_read)
    print(f"vmlinux BTF: {os.path.getsize(VMLINUX)} bytes, "
          f"{len(btf.Spec.parse(open(VMLINUX, 'rb').read())) - 1} types, {iters} runs")
    print(f"  fastbpf  parse + find task_struct: median {f_med:7.2f} ms  (min {min(fast):.2f})")
    print(f"  fastbpf  read() + parse + find:    median {r_med:7.2f} ms  (min {min(fast_read):.2f})")
    print(f"  libbpf   parse + find task_struct: median {b_med:7.2f} ms  (min {min(base):.2f})")
    print(f"  ratio fastbpf/libbpf: {f_med / b_med:.2f}x (goal: <= 2x); "
          f"with read(): {r_med / b_med:.2f}x")


def test_bench_parse_vmlinux(benchmark):
    """pytest-benchmark case: the fastbpf side of the comparison."""
    import pytest
    if not os.path.exists(VMLINUX):
        pytest.skip("kernel has no BTF")

    def run():
        return btf.Spec.from_file(VMLINUX).type_by_name("task_struct")

    t = benchmark(run)
    assert t.size > 0
    try:
        base = statistics.median(libbpf_times(10))
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"libbpf baseline unavailable: {e}")
    benchmark.extra_info["libbpf_median_ms"] = base
    benchmark.extra_info["ratio"] = benchmark.stats.stats.median * 1e3 / base


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
