# The machinery every ring kind shares (included by _ring.pyx): mappings,
# scratch arrays, the records and batches handed out, the poller (waiting,
# closing, lending view() batches, fork checks) and dtype layouts.

PAGE_SIZE = _mmap.PAGESIZE
cdef uint64_t _PAGE = _mmap.PAGESIZE
cdef uint64_t _EVENTFD_TAG = 0xFFFFFFFFFFFFFFFFULL
cdef object _U8 = _np.dtype(_np.uint8)
cdef object _I64 = _np.dtype(_np.int64)
cdef object _I32 = _np.dtype(_np.int32)


# ---------------------------------------------------------------------------
# fork

cdef extern from *:
    """
    #include <pthread.h>
    /* Bumped in the child of every fork(2) (os.fork, multiprocessing, or C):
       an object made in another generation belongs to an ancestor. */
    static volatile unsigned long fbpf_fork_gen = 0;
    static void fbpf_on_fork_child(void) { fbpf_fork_gen++; }
    static int fbpf_watch_forks(void) { return pthread_atfork(NULL, NULL, fbpf_on_fork_child); }
    """
    unsigned long fork_gen "fbpf_fork_gen"
    int watch_forks "fbpf_watch_forks"()

if watch_forks() != 0:
    raise ImportError("fastbpf._ring: pthread_atfork failed")


# ---------------------------------------------------------------------------
# memory

cdef class _Mapping:
    """One mmap(2) region. Unmapped when the last reference goes, so a numpy
    view of ring memory can never outlive the memory it points at."""
    cdef char *addr
    cdef size_t length
    cdef unsigned long gen      # fork generation that mapped it
    cdef bint inherited         # a fork child gets it too (perf rings: not, VM_DONTCOPY)

    def __dealloc__(self):
        # In a fork child, a region the kernel did not copy is not ours: its
        # address may since hold something else, so leave it alone.
        if self.addr != NULL and (self.inherited or self.gen == fork_gen):
            munmap(self.addr, self.length)
        self.addr = NULL


cdef _Mapping _map(int fd, size_t length, int prot, long offset, str what,
                   bint inherited=True):
    cdef void *p = mmap(NULL, length, prot, MAP_SHARED, fd, offset)
    if p == MAP_FAILED:
        raise _bpf_error(errno, "mmap", what)
    cdef _Mapping m = _Mapping.__new__(_Mapping)
    m.addr = <char *>p
    m.length = length
    m.gen = fork_gen
    m.inherited = inherited
    return m


cdef object _view(object base, char *p, object dtype, int nd, cnp.npy_intp n,
                  cnp.npy_intp stride, bint writable):
    """A numpy array over raw memory owned by *base* (kept alive by the array)."""
    cdef cnp.npy_intp dims[1]
    cdef cnp.npy_intp strides[1]
    dims[0] = n
    strides[0] = stride
    Py_INCREF(dtype)  # NewFromDescr steals it
    arr = _np_new(<PyObject *>dtype, nd, dims, strides, p,
                  NPY_ARRAY_WRITEABLE if writable else 0)
    Py_INCREF(base)   # SetBaseObject steals it
    _np_set_base(arr, <PyObject *>base)
    return arr


cdef inline cnp.npy_intp _align8(cnp.npy_intp n) noexcept nogil:
    return (n + 7) & ~7


cdef cnp.ndarray _full_i64(cnp.npy_intp n, int64_t v):
    cdef cnp.ndarray a = _np.empty(n, _np.int64)
    cdef int64_t *p = <int64_t *>a.data
    cdef cnp.npy_intp i
    for i in range(n):
        p[i] = v
    return a


cdef cnp.ndarray _full_i32(cnp.npy_intp n, int32_t v):
    cdef cnp.ndarray a = _np.empty(n, _np.int32)
    cdef int32_t *p = <int32_t *>a.data
    cdef cnp.npy_intp i
    for i in range(n):
        p[i] = v
    return a


