"""``fastbpf btf dump`` (C headers clang compiles with the right layout, raw
listings like bpftool's) and the trace pipe (``trace_lines``, ``prog tracelog``)."""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import struct
import subprocess
import sys

import pytest

from fastbpf import Program, ProgramSpec, ProgramType, asm, btf, features, trace_lines
from fastbpf.asm import R0, R1, R2, R10, Helper, Size
from fastbpf.btf.c_header import c_header, spec_from_path

from test_cli import run

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TESTDATA = os.path.join(ROOT, "testdata")
CLANG = shutil.which("clang-19") or shutil.which("clang")
needs_clang = pytest.mark.skipif(CLANG is None, reason="clang is not installed")


def _layout_asserts(spec: btf.Spec, limit: int | None = None) -> str:
    """_Static_asserts of sizeof/offsetof for every uniquely named struct or union."""
    names = collections.Counter(t.name for t in spec
                                if isinstance(t, (btf.Struct, btf.Union, btf.Enum)) and t.name)
    out = []
    for t in spec:
        if not isinstance(t, (btf.Struct, btf.Union)) or not t.name or names[t.name] != 1:
            continue
        kw = "union" if isinstance(t, btf.Union) else "struct"
        out.append(f"_Static_assert(sizeof({kw} {t.name}) == {t.size}, \"{t.name}\");")
        for m in t.members:
            if m.name and not m.bitfield_size:
                out.append(f"_Static_assert(__builtin_offsetof({kw} {t.name}, {m.name}) == "
                           f"{m.bit_offset // 8}, \"{t.name}.{m.name}\");")
        if limit is not None and len(out) >= limit:
            break
    return "\n".join(out)


def _compile(header: str, tmp_path, extra: str = "") -> None:
    h = tmp_path / "out.h"
    h.write_text(header)
    src = f'#include "{h}"\n{extra}\nint fastbpf_test_anchor;\n'
    r = subprocess.run([CLANG, "-target", "bpf", "-O2", "-Wall", "-c", "-x", "c", "-",
                        "-o", str(tmp_path / "out.o")], input=src, text=True,
                       capture_output=True)
    assert r.returncode == 0, r.stderr[-3000:]


@needs_clang
def test_btf_dump_c_of_the_kernel_compiles_with_its_layout(tmp_path):
    why = features.skip_reason("vmlinux_btf")
    if why:
        pytest.skip(why)
    out = tmp_path / "vmlinux.h"
    rc, _, err = run("btf", "dump", "id", "1", "--format", "c", "-o", str(out))
    if rc != 0:  # id 1 is not always vmlinux: name it
        rc, _, err = run("btf", "dump", "vmlinux", "--format", "c", "-o", str(out))
    assert rc == 0, err
    header = out.read_text()
    assert "struct task_struct {" in header and "#ifndef __VMLINUX_H__" in header
    # Every uniquely named struct and union has the kernel's size and offsets.
    _compile(header, tmp_path, _layout_asserts(btf.load_kernel_spec()))


@needs_clang
@pytest.mark.parametrize("obj", ["btf_types-el.o", "btf_types-eb.o", "core_globals-el.o"])
def test_btf_dump_c_of_testdata_objects_compiles(obj, tmp_path):
    path = os.path.join(TESTDATA, obj)
    rc, header, err = run("btf", "dump", "file", path, "--format", "c")
    assert rc == 0, err
    spec = spec_from_path(path)
    assert header == c_header(spec)
    if obj.startswith("btf_types-el"):
        assert "struct flow_key {" in header and "enum color {" in header
    _compile(header, tmp_path, _layout_asserts(spec))


@pytest.mark.parametrize("obj", ["btf_types-el.o", "btf_types-eb.o", "core_globals-el.o"])
def test_btf_dump_raw_matches_bpftool(obj):
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool not installed")
    path = os.path.join(TESTDATA, obj)
    rc, ours, _ = run("btf", "dump", path)
    assert rc == 0
    theirs = subprocess.run(["bpftool", "btf", "dump", "file", path, "format", "raw"],
                            capture_output=True, text=True, check=True).stdout
    assert ours.count("\n") > 20 and ours == theirs


