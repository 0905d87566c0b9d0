# cython: language_level=3
"""What fastbpf's extension modules share at the C level: the fd rule and
numpy array construction over raw memory. Inline (or macros), so each module
gets its own copy and no call crosses a module boundary."""

from cpython.ref cimport PyObject
from libc.errno cimport errno
from posix.unistd cimport close as c_close
from posix.fcntl cimport fcntl, F_DUPFD_CLOEXEC
cimport numpy as cnp

cdef extern from "_common.h":
    # With base NULL, numpy copies the data into the new scalar.
    object _np_scalar "fbpf_np_scalar"(void *data, object descr, PyObject *base)
    # Steals a reference to descr.
    object _np_new "fbpf_np_new"(PyObject *descr, int nd, cnp.npy_intp *dims,
                                 cnp.npy_intp *strides, void *data, int flags)
    # Steals a reference to base.
    int _np_set_base "fbpf_np_set_base"(object arr, PyObject *base) except -1
    # An array viewing memory about to be reused becomes empty and read-only
    # (one that owns its data: read-only only).
    void _np_retire "fbpf_np_retire"(object arr)
    int NPY_ARRAY_WRITEABLE, NPY_ARRAY_ALIGNED


cdef inline int _own_fd(long fd, str op="fcntl(F_DUPFD_CLOEXEC)") except -1:
    """Make a fresh fd safe to keep: >= 3 and close-on-exec (as every fd the
    library holds), so a process started with a closed stdin never gets a
    map on fd 0. A negative *fd* (the failed call *op*) raises its errno."""
    cdef int newfd, code
    if fd < 0:
        code = errno
        from fastbpf.errors import bpf_error
        raise bpf_error(code, op)
    if fd < 3:
        newfd = fcntl(<int>fd, F_DUPFD_CLOEXEC, 3)
        code = errno
        c_close(<int>fd)
        if newfd < 0:
            from fastbpf.errors import bpf_error
            raise bpf_error(code, "fcntl(F_DUPFD_CLOEXEC)")
        return newfd
    return <int>fd
