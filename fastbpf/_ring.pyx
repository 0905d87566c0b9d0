# cython: language_level=3
"""Mmapped event rings: the BPF ring buffer, perf event arrays, user ring buffers.

This module owns the memory the kernel writes events into and walks it with
the memory ordering the kernel's producers expect. The readers above it
(:mod:`fastbpf.ringbuf`, :mod:`fastbpf.perf`) are thin Python.

Layouts (from the kernel's ``kernel/bpf/ringbuf.c``, ``include/uapi/linux/
perf_event.h`` and libbpf's ``ringbuf.c``/``libbpf.c``):

* BPF ring buffer (``BPF_MAP_TYPE_RINGBUF``): file offset 0 is the consumer
  page (``u64 consumer_pos``; user space writes it, so it is mapped
  read-write); offset ``PAGE`` is the producer page (``u64 producer_pos``),
  followed by the data area, which the kernel maps *twice in a row*. A record
  is an 8-byte header ``{u32 len; u32 pg_off}`` and the payload, padded to 8
  bytes; bit 31 of ``len`` (BUSY) says the producer has not committed it yet,
  bit 30 (DISCARD) that it was thrown away. Because of the double mapping,
  every pending byte range ``[consumer_pos, producer_pos)`` is contiguous in
  our address space: records and runs of records never wrap.
* Perf ring (one per CPU): one ``perf_event_mmap_page`` (``data_head``,
  ``data_tail``, ``data_offset``, ``data_size``: declared in ``_abi.pxd``,
  checked against the kernel's BTF) and ``2^n`` data pages, mapped once. Records (``perf_event_header``
  ``{u32 type; u16 misc; u16 size}``) are 8-byte aligned and can wrap the end;
  those are the only records copied.
* User ring buffer (``BPF_MAP_TYPE_USER_RINGBUF``): the same layout as the
  ring buffer with the roles swapped: the consumer page is read-only for us,
  the producer page and the data area are read-write.

Memory ordering: positions written by the other side are read with
``__atomic_load_n(..., __ATOMIC_ACQUIRE)`` (pairs with the kernel's
``smp_store_release``), positions and headers we publish are written with
``__atomic_store_n(..., __ATOMIC_RELEASE)`` (pairs with the kernel's
``smp_load_acquire``).

Waiting: every reader owns an epoll fd holding its ring fds and an eventfd;
``close()`` from another thread writes the eventfd, which wakes a blocked
``epoll_wait`` (run without the GIL). Tear-down is deferred to the thread
inside the reader, so no memory is unmapped under its feet, and the mappings
themselves live as long as any numpy view of them.

Fork: the rings, the epoll set and the wake-up eventfd belong to the process
that opened them (perf rings are not even mapped in a child: the kernel marks
them VM_DONTCOPY). In a forked child every operation raises RuntimeError;
``close()`` there releases the child's copies only and leaves the parent's
rings, map slots and waiters alone. A child opens its own reader.

Where things are (one extension module, several files: the ring kinds share
cdef classes whose C-level fields their hot loops use directly, and one
module keeps those calls direct and inlined, built with the one flag set the
copy loops need):

* ``_ring_loops.h`` -- the C loops and memory-ordered accessors (also
  compiled by ``bench/bench_ring_loops.py``);
* ``_ring_common.pxi`` -- mappings, scratch arrays, records and batches, the
  poller (waiting, closing, views lent out), dtype layouts;
* ``_ring_bpf.pxi`` -- the BPF ring buffer reader and the user ring buffer
  writer (they share one layout);
* ``_ring_perf.pxi`` -- the perf event array reader.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.ref cimport PyObject, Py_INCREF, Py_REFCNT
from cpython.exc cimport PyErr_CheckSignals
from posix.unistd cimport usleep
from libc.errno cimport errno, EINTR, EAGAIN
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, int32_t
from libc.string cimport memcpy, memset
from posix.unistd cimport close as c_close, write as c_write, read as c_read, getpid

cimport numpy as cnp
from fastbpf._abi cimport fbpf_perf_mmap_page
from fastbpf._common cimport (_np_new, _np_set_base, _np_retire, _own_fd,
                              NPY_ARRAY_WRITEABLE, NPY_ARRAY_ALIGNED)

import math as _math
import mmap as _mmap
import os as _os
import time as _time

import numpy as _np

from fastbpf.errors import ClosedError, bpf_error as _bpf_error

cnp.import_array()


# The C loops (see _ring_loops.h)
cdef extern from "_ring_loops.h" nogil:
    uint32_t RB_BUSY "FBPF_RB_BUSY_BIT"
    uint32_t RB_DISCARD "FBPF_RB_DISCARD_BIT"
    uint32_t RB_HDR "FBPF_RB_HDR_SZ"
    uint32_t PERF_RECORD_LOST "FBPF_PERF_RECORD_LOST"
    uint32_t PERF_RECORD_SAMPLE "FBPF_PERF_RECORD_SAMPLE"
    uint64_t acq64 "fbpf_acq64"(const void *p)
    uint32_t acq32 "fbpf_acq32"(const void *p)
    void rel64 "fbpf_rel64"(void *p, uint64_t v)
    void rel32 "fbpf_rel32"(void *p, uint32_t v)
    uint64_t rd64 "fbpf_rd64"(const void *p)
    uint32_t rd32 "fbpf_rd32"(const void *p)
    uint16_t rd16 "fbpf_rd16"(const void *p)
    void wr32 "fbpf_wr32"(void *p, uint32_t v)
    uint64_t ld64 "fbpf_ld64"(const void *p)
    uint32_t ld32 "fbpf_ld32"(const void *p)
    void copy_small "fbpf_copy"(char *dst, const char *src, size_t n)
    void copy_spans "fbpf_copy_spans"(char *dst, const char *src, const uint32_t *spans,
                                      int nspans)
    uint64_t rb_step "fbpf_rb_step"(uint32_t len)
    void prefetch_ahead "FBPF_AHEAD"(const void *p)
    double monotonic "fbpf_monotonic"()
    Py_ssize_t rb_gather "fbpf_rb_gather"(const char *data, uint64_t mask, const void *prodp,
                                          uint64_t *posp, char *out, Py_ssize_t itemsize,
                                          uint32_t need, const uint32_t *spans, int nspans,
                                          Py_ssize_t maxn, bint *shortp)
    Py_ssize_t rb_collect "fbpf_rb_collect"(const char *data, uint64_t mask, const void *prodp,
                                            uint64_t cons, uint64_t *posp, int64_t *offs,
                                            int64_t *lens, Py_ssize_t maxn, uint64_t max_bytes,
                                            char *heads, uint32_t hsize, bint *shortp)
    Py_ssize_t perf_collect "fbpf_perf_collect"(const char *data, uint64_t mask, uint64_t start,
                                                uint64_t lim, uint64_t head, uint64_t *posp,
                                                int64_t *offs, int64_t *sizes, Py_ssize_t maxn,
                                                char *heads, uint32_t hsize, bint *shortp)
    Py_ssize_t gather_prefix "fbpf_gather_prefix"(const char *data, uint64_t dlen,
                                                  const int64_t *offs, const int64_t *sizes,
                                                  Py_ssize_t n, char *out, Py_ssize_t itemsize)
    Py_ssize_t perf_gather "fbpf_perf_gather"(const char *data, uint64_t mask, uint64_t rsize,
                                              uint64_t *tailp, uint64_t head, char *out,
                                              Py_ssize_t itemsize, uint32_t need,
                                              const uint32_t *spans, int nspans, Py_ssize_t maxn)

cdef extern from "<sys/mman.h>" nogil:
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void *addr, size_t length)
    void *MAP_FAILED
    int PROT_READ, PROT_WRITE, MAP_SHARED


cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        uint64_t u64
    cdef struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)
    int EPOLL_CLOEXEC, EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLLIN, EPOLLOUT

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    int EFD_CLOEXEC, EFD_NONBLOCK


include "_ring_common.pxi"
include "_ring_bpf.pxi"
include "_ring_perf.pxi"
