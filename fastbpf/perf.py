"""Reading perf event arrays (``bpf_perf_event_output``).

A ``BPF_MAP_TYPE_PERF_EVENT_ARRAY`` holds one perf event per CPU; a program
writes a sample to the event of the CPU it runs on (``BPF_F_CURRENT_CPU``).
:class:`Reader` opens a ``PERF_COUNT_SW_BPF_OUTPUT`` event with
``PERF_SAMPLE_RAW`` on every online CPU, maps its ring (one metadata page and
``per_cpu_bytes`` of data) and stores the event fds in the map::

    p = perf.Reader(events_map, per_cpu_bytes=1 << 20)
    rec = p.read(timeout=1.0)          # rec.cpu, rec.data (bytes), or None
    arr = p.read_batch(dtype=dt, max_records=4096, timeout=1.0)
    p.lost()                           # samples the kernel dropped, per CPU

Ordering: samples of one CPU come in the order they were written; there is
no order across CPUs (each batch takes CPUs round-robin). Timeouts, copies,
``view()``, closing, ``fileno()`` and asyncio work as described in
:mod:`fastbpf.ringbuf`. Specific to perf rings:

* The rings are mapped once, so a record can wrap the ring's end; those
  records (and only those) are copied. A ``view()`` batch is one CPU's run of
  records up to the ring's end, or a single wrapping record (copied).
* The kernel pads raw samples: a sample of ``n`` bytes arrives with
  ``round_up(n + 4, 8) - 4`` bytes. ``read()`` returns them all;
  ``read_batch(dtype)`` takes the first ``dtype.itemsize`` bytes.
* When a ring is full the sample is dropped (``bpf_perf_event_output``
  returns ``-ENOSPC`` in the program) and the kernel writes a
  ``PERF_RECORD_LOST`` record with the count once there is space again;
  :meth:`Reader.lost` sums those per CPU, as the reader meets them.
"""

from __future__ import annotations

import mmap
import struct
from typing import Any

import numpy as np

from . import _core, _ring
from ._reader import BaseReader, check_map
from ._ring import Record, RecordBatch
from .cpus import online_cpus
from .enums import MapType
from .errors import BPFError, ClosedError

__all__ = ["Reader", "Record", "RecordBatch", "online_cpus"]

PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_RAW = 1 << 10


def _u32(v: int) -> bytes:
    return struct.pack("=I", v)


