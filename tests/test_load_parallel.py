"""Programs of a collection loaded in parallel (``spec.load(threads=N)``, the
``_core.LoadQueue`` under it) against the same loads one by one:
the same programs in the kernel, the same errors, nothing left behind."""

from __future__ import annotations

import errno
import os
import re
import struct
import time

import pytest

import fastbpf
from fastbpf import AttachType, ProgramType, _core, asm
from fastbpf.programs import ProgramInfo

TESTDATA = os.path.join(os.path.dirname(__file__), "..", "testdata")
MANY = os.path.join(TESTDATA, "many_progs-el.o")
LOADER = os.path.join(TESTDATA, "loader-el.o")
# mov r0, 0; exit
RET0 = struct.pack("<BBhiBBhi", 0xB7, 0, 0, 0, 0x95, 0, 0, 0)


def _xlated(fd: int) -> bytes:
    """The kernel's instructions with map references blanked: ld_imm64 of a
    map (src_reg != 0) carries the map's id, which differs between loads."""
    raw = bytearray(_core.prog_xlated_insns(fd))
    for off in range(0, len(raw) - 8, 8):
        if raw[off] == 0x18 and raw[off + 1] >> 4:
            raw[off + 4:off + 8] = bytes(4)
            raw[off + 12:off + 16] = bytes(4)
    return bytes(raw)


def _programs(coll) -> list[tuple]:
    out = []
    for name, p in coll.programs.items():
        info = ProgramInfo.from_fd(p.fd)
        out.append((name, p.name, p.type, info.type, info.name, info.tag, _xlated(p.fd)))
    return out


@pytest.fixture
def batches(monkeypatch):
    """Every LoadQueue the loader finishes: (number of loads, threads)."""
    calls: list[tuple[int, int]] = []

    class Spy(_core.LoadQueue):
        def finish(self):
            calls.append((self.added, self.threads))
            return super().finish()

    monkeypatch.setattr(_core, "LoadQueue", Spy)
    return calls


@pytest.mark.parametrize("obj", [MANY, LOADER])
@pytest.mark.parametrize("threads", [1, 2, 4, None])
def test_parallel_load_gives_the_programs_of_a_sequential_one(obj, threads, batches):
    spec = fastbpf.load_collection_spec(obj)
    with spec.load(log_level=1) as one:   # a log: one by one, no queue
        want = _programs(one)
    assert not batches
    with spec.load(threads=threads) as par:
        got = _programs(par)
    assert got == want
    assert len(want) == len(spec.programs) >= 7
    assert batches == [(len(spec.programs), threads or min(len(os.sched_getaffinity(0)), 4))]


def test_load_collection_takes_threads(batches):
    with fastbpf.load_collection(MANY, threads=2) as coll:
        assert sorted(coll.programs) == sorted(f"prog{i}" for i in range(16))
        assert all(isinstance(p, fastbpf.ObjectProgram) for p in coll.programs.values())
    assert batches == [(16, 2)]


def test_programs_on_the_full_path_keep_it_in_order(batches):
    # An edited program is loaded through Program.load, the others in a batch;
    # the collection lists them in the object's order either way.
    spec = fastbpf.load_collection_spec(MANY)
    spec.programs["prog3"].instructions = asm.Instructions([asm.Mov.imm(asm.R0, 2), asm.exit()])
    with spec.load(threads=1) as one:
        want = _programs(one)
    with spec.load(threads=2) as par:
        got = _programs(par)
        assert list(par.programs) == [f"prog{i}" for i in range(16)]
    assert got == want
    assert batches == [(15, 1), (15, 2)]


_KADDR = re.compile(r"0xffff[0-9a-f]+")


def _rejected_spec(how: str):
    spec = fastbpf.load_collection_spec(MANY)
    ps = spec.programs["prog5"]   # an XDP program returning XDP_PASS (2)
    ps.type = ProgramType.CGROUP_SKB
    if how == "verifier":          # cgroup_skb programs return 0 or 1
        ps.attach_type = AttachType.CGROUP_INET_INGRESS
    else:                          # the kernel refuses the attach type before verifying
        ps.attach_type = AttachType.XDP
    return spec


