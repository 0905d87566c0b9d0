# Included by _core.pyx: the Program hot path (BPF_PROG_TEST_RUN).
#
# ProgramBase holds the fd as a C int and does the whole test run in C; the
# Python class fastbpf.programs.Program derives from it and adds loading,
# pinning and info, as fastbpf.maps.Map does over MapBase.
#
# A test run is a benchmark driver as much as a test tool: one run of a small
# XDP program costs about 1 us in the kernel, so every 100 ns spent around the
# system call shows. So:
#
# * the output buffers are plain malloc blocks owned by the result, sized for
#   the worst case (the program may grow the packet); the numpy arrays over
#   them are made only when .data / .ctx is read, with exactly the length the
#   kernel reported and the result as their base: no bytes are copied, and a
#   loop that only reads retval pays for no array at all;
# * the result of the previous call is reused, buffers and all, when nobody
#   holds it any more (the DESIGN pattern for per-CPU arrays);
# * the GIL is held for a single short run (releasing and taking it back
#   costs more than the run) and released for repeated or sleepable runs.
#
# There is one general attribute set-up and system call path (_do_run), used
# by ProgramBase.test_run, the module-level test_run and the raw
# prog_test_run; _run_simple is the benchmark driver's call (a packet, once,
# default sizes) without the general set-up, and gives back anything else.

cimport cython
from libc.stdlib cimport malloc, free
from cpython.exc cimport PyErr_Occurred, PyErr_Clear

cdef extern from "Python.h":
    # Unchecked: _u32_arg looks at the error itself to name the argument.
    unsigned long long _as_ull_unchecked "PyLong_AsUnsignedLongLong"(object) noexcept


# How BPF_PROG_TEST_RUN treats a program type (Program passes one to _bind).
cdef enum:
    RUN_NORMAL = 0      # the kernel repeats the program itself and times it
    RUN_ONCE = 1        # raw_tp, tracing, struct_ops, lsm: one run a call, untimed
    RUN_SYSCALL = 2     # once a call, and the kernel writes the context back

RUN_KIND_NORMAL = RUN_NORMAL
RUN_KIND_ONCE = RUN_ONCE
RUN_KIND_SYSCALL = RUN_SYSCALL


@cython.freelist(8)
cdef class TestRunResult:
    """The outcome of :meth:`fastbpf.Program.test_run`.

    ``retval``: the program's return value (the kernel's u32).
    ``data``: the output packet (for flow dissectors: the flow keys) as a
    uint8 numpy array over the buffer the kernel wrote; empty when the
    program type has no output data.
    ``ctx``: the output context as a uint8 array, or None.
    ``duration_ns``: the kernel's figure: the mean time of one repetition as
    the kernel measured it, 0 for program types the kernel does not time
    (raw tracepoint, tracing, struct_ops, syscall).
    """

    cdef readonly uint32_t retval
    cdef readonly uint32_t duration_ns
    cdef char *_dbuf
    cdef char *_cbuf
    cdef Py_ssize_t _dcap, _ccap        # malloc'd sizes of the two buffers
    cdef uint32_t _dlen, _clen          # bytes the kernel wrote into them
    cdef uint32_t _dsize_out, _csize_out  # sizes the kernel reported
    cdef bint _has_data, _has_ctx       # the buffers hold this run's output
    cdef object _data, _ctx

    __test__ = False  # not a pytest class, despite the name

    def __init__(self, retval=0, data=None, ctx=None, duration_ns=0):
        self.retval = retval
        self._data = _EMPTY if data is None else data
        self._ctx = ctx
        self.duration_ns = duration_ns

    @property
    def data(self):
        """The output data (uint8 array, written by the kernel)."""
        if self._data is None:
            self._data = _wrap(self, self._dbuf, self._dlen) if self._has_data else _EMPTY
        return self._data

    @property
    def ctx(self):
        """The output context (uint8 array), or None."""
        if self._ctx is None and self._has_ctx:
            self._ctx = _wrap(self, self._cbuf, self._clen)
        return self._ctx

    def __iter__(self):
        return iter((self.retval, self.data, self.ctx, self.duration_ns))

    def __repr__(self):
        ctx = self.ctx
        c = "None" if ctx is None else f"<{len(ctx)} bytes>"
        return (f"TestRunResult(retval={self.retval}, data=<{len(self.data)} bytes>, "
                f"ctx={c}, duration_ns={self.duration_ns})")

    def __reduce__(self):
        return (TestRunResult, (self.retval, self.data, self.ctx, self.duration_ns))

    def __dealloc__(self):
        # Arrays over the buffers hold a reference to this object, so the
        # buffers outlive every view of them.
        free(self._dbuf)
        free(self._cbuf)


