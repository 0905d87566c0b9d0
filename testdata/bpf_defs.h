/* The few libbpf-style macros the test programs need, written here so the
 * objects build without libbpf's headers. */
#ifndef FASTBPF_TESTDATA_BPF_DEFS_H
#define FASTBPF_TESTDATA_BPF_DEFS_H

#define SEC(name) __attribute__((section(name), used))
/* BTF-defined maps encode integers as array sizes and types as pointees. */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2

static long (*bpf_probe_read_kernel)(void *dst, unsigned int size, const void *src) = (void *)113;
static unsigned long long (*bpf_get_current_task)(void) = (void *)35;
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;

#endif
