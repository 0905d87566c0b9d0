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
* Perf ring (one per CPU): one ``perf_event_mmap_page`` (``data_head`` at
  byte 1024, ``data_tail`` at 1032, ``data_offset``/``data_size`` at 1040 and
  1048) and ``2^n`` data pages, mapped once. Records (``perf_event_header``
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
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.ref cimport PyObject, Py_INCREF, Py_REFCNT
from cpython.exc cimport PyErr_CheckSignals
from posix.unistd cimport usleep
from libc.errno cimport errno, EINTR, EAGAIN
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, int32_t
from libc.string cimport memcpy, memset
from posix.unistd cimport close as c_close, write as c_write, read as c_read
from posix.fcntl cimport fcntl, F_DUPFD_CLOEXEC

cimport numpy as cnp

import math as _math
import mmap as _mmap
import os as _os
import time as _time

import numpy as _np

from fastbpf.errors import ClosedError, bpf_error as _bpf_error

cnp.import_array()

cdef extern from * nogil:
    """
    #include <sys/mman.h>
    #include <sys/epoll.h>
    #include <sys/eventfd.h>
    #include <stdint.h>
    #include <time.h>
    #include <string.h>

    #define FBPF_RB_BUSY_BIT    (1U << 31)
    #define FBPF_RB_DISCARD_BIT (1U << 30)
    #define FBPF_RB_HDR_SZ      8
    #define FBPF_PERF_RECORD_LOST   2
    #define FBPF_PERF_RECORD_SAMPLE 9
    /* offsets in struct perf_event_mmap_page */
    #define FBPF_PERF_DATA_HEAD   1024
    #define FBPF_PERF_DATA_TAIL   1032
    #define FBPF_PERF_DATA_OFFSET 1040
    #define FBPF_PERF_DATA_SIZE   1048

    static inline uint64_t fbpf_acq64(const void *p) {
        return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE);
    }
    static inline uint32_t fbpf_acq32(const void *p) {
        return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE);
    }
    static inline void fbpf_rel64(void *p, uint64_t v) {
        __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE);
    }
    static inline void fbpf_rel32(void *p, uint32_t v) {
        __atomic_store_n((uint32_t *)p, v, __ATOMIC_RELEASE);
    }
    static inline uint64_t fbpf_rd64(const void *p) { return *(const volatile uint64_t *)p; }
    static inline uint32_t fbpf_rd32(const void *p) { return *(const volatile uint32_t *)p; }
    static inline uint16_t fbpf_rd16(const void *p) { return *(const volatile uint16_t *)p; }
    static inline void fbpf_wr32(void *p, uint32_t v) { *(volatile uint32_t *)p = v; }
    /* Plain (non-volatile, possibly unaligned) loads of record contents:
       they are ordered after the acquire load of the producer position, and
       the producer never rewrites a published record, so the compiler may
       schedule them freely. */
    static inline uint64_t fbpf_ld64(const void *p) { uint64_t v; __builtin_memcpy(&v, p, 8); return v; }
    static inline uint32_t fbpf_ld32(const void *p) { uint32_t v; __builtin_memcpy(&v, p, 4); return v; }
    static inline void fbpf_put64(void *p, int64_t v) { __builtin_memcpy(p, &v, 8); }
    /* Copy a small record: 8-byte words, then the tail. Records are tens
       of bytes, where a libc memcpy call costs more than the copy; inlined
       into the scan loops (setup.py builds this module with
       -fno-tree-loop-distribute-patterns so GCC keeps the word loop rather
       than turning it back into a memcpy call). */
    static inline __attribute__((always_inline))
    void fbpf_copy(char *dst, const char *src, size_t n) {
        if (n == 8) {               /* one u64 column: the common fields= case */
            uint64_t w; __builtin_memcpy(&w, src, 8); __builtin_memcpy(dst, &w, 8);
            return;
        }
        if (n > 256) { memcpy(dst, src, n); return; }
        while (n >= 16) {
            uint64_t a, b;
            __builtin_memcpy(&a, src, 8); __builtin_memcpy(&b, src + 8, 8);
            __builtin_memcpy(dst, &a, 8); __builtin_memcpy(dst + 8, &b, 8);
            dst += 16; src += 16; n -= 16;
        }
        if (n >= 8) {
            uint64_t w; __builtin_memcpy(&w, src, 8); __builtin_memcpy(dst, &w, 8);
            dst += 8; src += 8; n -= 8;
        }
        if (n >= 4) {
            uint32_t w; __builtin_memcpy(&w, src, 4); __builtin_memcpy(dst, &w, 4);
            dst += 4; src += 4; n -= 4;
        }
        while (n--) *dst++ = *src++;
    }
    /* Copy the selected byte spans of one record: spans holds (src, dst,
       len) triples. One span at offset 0 is a plain prefix copy. */
    static inline void fbpf_copy_spans(char *dst, const char *src,
                                       const uint32_t *spans, int nspans) {
        for (int j = 0; j < nspans; j++)
            fbpf_copy(dst + spans[3 * j + 1], src + spans[3 * j], spans[3 * j + 2]);
    }
    /* Ring buffer record: header + payload, rounded up to 8 bytes. The
       length's top two bits are flags. */
    static inline uint64_t fbpf_rb_step(uint32_t len) {
        return (((uint64_t)(len & ~(FBPF_RB_BUSY_BIT | FBPF_RB_DISCARD_BIT))) + FBPF_RB_HDR_SZ + 7) & ~7ULL;
    }
    /* A constant-size copy the compiler turns into a few moves. */
    #define FBPF_COPY_CONST(dst, src, N) do { char t_[N]; \
        __builtin_memcpy(t_, (src), N); __builtin_memcpy((dst), t_, N); } while (0)

    /* Prefetch the ring a few records ahead of a scan. The producer wrote
       the records from another CPU, and the hardware prefetcher alone
       leaves the scan waiting on them: on the benchmark machine this took
       a perf drain's copy loop from 4.9 to 4.3 ns a sample. A prefetch past
       the end of the mapping does not fault. */
    #define FBPF_AHEAD_BYTES 256
    #define FBPF_AHEAD(p) __builtin_prefetch((const char *)(p) + FBPF_AHEAD_BYTES, 0, 3)
    /* Output staging. The scans store into the output while loading from
       the ring; a load whose address matches a pending store's low 12 bits
       waits for it (4K aliasing), which on the ring buffer's dependent
       header walk doubled the cost of a record. Stores go to a small stack
       buffer first and reach the output in memcpys of up to 2 KiB.
       FBPF_STAGE(S, OUT, ITEMSIZE) declares stage S; S_cur is where the next
       item goes. The cursor is a local variable: held in a struct next to
       the buffer, every staged store (through a char pointer, which may
       alias anything) made GCC reload it, and the ring buffer's copy loop
       took 3.1 ns a record instead of 2.65. Items over a quarter of the
       buffer go straight to OUT (S_end is then NULL, never reached). */
    #define FBPF_STAGE_BYTES 2048
    #define FBPF_STAGE(S, OUT, ITEMSIZE) \
        char S##_buf[FBPF_STAGE_BYTES] __attribute__((aligned(64))); \
        char *S##_out = (char *)(OUT); \
        const int S##_staged = (ITEMSIZE) <= FBPF_STAGE_BYTES / 4; \
        char *S##_cur = S##_staged ? S##_buf : S##_out; \
        char *const S##_end = S##_staged \
            ? S##_buf + (FBPF_STAGE_BYTES / (ITEMSIZE)) * (ITEMSIZE) : NULL
    #define FBPF_STAGE_FLUSH(S) do { \
        if (S##_staged && S##_cur != S##_buf) { \
            memcpy(S##_out, S##_buf, (size_t)(S##_cur - S##_buf)); \
            S##_out += S##_cur - S##_buf; \
            S##_cur = S##_buf; \
        } } while (0)
    /* The item at S_cur is written: move on. */
    #define FBPF_STAGE_NEXT(S, ITEMSIZE) do { \
        S##_cur += (ITEMSIZE); \
        if (__builtin_expect(S##_cur == S##_end, 0)) \
            FBPF_STAGE_FLUSH(S); \
        } while (0)

    /* The loop of fbpf_rb_gather, instantiated once per copy form so that a
       single column of 4/8/16/32/64 bytes is a couple of moves. The step to
       the next record is recomputed only when the length changes, behind a
       branch the CPU predicts (the empty asm keeps GCC from turning it into
       a cmov): the next header's address then does not wait for this
       header's load, and a run of same-size records streams. */
    #define FBPF_RB_GATHER_LOOP(COPY) \
        while (n < maxn) { \
            if (pos >= prod) { \
                prod = fbpf_acq64(prodp); \
                if (pos >= prod) break; \
            } \
            const char *hdr = data + (pos & mask); \
            FBPF_AHEAD(hdr); \
            uint32_t ln = fbpf_acq32(hdr); \
            /* one compare passes the common record: not busy, not \
               discarded, at least need bytes (need < the flag bits) */ \
            if (__builtin_expect(ln - need < FBPF_RB_DISCARD_BIT - need, 1)) { \
                char *dst = st_cur; \
                const char *src = hdr + FBPF_RB_HDR_SZ; \
                COPY; \
                FBPF_STAGE_NEXT(st, itemsize); \
                n++; \
            } else if (ln & FBPF_RB_BUSY_BIT) { \
                break; \
            } else if (!(ln & FBPF_RB_DISCARD_BIT)) { \
                *shortp = 1; \
                break; \
            } \
            if (__builtin_expect(ln != last_len, 0)) { \
                __asm__ volatile(""); \
                last_len = ln; \
                step = fbpf_rb_step(ln); \
            } \
            pos += step; \
        }

    /* Instantiate LOOP for the copy the spans ask for: one span of 4, 8,
       16, 32 or 64 bytes is a constant-size copy (a few moves); other
       single spans and several spans take the general copy. */
    #define FBPF_GATHER_DISPATCH(LOOP) do { \
        if (nspans == 1) { \
            const uint32_t s0 = spans[0], d0 = spans[1], l0 = spans[2]; \
            switch (l0) { \
            case 4:  LOOP(FBPF_COPY_CONST(dst + d0, src + s0, 4)); break; \
            case 8:  LOOP(FBPF_COPY_CONST(dst + d0, src + s0, 8)); break; \
            case 16: LOOP(FBPF_COPY_CONST(dst + d0, src + s0, 16)); break; \
            case 32: LOOP(FBPF_COPY_CONST(dst + d0, src + s0, 32)); break; \
            case 64: LOOP(FBPF_COPY_CONST(dst + d0, src + s0, 64)); break; \
            default: LOOP(fbpf_copy(dst + d0, src + s0, l0)); break; \
            } \
        } else { \
            LOOP(fbpf_copy_spans(dst, src, spans, nspans)); \
        } \
    } while (0)

    /* Copy the selected spans of up to maxn committed records, starting at
       *posp, into out (itemsize bytes per record); discarded records are
       skipped; stops at a busy record, at the producer position, or (setting
       *shortp) at a record shorter than need bytes. *posp is left after the
       last record walked; nothing is committed. */
    static Py_ssize_t fbpf_rb_gather(const char *data, uint64_t mask, const void *prodp,
                                     uint64_t *posp, char *out, Py_ssize_t itemsize,
                                     uint32_t need, const uint32_t *spans, int nspans,
                                     Py_ssize_t maxn, int *shortp) {
        uint64_t pos = *posp, prod = fbpf_acq64(prodp), step = 0;
        uint32_t last_len = 0xFFFFFFFFu;   /* busy and discard: never a real header */
        Py_ssize_t n = 0;
        FBPF_STAGE(st, out, itemsize);
        *shortp = 0;
        FBPF_GATHER_DISPATCH(FBPF_RB_GATHER_LOOP);
        FBPF_STAGE_FLUSH(st);
        *posp = pos;
        return n;
    }

    /* The loop of fbpf_perf_gather: PERF_RECORD_SAMPLEs that do not wrap
       the ring's end; anything else ends it (the caller takes that record
       the slow way). The step trick is the ring buffer's. */
    #define FBPF_PERF_GATHER_LOOP(COPY) \
        while (n < maxn && tail < head) { \
            const uint64_t off = tail & mask; \
            const char *p = data + off; \
            FBPF_AHEAD(p); \
            const uint64_t h = fbpf_ld64(p); \
            const uint32_t size = (uint32_t)(h >> 48); \
            if (__builtin_expect((uint32_t)h != FBPF_PERF_RECORD_SAMPLE || size == 0 \
                                 || off + size > rsize || fbpf_ld32(p + 8) < need, 0)) \
                break; \
            char *dst = st_cur; \
            const char *src = p + 12; \
            COPY; \
            FBPF_STAGE_NEXT(st, itemsize); \
            n++; \
            if (__builtin_expect(size != last_size, 0)) { \
                __asm__ volatile(""); \
                last_size = size; \
            } \
            tail += last_size; \
        }

    /* Copy the selected spans of the samples of one perf ring from *tailp
       (up to head and maxn) into out; stops before the first record it does
       not take (LOST, wrapping, shorter than need). *tailp is left there. */
    static Py_ssize_t fbpf_perf_gather(const char *data, uint64_t mask, uint64_t rsize,
                                       uint64_t *tailp, uint64_t head, char *out,
                                       Py_ssize_t itemsize, uint32_t need,
                                       const uint32_t *spans, int nspans, Py_ssize_t maxn) {
        uint64_t tail = *tailp;
        uint32_t last_size = 0;
        Py_ssize_t n = 0;
        FBPF_STAGE(st, out, itemsize);
        FBPF_GATHER_DISPATCH(FBPF_PERF_GATHER_LOOP);
        FBPF_STAGE_FLUSH(st);
        *tailp = tail;
        return n;
    }

    /* Offsets (from cons, to the payload) and lengths of up to maxn
       committed records of a ring buffer from *posp, stopping at a busy
       record, at the producer, or after the record that crosses max_bytes
       past cons; discarded records are skipped. The index stores are staged
       (see FBPF_STAGE): each header's address depends on the previous
       header, and aliasing stores would sit in that chain. With heads, the
       first hsize bytes of each record are copied there too, in the same
       pass; a shorter record ends the walk before it (setting *shortp). */
    static Py_ssize_t fbpf_rb_collect(const char *data, uint64_t mask, const void *prodp,
                                      uint64_t cons, uint64_t *posp, int64_t *offs,
                                      int64_t *lens, Py_ssize_t maxn, uint64_t max_bytes,
                                      char *heads, uint32_t hsize, int *shortp) {
        uint64_t pos = *posp, prod = fbpf_acq64(prodp);
        Py_ssize_t n = 0;
        FBPF_STAGE(so, offs, 8);
        FBPF_STAGE(sl, lens, 8);
        FBPF_STAGE(sh, heads, hsize ? hsize : 8);
        *shortp = 0;
        while (n < maxn) {
            if (pos >= prod) {
                prod = fbpf_acq64(prodp);
                if (pos >= prod) break;
            }
            FBPF_AHEAD(data + (pos & mask));
            uint32_t ln = fbpf_acq32(data + (pos & mask));
            if (ln & FBPF_RB_BUSY_BIT) break;
            if (!(ln & FBPF_RB_DISCARD_BIT)) {
                if (heads) {
                    if (__builtin_expect(ln < hsize, 0)) { *shortp = 1; break; }
                    fbpf_copy(sh_cur, data + (pos & mask) + FBPF_RB_HDR_SZ, hsize);
                    FBPF_STAGE_NEXT(sh, hsize);
                }
                fbpf_put64(so_cur, (int64_t)(pos - cons) + FBPF_RB_HDR_SZ);
                fbpf_put64(sl_cur, ln);
                FBPF_STAGE_NEXT(so, 8);
                FBPF_STAGE_NEXT(sl, 8);
                n++;
            }
            pos += fbpf_rb_step(ln);
            if (pos - cons >= max_bytes) break;
        }
        FBPF_STAGE_FLUSH(so);
        FBPF_STAGE_FLUSH(sl);
        FBPF_STAGE_FLUSH(sh);
        *posp = pos;
        return n;
    }

    /* The perf twin: samples from *posp up to head, stopping at a record
       that is not a sample or would run past lim; offsets are from start
       to the sample's data (after the header and the u32 size). heads,
       hsize and shortp as for fbpf_rb_collect. */
    static Py_ssize_t fbpf_perf_collect(const char *data, uint64_t mask, uint64_t start,
                                        uint64_t lim, uint64_t head, uint64_t *posp,
                                        int64_t *offs, int64_t *sizes, Py_ssize_t maxn,
                                        char *heads, uint32_t hsize, int *shortp) {
        uint64_t pos = *posp;
        Py_ssize_t n = 0;
        FBPF_STAGE(so, offs, 8);
        FBPF_STAGE(ss, sizes, 8);
        FBPF_STAGE(sh, heads, hsize ? hsize : 8);
        *shortp = 0;
        while (pos < head && n < maxn) {
            const char *p = data + (pos & mask);
            FBPF_AHEAD(p);
            const uint64_t h = fbpf_ld64(p);
            const uint32_t size = (uint32_t)(h >> 48);
            if (size == 0 || pos + size > lim || (uint32_t)h != FBPF_PERF_RECORD_SAMPLE)
                break;
            const uint32_t rawsz = fbpf_ld32(p + 8);
            if (heads) {
                if (__builtin_expect(rawsz < hsize, 0)) { *shortp = 1; break; }
                fbpf_copy(sh_cur, p + 12, hsize);
                FBPF_STAGE_NEXT(sh, hsize);
            }
            fbpf_put64(so_cur, (int64_t)(pos - start) + 12);
            fbpf_put64(ss_cur, rawsz);
            FBPF_STAGE_NEXT(so, 8);
            FBPF_STAGE_NEXT(ss, 8);
            n++;
            pos += size;
        }
        FBPF_STAGE_FLUSH(so);
        FBPF_STAGE_FLUSH(ss);
        FBPF_STAGE_FLUSH(sh);
        *posp = pos;
        return n;
    }

    /* Copy the first itemsize bytes of n records (offsets into data, of
       dlen bytes) into out. Returns -1, or the index of the first record that
       is shorter than itemsize or lies outside data. */
    static Py_ssize_t fbpf_gather_prefix(const char *data, uint64_t dlen, const int64_t *offs,
                                         const int64_t *sizes, Py_ssize_t n, char *out,
                                         Py_ssize_t itemsize) {
        const uint32_t spans[3] = {0, 0, (uint32_t)itemsize};
        const int nspans = 1;
        Py_ssize_t i = 0;
        #define FBPF_PREFIX_LOOP(COPY) \
            for (; i < n; i++) { \
                const int64_t o = offs[i]; \
                if (__builtin_expect(o < 0 || sizes[i] < itemsize \
                                     || (uint64_t)o + (uint64_t)itemsize > dlen, 0)) \
                    return i; \
                char *dst = out + i * itemsize; \
                const char *src = data + o; \
                COPY; \
            }
        FBPF_GATHER_DISPATCH(FBPF_PREFIX_LOOP);
        #undef FBPF_PREFIX_LOOP
        return -1;
    }
    static inline double fbpf_monotonic(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
    }
    #define fbpf_np_new(descr, nd, dims, strides, data, flags) \
        PyArray_NewFromDescr(&PyArray_Type, (PyArray_Descr *)(descr), (nd), (dims), \
                             (strides), (data), (flags), NULL)
    #define fbpf_np_set_base(arr, base) \
        PyArray_SetBaseObject((PyArrayObject *)(arr), (base))
    """
    uint32_t RB_BUSY "FBPF_RB_BUSY_BIT"
    uint32_t RB_DISCARD "FBPF_RB_DISCARD_BIT"
    uint32_t RB_HDR "FBPF_RB_HDR_SZ"
    uint32_t PERF_RECORD_LOST "FBPF_PERF_RECORD_LOST"
    uint32_t PERF_RECORD_SAMPLE "FBPF_PERF_RECORD_SAMPLE"
    int PERF_DATA_HEAD "FBPF_PERF_DATA_HEAD"
    int PERF_DATA_TAIL "FBPF_PERF_DATA_TAIL"
    int PERF_DATA_OFFSET "FBPF_PERF_DATA_OFFSET"
    int PERF_DATA_SIZE "FBPF_PERF_DATA_SIZE"
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

    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void *addr, size_t length)
    void *MAP_FAILED
    int PROT_READ, PROT_WRITE, MAP_SHARED

    ctypedef union epoll_data_t:
        uint64_t u64
    cdef struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)
    int EPOLL_CLOEXEC, EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLLIN, EPOLLOUT
    int eventfd(unsigned int initval, int flags)
    int EFD_CLOEXEC, EFD_NONBLOCK

