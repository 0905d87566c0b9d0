"""What the event readers share (:class:`fastbpf.ringbuf.Reader`,
:class:`fastbpf.perf.Reader`, :class:`fastbpf.ringbuf.UserWriter`'s map
check): the reading, view, iteration, asyncio and lifetime API over a core
from :mod:`fastbpf._ring`. The semantics are described in
:mod:`fastbpf.ringbuf`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator

import numpy as np

from . import _core
from ._ring import Record, RecordBatch
from .enums import MapType
from .errors import ClosedError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["BaseReader", "View", "check_map"]


def check_map(m: Any, want: MapType, who: str) -> int:
    """Validate *m* and return a duplicate of its fd (owned by the caller)."""
    if not all(hasattr(m, a) for a in ("fd", "map_type", "max_entries")):
        raise TypeError(f"{who} takes a fastbpf Map, not {type(m).__name__}")
    if getattr(m, "closed", False):
        raise ClosedError(f"{who}: the map is closed")
    if m.map_type != want:
        try:
            have = MapType(m.map_type).name
        except ValueError:
            have = str(m.map_type)
        raise ValueError(f"{who} needs a {want.name} map, got a {have} map")
    return _core.dup_fd(m.fd).detach()


class View:
    """The context manager ``view()`` returns."""

    __slots__ = ("_core", "_args")

    def __init__(self, core: Any, args: tuple[Any, ...]) -> None:
        self._core = core
        self._args = args

    def __enter__(self) -> Any:
        return self._core.view_begin(*self._args)

    def __exit__(self, *exc: Any) -> None:
        self._core.view_end()


def _done(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _readable(loop: asyncio.AbstractEventLoop, fd: int, timeout: float | None) -> None:
    """Wait until *fd* is readable or *timeout* passes, on the loop itself."""
    fut = loop.create_future()
    loop.add_reader(fd, _done, fut)
    timer = loop.call_later(timeout, _done, fut) if timeout is not None else None
    try:
        await fut
    finally:
        loop.remove_reader(fd)
        if timer is not None:
            timer.cancel()


class BaseReader:
    """What both readers share: the wait/close/iterate/async machinery."""

    _core: Any
    _empty_ok = (type(None),)

    def read(self, timeout: float | None = None) -> Record | None:
        """One record, copied, as a :class:`Record` (a ``bytes`` with ``.cpu``);
        ``None`` when *timeout* seconds pass first (None: wait forever)."""
        rec: Record | None = self._core.read(timeout)
        return rec

    def read_batch(self, dtype: Any = None, max_records: int | None = None,
                   timeout: float | None = None, *, out: np.ndarray | None = None,
                   fields: Any = None) -> np.ndarray | RecordBatch:
        """Up to *max_records* records (default: all that are ready), copied.

        With *dtype*, a new structured array of that dtype; with *out* (a 1-d
        array, reused across calls to spare an allocation) the records are
        written into it and ``out[:n]`` is returned; without either, a
        :class:`RecordBatch`. With *fields* (names of *dtype*'s fields),
        only those columns are copied, into a packed array holding just
        them: one pass over the ring that writes only what will be read.
        Records longer than *dtype* (variable-size events that share a
        header) each give their first ``dtype.itemsize`` bytes; a record
        too short for it raises ``ValueError`` and is dropped (the records
        before it are returned first). Waits up to *timeout* for the first
        record and returns an empty result on timeout.
        """
        if dtype is None and out is None:
            if fields is not None:
                raise ValueError("fields= needs a structured dtype naming them")
            batch: RecordBatch = self._core.read_records(max_records, timeout)
            return batch
        arr: np.ndarray = self._core.read_fixed(dtype, max_records, timeout, out, fields)
        return arr

    def view(self, max_records: int | None = None, timeout: float | None = None,
             dtype: Any = None, head: Any = None) -> View:
        """Zero-copy batch: ``with r.view(...) as batch:``.

        ``batch`` points into the ring's memory (read-only) and is valid only
        inside the block; the records are consumed when the block exits, and
        the batch is invalidated then: a :class:`RecordBatch` raises
        ``ValueError`` when its records are read, an array becomes empty and
        read-only (``.copy()`` what you keep).
        Without *dtype* it is a :class:`RecordBatch`; with *dtype* a strided
        structured array. With *head* (a dtype; variable-size batches only),
        the first ``head.itemsize`` bytes of every record are copied into
        ``batch.heads`` during the scan that finds the records, an aligned
        array that stays valid after the block (the header variable-size
        events share, read in one pass); a record shorter than *head* raises
        ``ValueError`` and is dropped, after the records before it. A batch may hold fewer than *max_records* records
        even when more are ready (see the reader's notes); it is empty on
        timeout. Without *max_records* a batch ends after about 2 MiB of
        ring: its records are read right after the scan that found them, and
        a batch of about a cache's size keeps that read in cache.
        """
        return View(self._core, (dtype, max_records, timeout, head))

    def __iter__(self) -> Iterator[Record]:
        """Records, blocking for each, until the reader is closed."""
        while True:
            try:
                rec = self._core.read(None)
            except ClosedError:
                return
            if rec is not None:
                yield rec

    # -- asyncio ---------------------------------------------------------------

    async def _async(self, fn: Any, timeout: float | None, empty: Any) -> Any:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + float(timeout)
        core = self._core
        fd = core.fileno()
        core.op_enter()   # close() meanwhile defers the tear-down to us
        try:
            while True:
                res = fn()
                if not empty(res):
                    return res
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return res
                await _readable(loop, fd, remaining)
        finally:
            core.op_leave()

    async def read_async(self, timeout: float | None = None) -> Record | None:
        """``await``-able :meth:`read`, driven by the running event loop."""
        rec: Record | None = await self._async(lambda: self._core.read(0), timeout,
                                               lambda r: r is None)
        return rec

    async def read_batch_async(self, dtype: Any = None, max_records: int | None = None,
                               timeout: float | None = None) -> np.ndarray | RecordBatch:
        """``await``-able :meth:`read_batch`, driven by the running event loop."""
        batch: np.ndarray | RecordBatch = await self._async(
            lambda: self.read_batch(dtype, max_records, 0), timeout, lambda r: len(r) == 0)
        return batch

    def __aiter__(self) -> AsyncIterator[Record]:
        return self

    async def __anext__(self) -> Record:
        try:
            rec = await self.read_async(None)
        except ClosedError:
            raise StopAsyncIteration from None
        assert rec is not None
        return rec

    # -- lifetime ------------------------------------------------------------------

    def fileno(self) -> int:
        """An epoll fd that is readable when records may be waiting."""
        fd: int = self._core.fileno()
        return fd

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        closed: bool = self._core.closed
        return closed

    def close(self) -> None:
        """Release the rings. Safe from another thread: a blocked read wakes
        and raises :class:`ClosedError`."""
        self._core.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
