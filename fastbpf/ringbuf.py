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
  A structured array from ``view(dtype=...)`` becomes an empty, read-only
  array when the block exits (numpy offers no way to make reads of an array
  raise, and copying on exit would cost the copy the view exists to avoid).
  Arrays taken from either inside the block (a column, one record) are
  numpy views of the ring like any other: ``.copy()`` what you keep.
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
* Fork: a reader or writer belongs to the process that opened it. In a
  forked child every call raises RuntimeError: the kernel does not map perf
  rings into a child at all, and a child reading or writing the parent's
  rings would move their positions under the parent. ``close()`` in the
  child releases the child's copies only. Open a new reader in the child.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _ring
from ._reader import BaseReader, check_map
from ._ring import Record, RecordBatch
from .enums import MapType

__all__ = ["Reader", "UserWriter", "Record", "RecordBatch"]


class Reader(BaseReader):
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
        fd = check_map(map, MapType.RINGBUF, "ringbuf.Reader")
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
        fd = check_map(map, MapType.USER_RINGBUF, "ringbuf.UserWriter")
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
        it) and optionally *shape* (that many elements). A sample takes
        ``8 + round_up(size, 8)`` bytes of ring. Raises
        :class:`BlockingIOError` when the ring has no room within *timeout*
        seconds (default 0: don't wait; None: wait until the program drains;
        signal handlers run meanwhile, so Ctrl-C ends the wait).
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
