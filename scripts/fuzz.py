"""Run one fuzz target (fuzz/targets.py) under atheris (libFuzzer for Python).

    python3 scripts/fuzz.py TARGET SECONDS [--runs N] [--corpus DIR] [--artifacts DIR]

The corpus starts from the objects in testdata/ (copied to DIR, default a
fresh temporary directory). Crashing inputs land in the artifacts directory
(default fuzz/crashes/TARGET/); each must become a regression test. Prints
libFuzzer's final statistics (executions, ...) and exits non-zero on a crash
or a hang (an input taking longer than 10 s).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "fuzz"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target")
    ap.add_argument("seconds", type=int)
    ap.add_argument("--runs", type=int, default=-1, help="stop after N inputs")
    ap.add_argument("--corpus")
    ap.add_argument("--artifacts")
    ap.add_argument("--max-len", type=int, default=65536,
                    help="longest input (smaller inputs run faster)")
    args = ap.parse_args()

    import atheris
    import targets
    if args.target not in targets.TARGETS:
        sys.exit(f"unknown target {args.target!r}; one of {sorted(targets.TARGETS)}")
    corpus = args.corpus or tempfile.mkdtemp(prefix=f"fastbpf-fuzz-{args.target}-")
    os.makedirs(corpus, exist_ok=True)
    for seed in targets.seeds(args.target):
        name = hashlib.sha1(seed).hexdigest()
        with open(os.path.join(corpus, name), "wb") as f:
            f.write(seed)
    artifacts = args.artifacts or os.path.join(ROOT, "fuzz", "crashes", args.target)
    os.makedirs(artifacts, exist_ok=True)

    with atheris.instrument_imports(include=["fastbpf"]):
        import fastbpf.asm  # noqa: F401
        import fastbpf.btf  # noqa: F401
        import fastbpf.btf.ext  # noqa: F401
        import fastbpf.collection  # noqa: F401
        import fastbpf.elf.build  # noqa: F401
    fn = targets.TARGETS[args.target]
    fn(b"")  # import what the target needs before the clock starts

    argv = [sys.argv[0], corpus, f"-max_total_time={args.seconds}", f"-runs={args.runs}",
            "-timeout=10", "-rss_limit_mb=4096", "-print_final_stats=1",
            f"-artifact_prefix={artifacts.rstrip('/')}/", f"-max_len={args.max_len}"]
    mutator = None
    if args.target == "elf":
        # Half the inputs from the structure-aware mutator (one field of a
        # section header, symbol, relocation, BTF record or instruction), half
        # from libFuzzer's byte-level one.
        import random

        from elfmut import mutate_elf

        def mutator(data: bytes, max_size: int, seed: int) -> bytes:
            rng = random.Random(seed)
            if rng.random() < 0.5:
                return mutate_elf(data, rng)[:max_size]
            return atheris.Mutate(data, max_size)
    atheris.Setup(argv, fn, custom_mutator=mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