cdef class _Scratch:
    """Index arrays reused from call to call: the record count is only known
    after the pass, so the pass fills these, sized for the upper bound. A
    fresh half-megabyte array per call faults in a page per 4 KiB when first
    written (glibc gives big blocks back to the kernel on free), which on
    the benchmark VM cost more than the scan itself.

    The copying readers hand out exact-size copies. A view() batch is lent
    slices of the arrays instead (``lent=True``): they are reused only when
    nothing outside holds them any more, so a batch the caller kept is never
    overwritten."""
    cdef cnp.ndarray offs, sizes, cpus

    cdef int reserve(self, cnp.npy_intp cap, bint lent=False) except -1:
        offs = self.offs
        sizes = self.sizes
        # when free, 2 references each: the attribute and the local
        if offs is None or offs.shape[0] < cap or \
                (lent and (Py_REFCNT(offs) != 2 or Py_REFCNT(sizes) != 2)):
            cap = max(cap, 1024)
            self.offs = _np.empty(cap, _np.int64)
            self.sizes = _np.empty(cap, _np.int64)
            self.cpus = _np.empty(cap, _np.int32)
        return 0


cdef cnp.ndarray _head_copy(cnp.ndarray src, cnp.npy_intp n):
    """A new array holding the first n items of 1-d *src*."""
    cdef cnp.ndarray out = _np.empty(n, src.dtype)
    memcpy(out.data, src.data, n * src.itemsize)
    return out


# ---------------------------------------------------------------------------
# records handed out

class Record(bytes):
    """One record, copied out of the ring: a ``bytes`` with a ``cpu``.

    ``cpu`` is the CPU whose perf ring held the sample, or ``None`` for a BPF
    ring buffer (one ring for all CPUs). ``data`` is the record itself (kept
    for symmetry with readers that wrap the payload).
    """

    cpu = None

    @property
    def data(self):
        """The payload (this object: a Record is its own bytes)."""
        return self

    def __repr__(self):
        return f"Record(cpu={self.cpu}, {bytes.__repr__(self)})"


cdef object _record(const char *p, Py_ssize_t n, object cpu):
    rec = Record(PyBytes_FromStringAndSize(p, n))
    if cpu is not None:
        rec.cpu = cpu
    return rec


