"""fastbpf.ringbuf against the kernel: programs driven by BPF_PROG_TEST_RUN
write records (a sequence number from a counter map) that the readers check.

(About 740 lines: every reader form here shares the programs and fixtures
at the top; the user ring buffer writer has its own file.)
"""

from __future__ import annotations

import asyncio
import errno
import os
import sys
import threading
import time

import numpy as np
import pytest

from fastbpf import Map, MapSpec, MapType, asm, features, ringbuf
from fastbpf.asm import R0, R1, R2, R3, R4, R7, R10, Helper, Size
from fastbpf.enums import ProgramType
from fastbpf.errors import BPFError, ClosedError, NotSupportedError
from fastbpf.programs import Program, ProgramSpec

sys.path.insert(0, os.path.dirname(__file__))
import progs  # noqa: E402
from ringutil import (WORDS, forked_calls, run_in_child, store_record,  # noqa: E402
                      wait_until_blocked_in_epoll, words_expected)

PKT = bytes(64)
SEQ = np.dtype([("seq", "<u8")])


def _bump_counter(ctr: str = "ctr", index: int = 0) -> list:
    """r7 = old value of ctr[index], ctr[index] += 1 (or exit 2 on a failed
    lookup, which cannot happen for an array)."""
    return progs.bump_counter(ctr, index)


def output_prog(rb: Map, ctr: Map, size: int = 8, var: bool = False,
                words: bool = False) -> Program:
    """XDP: seq = ctr++; ringbuf_output(rb, {seq, seq, ...}, size).

    With *var*, the size is 8 * (1 + seq % 4) (a variable-size mix); with
    *words*, word k of the record is seq * 16 + k."""
    assert size % 8 == 0 and size <= 64
    body = _bump_counter()
    store_record(body, -64, words)
    body += [asm.load_map_ptr(R1, "rb"), asm.Mov.reg(R2, R10), asm.Add.imm(R2, -64)]
    if var:
        body += [asm.Mov.reg(R3, R7), asm.And.imm(R3, 3), asm.Add.imm(R3, 1), asm.Lsh.imm(R3, 3)]
    else:
        body += [asm.Mov.imm(R3, size)]
    body += [asm.Mov.imm(R4, 0), asm.call(Helper.ringbuf_output),
             asm.Mov.imm(R0, 2).with_symbol("out"), asm.exit()]
    return Program.load(ProgramSpec(type=ProgramType.XDP, instructions=asm.Instructions(body)),
                        maps={"rb": rb, "ctr": ctr})


def reserve_prog(rb: Map, ctr: Map) -> Program:
    """XDP: seq = ctr++; reserve 16 bytes, write seq; discard odd seqs,
    submit even ones."""
    body = _bump_counter() + [
        asm.load_map_ptr(R1, "rb"), asm.Mov.imm(R2, 16), asm.Mov.imm(R3, 0),
        asm.call(Helper.ringbuf_reserve),
        asm.JEq.imm(R0, 0, "out"),
        asm.store_mem(R0, 0, R7, Size.DW), asm.store_mem(R0, 8, R7, Size.DW),
        asm.Mov.reg(R1, R0), asm.Mov.imm(R2, 0),
        asm.JSet.imm(R7, 1, "discard"),
        asm.call(Helper.ringbuf_submit), asm.ja("out"),
        asm.call(Helper.ringbuf_discard).with_symbol("discard"),
        asm.Mov.imm(R0, 2).with_symbol("out"), asm.exit(),
    ]
    return Program.load(ProgramSpec(type=ProgramType.XDP, instructions=asm.Instructions(body)),
                        maps={"rb": rb, "ctr": ctr})


@pytest.fixture
def need_ringbuf():
    """Skip unless the kernel has BPF ring buffers (Linux 5.8)."""
    reason = features.skip_reason("map_type", MapType.RINGBUF)
    if reason:
        pytest.skip(reason)


@pytest.fixture
def maps(unique_name, need_ringbuf):
    rb = Map.create(MapSpec(type=MapType.RINGBUF, max_entries=1 << 16, name=unique_name[:12] + "rb"))
    ctr = Map.create(MapSpec(type=MapType.ARRAY, key="<u4", value="<u8", max_entries=2,
                             name=unique_name[:12] + "ct"))
    yield rb, ctr
    rb.close()
    ctr.close()


@pytest.fixture
def setup(maps, no_fd_leak):
    rb, ctr = maps
    prog = output_prog(rb, ctr)
    r = ringbuf.Reader(rb)
    yield rb, ctr, prog, r
    r.close()
    prog.close()


