/* An object for the exporter's end-to-end test (fastbpf export with the ELF
 * loader): an XDP program counting IPv4 packets by (protocol, destination)
 * into a per-CPU hash with a BTF struct key, and their lengths into an exp2
 * histogram (log2 slots, the sum of lengths one past bucket_max = 20). */
#include "bpf_defs.h"

#define BPF_MAP_TYPE_PERCPU_HASH 5
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define XDP_PASS 2
#define LEN_SUM_SLOT 21

typedef unsigned char __u8;
typedef unsigned int __u32;
typedef unsigned long long __u64;

struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

struct flow_key {
	__u8 proto;
	__u8 pad[3];
	__u32 daddr; /* network order, as on the wire */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct flow_key);
	__type(value, __u64);
} packets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} packet_bytes SEC(".maps");

static long (*bpf_map_update_elem)(void *map, const void *key, const void *value,
				   __u64 flags) = (void *)2;

static __attribute__((always_inline)) __u32 log2_floor(__u64 v)
{
	__u32 r = 0;

	if (v >= 1 << 16) { v >>= 16; r += 16; }
	if (v >= 1 << 8) { v >>= 8; r += 8; }
	if (v >= 1 << 4) { v >>= 4; r += 4; }
	if (v >= 1 << 2) { v >>= 2; r += 2; }
	if (v >= 1 << 1) { r += 1; }
	return r;
}

SEC("xdp")
int count_packets(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 len = end - data, one = 1, *v;
	struct flow_key k = {};
	__u32 slot;

	if (data + 34 > end)
		return XDP_PASS;
	k.proto = *(__u8 *)(data + 23);
	k.daddr = *(__u32 *)(data + 30);
	v = bpf_map_lookup_elem(&packets, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&packets, &k, &one, 0);
	slot = log2_floor(len);
	v = bpf_map_lookup_elem(&packet_bytes, &slot);
	if (v)
		__sync_fetch_and_add(v, 1);
	slot = LEN_SUM_SLOT;
	v = bpf_map_lookup_elem(&packet_bytes, &slot);
	if (v)
		__sync_fetch_and_add(v, len);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