cdef class RecordBatch:
    """Variable-size records: one buffer and where each record lies in it.

    Record ``i`` is ``data[offsets[i] : offsets[i] + sizes[i]]`` (a numpy
    ``uint8`` view). For perf readers ``cpus[i]`` is the CPU of record ``i``
    (``None`` for ring buffers). ``len(batch)`` is the number of records;
    indexing and iteration give the records as ``uint8`` arrays, without
    copies.

    A batch from ``view()`` points into the ring itself and is valid only
    inside the ``with`` block: when the block ends the batch is released, and
    reading its records afterwards raises ValueError (``len()`` still works).
    One from ``read_batch()`` owns a packed copy. Records start 8-byte
    aligned in ``data`` (relative to its start) -- except in a perf
    ``view()`` batch, where samples sit where the kernel put them, at 4 mod 8
    (after the header and the u32 size). ``as_array(header_dtype)`` reads a
    fixed-layout prefix of every record (an event header) either way, in one
    C pass; ``view(head=header_dtype)`` gathers it during the scan instead
    (:attr:`heads`).
    """
    cdef object _data, _offsets, _sizes, _cpus, _heads
    cdef bint _released
    cdef Py_ssize_t _n_released

    def __init__(self, data, offsets, sizes, cpus=None, heads=None):
        if heads is not None and len(heads) != len(offsets):
            raise ValueError(f"{len(offsets)} records but {len(heads)} heads")
        self._data = data
        self._offsets = offsets
        self._sizes = sizes
        self._cpus = cpus
        self._heads = heads

    cdef int _check(self) except -1:
        if self._released:
            raise ValueError("this view() batch was used after its with block: its records "
                             "are consumed and the ring may have reused their memory")
        return 0

    cdef void _release(self):
        """End of a view() block: drop the ring memory and the reader's
        reusable index arrays."""
        self._n_released = len(self._offsets)
        self._released = True
        self._data = self._offsets = self._sizes = self._cpus = None

    @property
    def data(self):
        """The bytes the records lie in (``uint8``)."""
        self._check()
        return self._data

    @property
    def offsets(self):
        """Where each record starts in :attr:`data` (``int64``)."""
        self._check()
        return self._offsets

    @property
    def sizes(self):
        """Each record's size in bytes (``int64``)."""
        self._check()
        return self._sizes

    @property
    def cpus(self):
        """The CPU of each record (``int32``; perf readers), else None."""
        self._check()
        return self._cpus

    @property
    def heads(self):
        """The first bytes of every record as an array of the ``head=``
        dtype given to ``view()``, copied while the ring was scanned (so it
        stays valid after the ``with`` block); None when not asked for."""
        return self._heads

    def __len__(self):
        # the count stays known after a view() block; the records do not
        return self._n_released if self._released else len(self._offsets)

    def __getitem__(self, i):
        self._check()
        cdef Py_ssize_t n = len(self._offsets)
        cdef Py_ssize_t k = i
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise IndexError(f"record {i} out of range ({n} records)")
        o = int(self._offsets[k])
        return self._data[o:o + int(self._sizes[k])]

    def __iter__(self):
        self._check()
        data = self._data
        for o, s in zip(self._offsets.tolist(), self._sizes.tolist()):
            yield data[o:o + s]

    def tolist(self):
        """The records as a list of ``bytes`` (copies)."""
        return [bytes(r) for r in self]

    def as_array(self, dtype, out=None):
        """The records as a structured array of *dtype*: a zero-copy strided
        view when the records are evenly spaced and such a view is aligned
        for *dtype*, else an (aligned) copy made in one C loop; with *out* (a
        contiguous 1-d array of *dtype*, reused across batches to spare an
        allocation) always a copy into ``out[:len(self)]``, which is returned.
        Every record must hold at least ``dtype.itemsize`` bytes (longer ones
        are cut), so for records that share a fixed header and differ after
        it, ``as_array(header_dtype)`` is that header of every record. For a
        batch from ``view(head=header_dtype)`` that is :attr:`heads`, returned
        as is (or copied into *out*)."""
        dt = _plain_dtype(dtype)
        cdef Py_ssize_t n = len(self), bad
        cdef Py_ssize_t itemsize = dt.itemsize
        if itemsize <= 0:
            raise ValueError(f"dtype {dt} has no size")
        if out is not None:
            if not isinstance(out, _np.ndarray) or out.ndim != 1 or not out.flags.c_contiguous \
                    or not out.flags.writeable:
                raise ValueError("out must be a writable, contiguous 1-d numpy array")
            if out.dtype != dt:
                raise ValueError(f"out has dtype {out.dtype}, not {dt}")
            if len(out) < n:
                raise ValueError(f"out has room for {len(out)} records, the batch holds {n}")
        if self._heads is not None and self._heads.dtype == dt:
            # gathered during the scan (view(head=...)): no second pass
            if out is None:
                return self._heads
            out[:n] = self._heads
            return out if len(out) == n else out[:n]
        self._check()
        if n == 0:
            return _np.empty(0, dt) if out is None else out[:0]
        cdef cnp.ndarray data = _np.ascontiguousarray(self.data).reshape(-1).view(_np.uint8)
        cdef cnp.ndarray offs = _np.ascontiguousarray(self.offsets, _np.int64)
        cdef cnp.ndarray sizes = _np.ascontiguousarray(self.sizes, _np.int64)
        if len(sizes) != n:
            raise ValueError(f"{n} offsets but {len(sizes)} sizes")
        cdef const int64_t *po = <const int64_t *>offs.data
        cdef int64_t stride = po[1] - po[0] if n > 1 else itemsize
        cdef Py_ssize_t i
        cdef bint even = stride >= itemsize
        for i in range(2, n):
            if po[i] - po[i - 1] != stride:
                even = False
                break
        cdef cnp.ndarray res
        cdef Py_ssize_t align = dt.alignment
        # (an unaligned view would send every numpy operation on it through
        # numpy's buffered copies: one aligned copy here is cheaper)
        if out is None and even and isinstance(self.data, _np.ndarray) \
                and <char *>data.data == <char *>cnp.PyArray_DATA(<cnp.ndarray>self.data) \
                and (<size_t>data.data + <size_t>po[0]) % <size_t>align == 0 and stride % align == 0:
            # evenly spaced: every record still gets its bounds checked
            # (below, on the copy path's terms) before a view is handed out
            # the last record ends inside data (division: no overflow)
            span = len(data) - po[0] - itemsize
            if po[0] >= 0 and span >= 0 and (n - 1) <= span // stride \
                    and int(sizes.min()) >= itemsize:
                return _np.ndarray((n,), dt, buffer=self.data, offset=int(po[0]),
                                   strides=(stride,))
        res = _np.empty(n, dt) if out is None else out
        cdef uint64_t dlen = len(data)
        with nogil:
            bad = gather_prefix(<const char *>data.data, dlen, po,
                                <const int64_t *>sizes.data, n, <char *>cnp.PyArray_DATA(res), itemsize)
        if bad >= 0:
            o, sz = int(po[bad]), int((<const int64_t *>sizes.data)[bad])
            if sz < itemsize:
                raise ValueError(f"record {bad} has {sz} bytes, fewer than dtype {dt} "
                                 f"({itemsize} bytes)")
            raise ValueError(f"record {bad} (offset {o}) lies outside the batch's data")
        return res if out is None or len(out) == n else out[:n]

    def __repr__(self):
        if self._released:
            return f"<RecordBatch {self._n_released} records, released (its view() block ended)>"
        return f"<RecordBatch {len(self._offsets)} records, {int(self._sizes.sum()) if len(self._sizes) else 0} bytes>"