def test_read_one_by_one(setup):
    rb, ctr, prog, r = setup
    assert r.read(timeout=0) is None
    prog.test_run(data=PKT, repeat=5)
    got = [r.read(timeout=1.0) for _ in range(5)]
    assert [int.from_bytes(g, "little") for g in got] == [0, 1, 2, 3, 4]
    assert all(isinstance(g, ringbuf.Record) and g.cpu is None and len(g) == 8 for g in got)
    assert got[3].data == (3).to_bytes(8, "little")
    assert r.read(timeout=0) is None
    assert r.pending == 0


def test_read_batch_fixed_exactly_once_in_order(setup):
    rb, ctr, prog, r = setup
    total = 0
    seqs = []
    for _ in range(4):
        prog.test_run(data=PKT, repeat=1000)     # 1000 * 16 bytes fits 64 KiB
        arr = r.read_batch(dtype=SEQ, max_records=4096, timeout=1.0)
        assert arr.dtype == SEQ and (arr.flags.owndata or arr.base is not None)
        seqs.append(arr["seq"].copy())
        total += len(arr)
    seqs = np.concatenate(seqs)
    assert total == 4000
    assert np.array_equal(seqs, np.arange(4000))
    assert ctr[0] == 4000
    assert len(r.read_batch(dtype=SEQ, timeout=0)) == 0


def test_read_batch_max_records(setup):
    rb, ctr, prog, r = setup
    prog.test_run(data=PKT, repeat=100)
    a = r.read_batch(dtype=SEQ, max_records=30, timeout=0)
    b = r.read_batch(dtype=SEQ, max_records=1000, timeout=0)
    assert a["seq"].tolist() == list(range(30))
    assert b["seq"].tolist() == list(range(30, 100))


def test_timeout_semantics(setup):
    rb, ctr, prog, r = setup
    t0 = time.monotonic()
    assert r.read(timeout=0.2) is None
    assert time.monotonic() - t0 >= 0.2     # waited the whole timeout (never less)
    empty = r.read_batch(dtype=SEQ, timeout=0)
    assert empty.shape == (0,) and empty.dtype == SEQ
    assert len(r.read_batch(timeout=0)) == 0
    with pytest.raises(ValueError, match="timeout"):
        r.read(timeout=-1)


