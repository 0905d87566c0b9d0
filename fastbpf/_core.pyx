# cython: language_level=3
"""The syscall layer of fastbpf: one function per bpf(2) command.

Everything here is thin: arguments in, one system call, a result or an
exception out. Policy (retries with bigger logs, fallbacks, pretty names)
lives in the Python modules above. Three things are not thin, on purpose:

* :class:`FD`, the owner of every file descriptor the library holds. Every fd
  is moved to 3 or above and is close-on-exec, so a process started with a
  closed stdin never gets a map on fd 0 and children inherit nothing.
* :class:`MapBase`, whose ``m[k]``, ``m[k] = v``, ``k in m`` and ``del m[k]``
  are the hot path of metrics agents: keys and values of plain numeric dtypes
  are converted in C, with no intermediate Python objects, and per-CPU values
  are written by the kernel straight into the numpy array returned
  (_maphot.pxi).
* :class:`ProgramBase` and :class:`TestRunResult`: ``Program.test_run`` in
  C, the one BPF_PROG_TEST_RUN path (_progrun.pxi). Maps and programs have
  the same shape: a Cython base class here, a Python subclass above.

Buffers are taken through the buffer protocol (numpy arrays, bytes,
bytearray, memoryview) and handed to the kernel without a copy. The GIL is
released around calls that can run long (batch operations, test runs).
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE, PyBUF_ANY_CONTIGUOUS
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from cpython.long cimport (PyLong_Check, PyLong_CheckExact, PyLong_AsUnsignedLongLong,
                           PyLong_AsLongLong, PyLong_FromUnsignedLongLong, PyLong_FromLongLong)
from cpython.float cimport PyFloat_Check, PyFloat_AsDouble, PyFloat_FromDouble
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.ref cimport PyObject, Py_INCREF, Py_REFCNT
from libc.errno cimport errno, ENOENT, EAGAIN, EINTR, ENOSPC, E2BIG, EPERM, EINVAL
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int8_t, int16_t, int32_t, int64_t
from libc.string cimport memset, memcpy, strlen
from posix.unistd cimport close as c_close
from posix.fcntl cimport fcntl, F_DUPFD_CLOEXEC

cimport numpy as cnp
from fastbpf._abi cimport *

import os as _os
import sys
import numpy as _np

from fastbpf.errors import (BPFError, VerifierError, BTFLoadError, ClosedError,
                            bpf_error as _bpf_error, ENOTSUPP)

cnp.import_array()

# one copy of the numpy wrappers and the fd rule, shared with _ring
from fastbpf._common cimport (_np_scalar, _np_new, _np_set_base, _own_fd,
                              NPY_ARRAY_WRITEABLE, NPY_ARRAY_ALIGNED)

cdef extern from "Python.h":
    object PyNumber_Index(object)


# ---------------------------------------------------------------------------
# errors and fds

cdef inline object _err(int code, str op, object obj=None, object hint=None):
    return _bpf_error(code, op, obj, hint)


cdef class FD:
    """Owner of one file descriptor.

    ``FD(n)`` takes ownership of the open descriptor *n*. It is closed by
    :meth:`close`, on ``with`` exit, or as a last resort when the object is
    garbage-collected. Using it after close raises :class:`ClosedError`.
    """
    cdef int _fd

    def __cinit__(self, int fd):
        if fd < 0:
            raise ValueError(f"invalid file descriptor {fd}")
        self._fd = fd

    @property
    def fd(self):
        """The descriptor number; raises ClosedError once closed."""
        if self._fd < 0:
            raise ClosedError("file descriptor is closed")
        return self._fd

    @property
    def closed(self):
        """True once :meth:`close` or :meth:`detach` ran."""
        return self._fd < 0

    def fileno(self):
        """The descriptor number (for selectors and os functions)."""
        return self.fd

    def close(self):
        """Close the descriptor. Closing twice is harmless."""
        cdef int fd = self._fd
        if fd >= 0:
            self._fd = -1
            c_close(fd)

    def detach(self):
        """Give up ownership and return the descriptor number, still open."""
        cdef int fd = self.fd
        self._fd = -1
        return fd

    def dup(self):
        """A new FD for a duplicate of this descriptor (close-on-exec, >= 3)."""
        return FD(_dup_fd(self.fd))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __int__(self):
        return self.fd

    def __index__(self):
        return self.fd

    def __repr__(self):
        return "<FD closed>" if self._fd < 0 else f"<FD {self._fd}>"

    def __dealloc__(self):
        if self._fd >= 0:
            c_close(self._fd)
            self._fd = -1


cdef int _dup_fd(int fd) except -1:
    cdef int newfd = fcntl(fd, F_DUPFD_CLOEXEC, 3)
    if newfd < 0:
        raise _err(errno, "dup", f"fd {fd}")
    return newfd


def dup_fd(int fd):
    """Duplicate *fd* into a new :class:`FD` (close-on-exec, >= 3)."""
    return FD(_dup_fd(fd))


cdef inline long _bpf(int cmd, void *attr, unsigned int size) noexcept nogil:
    cdef long r
    while True:
        r = fbpf_sys_bpf(cmd, attr, size)
        if r < 0 and errno == EINTR:
            continue
        return r


cdef FD _fd_result(long r, str op, object obj=None):
    if r < 0:
        raise _err(errno, op, obj)
    return FD(_own_fd(r))


# ---------------------------------------------------------------------------
# buffers

cdef class _Buf:
    """A held Py_buffer; released on dealloc (or explicitly)."""
    cdef Py_buffer view
    cdef bint held

    cdef int get(self, object obj, bint writable, str what) except -1:
        cdef int flags = PyBUF_ANY_CONTIGUOUS | (PyBUF_WRITABLE if writable else 0)
        try:
            PyObject_GetBuffer(obj, &self.view, flags)
        except (TypeError, BufferError) as e:
            kind = "a writable contiguous buffer" if writable else "a contiguous buffer"
            raise TypeError(f"{what} must be {kind} (bytes, bytearray, numpy array), "
                            f"not {type(obj).__name__}") from e
        self.held = True
        return 0

    cdef void release(self):
        if self.held:
            PyBuffer_Release(&self.view)
            self.held = False

    def __dealloc__(self):
        self.release()


cdef inline uint64_t _ptr(const void *p) noexcept nogil:
    return <uint64_t><size_t>p


def address_of(obj):
    """The address of *obj*'s contiguous buffer.

    For packing pointers into attribute blocks (LINK_CREATE extras); the
    caller must keep *obj* alive and unmoved until the call is done.
    """
    cdef _Buf b = _Buf()
    b.get(obj, False, "object")
    addr = _ptr(b.view.buf)
    b.release()
    return addr


cdef bytes _cstr(object s, str what):
    if s is None:
        return None
    if isinstance(s, str):
        s = (<str>s).encode()
    if isinstance(s, (bytes, bytearray)):
        if b"\0" in s:
            raise ValueError(f"{what} must not contain NUL bytes")
        return bytes(s)
    s = _os.fspath(s)
    return _cstr(s, what)


cdef bytes _kname(object name):
    # The kernel takes up to 15 characters of [A-Za-z0-9_.]: truncate and
    # replace anything else with "_" (as cilium/ebpf does), so any Python
    # name loads and bpftool still shows something recognisable. Objects
    # report this name (kernel_name), never the one they were given.
    if not name:
        return b""
    cdef bytes b = _cstr(name, "name")
    return bytes(c if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in (46, 95)) else 95
                 for c in b[:15])


def kernel_name(name):
    """The name the kernel stores for an object named *name* (15 characters
    of [A-Za-z0-9_.] at most; anything else becomes "_")."""
    return _kname(name).decode()


def fd_kind(int fd):
    """What the descriptor *fd* is: "map", "prog", "link", "btf", "other"
    (an open fd that is none of these), or None when /proc cannot say."""
    try:
        target = _os.readlink(f"/proc/self/fd/{fd}")
    except FileNotFoundError:
        if _os.path.isdir("/proc/self/fd"):
            raise _err(9, "fd kind", f"fd {fd}") from None   # EBADF: not open
        return None
    except OSError:
        return None
    return {"anon_inode:bpf-map": "map", "anon_inode:bpf-prog": "prog",
            "anon_inode:bpf_link": "link", "anon_inode:btf": "btf"}.get(target, "other")


cdef void _set_name(char *dst, object name) except *:
    memset(dst, 0, 16)
    cdef bytes b = _kname(name)
    memcpy(dst, <char *>b, len(b))


# ---------------------------------------------------------------------------
# filesystems

cdef extern from "<sys/vfs.h>":
    struct statfs:
        long f_type
    int c_statfs "statfs"(const char *path, statfs *buf)


def fs_type(path):
    """The filesystem magic of *path* (statfs ``f_type``); BPF_FS_MAGIC for bpffs."""
    cdef bytes p = _cstr(path, "path")
    cdef statfs st
    if c_statfs(p, &st) < 0:
        raise OSError(errno, _os.strerror(errno), _os.fsdecode(p))
    return <unsigned long>st.f_type & 0xffffffff


# ---------------------------------------------------------------------------
# possible CPUs

# The kernel lays per-CPU values out for each possible CPU in turn, so
# what matters is how many there are (fastbpf.cpus parses the sysfs list).
from fastbpf.cpus import possible_cpus as _possible_cpus
cdef int _NCPUS = _possible_cpus()


def possible_cpus():
    """The kernel's count of possible CPUs: the length of every per-CPU value."""
    return _NCPUS


