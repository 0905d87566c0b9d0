/* What the ring benchmarks' C programs share (rings.c, ring_loops.c): the
 * libbpf callbacks that sum each record's first u64, a clock, CPU pinning,
 * and the filler: a forked child pinned to another CPU that runs the filler
 * program on request (a byte on a pipe) and reports each finished fill in
 * shared memory, where the reader spins for it (no system call, no context
 * switch on the reader's CPU between fill and drain). */
#ifndef FASTBPF_RING_COMMON_H
#define FASTBPF_RING_COMMON_H

#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct acc {
	uint64_t sum;
	uint64_t count;
	uint64_t lost;
};

static int rb_cb(void *ctx, void *data, size_t size)
{
	struct acc *a = ctx;
	(void)size;
	a->sum += *(const uint64_t *)data;
	a->count++;
	return 0;
}

static void pb_cb(void *ctx, int cpu, void *data, __u32 size)
{
	struct acc *a = ctx;
	(void)cpu;
	(void)size;
	a->sum += *(const uint64_t *)data;
	a->count++;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

/* One BPF_PROG_TEST_RUN of the filler program: n records. */
static int fill(int prog_fd, int n)
{
	char pkt[64] = {0};
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt, .data_size_in = sizeof(pkt),
		    .repeat = n);
	return bpf_prog_test_run_opts(prog_fd, &opts);
}

static volatile uint64_t *fills_done;
static uint64_t fills_asked;
static int fill_req[2];

/* Fork the filler, pinned to cpu; returns its pid, or -1. */
static pid_t start_filler(int prog_fd, int n, int cpu)
{
	fills_done = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (fills_done == MAP_FAILED || pipe(fill_req))
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		char c;
		pin(cpu);
		close(fill_req[1]);
		while (read(fill_req[0], &c, 1) == 1 && c == 'f') {
			if (fill(prog_fd, n))
				_exit(1);
			__atomic_fetch_add(fills_done, 1, __ATOMIC_RELEASE);
		}
		_exit(0);
	}
	close(fill_req[0]);
	return pid;
}

/* Ask the filler for one fill and wait for it. */
static void remote_fill(void)
{
	if (write(fill_req[1], "f", 1) != 1)
		abort();
	fills_asked++;
	for (unsigned long spins = 1; __atomic_load_n(fills_done, __ATOMIC_ACQUIRE) != fills_asked; spins++) {
		if (spins % 100000000 == 0 && waitpid(-1, NULL, WNOHANG) > 0) {
			fprintf(stderr, "the filler process died\n");
			exit(1);
		}
	}
}

/* End the filler: it exits when the pipe closes. */
static void stop_filler(pid_t pid)
{
	close(fill_req[1]);
	waitpid(pid, NULL, 0);
}

#endif
