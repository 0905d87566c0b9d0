/* Baseline for bench/bench_load.py: libbpf opens (parses) an object, or
 * opens, loads and closes it, as fastbpf's load_collection_spec and
 * load_collection(...).close() do. Prints one JSON line of per-iteration
 * times in milliseconds (thread CPU time).
 * Build: gcc -O2 -o load_obj load_obj.c -lbpf
 * Usage: load_obj OBJECT ITERATIONS open|load */
#include <bpf/libbpf.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Per-thread CPU time (user + system, so the kernel's verifier counts):
 * the machine is shared, and wall time there measures the neighbours. */
static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_WARN)
		return vfprintf(stderr, fmt, ap);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s OBJECT ITERATIONS open|load\n", argv[0]);
		return 2;
	}
	const char *path = argv[1];
	int iters = atoi(argv[2]);
	int load = strcmp(argv[3], "load") == 0;

	libbpf_set_print(quiet);
	printf("{\"times_ms\": [");
	for (int i = 0; i < iters; i++) {
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
		bpf_object__close(obj);
		printf("%s%.4f", i ? ", " : "", now_ms() - t0);
	}
	printf("]}\n");
	return 0;
}
