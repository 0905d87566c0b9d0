/* C baseline for bench/bench_rings.py: libbpf's callback readers.
 *
 *   rings ringbuf|perf MAP_ID PROG_ID RECORDS REPS PAGE_CNT [FILL_CPU]
 *
 * Opens the map and the filler program the Python bench created (by id),
 * then REPS times: fills the ring with RECORDS records (one BPF_PROG_TEST_RUN
 * with repeat=RECORDS, not timed) and times draining them with
 * ring_buffer__poll / perf_buffer__poll and a callback that sums the first
 * u64 of each record. Prints one line per rep: "<ns> <records> <sum>".
 * The reader runs on CPU 0. With FILL_CPU >= 0 the fills run in a forked
 * child pinned to that CPU, which the reader waits for by spinning on shared
 * memory (no system call, no context switch on the reader's CPU), like
 * bench_rings.py does; otherwise the reader fills on CPU 0 itself.
 */
#include "ring_common.h" /* first: it defines _GNU_SOURCE */

#include <errno.h>
#include <string.h>

static void pb_lost(void *ctx, int cpu, __u64 cnt)
{
	struct acc *a = ctx;
	(void)cpu;
	a->lost += cnt;
}

int main(int argc, char **argv)
{
	if (argc < 7) {
		fprintf(stderr, "usage: %s ringbuf|perf MAP_ID PROG_ID RECORDS REPS PAGE_CNT [FILL_CPU]\n", argv[0]);
		return 2;
	}
	int perf = strcmp(argv[1], "perf") == 0;
	int map_fd = bpf_map_get_fd_by_id(atoi(argv[2]));
	int prog_fd = bpf_prog_get_fd_by_id(atoi(argv[3]));
	int n = atoi(argv[4]), reps = atoi(argv[5]);
	size_t page_cnt = strtoul(argv[6], NULL, 0);
	int fill_cpu = argc > 7 ? atoi(argv[7]) : -1;
	if (map_fd < 0 || prog_fd < 0) {
		fprintf(stderr, "open by id: %s\n", strerror(errno));
		return 1;
	}
	pid_t child = -1;
	if (fill_cpu >= 0 && (child = start_filler(prog_fd, n, fill_cpu)) < 0) {
		fprintf(stderr, "filler: %s\n", strerror(errno));
		return 1;
	}
	pin(0);

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
		if (child > 0)
			remote_fill();
		else if (fill(prog_fd, n)) {
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
	if (child > 0)
		stop_filler(child);
	ring_buffer__free(rb);
	perf_buffer__free(pb);
	return 0;
}