# ---------------------------------------------------------------------------
# maps: raw commands

def map_create(uint32_t map_type, uint32_t key_size, uint32_t value_size,
               uint32_t max_entries, uint32_t flags=0, name=None, *,
               uint32_t inner_map_fd=0, uint32_t numa_node=0,
               uint32_t map_ifindex=0, uint32_t btf_fd=0,
               uint32_t btf_key_type_id=0, uint32_t btf_value_type_id=0,
               uint32_t btf_vmlinux_value_type_id=0, uint64_t map_extra=0,
               int32_t value_type_btf_obj_fd=0):
    """BPF_MAP_CREATE. Returns an :class:`FD`."""
    cdef fbpf_map_create_attr a
    memset(&a, 0, sizeof(a))
    a.map_type = map_type
    a.key_size = key_size
    a.value_size = value_size
    a.max_entries = max_entries
    a.map_flags = flags
    a.inner_map_fd = inner_map_fd
    a.numa_node = numa_node
    _set_name(a.map_name, name)
    a.map_ifindex = map_ifindex
    a.btf_fd = btf_fd
    a.btf_key_type_id = btf_key_type_id
    a.btf_value_type_id = btf_value_type_id
    a.btf_vmlinux_value_type_id = btf_vmlinux_value_type_id
    a.map_extra = map_extra
    a.value_type_btf_obj_fd = value_type_btf_obj_fd
    cdef long r = _bpf(BPF_MAP_CREATE, &a, sizeof(a))
    return _fd_result(r, "map create", f"map {name!r}" if name else None)


cdef long _elem(int cmd, int fd, const void *key, void *value, uint64_t flags) noexcept nogil:
    cdef fbpf_map_elem_attr a
    memset(&a, 0, sizeof(a))
    a.map_fd = fd
    a.key = _ptr(<void *>key)
    a.value = _ptr(value)
    a.flags = flags
    return _bpf(cmd, &a, sizeof(a))


def map_lookup_elem(int fd, key, value, uint64_t flags=0):
    """BPF_MAP_LOOKUP_ELEM into the writable buffer *value*.

    *key* may be None for keyless maps (queue, stack, bloom filter).
    Returns False when the key does not exist (ENOENT).
    """
    return _raw_elem(BPF_MAP_LOOKUP_ELEM, "map lookup", fd, key, value, True, flags)


def map_update_elem(int fd, key, value, uint64_t flags=0):
    """BPF_MAP_UPDATE_ELEM from buffers. Raises BPFError on failure."""
    _raw_elem(BPF_MAP_UPDATE_ELEM, "map update", fd, key, value, False, flags)


def map_delete_elem(int fd, key):
    """BPF_MAP_DELETE_ELEM. Returns False when the key does not exist."""
    return _raw_elem(BPF_MAP_DELETE_ELEM, "map delete", fd, key, None, False, 0)


def map_get_next_key(int fd, key, next_key):
    """BPF_MAP_GET_NEXT_KEY; *key* None gives the first key.

    Returns False at the end of the map.
    """
    return _raw_elem(BPF_MAP_GET_NEXT_KEY, "map get_next_key", fd, key, next_key, True, 0)


def map_lookup_and_delete_elem(int fd, key, value, uint64_t flags=0):
    """BPF_MAP_LOOKUP_AND_DELETE_ELEM (also pop for queues and stacks).

    Returns False when there was nothing to pop (ENOENT).
    """
    return _raw_elem(BPF_MAP_LOOKUP_AND_DELETE_ELEM, "map lookup_and_delete", fd,
                     key, value, True, flags)


cdef object _raw_elem(int cmd, str op, int fd, key, value, bint writable, uint64_t flags):
    cdef _Buf kb = _Buf(), vb = _Buf()
    cdef void *kp = NULL
    cdef void *vp = NULL
    if key is not None:
        kb.get(key, False, "key")
        kp = kb.view.buf
    if value is not None:
        vb.get(value, writable, "value")
        vp = vb.view.buf
    cdef long r
    with nogil:
        r = _elem(cmd, fd, kp, vp, flags)
    if r < 0:
        code = errno
        if code == ENOENT and cmd != BPF_MAP_UPDATE_ELEM:
            return False
        raise _err(code, op, f"fd {fd}")
    return True


def map_freeze(int fd):
    """BPF_MAP_FREEZE: no more writes from user space."""
    cdef fbpf_map_freeze_attr a
    memset(&a, 0, sizeof(a))
    a.map_fd = fd
    if _bpf(BPF_MAP_FREEZE, &a, sizeof(a)) < 0:
        raise _err(errno, "map freeze", f"fd {fd}")


