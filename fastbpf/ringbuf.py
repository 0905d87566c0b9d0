"""Reading BPF ring buffers and writing user ring buffers.

:class:`Reader` consumes a ``BPF_MAP_TYPE_RINGBUF`` map, the ring every CPU's
programs share (``bpf_ringbuf_output`` / ``bpf_ringbuf_reserve``)::

    r = ringbuf.Reader(events_map)
    rec = r.read(timeout=1.0)                 # one record (bytes), or None
    arr = r.read_batch(dtype=event_dtype, max_records=4096, timeout=1.0)
    with r.view(dtype=event_dtype) as batch:  # zero-copy, ring advanced on exit
        total += batch["bytes"].sum()

:class:`UserWriter` produces into a ``BPF_MAP_TYPE_USER_RINGBUF`` map that a
program drains with ``bpf_user_ringbuf_drain``.

Semantics shared with :class:`fastbpf.perf.Reader`:

* ``timeout=None`` blocks, ``0`` polls, a number waits at most that many
  seconds. On timeout ``read()`` returns ``None`` and ``read_batch()`` an
  empty result; nothing raises :class:`TimeoutError`. The GIL is released
  while waiting.
* What is copied. ``read()`` and ``read_batch()`` copy: the consumer position
  advances before they return, after which the kernel may overwrite the
  records, so a result that outlives the call must own its data. ``view()``
  is the zero-copy form: the batch points into the ring and the ring advances
  only when the ``with`` block exits (also by an exception). A
  :class:`RecordBatch` from ``view()`` is released when the block exits:
  reading its records afterwards raises ValueError (``len()`` still works).
  A structured array from ``view(dtype=...)`` cannot be released: don't keep
  it past the block (it stays readable memory, but the kernel reuses it).
  Without ``max_records`` a view batch ends after about 2 MiB of ring, so
  the consumer's pass over it runs in cache.
* ``RecordBatch.as_array(header_dtype, out=...)`` gathers the common prefix
  of variable-size records (an event header, say) into one array in a single
  C pass; with ``out`` it reuses an array instead of allocating.
  ``view(head=header_dtype)`` gathers it during the scan itself
  (``batch.heads``), and ``read_batch(dtype=header_dtype)`` copies only it.
* ``read_batch(dtype=...)`` gives a structured array; each record must hold at
  least ``dtype.itemsize`` bytes (longer ones are cut to it; a shorter one
  raises ValueError and is dropped). ``read_batch()`` without a dtype gives a
  :class:`RecordBatch` (one buffer, per-record offsets and sizes).
* ``close()`` from another thread wakes a blocked read, which raises
  :class:`~fastbpf.errors.ClosedError`; iteration then simply ends.
* ``fileno()`` is an epoll fd for selectors; ``read_async()``,
  ``read_batch_async()`` and ``async for`` use the running loop's
  ``add_reader`` on it (no threads).
* One consumer at a time: a reader is not meant to be read from two threads
  at once (closing from another thread is fine).
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Iterator

import numpy as np

from . import _core, _ring
from ._ring import Record, RecordBatch
from .enums import MapType
from .errors import ClosedError

__all__ = ["Reader", "UserWriter", "Record", "RecordBatch"]


def _check_map(m: Any, want: MapType, who: str) -> int:
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


class _View:
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


class _BaseReader:
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
             dtype: Any = None, head: Any = None) -> _View:
        """Zero-copy batch: ``with r.view(...) as batch:``.

        ``batch`` points into the ring's memory (read-only) and is valid only
        inside the block; the records are consumed when the block exits.
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
        return _View(self._core, (dtype, max_records, timeout, head))

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
        got: np.ndarray | RecordBatch = await self._async(
            lambda: self.read_batch(dtype, max_records, 0), timeout, lambda r: len(r) == 0)
        return got

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
        return int(self._core.fileno())

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return bool(self._core.closed)

    def close(self) -> None:
        """Release the rings. Safe from another thread: a blocked read wakes
        and raises :class:`ClosedError`."""
        self._core.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Reader(_BaseReader):
    """Consumer of a ``BPF_MAP_TYPE_RINGBUF`` map.

    ``Reader(map)`` maps the consumer page read-write and the producer page
    and data area (mapped twice by the kernel) read-only. Records come in ring
    order, the order of the ``bpf_ringbuf_reserve``/``output`` calls across
    all CPUs; a record still being written (busy bit) stops the scan until it
    is committed, and discarded records are skipped.

    ``view(dtype=...)`` returns the longest run of ready records that share one
    size as a strided structured array (stride ``8 + round_up(size, 8)``,
    offset 8 past the first header): the double mapping makes every run
    contiguous. A record of another size or a discarded one ends the run; the
    next ``view()`` continues there.
    """

    def __init__(self, map: Any) -> None:
        fd = _check_map(map, MapType.RINGBUF, "ringbuf.Reader")
        self._core = _ring.RingbufCore(fd, int(map.max_entries))

    @property
    def size(self) -> int:
        """The data area's size in bytes (the map's max_entries)."""
        return int(self._core.size)

    @property
    def pending(self) -> int:
        """Bytes produced but not yet consumed (headers included)."""
        return int(self._core.pending)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.size} bytes"
        return f"<ringbuf.Reader {state}>"