cdef cnp.npy_intp _zero = 0
cdef object _EMPTY = cnp.PyArray_EMPTY(1, &_zero, cnp.NPY_UINT8, 0)
_EMPTY.flags.writeable = False


cdef object _wrap(TestRunResult owner, char *buf, uint32_t n):
    cdef cnp.npy_intp dim = n
    cdef cnp.ndarray arr = cnp.PyArray_SimpleNewFromData(1, &dim, cnp.NPY_UINT8, buf)
    cnp.set_array_base(arr, owner)
    return arr


cdef uint32_t _u32_arg(object v, str name) except? 0xFFFFFFFF:
    """*v* as a u32 argument of the kernel's, or an error naming *name*."""
    cdef unsigned long long x
    if PyLong_CheckExact(v):
        x = _as_ull_unchecked(v)   # OverflowError below 0 or above 2**64-1
        # ULL: a bare 0xFFFFFFFF makes Cython compare as Python ints (an
        # allocation per call).
        if x <= 0xFFFFFFFFULL and not (x == <unsigned long long>-1 and PyErr_Occurred()):
            return <uint32_t>x
        PyErr_Clear()
    elif isinstance(v, bool) or not hasattr(v, "__index__"):
        raise TypeError(f"{name} must be an integer, not {type(v).__name__}")
    else:
        n = v.__index__()
        if 0 <= n <= 0xFFFFFFFF:
            return <uint32_t>n
    raise OverflowError(f"{name} {v} is out of range: the kernel takes 0..4294967295")


cdef Py_ssize_t _size_arg(object v, str name) except -2:
    """An output size: None -> -1 (the default), else a u32."""
    if v is None:
        return -1
    return _u32_arg(v, name)


cdef int _out_buf(char **buf, Py_ssize_t *cap, Py_ssize_t want) except -1:
    """Make *buf* (a result's malloc block of *cap* bytes) hold *want*."""
    if buf[0] != NULL and cap[0] >= want:
        return 0
    free(buf[0])
    buf[0] = <char *>malloc(want if want > 0 else 1)
    if buf[0] == NULL:
        cap[0] = 0
        raise MemoryError(f"cannot allocate a {want}-byte test_run output buffer")
    cap[0] = want
    return 0


cdef inline void *_in_ptr(object obj, Py_buffer *view, bint *held, Py_ssize_t *n,
                          bint writable) except? NULL:
    # numpy arrays and bytes are read directly: the buffer protocol costs
    # ~50 ns a call, which shows against a ~1 us run.
    if not writable and cnp.PyArray_CheckExact(obj) \
            and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>obj):
        n[0] = cnp.PyArray_NBYTES(<cnp.ndarray>obj)
        return cnp.PyArray_DATA(<cnp.ndarray>obj)
    if not writable and PyBytes_CheckExact(obj):
        n[0] = PyBytes_GET_SIZE(obj)
        return PyBytes_AS_STRING(obj)
    PyObject_GetBuffer(obj, view, PyBUF_SIMPLE | (PyBUF_WRITABLE if writable else 0))
    held[0] = True
    n[0] = view.len
    return view.buf