cdef object _batch(int cmd, str op, int fd, object in_batch, object out_batch, object keys,
                   object values, bint out, uint32_t count, uint64_t elem_flags,
                   uint64_t flags):
    """One BPF_MAP_*_BATCH call with the GIL released; the attribute set-up
    every batch command shares. *out*: the kernel writes keys and values.

    Returns the count the kernel reported; ENOENT (the end of the map, for
    lookups) returns ``-1 - count``; any other failure raises a BPFError whose
    ``count`` is the number of entries the kernel processed.
    """
    cdef _Buf ib = _Buf(), ob = _Buf(), kb = _Buf(), vb = _Buf()
    cdef fbpf_map_batch_attr a
    cdef long r
    memset(&a, 0, sizeof(a))
    if in_batch is not None:
        ib.get(in_batch, False, "in_batch")
        a.in_batch = _ptr(ib.view.buf)
    if out_batch is not None:
        ob.get(out_batch, True, "out_batch")
        a.out_batch = _ptr(ob.view.buf)
    kb.get(keys, out, "keys")
    a.keys = _ptr(kb.view.buf)
    if values is not None:
        vb.get(values, out, "values")
        a.values = _ptr(vb.view.buf)
    a.count = count
    a.map_fd = fd
    a.elem_flags = elem_flags
    a.flags = flags
    with nogil:
        r = _bpf(cmd, &a, sizeof(a))
    if r < 0:
        code = errno
        if code == ENOENT and out:
            return -1 - <long>a.count
        e = _err(code, op, f"fd {fd}")
        e.count = a.count
        raise e
    return a.count


def map_lookup_batch(int fd, in_batch, out_batch, keys, values, uint32_t count,
                     uint64_t elem_flags=0, uint64_t flags=0, bint delete=False):
    """One BPF_MAP_LOOKUP_BATCH (or LOOKUP_AND_DELETE_BATCH) call.

    Returns ``(count, done)``: the number of entries written and whether the
    kernel said the map is exhausted (ENOENT). The caller sizes the buffers:
    *keys* holds *count* keys and *values* *count* values.
    """
    n = _batch(BPF_MAP_LOOKUP_AND_DELETE_BATCH if delete else BPF_MAP_LOOKUP_BATCH,
               "map lookup_and_delete_batch" if delete else "map lookup_batch", fd,
               in_batch, out_batch, keys, values, True, count, elem_flags, flags)
    return (-1 - n, True) if n < 0 else (n, False)


def map_update_batch(int fd, keys, values, uint32_t count, uint64_t elem_flags=0,
                     uint64_t flags=0):
    """BPF_MAP_UPDATE_BATCH of *count* entries. Returns the count written;
    a failure's BPFError has ``count``, the entries the kernel processed."""
    return _batch(BPF_MAP_UPDATE_BATCH, "map update_batch", fd, None, None, keys, values,
                  False, count, elem_flags, flags)


def map_delete_batch(int fd, keys, uint32_t count, uint64_t elem_flags=0, uint64_t flags=0):
    """BPF_MAP_DELETE_BATCH of *count* keys. Returns the count deleted; a
    failure's BPFError has ``count``, the keys the kernel processed."""
    return _batch(BPF_MAP_DELETE_BATCH, "map delete_batch", fd, None, None, keys, None,
                  False, count, elem_flags, flags)


# ---------------------------------------------------------------------------
# objects: pin, get, ids, info

def obj_pin(int fd, path):
    """BPF_OBJ_PIN: pin the object behind *fd* at *path* (on a bpffs)."""
    cdef bytes p = _cstr(path, "path")
    cdef fbpf_obj_attr a
    memset(&a, 0, sizeof(a))
    a.pathname = _ptr(<char *>p)
    a.bpf_fd = fd
    if _bpf(BPF_OBJ_PIN, &a, sizeof(a)) < 0:
        raise _err(errno, "pin", _os.fsdecode(p))


def obj_get(path, uint32_t file_flags=0):
    """BPF_OBJ_GET: open the object pinned at *path*."""
    cdef bytes p = _cstr(path, "path")
    cdef fbpf_obj_attr a
    memset(&a, 0, sizeof(a))
    a.pathname = _ptr(<char *>p)
    a.file_flags = file_flags
    return _fd_result(_bpf(BPF_OBJ_GET, &a, sizeof(a)), "open pinned object", _os.fsdecode(p))


cdef object _next_id(int cmd, uint32_t start, str op):
    cdef fbpf_get_id_attr a
    memset(&a, 0, sizeof(a))
    a.start_id = start
    if _bpf(cmd, &a, sizeof(a)) < 0:
        if errno == ENOENT:
            return None
        raise _err(errno, op)
    return a.next_id


def map_get_next_id(uint32_t start=0):
    """BPF_MAP_GET_NEXT_ID: the next map id after *start*, or None."""
    return _next_id(BPF_MAP_GET_NEXT_ID, start, "map get_next_id")

def prog_get_next_id(uint32_t start=0):
    """BPF_PROG_GET_NEXT_ID: the next program id after *start*, or None."""
    return _next_id(BPF_PROG_GET_NEXT_ID, start, "program get_next_id")

def btf_get_next_id(uint32_t start=0):
    """BPF_BTF_GET_NEXT_ID: the next BTF id after *start*, or None."""
    return _next_id(BPF_BTF_GET_NEXT_ID, start, "btf get_next_id")

def link_get_next_id(uint32_t start=0):
    """BPF_LINK_GET_NEXT_ID: the next link id after *start*, or None."""
    return _next_id(BPF_LINK_GET_NEXT_ID, start, "link get_next_id")


cdef list _all_ids(int cmd, str op):
    cdef list ids = []
    cdef object nxt
    cdef uint32_t cur = 0
    while True:
        nxt = _next_id(cmd, cur, op)
        if nxt is None:
            return ids
        ids.append(nxt)
        cur = nxt


def map_ids():
    """Ids of every map in the kernel, ascending."""
    return _all_ids(BPF_MAP_GET_NEXT_ID, "map get_next_id")

def prog_ids():
    """Ids of every program in the kernel, ascending."""
    return _all_ids(BPF_PROG_GET_NEXT_ID, "program get_next_id")

def btf_ids():
    """Ids of every BTF object in the kernel, ascending."""
    return _all_ids(BPF_BTF_GET_NEXT_ID, "btf get_next_id")

def link_ids():
    """Ids of every bpf_link in the kernel, ascending."""
    return _all_ids(BPF_LINK_GET_NEXT_ID, "link get_next_id")


cdef FD _fd_by_id(int cmd, uint32_t id, str op, uint32_t open_flags=0):
    cdef fbpf_get_id_attr a
    memset(&a, 0, sizeof(a))
    a.start_id = id
    a.open_flags = open_flags
    return _fd_result(_bpf(cmd, &a, sizeof(a)), op, f"id {id}")


def map_get_fd_by_id(uint32_t id, uint32_t open_flags=0):
    """BPF_MAP_GET_FD_BY_ID."""
    return _fd_by_id(BPF_MAP_GET_FD_BY_ID, id, "open map", open_flags)

def prog_get_fd_by_id(uint32_t id):
    """BPF_PROG_GET_FD_BY_ID."""
    return _fd_by_id(BPF_PROG_GET_FD_BY_ID, id, "open program")

def btf_get_fd_by_id(uint32_t id):
    """BPF_BTF_GET_FD_BY_ID."""
    return _fd_by_id(BPF_BTF_GET_FD_BY_ID, id, "open btf")