@pytest.mark.parametrize("how", ["verifier", "attach type"])
def test_a_rejected_program_raises_as_one_by_one(how, batches):
    spec = _rejected_spec(how)
    errors = []
    for threads in (1, 2, 4):
        with pytest.raises(fastbpf.BPFError) as ei:
            spec.load(threads=threads)
        e = ei.value
        # Map addresses in the log differ from load to load.
        errors.append((type(e), e.errno, e.op, e.obj, _KADDR.sub("ADDR", str(e)),
                       _KADDR.sub("ADDR", getattr(e, "log", ""))))
    assert errors[0] == errors[1] == errors[2]
    kind, code, _, obj, text, log = errors[0]
    assert obj == "program 'prog5'" and "prog5" in text
    if how == "verifier":
        assert kind is fastbpf.VerifierError and code == errno.EINVAL
        assert "R0" in log and "exit" in log
    else:   # _raise_if_unsupported's explanation, as one by one
        assert "attach type" in text
    assert batches == [(16, 1), (16, 2), (16, 4)]
    # (the autouse fixture checks that no fd and no thread is left)


def test_a_log_loads_one_by_one(batches):
    spec = fastbpf.load_collection_spec(MANY)
    with spec.load(threads=4, log_level=1) as coll:
        assert all(p.log for p in coll.programs.values())
    assert batches == []


def test_one_program_starts_no_thread(batches):
    spec = fastbpf.load_collection_spec(MANY)
    for name in list(spec.programs)[1:]:
        del spec.programs[name]
    with spec.load(threads=4) as coll:
        assert list(coll.programs) == ["prog0"]
        assert coll.programs["prog0"].info().type == ProgramType.SCHED_CLS
    assert batches == []


@pytest.mark.parametrize("bad, exc, words", [
    (0, ValueError, "threads must be >= 1"),
    (-3, ValueError, "threads must be >= 1"),
    (2.0, TypeError, "threads must be an int or None, not float"),
    ("2", TypeError, "threads must be an int or None, not str"),
])
def test_bad_threads(bad, exc, words):
    with pytest.raises(exc, match=words):
        fastbpf.load_collection_spec(MANY).load(threads=bad)


# -- _core.prog_load_many itself ------------------------------------------------


def _close_all(results):
    for r in results:
        if isinstance(r, _core.FD):
            r.close()


@pytest.mark.parametrize("threads", [1, 2, 8])
def test_prog_load_many_returns_an_fd_per_load(threads):
    loads = [(int(ProgramType.SOCKET_FILTER), RET0, "GPL", {"name": f"many{i}"})
             for i in range(6)]
    tasks = _live_tasks()
    out = _core.prog_load_many(loads, threads)
    try:
        assert _live_tasks() == tasks  # every thread joined
        assert len(out) == 6 and all(isinstance(fd, _core.FD) for fd in out)
        names = [ProgramInfo.from_fd(fd.fd).name for fd in out]
        assert names == [f"many{i}" for i in range(6)]
        assert len({fd.fd for fd in out}) == 6
    finally:
        _close_all(out)


def test_prog_load_many_reports_errno_and_starts_nothing_after_a_failure():
    good = (int(ProgramType.SOCKET_FILTER), RET0, "GPL", {})
    bad = (0x7FFF, RET0, "GPL", {})  # no such program type
    # One thread takes the loads in order: a failure stops the rest.
    out = _core.prog_load_many([good, bad, good], 1)
    try:
        assert isinstance(out[0], _core.FD)
        assert out[1] == errno.EINVAL
        assert out[2] is None
    finally:
        _close_all(out)
    assert _core.prog_load_many([], 4) == []


