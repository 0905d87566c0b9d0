"""fastbpf.perf against the kernel: an XDP program run by BPF_PROG_TEST_RUN
writes samples with a sequence number through bpf_perf_event_output and
counts the outputs that fail; the reader checks order, exactly-once delivery
and the lost counts the kernel reports.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import sys
import threading
import time

import numpy as np
import pytest

from fastbpf import Map, MapSpec, MapType, asm, perf, possible_cpus
from fastbpf.asm import R0, R1, R2, R3, R4, R5, R6, R7, R10, Helper
from fastbpf.enums import ProgramType
from fastbpf.errors import ClosedError
from fastbpf.programs import Program, ProgramSpec

sys.path.insert(0, os.path.dirname(__file__))
import progs  # noqa: E402
from ringutil import (WORDS, run_in_child, store_record,  # noqa: E402
                      wait_until_blocked_in_epoll, words_expected)

PKT = bytes(64)
SEQ = np.dtype([("seq", "<u8")])
BPF_F_CURRENT_CPU = 0xFFFFFFFF


def perf_prog(events: Map, ctr: Map, size: int = 8, words: bool = False,
              var: bool = False) -> Program:
    """XDP: seq = ctr[0]++; perf_event_output(ctx, events, CURRENT_CPU,
    {seq, seq, ...}, size); on failure ctr[1]++. With *words*, word k of
    the sample is seq * 16 + k; with *var* the size is 8 * (1 + seq % 4)."""
    body = progs.seq_prologue("ctr")
    store_record(body, -72, words)
    body += [
        asm.Mov.reg(R1, R6), asm.load_map_ptr(R2, "events"),
        asm.Mov32.imm(R3, BPF_F_CURRENT_CPU),
        asm.Mov.reg(R4, R10), asm.Add.imm(R4, -72),
        *([asm.Mov.reg(R5, R7), asm.And.imm(R5, 3), asm.Add.imm(R5, 1), asm.Lsh.imm(R5, 3)]
          if var else [asm.Mov.imm(R5, size)]),
        asm.call(Helper.perf_event_output),
        asm.JEq.imm(R0, 0, "out"),
        *progs.add_to_slot("ctr", 1),           # a failed output: ctr[1]++
        asm.Mov.imm(R0, 2).with_symbol("out"), asm.exit(),
    ]
    return Program.load(ProgramSpec(type=ProgramType.XDP, instructions=asm.Instructions(body)),
                        maps={"events": events, "ctr": ctr})


@pytest.fixture
def maps(unique_name):
    events = Map.create(MapSpec(type=MapType.PERF_EVENT_ARRAY, key=4, value=4,
                                max_entries=possible_cpus(), name=unique_name[:12] + "pe"))
    ctr = Map.create(MapSpec(type=MapType.ARRAY, key="<u4", value="<u8", max_entries=2,
                             name=unique_name[:12] + "ct"))
    yield events, ctr
    events.close()
    ctr.close()


@pytest.fixture
def setup(maps, no_fd_leak):
    events, ctr = maps
    prog = perf_prog(events, ctr)
    p = perf.Reader(events, per_cpu_bytes=1 << 16)
    yield events, ctr, prog, p
    p.close()
    prog.close()


def _run(prog: Program, n: int, cpu: int | None = None) -> None:
    """test_run on *cpu* (pinning this thread) so samples land on its ring."""
    if cpu is None:
        prog.test_run(data=PKT, repeat=n)
        return
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        prog.test_run(data=PKT, repeat=n)
    finally:
        os.sched_setaffinity(0, old)


def test_read_one_by_one(setup):
    events, ctr, prog, p = setup
    assert p.read(timeout=0) is None
    cpu = perf.online_cpus()[-1]
    _run(prog, 5, cpu)
    got = [p.read(timeout=1.0) for _ in range(5)]
    # 8 bytes of data arrive padded to 12 (the raw size field + data is 8-aligned)
    assert all(len(g) == 12 and g.cpu == cpu for g in got)
    assert [int.from_bytes(g.data[:8], "little") for g in got] == [0, 1, 2, 3, 4]
    assert p.read(timeout=0) is None
    assert ctr[1] == 0
    assert p.lost().tolist() == [0] * possible_cpus()


def test_every_sample_once_in_order_per_cpu(setup):
    events, ctr, prog, p = setup
    cpus = perf.online_cpus()
    expect: dict[int, list[int]] = {c: [] for c in cpus}
    seq = 0
    for rnd in range(3):
        for c in cpus:
            _run(prog, 500, c)
            expect[c] += list(range(seq, seq + 500))
            seq += 500
    got: dict[int, list[int]] = {c: [] for c in cpus}
    while True:
        arr, cpu = p.read_batch(dtype=SEQ, max_records=700, timeout=0, with_cpus=True)
        if len(arr) == 0:
            break
        for c in cpus:
            got[c] += arr["seq"][cpu == c].tolist()
    assert got == expect
    assert ctr[0] == seq and ctr[1] == 0


def test_read_batch_variable(setup):
    events, ctr, prog, p = setup
    cpu = perf.online_cpus()[0]
    _run(prog, 10, cpu)
    b = p.read_batch(timeout=1.0)
    assert len(b) == 10
    assert b.sizes.tolist() == [12] * 10
    assert b.cpus.tolist() == [cpu] * 10
    assert b.offsets.tolist() == [16 * i for i in range(10)]   # 12-byte records, 8-aligned
    assert b.data.view("<u8")[b.offsets // 8].tolist() == list(range(10))
    assert [int(r[:8].view("<u8")[0]) for r in b] == list(range(10))


def test_view_zero_copy_and_wrap(maps, no_fd_leak):
    """Samples of 64 bytes take 80 in the ring; a 4 KiB ring wraps mid-record
    and the wrapping record alone is copied."""
    events, ctr = maps
    cpu = perf.online_cpus()[0]
    rec = np.dtype([("seq", "<u8"), ("rest", "<u8", 7)])
    with perf_prog(events, ctr, size=64) as prog, \
            perf.Reader(events, per_cpu_bytes=mmap.PAGESIZE) as p:
        seen = []
        copies = 0
        for _ in range(6):
            _run(prog, 20, cpu)
            while True:
                with p.view(dtype=rec, timeout=0) as arr:
                    if len(arr) == 0:
                        break
                    assert not arr.flags.writeable
                    copies += arr.base is None or isinstance(arr.base, (bytes, np.ndarray))
                    seen += arr["seq"].tolist()
                    assert (arr["rest"] == arr["seq"][:, None]).all()
        assert seen == list(range(120))
        assert ctr[1] == 0
        # 120 * 80 bytes over a 4096-byte ring: the ring end was crossed
        # twice, once mid-record (80 does not divide 4096)
        assert copies >= 1
        _run(prog, 3, cpu)
        with p.view(timeout=1.0) as b:
            assert b.cpus.tolist() == [cpu] * len(b) and len(b) >= 1
            assert int(b[0][:8].view("<u8")[0]) == 120


@pytest.mark.parametrize("typed", [True, False])
def test_view_stops_at_ring_end_between_records(maps, no_fd_leak, typed):
    """4-byte samples take 16 bytes, which divides the ring: no record
    straddles the end, yet a view must not run past it (the ring is mapped
    once; the next record is at offset 0)."""
    events, ctr = maps
    cpu = perf.online_cpus()[0]
    with perf_prog(events, ctr, size=4) as prog, \
            perf.Reader(events, per_cpu_bytes=mmap.PAGESIZE) as p:
        seen: list[int] = []
        per_ring = mmap.PAGESIZE // 16
        for _ in range(5):
            _run(prog, per_ring - 10, cpu)
            while True:
                with p.view(dtype="<u4" if typed else None, timeout=0) as b:
                    if len(b) == 0:
                        break
                    assert len(b) <= per_ring
                    if typed:
                        seen += b.tolist()
                    else:
                        assert b.offsets[-1] + b.sizes[-1] <= len(b.data) <= mmap.PAGESIZE
                        seen += [int(r[:4].view("<u4")[0]) for r in b]
        assert seen == list(range(5 * (per_ring - 10)))
        assert ctr[1] == 0


def test_lost_samples_match_program_failures(maps, no_fd_leak):
    events, ctr = maps
    cpu = perf.online_cpus()[0]
    with perf_prog(events, ctr, size=64) as prog, \
            perf.Reader(events, per_cpu_bytes=mmap.PAGESIZE) as p:
        _run(prog, 200, cpu)                      # 4 KiB holds 51 samples of 80 bytes
        failed = int(ctr[1])
        assert failed > 100
        arr = p.read_batch(dtype=SEQ, timeout=1.0)
        assert len(arr) + failed == 200
        assert arr["seq"].tolist() == list(range(len(arr)))
        # The kernel writes the LOST record ahead of the next sample that fits.
        _run(prog, 1, cpu)
        more = p.read_batch(dtype=SEQ, timeout=1.0)
        assert more["seq"].tolist() == [200]
        lost = p.lost()
        assert lost.shape == (possible_cpus(),)
        assert int(lost[cpu]) == failed and int(lost.sum()) == failed


def test_pause_resume(setup):
    events, ctr, prog, p = setup
    cpu = perf.online_cpus()[0]
    p.pause()
    assert p.paused
    _run(prog, 5, cpu)
    assert ctr[1] == 5                           # no event in the map: outputs fail
    assert p.read(timeout=0) is None
    p.resume()
    _run(prog, 2, cpu)
    assert [int.from_bytes(r.data[:8], "little") for r in (p.read(1.0), p.read(1.0))] == [5, 6]


def test_close_wakes_blocked_read(setup):
    events, ctr, prog, p = setup
    out = []

    def blocked():
        try:
            p.read()
        except ClosedError as e:
            out.append(str(e))

    t = threading.Thread(target=blocked)
    t.start()
    wait_until_blocked_in_epoll(t.native_id)
    p.close()
    t.join(5)
    assert not t.is_alive() and "closed" in out[0]
    with pytest.raises(ClosedError):
        p.read(timeout=0)
    # close removed the events from the map: outputs now fail
    _run(prog, 1)
    assert ctr[1] == 1


def test_watermark(maps, no_fd_leak):
    events, ctr = maps
    cpu = perf.online_cpus()[0]
    with perf_prog(events, ctr) as prog, \
            perf.Reader(events, per_cpu_bytes=1 << 16, watermark=1024) as p:
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(p.fileno(), selectors.EVENT_READ)
        try:
            _run(prog, 2, cpu)                        # 48 bytes: under the watermark
            assert sel.select(timeout=0.1) == []
            assert len(p.read_batch(dtype=SEQ, timeout=0)) == 2   # still readable
            _run(prog, 100, cpu)                      # 2400 bytes: over it
            assert len(sel.select(timeout=1.0)) == 1
            assert len(p.read_batch(dtype=SEQ, timeout=0)) == 100
        finally:
            sel.close()


def test_asyncio(setup):
    events, ctr, prog, p = setup

    async def main():
        loop = asyncio.get_running_loop()
        assert await p.read_async(timeout=0.05) is None
        loop.call_later(0.05, _run, prog, 3, perf.online_cpus()[0])
        arr = await p.read_batch_async(dtype=SEQ, timeout=2.0)
        got = arr["seq"].tolist()
        while len(got) < 3:
            got += (await p.read_batch_async(dtype=SEQ, timeout=2.0))["seq"].tolist()
        loop.call_later(0.05, _run, prog, 2, perf.online_cpus()[0])
        async for rec in p:
            got.append(int.from_bytes(rec[:8], "little"))
            if len(got) == 5:
                loop.call_soon(p.close)    # the iteration then ends
        return got

    assert asyncio.run(asyncio.wait_for(main(), 10)) == [0, 1, 2, 3, 4]


def test_bad_input(maps, no_fd_leak):
    events, ctr = maps
    with pytest.raises(ValueError, match="power of two"):
        perf.Reader(events, per_cpu_bytes=3 * mmap.PAGESIZE)
    with pytest.raises(ValueError, match="power of two"):
        perf.Reader(events, per_cpu_bytes=512)
    with pytest.raises(ValueError, match="PERF_EVENT_ARRAY"):
        perf.Reader(ctr)
    with pytest.raises(ValueError, match="watermark"):
        perf.Reader(events, per_cpu_bytes=1 << 16, watermark=1 << 16)
    small = Map.create(MapSpec(type=MapType.PERF_EVENT_ARRAY, key=4, value=4, max_entries=1))
    try:
        if max(perf.online_cpus()) >= 1:
            with pytest.raises(ValueError, match="max_entries"):
                perf.Reader(small)
    finally:
        small.close()
    closed = Map.create(MapSpec(type=MapType.PERF_EVENT_ARRAY, key=4, value=4,
                                max_entries=possible_cpus()))
    closed.close()
    with pytest.raises(ClosedError):
        perf.Reader(closed)


def test_no_fd_leak_many_readers(maps, no_fd_leak):
    events, ctr = maps
    for _ in range(5):
        p = perf.Reader(events, per_cpu_bytes=mmap.PAGESIZE)
        p.close()
        p.close()


def test_read_batch_into_out(setup):
    events, ctr, prog, p = setup
    cpu = perf.online_cpus()[0]
    buf = np.zeros(16, SEQ)
    _run(prog, 20, cpu)
    a, cpus = p.read_batch(out=buf, timeout=1.0, with_cpus=True)
    assert np.shares_memory(a, buf) and a["seq"].tolist() == list(range(16)) and cpus.tolist() == [cpu] * 16
    assert p.read_batch(out=buf, timeout=1.0)["seq"].tolist() == [16, 17, 18, 19]


def test_read_batch_selected_fields(maps, no_fd_leak):
    events, ctr = maps
    quad = np.dtype([("a", "<u8"), ("b", "<u8"), ("c", "<u8"), ("d", "<u8")])
    with perf_prog(events, ctr, size=32) as prog, \
            perf.Reader(events, per_cpu_bytes=1 << 16) as p:
        _run(prog, 50, cpu=0)
        arr, cpus = p.read_batch(dtype=quad, fields=("c", "a"), with_cpus=True, timeout=1.0)
        assert arr.dtype.names == ("c", "a") and arr.dtype.itemsize == 16
        assert arr["c"].tolist() == list(range(50)) and np.array_equal(arr["a"], arr["c"])
        assert set(cpus.tolist()) == {0}


@pytest.mark.parametrize("fields", [None, ("a",), ("c",), ("d",), ("f",), ("g",),
                                    ("d", "f", "g"), ("a", "c"), ("h", "b")])
def test_copies_are_byte_exact(maps, no_fd_leak, fields):
    """The copy loops (constant-size and general, one span or several) on
    samples that sit at 4 mod 8 in the ring, including one that wraps."""
    events, ctr = maps
    cpu = perf.online_cpus()[0]
    with perf_prog(events, ctr, size=64, words=True) as prog, \
            perf.Reader(events, per_cpu_bytes=mmap.PAGESIZE) as p:
        got = []
        for _ in range(3):                         # 3 * 40 * 80 bytes: wraps the 4 KiB ring
            _run(prog, 40, cpu)
            arr = p.read_batch(dtype=WORDS, fields=fields, timeout=1.0)
            got.append(arr)
        arr = np.concatenate(got)
        exp = words_expected(range(120))
        names = fields or WORDS.names
        assert arr.dtype.names == names and len(arr) == 120
        for name in names:
            assert np.array_equal(arr[name], exp[name]), name


def test_unbounded_view_batches_stay_cache_sized(maps, no_fd_leak):
    """Without max_records a perf view stops within 2 MiB of ring; with it,
    one batch takes the whole run."""
    events, ctr = maps
    cpu = perf.online_cpus()[0]
    n = 40_000                                     # 80 bytes each: 3.2 MB
    with perf_prog(events, ctr, size=64, words=True) as prog, \
            perf.Reader(events, per_cpu_bytes=1 << 23) as p:
        _run(prog, n, cpu)
        with p.view(dtype=WORDS, max_records=n, timeout=1.0) as b:
            assert len(b) == n and np.array_equal(b["c"], words_expected(range(n))["c"])
        _run(prog, n, cpu)                         # 6.4 MB into 8 MiB: no wrap
        sizes, seqs = [], []
        while sum(sizes) < n:
            with p.view(dtype=WORDS, timeout=1.0) as b:
                assert len(b)
                sizes.append(len(b))
                seqs += (b["c"] // 16).tolist()
        assert sizes[0] == (2 << 20) // 80 and sum(sizes) == n
        assert seqs == list(range(n, 2 * n))
        assert ctr[1] == 0


def test_as_array_reads_unaligned_samples(maps, no_fd_leak):
    """In a perf view samples sit at 4 mod 8; as_array copies their first
    u64 out into an aligned array."""
    events, ctr = maps
    cpu = perf.online_cpus()[0]
    with perf_prog(events, ctr, size=16) as prog, \
            perf.Reader(events, per_cpu_bytes=1 << 16) as p:
        _run(prog, 30, cpu)
        with p.view(timeout=1.0) as b:
            assert int(b.offsets[0]) % 8 == 4
            head = b.as_array("<u8")
            assert head.flags.aligned and head.tolist() == list(range(30))


def test_read_batch_takes_the_header_of_variable_size_samples(maps, no_fd_leak):
    """Samples longer than the dtype (events that share a header) each give
    their first dtype.itemsize bytes; a shorter one raises and is dropped."""
    events, ctr = maps
    pair = np.dtype([("a", "<u8"), ("b", "<u8")])
    cpu = perf.online_cpus()[0]
    with perf_prog(events, ctr, var=True) as prog, \
            perf.Reader(events, per_cpu_bytes=1 << 16) as p:
        _run(prog, 100, cpu)                       # 8, 16, 24, 32, 8, ... bytes
        buf = np.zeros(64, SEQ)
        first = p.read_batch(dtype=SEQ, out=buf, timeout=1.0)
        assert np.shares_memory(first, buf) and first["seq"].tolist() == list(range(64))
        assert p.read_batch(dtype=SEQ, timeout=1.0)["seq"].tolist() == list(range(64, 100))
        _run(prog, 4, cpu)                         # seq 100 has 8 bytes (12 with padding)
        with pytest.raises(ValueError, match="smaller than dtype"):
            p.read_batch(dtype=pair, timeout=1.0)
        got = p.read_batch(dtype=pair, timeout=1.0)
        assert got["a"].tolist() == [101, 102, 103] and got["b"].tolist() == [101, 102, 103]


def test_view_gathers_heads_in_the_scan(maps, no_fd_leak):
    """view(head=) on perf samples: the heads are aligned (the samples sit at
    4 mod 8), gathered in the scan, with the CPU of each sample."""
    events, ctr = maps
    pair = np.dtype([("a", "<u8"), ("b", "<u8")])
    cpu = perf.online_cpus()[0]
    with perf_prog(events, ctr, var=True) as prog, \
            perf.Reader(events, per_cpu_bytes=1 << 16) as p:
        _run(prog, 100, cpu)
        with p.view(head=SEQ, timeout=1.0) as b:
            assert int(b.offsets[0]) % 8 == 4 and b.heads.flags.aligned
            assert b.heads["seq"].tolist() == list(range(100)) and b.as_array(SEQ) is b.heads
            assert b.cpus.tolist() == [cpu] * 100
        assert b.heads["seq"][-1] == 99
        _run(prog, 5, cpu)                          # seq 100 and 104 have 8 bytes
        with pytest.raises(ValueError, match="smaller than head dtype"):
            with p.view(head=pair, timeout=1.0):
                pass
        with p.view(head=pair, timeout=1.0) as b:
            assert b.heads["a"].tolist() == [101, 102, 103] == b.heads["b"].tolist()
        with pytest.raises(ValueError, match="smaller than head dtype"):
            with p.view(head=pair, timeout=1.0):
                pass
        with p.view(head=SEQ, timeout=0) as b:
            assert len(b) == 0 and len(b.heads) == 0


def test_view_heads_of_a_sample_that_wraps(maps, no_fd_leak):
    """The sample that wraps the ring's end comes alone, copied, with its
    head."""
    events, ctr = maps
    cpu = perf.online_cpus()[0]
    with perf_prog(events, ctr, size=64) as prog, \
            perf.Reader(events, per_cpu_bytes=mmap.PAGESIZE) as p:
        seen = []
        for _ in range(6):
            _run(prog, 20, cpu)
            while True:
                with p.view(head=SEQ, timeout=0) as b:
                    if len(b) == 0:
                        break
                    assert b.as_array("<u8").tolist() == b.heads["seq"].tolist()
                    seen += b.heads["seq"].tolist()
        assert seen == list(range(120))


def test_view_array_is_empty_and_read_only_after_its_block(maps, no_fd_leak):
    """A perf view(dtype=) array, run or wrapping copy, is retired when its
    block ends, as a view() RecordBatch is released."""
    events, ctr = maps
    cpu = perf.online_cpus()[0]
    rec = np.dtype([("seq", "<u8"), ("rest", "<u8", 7)])
    with perf_prog(events, ctr, size=64) as prog, \
            perf.Reader(events, per_cpu_bytes=mmap.PAGESIZE) as p:
        seen, kept, copies = [], [], 0
        for _ in range(3):
            _run(prog, 40, cpu)
            while True:
                with p.view(dtype=rec, timeout=0) as arr:
                    if len(arr) == 0:
                        break
                    copies += isinstance(arr.base, bytes)
                    seen += arr["seq"].tolist()
                    kept.append(arr)
        assert seen == list(range(120)) and copies >= 1   # a wrapping sample came copied
        assert all(a.shape == (0,) and a.dtype == rec and not a.flags.writeable for a in kept)
        _run(prog, 1, cpu)
        with p.view(timeout=1.0) as batch:
            assert len(batch) == 1
        with pytest.raises(ValueError, match="after its with block"):
            batch.data


def test_reader_in_a_forked_child_raises_and_leaves_the_parents_rings(setup):
    """The kernel does not map perf rings into a forked child: every call of
    the parent's reader raises there (it used to crash), and the child's
    close() leaves the map's slots, the rings and the wake-ups to the
    parent."""
    import selectors
    events, ctr, prog, p = setup
    _run(prog, 3)

    def child():
        out = []
        for call in (lambda: p.read(timeout=0.1), lambda: p.read_batch(timeout=0.1),
                     lambda: p.read_batch(dtype=SEQ, timeout=0),
                     lambda: p.view(timeout=0).__enter__(), p.pause, p.resume, p.fileno):
            try:
                call()
                out.append("returned")
            except RuntimeError as e:
                out.append(str(e))
        p.close()
        return "\n".join(out)

    out = run_in_child(child)
    assert out.count("cannot use it") == 7, out
    assert f"perf reader was opened by process {os.getpid()}" in out
    _run(prog, 2)
    got = []
    while len(got) < 5:
        b = p.read_batch(dtype=SEQ, timeout=1.0)
        assert len(b)
        got += b["seq"].tolist()
    assert sorted(got) == [0, 1, 2, 3, 4]
    assert ctr[1] == 0              # the events are still in the map: no output failed
    sel = selectors.DefaultSelector()
    sel.register(p.fileno(), selectors.EVENT_READ)
    try:
        # (a perf event reports readiness once more after its samples are
        # read; the eventfd a child's close() would have written, for good)
        sel.select(timeout=0)
        assert sel.select(timeout=0) == []
    finally:
        sel.close()