def link_get_fd_by_id(uint32_t id):
    """BPF_LINK_GET_FD_BY_ID."""
    return _fd_by_id(BPF_LINK_GET_FD_BY_ID, id, "open link")


cdef int _info(int fd, void *info, uint32_t size, str op) except -1:
    cdef fbpf_info_attr a
    memset(&a, 0, sizeof(a))
    a.bpf_fd = fd
    a.info_len = size
    a.info = _ptr(info)
    if _bpf(BPF_OBJ_GET_INFO_BY_FD, &a, sizeof(a)) < 0:
        raise _err(errno, op, f"fd {fd}")
    return a.info_len


def obj_get_info_by_fd(int fd, info):
    """BPF_OBJ_GET_INFO_BY_FD into the writable buffer *info*.

    Returns the number of bytes the kernel filled.
    """
    cdef _Buf b = _Buf()
    b.get(info, True, "info")
    return _info(fd, b.view.buf, <uint32_t>b.view.len, "object info")


cdef str _cname(const char *s, size_t n):
    cdef size_t i = 0
    while i < n and s[i] != 0:
        i += 1
    return s[:i].decode("utf-8", "replace")


def map_info(int fd):
    """The map's ``struct bpf_map_info`` as a dict."""
    cdef fbpf_map_info i
    memset(&i, 0, sizeof(i))
    _info(fd, &i, sizeof(i), "map info")
    return dict(type=i.type, id=i.id, key_size=i.key_size, value_size=i.value_size,
                max_entries=i.max_entries, flags=i.map_flags,
                name=_cname(i.name, 16), ifindex=i.ifindex,
                btf_id=i.btf_id, btf_key_type_id=i.btf_key_type_id,
                btf_value_type_id=i.btf_value_type_id,
                btf_vmlinux_value_type_id=i.btf_vmlinux_value_type_id,
                map_extra=i.map_extra)


def prog_info(int fd):
    """The program's ``struct bpf_prog_info`` as a dict (with map ids)."""
    cdef fbpf_prog_info i
    memset(&i, 0, sizeof(i))
    _info(fd, &i, sizeof(i), "program info")
    cdef uint32_t nmaps = i.nr_map_ids
    ids = _np.zeros(nmaps, dtype=_np.uint32)
    cdef cnp.ndarray ids_arr = ids
    if nmaps:
        # A second call fetches the map ids into our array.
        memset(&i, 0, sizeof(i))
        i.nr_map_ids = nmaps
        i.map_ids = _ptr(cnp.PyArray_DATA(ids_arr))
        _info(fd, &i, sizeof(i), "program info")
        nmaps = min(nmaps, i.nr_map_ids)
    return dict(type=i.type, id=i.id, tag=bytes(i.tag[:8]).hex(),
                name=_cname(i.name, 16), map_ids=[int(x) for x in ids[:nmaps]],
                load_time=i.load_time, created_by_uid=i.created_by_uid,
                gpl_compatible=bool(i.gpl_compatible & 1),
                jited_prog_len=i.jited_prog_len, xlated_prog_len=i.xlated_prog_len,
                btf_id=i.btf_id, run_time_ns=i.run_time_ns, run_cnt=i.run_cnt,
                recursion_misses=i.recursion_misses, verified_insns=i.verified_insns,
                attach_btf_obj_id=i.attach_btf_obj_id, attach_btf_id=i.attach_btf_id,
                ifindex=i.ifindex)


def prog_xlated_insns(int fd):
    """The program's instructions as the kernel rewrote them (bytes)."""
    cdef fbpf_prog_info i
    memset(&i, 0, sizeof(i))
    _info(fd, &i, sizeof(i), "program info")
    cdef uint32_t n = i.xlated_prog_len
    buf = bytearray(n)
    cdef _Buf b = _Buf()
    if n:
        b.get(buf, True, "buffer")
        memset(&i, 0, sizeof(i))
        i.xlated_prog_len = n
        i.xlated_prog_insns = _ptr(b.view.buf)
        _info(fd, &i, sizeof(i), "program info")
        b.release()
    return bytes(buf[:min(n, i.xlated_prog_len)])


def btf_info(int fd):
    """The BTF object's ``struct bpf_btf_info`` as a dict."""
    cdef fbpf_btf_info i
    cdef char name[64]
    memset(&i, 0, sizeof(i))
    memset(name, 0, sizeof(name))
    i.name = _ptr(name)
    i.name_len = sizeof(name)
    _info(fd, &i, sizeof(i), "btf info")
    return dict(id=i.id, btf_size=i.btf_size, name=_cname(name, sizeof(name)),
                kernel_btf=bool(i.kernel_btf))


def btf_get_data(int fd):
    """The raw BTF blob of a loaded BTF object."""
    cdef fbpf_btf_info i
    memset(&i, 0, sizeof(i))
    _info(fd, &i, sizeof(i), "btf info")
    cdef uint32_t n = i.btf_size
    buf = bytearray(n)
    cdef _Buf b = _Buf()
    if n:
        b.get(buf, True, "buffer")
        memset(&i, 0, sizeof(i))
        i.btf = _ptr(b.view.buf)
        i.btf_size = n
        _info(fd, &i, sizeof(i), "btf info")
        b.release()
    return bytes(buf)


def link_info(int fd):
    """The link's ``struct bpf_link_info``: type, id, prog_id and the raw
    type-specific part (``extra``, 64 bytes) for the Python layer to decode."""
    cdef fbpf_link_info i
    memset(&i, 0, sizeof(i))
    _info(fd, &i, sizeof(i), "link info")
    return dict(type=i.type, id=i.id, prog_id=i.prog_id,
                extra=PyBytes_FromStringAndSize(<char *>i.extra.bytes, 64))


# ---------------------------------------------------------------------------
# BTF

def btf_load(data, uint32_t log_level=0, uint32_t log_size=0):
    """BPF_BTF_LOAD. Raises BTFLoadError (with the kernel's log) on failure.

    With *log_level* 0 and a failure, the load is retried once with a log so
    the error explains itself.
    """
    cdef _Buf b = _Buf()
    b.get(data, False, "btf data")
    cdef fbpf_btf_load_attr a
    cdef bytearray log
    cdef char *logp = NULL
    if log_level and not log_size:
        log_size = 1 << 20
    if log_size:
        log = bytearray(log_size)
        logp = log
    memset(&a, 0, sizeof(a))
    a.btf = _ptr(b.view.buf)
    a.btf_size = <uint32_t>b.view.len
    a.btf_log_level = log_level
    a.btf_log_size = log_size
    a.btf_log_buf = _ptr(logp)
    cdef long r = _bpf(BPF_BTF_LOAD, &a, sizeof(a))
    if r < 0:
        code = errno
        if not log_level:
            return btf_load(data, 1, 1 << 22)
        text = bytes(log).split(b"\0", 1)[0].decode("utf-8", "replace")
        raise BTFLoadError(code, "btf load", None, text)
    return FD(_own_fd(r))


# ---------------------------------------------------------------------------
# programs

