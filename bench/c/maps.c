/* C baseline for the map benchmarks: the same bpf(2) calls fastbpf makes,
 * issued from C with no library. Prints one JSON object: ns per operation.
 *
 *   maps <n_single> <n_batch>
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
    clock_gettime(CLOCK_MONOTONIC, &ts);
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

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200000;
    long nb = argc > 2 ? atol(argv[2]) : 1000000;
    uint64_t t0, t1;
    volatile uint64_t sink = 0;

    /* single update and lookup on a u32 -> u64 hash, keys 0..4095 */
    int h = map_create(BPF_MAP_TYPE_HASH, 4, 8, 1 << 20);
    uint32_t k; uint64_t v;
    t0 = now_ns();
    for (long i = 0; i < n; i++) {
        k = i & 4095; v = i;
        if (elem(BPF_MAP_UPDATE_ELEM, h, &k, &v, 0)) { perror("update"); return 1; }
    }
    t1 = now_ns();
    double update_ns = (double)(t1 - t0) / n;
    t0 = now_ns();
    for (long i = 0; i < n; i++) {
        k = i & 4095;
        if (elem(BPF_MAP_LOOKUP_ELEM, h, &k, &v, 0)) { perror("lookup"); return 1; }
        sink += v;
    }
    t1 = now_ns();
    double lookup_ns = (double)(t1 - t0) / n;
    close(h);

    /* per-CPU array lookup, u64 values */
    int nc = ncpus();
    int pa = map_create(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 256);
    uint64_t *pv = calloc(nc, 8);
    t0 = now_ns();
    for (long i = 0; i < n; i++) {
        k = i & 255;
        if (elem(BPF_MAP_LOOKUP_ELEM, pa, &k, pv, 0)) { perror("percpu lookup"); return 1; }
        sink += pv[0];
    }
    t1 = now_ns();
    double percpu_ns = (double)(t1 - t0) / n;
    close(pa);

    /* batch update and lookup of nb entries */
    int hb = map_create(BPF_MAP_TYPE_HASH, 4, 8, nb);
    uint32_t *keys = malloc(nb * 4);
    uint64_t *vals = malloc(nb * 8);
    uint32_t *okeys = malloc(nb * 4);
    uint64_t *ovals = malloc(nb * 8);
    for (long i = 0; i < nb; i++) { keys[i] = i; vals[i] = i * 3; }
    union bpf_attr a;
    double best_update = 1e30, best_lookup = 1e30;
    for (int rep = 0; rep < 2; rep++) {
        memset(&a, 0, sizeof(a));
        a.batch.map_fd = hb; a.batch.keys = (uint64_t)(uintptr_t)keys;
        a.batch.values = (uint64_t)(uintptr_t)vals; a.batch.count = nb;
        t0 = now_ns();
        if (sys_bpf(BPF_MAP_UPDATE_BATCH, &a)) { perror("update_batch"); return 1; }
        t1 = now_ns();
        if ((double)(t1 - t0) < best_update) best_update = (double)(t1 - t0);

        uint32_t in_tok = 0, out_tok = 0;
        long total = 0;
        int first = 1;
        t0 = now_ns();
        while (total < nb) {
            memset(&a, 0, sizeof(a));
            a.batch.map_fd = hb;
            a.batch.in_batch = first ? 0 : (uint64_t)(uintptr_t)&in_tok;
            a.batch.out_batch = (uint64_t)(uintptr_t)&out_tok;
            a.batch.keys = (uint64_t)(uintptr_t)(okeys + total);
            a.batch.values = (uint64_t)(uintptr_t)(ovals + total);
            a.batch.count = nb - total;
            int r = sys_bpf(BPF_MAP_LOOKUP_BATCH, &a);
            total += a.batch.count;
            if (r < 0) { if (errno == ENOENT) break; perror("lookup_batch"); return 1; }
            in_tok = out_tok; first = 0;
        }
        t1 = now_ns();
        if (total != nb) { fprintf(stderr, "lookup_batch got %ld\n", total); return 1; }
        if ((double)(t1 - t0) < best_lookup) best_lookup = (double)(t1 - t0);
    }
    printf("{\"lookup\": %.1f, \"update\": %.1f, \"percpu_lookup\": %.1f, "
           "\"update_batch\": %.0f, \"lookup_batch\": %.0f, \"sink\": %llu}\n",
           lookup_ns, update_ns, percpu_ns, best_update, best_lookup,
           (unsigned long long)sink);
    return 0;
}