@pytest.mark.parametrize("loads, threads, exc, words", [
    ([(1, RET0, "GPL", {"log_level": 1})], 2, TypeError, "unexpected argument 'log_level'"),
    ([(1, RET0, "GPL", {"nme": "x"})], 2, TypeError, "unexpected argument 'nme'"),
    ([(1, RET0, "GPL")], 2, TypeError, r"load 0 must be a \(prog_type"),
    ([(1, RET0, "GPL", [])], 2, TypeError, "kwargs of load 0 must be a dict"),
    ([(1, RET0[:12], "GPL", {})], 2, ValueError, "non-empty multiple of 8 bytes"),
    ([(1, RET0, "GPL", {}), (1, 5, "GPL", {})], 2, TypeError, "instructions must be"),
    ([(1, RET0, "G\0PL", {})], 2, ValueError, "license must not contain NUL"),
    ([(1, RET0, "GPL", {"prog_flags": -1})], 2, OverflowError, "negative"),
    ([(1, RET0, "GPL", {})], 0, ValueError, "threads must be >= 1"),
])
def test_prog_load_many_bad_input(loads, threads, exc, words):
    with pytest.raises(exc, match=words):
        _core.prog_load_many(loads, threads)


# -- _core.LoadQueue: loads start while the caller adds more ----------------------------


def _live_tasks() -> int:
    """How many threads this process runs. A joined thread's /proc entry can
    outlast pthread_join for a moment (the kernel wakes the joiner before it
    reaps the thread), as a zombie: those are not counted."""
    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        n += state not in ("Z", "X")
    return n


def _bpf_prog_fds() -> set[int]:
    out = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:bpf-prog":
                out.add(int(name))
        except OSError:
            pass
    return out


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_load_queue_gives_an_fd_per_load_in_order(threads):
    tasks = _live_tasks()
    q = _core.LoadQueue(5, threads)
    assert q.threads == threads and q.added == 0
    assert _live_tasks() == tasks + threads - 1  # waiting workers
    for i in range(5):
        assert q.add(int(ProgramType.SOCKET_FILTER), RET0, "GPL", {"name": f"q{i}"}) == i
    out = q.finish()
    try:
        assert _live_tasks() == tasks
        assert [ProgramInfo.from_fd(fd.fd).name for fd in out] == [f"q{i}" for i in range(5)]
    finally:
        _close_all(out)
    with pytest.raises(ValueError, match="after finish"):
        q.add(int(ProgramType.SOCKET_FILTER), RET0, "GPL", {})
    with pytest.raises(ValueError, match="after finish"):
        q.finish()
    q.cancel()  # nothing left to close: the FDs returned are the caller's


def test_load_queue_threads_are_capped_by_its_capacity():
    assert _core.LoadQueue(2, 8).threads == 2
    assert _core.LoadQueue(0, 8).threads == 1
    q = _core.LoadQueue(1, 1)
    q.add(int(ProgramType.SOCKET_FILTER), RET0, "GPL", {})
    with pytest.raises(ValueError, match="capacity of 1"):
        q.add(int(ProgramType.SOCKET_FILTER), RET0, "GPL", {})
    _close_all(q.finish())
    with pytest.raises(ValueError, match="threads must be >= 1"):
        _core.LoadQueue(3, 0)


@pytest.mark.parametrize("how", ["cancel", "drop"])
def test_load_queue_stopped_early_closes_what_it_loaded(how):
    before = _bpf_prog_fds()
    tasks = _live_tasks()
    q = _core.LoadQueue(8, 2)
    for _ in range(4):
        q.add(int(ProgramType.SOCKET_FILTER), RET0, "GPL", {})
    if how == "cancel":
        q.cancel()
        q.cancel()  # idempotent
        with pytest.raises(ValueError, match="after finish\\(\\) or cancel"):
            q.add(int(ProgramType.SOCKET_FILTER), RET0, "GPL", {})
    else:
        del q  # no reference cycle: freed here, as an exception unwinding a load frees it
    assert _bpf_prog_fds() == before
    assert _live_tasks() == tasks