# ---------------------------------------------------------------------------
# waiting and closing

cdef class _Poller:
    """An epoll set plus an eventfd that close() writes, and the rules for
    closing a reader another thread may be blocked in.

    Every public operation runs between _enter() and _leave(). close() marks
    the object closed and wakes any waiter; the resources go when the last
    operation in flight leaves (or at once if none is)."""
    cdef int epfd
    cdef int evfd
    cdef readonly bint closed
    cdef int busy
    cdef bint held           # a view() batch is open: its records are not consumed yet
    cdef object vbatch       # what the open view() lent out, invalidated by view_end()
    cdef str what
    cdef unsigned long gen   # fork generation of the process that opened it
    cdef long pid            # that process (for the message)

    def __cinit__(self, *args, **kwargs):
        self.epfd = -1
        self.evfd = -1

    cdef int _init_poller(self, str what) except -1:
        self.what = what
        self.gen = fork_gen
        self.pid = getpid()
        self.epfd = _own_fd(epoll_create1(EPOLL_CLOEXEC), "epoll_create1")
        self.evfd = _own_fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd")
        self._watch(self.evfd, EPOLLIN, _EVENTFD_TAG)
        return 0

    cdef int _watch(self, int fd, uint32_t events, uint64_t tag) except -1:
        cdef epoll_event ev
        ev.events = events
        ev.data.u64 = tag
        if epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &ev) < 0:
            raise _bpf_error(errno, "epoll_ctl", self.what)
        return 0

    cdef int _enter(self) except -1:
        if self.closed:
            raise ClosedError(f"{self.what} is closed")
        if self.gen != fork_gen:
            self._forked()
        self.busy += 1
        return 0

    cdef int _forked(self) except -1:
        raise RuntimeError(
            f"{self.what} was opened by process {self.pid}; this forked child "
            f"({_os.getpid()}) cannot use it (the rings, their positions and wake-ups "
            f"belong to the parent): open a new one in the child")

    def check_owner(self):
        """Raise ClosedError once closed, RuntimeError in a forked child."""
        self._enter()
        self._leave()

    @property
    def forked(self):
        """True in a forked child of the process that opened this object:
        it can only be closed there (which leaves the parent's rings alone)."""
        return self.gen != fork_gen

    cdef void _leave(self):
        self.busy -= 1
        if self.closed and self.busy == 0:
            self._teardown()

    cdef object _lend(self, object batch):
        """Hand out a view() batch (a RecordBatch or an array); view_end()
        invalidates it."""
        self.vbatch = batch
        return batch

    cdef void _release_view(self):
        """End of a view() block: a RecordBatch is released (its records
        raise ValueError); an array becomes empty and read-only (numpy cannot
        make reads raise; see ringbuf's notes). Both in O(1): nothing is
        copied."""
        b = self.vbatch
        if b is None:
            return
        self.vbatch = None
        if isinstance(b, RecordBatch):
            (<RecordBatch>b)._release()
        else:
            _np_retire(b)

    cdef int _check_not_held(self) except -1:
        if self.held:
            raise RuntimeError(f"{self.what}: a view() batch is still open; leave its "
                               f"with block before reading again")
        return 0

    cdef void _teardown(self):
        """Release the fds; subclasses drop their mappings too."""
        if self.epfd >= 0:
            c_close(self.epfd)
            self.epfd = -1
        if self.evfd >= 0:
            c_close(self.evfd)
            self.evfd = -1

    cdef int _wait(self, object deadline) except -1:
        """Sleep in epoll_wait (GIL released) until a ring is ready, the
        deadline passes (returns 0) or close() is called (raises)."""
        cdef int ms, n, i
        cdef epoll_event evs[64]
        if deadline is None:
            ms = -1
        else:
            rem = <double>deadline - monotonic()
            ms = 0 if rem <= 0 else <int>_math.ceil(rem * 1000.0)
        with nogil:
            n = epoll_wait(self.epfd, evs, 64, ms)
        if self.closed:
            raise ClosedError(f"{self.what} was closed while waiting")
        if n < 0:
            if errno == EINTR:
                PyErr_CheckSignals()
                return 1
            raise _bpf_error(errno, "epoll_wait", self.what)
        if n == 0:
            return 0
        # Readiness is level-triggered: a ring that stays "ready" while the
        # caller cannot use what is there (no room for a large reservation)
        # must not keep a waiter past its deadline, nor spin a core.
        if deadline is not None and monotonic() >= <double>deadline:
            return 0
        return 1

    def op_enter(self):
        """Mark an operation in flight (an asyncio wait): close() then
        defers the tear-down to :meth:`op_leave`."""
        self._enter()

    def op_leave(self):
        """End an operation started by :meth:`op_enter`."""
        self._leave()

    def fileno(self):
        """The epoll fd: readable when a record may be waiting (for
        ``selectors`` and event loops)."""
        if self.closed:
            raise ClosedError(f"{self.what} is closed")
        if self.gen != fork_gen:
            self._forked()
        return self.epfd

    def close(self):
        """Close the reader. Safe from any thread: a thread blocked in a read
        wakes and gets :class:`ClosedError`. Closing twice is harmless.
        In a forked child it releases the child's copies only: the eventfd
        (shared with the parent) is not written, and nothing the parent holds
        is touched."""
        cdef uint64_t one = 1
        if self.closed:
            return
        self.closed = True
        if self.gen != fork_gen:
            # no thread of the parent runs here: nothing is in flight
            self.busy = 0
            self.held = False
            self._release_view()
            self._teardown()
            return
        if self.evfd >= 0:
            c_write(self.evfd, &one, 8)
        if self.busy == 0:
            self._teardown()

    def __dealloc__(self):
        if self.epfd >= 0:
            c_close(self.epfd)
        if self.evfd >= 0:
            c_close(self.evfd)


