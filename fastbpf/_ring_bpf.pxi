# The BPF ring buffer reader and the user ring buffer writer (included by
# _ring.pyx): one layout (consumer page, producer page, data mapped twice)
# with the roles swapped, hence the shared base _SharedRing.

# ---------------------------------------------------------------------------
# BPF ring buffer

cdef class _SharedRing(_Poller):
    """What the ring buffer reader and the user ring buffer writer share: the
    map's fd, its two mappings (consumer page; producer page plus the data
    area mapped twice, so no record wraps) and the ring's size."""
    cdef int map_fd
    cdef _Mapping cons_map
    cdef _Mapping data_map
    cdef uint64_t mask
    cdef readonly uint64_t size

    def __cinit__(self, *args, **kwargs):
        self.map_fd = -1

    cdef int _map_ring(self, int map_fd, uint64_t size, bint consumer, str what) except -1:
        """Take over *map_fd* and map the ring. The side we play writes its
        own position page (and, for a producer, the data); the kernel
        refuses PROT_WRITE on the rest."""
        self.map_fd = map_fd
        if size == 0 or size & (size - 1) or size % _PAGE:
            raise ValueError(f"ring buffer size {size} is not a power-of-2 multiple of the page size")
        self.size = size
        self.mask = size - 1
        self._init_poller(what)
        self.cons_map = _map(map_fd, _PAGE, PROT_READ | (PROT_WRITE if consumer else 0), 0,
                             what + " consumer page")
        self.data_map = _map(map_fd, _PAGE + 2 * size, PROT_READ | (0 if consumer else PROT_WRITE),
                             _PAGE, what + " data")
        return 0

    cdef void _teardown(self):
        _Poller._teardown(self)
        if self.map_fd >= 0:
            c_close(self.map_fd)
            self.map_fd = -1
        self.cons_map = None   # unmapped once no view references it
        self.data_map = None

    def __dealloc__(self):
        if self.map_fd >= 0:
            c_close(self.map_fd)