def test_load_queue_reports_errno_and_starts_nothing_after_a_failure():
    q = _core.LoadQueue(3, 1)
    q.add(int(ProgramType.SOCKET_FILTER), RET0, "GPL", {})
    q.add(0x7FFF, RET0, "GPL", {})  # no such program type
    q.add(int(ProgramType.SOCKET_FILTER), RET0, "GPL", {})
    out = q.finish()
    try:
        assert isinstance(out[0], _core.FD) and out[1] == errno.EINVAL and out[2] is None
    finally:
        _close_all(out)


class _LinkFailure(Exception):
    pass


def test_a_failure_while_linking_closes_the_programs_already_loading(monkeypatch):
    # Programs 0-4 are queued (and loading in the workers) when linking
    # program 5 fails: the load raises, and nothing it made is left.
    from fastbpf import _loader
    real = _loader._prepare_program
    seen = []

    def prepare(spec, name, *a, **k):
        seen.append(name)
        if len(seen) == 6:
            raise _LinkFailure(f"cannot link {name}")
        return real(spec, name, *a, **k)

    monkeypatch.setattr(_loader, "_prepare_program", prepare)
    before = _bpf_prog_fds()
    tasks = _live_tasks()
    with pytest.raises(_LinkFailure, match="cannot link prog5"):
        fastbpf.load_collection(MANY, threads=2)
    assert _bpf_prog_fds() == before
    assert _live_tasks() == tasks


def test_no_program_to_queue_starts_no_queue(monkeypatch):
    # Every program edited: all take Program.load, none is queued, so no
    # queue (and no thread) is made, early or late.
    from fastbpf import _loader
    made = []
    real = _core.LoadQueue

    def spy(*a):
        made.append(a)
        return real(*a)

    monkeypatch.setattr(_core, "LoadQueue", spy)
    spec = fastbpf.load_collection_spec(MANY)
    assert _loader._queue_early(spec)
    for ps in spec.programs.values():
        ps.instructions = asm.Instructions([asm.Mov.imm(asm.R0, 2), asm.exit()])
    assert not _loader._queue_early(spec)
    with spec.load(threads=2) as coll:
        assert len(coll.programs) == 16
    assert made == []


def _worker_cpus(before: set[str]) -> list[set[int]]:
    """The CPUs each thread started since *before* (tids) may run on."""
    out = []
    for tid in set(os.listdir("/proc/self/task")) - before:
        with open(f"/proc/self/task/{tid}/status") as f:
            for line in f:
                if line.startswith("Cpus_allowed_list:"):
                    cpus: set[int] = set()
                    for part in line.split(":", 1)[1].strip().split(","):
                        lo, _, hi = part.partition("-")
                        cpus.update(range(int(lo), int(hi or lo) + 1))
                    out.append(cpus)
    return out


def test_queue_workers_end_up_on_the_callers_cpus():
    # A worker starts away from the caller's CPU (a scheduler may pack a new
    # thread onto the CPU that made it: a VM's does after a few ms of
    # idleness, and the loads would then run one at a time), then takes
    # every CPU the caller may use, so a busy CPU cannot hold it. Where it
    # starts is a scheduling matter (bench_load's after-idle rows measure
    # it); what it is left allowed on is checked here.
    mine = os.sched_getaffinity(0)
    cases = [{min(mine)}]                    # one CPU: nothing to leave out
    if len(mine) >= 2:
        cases.append(set(sorted(mine)[:2]))
    try:
        for allowed in cases:
            os.sched_setaffinity(0, allowed)
            before = set(os.listdir("/proc/self/task"))
            q = _core.LoadQueue(4, 2)
            try:
                deadline = time.monotonic() + 5
                while True:
                    workers = _worker_cpus(before)
                    if workers == [allowed] or time.monotonic() > deadline:
                        break
                    time.sleep(0.001)
                assert workers == [allowed]
                q.add(int(ProgramType.SOCKET_FILTER), RET0, "GPL", {})
                q.add(int(ProgramType.SOCKET_FILTER), RET0, "GPL", {})
                out = q.finish()
                assert all(isinstance(fd, _core.FD) for fd in out) and len(out) == 2
                _close_all(out)
            finally:
                q.cancel()
    finally:
        os.sched_setaffinity(0, mine)