cdef object _deadline(object timeout):
    if timeout is None:
        return None
    t = float(timeout)
    if t != t or t < 0:
        raise ValueError(f"timeout must be None or >= 0 seconds, got {timeout!r}")
    return monotonic() + t


cdef object _plain_dtype(object dtype):
    """*dtype* as a numpy dtype, refusing dtypes that hold Python objects:
    ring bytes must never be read as object pointers."""
    dt = _np.dtype(dtype)
    if dt.hasobject:
        raise TypeError(f"dtype {dt} holds Python objects; ring records are plain bytes")
    return dt


# A view() batch without max_records stops after this many records, and
# after the record that crosses this many bytes of ring. The consumer reads
# a batch right after the scan that built it; a batch of about an L2 cache
# keeps that second pass in cache (on the benchmark machine, 1 MiB L2: 2 MiB
# batches drained 200k 72-byte records 15-20% faster than one 14 MB batch,
# and the per-batch overhead stays below 0.1 ns a record).
cdef Py_ssize_t _VIEW_BATCH = 1 << 16
cdef uint64_t _VIEW_BYTES = 2 << 20


cdef dict _LAYOUTS = {}


cdef tuple _layout(object dtype, object fields):
    """(output dtype or None, record bytes needed, spans) for *dtype* and
    *fields*, cached: a reader called in a loop with the same arguments
    skips building dtypes (a few microseconds, and code that runs cold
    after a producer has flushed the caches).

    With *fields*, only those fields of *dtype* are copied, packed into a
    smaller output dtype: one pass over the ring that writes just the
    columns the caller reads. ``spans`` is a uint32 array of (source offset,
    output offset, length) triples, adjacent fields merged. Without a
    dtype all three are None/-1/None: the layout then comes from *out*'s
    dtype.
    """
    key = (dtype, fields)
    try:
        hit = _LAYOUTS.get(key)
    except Exception:           # unhashable (a list of fields) or odd equality
        key = None
        hit = None
    if hit is not None:
        return hit
    if fields is not None:
        if dtype is None or _np.dtype(dtype).names is None:
            raise ValueError("fields= needs a structured dtype naming them")
        rec_dt = _plain_dtype(dtype)
        names = (fields,) if isinstance(fields, str) else tuple(fields)
        if not names:
            raise ValueError("fields= names no field")
        for f in names:
            if f not in rec_dt.names:
                raise ValueError(f"dtype {rec_dt} has no field {f!r}")
        out_dt = _np.dtype([(f, rec_dt.fields[f][0]) for f in names])
        triples = []
        last = None     # (no negative indexing: this module has wraparound off)
        for f in names:
            ft, src = rec_dt.fields[f][:2]
            dst = out_dt.fields[f][1]
            if last is not None and last[0] + last[2] == src and last[1] + last[2] == dst:
                last[2] += ft.itemsize
            else:
                last = [src, dst, ft.itemsize]
                triples.append(last)
        if out_dt.itemsize <= 0:
            raise ValueError(f"fields {names} have no size")
        res = (out_dt, max(a + n for a, _, n in triples),
               _np.array(triples, dtype=_np.uint32).reshape(-1))
    elif dtype is not None:
        dt = _plain_dtype(dtype)
        if dt.itemsize <= 0:
            raise ValueError(f"dtype {dt} has no size")
        res = (dt, dt.itemsize, _np.array([0, 0, dt.itemsize], dtype=_np.uint32))
    else:
        res = (None, -1, None)
    if key is not None and len(_LAYOUTS) < 256:
        _LAYOUTS[key] = res
    return res


