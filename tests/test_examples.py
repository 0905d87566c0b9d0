"""Each example in examples/ runs against the kernel and gets the right answer."""

from __future__ import annotations

import importlib.util
import os
import shutil

import numpy as np
import pytest

from fastbpf import ProgramType, features

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}",
                                                  os.path.join(EXAMPLES, f"{name}.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def need(ptype: ProgramType) -> None:
    why = features.skip_reason("program_type", ptype)
    if why:
        pytest.skip(why)


def test_tracepoint_counter(capsys):
    need(ProgramType.TRACEPOINT)
    assert load("tracepoint_counter").main(250) == 250
    assert "counted 250" in capsys.readouterr().out


def test_ringbuf_consumer():
    need(ProgramType.XDP)
    events = load("ringbuf_consumer").main(700)
    assert events["seq"].tolist() == list(range(700))
    assert events["length"].tolist() == [64 + i % 64 for i in range(700)]


def test_xdp_counter_on_a_veth_pair():
    need(ProgramType.XDP)
    if shutil.which("ip") is None or shutil.which("nsenter") is None:
        pytest.skip("needs iproute2 and nsenter")
    assert load("xdp_counter").main(15) == {17: 15}


def test_latency_histogram():
    need(ProgramType.TRACEPOINT)
    mod = load("latency_histogram")
    counts = mod.main()
    assert isinstance(counts, np.ndarray) and counts.shape == (64,)
    assert counts.sum() == sum(mod.SLEEPS.values())
    # A sleep is never shorter than asked: 1 ms is past 2**9 units of 1024 ns,
    # 16 ms past 2**13.
    assert counts[:9].sum() == 0
    assert counts[13:].sum() >= mod.SLEEPS[0.016]