cdef extern from *:
    object _np_new "fbpf_np_new"(PyObject *descr, int nd, cnp.npy_intp *dims,
                                 cnp.npy_intp *strides, void *data, int flags)
    int _np_set_base "fbpf_np_set_base"(object arr, PyObject *base) except -1
    int NPY_ARRAY_WRITEABLE, NPY_ARRAY_ALIGNED


PAGE_SIZE = _mmap.PAGESIZE
cdef uint64_t _PAGE = _mmap.PAGESIZE
cdef uint64_t _EVENTFD_TAG = 0xFFFFFFFFFFFFFFFFULL
cdef object _U8 = _np.dtype(_np.uint8)
cdef object _I64 = _np.dtype(_np.int64)
cdef object _I32 = _np.dtype(_np.int32)


cdef int _high_fd(int fd, str op) except -1:
    """Check a fresh fd and move it to >= 3 (as every fd the library holds)."""
    cdef int nfd
    if fd < 0:
        raise _bpf_error(errno, op)
    if fd < 3:
        nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3)
        c_close(fd)
        if nfd < 0:
            raise _bpf_error(errno, op)
        return nfd
    return fd


# ---------------------------------------------------------------------------
# memory

cdef class _Mapping:
    """One mmap(2) region. Unmapped when the last reference goes, so a numpy
    view of ring memory can never outlive the memory it points at."""
    cdef char *addr
    cdef size_t length

    def __dealloc__(self):
        if self.addr != NULL:
            munmap(self.addr, self.length)
            self.addr = NULL


