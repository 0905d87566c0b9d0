# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The fast path of :meth:`fastbpf.Program.test_run` (BPF_PROG_TEST_RUN).

A test run is a benchmark driver as much as a test tool: one run of a small
XDP program costs about 1.2 us in the kernel, so every 100 ns spent around
the system call shows. ``_core.prog_test_run`` is the raw form (caller's
buffers, a tuple back); this module does the whole call in C instead:

* the output buffers are plain ``malloc`` blocks owned by the result, sized
  for the worst case (the program may grow the packet);
* the numpy arrays over them are made only when ``.data`` / ``.ctx`` is
  read, with exactly the length the kernel reported and the result as their
  base, so no bytes are copied and a loop that only reads ``retval`` pays
  for no array at all;
* the GIL is held for a single short run (releasing and taking it back costs
  more than the run) and released for repeated or sleepable runs.
"""

cimport cython
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE
from cpython.bytes cimport PyBytes_CheckExact, PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.errno cimport errno, EINTR, ENOSPC
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset

cimport numpy as cnp
from fastbpf._abi cimport fbpf_sys_bpf, fbpf_test_run_attr, BPF_PROG_TEST_RUN

from fastbpf.errors import ClosedError, bpf_error as _bpf_error

cnp.import_array()


@cython.freelist(8)
cdef class TestRunResult:
    """The outcome of :meth:`fastbpf.Program.test_run`.

    ``retval``: the program's return value (the kernel's u32).
    ``data``: the output packet (for flow dissectors: the flow keys) as a
    uint8 numpy array over the buffer the kernel wrote; empty when the
    program type has no output data.
    ``ctx``: the output context as a uint8 array, or None.
    ``duration_ns``: the mean time of one repetition as the kernel measured
    it (0 for program types the kernel does not time).
    """

    cdef readonly uint32_t retval
    cdef readonly uint32_t duration_ns
    cdef char *_dbuf
    cdef char *_cbuf
    cdef uint32_t _dlen, _clen
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
            self._data = _wrap(self, self._dbuf, self._dlen) if self._dbuf != NULL else _EMPTY
        return self._data

    @property
    def ctx(self):
        """The output context (uint8 array), or None."""
        if self._ctx is None and self._cbuf != NULL:
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


def test_run(int prog_fd, data_in, ctx_in=None, uint32_t repeat=1,
             Py_ssize_t data_out_size=-1, Py_ssize_t ctx_out_size=-1, uint32_t flags=0,
             uint32_t cpu=0, uint32_t batch_size=0, ctx_inout=None, bint release_gil=False):
    """One BPF_PROG_TEST_RUN; returns a :class:`TestRunResult`.

    *data_in* and *ctx_in* are contiguous buffers or None. *data_out_size*
    -1 means ``len(data_in) + 512`` (room for a program that grows the
    packet), 0 no output data; *ctx_out_size* -1 means ``len(ctx_in)``.
    *ctx_inout* is a writable buffer passed as ctx_in for program types
    whose kernel writes the context back into ctx_in (syscall programs);
    it is returned as ``ctx``. The GIL is released during the call when
    *release_gil* is true or *repeat* > 1.
    """
    return _do_run(prog_fd, data_in, ctx_in, repeat, data_out_size, ctx_out_size, flags,
                   cpu, batch_size, ctx_inout, release_gil)


cdef class ProgramBase:
    """The fd-holding core of :class:`fastbpf.Program` (do not use directly).

    It keeps the descriptor as a C int next to its :class:`fastbpf.FD`
    owner, so ``test_run`` reaches the system call without a Python
    attribute lookup; the Python class adds everything else.
    """
    cdef int _cfd
    cdef int _run_kind
    cdef object _fdobj

    def __cinit__(self, *args, **kwargs):
        self._cfd = -1

    def _bind(self, fd, int run_kind):
        """Take ownership of *fd* (an FD); *run_kind* 0 means the kernel
        repeats the program itself (see programs._run_kind)."""
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
            raise ClosedError(f"program {getattr(self, 'name', '')!r} is closed")
        return self._cfd

    @property
    def closed(self):
        """True once closed."""
        return self._cfd < 0

    def close(self):
        """Release the program's fd (attachments made through links stay
        until their links close)."""
        self._cfd = -1
        if self._fdobj is not None:
            self._fdobj.close()

    def test_run(self, data=None, ctx=None, repeat=1, *, data_out_size=None,
                 ctx_out_size=None, flags=0, cpu=0, batch_size=0):
        """Run the program on *data* and/or *ctx* in the kernel (BPF_PROG_TEST_RUN).

        *data* (the packet) and *ctx* (the context struct, e.g. ``struct
        xdp_md`` or the u64 arguments of a raw tracepoint) are bytes-like or
        numpy arrays. The kernel runs the program *repeat* times.

        Returns a :class:`TestRunResult`: ``retval``, ``data`` (the output
        packet as a uint8 array over the buffer the kernel wrote, no copy),
        ``ctx`` (the output context, or None) and ``duration_ns`` (the
        kernel's mean time per run).

        The output buffer has room for ``len(data) + 512`` bytes unless
        *data_out_size* says otherwise; ctx out defaults to ``len(ctx)``.

        Raw tracepoint, tracing, struct_ops and syscall programs are run once
        per system call (their kernel side takes no repeat count); *repeat*
        then issues that many calls, the result is the last one's and
        ``duration_ns`` the mean wall time per call seen from user space.
        A syscall program's context is copied and the kernel writes its
        changes back into the copy, returned as ``ctx``.
        """
        if self._cfd < 0:
            raise ClosedError(f"program {getattr(self, 'name', '')!r} is closed")
        if self._run_kind:
            return self._test_run_once(data, ctx, repeat, flags, cpu)
        return _do_run(self._cfd, data, ctx, repeat,
                       -1 if data_out_size is None else data_out_size,
                       -1 if ctx_out_size is None else ctx_out_size,
                       flags, cpu, batch_size, None, False)


cdef TestRunResult _do_run(int prog_fd, object data_in, object ctx_in, uint32_t repeat,
                           Py_ssize_t data_out_size, Py_ssize_t ctx_out_size, uint32_t flags,
                           uint32_t cpu, uint32_t batch_size, object ctx_inout,
                           bint release_gil):
    cdef Py_buffer dib, cib
    cdef bint have_d = False, have_c = False
    cdef Py_ssize_t dlen
    cdef fbpf_test_run_attr a
    cdef long r = 0
    cdef int code = 0
    cdef TestRunResult res = TestRunResult.__new__(TestRunResult)
    memset(&a, 0, sizeof(a))
    a.prog_fd = <uint32_t>prog_fd
    try:
        if data_in is not None:
            # numpy arrays and bytes are read directly: the buffer protocol
            # costs ~50 ns a call, which shows against a ~1.2 us run.
            if cnp.PyArray_CheckExact(data_in) and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>data_in):
                a.data_in = <uint64_t><size_t>cnp.PyArray_DATA(<cnp.ndarray>data_in)
                dlen = cnp.PyArray_NBYTES(<cnp.ndarray>data_in)
            elif PyBytes_CheckExact(data_in):
                a.data_in = <uint64_t><size_t>PyBytes_AS_STRING(data_in)
                dlen = PyBytes_GET_SIZE(data_in)
            else:
                PyObject_GetBuffer(data_in, &dib, PyBUF_SIMPLE)
                have_d = True
                a.data_in = <uint64_t><size_t>dib.buf
                dlen = dib.len
            a.data_size_in = <uint32_t>dlen
            if data_out_size < 0:
                data_out_size = dlen + 512
        if data_out_size > 0:
            res._dbuf = <char *>malloc(data_out_size)
            if res._dbuf == NULL:
                raise MemoryError()
            a.data_out = <uint64_t><size_t>res._dbuf
            a.data_size_out = <uint32_t>data_out_size
        if ctx_inout is not None:
            PyObject_GetBuffer(ctx_inout, &cib, PyBUF_SIMPLE | PyBUF_WRITABLE)
            have_c = True
            ctx_out_size = 0
        elif ctx_in is not None:
            PyObject_GetBuffer(ctx_in, &cib, PyBUF_SIMPLE)
            have_c = True
        if have_c:
            a.ctx_in = <uint64_t><size_t>cib.buf
            a.ctx_size_in = <uint32_t>cib.len
            if ctx_out_size < 0:
                ctx_out_size = cib.len
        if ctx_out_size > 0:
            res._cbuf = <char *>malloc(ctx_out_size)
            if res._cbuf == NULL:
                raise MemoryError()
            a.ctx_out = <uint64_t><size_t>res._cbuf
            a.ctx_size_out = <uint32_t>ctx_out_size
        a.repeat = repeat
        a.flags = flags
        a.cpu = cpu
        a.batch_size = batch_size
        if release_gil or repeat > 1:
            with nogil:
                r = _run(&a)
                if r < 0:
                    code = errno
        else:
            r = _run(&a)
            if r < 0:
                code = errno
    finally:
        if have_d:
            PyBuffer_Release(&dib)
        if have_c:
            PyBuffer_Release(&cib)
    if r < 0:
        hint = None
        if code == ENOSPC:
            hint = (f"the output is {a.data_size_out} bytes of data and {a.ctx_size_out} "
                    f"of ctx; pass a larger data_out_size / ctx_out_size")
        raise _bpf_error(code, "program test_run", f"fd {prog_fd}", hint)
    res.retval = a.retval
    res.duration_ns = a.duration
    # The kernel reports the full output size; it wrote at most the buffer.
    res._dlen = min(a.data_size_out, <uint32_t>data_out_size) if data_out_size > 0 else 0
    res._clen = min(a.ctx_size_out, <uint32_t>ctx_out_size) if ctx_out_size > 0 else 0
    if ctx_inout is not None:
        res._ctx = ctx_inout
    return res


cdef inline long _run(fbpf_test_run_attr *a) noexcept nogil:
    cdef long r
    while True:
        r = fbpf_sys_bpf(BPF_PROG_TEST_RUN, a, sizeof(a[0]))
        if r < 0 and errno == EINTR:
            continue
        return r
