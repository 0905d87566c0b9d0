/* Baseline of bench/bench_load.py and bench/bench_core.py: libbpf opens
 * (parses) an object, or opens, loads and closes it, as fastbpf's
 * load_collection_spec and load_collection(...).close() do.
 *
 * Usage: load_obj OBJECT ITERATIONS MODE [CLOCK]
 *        load_obj OBJECT serve
 *   MODE   open        bpf_object__open_file + bpf_object__close
 *          load        open + bpf_object__load + close, all timed
 *          load-open   open + load timed, the close after the clock stops
 *   CLOCK  thread      per-thread CPU time (default: the machine is shared,
 *                      and wall time there measures the neighbours)
 *          process     CPU time of all the process's threads
 *                      (CLOCK_PROCESS_CPUTIME_ID: the clock fastbpf's
 *                      parallel load is read with; libbpf loads from one
 *                      thread, so here it matches `thread`)
 *          wall        CLOCK_MONOTONIC
 * Prints one JSON line: per-iteration times and the thread's system
 * (in-kernel) CPU time of each iteration, both in milliseconds.
 * `serve` reads requests "ITERATIONS MODE CLOCK SETTLE_US" from stdin, one
 * per line, and answers each with that JSON line, until end of input: one
 * process (libbpf's feature probes made once) serves a whole benchmark run.
 * SETTLE_US is a pause before each iteration, outside the clock, for the
 * kernel's deferred frees of the previous iteration's objects.
 * Build: gcc -O2 -o load_obj load_obj.c -lbpf */
#define _GNU_SOURCE
#include <bpf/libbpf.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static clockid_t clock_id = CLOCK_THREAD_CPUTIME_ID;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(clock_id, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The calling thread's system CPU time: the kernel's share (BTF load, map
 * creation, the verifier) measured the same way on both sides. */
static double sys_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return ru.ru_stime.tv_sec * 1e3 + ru.ru_stime.tv_usec / 1e3;
}

static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, ap) : 0;
}

static int set_clock(const char *name)
{
	if (strcmp(name, "wall") == 0)
		clock_id = CLOCK_MONOTONIC;
	else if (strcmp(name, "process") == 0)
		clock_id = CLOCK_PROCESS_CPUTIME_ID;
	else if (strcmp(name, "thread") == 0)
		clock_id = CLOCK_THREAD_CPUTIME_ID;
	else {
		fprintf(stderr, "unknown clock %s\n", name);
		return -1;
	}
	return 0;
}

/* ITERS open(+load)+close cycles of PATH; one JSON line on stdout. */
static int run(const char *path, int iters, const char *mode, int settle_us)
{
	int load = strncmp(mode, "load", 4) == 0;
	int close_timed = strcmp(mode, "load-open") != 0;
	double *times = calloc(iters > 0 ? iters : 1, sizeof(double));
	double *sys = calloc(iters > 0 ? iters : 1, sizeof(double));

	if (!times || !sys)
		return 1;
	for (int i = 0; i < iters; i++) {
		if (settle_us > 0)
			usleep(settle_us);
		double s0 = sys_ms();
		double t0 = now_ms();
		struct bpf_object *obj = bpf_object__open_file(path, NULL);

		if (!obj) {
			fprintf(stderr, "open %s failed\n", path);
			return 1;
		}
		if (load && bpf_object__load(obj)) {
			fprintf(stderr, "load %s failed\n", path);
			return 1;
		}
		double t1 = now_ms();

		bpf_object__close(obj);
		if (close_timed)
			t1 = now_ms();
		times[i] = t1 - t0;
		sys[i] = sys_ms() - s0;
	}
	printf("{\"times_ms\": [");
	for (int i = 0; i < iters; i++)
		printf("%s%.4f", i ? ", " : "", times[i]);
	printf("], \"sys_ms\": [");
	for (int i = 0; i < iters; i++)
		printf("%s%.4f", i ? ", " : "", sys[i]);
	printf("]}\n");
	fflush(stdout);
	free(times);
	free(sys);
	return 0;
}

int main(int argc, char **argv)
{
	libbpf_set_print(quiet);
	if (argc == 3 && strcmp(argv[2], "serve") == 0) {
		char mode[32], clock[32];
		int iters, settle_us;

		while (scanf("%d %31s %31s %d", &iters, mode, clock, &settle_us) == 4) {
			if (set_clock(clock) || run(argv[1], iters, mode, settle_us))
				return 1;
		}
		return 0;
	}
	if (argc < 4) {
		fprintf(stderr, "usage: %s OBJECT ITERATIONS open|load|load-open [thread|process|wall]\n"
			"       %s OBJECT serve\n", argv[0], argv[0]);
		return 2;
	}
	if (argc > 4 && set_clock(argv[4]))
		return 2;
	return run(argv[1], atoi(argv[2]), argv[3], 0);
}