def test_variable_size_batch(maps, no_fd_leak):
    rb, ctr = maps
    with output_prog(rb, ctr, var=True) as prog, ringbuf.Reader(rb) as r:
        prog.test_run(data=PKT, repeat=200)
        b = r.read_batch(timeout=1.0)
        assert isinstance(b, ringbuf.RecordBatch) and len(b) == 200
        sizes = 8 * (1 + np.arange(200) % 4)
        assert np.array_equal(b.sizes, sizes)
        # packed copy: offsets are the running sum of sizes (all multiples of 8)
        assert np.array_equal(b.offsets, np.concatenate([[0], np.cumsum(sizes)[:-1]]))
        assert np.array_equal(b.data.view("<u8")[b.offsets // 8], np.arange(200))
        for i, rec in enumerate(b):
            assert np.array_equal(rec.view("<u8"), np.full(sizes[i] // 8, i, np.uint64))
        assert bytes(b[-1]) == (199).to_bytes(8, "little") * 4


def test_view_zero_copy_records(maps, no_fd_leak):
    rb, ctr = maps
    with output_prog(rb, ctr, var=True) as prog, ringbuf.Reader(rb) as r:
        prog.test_run(data=PKT, repeat=50)
        with r.view(max_records=4096, timeout=1.0) as batch:
            assert len(batch) == 50
            assert not batch.data.flags.writeable
            assert [int(rec[:8].view("<u8")[0]) for rec in batch] == list(range(50))
            # still unconsumed inside the block
            assert r.pending > 0
        assert r.pending == 0
        assert r.read(timeout=0) is None


def test_view_strided_array(setup):
    rb, ctr, prog, r = setup
    prog.test_run(data=PKT, repeat=300)
    with r.view(dtype=SEQ, timeout=1.0) as arr:
        assert arr.shape == (300,)
        assert arr.strides == (16,)            # 8-byte header + 8-byte payload
        assert not arr.flags.writeable
        assert np.array_equal(arr["seq"], np.arange(300))
        with pytest.raises(RuntimeError, match="view"):
            r.read(timeout=0)
    assert r.pending == 0
    with r.view(dtype=SEQ, timeout=0) as arr:
        assert arr.shape == (0,)


def test_view_across_the_ring_end(maps, no_fd_leak):
    """The double mapping makes a run of records contiguous even when it
    crosses the end of the data area."""
    rb, ctr = maps
    with output_prog(rb, ctr) as prog, ringbuf.Reader(rb) as r:
        per_ring = (1 << 16) // 16
        seen = []
        for _ in range(3):
            prog.test_run(data=PKT, repeat=per_ring * 3 // 4)   # wraps on the 2nd round
            with r.view(dtype=SEQ, timeout=1.0) as arr:
                seen.append(arr["seq"].copy())
        seen = np.concatenate(seen)
        assert np.array_equal(seen, np.arange(3 * (per_ring * 3 // 4)))


def test_full_ring_drops_and_resumes(setup):
    rb, ctr, prog, r = setup
    # The kernel refuses a reservation that would fill the ring exactly
    # (new_prod_pos - cons_pos > mask), so 4095 of the 16-byte records fit.
    prog.test_run(data=PKT, repeat=5000)
    arr = r.read_batch(dtype=SEQ, timeout=1.0)
    assert np.array_equal(arr["seq"], np.arange(4095))
    prog.test_run(data=PKT, repeat=3)             # room again after the read
    assert r.read_batch(dtype=SEQ, timeout=1.0)["seq"].tolist() == [5000, 5001, 5002]


def test_discarded_records_are_skipped(maps, no_fd_leak):
    rb, ctr = maps
    with reserve_prog(rb, ctr) as prog, ringbuf.Reader(rb) as r:
        prog.test_run(data=PKT, repeat=100)
        assert r.read(timeout=1.0)[:8] == (0).to_bytes(8, "little")
        arr = r.read_batch(dtype=SEQ, timeout=1.0)
        assert arr["seq"].tolist() == list(range(2, 100, 2))
        prog.test_run(data=PKT, repeat=10)
        with r.view(timeout=1.0) as b:
            assert [int(x[:8].view("<u8")[0]) for x in b] == list(range(100, 110, 2))
        prog.test_run(data=PKT, repeat=10)
        got = []
        while True:        # a strided view stops at each discarded record
            with r.view(dtype=SEQ, timeout=0) as a:
                if len(a) == 0:
                    break
                got += a["seq"].tolist()
        assert got == list(range(110, 120, 2))
        assert r.pending == 0


def test_short_record_for_dtype(setup):
    rb, ctr, prog, r = setup
    prog.test_run(data=PKT, repeat=2)
    with pytest.raises(ValueError, match="smaller than dtype"):
        r.read_batch(dtype=np.dtype([("a", "<u8"), ("b", "<u8")]), timeout=0)
    # the offending record was dropped, the next one is intact
    assert r.read_batch(dtype=SEQ, timeout=0)["seq"].tolist() == [1]


def test_iteration_and_close_from_thread(setup):
    rb, ctr, prog, r = setup
    prog.test_run(data=PKT, repeat=3)
    got = []
    have = {3: threading.Event(), 5: threading.Event()}

    def consume():
        for rec in r:
            got.append(int.from_bytes(rec, "little"))
            if len(got) in have:
                have[len(got)].set()

    t = threading.Thread(target=consume)
    t.start()
    assert have[3].wait(10)
    prog.test_run(data=PKT, repeat=2)
    assert have[5].wait(10)
    wait_until_blocked_in_epoll(t.native_id)    # iterating on, waiting for a sixth
    r.close()
    t.join(5)
    assert not t.is_alive()
    assert got == [0, 1, 2, 3, 4]


def test_close_wakes_blocked_read(setup):
    rb, ctr, prog, r = setup
    result = []

    def blocked():
        try:
            r.read(timeout=None)
            result.append("returned")
        except ClosedError as e:
            result.append(str(e))

    t = threading.Thread(target=blocked)
    t.start()
    wait_until_blocked_in_epoll(t.native_id)    # blocked, and the GIL is free meanwhile
    r.close()
    t.join(5)
    assert not t.is_alive()
    assert result and "closed" in result[0]
    with pytest.raises(ClosedError, match="closed"):
        r.read(timeout=0)
    with pytest.raises(ClosedError):
        r.fileno()
    r.close()                       # twice is harmless


def test_gil_released_while_waiting(setup):
    """While this thread waits in read(), another thread runs Python: it
    sees the wait in the kernel and produces the record the wait returns."""
    rb, ctr, prog, r = setup
    me = threading.get_native_id()

    def produce():
        wait_until_blocked_in_epoll(me)
        prog.test_run(data=PKT, repeat=1)

    t = threading.Thread(target=produce)
    t.start()
    rec = r.read(timeout=30)
    t.join()
    assert rec is not None and int.from_bytes(rec, "little") == 0


def test_fileno_with_selectors(setup):
    import selectors
    rb, ctr, prog, r = setup
    sel = selectors.DefaultSelector()
    sel.register(r.fileno(), selectors.EVENT_READ)
    try:
        assert sel.select(timeout=0) == []
        prog.test_run(data=PKT, repeat=1)
        assert len(sel.select(timeout=1.0)) == 1
        assert int.from_bytes(r.read(timeout=0), "little") == 0
    finally:
        sel.close()


def test_asyncio(setup):
    rb, ctr, prog, r = setup

    async def main():
        loop = asyncio.get_running_loop()
        # nothing there: times out on the loop
        assert await r.read_async(timeout=0.05) is None
        loop.call_later(0.05, prog.test_run, PKT, None, 3)
        first = await r.read_async(timeout=2.0)
        arr = await r.read_batch_async(dtype=SEQ, timeout=2.0)
        got = [int.from_bytes(first, "little")] + arr["seq"].tolist()
        while len(got) < 3:
            got += (await r.read_batch_async(dtype=SEQ, timeout=2.0))["seq"].tolist()
        loop.call_later(0.05, prog.test_run, PKT, None, 2)
        async for rec in r:
            got.append(int.from_bytes(rec, "little"))
            if len(got) == 5:
                loop.call_soon(r.close)    # the iteration then ends
        return got

    assert asyncio.run(asyncio.wait_for(main(), 10)) == [0, 1, 2, 3, 4]


def test_bad_input(maps, unique_name, no_fd_leak):
    rb, ctr = maps
    with pytest.raises(ValueError, match="RINGBUF"):
        ringbuf.Reader(ctr)
    with pytest.raises(TypeError):
        ringbuf.Reader(42)
    with pytest.raises(ValueError, match="USER_RINGBUF"):
        ringbuf.UserWriter(rb)
    m = Map.create(MapSpec(type=MapType.RINGBUF, max_entries=1 << 12))
    m.close()
    with pytest.raises(ClosedError):
        ringbuf.Reader(m)
    with ringbuf.Reader(rb) as r:
        with pytest.raises(ValueError, match="max_records"):
            r.read_batch(dtype=SEQ, max_records=0)
        # longer than a record's length field allows (it would also not fit
        # the copy loops' length compare)
        for dt in (np.dtype("V1073741824"), np.dtype([("a", "u1"), ("z", "u1", 1 << 30)])):
            with pytest.raises(ValueError, match="no ring record is that long"):
                r.read_batch(dtype=dt, timeout=0)
        with pytest.raises(ValueError, match="no ring record is that long"):
            r.read_batch(dtype=np.dtype([("a", "u1"), ("z", "u1", 1 << 30)]), fields="z",
                         timeout=0)


def test_reader_outlives_map_object(unique_name, no_fd_leak, need_ringbuf):
    rb = Map.create(MapSpec(type=MapType.RINGBUF, max_entries=1 << 12))
    ctr = Map.create(MapSpec(type=MapType.ARRAY, key="<u4", value="<u8", max_entries=2))
    r = ringbuf.Reader(rb)
    prog = output_prog(rb, ctr)
    rb.close()
    prog.test_run(data=PKT, repeat=2)
    assert r.read_batch(dtype=SEQ, timeout=1.0)["seq"].tolist() == [0, 1]
    prog.close()
    ctr.close()
    r.close()


def test_view_outlives_close(setup):
    """A view kept past its block and close() is an empty, read-only array
    (no crash, no stale ring bytes); a column taken inside the block keeps
    the mapping alive."""
    rb, ctr, prog, r = setup
    prog.test_run(data=PKT, repeat=4)
    with r.view(dtype=SEQ, timeout=1.0) as arr:
        kept = arr
        col = arr["seq"]
        assert col.tolist() == [0, 1, 2, 3]
    r.close()
    assert kept.shape == (0,) and kept.dtype == SEQ and not kept.flags.writeable
    assert kept["seq"].tolist() == []
    assert col.shape == (4,)        # still mapped memory: reading it does not crash
    col.sum()
    del kept, col


def test_read_batch_into_out(setup):
    rb, ctr, prog, r = setup
    buf = np.zeros(64, SEQ)
    prog.test_run(data=PKT, repeat=100)
    a = r.read_batch(out=buf, timeout=1.0)
    assert np.shares_memory(a, buf) and a["seq"].tolist() == list(range(64))
    b = r.read_batch(out=buf, max_records=10, timeout=1.0)
    assert b["seq"].tolist() == list(range(64, 74))
    assert len(r.read_batch(SEQ, out=buf, timeout=1.0)) == 26
    assert len(r.read_batch(out=buf, timeout=0)) == 0
    with pytest.raises(ValueError, match="dtype"):
        r.read_batch(dtype="<u4", out=buf)
    with pytest.raises(ValueError, match="out"):
        r.read_batch(out=buf[::2])


QUAD = np.dtype([("a", "<u8"), ("b", "<u8"), ("c", "<u8"), ("d", "<u8")])


def test_read_batch_selected_fields(maps, no_fd_leak):
    rb, ctr = maps
    with output_prog(rb, ctr, size=32) as prog, ringbuf.Reader(rb) as r:
        prog.test_run(data=PKT, repeat=100)
        arr = r.read_batch(dtype=QUAD, fields=("d", "b"), timeout=1.0)
        assert arr.dtype.names == ("d", "b") and arr.dtype.itemsize == 16
        assert np.array_equal(arr["d"], np.arange(100)) and np.array_equal(arr["b"], arr["d"])
        prog.test_run(data=PKT, repeat=10)
        one = r.read_batch(dtype=QUAD, fields="c", max_records=4, timeout=1.0)
        assert one.dtype.names == ("c",) and one["c"].tolist() == [100, 101, 102, 103]
        with pytest.raises(ValueError, match="no field"):
            r.read_batch(dtype=QUAD, fields=("x",), timeout=0)
        with pytest.raises(ValueError, match="structured dtype"):
            r.read_batch(fields=("a",), timeout=0)
        assert r.read_batch(dtype=QUAD, fields=("a", "b"), timeout=1.0)["a"].tolist() == \
            list(range(104, 110))


def test_selected_fields_only_need_their_bytes(maps, no_fd_leak):
    # 8-byte records cannot fill QUAD, but they do hold its first field.
    rb, ctr = maps
    with output_prog(rb, ctr, size=8) as prog, ringbuf.Reader(rb) as r:
        prog.test_run(data=PKT, repeat=5)
        assert r.read_batch(dtype=QUAD, fields="a", timeout=1.0)["a"].tolist() == [0, 1, 2, 3, 4]


def test_zero_length_records_do_not_stall_readers(maps, no_fd_leak):
    rb, ctr = maps
    body = [asm.load_map_ptr(R1, "rb"), asm.Mov.reg(R2, R10), asm.Add.imm(R2, -8),
            asm.store_imm(R10, -8, 0, Size.DW),
            asm.Mov.imm(R3, 0), asm.Mov.imm(R4, 0), asm.call(Helper.ringbuf_output),
            asm.Mov.imm(R0, 2), asm.exit()]
    with Program.load(ProgramSpec(type=ProgramType.XDP, instructions=asm.Instructions(body)),
                      maps={"rb": rb}) as prog, ringbuf.Reader(rb) as r:
        prog.test_run(data=PKT, repeat=3)
        batch = r.read_batch(timeout=1.0)
        assert len(batch) == 3 and batch.sizes.tolist() == [0, 0, 0]
        assert r.pending == 0                   # consumed, headers included
        assert len(r.read_batch(timeout=0.2)) == 0


def test_object_dtypes_are_refused(setup):
    rb, ctr, prog, r = setup
    prog.test_run(data=PKT, repeat=2)
    bad = np.dtype([("o", object)])
    with pytest.raises(TypeError, match="Python objects"):
        r.read_batch(dtype=bad, timeout=0)
    with pytest.raises(TypeError, match="Python objects"):
        with r.view(dtype=bad, timeout=0):
            pass
    assert len(r.read_batch(dtype=SEQ, timeout=1.0)) == 2


@pytest.mark.parametrize("fields", [None, ("a",), ("c",), ("d",), ("f",), ("g",),
                                    ("d", "f", "g"), ("a", "c"), ("h", "b")])
def test_copies_are_byte_exact(maps, no_fd_leak, fields):
    rb, ctr = maps
    with output_prog(rb, ctr, size=64, words=True) as prog, ringbuf.Reader(rb) as r:
        prog.test_run(data=PKT, repeat=50)
        arr = r.read_batch(dtype=WORDS, fields=fields, max_records=30, timeout=1.0)
        arr2 = r.read_batch(dtype=WORDS, fields=fields, timeout=1.0)
        exp = words_expected(range(50))
        names = fields or WORDS.names
        assert arr.dtype.names == names and len(arr) == 30 and len(arr2) == 20
        for name in names:
            assert np.array_equal(np.concatenate([arr[name], arr2[name]]), exp[name]), name


def test_unbounded_view_batches_stay_cache_sized(unique_name, no_fd_leak, need_ringbuf):
    """Without max_records a view stops after about 2 MiB of ring (its
    records are read again right after the scan); every record still comes
    exactly once, in order, and max_records lifts the bound."""
    n = 40_000                                     # 72 bytes each: 2.9 MB
    with Map.create(MapSpec(type=MapType.RINGBUF, max_entries=1 << 23, name=unique_name[:12])) as rb, \
            Map.create(MapSpec(type=MapType.ARRAY, key="<u4", value="<u8", max_entries=2)) as ctr, \
            output_prog(rb, ctr, size=64, words=True) as prog, ringbuf.Reader(rb) as r:
        for dtype in (WORDS, None):
            prog.test_run(data=PKT, repeat=n)
            sizes, seqs = [], []
            while sum(sizes) < n:
                with r.view(dtype=dtype, timeout=1.0) as b:
                    assert len(b)
                    sizes.append(len(b))
                    seqs += (b["c"] // 16).tolist() if dtype else [int(x[8:16].view("<u8")[0]) // 16 for x in b]
            assert sum(sizes) == n and len(sizes) == 2
            assert sizes[0] == -(-(2 << 20) // 72)      # through the record crossing 2 MiB
            assert seqs == list(range(len(seqs) and seqs[0], seqs[0] + n))
        prog.test_run(data=PKT, repeat=n)
        with r.view(dtype=WORDS, max_records=n, timeout=1.0) as b:
            assert len(b) == n and np.array_equal(b["c"], words_expected(range(2 * n, 3 * n))["c"])


def test_as_array_gathers_the_common_prefix(maps, no_fd_leak):
    """Variable-size records (8..32 bytes) share their first u64: as_array
    copies it out of every record in one pass, from a copy and from a view."""
    rb, ctr = maps
    with output_prog(rb, ctr, var=True) as prog, ringbuf.Reader(rb) as r:
        prog.test_run(data=PKT, repeat=100)
        b = r.read_batch(max_records=60, timeout=1.0)
        head = b.as_array("<u8")
        assert head.dtype == np.dtype("<u8") and head.tolist() == list(range(60))
        assert not np.shares_memory(head, b.data)
        with pytest.raises(ValueError, match="record 0 has 8 bytes"):
            b.as_array(np.dtype([("a", "<u8"), ("b", "<u8")]))
        with r.view(timeout=1.0) as v:
            assert v.as_array(np.dtype([("seq", "<u8")]))["seq"].tolist() == list(range(60, 100))
            buf = np.zeros(64, "<u8")
            got = v.as_array("<u8", out=buf)
            assert np.shares_memory(got, buf) and got.tolist() == list(range(60, 100))
            with pytest.raises(ValueError, match="room for 8"):
                v.as_array("<u8", out=buf[:8])
            with pytest.raises(ValueError, match="dtype"):
                v.as_array("<u8", out=buf.view("<i8"))
        assert len(v) == 40                     # the count outlives the block...
        with pytest.raises(ValueError, match="after its with block"):
            v.offsets                           # ...the records do not
        with pytest.raises(ValueError, match="after its with block"):
            v[0]


def test_as_array_of_evenly_spaced_records_is_a_view(setup):
    rb, ctr, prog, r = setup
    prog.test_run(data=PKT, repeat=10)
    with r.view(timeout=1.0) as b:
        arr = b.as_array("<u8")
        assert np.shares_memory(arr, b.data) and arr.tolist() == list(range(10))


def test_as_array_checks_hand_made_batches():
    data = np.arange(32, dtype=np.uint8)
    ok = ringbuf.RecordBatch(data, np.array([0, 8, 24]), np.array([8, 8, 8]))
    assert ok.as_array("<u4").tolist() == [0x03020100, 0x0B0A0908, 0x1B1A1918]
    for offs, sizes, match in (([0, 28], [8, 8], "outside"), ([-8, 0], [8, 8], "outside"),
                               ([0, 16], [8, 2], "record 1 has 2 bytes"),
                               ([0, 8, 16], [8, 8], "offsets but")):
        with pytest.raises(ValueError, match=match):
            ringbuf.RecordBatch(data, np.array(offs), np.array(sizes)).as_array("<u8")


def test_two_readers_of_one_ring_share_its_position(setup):
    """Each reader starts from the consumer position in the ring, not from
    a copy of its own: alternating readers get every record once, in order,
    instead of rereading space the kernel may have reused."""
    rb, ctr, prog, r = setup
    with ringbuf.Reader(rb) as other:
        seen = []
        for i in range(6):
            prog.test_run(data=PKT, repeat=10)
            reader = r if i % 2 else other
            seen += reader.read_batch(SEQ, timeout=1.0)["seq"].tolist()
            assert r.pending == other.pending == 0
        assert seen == list(range(60))


def test_read_batch_takes_the_header_of_variable_size_records(maps, no_fd_leak):
    """Records longer than the dtype (events that share a header) each give
    their first dtype.itemsize bytes; a shorter one raises and is dropped."""
    rb, ctr = maps
    pair = np.dtype([("a", "<u8"), ("b", "<u8")])
    with output_prog(rb, ctr, var=True) as prog, ringbuf.Reader(rb) as r:
        prog.test_run(data=PKT, repeat=100)        # 8, 16, 24, 32, 8, ... bytes
        buf = np.zeros(64, SEQ)
        first = r.read_batch(dtype=SEQ, out=buf, timeout=1.0)
        assert np.shares_memory(first, buf) and first["seq"].tolist() == list(range(64))
        assert r.read_batch(dtype="<u8", timeout=1.0).tolist() == list(range(64, 100))
        prog.test_run(data=PKT, repeat=4)          # seq 100 has 8 bytes
        with pytest.raises(ValueError, match="smaller than dtype"):
            r.read_batch(dtype=pair, timeout=1.0)
        got = r.read_batch(dtype=pair, timeout=1.0)
        assert got["a"].tolist() == [101, 102, 103] and got["b"].tolist() == [101, 102, 103]


def test_field_layouts_of_different_dtypes_do_not_mix(maps, no_fd_leak):
    """A read reuses the field layout an earlier read with the same dtype
    and fields computed; a dtype naming the same field at another offset
    gets its own, and unhashable fields (a list) work too."""
    rb, ctr = maps
    xy = np.dtype([("x", "<u8"), ("y", "<u8")])
    yx = np.dtype([("y", "<u8"), ("x", "<u8")])
    with output_prog(rb, ctr, size=16, words=True) as prog, ringbuf.Reader(rb) as r:
        prog.test_run(data=PKT, repeat=10)         # word k of record s: s * 16 + k
        seq = 0
        for dt, fields, word in ((xy, "x", 0), (yx, "x", 1), (xy, "x", 0), (yx, ["x"], 1),
                                 (xy, ("y",), 1)):
            got = r.read_batch(dtype=dt, fields=fields, max_records=2, timeout=1.0)
            name = fields if isinstance(fields, str) else fields[0]
            assert got.dtype.names == (name,)
            assert got[name].tolist() == [16 * seq + word, 16 * (seq + 1) + word]
            seq += 2


def test_view_gathers_heads_in_the_scan(maps, no_fd_leak):
    """view(head=) copies each record's first bytes during the scan into an
    aligned array that as_array reuses and that outlives the block; a record
    shorter than the head raises and is dropped, after the records before it."""
    rb, ctr = maps
    pair = np.dtype([("a", "<u8"), ("b", "<u8")])
    with output_prog(rb, ctr, var=True) as prog, ringbuf.Reader(rb) as r:
        prog.test_run(data=PKT, repeat=100)        # 8, 16, 24, 32, 8, ... bytes
        with r.view(head=SEQ, timeout=1.0) as b:
            assert len(b) == 100 and b.heads.dtype == SEQ and b.heads.flags.aligned
            assert b.heads["seq"].tolist() == list(range(100))
            assert b.as_array(SEQ) is b.heads
            assert b.as_array("<u8").tolist() == list(range(100))   # another dtype: gathered
            out = np.zeros(128, SEQ)
            got = b.as_array(SEQ, out=out)
            assert np.shares_memory(got, out) and got["seq"].tolist() == list(range(100))
        assert b.heads["seq"][-1] == 99            # a copy: still valid...
        with pytest.raises(ValueError, match="after its with block"):
            b.offsets                              # ...unlike the records
        prog.test_run(data=PKT, repeat=5)          # seq 100 and 104 have 8 bytes
        with pytest.raises(ValueError, match="smaller than head dtype"):
            with r.view(head=pair, timeout=1.0):
                pass
        with r.view(head=pair, timeout=1.0) as b:  # stops before seq 104
            assert b.heads["a"].tolist() == [101, 102, 103] == b.heads["b"].tolist()
            assert [bytes(rec[:8]) for rec in b] == [i.to_bytes(8, "little") for i in (101, 102, 103)]
        with pytest.raises(ValueError, match="smaller than head dtype"):
            with r.view(head=pair, timeout=1.0):
                pass
        with r.view(head=SEQ, timeout=0) as b:     # nothing left
            assert len(b) == 0 and len(b.heads) == 0 and b.heads.dtype == SEQ
        with pytest.raises(ValueError, match="head= is for variable-size"):
            with r.view(dtype=SEQ, head=SEQ, timeout=0):
                pass


# ---------------------------------------------------------------------------
# views after their block, forked children, kernels without ring buffers


def test_view_array_is_empty_and_read_only_after_its_block(setup):
    """A view(dtype=) array is retired when its block ends (the ring may
    reuse its memory), as a view() RecordBatch is released; nothing is lost
    or read twice."""
    rb, ctr, prog, r = setup
    prog.test_run(data=PKT, repeat=3)
    with r.view(dtype=SEQ, timeout=1.0) as arr:
        assert arr["seq"].tolist() == [0, 1, 2] and not arr.flags.writeable
    assert arr.shape == (0,) and arr.dtype == SEQ and not arr.flags.writeable
    assert arr["seq"].tolist() == []
    with pytest.raises(IndexError):
        arr[0]
    prog.test_run(data=PKT, repeat=1)
    with r.view(timeout=1.0) as batch:
        assert len(batch) == 1
    with pytest.raises(ValueError, match="after its with block"):
        batch.data
    with r.view(dtype=SEQ, timeout=0) as empty:      # a timed-out view too
        assert empty.shape == (0,)
    assert not empty.flags.writeable
    prog.test_run(data=PKT, repeat=1)
    assert r.read_batch(dtype=SEQ, timeout=1.0)["seq"].tolist() == [4]


def test_reader_in_a_forked_child_raises_and_leaves_the_parents_ring(setup):
    """A forked child cannot use its parent's reader (every call raises,
    naming both processes); its close() touches nothing of the parent's:
    not the consumer position, not an open view, not the wake-up eventfd."""
    import selectors
    rb, ctr, prog, r = setup
    prog.test_run(data=PKT, repeat=4)
    with r.view(dtype=SEQ, max_records=2, timeout=1.0) as arr:    # open across the fork

        def child():
            out = forked_calls([lambda: r.read(timeout=0.1),
                                 lambda: r.read_batch(dtype=SEQ, timeout=0.1),
                                 lambda: r.read_batch(timeout=0),
                                 lambda: r.view(timeout=0).__enter__(),
                                 lambda: r.pending, r.fileno])
            r.close()
            assert r.closed
            return out

        out = run_in_child(child)
        assert out.count("cannot use it") == 6, out
        assert f"opened by process {os.getpid()}" in out
        assert arr["seq"].tolist() == [0, 1]
    # the parent's view consumed its two records, the child none
    assert r.read_batch(dtype=SEQ, timeout=1.0)["seq"].tolist() == [2, 3]
    sel = selectors.DefaultSelector()
    sel.register(r.fileno(), selectors.EVENT_READ)
    try:
        assert sel.select(timeout=0) == []      # the child did not wake the parent
    finally:
        sel.close()


def test_creating_a_ring_buffer_the_kernel_lacks_names_the_feature(unique_name):
    """On a kernel without ring buffers (proved with
    ``kernel-without 'map=27,map=31'``), creating one raises
    NotSupportedError naming the map type and the release that brought
    it, not a hint about max_entries; with them, creation works."""
    for t, since in ((MapType.RINGBUF, "5.8"), (MapType.USER_RINGBUF, "6.1")):
        probe = features.probe_map_type(t)
        if probe.ok:
            Map.create(MapSpec(type=t, max_entries=4096, name=unique_name[:12])).close()
        else:
            with pytest.raises(NotSupportedError,
                               match=f"map type {t.name}, added in Linux {since}") as e:
                Map.create(MapSpec(type=t, max_entries=4096, name=unique_name[:12]))
            assert e.value.errno == probe.errno and "power of 2" not in str(e.value)
