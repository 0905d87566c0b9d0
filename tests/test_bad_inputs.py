"""A table of bad inputs across the whole API.

Each row is one kind of mistake a caller can make. It names the exception
it must raise and fragments of the message (what was being done, and to
which object), and after the call the table checks that nothing changed in
the kernel: the maps hold what they held, no program of the row's name was
loaded.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable, NamedTuple

import numpy as np
import pytest

from fastbpf import (ClosedError, Map, MapSpec, MapType, Program, ProgramSpec, _core, asm, btf,
                     link, perf, ringbuf)
from fastbpf.asm import R0, R1, Instruction, Instructions
from fastbpf.enums import AttachType, ProgramType
from fastbpf.errors import BPFError, BTFError, NotSupportedError, VerifierError

pytestmark = pytest.mark.kernel

NCPU = _core.possible_cpus()


class World:
    """The objects rows act on; contents are checked after every row."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.h = Map.create(MapSpec(type=MapType.HASH, key=np.uint32, value=np.uint64,
                                    max_entries=8, name=f"{tag}h"))
        self.h[1], self.h[2] = 10, 20
        self.a = Map.create(MapSpec(type=MapType.ARRAY, key=np.uint32, value=np.uint64,
                                    max_entries=4, name=f"{tag}a"))
        self.a[0] = 7
        self.pc = Map.create(MapSpec(type=MapType.PERCPU_ARRAY, key=np.uint32, value=np.uint64,
                                     max_entries=2, name=f"{tag}pc"))
        self.s = Map.create(MapSpec(
            type=MapType.HASH, key=np.dtype([("saddr", "u4"), ("sport", "u2"), ("dport", "u2")]),
            value=np.uint32, max_entries=4, name=f"{tag}s"))
        self.xdp = Program.load(ProgramSpec(type=ProgramType.XDP, name=f"{tag}x",
                                            instructions=ret(2)))
        self.tp = Program.load(ProgramSpec(type=ProgramType.TRACEPOINT, name=f"{tag}t",
                                           instructions=ret(0)))
        self.owned = [self.h, self.a, self.pc, self.s, self.xdp, self.tp]

    def contents(self) -> dict:
        return {"h": sorted(self.h.items()), "a": sorted((int(k), int(v)) for k, v in self.a.items()),
                "pc": [m.tolist() for _, m in sorted(self.pc.items())],
                "s": len(self.s)}

    def close(self) -> None:
        for o in self.owned:
            o.close()


def ret(v: int) -> Instructions:
    return Instructions([asm.Mov.imm(R0, v), asm.exit()])


def load(w: World, insns: list, ptype: ProgramType = ProgramType.XDP) -> Any:
    return Program.load(ProgramSpec(type=ptype, name=f"{w.tag}bad", instructions=Instructions(insns)))


def closed_map() -> Map:
    m = Map.create(MapSpec(type=MapType.HASH, key=4, value=4, max_entries=1, name="fbclosed"))
    m.close()
    return m


def closed_prog() -> Program:
    p = Program.load(ProgramSpec(type=ProgramType.XDP, name="fbclosedp", instructions=ret(2)))
    p.close()
    return p


def with_file_fd(fn: Callable[[int], Any]) -> Any:
    fd = os.open("/proc/self/stat", os.O_RDONLY)
    try:
        return fn(fd)
    finally:
        os.close(fd)


def with_socket_fd(fn: Callable[[int], Any]) -> Any:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return fn(s.fileno())


def pin_twice(w: World, bpffs: str) -> None:
    path = os.path.join(bpffs, "taken")
    w.h.pin(path)
    try:
        w.a.pin(path)
    finally:
        os.unlink(path)


def fill(w: World) -> None:
    for k in range(100, 120):
        w.h[k] = k


def fill_then_undo(w: World, _dir: str | None = None) -> None:
    try:
        fill(w)
    finally:
        for k in range(100, 120):
            w.h.pop(k, None)


class Bad(NamedTuple):
    id: str
    call: Callable[..., Any]
    exc: type | tuple
    fragments: tuple = ()