cdef tuple _fixed_args(object dtype, object max_records, object out, object fields=None):
    """(output dtype, max records, record bytes needed, spans) for a
    fixed-size batch (see _layout), checking *out*."""
    dt, need, spans = _layout(dtype, fields)
    if out is not None:
        if not isinstance(out, _np.ndarray) or out.ndim != 1 or not out.flags.c_contiguous \
                or not out.flags.writeable:
            raise ValueError("out must be a writable, contiguous 1-d numpy array")
        if dt is not None and dt != out.dtype:
            raise ValueError(f"out has dtype {out.dtype}, not {dt}")
        if dt is None:
            dt, need, spans = _layout(out.dtype, None)
        n = len(out)
        if max_records is not None:
            n = min(n, _max_records(max_records))
        if n == 0:
            raise ValueError("out has no room")
    else:
        if dt is None:
            raise ValueError("a fixed-size read needs dtype= or out=")
        n = _max_records(max_records)
    if need >= 1 << 30:     # the copy loops compare record lengths below the flag bits
        raise ValueError(f"dtype {dt} needs {need} bytes a record; no ring record is that long")
    return dt, n, need, spans


cdef object _head_dtype(object dtype, object head):
    """view()'s *head*: a plain dtype (cached, see _layout), for variable-size
    batches only."""
    if head is None:
        return None
    if dtype is not None:
        raise ValueError("head= is for variable-size batches (no dtype=): a dtype= view "
                         "already is an array of records")
    return _layout(head, None)[0]


cdef Py_ssize_t _max_records(object max_records) except -2:
    if max_records is None:
        return -1
    cdef Py_ssize_t n = max_records
    if n <= 0:
        raise ValueError(f"max_records must be > 0, got {max_records!r}")
    return n