class UserWriter:
    """Producer for a ``BPF_MAP_TYPE_USER_RINGBUF`` map (user space to BPF).

    ::

        w = ringbuf.UserWriter(m)
        buf = w.reserve(16)              # a writable uint8 view into the ring
        buf[:8] = np.frombuffer(np.uint64(42).tobytes(), np.uint8)
        w.submit(buf)                    # or w.discard(buf)
        w.write(b"payload")              # reserve + copy + submit

    The producer page and the data area are mapped read-write. A reserved
    sample carries the busy bit until it is submitted; submit clears it with
    a release store, so the kernel sees the payload before the length.
    Samples are delivered in reservation order: an unsubmitted one holds up
    the ones after it. One producer at a time (no locking).
    """

    def __init__(self, map: Any) -> None:
        fd = _check_map(map, MapType.USER_RINGBUF, "ringbuf.UserWriter")
        self._core = _ring.UserRingCore(fd, int(map.max_entries))

    @property
    def size(self) -> int:
        """The data area's size in bytes."""
        return self._core.size

    @property
    def free(self) -> int:
        """Bytes free for samples (each takes 8 + round_up(size, 8))."""
        return self._core.free

    def reserve(self, size: int | None = None, *, dtype: Any = None, shape: int | None = None,
                timeout: float | None = 0) -> np.ndarray:
        """Reserve a sample and return a writable numpy view of it.

        Give *size* in bytes (a ``uint8`` array), or *dtype* (a 0-d array of
        it) and optionally *shape* (that many elements). Raises
        :class:`BlockingIOError` when the ring has no room within *timeout*
        seconds (default 0: don't wait; None: wait until the program drains).
        """
        if dtype is not None:
            dt = np.dtype(dtype)
            nbytes = dt.itemsize * (1 if shape is None else int(shape))
            if size is not None and size != nbytes:
                raise ValueError(f"size {size} does not match dtype {dt} x {shape or 1}")
            return self._core.reserve(nbytes, dt, shape, timeout)
        if size is None:
            raise TypeError("reserve() needs a size or a dtype")
        return self._core.reserve(int(size), None, None, timeout)

    def submit(self, sample: np.ndarray) -> None:
        """Hand a reserved sample to the kernel."""
        self._core.commit(sample, False)

    def discard(self, sample: np.ndarray) -> None:
        """Give a reserved sample back unused (the kernel skips it)."""
        self._core.commit(sample, True)

    def write(self, data: Any, timeout: float | None = 0) -> None:
        """Reserve, copy *data* (any bytes-like object or array), submit."""
        src = np.frombuffer(memoryview(data).cast("B"), np.uint8) if not isinstance(
            data, np.ndarray) else np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        buf = self.reserve(len(src), timeout=timeout)
        buf[:] = src
        self.submit(buf)

    def fileno(self) -> int:
        """An epoll fd, readable (EPOLLOUT of the ring) when space frees up."""
        return self._core.fileno()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._core.closed

    def close(self) -> None:
        """Unmap the ring and close the fds (outstanding reservations stay
        busy: the kernel stops at them)."""
        self._core.close()

    def __enter__(self) -> "UserWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ringbuf.UserWriter {'closed' if self.closed else f'{self.size} bytes'}>"
