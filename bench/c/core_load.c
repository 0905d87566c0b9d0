/* Baseline for bench/bench_core.py: libbpf opens and loads a CO-RE object
 * (bpf_object__open_file + bpf_object__load, which parses vmlinux BTF,
 * relocates every CO-RE record and loads every program), then closes it.
 * With "open" as the third argument it stops after bpf_object__open_file
 * (parse the ELF only). Prints one JSON line: per-iteration times in ms.
 * Build: gcc -O2 -o core_load core_load.c -lbpf */
#include <bpf/libbpf.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, ap) : 0;
}

int main(int argc, char **argv)
{
	const char *path = argv[1];
	int iters = argc > 2 ? atoi(argv[2]) : 10;
	int open_only = argc > 3 && !strcmp(argv[3], "open");

	libbpf_set_print(quiet);
	printf("{\"times_ms\": [");
	for (int i = 0; i < iters; i++) {
		double t0 = now_ms();
		struct bpf_object *obj = bpf_object__open_file(path, NULL);

		if (!obj) {
			fprintf(stderr, "open %s failed\n", path);
			return 1;
		}
		if (!open_only && bpf_object__load(obj)) {
			fprintf(stderr, "load %s failed\n", path);
			return 1;
		}
		double t1 = now_ms();

		bpf_object__close(obj);
		printf("%s%.4f", i ? ", " : "", t1 - t0);
	}
	printf("]}\n");
	return 0;
}