cdef _Mapping _map(int fd, size_t length, int prot, long offset, str what):
    cdef void *p = mmap(NULL, length, prot, MAP_SHARED, fd, offset)
    if p == MAP_FAILED:
        raise _bpf_error(errno, "mmap", what)
    cdef _Mapping m = _Mapping.__new__(_Mapping)
    m.addr = <char *>p
    m.length = length
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
    cdef object vbatch       # the open view()'s RecordBatch, released by view_end()
    cdef str what

    def __cinit__(self, *args, **kwargs):
        self.epfd = -1
        self.evfd = -1

    cdef int _init_poller(self, str what) except -1:
        self.what = what
        self.epfd = _high_fd(epoll_create1(EPOLL_CLOEXEC), "epoll_create1")
        self.evfd = _high_fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd")
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
        self.busy += 1
        return 0

    cdef void _leave(self):
        self.busy -= 1
        if self.closed and self.busy == 0:
            self._teardown()

    cdef object _lend(self, object batch):
        """Hand out a view() batch; view_end() releases it."""
        if isinstance(batch, RecordBatch):
            self.vbatch = batch
        return batch

    cdef void _release_view(self):
        if self.vbatch is not None:
            (<RecordBatch>self.vbatch)._release()
            self.vbatch = None

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
        return self.epfd

    def close(self):
        """Close the reader. Safe from any thread: a thread blocked in a read
        wakes and gets :class:`ClosedError`. Closing twice is harmless."""
        cdef uint64_t one = 1
        if self.closed:
            return
        self.closed = True
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
                        return arr
                    self._commit(end)
                if not self._wait(deadline):
                    self.held = True
                    self.vend = self.cons
                    self.busy += 1
                    if dtype is None:
                        return RecordBatch(_np.empty(0, _np.uint8), _np.empty(0, _np.int64),
                                           _np.empty(0, _np.int64), None,
                                           None if head_dtype is None else _np.empty(0, head_dtype))
                    return _np.empty(0, _np.dtype(dtype))
        finally:
            self._leave()

    def view_end(self):
        """Consume the records of the open view() batch."""
        if not self.held:
            return
        self.held = False
        self._release_view()
        try:
            self._commit(self.vend)
        finally:
            self._leave()