cdef TestRunResult _do_run(int prog_fd, object data_in, object ctx_in, uint32_t repeat,
                           Py_ssize_t data_out_size, Py_ssize_t ctx_out_size, uint32_t flags,
                           uint32_t cpu, uint32_t batch_size, int run_kind,
                           bint release_gil, TestRunResult res, object data_out,
                           object ctx_out, ProgramBase owner):
    """One test run (or, for RUN_ONCE/RUN_SYSCALL kinds, *repeat* calls).

    Output goes into *data_out* / *ctx_out* when given (caller buffers,
    the raw form), else into *res*'s malloc blocks. *data_out_size* -1
    means ``len(data_in) + 512``, 0 no output; *ctx_out_size* -1 means
    ``len(ctx_in)``. For RUN_SYSCALL the context is copied into the result
    before every call and the kernel writes its changes back into the copy.
    *owner* (or None) names the program in errors.
    """
    cdef Py_buffer dib, cib, dob, cob
    cdef bint have_d = False, have_c = False, have_do = False, have_co = False
    cdef Py_ssize_t dlen = 0, clen = 0, olen
    cdef void *cptr = NULL
    cdef fbpf_test_run_attr a
    cdef long r = 0
    cdef int code = 0
    cdef uint32_t calls = 1, i
    cdef uint64_t total = 0
    memset(&a, 0, sizeof(a))
    a.prog_fd = <uint32_t>prog_fd
    if run_kind != RUN_NORMAL:
        # The kernel takes no repeat count for these: issue *repeat* calls.
        calls = repeat if repeat > 1 else 1
        repeat = 0
    try:
        if data_in is not None:
            a.data_in = _ptr(_in_ptr(data_in, &dib, &have_d, &dlen, False))
            a.data_size_in = <uint32_t>dlen
            if data_out_size < 0:
                data_out_size = dlen + 512
        elif data_out_size < 0:
            data_out_size = 0
        if data_out is not None:
            PyObject_GetBuffer(data_out, &dob, PyBUF_SIMPLE | PyBUF_WRITABLE)
            have_do = True
            if dob.len:   # size 0 means "no limit" to the kernel: pass no buffer
                a.data_out = _ptr(dob.buf)
                a.data_size_out = <uint32_t>dob.len
        elif data_out_size > 0:
            _out_buf(&res._dbuf, &res._dcap, data_out_size)
            a.data_out = _ptr(res._dbuf)
            a.data_size_out = <uint32_t>data_out_size
        if ctx_in is not None:
            cptr = _in_ptr(ctx_in, &cib, &have_c, &clen, False)
            if run_kind == RUN_SYSCALL:
                # The kernel writes the context back into ctx_in: never into
                # the caller's object, always into the result's own copy.
                if ctx_out_size >= 0:
                    raise ValueError(f"{_prog_what(owner, prog_fd)}: syscall programs write their context back "
                                     f"into a copy of ctx (returned as .ctx); "
                                     f"ctx_out_size cannot be set")
                _out_buf(&res._cbuf, &res._ccap, clen)
                a.ctx_in = _ptr(res._cbuf)
                ctx_out_size = 0
            else:
                a.ctx_in = _ptr(cptr)
                if ctx_out_size < 0:
                    # RUN_ONCE kinds write no context out (and the kernel
                    # refuses a ctx_out for them): none unless asked for.
                    ctx_out_size = clen if run_kind == RUN_NORMAL else 0
            a.ctx_size_in = <uint32_t>clen
        elif ctx_out_size < 0:
            ctx_out_size = 0
        if ctx_out is not None:
            PyObject_GetBuffer(ctx_out, &cob, PyBUF_SIMPLE | PyBUF_WRITABLE)
            have_co = True
            if cob.len:
                a.ctx_out = _ptr(cob.buf)
                a.ctx_size_out = <uint32_t>cob.len
        elif ctx_out_size > 0:
            _out_buf(&res._cbuf, &res._ccap, ctx_out_size)
            a.ctx_out = _ptr(res._cbuf)
            a.ctx_size_out = <uint32_t>ctx_out_size
        a.repeat = repeat
        a.flags = flags
        a.cpu = cpu
        a.batch_size = batch_size
        olen = a.data_size_out
        if calls == 1 and run_kind != RUN_SYSCALL and not release_gil and repeat <= 1:
            r = _bpf(BPF_PROG_TEST_RUN, &a, sizeof(a))
            if r < 0:
                code = errno
            total = a.duration
        else:
            with nogil:
                for i in range(calls):
                    if run_kind == RUN_SYSCALL and a.ctx_in:
                        memcpy(res._cbuf, cptr, clen)
                    a.data_size_out = <uint32_t>olen   # the kernel rewrote it
                    a.duration = 0
                    r = _bpf(BPF_PROG_TEST_RUN, &a, sizeof(a))
                    if r < 0:
                        code = errno
                        break
                    total += a.duration
    finally:
        if have_d:
            PyBuffer_Release(&dib)
        if have_c:
            PyBuffer_Release(&cib)
        if have_do:
            PyBuffer_Release(&dob)
        if have_co:
            PyBuffer_Release(&cob)
    if r < 0:
        raise _test_run_error(code, a, data_in, run_kind, _prog_what(owner, prog_fd))
    res.retval = a.retval
    res.duration_ns = <uint32_t>(total // calls)
    res._dsize_out = a.data_size_out
    res._csize_out = a.ctx_size_out
    # The kernel reports the full output size; it wrote at most the buffer.
    res._has_data = data_out is None and data_out_size > 0
    res._dlen = min(a.data_size_out, <uint32_t>data_out_size) if res._has_data else 0
    if run_kind == RUN_SYSCALL and a.ctx_in:
        res._has_ctx = True
        res._clen = <uint32_t>clen
    else:
        res._has_ctx = ctx_out is None and ctx_out_size > 0
        res._clen = min(a.ctx_size_out, <uint32_t>ctx_out_size) if res._has_ctx else 0
    res._data = None
    res._ctx = None
    return res


cdef int _run_simple(int prog_fd, object data, uint32_t repeat, uint32_t flags, uint32_t cpu,
                     uint32_t batch_size, TestRunResult res, ProgramBase owner) except -1:
    """The common test run, a packet as a contiguous numpy array or bytes,
    once, default output sizes, no context: what _do_run does for it,
    without its general set-up (about 10 ns of a ~1.2 us call, which shows
    in a benchmark driver's loop). Returns 0, having done nothing, for any
    other *data*; errors go through the same _test_run_error."""
    cdef fbpf_test_run_attr a
    cdef const char *p
    cdef Py_ssize_t n
    cdef long r
    if cnp.PyArray_CheckExact(data) and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>data):
        p = <const char *>cnp.PyArray_DATA(<cnp.ndarray>data)
        n = cnp.PyArray_NBYTES(<cnp.ndarray>data)
    elif PyBytes_CheckExact(data):
        p = PyBytes_AS_STRING(data)
        n = PyBytes_GET_SIZE(data)
    else:
        return 0
    if n > 0xFFFFFFFFLL - 512:
        return 0        # over the kernel's u32 sizes: _do_run, as before
    _out_buf(&res._dbuf, &res._dcap, n + 512)
    memset(&a, 0, sizeof(a))
    a.prog_fd = <uint32_t>prog_fd
    a.data_in = _ptr(p)
    a.data_size_in = <uint32_t>n
    a.data_out = _ptr(res._dbuf)
    a.data_size_out = <uint32_t>(n + 512)
    a.repeat = repeat
    a.flags = flags
    a.cpu = cpu
    a.batch_size = batch_size
    r = _bpf(BPF_PROG_TEST_RUN, &a, sizeof(a))
    if r < 0:
        raise _test_run_error(errno, a, data, RUN_NORMAL, _prog_what(owner, prog_fd))
    res.retval = a.retval
    res.duration_ns = a.duration
    res._dsize_out = a.data_size_out
    res._csize_out = a.ctx_size_out
    res._has_data = True
    res._dlen = min(a.data_size_out, <uint32_t>(n + 512))
    res._has_ctx = False
    res._clen = 0
    res._data = None
    res._ctx = None
    return 1


