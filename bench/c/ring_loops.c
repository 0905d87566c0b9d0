/* The drain loops alone, in C: libbpf's callback loop, fastbpf's copy loop
 * (fastbpf/_ring_loops.h, the C the _ring module runs) and a bare header
 * walk, prefetching like fastbpf's, that sums each record's first u64 (about
 * the floor: every reader has to pull the ring's lines from the producer's
 * CPU). No Python is involved, which separates the cost of the loops from the
 * cost of the calls around them.
 *
 *   ring_loops ringbuf|perf MAP_ID PROG_ID RECORDS REPS BYTES
 *
 * BYTES: the ring buffer's data size, or the perf ring size per CPU. The
 * fills run in a forked child pinned to CPU 1, the reader on CPU 0 (as in
 * rings.c). Prints "<mode> <median ns/record> <min ns/record>" per mode.
 */
#include "ring_common.h" /* first: it defines _GNU_SOURCE */

#include <linux/perf_event.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include "_ring_loops.h"

#define MODES 3
#define CHUNK 16384 /* records per fastbpf loop call, as read_batch(out=) of 16k */

static const char *mode_names[MODES] = {"libbpf", "fastbpf", "scan"};

static uint64_t chunk[CHUNK];

/* One drain of n ring buffer records; returns the sum of first u64s. */
static uint64_t drain_ringbuf(int mode, struct ring_buffer *rb, struct acc *a, char *cons,
			      const char *prod, uint64_t size, int n, uint64_t *got)
{
	const char *data = prod + 4096;
	uint64_t sum = 0, mask = size - 1;
	*got = 0;
	if (mode == 0) {
		a->sum = a->count = 0;
		while (a->count < (uint64_t)n && ring_buffer__poll(rb, 1000) > 0)
			;
		*got = a->count;
		return a->sum;
	}
	uint64_t pos = fbpf_acq64(cons);
	if (mode == 1) {
		const uint32_t spans[3] = {0, 0, 8};
		int is_short;
		while (*got < (uint64_t)n) {
			Py_ssize_t k = fbpf_rb_gather(data, mask, prod, &pos, (char *)chunk, 8, 8, spans,
						      1, CHUNK, &is_short);
			if (k == 0)
				break;
			for (Py_ssize_t i = 0; i < k; i++)
				sum += chunk[i];
			*got += k;
			fbpf_rel64(cons, pos);
		}
		return sum;
	}
	uint64_t end = fbpf_acq64(prod);
	while (pos < end) {
		const char *hdr = data + (pos & mask);
		FBPF_AHEAD(hdr);
		uint32_t ln = fbpf_acq32(hdr);
		if (ln & FBPF_RB_BUSY_BIT)
			break;
		sum += fbpf_ld64(hdr + FBPF_RB_HDR_SZ);
		(*got)++;
		pos += fbpf_rb_step(ln);
	}
	fbpf_rel64(cons, pos);
	return sum;
}

/* One perf ring per CPU, opened like fastbpf.perf.Reader does. */
struct perf_rings {
	int fds[2];
	char *base[2];
	size_t len;
};

static int perf_open(int map_fd, struct perf_rings *r, uint64_t bytes)
{
	r->len = bytes + 4096;
	for (int c = 0; c < 2; c++) {
		struct perf_event_attr at = {0};
		at.type = PERF_TYPE_SOFTWARE;
		at.config = PERF_COUNT_SW_BPF_OUTPUT;
		at.size = sizeof(at);
		at.sample_type = PERF_SAMPLE_RAW;
		at.sample_period = 1;
		at.wakeup_events = 1;
		r->fds[c] = syscall(__NR_perf_event_open, &at, -1, c, -1, PERF_FLAG_FD_CLOEXEC);
		if (r->fds[c] < 0)
			return -1;
		r->base[c] = mmap(NULL, r->len, PROT_READ | PROT_WRITE, MAP_SHARED, r->fds[c], 0);
		if (r->base[c] == MAP_FAILED || ioctl(r->fds[c], PERF_EVENT_IOC_ENABLE, 0))
			return -1;
		if (bpf_map_update_elem(map_fd, &c, &r->fds[c], 0))
			return -1;
	}
	return 0;
}

static void perf_close(struct perf_rings *r)
{
	for (int c = 0; c < 2; c++) {
		munmap(r->base[c], r->len);
		close(r->fds[c]);
	}
}