ROWS = [
    # -- keys and values: sizes, dtypes, conversions ---------------------------------
    Bad("key-bytes-too-short", lambda w, d: w.h[b"\x01\x02"], ValueError,
        ("key is 2 bytes", "wants 4")),
    Bad("value-bytes-too-short", lambda w, d: w.h.__setitem__(3, b"abc"), ValueError,
        ("value is 3 bytes", "wants 8")),
    Bad("float-key", lambda w, d: w.h.__setitem__(1.7, 5), TypeError, ("key",)),
    Bad("float-value-into-int", lambda w, d: w.h.__setitem__(3, 2.9), TypeError, ("value",)),
    Bad("string-key", lambda w, d: w.h.__setitem__("4", 1), TypeError, ("key",)),
    Bad("negative-key", lambda w, d: w.h.__setitem__(-1, 1), ValueError,
        ("key -1 is negative", "uint32")),
    Bad("overflowing-value", lambda w, d: w.h.__setitem__(3, 2**64), ValueError,
        ("18446744073709551616", "uint64")),
    Bad("nan-value", lambda w, d: w.h.__setitem__(3, float("nan")), TypeError,
        ("nan", "uint64")),
    Bad("huge-negative-value", lambda w, d: w.h.__setitem__(3, -2**70), (ValueError, OverflowError),
        ("uint64",)),
    Bad("batch-int64-minus-one-into-uint64",
        lambda w, d: w.h.update_batch(np.array([5], np.uint32), np.array([-1], np.int64)),
        (TypeError, OverflowError), ("value",)),
    Bad("batch-nan-into-uint64",
        lambda w, d: w.h.update_batch(np.array([5], np.uint32), np.array([np.nan])),
        TypeError, ("value",)),
    Bad("batch-float-keys",
        lambda w, d: w.h.update_batch(np.array([5.5]), np.array([1], np.uint64)),
        TypeError, ("key",)),
    Bad("batch-length-mismatch",
        lambda w, d: w.h.update_batch(np.arange(3, dtype=np.uint32), np.ones(2, np.uint64)),
        ValueError, ("3 keys but 2 values",)),
    Bad("batch-2d-keys",
        lambda w, d: w.h.update_batch(np.ones((2, 2), np.uint32), np.ones(2, np.uint64)),
        ValueError, ("keys", "values")),
    Bad("batch-object-keys",
        lambda w, d: w.h.update_batch(np.array([1, "x"], dtype=object), np.ones(2, np.uint64)),
        TypeError, ("dtype object", "uint32")),
    Bad("spec-object-value",
        lambda w, d: MapSpec(type=MapType.ARRAY, key=4, value=object, max_entries=1).value_dtype,
        TypeError, ("Python objects",)),
    Bad("from-fd-object-dtype",
        lambda w, d: Map.from_fd(w.h.fd, value=np.dtype([("x", object)])),
        TypeError, ("Python objects",)),
    Bad("spec-value-2-to-the-33",
        lambda w, d: MapSpec(type=MapType.HASH, key=4, value=2**33, max_entries=1).value_dtype,
        ValueError, ("value", "8589934592")),
    Bad("scalar-into-struct-key", lambda w, d: w.s.__setitem__(443, 1), TypeError,
        ("key", "saddr")),
    Bad("tuple-of-wrong-length-struct-key", lambda w, d: w.s.__setitem__((1, 2), 1),
        (TypeError, ValueError), ("key",)),
    # -- per-CPU values ------------------------------------------------------------------
    Bad("percpu-wrong-shape",
        lambda w, d: w.pc.__setitem__(0, np.ones(NCPU + 1, np.uint64)), ValueError,
        (f"shape ({NCPU + 1},)", "one per possible CPU")),
    Bad("percpu-list-of-minus-one", lambda w, d: w.pc.__setitem__(0, [-1] * NCPU),
        (TypeError, OverflowError), ("per-CPU value", "uint64")),
    Bad("percpu-int64-array-of-minus-one",
        lambda w, d: w.pc.__setitem__(0, np.full(NCPU, -1, np.int64)),
        (TypeError, OverflowError), ("per-CPU value",)),
    # -- closed objects, stale ids, fds of the wrong kind ----------------------------------
    Bad("lookup-on-closed-map", lambda w, d: closed_map()[1], ClosedError, ("is closed",)),
    Bad("batch-on-closed-map",
        lambda w, d: closed_map().update_batch(np.ones(1, np.uint32), np.ones(1, np.uint32)),
        ClosedError, ("is closed",)),
    Bad("items-on-closed-map", lambda w, d: list(closed_map().items()), ClosedError,
        ("is closed",)),
    Bad("test-run-on-closed-program", lambda w, d: closed_prog().test_run(data=bytes(64)),
        ClosedError, ("is closed",)),
    Bad("stale-map-id", lambda w, d: Map.from_id(0x7FFFFFF0), FileNotFoundError,
        ("open map id 2147483632",)),
    Bad("stale-program-id", lambda w, d: Program.from_id(0x7FFFFFF0), FileNotFoundError,
        ("open program id 2147483632",)),
    Bad("map-from-file-fd", lambda w, d: with_file_fd(Map.from_fd), ValueError,
        ("not a BPF map",)),
    Bad("map-from-socket-fd", lambda w, d: with_socket_fd(Map.from_fd), ValueError,
        ("not a BPF map",)),
    Bad("map-from-program-fd", lambda w, d: Map.from_fd(w.xdp.fd), ValueError,
        ("not a BPF map",)),
    Bad("program-from-map-fd", lambda w, d: Program.from_fd(w.h.fd), ValueError,
        ("not a BPF program",)),
    Bad("program-from-file-fd", lambda w, d: with_file_fd(Program.from_fd), (ValueError, BPFError),
        ("program",)),
    # -- pins ---------------------------------------------------------------------------
    Bad("map-pin-outside-bpffs", lambda w, d: w.h.pin("/tmp/fbbad_pin"), ValueError,
        ("cannot pin at '/tmp/fbbad_pin'", "not on a bpf filesystem")),
    Bad("program-pin-outside-bpffs", lambda w, d: w.xdp.pin("/tmp/fbbad_prog"), ValueError,
        ("cannot pin at '/tmp/fbbad_prog'",)),
    Bad("pin-path-already-taken", pin_twice, FileExistsError, ("taken",)),
    Bad("open-missing-pin", lambda w, d: Map.from_pin(os.path.join(d, "nope")),
        FileNotFoundError, ("open pinned object", "nope")),
    # -- map creation -------------------------------------------------------------------
    Bad("huge-max-entries",
        lambda w, d: Map.create(MapSpec(type=MapType.ARRAY, key=4, value=8,
                                        max_entries=2**32 - 1, name=f"{w.tag}big")),
        (MemoryError, BPFError), ("map create",)),
    Bad("max-entries-zero",
        lambda w, d: Map.create(MapSpec(type=MapType.HASH, key=4, value=8, max_entries=0,
                                        name=f"{w.tag}zero")),
        BPFError, ("max_entries must be > 0",)),
    Bad("full-map", fill_then_undo, BPFError, ("map full", "max_entries=8")),
    Bad("create-takes-a-spec", lambda w, d: Map.create({"type": "hash"}), TypeError,
        ("Map.create takes a MapSpec",)),
    # -- batch semantics ------------------------------------------------------------------
    Bad("update-batch-noexist-on-existing-key",
        lambda w, d: w.h.update_batch(np.array([1, 7], np.uint32), np.array([1, 1], np.uint64),
                                      flags=1),
        BPFError, ("update_batch", "count=0")),
    Bad("delete-batch-on-array", lambda w, d: w.a.delete_batch(np.array([0], np.uint32)),
        NotSupportedError, ("delete_batch", "count=0")),
    Bad("delete-missing-key", lambda w, d: w.h.__delitem__(99), KeyError, ("99",)),
    Bad("short-output-arrays",
        lambda w, d: w.h.lookup_batch(np.empty(1, np.uint32), np.empty(1, np.uint64)),
        ValueError, ("can hold 8",)),
    Bad("mmap-of-plain-array", lambda w, d: w.a.mmap(), ValueError, ("MMAPABLE",)),
    Bad("push-on-hash", lambda w, d: w.h.push(1), TypeError, ("has keys",)),
    Bad("update-after-freeze", lambda w, d: (w.a.freeze(), w.a.__setitem__(0, 1)),
        PermissionError, ("frozen",)),
    # -- instructions and the verifier ----------------------------------------------------
    Bad("bad-opcode", lambda w, d: load(w, [Instruction(0xFF), asm.exit()]), VerifierError,
        ("program load", "unknown opcode ff")),
    Bad("jump-out-of-range",
        lambda w, d: load(w, [asm.Mov.imm(R0, 0), Instruction(0x05, offset=100), asm.exit()]),
        VerifierError, ("program load", "jump out of range")),
    Bad("verifier-rejects-uninitialised-r0", lambda w, d: load(w, [asm.exit()]), VerifierError,
        ("program load", "R0 !read_ok")),
    Bad("unknown-helper",
        lambda w, d: load(w, [Instruction(0x85, constant=99999), asm.Mov.imm(R0, 0), asm.exit()]),
        VerifierError, ("program load", "invalid func")),
    Bad("empty-program", lambda w, d: load(w, []), ValueError, ("at least one",)),
    Bad("jump-to-missing-label",
        lambda w, d: Instructions([asm.Mov.imm(R0, 0), asm.ja("nowhere"), asm.exit()]).encode(),
        ValueError, ("'nowhere'",)),
    Bad("duplicate-label",
        lambda w, d: Instructions([asm.Mov.imm(R0, 0).with_symbol("x"),
                                   asm.exit().with_symbol("x")]).encode(),
        ValueError, ("label 'x'", "unique")),
    Bad("unbound-map-reference",
        lambda w, d: Instructions([asm.load_map_ptr(R1, "nomap"), asm.Mov.imm(R0, 0),
                                   asm.exit()]).encode(),
        ValueError, ("nomap",)),
    Bad("not-an-instruction", lambda w, d: Instructions([None, asm.exit()]).encode(), TypeError,
        ("instruction 0",)),
    # -- test_run -------------------------------------------------------------------------
    Bad("test-run-without-data", lambda w, d: w.xdp.test_run(data=None), BPFError,
        ("test_run", "pass data=")),
    Bad("test-run-negative-repeat", lambda w, d: w.xdp.test_run(data=bytes(64), repeat=-1),
        (ValueError, OverflowError), ("repeat",)),
    Bad("test-run-absurd-repeat", lambda w, d: w.xdp.test_run(data=bytes(64), repeat=2**40),
        (ValueError, OverflowError), ("repeat",)),
    Bad("test-run-absurd-output-size",
        lambda w, d: w.xdp.test_run(data=bytes(64), data_out_size=2**40),
        (ValueError, OverflowError, MemoryError), ("data_out_size",)),
    Bad("test-run-packet-too-short", lambda w, d: w.xdp.test_run(data=b"\0"), BPFError,
        ("test_run", "EINVAL")),
    # -- readers on the wrong map ----------------------------------------------------------
    Bad("ringbuf-reader-on-hash", lambda w, d: ringbuf.Reader(w.h), ValueError,
        ("ringbuf.Reader needs a RINGBUF map", "HASH")),
    Bad("perf-reader-on-hash", lambda w, d: perf.Reader(w.h), ValueError,
        ("perf.Reader needs a PERF_EVENT_ARRAY map", "HASH")),
    Bad("user-writer-on-array", lambda w, d: ringbuf.UserWriter(w.a), ValueError,
        ("UserWriter needs a USER_RINGBUF map", "ARRAY")),
    # -- attaching ------------------------------------------------------------------------
    Bad("attach-xdp-none", lambda w, d: link.attach_xdp(None, "lo"), TypeError,
        ("attach_xdp needs a XDP program", "None")),
    Bad("attach-xdp-a-map", lambda w, d: link.attach_xdp(w.h, "lo"), TypeError,
        ("attach_xdp needs a XDP program", "a Map")),
    Bad("attach-xdp-wrong-program-type", lambda w, d: link.attach_xdp(w.tp, "lo"), ValueError,
        ("attach_xdp", "TRACEPOINT")),
    Bad("attach-xdp-missing-interface", lambda w, d: link.attach_xdp(w.xdp, "fbbadnoif0"),
        BPFError, ("find interface 'fbbadnoif0'", "ENODEV")),
    Bad("attach-xdp-unknown-mode", lambda w, d: link.attach_xdp(w.xdp, "lo", mode="turbo"),
        ValueError, ("unknown XDP mode 'turbo'",)),
    Bad("attach-cgroup-not-a-cgroup",
        lambda w, d: link.attach_cgroup(w.xdp, "/tmp", AttachType.CGROUP_INET_EGRESS),
        ValueError, ("open cgroup '/tmp'", "not a cgroup v2 directory")),
    Bad("attach-cgroup-missing-dir",
        lambda w, d: link.attach_cgroup(w.xdp, "/nonexistent-cg", AttachType.CGROUP_INET_EGRESS),
        FileNotFoundError, ("open cgroup '/nonexistent-cg'",)),
    Bad("attach-socket-filter-negative-fd", lambda w, d: link.attach_socket_filter(w.xdp, -1),
        (TypeError, ValueError), ("attach_socket_filter",)),
    Bad("attach-tracepoint-missing", lambda w, d: link.attach_tracepoint(w.tp, "fbbad", "nosuch"),
        FileNotFoundError, ("tracepoint fbbad:nosuch", "events/fbbad/nosuch")),
    Bad("attach-tracepoint-path-walk", lambda w, d: link.attach_tracepoint(w.tp, "..", "x"),
        ValueError, ("bad tracepoint category '..'",)),
    Bad("attach-raw-tracepoint-wrong-type", lambda w, d: link.attach_raw_tracepoint(w.tp, "x"),
        ValueError, ("attach_raw_tracepoint needs a RAW_TRACEPOINT",)),
    Bad("attach-uprobe-wrong-type", lambda w, d: link.attach_uprobe(w.tp, "/bin/true", "main"),
        ValueError, ("attach_uprobe needs a KPROBE program",)),
    Bad("attach-netfilter-reserved-priority",
        lambda w, d: link.attach_netfilter(w.xdp, priority=-2**31), ValueError,
        ("priority -2147483648 is out of range",)),
    Bad("attach-tcx-bad-direction",
        lambda w, d: link.attach_tcx(w.xdp, "lo", direction="sideways"), ValueError,
        ("direction must be 'ingress' or 'egress'",)),
    Bad("attach-tc-bad-priority", lambda w, d: link.attach_tc(w.xdp, "lo", priority=70000),
        ValueError, ("priority must be in 0..65535",)),
    # -- BTF --------------------------------------------------------------------------------
    Bad("btf-garbage", lambda w, d: btf.Spec.parse(b"garbage!" * 4), BTFError, ("not BTF",)),
    Bad("btf-truncated-header", lambda w, d: btf.Spec.parse(b"\x9f\xeb\x01\x00"), BTFError,
        ("BTF",)),
]


def _ids(rows):
    seen = set()
    for r in rows:
        assert r.id not in seen, f"duplicate row id {r.id}"
        seen.add(r.id)
    return [r.id for r in rows]


def _param(r: Bad):
    return pytest.param(r, id=r.id)


def test_the_table_covers_sixty_kinds():
    assert len(set(_ids(ROWS))) >= 60


def _programs_named(name: str) -> list[int]:
    out = []
    for pid in _core.prog_ids():
        try:
            with _core.prog_get_fd_by_id(pid) as fd:
                if _core.prog_info(fd.fd)["name"] == name:
                    out.append(pid)
        except OSError:
            pass  # gone meanwhile
    return out


@pytest.mark.parametrize("row", [_param(r) for r in ROWS])
def test_bad_input(row: Bad, bpffs_dir, unique_name):
    w = World(unique_name[:10])
    try:
        before = w.contents()
        with pytest.raises(row.exc) as ei:
            row.call(w, bpffs_dir)
        text = str(ei.value)
        for frag in row.fragments:
            assert frag in text, f"{frag!r} not in {text!r}"
        # Nothing changed in the kernel: same map contents, no program left.
        assert w.contents() == before
        assert _programs_named(f"{w.tag}bad") == []
    finally:
        w.close()
