# The perf event array reader (included by _ring.pyx): one ring per CPU,
# each a perf_event_mmap_page (its layout in _abi.pxd) and data pages mapped
# once, so records can wrap the end. read() and view() take samples through
# one round-robin walk (_next_sample); the copying reads drain every ring
# in _drain, around the C loop perf_gather.

cdef struct _PerfRing:
    fbpf_perf_mmap_page *meta    # the ring's first page: positions, data offset and size
    char *data
    uint64_t size
    uint64_t mask
    uint64_t lost
    int cpu


cdef class PerfCore(_Poller):
    """The per-CPU rings of a perf event array reader (see :mod:`fastbpf.perf`).

    ``PerfCore(fds, cpus, pages)``: *fds* are PERF_COUNT_SW_BPF_OUTPUT event
    fds (this object takes them over), *cpus* their CPU numbers, *pages* the
    data pages per ring (a power of two)."""
    cdef _PerfRing *rings
    cdef int nrings
    cdef list fds
    cdef list maps
    cdef int next_ring        # round robin, so one busy CPU cannot starve the others
    cdef char *scratch        # a record that wraps the ring's end is copied here (64 KiB)
    cdef _Scratch idx         # read_records' index arrays
    cdef _Scratch vidx        # view()'s index arrays
    cdef readonly object cpus
    cdef int _view_ring
    cdef uint64_t _view_tail

    def __cinit__(self, *args, **kwargs):
        self.rings = NULL
        self.scratch = NULL

    def __init__(self, fds, cpus, uint64_t pages):
        cdef int i
        cdef _Mapping m
        cdef uint64_t off, sz
        cdef fbpf_perf_mmap_page *meta
        self.fds = []
        self.maps = []
        self.idx = _Scratch()
        self.vidx = _Scratch()
        self.cpus = tuple(int(c) for c in cpus)
        self._init_poller("perf reader")
        n = len(fds)
        self.rings = <_PerfRing *>PyMem_Malloc(sizeof(_PerfRing) * max(n, 1))
        if self.rings == NULL:
            raise MemoryError()
        memset(self.rings, 0, sizeof(_PerfRing) * max(n, 1))
        self.nrings = 0
        for i in range(n):
            fd = fds[i]
            self.fds.append(fd)
            # Read-write: a read-only perf mapping puts the ring in overwrite
            # mode, where the kernel never waits for data_tail.
            # (the kernel does not copy perf mappings into a fork child)
            m = _map(int(fd), (1 + pages) * _PAGE, PROT_READ | PROT_WRITE, 0,
                     f"perf ring of CPU {self.cpus[i]}", False)
            self.maps.append(m)
            meta = <fbpf_perf_mmap_page *>m.addr
            off = rd64(&meta.data_offset)
            sz = rd64(&meta.data_size)
            if sz == 0:     # kernels before 4.1 leave these 0
                off, sz = _PAGE, pages * _PAGE
            self.rings[i].meta = meta
            self.rings[i].data = m.addr + off
            self.rings[i].size = sz
            self.rings[i].mask = sz - 1
            self.rings[i].cpu = self.cpus[i]
            self.nrings = i + 1
            self._watch(int(fd), EPOLLIN, i)
        # a perf record's size is a u16: this holds any record
        self.scratch = <char *>PyMem_Malloc(1 << 16)
        if self.scratch == NULL:
            raise MemoryError()

    cdef void _teardown(self):
        _Poller._teardown(self)
        self.nrings = 0
        for fd in self.fds or ():
            fd.close()
        self.fds = []
        self.maps = []

    def __dealloc__(self):
        if self.rings != NULL:
            PyMem_Free(self.rings)
            self.rings = NULL
        if self.scratch != NULL:
            PyMem_Free(self.scratch)
            self.scratch = NULL

    def lost(self):
        """{cpu: samples lost} as the kernel reported them (PERF_RECORD_LOST)."""
        return {self.rings[i].cpu: self.rings[i].lost for i in range(self.nrings)} \
            if not self.closed else {}

    def events(self):
        """The perf event FDs, one per ring (owned by this object)."""
        return list(self.fds)

    def lost_array(self):
        """Lost-sample counts, one per ring (in ``cpus`` order)."""
        cdef int i
        return [self.rings[i].lost for i in range(self.nrings)]

    cdef inline const char *_rec(self, _PerfRing *r, uint64_t pos, uint16_t *sizep) noexcept nogil:
        """Pointer to the record at *pos*, contiguous: in place, or copied
        into the scratch buffer when it wraps the ring's end. (Records are
        8-aligned and the ring a multiple of 8: the header never wraps.)"""
        cdef const char *p = r.data + (pos & r.mask)
        cdef uint16_t size = <uint16_t>(ld64(p) >> 48)
        cdef uint64_t first
        sizep[0] = size
        if (pos & r.mask) + size <= r.size:
            return p
        first = r.size - (pos & r.mask)
        memcpy(self.scratch, p, first)
        memcpy(self.scratch + first, r.data, size - first)
        return self.scratch

    cdef inline void _set_tail(self, _PerfRing *r, uint64_t tail) noexcept nogil:
        # Pairs with the kernel's smp_load_acquire of data_tail before it
        # reuses the space (perf_output_begin).
        rel64(&r.meta.data_tail, tail)

    # -- the round-robin walk of read() and view() ------------------------------

    cdef uint64_t _skip_to_sample(self, _PerfRing *r, uint64_t head) noexcept nogil:
        """Consume the records before ring *r*'s first sample (counting the
        LOST ones) and return its tail: at that sample, or at *head*."""
        cdef uint64_t tail = rd64(&r.meta.data_tail), start = tail
        cdef uint16_t size
        cdef const char *p
        while tail < head:
            # records are 8-aligned and the ring a multiple of 8: the type
            # never wraps, the rest of a record may
            if ld32(r.data + (tail & r.mask)) == PERF_RECORD_SAMPLE:
                break
            p = self._rec(r, tail, &size)
            if ld32(p) == PERF_RECORD_LOST:
                r.lost += ld64(p + 16)
            if size == 0:       # a corrupt header: give up the rest of the ring
                tail = head
                break
            tail += size
        if tail != start:
            self._set_tail(r, tail)
        return tail

    cdef int _next_sample(self, uint64_t *tailp, uint64_t *headp) noexcept nogil:
        """From ``next_ring`` round robin (so one busy CPU cannot starve the
        others), the first ring with a sample ready: its index, with *tailp
        at the sample and *headp its head; -1 when no ring has one. Records
        before the sample are consumed on the way. The caller moves
        ``next_ring`` past the ring it takes from."""
        cdef int k, i
        cdef uint64_t head, tail
        cdef _PerfRing *r
        for k in range(self.nrings):
            i = (self.next_ring + k) % self.nrings
            r = &self.rings[i]
            head = acq64(&r.meta.data_head)
            tail = self._skip_to_sample(r, head)
            if tail < head:
                tailp[0] = tail
                headp[0] = head
                return i
        return -1

    def read(self, timeout=None):
        """One sample, copied (a :class:`Record` with ``.cpu``), or None on timeout."""
        cdef int i
        cdef _PerfRing *r
        cdef uint64_t head, tail
        cdef uint16_t size
        cdef const char *p
        deadline = _deadline(timeout)
        self._enter()
        try:
            self._check_not_held()
            while True:
                i = self._next_sample(&tail, &head)
                if i >= 0:
                    r = &self.rings[i]
                    p = self._rec(r, tail, &size)
                    out = _record(p + 12, rd32(p + 8), r.cpu)
                    self._set_tail(r, tail + size)
                    self.next_ring = (i + 1) % self.nrings
                    return out
                if not self._wait(deadline):
                    return None
        finally:
            self._leave()

    cdef Py_ssize_t _drain(self, Py_ssize_t maxn, Py_ssize_t itemsize, char *out,
                           int32_t *cpu_out, char *vdata, uint64_t vcap, int64_t *voffs,
                           int64_t *vsizes, bint *short, Py_ssize_t need=0,
                           const uint32_t *spans=NULL, int nspans=0) noexcept nogil:
        """Walk every ring from its tail, copy up to maxn samples, count lost
        records, advance the tails.

        With *itemsize* > 0 the first itemsize bytes of each sample go to
        ``out + n * itemsize``; with 0 each sample is packed into *vdata*
        (room for *vcap* bytes) at an 8-aligned offset (``voffs``, size in
        ``vsizes``; the padding is zeroed). *cpu_out* (the CPU of each
        sample) may be NULL."""
        cdef Py_ssize_t got, j
        cdef int k, i, cpu
        cdef _PerfRing *r
        cdef const char *data
        cdef uint64_t head, tail, mask, rsize, off, h, vtotal = 0, step
        cdef uint16_t size
        cdef uint32_t rtype, rawsz
        cdef const char *p
        cdef Py_ssize_t n = 0
        short[0] = False
        for k in range(self.nrings):
            if n >= maxn:
                break
            i = (self.next_ring + k) % self.nrings
            r = &self.rings[i]
            data = r.data
            mask = r.mask
            rsize = r.size
            cpu = r.cpu
            head = acq64(&r.meta.data_head)
            tail = rd64(&r.meta.data_tail)
            while tail < head and n < maxn:
                if itemsize:
                    # the common records in one tight loop; the rest below
                    got = perf_gather(data, mask, rsize, &tail, head, out + n * itemsize,
                                      itemsize, <uint32_t>need, spans, nspans, maxn - n)
                    if cpu_out != NULL:
                        for j in range(n, n + got):
                            cpu_out[j] = cpu
                    n += got
                    if tail >= head or n >= maxn:
                        break
                off = tail & mask
                p = data + off
                h = ld64(p)
                size = <uint16_t>(h >> 48)
                if size == 0:
                    break
                if off + size > rsize:
                    p = self._rec(r, tail, &size)
                rtype = <uint32_t>h
                if rtype == PERF_RECORD_SAMPLE:
                    rawsz = ld32(p + 8)
                    if itemsize:
                        if rawsz < <uint32_t>need:
                            if n == 0:
                                tail += size     # drop it; the caller raises
                            short[0] = True
                            break
                        if nspans == 1:
                            copy_small(out + n * itemsize + spans[1], p + 12 + spans[0], spans[2])
                        else:
                            copy_spans(out + n * itemsize, p + 12, spans, nspans)
                    else:
                        step = _align8(rawsz)
                        if vtotal + step > vcap:
                            break
                        if step:
                            (<uint64_t *>(vdata + vtotal + step - 8))[0] = 0
                            copy_small(vdata + vtotal, p + 12, rawsz)
                        voffs[n] = <int64_t>vtotal
                        vsizes[n] = rawsz
                        vtotal += step
                    if cpu_out != NULL:
                        cpu_out[n] = cpu
                    n += 1
                elif rtype == PERF_RECORD_LOST:
                    r.lost += ld64(p + 16)
                tail += size
            self._set_tail(r, tail)
            if short[0]:
                break
        if self.nrings:
            self.next_ring = (self.next_ring + 1) % self.nrings
        return n

    cdef uint64_t _pending(self):
        cdef uint64_t total = 0
        cdef int i
        for i in range(self.nrings):
            total += acq64(&self.rings[i].meta.data_head) - rd64(&self.rings[i].meta.data_tail)
        return total

    def read_fixed(self, dtype, max_records=None, timeout=None, bint with_cpus=False, out=None,
                   fields=None):
        """Up to *max_records* samples as a new structured array (copied),
        or into *out* (returns a slice of it); with *fields*, only those
        fields; with *with_cpus* also the CPU of each, as (array, cpus)."""
        cdef Py_ssize_t maxn, cap, n, itemsize, need
        cdef bint short = False
        cdef cnp.ndarray out_arr, cpus, spans
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
            while True:
                # A sample takes at least 8 (header) + 4 (size) + itemsize bytes.
                cap = <Py_ssize_t>(self._pending() // <uint64_t>(12 + need))
                if maxn >= 0 and cap > maxn:
                    cap = maxn
                if cap == 0 and self._pending() >= 12:
                    cap = 1    # one sample shorter than the dtype: reach it, to raise
                if cap:
                    out_arr = _np.empty(cap, dt) if out is None else out
                    cpus = _np.empty(cap if with_cpus else 0, _np.int32)
                    with nogil:
                        n = self._drain(cap, itemsize, <char *>out_arr.data,
                                        <int32_t *>cpus.data if with_cpus else NULL,
                                        NULL, 0, NULL, NULL, &short, need, sp, nspans)
                    if n == 0 and short:
                        raise ValueError(f"a perf sample is smaller than dtype {dtype} needs "
                                         f"({need} bytes); the sample was dropped")
                    if n:
                        if n < len(out_arr):
                            out_arr = out_arr[:n]
                        return (out_arr, cpus[:n]) if with_cpus else out_arr
                elif self._pending():
                    self._drain_lost()   # only LOST (or other) records: count them
                if not self._wait(deadline):
                    out_arr = _np.empty(0, dt) if out is None else out[:0]
                    return (out_arr, _np.empty(0, _np.int32)) if with_cpus else out_arr
        finally:
            self._leave()

    cdef void _drain_lost(self) noexcept nogil:
        """Consume leading non-sample records (LOST) of every ring."""
        cdef int i
        for i in range(self.nrings):
            self._skip_to_sample(&self.rings[i], acq64(&self.rings[i].meta.data_head))

    def read_records(self, max_records=None, timeout=None):
        """Variable-size samples, copied: a :class:`RecordBatch` with ``cpus``."""
        cdef Py_ssize_t maxn = _max_records(max_records), n, cap
        cdef cnp.npy_intp total
        cdef uint64_t pend
        cdef bint short = False
        cdef cnp.ndarray data, offs, sizes, cpus
        deadline = _deadline(timeout)
        self._enter()
        try:
            self._check_not_held()
            while True:
                pend = self._pending()
                # a sample takes >= 16 bytes (header, size, padding), and its
                # packed copy no more than the ring bytes it occupied
                cap = <Py_ssize_t>(pend // 16)
                if maxn >= 0 and cap > maxn:
                    cap = maxn
                if cap:
                    data = _np.empty(<cnp.npy_intp>pend, _np.uint8)
                    self.idx.reserve(cap)
                    offs = self.idx.offs
                    sizes = self.idx.sizes
                    cpus = self.idx.cpus
                    with nogil:
                        n = self._drain(cap, 0, NULL, <int32_t *>cpus.data, <char *>data.data, pend,
                                        <int64_t *>offs.data, <int64_t *>sizes.data, &short)
                    if n:
                        total = <cnp.npy_intp>((<int64_t *>offs.data)[n - 1]
                                               + _align8((<int64_t *>sizes.data)[n - 1]))
                        return RecordBatch(data[:total], _head_copy(offs, n), _head_copy(sizes, n),
                                           _head_copy(cpus, n))
                elif pend:
                    self._drain_lost()
                if not self._wait(deadline):
                    return RecordBatch(_np.empty(0, _np.uint8), _np.empty(0, _np.int64),
                                       _np.empty(0, _np.int64), _np.empty(0, _np.int32))
        finally:
            self._leave()

    # -- zero-copy views: one ring, one contiguous run ---------------------------

    def view_begin(self, dtype=None, max_records=None, timeout=None, head_dtype=None):
        """A zero-copy batch from one CPU's ring: the records up to the ring's
        end (a record that wraps it comes alone, copied). With *dtype*, a
        strided structured array over samples of one size; with
        *head_dtype*, a RecordBatch with its samples' heads gathered in the
        scan. Nothing is consumed until :meth:`view_end`."""
        cdef Py_ssize_t maxn = _max_records(max_records), n, itemsize = 0
        cdef int k, i
        cdef _PerfRing *r
        cdef const char *data
        cdef uint64_t head, tail, start, pos, stride, mask, rsize, off, h, lim
        cdef uint16_t size
        cdef uint32_t rawsz
        cdef const char *p
        cdef Py_ssize_t cap
        cdef int64_t *po = NULL
        cdef int64_t *ps = NULL
        cdef bint fixed
        cdef bytes copy
        cdef bint unbounded = maxn < 0
        cdef bint short = False
        cdef char *hp = NULL
        cdef uint32_t hsize = 0
        hdt = _head_dtype(dtype, head_dtype)
        if hdt is not None:
            hsize = <uint32_t>hdt.itemsize
        if unbounded:
            maxn = 1 << 62
        dt = None if dtype is None else _plain_dtype(dtype)
        fixed = dt is not None
        if fixed:
            itemsize = dt.itemsize
        deadline = _deadline(timeout)
        self._enter()
        try:
            self._check_not_held()
            while True:
                i = self._next_sample(&tail, &head)
                if i >= 0:
                    r = &self.rings[i]
                    data = r.data
                    mask = r.mask
                    rsize = r.size
                    start = tail
                    p = data + (tail & mask)
                    size = <uint16_t>(ld64(p) >> 48)
                    if (tail & mask) + size > rsize:
                        # the first sample wraps: hand it out alone, copied
                        # (the whole record, so the layout matches the other
                        # perf views: the sample at offset 12). Built with
                        # the C API: this path must stay as cheap as a run.
                        p = self._rec(r, tail, &size)
                        rawsz = ld32(p + 8)
                        # (itemsize is 0 without dtype, hsize 0 without head)
                        if rawsz < <uint32_t>itemsize + hsize:
                            self._set_tail(r, tail + size)
                            raise ValueError(f"a perf sample is smaller than "
                                             f"{f'dtype {dt}' if fixed else f'head dtype {hdt}'}; "
                                             f"the sample was dropped")
                        copy = PyBytes_FromStringAndSize(p, size)
                        if fixed:
                            batch = _view(copy, PyBytes_AS_STRING(copy) + 12, dt, 1, 1, itemsize, False)
                        else:
                            batch = RecordBatch(_view(copy, PyBytes_AS_STRING(copy), _U8, 1, size, 1, False),
                                                _full_i64(1, 12), _full_i64(1, rawsz),
                                                _full_i32(1, r.cpu),
                                                None if hdt is None else
                                                _np.frombuffer(copy, hdt, 1, 12).copy())
                        self._hold(i, tail + size)
                        return self._lend(batch)
                    # a run of samples up to the ring's end: the ring is
                    # mapped once, so the run must stop there even when no
                    # record straddles it (the next one is at offset 0)
                    lim = start - (start & mask) + rsize
                    if unbounded and lim - start > _VIEW_BYTES:
                        lim = start + _VIEW_BYTES     # see _VIEW_BYTES
                    n = 0
                    pos = tail
                    stride = size
                    if not fixed:
                        # every sample takes >= 16 bytes: this bounds the count
                        cap = min(maxn, <Py_ssize_t>((min(head, lim) - tail) // 16) + 1)
                        self.vidx.reserve(cap, True)
                        offs_a = self.vidx.offs
                        sizes_a = self.vidx.sizes
                        po = <int64_t *>cnp.PyArray_DATA(<cnp.ndarray>offs_a)
                        ps = <int64_t *>cnp.PyArray_DATA(<cnp.ndarray>sizes_a)
                        maxn = cap
                    if not fixed:
                        heads = None
                        if hdt is not None:
                            heads = _np.empty(maxn, hdt)
                            hp = <char *>cnp.PyArray_DATA(<cnp.ndarray>heads)
                        n = perf_collect(data, mask, start, lim, head, &pos, po, ps, maxn,
                                         hp, hsize, &short)
                        if n == 0 and short:
                            self._set_tail(r, pos + <uint16_t>(ld64(data + (pos & mask)) >> 48))
                            raise ValueError(f"a perf sample is smaller than head dtype {hdt}; "
                                             f"the sample was dropped")
                    else:
                        while pos < head and n < maxn:
                            p = data + (pos & mask)
                            prefetch_ahead(p)
                            h = ld64(p)
                            size = <uint16_t>(h >> 48)
                            if pos + size > lim or <uint32_t>h != PERF_RECORD_SAMPLE or size != stride:
                                break
                            if ld32(p + 8) < <uint32_t>itemsize:
                                if n == 0:
                                    self._set_tail(r, pos + size)
                                    raise ValueError(f"a perf sample is smaller than dtype {dt}; "
                                                     f"the sample was dropped")
                                break
                            # The stride, not the loaded size (equal here): the
                            # next load's address then does not wait for this
                            # one's data.
                            pos += stride
                            n += 1
                    base_p = data + (start & mask)
                    self._hold(i, pos)
                    if fixed:
                        return self._lend(_view(self.maps[i], <char *>base_p + 12, dt, 1, n,
                                                stride, False))
                    buf = _view(self.maps[i], <char *>base_p, _U8, 1, <cnp.npy_intp>(pos - start), 1, False)
                    return self._lend(RecordBatch(buf, offs_a[:n], sizes_a[:n], _full_i32(n, r.cpu),
                                                  None if hdt is None else heads[:n]))
                if not self._wait(deadline):
                    self._hold(-1, 0)
                    if fixed:
                        return self._lend(_np.empty(0, dt))
                    return self._lend(RecordBatch(_np.empty(0, _np.uint8), _np.empty(0, _np.int64),
                                       _np.empty(0, _np.int64), _np.empty(0, _np.int32),
                                       None if hdt is None else _np.empty(0, hdt)))
        finally:
            self._leave()

    cdef void _hold(self, int ring, uint64_t tail):
        self.held = True
        self._view_ring = ring
        self._view_tail = tail
        self.busy += 1          # released by view_end()
        if ring >= 0:
            self.next_ring = (ring + 1) % self.nrings

    def view_end(self):
        """Consume the samples of the open view() batch."""
        if not self.held:
            return
        self.held = False
        self._release_view()
        try:
            # (a forked child has no rings mapped, and leaves the parent's alone)
            if self._view_ring >= 0 and self.nrings and self.gen == fork_gen:
                self._set_tail(&self.rings[self._view_ring], self._view_tail)
        finally:
            self._leave()




def _perf_mmap_page_layout():
    """{field: byte offset} of the perf_event_mmap_page fields declared in
    _abi.pxd, as this module was compiled (tests/test_abi.py compares them
    with the kernel's BTF)."""
    cdef fbpf_perf_mmap_page pg
    cdef char *base = <char *>&pg
    return {"version": <char *>&pg.version - base,
            "compat_version": <char *>&pg.compat_version - base,
            "data_head": <char *>&pg.data_head - base,
            "data_tail": <char *>&pg.data_tail - base,
            "data_offset": <char *>&pg.data_offset - base,
            "data_size": <char *>&pg.data_size - base}
