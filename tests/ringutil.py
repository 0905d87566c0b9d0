"""Test helpers shared by the ring buffer and perf reader tests: a record
whose every byte position tells which record and which word it came from."""

from __future__ import annotations

import numpy as np

from fastbpf import asm
from fastbpf.asm import R7, R8, R9, R10, Size

# 64 bytes whose fields have the sizes the copy loops special-case (4, 8,
# 16, 32 via adjacent fields, 64 for the whole record) and odd ones (3, 13).
WORDS = np.dtype([("a", "<u4"), ("b", "<u4"), ("c", "<u8"), ("d", "<u8", 2),
                  ("f", "u1", 3), ("g", "u1", 13), ("h", "<u8", 2)])
assert WORDS.itemsize == 64


def store_record(body: list, base: int, words: bool) -> None:
    """Append instructions storing the 8 u64s of a record at r10+base: seq
    (in r7) in each, or with *words* seq * 16 + k in word k."""
    if words:
        body += [asm.Mov.reg(R8, R7), asm.Lsh.imm(R8, 4)]
    for k in range(8):
        if words:
            body += [asm.Mov.reg(R9, R8), asm.Add.imm(R9, k),
                     asm.store_mem(R10, base + 8 * k, R9, Size.DW)]
        else:
            body.append(asm.store_mem(R10, base + 8 * k, R7, Size.DW))


def words_expected(seqs) -> np.ndarray:
    """The records store_record(words=True) writes for *seqs*, as WORDS."""
    w = np.asarray(seqs, np.uint64)[:, None] * np.uint64(16) + np.arange(8, dtype=np.uint64)
    return w.astype("<u8").view(WORDS).reshape(-1)


def wait_until_blocked_in_epoll(tid: int, timeout: float = 10.0) -> None:
    """Return once thread *tid* of this process sleeps in epoll_wait (the
    kernel's word for it, not a guess from elapsed time); fail after
    *timeout* seconds."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/self/task/{tid}/wchan") as f:
                wchan = f.read()
            with open(f"/proc/self/task/{tid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:       # the thread ended
            break
        if "epoll" in wchan and state == "S":
            return
        time.sleep(0.001)
    raise AssertionError(f"thread {tid} did not block in epoll_wait within {timeout} s")


def run_in_child(fn, timeout: float = 30.0) -> str:
    """Run *fn()* in a forked child of this process; return what it
    returned (a str), or fail with the child's traceback. The child never
    returns into pytest (it leaves with os._exit); a child that hangs is
    killed after *timeout* seconds and the test fails."""
    import os
    import signal
    import time
    import traceback
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:                        # the child
        os.close(rfd)
        code = 0
        try:
            out = str(fn())
        except BaseException:
            out = traceback.format_exc()
            code = 1
        try:
            os.write(wfd, out.encode()[:60000])
        finally:
            os._exit(code)
    os.close(wfd)
    deadline = time.monotonic() + timeout
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError(f"the forked child hung for {timeout} s")
            time.sleep(0.005)
        out = os.read(rfd, 65536).decode()
    finally:
        os.close(rfd)
    if os.WIFSIGNALED(status):
        raise AssertionError(f"the forked child died of signal {os.WTERMSIG(status)}")
    assert os.WEXITSTATUS(status) == 0, f"the forked child failed:\n{out}"
    return out


def forked_calls(calls) -> str:
    """In a fork child: make each call; the RuntimeErrors' messages (or
    "returned"), one a line."""
    msgs = []
    for call in calls:
        try:
            call()
            msgs.append("returned")
        except RuntimeError as e:
            msgs.append(str(e))
    return "\n".join(msgs)