/* One drain of n perf samples from CPU 1's ring (modes 1 and 2). */
static uint64_t drain_perf(int mode, struct perf_rings *r, uint64_t bytes, int n, uint64_t *got)
{
	char *meta = r->base[1];
	const char *data = meta + 4096;
	uint64_t mask = bytes - 1, sum = 0;
	uint64_t head = fbpf_acq64(meta + offsetof(struct perf_event_mmap_page, data_head));
	uint64_t tail = fbpf_rd64(meta + offsetof(struct perf_event_mmap_page, data_tail));
	*got = 0;
	if (mode == 1) {
		const uint32_t spans[3] = {0, 0, 8};
		while (*got < (uint64_t)n) {
			Py_ssize_t k = fbpf_perf_gather(data, mask, bytes, &tail, head, (char *)chunk, 8, 8,
							spans, 1, CHUNK);
			if (k == 0) {
				/* a record the loop leaves to the slow path: one that
				 * wraps the ring's end (the library copies it whole) */
				if (tail >= head)
					break;
				uint64_t h = fbpf_ld64(data + (tail & mask)), v = 0;
				for (int b = 0; b < 8; b++)
					v |= (uint64_t)(uint8_t)data[(tail + 12 + b) & mask] << (8 * b);
				if ((uint32_t)h == FBPF_PERF_RECORD_SAMPLE) {
					sum += v;
					(*got)++;
				}
				tail += h >> 48;
				continue;
			}
			for (Py_ssize_t i = 0; i < k; i++)
				sum += chunk[i];
			*got += k;
			fbpf_rel64(meta + offsetof(struct perf_event_mmap_page, data_tail), tail);
		}
		return sum;
	}
	while (tail < head) {
		const char *p = data + (tail & mask);
		FBPF_AHEAD(p);
		uint64_t h = fbpf_ld64(p);
		if ((uint32_t)h == FBPF_PERF_RECORD_SAMPLE) {
			/* (the first u64 of a sample that wraps the ring's end is
			 * not summed: the walk must not read past the mapping) */
			if ((tail & mask) + 20 <= bytes)
				sum += fbpf_ld64(p + 12);
			(*got)++;
		}
		tail += h >> 48;
	}
	fbpf_rel64(meta + offsetof(struct perf_event_mmap_page, data_tail), tail);
	return sum;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: %s ringbuf|perf MAP_ID PROG_ID RECORDS REPS BYTES\n", argv[0]);
		return 2;
	}
	int perf = strcmp(argv[1], "perf") == 0;
	int map_fd = bpf_map_get_fd_by_id(atoi(argv[2]));
	int prog_fd = bpf_prog_get_fd_by_id(atoi(argv[3]));
	int n = atoi(argv[4]), reps = atoi(argv[5]);
	uint64_t bytes = strtoull(argv[6], NULL, 0);
	if (map_fd < 0 || prog_fd < 0 || reps < 1 || reps > 1000) {
		fprintf(stderr, "bad map, program or reps\n");
		return 1;
	}
	pid_t child = start_filler(prog_fd, n, 1);
	if (child < 0)
		return 1;
	pin(0);

	double *ns = calloc((size_t)MODES * reps, sizeof(double));
	struct acc a = {0};
	struct ring_buffer *rb = NULL;
	char *cons = NULL;
	const char *prod = NULL;
	if (!perf) {
		rb = ring_buffer__new(map_fd, rb_cb, &a, NULL);
		cons = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);
		prod = mmap(NULL, 4096 + 2 * bytes, PROT_READ, MAP_SHARED, map_fd, 4096);
		if (!rb || cons == MAP_FAILED || prod == MAP_FAILED) {
			fprintf(stderr, "ring buffer mapping failed\n");
			return 1;
		}
	}
	/* Perf: libbpf's rings and ours stay open; each drain points the map
	 * at the rings of its mode. */
	struct perf_buffer *pb = NULL;
	struct perf_rings pr;
	int lib_fds[2] = {-1, -1};
	if (perf) {
		pb = perf_buffer__new(map_fd, bytes / 4096, pb_cb, NULL, &a, NULL);
		if (!pb || perf_buffer__buffer_cnt(pb) < 2) {
			fprintf(stderr, "perf_buffer__new failed\n");
			return 1;
		}
		for (int c = 0; c < 2; c++)
			lib_fds[c] = perf_buffer__buffer_fd(pb, c);
		if (perf_open(map_fd, &pr, bytes)) {
			perror("perf rings");
			return 1;
		}
	}
	/* rep -1 warms each mode up (page faults of fresh mappings) */
	for (int r = -1; r < reps; r++)
		for (int m = 0; m < MODES; m++) {
			uint64_t got = 0, t0, t1;
			if (perf)
				for (int c = 0; c < 2; c++)
					if (bpf_map_update_elem(map_fd, &c, m == 0 ? &lib_fds[c] : &pr.fds[c], 0))
						return 1;
			remote_fill();
			t0 = now_ns();
			if (!perf) {
				drain_ringbuf(m, rb, &a, cons, prod, bytes, n, &got);
			} else if (m == 0) {
				a.sum = a.count = 0;
				while (a.count < (uint64_t)n && perf_buffer__poll(pb, 1000) > 0)
					;
				got = a.count;
			} else {
				drain_perf(m, &pr, bytes, n, &got);
			}
			t1 = now_ns();
			if (got != (uint64_t)n) {
				fprintf(stderr, "%s got %llu of %d records\n", mode_names[m],
					(unsigned long long)got, n);
				return 1;
			}
			if (r >= 0)
				ns[m * reps + r] = (double)(t1 - t0) / n;
		}
	for (int m = 0; m < MODES; m++) {
		qsort(ns + m * reps, reps, sizeof(double), cmp_double);
		printf("%s %.3f %.3f\n", mode_names[m], ns[m * reps + reps / 2], ns[m * reps]);
	}
	stop_filler(child);
	ring_buffer__free(rb);
	if (perf) {
		perf_buffer__free(pb);
		perf_close(&pr);
	}
	return 0;
}
