/* The C of fastbpf's ring readers: memory-ordered loads and stores of ring
 * positions, record copies, and the drain loops (the BPF ring buffer's and the
 * perf rings'), with no Python in them.
 *
 * fastbpf/_ring.pyx declares and calls these; bench/bench_ring_loops.py
 * compiles bench/c/ring_loops.c against this same file, so the loops the
 * benchmark times in C are the ones the module runs. Everything here is
 * static inline (or static): each includer gets its own copy, inlined.
 * Build with -fno-tree-loop-distribute-patterns (setup.py does, for _ring):
 * GCC would otherwise turn the record-copy word loops back into memcpy calls.
 *
 * Layouts: see fastbpf/_ring.pyx's docstring; the perf_event_mmap_page
 * offsets are declared in fastbpf/_abi.pxd (the callers pass the page's
 * fields), the record formats here.
 */
#ifndef FASTBPF_RING_LOOPS_H
#define FASTBPF_RING_LOOPS_H

#include <stddef.h>
#include <sys/types.h>
#ifndef Py_PYTHON_H
/* outside CPython (the C benchmark): Py_ssize_t is ssize_t, as in pyport.h */
typedef ssize_t Py_ssize_t;
#endif

#include <stdint.h>
#include <time.h>
#include <string.h>

#define FBPF_RB_BUSY_BIT    (1U << 31)
#define FBPF_RB_DISCARD_BIT (1U << 30)
#define FBPF_RB_HDR_SZ      8
#define FBPF_PERF_RECORD_LOST   2
#define FBPF_PERF_RECORD_SAMPLE 9

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

#endif /* FASTBPF_RING_LOOPS_H */