cdef str _prog_what(ProgramBase owner, int fd):
    return owner._what() if owner is not None else f"fd {fd}"


cdef object _test_run_error(int code, fbpf_test_run_attr a, object data_in, int run_kind,
                            str what):
    hint = None
    if code == ENOSPC:
        hint = (f"the output is {a.data_size_out} bytes of data and {a.ctx_size_out} "
                f"of ctx; pass a larger data_out_size / ctx_out_size")
    elif code == EINVAL:
        if run_kind == RUN_NORMAL and data_in is None:
            hint = ("this program type runs on a packet: pass data= (bytes or a uint8 "
                    "array; at least 14 bytes for Ethernet-based types)")
        elif run_kind != RUN_NORMAL and data_in is not None:
            hint = "raw tracepoint, tracing, struct_ops and syscall programs take ctx=, not data="
    return _err(code, "program test_run", what, hint)


def test_run(int prog_fd, data_in, ctx_in=None, uint32_t repeat=1,
             Py_ssize_t data_out_size=-1, Py_ssize_t ctx_out_size=-1, uint32_t flags=0,
             uint32_t cpu=0, uint32_t batch_size=0, int run_kind=RUN_NORMAL,
             bint release_gil=False):
    """One BPF_PROG_TEST_RUN on *prog_fd*; returns a :class:`TestRunResult`.

    *data_in* and *ctx_in* are contiguous buffers or None. *data_out_size*
    -1 means ``len(data_in) + 512`` (room for a program that grows the
    packet), 0 no output data; *ctx_out_size* -1 means ``len(ctx_in)``.
    *run_kind* is RUN_KIND_NORMAL, RUN_KIND_ONCE or RUN_KIND_SYSCALL (see
    :meth:`ProgramBase.test_run`). The GIL is released during the call when
    *release_gil* is true or the call repeats.
    """
    return _do_run(prog_fd, data_in, ctx_in, repeat, data_out_size, ctx_out_size, flags,
                   cpu, batch_size, run_kind, release_gil,
                   TestRunResult.__new__(TestRunResult), None, None, None)


