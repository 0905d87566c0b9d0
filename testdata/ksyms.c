/* A typed ksym: a per-CPU variable of vmlinux, addressed through its BTF id
 * (ld_imm64 PSEUDO_BTF_ID). The kernel also needs the symbol in kallsyms,
 * which kernels without CONFIG_KALLSYMS_ALL do not list for data. */
#include "loader_defs.h"

extern const int bpf_prog_active __ksym;
static void *(*bpf_this_cpu_ptr)(const void *percpu_ptr) = (void *)154;

__u32 active_plus_one;

SEC("tc")
int read_typed_ksym(struct __sk_buff *skb)
{
	active_plus_one = *(int *)bpf_this_cpu_ptr(&bpf_prog_active) + 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
