/* C baseline for the map benchmarks: the same bpf(2) calls fastbpf makes,
 * issued from C with no library. Prints one JSON object: ns per operation.
 *
 *   maps <op> <n> <reps>
 *
 * <op> is one of lookup, update, contains, percpu_lookup, percpu_sum, items,
 * batch. percpu_sum adds up every CPU's value of the looked-up key.
 * Each op is timed <reps> times over <n> elements (entries for items and
 * batch) and the best time is printed, so bench_maps.py can interleave short
 * C and Python samples op by op. Every single-element loop uses its result,
 * as the Python loops do (s += m[k], if k in m). The items walk is the
 * classic iteration over a map: BPF_MAP_GET_NEXT_KEY from the previous key,
 * then a lookup of that key.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/bpf.h>

static long sys_bpf(int cmd, union bpf_attr *a) { return syscall(__NR_bpf, cmd, a, sizeof(*a)); }

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);   /* CPU time: see bench_maps.py */
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int map_create(int type, int ks, int vs, int n) {
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_type = type; a.key_size = ks; a.value_size = vs; a.max_entries = n;
    int fd = sys_bpf(BPF_MAP_CREATE, &a);
    if (fd < 0) { perror("map_create"); exit(1); }
    return fd;
}

static int elem(int cmd, int fd, void *k, void *v, uint64_t flags) {
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_fd = fd; a.key = (uint64_t)(uintptr_t)k; a.value = (uint64_t)(uintptr_t)v; a.flags = flags;
    return sys_bpf(cmd, &a);
}

static int ncpus(void) {
    FILE *f = fopen("/sys/devices/system/cpu/possible", "r");
    int a = 0, b = 0;
    if (!f) return 1;
    if (fscanf(f, "%d-%d", &a, &b) < 2) b = a;
    fclose(f);
    return b + 1;
}

static volatile uint64_t sink;

#define BEST(var, ...) do { \
    uint64_t t0_ = now_ns(); __VA_ARGS__; uint64_t d_ = now_ns() - t0_; \
    if ((double)d_ < var) var = (double)d_; } while (0)

