/* Baseline for bench/bench_btf.py: libbpf parses a BTF file and finds
 * struct task_struct, as fastbpf's Spec.parse + type_by_name do.
 * Prints one JSON line: per-iteration times in milliseconds.
 * Build: gcc -O2 -o btf_parse btf_parse.c -lbpf */
#include <bpf/btf.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/sys/kernel/btf/vmlinux";
	int iters = argc > 2 ? atoi(argv[2]) : 20;
	const char *name = argc > 3 ? argv[3] : "task_struct";

	printf("{\"times_ms\": [");
	for (int i = 0; i < iters; i++) {
		double t0 = now_ms();
		struct btf *btf = btf__parse(path, NULL);

		if (!btf) {
			fprintf(stderr, "btf__parse %s failed\n", path);
			return 1;
		}
		int id = btf__find_by_name_kind(btf, name, BTF_KIND_STRUCT);
		double t1 = now_ms();

		if (id <= 0) {
			fprintf(stderr, "%s not found\n", name);
			return 1;
		}
		btf__free(btf);
		printf("%s%.4f", i ? ", " : "", t1 - t0);
	}
	printf("]}\n");
	return 0;
}
