"""The kernel's trace pipe, where ``bpf_trace_printk()`` output lands.

:func:`trace_lines` yields :class:`TraceLine` tuples (task, pid, cpu, flags,
timestamp, message), like BCC's ``trace_fields()``; the object it returns is
both an iterator and an async iterator::

    for line in fastbpf.trace_lines(timeout=1.0):
        print(line.pid, line.message)

    async for line in fastbpf.trace_lines(timeout=1.0):
        ...

Reading the pipe consumes what it reads, and the pipe is one per machine:
two readers share the lines between them.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import select
import time
from typing import AsyncIterator, Iterator, NamedTuple

__all__ = ["TraceLine", "TraceLines", "trace_lines", "parse_trace_line", "TRACE_PIPES"]

#: Where the trace pipe lives (tracefs, then the old debugfs place).
TRACE_PIPES = ("/sys/kernel/tracing/trace_pipe", "/sys/kernel/debug/tracing/trace_pipe")

# "  python3-1234  ( 1234) [001] d..31  5678.123456: bpf_trace_printk: hello"
# (the tgid column appears only when the record-tgid option is on)
_LINE = re.compile(
    r"^\s*(?P<task>.+?)-(?P<pid>\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>[^\s\[\]]{4,6})\s+)?(?P<ts>\d+\.\d+):\s+(?P<func>[^:]+):\s?(?P<msg>.*)$")


class TraceLine(NamedTuple):
    """One parsed line of the trace pipe."""

    task: str
    pid: int
    cpu: int
    #: irqs-off / need-resched / hardirq-softirq / preempt-depth flags ("d..31").
    flags: str
    #: Seconds, on the trace clock (boot-time based by default).
    timestamp: float
    #: The event's name: ``bpf_trace_printk`` for bpf_printk output.
    function: str
    message: str
    #: The line as the kernel wrote it.
    raw: str


def parse_trace_line(text: str) -> TraceLine | None:
    """Parse one trace pipe line; None if it does not look like one."""
    m = _LINE.match(text.rstrip("\n"))
    if m is None:
        return None
    return TraceLine(task=m["task"].strip(), pid=int(m["pid"]), cpu=int(m["cpu"]),
                     flags=m["flags"] or "", timestamp=float(m["ts"]),
                     function=m["func"].strip(), message=m["msg"], raw=text.rstrip("\n"))


def _open_pipe() -> int:
    last: OSError | None = None
    for path in TRACE_PIPES:
        try:
            return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError as e:
            last = e
    raise FileNotFoundError(errno.ENOENT, "no trace pipe: mount tracefs with "
                            "'mount -t tracefs tracefs /sys/kernel/tracing'",
                            TRACE_PIPES[0]) from last


class TraceLines:
    """Lines of the trace pipe, parsed, as they arrive.

    Iterate it (``for``) or iterate it asynchronously (``async for``). With
    *timeout*, iteration ends once no line has arrived for that many
    seconds; without, it runs until :meth:`close` (or Ctrl-C). Lines that
    do not parse are yielded with ``function == ""`` and the whole text as
    the message, so nothing is lost.
    """

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout
        self._fd: int | None = None   # close() (and __del__) work if the open fails
        self._fd = _open_pipe()
        self._buf = b""
        self._pending: list[TraceLine] = []

    def close(self) -> None:
        """Close the pipe; iteration ends."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "TraceLines":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def _take(self, data: bytes) -> None:
        self._buf += data
        *full, self._buf = self._buf.split(b"\n")
        for raw in full:
            text = raw.decode("utf-8", "replace")
            if not text.strip():
                continue
            line = parse_trace_line(text)
            if line is None:
                line = TraceLine("", 0, 0, "", 0.0, "", text, text)
            self._pending.append(line)

    def _read(self) -> bool:
        """Read what is there; False at end of file."""
        assert self._fd is not None
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return True
        if not data:
            return False
        self._take(data)
        return True

    def __iter__(self) -> Iterator[TraceLine]:
        return self

    def __next__(self) -> TraceLine:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while not self._pending:
            if self._fd is None:
                raise StopIteration
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._fd], [], [], wait)
            if not ready:
                self.close()
                raise StopIteration
            if not self._read():
                self.close()
                raise StopIteration
        return self._pending.pop(0)

    def __aiter__(self) -> AsyncIterator[TraceLine]:
        return self

    async def __anext__(self) -> TraceLine:
        loop = asyncio.get_running_loop()
        while not self._pending:
            if self._fd is None:
                raise StopAsyncIteration
            fd = self._fd
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _wake, ready)
            try:
                await asyncio.wait_for(ready, self.timeout)
            except asyncio.TimeoutError:
                self.close()
                raise StopAsyncIteration from None
            finally:
                loop.remove_reader(fd)
            if not self._read():
                self.close()
                raise StopAsyncIteration
        return self._pending.pop(0)


def _wake(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


def trace_lines(timeout: float | None = None) -> TraceLines:
    """The trace pipe's lines, parsed (see :class:`TraceLines`)."""
    return TraceLines(timeout)