def prog_test_run(int prog_fd, data_in=None, data_out=None, ctx_in=None, ctx_out=None,
                  uint32_t repeat=0, uint32_t flags=0, uint32_t cpu=0, uint32_t batch_size=0):
    """BPF_PROG_TEST_RUN into the caller's buffers, with the GIL released.

    The raw form of :func:`test_run`. Returns ``(retval, data_size_out,
    ctx_size_out, duration_ns)`` with the sizes the kernel reported.
    """
    cdef TestRunResult res = _do_run(prog_fd, data_in, ctx_in, repeat, 0, 0, flags, cpu,
                                     batch_size, RUN_NORMAL, True,
                                     TestRunResult.__new__(TestRunResult),
                                     data_out, ctx_out, None)
    return res.retval, res._dsize_out, res._csize_out, res.duration_ns


cdef class ProgramBase:
    """The fd-holding core of :class:`fastbpf.Program` (do not use directly).

    It keeps the descriptor as a C int next to its :class:`FD` owner, so
    ``test_run`` reaches the system call without a Python attribute lookup;
    the Python class adds everything else.
    """
    cdef int _cfd
    cdef int _run_kind
    cdef object _fdobj
    cdef TestRunResult _last     # the result returned last (see test_run)

    def __cinit__(self, *args, **kwargs):
        self._cfd = -1

    def _bind(self, FD fd, int run_kind):
        """Take ownership of *fd*; *run_kind* is RUN_KIND_NORMAL (the kernel
        repeats and times the program), RUN_KIND_ONCE or RUN_KIND_SYSCALL."""
        if run_kind not in (RUN_NORMAL, RUN_ONCE, RUN_SYSCALL):
            raise ValueError(f"unknown run kind {run_kind}")
        self._fdobj = fd
        self._cfd = fd.fd
        self._run_kind = run_kind

    @property
    def _fd(self):
        """The FD object owning the descriptor."""
        return self._fdobj

    @property
    def fd(self):
        """The program's file descriptor; raises ClosedError once closed."""
        if self._cfd < 0:
            self._closed()
        return self._cfd

    @property
    def closed(self):
        """True once closed."""
        return self._cfd < 0

    cdef int _closed(self) except -1:
        raise ClosedError(f"program {getattr(self, 'name', '')!r} is closed")

    def close(self):
        """Release the program's fd (attachments made through links stay
        until their links close)."""
        self._cfd = -1
        self._last = None
        if self._fdobj is not None:
            self._fdobj.close()

    # Unbound (a method descriptor, not a Cython function object): a bound
    # prog.test_run is then a builtin method that CPython calls directly,
    # ~20 ns less a call. The clinic format keeps inspect.signature working.
    @cython.binding(False)
    @cython.embedsignature.format("clinic")
    def test_run(self, data=None, ctx=None, repeat=1, *, data_out_size=None,
                 ctx_out_size=None, uint32_t flags=0, uint32_t cpu=0, uint32_t batch_size=0):
        """Run the program on *data* and/or *ctx* in the kernel (BPF_PROG_TEST_RUN).

        *data* (the packet) and *ctx* (the context struct, e.g. ``struct
        xdp_md`` or the u64 arguments of a raw tracepoint) are bytes-like or
        numpy arrays. The kernel runs the program *repeat* times.

        Returns a :class:`TestRunResult`: ``retval``, ``data`` (the output
        packet as a uint8 array over the buffer the kernel wrote, no copy),
        ``ctx`` (the output context, or None) and ``duration_ns`` (the
        kernel's mean time per run; 0 where the kernel does not time runs).

        The output buffer has room for ``len(data) + 512`` bytes unless
        *data_out_size* says otherwise; ctx out defaults to ``len(ctx)``.
        Every argument goes to the kernel, which refuses (EINVAL) what a
        program type cannot do.

        Raw tracepoint, tracing, struct_ops and syscall programs are run once
        per system call (their kernel side takes no repeat count); *repeat*
        then issues that many calls and the result is the last one's. A
        syscall program's context is copied and the kernel writes its
        changes back into the copy, returned as ``ctx``.
        """
        cdef TestRunResult res = self._last
        if self._cfd < 0:
            self._closed()
        # Reuse the previous result, buffers and all, when nobody else holds
        # it (refcount 2: self._last and `res`), nor an array over its
        # buffers (each holds a reference to it).
        if res is None or Py_REFCNT(res) != 2:
            res = TestRunResult.__new__(TestRunResult)
            self._last = res
        cdef uint32_t rep = _u32_arg(repeat, "repeat")
        if ctx is None and data_out_size is None and ctx_out_size is None \
                and rep <= 1 and self._run_kind == RUN_NORMAL:
            if _run_simple(self._cfd, data, rep, flags, cpu, batch_size, res, self):
                return res
        return _do_run(self._cfd, data, ctx, rep,
                       _size_arg(data_out_size, "data_out_size"),
                       _size_arg(ctx_out_size, "ctx_out_size"),
                       flags, cpu, batch_size, self._run_kind, False, res, None, None, self)

    cdef str _what(self):
        name = getattr(self, "name", None)
        return f"program {name!r}" if name else f"program (fd {self._cfd})"
