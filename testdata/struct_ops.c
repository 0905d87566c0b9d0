/* A TCP congestion control implemented as struct_ops programs, declared in a
 * .struct_ops.link section the way libbpf objects do. Only the members used
 * are declared: the loader matches them to the kernel's struct by name. */
#include "loader_defs.h"

struct sock;

struct tcp_congestion_ops {
	__u32 (*ssthresh)(struct sock *sk);
	void (*cong_avoid)(struct sock *sk, __u32 ack, __u32 acked);
	__u32 (*undo_cwnd)(struct sock *sk);
	char name[16];
};

SEC("struct_ops/fb_ssthresh")
__u32 fb_ssthresh(unsigned long long *ctx)
{
	return 2;
}

SEC("struct_ops/fb_cong_avoid")
void fb_cong_avoid(unsigned long long *ctx)
{
}

SEC("struct_ops/fb_undo_cwnd")
__u32 fb_undo_cwnd(unsigned long long *ctx)
{
	return 10;
}

SEC(".struct_ops.link")
struct tcp_congestion_ops fb_cc = {
	.ssthresh = (void *)fb_ssthresh,
	.cong_avoid = (void *)fb_cong_avoid,
	.undo_cwnd = (void *)fb_undo_cwnd,
	.name = "fb_elf_cc",
};

char LICENSE[] SEC("license") = "GPL";