cdef class RingbufCore(_SharedRing):
    """Consumer of a BPF_MAP_TYPE_RINGBUF map (see :mod:`fastbpf.ringbuf`).

    ``RingbufCore(map_fd, size)`` with *map_fd* an fd this object takes
    over and *size* the map's max_entries (the data area's size)."""
    cdef char *cons_page
    cdef const char *prod_page
    cdef const char *data
    cdef uint64_t cons        # consumer_pos, as read at the start of this operation
    cdef uint64_t vend        # where an open view() batch ends
    cdef _Scratch scratch     # read_records' index arrays
    cdef _Scratch vidx        # view()'s index arrays

    def __init__(self, int map_fd, uint64_t size):
        self.scratch = _Scratch()
        self.vidx = _Scratch()
        self._map_ring(map_fd, size, True, "ring buffer reader")
        self.cons_page = self.cons_map.addr
        self.prod_page = self.data_map.addr
        self.data = self.data_map.addr + _PAGE
        self.cons = acq64(self.cons_page)
        self._watch(map_fd, EPOLLIN, 0)

    @property
    def pending(self):
        """Bytes the producer has published past the consumer (headers and
        discarded records included)."""
        self._enter()
        try:
            self._sync()
            return acq64(self.prod_page) - self.cons
        finally:
            self._leave()

    cdef inline void _sync(self) noexcept nogil:
        # Start every operation from the position in the consumer page, not
        # from a cached copy: if another reader of the same map consumed
        # meanwhile, a cached position would point at records the kernel
        # may already have overwritten.
        self.cons = acq64(self.cons_page)

    cdef inline void _commit(self, uint64_t pos) noexcept nogil:
        if pos != self.cons:
            self.cons = pos
            # Pairs with the kernel's smp_load_acquire(consumer_pos) in
            # ringbuf_avail_data_sz()/space checks: everything we read from
            # the records happened before the space is handed back.
            rel64(self.cons_page, pos)

    # -- scanning ---------------------------------------------------------------
    # All scans start at self.cons, stop at a busy record, skip discarded
    # ones, and return the end position; nothing is committed here.

    cdef Py_ssize_t _scan_one(self, uint64_t *endp, uint64_t *recp, uint32_t *lenp) noexcept nogil:
        cdef uint64_t pos = self.cons, prod = acq64(self.prod_page)
        cdef uint32_t ln
        while pos < prod:
            ln = acq32(self.data + (pos & self.mask))
            if ln & RB_BUSY:
                break
            if not (ln & RB_DISCARD):
                recp[0] = pos
                lenp[0] = ln
                endp[0] = pos + rb_step(ln)
                return 1
            pos += rb_step(ln)
        endp[0] = pos
        return 0

    cdef Py_ssize_t _copy_fixed(self, char *out, Py_ssize_t itemsize, Py_ssize_t need,
                                const uint32_t *spans, int nspans, Py_ssize_t maxn,
                                uint64_t *endp, bint *short) noexcept nogil:
        endp[0] = self.cons
        return rb_gather(self.data, self.mask, self.prod_page, endp, out, itemsize,
                         <uint32_t>need, spans, nspans, maxn, short)

    cdef Py_ssize_t _collect(self, int64_t *offs, int64_t *lens, Py_ssize_t maxn,
                             uint64_t max_bytes, uint64_t *endp, char *heads, uint32_t hsize,
                             bint *short) noexcept nogil:
        """Offsets (from self.cons) and lengths of up to maxn records,
        stopping after the record that crosses max_bytes of ring; with
        *heads*, also the first *hsize* bytes of each (see rb_collect)."""
        endp[0] = self.cons
        return rb_collect(self.data, self.mask, self.prod_page, self.cons, endp, offs, lens,
                          maxn, max_bytes, heads, hsize, short)

    cdef Py_ssize_t _uniform_run(self, Py_ssize_t itemsize, Py_ssize_t maxn, uint64_t max_bytes,
                                 uint64_t *startp, uint64_t *endp, uint64_t *stridep,
                                 bint *short) noexcept nogil:
        """Leading discarded records are skipped; then the longest run of
        committed records that share one stride (a strided view), ending
        after the record that crosses max_bytes of ring."""
        cdef const char *data = self.data
        cdef const char *prodp = self.prod_page
        cdef uint64_t mask = self.mask
        cdef uint64_t pos = self.cons, prod = acq64(prodp), stride = 0
        cdef uint32_t ln
        cdef Py_ssize_t n = 0
        short[0] = False
        while n < maxn:
            if pos >= prod:
                prod = acq64(prodp)
                if pos >= prod:
                    break
            prefetch_ahead(data + (pos & mask))
            ln = acq32(data + (pos & mask))
            if ln & RB_BUSY:
                break
            if ln & RB_DISCARD:
                if n:
                    break
                pos += rb_step(ln)
                continue
            if ln < <uint32_t>itemsize:
                if n == 0:
                    short[0] = True
                break
            if n == 0:
                startp[0] = pos
                stride = rb_step(ln)
                if max_bytes < stride:
                    max_bytes = stride
                maxn = min(maxn, <Py_ssize_t>(max_bytes // stride) + (max_bytes % stride != 0))
            elif rb_step(ln) != stride:
                break
            pos += stride
            n += 1
        endp[0] = pos
        stridep[0] = stride
        if n == 0:
            startp[0] = pos
        return n

    # -- Python-facing operations ---------------------------------------------

    def read(self, timeout=None):
        """One record, copied (a :class:`Record`), or None on timeout."""
        cdef uint64_t end, rec
        cdef uint32_t ln
        deadline = _deadline(timeout)
        self._enter()
        try:
            self._check_not_held()
            self._sync()
            while True:
                if self._scan_one(&end, &rec, &ln):
                    out = _record(self.data + (rec & self.mask) + RB_HDR, ln, None)
                    self._commit(end)
                    return out
                self._commit(end)   # discarded records, if any
                if not self._wait(deadline):
                    return None
        finally:
            self._leave()

    def read_fixed(self, dtype, max_records=None, timeout=None, out=None, fields=None):
        """Up to *max_records* records as a new structured array of *dtype*
        (copied; the ring is advanced), or into *out* (returns a slice of
        it); with *fields*, only those fields. Empty on timeout."""
        cdef Py_ssize_t itemsize, maxn, n, cap, need
        cdef uint64_t end
        cdef bint short = False
        cdef cnp.ndarray out_arr, spans
        cdef const uint32_t *sp
        cdef int nspans
        dt, maxn, need, spans = _fixed_args(dtype, max_records, out, fields)
        itemsize = dt.itemsize
        sp = <const uint32_t *>spans.data
        nspans = <int>(len(spans) // 3)
        deadline = _deadline(timeout)
        self._enter()
        try:
            self._check_not_held()
            self._sync()
            while True:
                pend = acq64(self.prod_page) - self.cons
                # Every record takes at least header + need (rounded up)
                # bytes, so this bounds the count without scanning twice.
                cap = <Py_ssize_t>(pend // <uint64_t>_align8(need + RB_HDR))
                if maxn >= 0 and cap > maxn:
                    cap = maxn
                if cap == 0 and pend:
                    cap = 1
                if cap:
                    out_arr = _np.empty(cap, dt) if out is None else out
                    with nogil:
                        n = self._copy_fixed(<char *>out_arr.data, itemsize, need, sp, nspans,
                                             cap, &end, &short)
                    if n == 0 and short:
                        self._commit(end + rb_step(acq32(self.data + (end & self.mask))))
                        raise ValueError(f"a ring buffer record is smaller than dtype {dtype} needs "
                                         f"({need} bytes); the record was dropped")
                    self._commit(end)
                    if n:
                        return out_arr if n == len(out_arr) else out_arr[:n]
                if not self._wait(deadline):
                    return _np.empty(0, dt) if out is None else out[:0]
        finally:
            self._leave()

    cdef Py_ssize_t _collect_copy(self, char *dst, uint64_t dcap, int64_t *offs, int64_t *lens,
                                  Py_ssize_t maxn, uint64_t *endp) noexcept nogil:
        """Like _collect, but copies each record (8-aligned, packed) into
        *dst* (room for *dcap* bytes) in the same pass; offs are into dst."""
        cdef const char *data = self.data
        cdef const char *prodp = self.prod_page
        cdef const char *hdr
        cdef uint64_t mask = self.mask
        cdef uint64_t pos = self.cons, prod = acq64(prodp), total = 0, step
        cdef uint32_t ln
        cdef Py_ssize_t n = 0
        while n < maxn:
            if pos >= prod:
                prod = acq64(prodp)
                if pos >= prod:
                    break
            hdr = data + (pos & mask)
            ln = acq32(hdr)
            if ln & RB_BUSY:
                break
            if not (ln & RB_DISCARD):
                # the record's slot is padded to 8 bytes: copy the padding too
                step = _align8(ln)
                if total + step > dcap:
                    break
                copy_small(dst + total, hdr + RB_HDR, step)
                offs[n] = <int64_t>total
                lens[n] = ln
                total += step
                n += 1
            pos += rb_step(ln)
        endp[0] = pos
        return n

    cdef object _batch(self, Py_ssize_t maxn, bint copy, object head=None):
        """A RecordBatch over everything from cons (a packed copy, or a view
        of the ring, with *head* its records' heads); returns (batch, end)."""
        cdef uint64_t pend = acq64(self.prod_page) - self.cons, end
        # Every record takes at least its 8-byte header (zero-length ones
        # exist), so this bounds the count.
        cdef Py_ssize_t cap = <Py_ssize_t>(pend // RB_HDR), n
        cdef cnp.ndarray offs, lens, data
        cdef bint short = False
        cdef char *hp = NULL
        cdef uint32_t hsize = 0
        if maxn >= 0 and cap > maxn:
            cap = maxn
        if cap == 0:
            return None, self.cons
        if not copy:
            # The index arrays are sized for the worst case (all records
            # empty); unbounded, a full 16 MB ring would allocate (and fault
            # in) 32 MB of them per batch. A view may hold fewer records than
            # are ready, so bound them.
            if maxn < 0 and cap > _VIEW_BATCH:
                cap = _VIEW_BATCH
            self.vidx.reserve(cap, True)
            offs = self.vidx.offs
            lens = self.vidx.sizes
            heads = None
            if head is not None:
                heads = _np.empty(cap, head)
                hp = <char *>cnp.PyArray_DATA(<cnp.ndarray>heads)
                hsize = <uint32_t>head.itemsize
            with nogil:
                n = self._collect(<int64_t *>offs.data, <int64_t *>lens.data, cap,
                                  _VIEW_BYTES if maxn < 0 else <uint64_t>-1, &end,
                                  hp, hsize, &short)
            if n == 0:
                if short:
                    self._commit(end + rb_step(acq32(self.data + (end & self.mask))))
                    raise ValueError(f"a ring buffer record is smaller than head dtype {head} "
                                     f"({head.itemsize} bytes); the record was dropped")
                return None, end
            offs = offs[:n]
            lens = lens[:n]
            span = <cnp.npy_intp>(end - self.cons)
            buf = _view(self.data_map, <char *>self.data + (self.cons & self.mask), _U8, 1,
                        span, 1, False)
            return RecordBatch(buf, offs, lens, None,
                               None if heads is None else heads[:n]), end
        # Packed records take at most the ring bytes they occupied (pend,
        # headers included); the copy happens in the scanning pass.
        self.scratch.reserve(cap)
        offs = self.scratch.offs
        lens = self.scratch.sizes
        data = _np.empty(<cnp.npy_intp>pend, _np.uint8)
        with nogil:
            n = self._collect_copy(<char *>data.data, pend, <int64_t *>offs.data,
                                   <int64_t *>lens.data, cap, &end)
        if n == 0:
            return None, end
        total = <cnp.npy_intp>(_align8((<int64_t *>lens.data)[n - 1]) + (<int64_t *>offs.data)[n - 1])
        return RecordBatch(data[:total], _head_copy(offs, n), _head_copy(lens, n)), end

    def read_records(self, max_records=None, timeout=None):
        """Variable-size records, copied: a :class:`RecordBatch` (empty on
        timeout)."""
        cdef Py_ssize_t maxn = _max_records(max_records)
        deadline = _deadline(timeout)
        self._enter()
        try:
            self._check_not_held()
            self._sync()
            while True:
                b, end = self._batch(maxn, True)
                self._commit(end)
                if b is not None:
                    return b
                if not self._wait(deadline):
                    return RecordBatch(_np.empty(0, _np.uint8), _np.empty(0, _np.int64),
                                       _np.empty(0, _np.int64))
        finally:
            self._leave()

    def view_begin(self, dtype=None, max_records=None, timeout=None, head_dtype=None):
        """Start a zero-copy batch (used by ``Reader.view``): a RecordBatch
        (with *head*, its records' heads gathered in the scan), or with
        *dtype* a strided structured array, over ring memory. Nothing is
        consumed until :meth:`view_end`."""
        cdef Py_ssize_t maxn = _max_records(max_records), n, itemsize
        cdef uint64_t start, end, stride
        cdef bint short = False
        head_dtype = _head_dtype(dtype, head_dtype)
        deadline = _deadline(timeout)
        self._enter()
        try:
            self._check_not_held()
            self._sync()
            while True:
                if dtype is None:
                    b, end = self._batch(maxn, False, head_dtype)
                    if b is not None:
                        self.held = True
                        self.vend = end
                        self.busy += 1        # released by view_end()
                        return self._lend(b)
                    self._commit(end)
                else:
                    dt = _plain_dtype(dtype)
                    itemsize = dt.itemsize
                    n = self._uniform_run(itemsize, maxn if maxn >= 0 else (1 << 62),
                                          _VIEW_BYTES if maxn < 0 else <uint64_t>-1,
                                          &start, &end, &stride, &short)
                    if short:
                        self._commit(end + rb_step(acq32(self.data + (end & self.mask))))
                        raise ValueError(f"a ring buffer record is smaller than dtype {dt} "
                                         f"({itemsize} bytes); the record was dropped")
                    if n:
                        arr = _view(self.data_map, <char *>self.data + (start & self.mask) + RB_HDR,
                                    dt, 1, n, stride, False)
                        self.held = True
                        self.vend = end
                        self.busy += 1
                        return self._lend(arr)
                    self._commit(end)
                if not self._wait(deadline):
                    self.held = True
                    self.vend = self.cons
                    self.busy += 1
                    if dtype is None:
                        return self._lend(RecordBatch(
                            _np.empty(0, _np.uint8), _np.empty(0, _np.int64),
                            _np.empty(0, _np.int64), None,
                            None if head_dtype is None else _np.empty(0, head_dtype)))
                    return self._lend(_np.empty(0, _np.dtype(dtype)))
        finally:
            self._leave()

    def view_end(self):
        """Consume the records of the open view() batch."""
        if not self.held:
            return
        self.held = False
        self._release_view()
        try:
            if self.gen == fork_gen:    # a forked child leaves the parent's position alone
                self._commit(self.vend)
        finally:
            self._leave()



# ---------------------------------------------------------------------------
# user ring buffer (user space produces, a BPF program drains)

cdef class UserRingCore(_SharedRing):
    """Producer side of a BPF_MAP_TYPE_USER_RINGBUF map (see
    :class:`fastbpf.ringbuf.UserWriter`). Not thread-safe: one producer."""
    cdef const char *cons_page
    cdef char *prod_page
    cdef char *data
    cdef uint64_t prod         # our copy of producer_pos
    cdef dict outstanding      # data offset of a reserved sample -> its size

    def __init__(self, int map_fd, uint64_t size):
        self.outstanding = {}
        # Roles swapped: the kernel consumes, so the producer page and the
        # data are ours to write.
        self._map_ring(map_fd, size, False, "user ring buffer writer")
        self.cons_page = self.cons_map.addr
        self.prod_page = self.data_map.addr
        self.data = self.data_map.addr + _PAGE
        self.prod = acq64(self.prod_page)
        self._watch(map_fd, EPOLLOUT, 0)

    @property
    def free(self):
        """Bytes free for new samples (headers included)."""
        self._enter()
        try:
            return self.size - (self.prod - acq64(self.cons_page))
        finally:
            self._leave()

    def reserve(self, Py_ssize_t size, dtype=None, shape=None, timeout=0):
        """Reserve *size* bytes; returns a writable numpy view into the ring
        (uint8, or *dtype* with *shape*). Raises BlockingIOError when the
        ring has no room within *timeout* seconds (0: do not wait)."""
        cdef uint64_t total, cons
        cdef char *hdr
        cdef int64_t off
        if size <= 0:
            raise ValueError(f"a sample needs at least 1 byte, got {size}")
        if dtype is not None:
            _plain_dtype(dtype)
        total = _align8(size + RB_HDR)
        if total > self.size:
            raise ValueError(f"a {size}-byte sample cannot fit a {self.size}-byte ring buffer")
        deadline = _deadline(timeout)
        self._enter()
        try:
            while True:
                cons = acq64(self.cons_page)
                if self.size - (self.prod - cons) >= total:
                    break
                if deadline is not None and monotonic() >= <double>deadline:
                    self._full(size, total, cons)
                # EPOLLOUT says "some room", not "this much room": after a
                # wakeup that did not free enough, back off instead of
                # spinning. The wait then never fails with EINTR, so run the
                # signal handlers here (Ctrl-C, alarms): a handler that
                # raises ends the wait, as in the readers' epoll wait.
                with nogil:
                    usleep(1000)
                PyErr_CheckSignals()
                if not self._wait(deadline):
                    self._full(size, total, acq64(self.cons_page))
            hdr = self.data + (self.prod & self.mask)
            # Busy until submitted: the kernel stops at this record. The
            # release store of producer_pos publishes the busy header first
            # (pairs with smp_load_acquire in __bpf_user_ringbuf_peek).
            wr32(hdr, <uint32_t>size | RB_BUSY)
            wr32(hdr + 4, 0)
            off = <int64_t>((self.prod + RB_HDR) & self.mask)
            self.prod += total
            rel64(self.prod_page, self.prod)
            self.outstanding[off] = size
            if dtype is None:
                return _view(self.data_map, self.data + off, _U8, 1, size, 1, True)
            dt = _plain_dtype(dtype)
            if shape is None:
                if dt.itemsize != size:
                    raise ValueError(f"dtype {dt} is {dt.itemsize} bytes, not {size}")
                return _view(self.data_map, self.data + off, dt, 0, 0, 0, True)
            return _view(self.data_map, self.data + off, dt, 1, shape, dt.itemsize, True)
        finally:
            self._leave()

    cdef int _full(self, Py_ssize_t size, uint64_t total, uint64_t cons) except -1:
        raise BlockingIOError(EAGAIN, f"user ring buffer full: a {size}-byte sample takes "
                                      f"{total} bytes (8-byte header, padded to 8), "
                                      f"{self.size - (self.prod - cons)} free")

    cdef int64_t _offset_of(self, object sample) except -1:
        if not isinstance(sample, _np.ndarray):
            raise TypeError("submit/discard take the array reserve() returned")
        addr = sample.__array_interface__["data"][0]
        base = <size_t>self.data
        off = addr - base
        if off not in self.outstanding:
            raise ValueError("this array is not an outstanding reservation of this writer "
                             "(already submitted or discarded?)")
        return off

    def commit(self, sample, bint discard=False):
        """Submit (or discard) a reserved sample: clear its busy bit with a
        release store, so the kernel sees the payload before the length."""
        cdef int64_t off
        cdef uint32_t size
        self._enter()
        try:
            off = self._offset_of(sample)
            size = self.outstanding.pop(off)
            rel32(self.data + ((off - RB_HDR) & self.mask), size | (RB_DISCARD if discard else 0))
        finally:
            self._leave()

