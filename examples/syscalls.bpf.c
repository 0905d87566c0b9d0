/* Count the system calls of one process, by syscall number.
 *
 * Built with: make -C examples (clang -O2 -g -target bpfel); the object,
 * syscalls.bpf.o, is committed so running the example needs no clang.
 * Self-contained: no libbpf headers. */

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

typedef unsigned int __u32;
typedef unsigned long long __u64;

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value,
                                   __u64 flags) = (void *)2;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;

/* raw_syscalls:sys_enter, as /sys/kernel/tracing/events/raw_syscalls/sys_enter/format says */
struct sys_enter_ctx {
	__u64 common;
	long id;
	unsigned long args[6];
};

struct {
	__uint(type, 1 /* BPF_MAP_TYPE_HASH */);
	__uint(max_entries, 512);
	__type(key, __u32);      /* syscall number */
	__type(value, __u64);    /* calls */
} per_syscall SEC(".maps");

const volatile __u32 target_tgid = 0;   /* set by the loader before load (.rodata) */
__u64 total;                            /* read live by Python (.bss, mmapped) */
__u64 last_syscall = -1;                /* .data */

SEC("tracepoint/raw_syscalls/sys_enter")
int count_syscalls(struct sys_enter_ctx *ctx)
{
	__u32 nr = ctx->id;
	__u64 one = 1, *n;

	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	n = bpf_map_lookup_elem(&per_syscall, &nr);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&per_syscall, &nr, &one, 0);
	__sync_fetch_and_add(&total, 1);
	last_syscall = nr;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
