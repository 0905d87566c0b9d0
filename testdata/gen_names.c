/* Names a Python skeleton must mangle (fastbpf gen skeleton): globals and
 * programs named like Python keywords, a leading double underscore, a map
 * named like the .data section's mangled name, a custom data section with a
 * dash, a static local (BTF name "func.var"), plus typed values of every
 * shape a skeleton spells as a dtype (scalars, a struct, arrays, a string).
 * Its one program runs under BPF_PROG_TEST_RUN. */
#include "loader_defs.h"

struct point { __u32 x; __u32 y; };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct point);
} data SEC(".maps");                    /* clashes with .data -> data */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u64);
	__type(value, __u32);
} import SEC(".maps");                  /* a keyword */

__u64 class = 1;                        /* .data: a keyword */
__u32 None;                             /* .bss: a keyword */
__u32 __hidden = 5;                     /* .data: Python would mangle it */
__u32 _private;                         /* .bss */
const volatile __u32 lambda = 2;        /* .rodata */
__u16 ports[3] = { 80, 443, 8080 };     /* .data: an array */
char tag[8] = "gen";                    /* .data: a string */
struct point origin = { 3, 4 };         /* .data: a struct */
__u32 dashed SEC(".data.my-sec") = 7;   /* a section name with a dash */

SEC("xdp")
int def(struct xdp_md *ctx)             /* a program named like a keyword */
{
	static __u32 calls;             /* BTF/ELF name "def.calls" */
	__u32 key = 1;
	struct point *p = bpf_map_lookup_elem(&data, &key);
	__u64 k = class;
	__u32 v = lambda;

	calls++;
	None = calls;
	_private += __hidden + dashed;
	if (p) {
		p->x = origin.x + ports[0];
		p->y = origin.y;
	}
	bpf_map_update_elem(&import, &k, &v, 0);
	return lambda;
}

char LICENSE[] SEC("license") = "GPL";