int main(int argc, char **argv) {
    const char *op = argc > 1 ? argv[1] : "lookup";
    long n = argc > 2 ? atol(argv[2]) : 20000;
    int reps = argc > 3 ? atoi(argv[3]) : 3;
    double best = 1e30, best2 = 1e30;
    uint32_t k; uint64_t v;

    if (!strcmp(op, "lookup") || !strcmp(op, "update") || !strcmp(op, "contains")) {
        /* a u32 -> u64 hash holding keys 0..4095 */
        int h = map_create(BPF_MAP_TYPE_HASH, 4, 8, 1 << 20);
        for (long i = 0; i < 4096; i++) { k = i; v = i; elem(BPF_MAP_UPDATE_ELEM, h, &k, &v, 0); }
        for (int r = 0; r < reps; r++) {
            if (!strcmp(op, "update")) BEST(best, {
                for (long i = 0; i < n; i++) {
                    k = i & 4095; v = i;
                    if (elem(BPF_MAP_UPDATE_ELEM, h, &k, &v, 0)) { perror("update"); return 1; }
                }
            });
            else if (!strcmp(op, "lookup")) BEST(best, {
                uint64_t s = 0;
                for (long i = 0; i < n; i++) {
                    k = i & 4095;
                    if (elem(BPF_MAP_LOOKUP_ELEM, h, &k, &v, 0)) { perror("lookup"); return 1; }
                    s += v;
                }
                sink += s;
            });
            else BEST(best, {       /* keys 0..8191: half are there */
                long found = 0;
                for (long i = 0; i < n; i++) {
                    k = i & 8191;
                    if (elem(BPF_MAP_LOOKUP_ELEM, h, &k, &v, 0) == 0) found++;
                    else if (errno != ENOENT) { perror("contains"); return 1; }
                }
                sink += found;
            });
        }
        printf("{\"%s\": %.2f}\n", op, best / n);
    } else if (!strcmp(op, "percpu_lookup") || !strcmp(op, "percpu_sum")) {
        int nc = ncpus();
        int pa = map_create(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 256);
        uint64_t *pv = calloc(nc, 8);
        if (!strcmp(op, "percpu_lookup")) for (int r = 0; r < reps; r++) BEST(best, {
            uint64_t s = 0;
            for (long i = 0; i < n; i++) {
                k = i & 255;
                if (elem(BPF_MAP_LOOKUP_ELEM, pa, &k, pv, 0)) { perror("percpu lookup"); return 1; }
                s += pv[0];
            }
            sink += s;
        });
        else for (int r = 0; r < reps; r++) BEST(best, {   /* a counter's total */
            uint64_t s = 0;
            for (long i = 0; i < n; i++) {
                k = i & 255;
                if (elem(BPF_MAP_LOOKUP_ELEM, pa, &k, pv, 0)) { perror("percpu lookup"); return 1; }
                for (int c = 0; c < nc; c++) s += pv[c];
            }
            sink += s;
        });
        printf("{\"%s\": %.2f}\n", op, best / n);
    } else if (!strcmp(op, "items")) {
        int hw = map_create(BPF_MAP_TYPE_HASH, 4, 8, n);
        for (long i = 0; i < n; i++) {
            k = i; v = i;
            if (elem(BPF_MAP_UPDATE_ELEM, hw, &k, &v, 0)) { perror("walk fill"); return 1; }
        }
        for (int r = 0; r < reps; r++) BEST(best, {
            uint32_t cur = 0, next;
            long seen = 0;
            int first = 1;
            while (elem(BPF_MAP_GET_NEXT_KEY, hw, first ? NULL : &cur, &next, 0) == 0) {
                if (elem(BPF_MAP_LOOKUP_ELEM, hw, &next, &v, 0) == 0) { sink += v; seen++; }
                cur = next; first = 0;
            }
            if (seen != n) { fprintf(stderr, "walk saw %ld\n", seen); return 1; }
        });
        printf("{\"items\": %.2f}\n", best / n);
    } else if (!strcmp(op, "batch")) {
        int hb = map_create(BPF_MAP_TYPE_HASH, 4, 8, n);
        uint32_t *keys = malloc(n * 4), *okeys = malloc(n * 4);
        uint64_t *vals = malloc(n * 8), *ovals = malloc(n * 8);
        for (long i = 0; i < n; i++) { keys[i] = i; vals[i] = i * 3; }
        union bpf_attr a;
        for (int r = 0; r < reps; r++) {
            BEST(best, {
                memset(&a, 0, sizeof(a));
                a.batch.map_fd = hb; a.batch.keys = (uint64_t)(uintptr_t)keys;
                a.batch.values = (uint64_t)(uintptr_t)vals; a.batch.count = n;
                if (sys_bpf(BPF_MAP_UPDATE_BATCH, &a)) { perror("update_batch"); return 1; }
            });
            long total = 0;
            BEST(best2, {
                uint32_t in_tok = 0, out_tok = 0;
                int first = 1;
                while (total < n) {
                    memset(&a, 0, sizeof(a));
                    a.batch.map_fd = hb;
                    a.batch.in_batch = first ? 0 : (uint64_t)(uintptr_t)&in_tok;
                    a.batch.out_batch = (uint64_t)(uintptr_t)&out_tok;
                    a.batch.keys = (uint64_t)(uintptr_t)(okeys + total);
                    a.batch.values = (uint64_t)(uintptr_t)(ovals + total);
                    a.batch.count = n - total;
                    int rc = sys_bpf(BPF_MAP_LOOKUP_BATCH, &a);
                    total += a.batch.count;
                    if (rc < 0) { if (errno == ENOENT) break; perror("lookup_batch"); return 1; }
                    in_tok = out_tok; first = 0;
                }
            });
            if (total != n) { fprintf(stderr, "lookup_batch got %ld\n", total); return 1; }
        }
        printf("{\"update_batch\": %.0f, \"lookup_batch\": %.0f}\n", best, best2);
    } else {
        fprintf(stderr, "unknown op %s\n", op);
        return 2;
    }
    return 0;
}
