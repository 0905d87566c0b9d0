/* The loader's feature tour: BTF-defined maps (pinned by name, prog array and
 * map of maps with static initial values), every kind of global data,
 * bpf-to-bpf calls (static, global, __weak, across sections), a callback,
 * .kconfig externs, a typeless ksym and a kfunc, in program types that
 * BPF_PROG_TEST_RUN can run. */
#include "loader_defs.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct pair { __u32 a; __u32 b; };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct pair);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pinned_pairs SEC(".maps");

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
};
struct inner inner_a SEC(".maps"), inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps") = {
	.values = { [0] = &inner_a, [1] = &inner_b },
};

int tail_target(struct xdp_md *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, int (void *));
} jumps SEC(".maps") = {
	.values = { [1] = (void *)&tail_target },
};

/* Global data of every kind. */
__u64 packets;                                  /* .bss */
__u32 last_len = 7;                             /* .data */
const volatile __u32 verdict = XDP_PASS;        /* .rodata */
const volatile __u32 multiplier = 3;            /* .rodata */
__u64 custom_data SEC(".data.custom") = 11;     /* .data.custom */
const volatile __u64 custom_ro SEC(".rodata.custom") = 22;
struct pair pair_var = { 1, 2 };                /* .data, a struct */
__u32 loop_sum;                                 /* .bss */
__u64 tail_hits;

/* Externs. */
extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern _Bool LINUX_HAS_BPF_COOKIE __kconfig;
extern enum libbpf_tristate CONFIG_BPF_SYSCALL __kconfig;
extern int CONFIG_HZ __kconfig __weak;
extern _Bool CONFIG_FASTBPF_NOT_A_THING __kconfig __weak;
extern const void schedule __ksym;
__u32 kver;
__u32 has_cookie;
__u32 bpf_syscall;
__u32 hz;
__u32 not_a_thing = 99;
__u64 schedule_addr;

struct task_struct { int pid; } __attribute__((preserve_access_index));
extern struct task_struct *bpf_task_from_pid(__s32 pid) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
__u32 task_found;

static __noinline __u32 scale(__u32 x)
{
	return x * multiplier;
}

__noinline int add_pair(struct pair *p)
{
	if (!p)
		return 0;
	return p->a + p->b;
}

__weak __noinline int weak_hook(int x)
{
	return x + 100;
}

static int loop_cb(__u32 i, void *ctx)
{
	loop_sum += i;
	return 0;
}

SEC("xdp")
int count_packets(struct xdp_md *ctx)
{
	__u32 key = 0, len = ctx->data_end - ctx->data;
	__u64 one = 1, *v;

	v = bpf_map_lookup_elem(&counts, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&counts, &key, &one, 0);
	packets++;
	last_len = scale(len);
	return verdict;
}

SEC("xdp")
int use_subprogs(struct xdp_md *ctx)
{
	__u32 key = 1;
	struct pair *p = bpf_map_lookup_elem(&pinned_pairs, &key);
	void *inner;
	__u64 *slot;

	loop_sum = 0;
	bpf_loop(5, loop_cb, 0, 0);
	pair_var.a = add_pair(p) + weak_hook(1);
	custom_data += custom_ro;
	inner = bpf_map_lookup_elem(&outer, &key);
	if (inner) {
		key = 0;
		slot = bpf_map_lookup_elem(inner, &key);
		if (slot)
			*slot += 5;
	}
	return XDP_PASS;
}

SEC("xdp")
int tail_target(struct xdp_md *ctx)
{
	tail_hits++;
	return XDP_TX;
}

SEC("xdp")
int do_tail_call(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &jumps, 1);
	return XDP_ABORTED;
}

SEC("tc")
int tc_externs(struct __sk_buff *skb)
{
	kver = LINUX_KERNEL_VERSION;
	has_cookie = LINUX_HAS_BPF_COOKIE;
	bpf_syscall = CONFIG_BPF_SYSCALL;
	hz = CONFIG_HZ;
	not_a_thing = CONFIG_FASTBPF_NOT_A_THING;
	schedule_addr = (__u64)&schedule;
	return scale(add_pair(&pair_var));
}

struct args { __s32 pid; };

SEC("syscall")
int find_task(struct args *args)
{
	struct task_struct *t = bpf_task_from_pid(args->pid);

	if (!t)
		return 1;
	task_found = 1;
	bpf_task_release(t);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	__u32 key = 9;
	__u64 one = 1, *v = bpf_map_lookup_elem(&counts, &key);

	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&counts, &key, &one, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
