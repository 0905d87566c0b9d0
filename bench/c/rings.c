/* C baseline for bench/bench_rings.py: libbpf's callback readers.
 *
 *   rings ringbuf|perf MAP_ID PROG_ID RECORDS REPS [PAGE_CNT]
 *
 * Opens the map and the filler program the Python bench created (by id),
 * then REPS times: fills the ring with RECORDS records (one BPF_PROG_TEST_RUN
 * with repeat=RECORDS, not timed) and times draining them with
 * ring_buffer__poll / perf_buffer__poll and a callback that sums the first
 * u64 of each record. Prints one line per rep: "<ns> <records> <sum>".
 * The process pins itself to CPU 0 so perf samples land in one ring.
 */
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static void pb_lost(void *ctx, int cpu, __u64 cnt)
{
	struct acc *a = ctx;
	(void)cpu;
	a->lost += cnt;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int fill(int prog_fd, int n)
{
	char pkt[64] = {0};
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt, .data_size_in = sizeof(pkt),
		    .repeat = n);
	return bpf_prog_test_run_opts(prog_fd, &opts);
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: %s ringbuf|perf MAP_ID PROG_ID RECORDS REPS [PAGE_CNT]\n", argv[0]);
		return 2;
	}
	int perf = strcmp(argv[1], "perf") == 0;
	int map_fd = bpf_map_get_fd_by_id(atoi(argv[2]));
	int prog_fd = bpf_prog_get_fd_by_id(atoi(argv[3]));
	int n = atoi(argv[4]), reps = atoi(argv[5]);
	size_t page_cnt = argc > 6 ? strtoul(argv[6], NULL, 0) : 256;
	if (map_fd < 0 || prog_fd < 0) {
		fprintf(stderr, "open by id: %s\n", strerror(errno));
		return 1;
	}
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	sched_setaffinity(0, sizeof(set), &set);

	struct acc a = {0};
	struct ring_buffer *rb = NULL;
	struct perf_buffer *pb = NULL;
	if (perf)
		pb = perf_buffer__new(map_fd, page_cnt, pb_cb, pb_lost, &a, NULL);
	else
		rb = ring_buffer__new(map_fd, rb_cb, &a, NULL);
	if (!rb && !pb) {
		fprintf(stderr, "reader: %s\n", strerror(errno));
		return 1;
	}
	for (int r = 0; r < reps; r++) {
		a.count = a.sum = 0;
		if (fill(prog_fd, n)) {
			fprintf(stderr, "test_run: %s\n", strerror(errno));
			return 1;
		}
		uint64_t t0 = now_ns();
		while (a.count < (uint64_t)n) {
			int err = perf ? perf_buffer__poll(pb, 1000) : ring_buffer__poll(rb, 1000);
			if (err < 0) {
				fprintf(stderr, "poll: %d\n", err);
				return 1;
			}
			if (err == 0 && a.count < (uint64_t)n)
				break; /* timed out: records were dropped */
		}
		uint64_t t1 = now_ns();
		printf("%llu %llu %llu\n", (unsigned long long)(t1 - t0),
		       (unsigned long long)a.count, (unsigned long long)a.sum);
	}
	ring_buffer__free(rb);
	perf_buffer__free(pb);
	return 0;
}
