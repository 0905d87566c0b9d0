"""A short run of every fuzz target (fuzz/targets.py) in the suite.

Deterministic mutations of the testdata/ seeds (bytes flipped, inserted,
removed, the input cut short), so every run tries the same inputs; long,
coverage-guided runs are ``scripts/fuzz.sh TARGET SECONDS`` (atheris).
"""

from __future__ import annotations

import os
import random
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "fuzz"))
import targets  # noqa: E402
from elfmut import mutate_elf  # noqa: E402

pytestmark = [pytest.mark.noroot, pytest.mark.fuzz]

ROUNDS = {"btf": 300, "btf_ext": 1500, "asm": 1500, "elf": 600}


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        elif op == 2 and b:
            del b[rng.randrange(len(b))]
        elif b:
            del b[rng.randrange(len(b)):]
    return bytes(b)


@pytest.mark.parametrize("target", sorted(targets.TARGETS))
def test_short_fuzz_run(target):
    fn = targets.TARGETS[target]
    seeds = targets.seeds(target)
    assert seeds, f"no seeds for {target} in testdata/"
    rng = random.Random(f"fastbpf-{target}")
    for seed in seeds:
        fn(seed)                      # the seeds themselves parse
    for i in range(ROUNDS[target]):
        seed = rng.choice(seeds)
        # The ELF target alternates with field-level changes that keep the
        # layout (elfmut), which get past the section header checks.
        fn(mutate_elf(seed, rng) if target == "elf" and i % 2 else mutate(rng, seed))


def test_crash_artifacts_are_regression_tests():
    """Every input a long fuzz run saved as a crash is replayed here (and
    must pass once fixed); fuzz/crashes/TARGET/ holds them."""
    root = os.path.join(os.path.dirname(__file__), os.pardir, "fuzz", "crashes")
    replayed = 0
    for target in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        d = os.path.join(root, target)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.startswith(("crash-", "timeout-", "oom-", "regression-")):
                with open(os.path.join(d, name), "rb") as f:
                    targets.TARGETS[target](f.read())
                replayed += 1
