/* C baseline for bench_test_run.py: load a 2-instruction XDP program
 * ("r0 = XDP_PASS; exit") with a raw bpf(2) call, then time N calls of
 * BPF_PROG_TEST_RUN (repeat=1) on a 64-byte packet, with an output buffer
 * like the one fastbpf hands the kernel.
 *
 * No libbpf: the attribute layout is declared here so the file builds with
 * any libc headers.  Usage: test_run N  ->  prints "ns_per_call <float>".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BPF_PROG_LOAD 5
#define BPF_PROG_TEST_RUN 10
#define BPF_PROG_TYPE_XDP 6

struct insn { uint8_t code; uint8_t regs; int16_t off; int32_t imm; };

union attr {
    struct {                       /* BPF_PROG_LOAD (prefix) */
        uint32_t prog_type, insn_cnt;
        uint64_t insns, license;
        uint32_t log_level, log_size;
        uint64_t log_buf;
        uint32_t kern_version, prog_flags;
        char prog_name[16];
    } load;
    struct {                       /* BPF_PROG_TEST_RUN */
        uint32_t prog_fd, retval, data_size_in, data_size_out;
        uint64_t data_in, data_out;
        uint32_t repeat, duration, ctx_size_in, ctx_size_out;
        uint64_t ctx_in, ctx_out;
        uint32_t flags, cpu, batch_size;
    } test;
    char pad[160];
};

static long sys_bpf(int cmd, union attr *a) { return syscall(SYS_bpf, cmd, a, sizeof(*a)); }

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);   /* CPU time: see bench_maps.py */
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    struct insn prog[2] = {
        {0xb7, 0x00, 0, 2},            /* r0 = 2 (XDP_PASS) */
        {0x95, 0x00, 0, 0},            /* exit */
    };
    union attr a;
    memset(&a, 0, sizeof(a));
    a.load.prog_type = BPF_PROG_TYPE_XDP;
    a.load.insn_cnt = 2;
    a.load.insns = (uint64_t)(uintptr_t)prog;
    a.load.license = (uint64_t)(uintptr_t)"GPL";
    long fd = sys_bpf(BPF_PROG_LOAD, &a);
    if (fd < 0) { fprintf(stderr, "prog load: %s\n", strerror(errno)); return 1; }

    unsigned char pkt[64], out[64 + 512];
    memset(pkt, 0xab, sizeof(pkt));
    double t0 = 0;
    for (long i = -n / 10; i < n; i++) {       /* the first tenth warms up */
        if (i == 0) t0 = now_ns();
        memset(&a, 0, sizeof(a));
        a.test.prog_fd = (uint32_t)fd;
        a.test.data_in = (uint64_t)(uintptr_t)pkt;
        a.test.data_size_in = sizeof(pkt);
        a.test.data_out = (uint64_t)(uintptr_t)out;
        a.test.data_size_out = sizeof(out);
        a.test.repeat = 1;
        if (sys_bpf(BPF_PROG_TEST_RUN, &a) < 0 || a.test.retval != 2) {
            fprintf(stderr, "test run: %s (retval %u)\n", strerror(errno), a.test.retval);
            return 1;
        }
    }
    double t1 = now_ns();
    printf("ns_per_call %.1f\n", (t1 - t0) / n);
    close((int)fd);
    return 0;
}