# ---------------------------------------------------------------------------
# perf event array rings

cdef struct _PerfRing:
    char *meta
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
            m = _map(int(fd), (1 + pages) * _PAGE, PROT_READ | PROT_WRITE, 0,
                     f"perf ring of CPU {self.cpus[i]}")
            self.maps.append(m)
            off = rd64(m.addr + PERF_DATA_OFFSET)
            sz = rd64(m.addr + PERF_DATA_SIZE)
            if sz == 0:     # kernels before 4.1 leave these 0
                off, sz = _PAGE, pages * _PAGE
            self.rings[i].meta = m.addr
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
        rel64(r.meta + PERF_DATA_TAIL, tail)

    def read(self, timeout=None):
        """One sample, copied (a :class:`Record` with ``.cpu``), or None on timeout."""
        cdef int k, i
        cdef _PerfRing *r
        cdef uint64_t head, tail
        cdef uint16_t size
        cdef const char *p
        cdef uint32_t rtype
        deadline = _deadline(timeout)
        self._enter()
        try:
            self._check_not_held()
            while True:
                for k in range(self.nrings):
                    i = (self.next_ring + k) % self.nrings
                    r = &self.rings[i]
                    head = acq64(r.meta + PERF_DATA_HEAD)
                    tail = rd64(r.meta + PERF_DATA_TAIL)
                    while tail < head:
                        p = self._rec(r, tail, &size)
                        tail += size
                        rtype = rd32(p)
                        if rtype == PERF_RECORD_SAMPLE:
                            out = _record(p + 12, rd32(p + 8), r.cpu)
                            self._set_tail(r, tail)
                            self.next_ring = (i + 1) % self.nrings
                            return out
                        if rtype == PERF_RECORD_LOST:
                            r.lost += rd64(p + 16)
                        if size == 0:
                            break
                    self._set_tail(r, tail)
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
            head = acq64(r.meta + PERF_DATA_HEAD)
            tail = rd64(r.meta + PERF_DATA_TAIL)
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
            total += acq64(self.rings[i].meta + PERF_DATA_HEAD) - rd64(self.rings[i].meta + PERF_DATA_TAIL)
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

    cdef void _drain_lost(self):
        """Consume leading non-sample records (LOST) of every ring."""
        cdef int i
        cdef _PerfRing *r
        cdef uint64_t head, tail
        cdef uint16_t size
        cdef const char *p
        cdef uint32_t rtype
        for i in range(self.nrings):
            r = &self.rings[i]
            head = acq64(r.meta + PERF_DATA_HEAD)
            tail = rd64(r.meta + PERF_DATA_TAIL)
            while tail < head:
                p = r.data + (tail & r.mask)
                rtype = rd32(p)
                size = rd16(p + 6)
                if rtype == PERF_RECORD_SAMPLE or size == 0:
                    break
                if rtype == PERF_RECORD_LOST:
                    # A LOST record is 8 + 8 + 8 bytes: 8-aligned, never split
                    # across the end except between fields; read it whole.
                    p = self._rec(r, tail, &size)
                    r.lost += rd64(p + 16)
                tail += size
            self._set_tail(r, tail)

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
                for k in range(self.nrings):
                    i = (self.next_ring + k) % self.nrings
                    r = &self.rings[i]
                    head = acq64(r.meta + PERF_DATA_HEAD)
                    tail = rd64(r.meta + PERF_DATA_TAIL)
                    # skip leading LOST records, counting them
                    while tail < head:
                        p = r.data + (tail & r.mask)
                        if ld32(p) == PERF_RECORD_SAMPLE:
                            break
                        p = self._rec(r, tail, &size)
                        if ld32(p) == PERF_RECORD_LOST:
                            r.lost += ld64(p + 16)
                        tail += size
                        if size == 0:
                            tail = head
                    self._set_tail(r, tail)
                    if tail >= head:
                        continue
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
                        return _view(self.maps[i], <char *>base_p + 12, dt, 1, n, stride, False)
                    buf = _view(self.maps[i], <char *>base_p, _U8, 1, <cnp.npy_intp>(pos - start), 1, False)
                    return self._lend(RecordBatch(buf, offs_a[:n], sizes_a[:n], _full_i32(n, r.cpu),
                                                  None if hdt is None else heads[:n]))
                if not self._wait(deadline):
                    self._hold(-1, 0)
                    if fixed:
                        return _np.empty(0, dt)
                    return RecordBatch(_np.empty(0, _np.uint8), _np.empty(0, _np.int64),
                                       _np.empty(0, _np.int64), _np.empty(0, _np.int32),
                                       None if hdt is None else _np.empty(0, hdt))
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
            if self._view_ring >= 0 and self.nrings:
                self._set_tail(&self.rings[self._view_ring], self._view_tail)
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
                    raise BlockingIOError(EAGAIN, f"user ring buffer full: {size} bytes "
                                                  f"requested, {self.size - (self.prod - cons)} free")
                # EPOLLOUT says "some room", not "this much room": after a
                # wakeup that did not free enough, back off instead of spinning.
                with nogil:
                    usleep(1000)
                if not self._wait(deadline):
                    raise BlockingIOError(EAGAIN, f"user ring buffer full: {size} bytes "
                                                  f"requested, {self.size - (self.prod - cons)} free")
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