def test_btf_list_shows_vmlinux():
    rc, out, _ = run("btf", "list")
    assert rc == 0 and any(line.split()[-1] == "vmlinux" for line in out.splitlines()[1:])


def _printk_prog(message: bytes) -> Program:
    """An XDP program calling bpf_trace_printk(message)."""
    data = message + b"\0" * (8 - len(message) % 8)
    insns = []
    base = -len(data)
    for i in range(0, len(data), 8):
        insns += [asm.load_imm64(R1, struct.unpack("<q", data[i:i + 8])[0]),
                  asm.store_mem(R10, base + i, R1, Size.DW)]
    insns += [asm.Mov.reg(R1, R10), asm.Add.imm(R1, base), asm.Mov.imm(R2, len(message) + 1),
              asm.call(Helper.trace_printk), asm.Mov.imm(R0, 2), asm.exit()]
    return Program.load(ProgramSpec(ProgramType.XDP, asm.Instructions(insns), name="fbprintk"))


def _have_trace_pipe() -> bool:
    return any(os.path.exists(p) for p in ("/sys/kernel/tracing/trace_pipe",
                                           "/sys/kernel/debug/tracing/trace_pipe"))


@pytest.fixture
def printk(unique_name):
    if not _have_trace_pipe():
        pytest.skip("no trace pipe (tracefs is not mounted)")
    why = features.skip_reason("helper", ProgramType.XDP, Helper.trace_printk)
    if why:
        pytest.skip(why)
    message = f"hello {unique_name}".encode()
    with _printk_prog(message) as p:
        yield p, message.decode()


def test_trace_lines_yields_parsed_printk_lines(printk):
    prog, message = printk
    with trace_lines(timeout=5.0) as lines:
        prog.test_run(b"\0" * 64)
        found = [ln for ln in lines if message in ln.message]
        # Ends by itself: 5 s without a line (others may print meanwhile).
    assert found, "the message never arrived"
    ln = found[0]
    assert ln.message == message and ln.function == "bpf_trace_printk"
    assert ln.pid == __import__("threading").get_native_id()  # test_run runs in our task
    assert ln.cpu in range(os.cpu_count() or 1) and ln.timestamp > 0 and ln.task


def test_trace_lines_async(printk):
    prog, message = printk

    async def collect() -> list:
        got = []
        async for ln in trace_lines(timeout=5.0):
            if message in ln.message:
                got.append(ln)
                break
        return got

    async def main() -> list:
        task = asyncio.ensure_future(collect())
        await asyncio.sleep(0.2)
        prog.test_run(b"\0" * 64)
        return await task

    found = asyncio.run(main())
    assert found and found[0].message == message


def test_prog_tracelog_prints_live(printk):
    prog, message = printk
    p = subprocess.Popen([sys.executable, "-m", "fastbpf.cli", "prog", "tracelog", "--timeout",
                          "4", "-j"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=ROOT)
    import time
    time.sleep(1.5)  # let it open the pipe
    prog.test_run(b"\0" * 64)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    import json
    lines = [json.loads(x) for x in out.splitlines()]
    mine = [x for x in lines if message in x["message"]]
    assert mine and mine[0]["function"] == "bpf_trace_printk" and mine[0]["pid"] > 0


def test_parse_trace_line_formats():
    from fastbpf.trace import parse_trace_line
    a = parse_trace_line("          <idle>-0       [001] d.s31  1234.567890: bpf_trace_printk: hi there")
    assert a is not None and (a.task, a.pid, a.cpu, a.flags, a.timestamp, a.function,
                              a.message) == ("<idle>", 0, 1, "d.s31", 1234.56789,
                                             "bpf_trace_printk", "hi there")
    b = parse_trace_line(" python3-mod-77  (   77) [000] ..... 5.000001: bpf_trace_printk: x-1")
    assert b is not None and (b.task, b.pid, b.message) == ("python3-mod", 77, "x-1")
    assert parse_trace_line("garbage") is None