class Reader(BaseReader):
    """Reader of a ``BPF_MAP_TYPE_PERF_EVENT_ARRAY``: one ring per online CPU.

    *per_cpu_bytes* is each ring's data size: a power of two, at least a page
    (default 64 pages). *watermark* (bytes, 0 = off) wakes a waiting reader
    only once that much data is in a ring instead of on every sample: fewer
    wake-ups, more latency (records already there are always returned).
    *cpus* overrides the online CPUs.

    The reader puts its events into the map's per-CPU slots and takes them
    out again on :meth:`pause` and :meth:`close`. The kernel does not let
    user space read those slots back, so two readers on the same map and
    CPUs would take each other's events away: use one reader per map.
    """

    def __init__(self, map: Any, per_cpu_bytes: int | None = None, watermark: int = 0,
                 *, cpus: list[int] | None = None) -> None:
        page = mmap.PAGESIZE
        size = 64 * page if per_cpu_bytes is None else per_cpu_bytes
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
            raise TypeError(f"per_cpu_bytes must be an int, not {type(size).__name__}")
        size = int(size)
        if size < page or size & (size - 1):
            raise ValueError(f"per_cpu_bytes must be a power of two and at least the page "
                             f"size ({page}), got {size}")
        watermark = int(watermark)
        if not 0 <= watermark < size:
            raise ValueError(f"watermark must be between 0 and per_cpu_bytes - 1, got {watermark}")
        cpus = online_cpus() if cpus is None else [int(c) for c in cpus]
        if not cpus:
            raise ValueError("no CPUs to read")
        map_fd = check_map(map, MapType.PERF_EVENT_ARRAY, "perf.Reader")
        self._map_fd = _core.FD(map_fd)
        self._cpus = cpus
        self._paused = False
        self._core = None
        events: list[Any] = []
        try:
            if max(cpus) >= map.max_entries:
                raise ValueError(f"the perf event array has {map.max_entries} entries but CPU "
                                 f"{max(cpus)} needs index {max(cpus)}: create it with "
                                 f"max_entries=fastbpf.possible_cpus()")
            bits = _core.PERF_BIT_WATERMARK if watermark else 0
            for cpu in cpus:
                events.append(_core.perf_event_open(
                    PERF_TYPE_SOFTWARE, PERF_COUNT_SW_BPF_OUTPUT, pid=-1, cpu=cpu,
                    sample_period=1, sample_type=PERF_SAMPLE_RAW,
                    wakeup_events=watermark or 1, bits=bits))
            self._core = _ring.PerfCore(events, cpus, size // page)
            self._ncpus = _core.possible_cpus()
            self._install()
        except BaseException:
            if self._core is not None:
                self._core.close()
                self._remove()
            for ev in events:
                ev.close()
            self._map_fd.close()
            raise
        self.per_cpu_bytes = size
        self.watermark = watermark

    # -- the map's entries -------------------------------------------------------

    def _install(self) -> None:
        fds = self._core_fds()
        for cpu, fd in zip(self._cpus, fds):
            _core.map_update_elem(self._map_fd.fd, _u32(cpu), _u32(fd))

    def _remove(self) -> None:
        for cpu in self._cpus:
            try:
                _core.map_delete_elem(self._map_fd.fd, _u32(cpu))
            except (BPFError, ClosedError):
                pass   # already gone (ENOENT), or the map fd is closed

    def _core_fds(self) -> list[int]:
        return [fd.fd for fd in self._core_events()]

    def _core_events(self) -> list[Any]:
        events: list[Any] = self._core.events()
        return events

    def pause(self) -> None:
        """Stop the kernel writing: remove this reader's events from the map
        (programs' outputs then fail with ENOENT). Records already in the
        rings can still be read."""
        self._core.check_owner()   # closed, or a fork child: not its map slots
        self._remove()
        self._paused = True

    def resume(self) -> None:
        """Put the events back in the map after :meth:`pause`."""
        self._core.check_owner()
        self._install()
        self._paused = False

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume`."""
        return self._paused

    # -- reading -------------------------------------------------------------------

    def read_batch(self, dtype: Any = None, max_records: int | None = None,
                   timeout: float | None = None, *, with_cpus: bool = False,
                   out: np.ndarray | None = None, fields: Any = None) -> Any:
        """Up to *max_records* samples from all CPUs, copied (see
        :meth:`fastbpf.ringbuf.Reader.read_batch`, also for *out* and
        *fields*). With *dtype* (or *out*) and *with_cpus*, returns
        ``(array, cpus)``; a :class:`RecordBatch` always has ``.cpus``."""
        if dtype is None and out is None:
            if fields is not None:
                raise ValueError("fields= needs a structured dtype naming them")
            return self._core.read_records(max_records, timeout)
        return self._core.read_fixed(dtype, max_records, timeout, with_cpus, out, fields)

    def lost(self) -> np.ndarray:
        """Samples lost per CPU (index = CPU number, length = possible CPUs),
        from the PERF_RECORD_LOST records read so far."""
        out = np.zeros(self._ncpus, np.uint64)
        for cpu, n in zip(self._core.cpus, self._core.lost_array()):
            out[cpu] = n
        return out

    @property
    def cpus(self) -> tuple[int, ...]:
        """The CPUs with a ring."""
        return tuple(self._cpus)

    def close(self) -> None:
        """Remove the events from the map and release the rings. Safe from
        another thread: a blocked read wakes and raises ClosedError."""
        if self._core is None or self._core.closed:
            return
        # the map's slots hold the parent's events: a fork child leaves them
        if not self._map_fd.closed and not self._core.forked:
            self._remove()
        self._core.close()
        self._map_fd.close()

    def __repr__(self) -> str:
        if self.closed:
            return "<perf.Reader closed>"
        return f"<perf.Reader cpus={self._cpus} per_cpu_bytes={self.per_cpu_bytes}>"