cdef uint64_t _held_records(list held, object obj, str what, uint32_t rec_size,
                           uint32_t *count) except? 0:
    # The address of *obj*'s bytes (a buffer kept alive in *held*) and, into
    # *count*, how many records of *rec_size* bytes it holds.
    cdef _Buf b = _Buf()
    b.get(obj, False, what)
    held.append(b)
    if count != NULL:
        count[0] = <uint32_t>(b.view.len // rec_size) if rec_size else 0
    return _ptr(b.view.buf)


cdef int _prog_attr(fbpf_prog_load_attr *a, list held, uint32_t prog_type, object insns,
                    object license, object name, uint32_t prog_flags,
                    uint32_t expected_attach_type, uint32_t prog_btf_fd, object func_info,
                    uint32_t func_info_rec_size, object line_info, uint32_t line_info_rec_size,
                    uint32_t attach_btf_id, uint32_t attach_prog_fd, object fd_array,
                    uint32_t prog_ifindex, uint32_t kern_version, object core_relos,
                    uint32_t core_relo_rec_size) except -1:
    # Fills *a* (no log) from prog_load's arguments; the buffers it points
    # into stay held by the _Buf objects appended to *held*.
    cdef bytes lic = _cstr(license, "license")
    cdef _Buf b = _Buf()
    memset(a, 0, sizeof(a[0]))
    b.get(insns, False, "instructions")
    held.append(b)
    if b.view.len % 8 or b.view.len == 0:
        raise ValueError(f"instructions must be a non-empty multiple of 8 bytes, got {b.view.len}")
    a.prog_type = prog_type
    a.insn_cnt = <uint32_t>(b.view.len // 8)
    a.insns = _ptr(b.view.buf)
    held.append(lic)
    a.license = _ptr(<char *>lic)
    a.prog_flags = prog_flags
    _set_name(a.prog_name, name)
    a.expected_attach_type = expected_attach_type
    a.prog_btf_fd = prog_btf_fd
    if func_info is not None:
        a.func_info = _held_records(held, func_info, "func_info", func_info_rec_size,
                                    &a.func_info_cnt)
        a.func_info_rec_size = func_info_rec_size
    if line_info is not None:
        a.line_info = _held_records(held, line_info, "line_info", line_info_rec_size,
                                    &a.line_info_cnt)
        a.line_info_rec_size = line_info_rec_size
    a.attach_btf_id = attach_btf_id
    a.attach_prog_fd = attach_prog_fd
    if fd_array is not None:
        a.fd_array = _held_records(held, fd_array, "fd_array", 0, NULL)
    if core_relos is not None:
        a.core_relos = _held_records(held, core_relos, "core_relos", core_relo_rec_size,
                                     &a.core_relo_cnt)
        a.core_relo_rec_size = core_relo_rec_size
    a.prog_ifindex = prog_ifindex
    a.kern_version = kern_version
    return 0


cdef inline long _prog_load_call(fbpf_prog_load_attr *a) noexcept nogil:
    # One BPF_PROG_LOAD; EAGAIN (the verifier was interrupted by a signal
    # after it started) is retried up to five times. Sets errno on failure.
    cdef long r
    cdef int tries = 0
    while True:
        r = _bpf(BPF_PROG_LOAD, a, sizeof(a[0]))
        if r < 0 and errno == EAGAIN and tries < 5:
            tries += 1
            continue
        return r


def prog_load(uint32_t prog_type, insns, license="GPL", *, name=None,
              uint32_t log_level=0, log_buf=None, uint32_t prog_flags=0,
              uint32_t expected_attach_type=0, uint32_t prog_btf_fd=0,
              func_info=None, uint32_t func_info_rec_size=0,
              line_info=None, uint32_t line_info_rec_size=0,
              uint32_t attach_btf_id=0, uint32_t attach_prog_fd=0,
              fd_array=None, uint32_t prog_ifindex=0, uint32_t kern_version=0,
              core_relos=None, uint32_t core_relo_rec_size=0):
    """BPF_PROG_LOAD. Returns ``(FD, log_true_size)``.

    *insns* is the encoded instruction bytes; *log_buf* a writable buffer the
    verifier writes its log into (needed when *log_level* > 0). On failure
    raises :class:`VerifierError` carrying the log found in *log_buf*
    (``.log_true_size`` says how big a buffer the whole log needs), or a
    plain :class:`BPFError` when there is no log. EAGAIN is retried.
    """
    cdef list held = []
    cdef _Buf lb = _Buf()
    cdef fbpf_prog_load_attr a
    _prog_attr(&a, held, prog_type, insns, license, name, prog_flags, expected_attach_type,
               prog_btf_fd, func_info, func_info_rec_size, line_info, line_info_rec_size,
               attach_btf_id, attach_prog_fd, fd_array, prog_ifindex, kern_version,
               core_relos, core_relo_rec_size)
    if log_buf is not None:
        lb.get(log_buf, True, "log_buf")
        if lb.view.len:
            memset(lb.view.buf, 0, 1)
        a.log_level = log_level
        a.log_size = <uint32_t>lb.view.len
        a.log_buf = _ptr(lb.view.buf)
    cdef long r
    with nogil:
        r = _prog_load_call(&a)
    if r < 0:
        code = errno
        obj = f"program {name!r}" if name else None
        if log_buf is not None and log_level:
            text = bytes(log_buf).split(b"\0", 1)[0].decode("utf-8", "replace")
            e = VerifierError(code, "program load", obj, text)
            e.log_true_size = a.log_true_size
            raise e
        raise _err(code, "program load", obj)
    return FD(_own_fd(r)), a.log_true_size


cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    ctypedef struct pthread_attr_t:
        pass
    int pthread_attr_init(pthread_attr_t *attr)
    int pthread_attr_setstacksize(pthread_attr_t *attr, size_t size)
    int pthread_attr_destroy(pthread_attr_t *attr)
    int pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                       void *(*start)(void *) noexcept nogil, void *arg)
    int pthread_join(pthread_t thread, void **ret)
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_cond_t:
        pass
    int pthread_mutex_init(pthread_mutex_t *m, const void *attr)
    int pthread_mutex_destroy(pthread_mutex_t *m)
    int pthread_mutex_lock(pthread_mutex_t *m)
    int pthread_mutex_unlock(pthread_mutex_t *m)
    int pthread_cond_init(pthread_cond_t *c, const void *attr)
    int pthread_cond_destroy(pthread_cond_t *c)
    int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
    int pthread_cond_broadcast(pthread_cond_t *c)
    int pthread_cond_signal(pthread_cond_t *c)

cdef extern from "<sched.h>" nogil:
    ctypedef struct cpu_set_t:
        pass
    int sched_getaffinity(int pid, size_t size, cpu_set_t *mask)
    int sched_setaffinity(int pid, size_t size, const cpu_set_t *mask)
    int sched_getcpu()
    int CPU_ISSET(int cpu, cpu_set_t *s)
    void CPU_CLR(int cpu, cpu_set_t *s)
    int CPU_COUNT(cpu_set_t *s)
    enum: CPU_SETSIZE

cdef extern from "<pthread.h>" nogil:
    int pthread_attr_setaffinity_np(pthread_attr_t *attr, size_t size, const cpu_set_t *mask)

cdef extern from "<signal.h>" nogil:
    ctypedef struct sigset_t:
        pass
    int sigfillset(sigset_t *s)
    int pthread_sigmask(int how, const sigset_t *s, sigset_t *old)
    enum: SIG_SETMASK


ctypedef struct _Queue:
    # Shared with the worker threads; every field below `attrs` is read and
    # written under `lock`, except results[i], which only the thread that
    # took load i writes (and the owner reads after joining the workers).
    fbpf_prog_load_attr *attrs
    long *results          # fd, -errno, or _NOT_TRIED
    long added             # loads published (attrs[0:added] are complete)
    long next              # the next load to take
    int failed             # a load failed: nobody starts another
    int closing            # no more loads will be added: workers exit when idle
    pthread_mutex_t lock
    pthread_cond_t more    # signalled when a load is added or the queue closes
    int unpin              # workers start pinned away from the caller's CPU...
    cpu_set_t cpus         # ...and then take the caller's CPUs (set before they start)

cdef enum:
    _NOT_TRIED = -(1 << 30)
    # Workers only issue syscalls: a small stack, not glibc's 8 MiB default.
    _WORKER_STACK = 64 * 1024

cdef void _queue_work(_Queue *q, bint wait) noexcept nogil:
    # Takes loads until the queue is drained and closing (or, without
    # *wait*, until it is drained), or a load failed.
    cdef long i, r
    pthread_mutex_lock(&q.lock)
    while not q.failed:
        if q.next < q.added:
            i = q.next
            q.next += 1
            pthread_mutex_unlock(&q.lock)
            r = _prog_load_call(&q.attrs[i])
            if r < 0:
                r = -errno
            pthread_mutex_lock(&q.lock)
            q.results[i] = r
            if r < 0:
                q.failed = 1
                pthread_cond_broadcast(&q.more)
        elif q.closing or not wait:
            break
        else:
            pthread_cond_wait(&q.more, &q.lock)
    pthread_mutex_unlock(&q.lock)

cdef void *_queue_thread(void *arg) noexcept nogil:
    cdef _Queue *q = <_Queue *>arg
    if q.unpin:
        sched_setaffinity(0, sizeof(cpu_set_t), &q.cpus)
    _queue_work(q, True)
    return NULL


_LOAD_MANY_ARGS = frozenset({
    "name", "prog_flags", "expected_attach_type", "prog_btf_fd", "func_info",
    "func_info_rec_size", "line_info", "line_info_rec_size", "attach_btf_id",
    "attach_prog_fd", "fd_array", "prog_ifindex", "kern_version", "core_relos",
    "core_relo_rec_size"})


cdef class LoadQueue:
    """BPF_PROG_LOAD for many programs, issued from worker threads while the
    caller is still adding them (a collection's loader prepares program
    *k+1* while the kernel verifies program *k*).

    ``LoadQueue(capacity, threads)`` starts ``min(threads, capacity) - 1``
    worker threads (every signal blocked in them, so Python's handlers stay
    in the threads Python knows; each starts on another CPU than the
    caller's, so that a scheduler packing new threads together cannot
    serialise the loads, then may run on any of the caller's CPUs);
    :meth:`add` queues a load, which a waiting worker starts at once;
    :meth:`finish` closes the queue, loads what is
    left from the calling thread too (GIL released), joins the workers and
    returns the results. The kernel verifies programs in parallel, so
    ``threads`` loads run at once. No load starts after one failed.
    :meth:`cancel` (also on garbage collection) stops, joins and closes
    every fd made. EAGAIN is retried as :func:`prog_load` does.
    """
    cdef _Queue q
    cdef long capacity
    cdef list held
    cdef pthread_t *tids
    cdef int started
    cdef bint sync_made, joined
    cdef readonly int threads

    def __cinit__(self, Py_ssize_t capacity, int threads):
        cdef pthread_attr_t tattr
        cdef sigset_t all_signals, old_mask
        cdef cpu_set_t cpus
        cdef int cpu
        cdef bint pinned = False
        if threads < 1:
            raise ValueError(f"LoadQueue: threads must be >= 1, got {threads}")
        if capacity < 0:
            raise ValueError(f"LoadQueue: capacity must be >= 0, got {capacity}")
        memset(&self.q, 0, sizeof(self.q))
        self.joined = True
        self.capacity = capacity
        self.held = []
        n = capacity if capacity else 1
        self.q.attrs = <fbpf_prog_load_attr *>PyMem_Malloc(n * sizeof(fbpf_prog_load_attr))
        self.q.results = <long *>PyMem_Malloc(n * sizeof(long))
        if threads > capacity:
            threads = <int>max(capacity, 1)
        self.threads = threads
        if threads > 1:
            self.tids = <pthread_t *>PyMem_Malloc((threads - 1) * sizeof(pthread_t))
        if self.q.attrs == NULL or self.q.results == NULL or (threads > 1 and self.tids == NULL):
            raise MemoryError()
        pthread_mutex_init(&self.q.lock, NULL)
        pthread_cond_init(&self.q.more, NULL)
        self.sync_made = True
        if threads < 2:
            return
        self.joined = False
        with nogil:
            pthread_attr_init(&tattr)
            pthread_attr_setstacksize(&tattr, _WORKER_STACK)
            # The workers start on the caller's CPUs but the one it is on
            # now: a scheduler that packs new threads onto busy CPUs (to let
            # idle virtual CPUs sleep; seen on a VM after a few ms of
            # idleness) would otherwise queue them behind the caller, and
            # the loads would run one at a time. Once running, a worker
            # takes all the caller's CPUs back (_queue_thread): kept pinned,
            # it waited behind whatever else ran on its CPU (a CPU-bound
            # neighbour there made threads=2 1.6x slower than threads=1).
            cpu = sched_getcpu()
            if cpu >= 0 and cpu < CPU_SETSIZE \
                    and sched_getaffinity(0, sizeof(cpu_set_t), &cpus) == 0 \
                    and CPU_ISSET(cpu, &cpus) and CPU_COUNT(&cpus) > 1:
                self.q.cpus = cpus
                CPU_CLR(cpu, &cpus)
                pinned = pthread_attr_setaffinity_np(&tattr, sizeof(cpu_set_t), &cpus) == 0
                self.q.unpin = pinned
            sigfillset(&all_signals)
            pthread_sigmask(SIG_SETMASK, &all_signals, &old_mask)
            while self.started < threads - 1:
                if pthread_create(&self.tids[self.started], &tattr, _queue_thread,
                                  &self.q) != 0:
                    if pinned:  # (a CPU gone offline, affinity refused): anywhere, then
                        pthread_attr_destroy(&tattr)
                        pthread_attr_init(&tattr)
                        pthread_attr_setstacksize(&tattr, _WORKER_STACK)
                        pinned = False
                        continue
                    break  # the caller's thread does the rest in finish()
                self.started += 1
            pthread_sigmask(SIG_SETMASK, &old_mask, NULL)
            pthread_attr_destroy(&tattr)

    def add(self, uint32_t prog_type, insns, license, dict kwargs):
        """Queue one load: :func:`prog_load`'s arguments but the log ones
        (*kwargs* by name). Returns its index in :meth:`finish`'s list."""
        cdef long i = self.q.added
        if self.q.closing:
            raise ValueError("LoadQueue: add() after finish() or cancel()")
        if i >= self.capacity:
            raise ValueError(f"LoadQueue: more than its capacity of {self.capacity} loads")
        for key in kwargs:
            if key not in _LOAD_MANY_ARGS:
                raise TypeError(f"LoadQueue: load {i} has an unexpected argument {key!r} "
                                f"(a queue takes prog_load's arguments, without a log)")
        get = kwargs.get
        _prog_attr(&self.q.attrs[i], self.held, prog_type, insns, license, get("name"),
                   get("prog_flags", 0), get("expected_attach_type", 0),
                   get("prog_btf_fd", 0), get("func_info"), get("func_info_rec_size", 0),
                   get("line_info"), get("line_info_rec_size", 0),
                   get("attach_btf_id", 0), get("attach_prog_fd", 0), get("fd_array"),
                   get("prog_ifindex", 0), get("kern_version", 0), get("core_relos"),
                   get("core_relo_rec_size", 0))
        self.q.results[i] = _NOT_TRIED
        if self.started:
            with nogil:
                pthread_mutex_lock(&self.q.lock)
                self.q.added = i + 1
                pthread_cond_signal(&self.q.more)
                pthread_mutex_unlock(&self.q.lock)
        else:
            self.q.added = i + 1
        return i

    @property
    def added(self):
        """How many loads were queued."""
        return self.q.added

    cdef void _stop(self, bint fail) noexcept nogil:
        # Closes the queue (and, with *fail*, stops every load not started)
        # then joins the workers.
        cdef int k
        pthread_mutex_lock(&self.q.lock)
        self.q.closing = 1
        if fail:
            self.q.failed = 1
        pthread_cond_broadcast(&self.q.more)
        pthread_mutex_unlock(&self.q.lock)
        if not fail:
            _queue_work(&self.q, False)
        for k in range(self.started):
            pthread_join(self.tids[k], NULL)
        self.joined = True

    def finish(self):
        """Load what is left, join the workers; a list with, per load in
        order, an :class:`FD`, the errno (an int) of a refused load, or None
        for a load not started because another one failed first. The caller
        closes the FDs it does not keep."""
        cdef long i, r
        if self.q.closing:
            raise ValueError("LoadQueue: finish() after finish() or cancel()")
        with nogil:
            self._stop(False)
        out = [None] * self.q.added
        for i in range(self.q.added):
            r = self.q.results[i]
            if r >= 0:
                self.q.results[i] = _NOT_TRIED  # owned by its FD from here on
                out[i] = FD(_own_fd(r))
            elif r != _NOT_TRIED:
                out[i] = <int>-r
        self.held = []
        return out

    def cancel(self):
        """Stop: no load starts any more, the workers are joined and every
        fd made and not yet returned by :meth:`finish` is closed. Idempotent."""
        with nogil:
            self._close_all()

    cdef void _close_all(self) noexcept nogil:
        cdef long i
        if not self.sync_made:
            return
        if not self.joined:
            self._stop(True)
        self.q.closing = 1
        for i in range(self.q.added):
            if self.q.results[i] >= 0:
                c_close(<int>self.q.results[i])
                self.q.results[i] = _NOT_TRIED

    def __dealloc__(self):
        # A queue dropped without finish(): the workers must not outlive the
        # buffers they read.
        with nogil:
            self._close_all()
        if self.sync_made:
            pthread_cond_destroy(&self.q.more)
            pthread_mutex_destroy(&self.q.lock)
        PyMem_Free(self.q.attrs)
        PyMem_Free(self.q.results)
        PyMem_Free(self.tids)


def prog_load_many(loads, int threads):
    """BPF_PROG_LOAD for many programs at once, from up to *threads* threads.

    *loads* is a sequence of ``(prog_type, insns, license, kwargs)`` tuples,
    *kwargs* a dict of :func:`prog_load`'s keyword arguments except the log
    ones (a batch loads without a log: on a failure the caller loads again
    one by one, with a log). They are spread over this thread and up to
    ``threads - 1`` threads (a :class:`LoadQueue`), joined before the
    return; a bad argument raises after closing whatever was loaded already.

    Returns a list with, per load in order, an :class:`FD`, the errno (an
    int) of a refused load, or None for a load not tried because another one
    failed first (no load starts after a failure). The caller closes the
    FDs it does not keep.
    """
    cdef list items = list(loads)
    cdef Py_ssize_t i
    if threads < 1:
        raise ValueError(f"prog_load_many: threads must be >= 1, got {threads}")
    for i, item in enumerate(items):
        if not isinstance(item, tuple) or len(<tuple>item) != 4:
            raise TypeError(f"prog_load_many: load {i} must be a (prog_type, insns, "
                            f"license, kwargs) tuple, not {type(item).__name__}")
        if not isinstance((<tuple>item)[3], dict):
            raise TypeError(f"prog_load_many: kwargs of load {i} must be a dict, "
                            f"not {type((<tuple>item)[3]).__name__}")
    if not items:
        return []
    queue = LoadQueue(len(items), threads)
    try:
        for item in items:
            queue.add(*item)
    except BaseException:
        queue.cancel()  # closes what the workers loaded already
        raise
    return queue.finish()


def prog_attach(uint32_t target_fd, uint32_t prog_fd, uint32_t attach_type, uint32_t flags=0,
                uint32_t replace_fd=0, uint32_t relative_fd=0, uint64_t expected_revision=0):
    """BPF_PROG_ATTACH (cgroups, sockmaps, flow dissector, tcx via mprog)."""
    cdef fbpf_prog_attach_attr a
    memset(&a, 0, sizeof(a))
    a.target_fd = target_fd
    a.attach_bpf_fd = prog_fd
    a.attach_type = attach_type
    a.attach_flags = flags
    a.replace_bpf_fd = replace_fd
    a.relative_fd = relative_fd
    a.expected_revision = expected_revision
    if _bpf(BPF_PROG_ATTACH, &a, sizeof(a)) < 0:
        raise _err(errno, "program attach", f"attach type {attach_type}")


def prog_detach(uint32_t target_fd, uint32_t prog_fd, uint32_t attach_type, uint32_t flags=0,
                uint32_t relative_fd=0, uint64_t expected_revision=0):
    """BPF_PROG_DETACH."""
    cdef fbpf_prog_attach_attr a
    memset(&a, 0, sizeof(a))
    a.target_fd = target_fd
    a.attach_bpf_fd = prog_fd
    a.attach_type = attach_type
    a.attach_flags = flags
    a.relative_fd = relative_fd
    a.expected_revision = expected_revision
    if _bpf(BPF_PROG_DETACH, &a, sizeof(a)) < 0:
        raise _err(errno, "program detach", f"attach type {attach_type}")


def prog_query(uint32_t target_fd, uint32_t attach_type, uint32_t query_flags=0,
               uint32_t max_progs=64):
    """BPF_PROG_QUERY: programs attached at a hook.

    Returns a dict with ``attach_flags``, ``prog_ids``, ``prog_attach_flags``,
    ``link_ids`` and ``revision``.
    """
    ids = _np.zeros(max_progs, dtype=_np.uint32)
    pflags = _np.zeros(max_progs, dtype=_np.uint32)
    lids = _np.zeros(max_progs, dtype=_np.uint32)
    cdef cnp.ndarray ia = ids, pa = pflags, la = lids
    cdef fbpf_prog_query_attr a
    memset(&a, 0, sizeof(a))
    a.target_fd = target_fd
    a.attach_type = attach_type
    a.query_flags = query_flags
    a.prog_ids = _ptr(cnp.PyArray_DATA(ia))
    a.prog_attach_flags = _ptr(cnp.PyArray_DATA(pa))
    a.link_ids = _ptr(cnp.PyArray_DATA(la))
    a.prog_cnt = max_progs
    if _bpf(BPF_PROG_QUERY, &a, sizeof(a)) < 0:
        if errno == ENOSPC and a.prog_cnt > max_progs:
            # The kernel says how many there are: ask again with room for all.
            return prog_query(target_fd, attach_type, query_flags, a.prog_cnt + 8)
        raise _err(errno, "program query", f"attach type {attach_type}")
    n = min(a.prog_cnt, max_progs)
    return dict(attach_flags=a.attach_flags, prog_ids=[int(x) for x in ids[:n]],
                prog_attach_flags=[int(x) for x in pflags[:n]],
                link_ids=[int(x) for x in lids[:n]], revision=a.revision)


def raw_tracepoint_open(name, uint32_t prog_fd, uint64_t cookie=0):
    """BPF_RAW_TRACEPOINT_OPEN; *name* None for tp_btf programs."""
    cdef bytes n = _cstr(name, "tracepoint name") if name is not None else None
    cdef fbpf_raw_tp_attr a
    memset(&a, 0, sizeof(a))
    a.name = _ptr(<char *>n) if n is not None else 0
    a.prog_fd = prog_fd
    a.cookie = cookie
    return _fd_result(_bpf(BPF_RAW_TRACEPOINT_OPEN, &a, sizeof(a)),
                      "raw tracepoint open", repr(name) if name else None)


def link_create(uint32_t prog_fd, uint32_t target_fd, uint32_t attach_type,
                uint32_t flags=0, extra=None):
    """BPF_LINK_CREATE. *extra* (up to 48 bytes) is the attach-type specific
    part of the attribute, packed by the caller (it may hold pointers to
    buffers the caller keeps alive)."""
    cdef fbpf_link_create_attr a
    cdef _Buf eb = _Buf()
    memset(&a, 0, sizeof(a))
    a.prog_fd = prog_fd
    a.target_fd = target_fd
    a.attach_type = attach_type
    a.flags = flags
    if extra is not None:
        eb.get(extra, False, "extra")
        if eb.view.len > 48:
            raise ValueError("link_create extra attributes exceed 48 bytes")
        memcpy(a.extra.bytes, eb.view.buf, eb.view.len)
    return _fd_result(_bpf(BPF_LINK_CREATE, &a, sizeof(a)), "link create",
                      f"attach type {attach_type}")


def link_update(uint32_t link_fd, uint32_t new_prog_fd, uint32_t flags=0, uint32_t old_prog_fd=0):
    """BPF_LINK_UPDATE: replace the program of a link."""
    cdef fbpf_link_update_attr a
    memset(&a, 0, sizeof(a))
    a.link_fd = link_fd
    a.new_prog_fd = new_prog_fd
    a.flags = flags
    a.old_prog_fd = old_prog_fd
    if _bpf(BPF_LINK_UPDATE, &a, sizeof(a)) < 0:
        raise _err(errno, "link update", f"fd {link_fd}")


def link_detach(uint32_t link_fd):
    """BPF_LINK_DETACH: detach a link while keeping its fd."""
    cdef fbpf_link_detach_attr a
    memset(&a, 0, sizeof(a))
    a.link_fd = link_fd
    if _bpf(BPF_LINK_DETACH, &a, sizeof(a)) < 0:
        raise _err(errno, "link detach", f"fd {link_fd}")


def enable_stats(uint32_t type=0):
    """BPF_ENABLE_STATS: run-time statistics stay on while the FD is open."""
    cdef fbpf_enable_stats_attr a
    memset(&a, 0, sizeof(a))
    a.type = type
    return _fd_result(_bpf(BPF_ENABLE_STATS, &a, sizeof(a)), "enable stats")


def iter_create(uint32_t link_fd, uint32_t flags=0):
    """BPF_ITER_CREATE: a readable fd that runs the iterator program."""
    cdef fbpf_iter_create_attr a
    memset(&a, 0, sizeof(a))
    a.link_fd = link_fd
    a.flags = flags
    return _fd_result(_bpf(BPF_ITER_CREATE, &a, sizeof(a)), "iterator create")


def prog_bind_map(uint32_t prog_fd, uint32_t map_fd, uint32_t flags=0):
    """BPF_PROG_BIND_MAP: keep *map_fd* alive as long as the program."""
    cdef fbpf_prog_bind_map_attr a
    memset(&a, 0, sizeof(a))
    a.prog_fd = prog_fd
    a.map_fd = map_fd
    a.flags = flags
    if _bpf(BPF_PROG_BIND_MAP, &a, sizeof(a)) < 0:
        raise _err(errno, "program bind map")


# ---------------------------------------------------------------------------
# perf events

PERF_FLAG_FD_CLOEXEC = 1 << 3
# bit positions in perf_event_attr's flag word
PERF_BIT_DISABLED = 1 << 0
PERF_BIT_INHERIT = 1 << 1
PERF_BIT_EXCLUDE_KERNEL = 1 << 5
PERF_BIT_EXCLUDE_HV = 1 << 6
PERF_BIT_FREQ = 1 << 10
PERF_BIT_WATERMARK = 1 << 14


def perf_event_open(uint32_t type, uint64_t config, int pid=-1, int cpu=0, int group_fd=-1,
                    unsigned long flags=PERF_FLAG_FD_CLOEXEC, *, uint64_t sample_period=0,
                    uint64_t sample_type=0, uint32_t wakeup_events=0, uint64_t bits=0,
                    uint64_t config1=0, uint64_t config2=0, uint64_t config3=0,
                    uint64_t read_format=0):
    """perf_event_open(2). *bits* is the attr's flag word (PERF_BIT_*);
    *wakeup_events* is the watermark in bytes when PERF_BIT_WATERMARK is set."""
    cdef fbpf_perf_event_attr a
    memset(&a, 0, sizeof(a))
    a.type = type
    a.size = sizeof(a)
    a.config = config
    a.sample_period = sample_period
    a.sample_type = sample_type
    a.read_format = read_format
    a.flags = bits
    a.wakeup_events = wakeup_events
    a.config1 = config1
    a.config2 = config2
    a.config3 = config3
    cdef long r
    while True:
        r = fbpf_sys_perf_event_open(&a, pid, cpu, group_fd, flags | PERF_FLAG_FD_CLOEXEC)
        if r < 0 and errno == EINTR:
            continue
        break
    if r < 0:
        raise _err(errno, "perf_event_open", f"type {type} config {config}")
    return FD(_own_fd(r))


include "_maphot.pxi"
include "_progrun.pxi"
