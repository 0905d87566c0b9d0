/* Every BTF kind the decoder knows, plus a BTF-defined hash map and
 * initialized globals whose bytes the formatter tests read back. */
#include "bpf_defs.h"
#include "btf_types.h"

struct everything everything_init = EVERYTHING_INIT;
struct bits bits_init = BITS_INIT;
union num num_zero;
const volatile enum big64 big_ro = BIG_C;
/* Never defined: gives a BTF_KIND_FWD. */
struct never_defined *opaque_ptr;
union never_defined_union *opaque_union_ptr;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct flow_key);
	__type(value, struct flow);
} flows SEC(".maps");

static __attribute__((noinline)) int DECL_TAG("func_tag") bump(struct flow *f DECL_TAG("arg_tag"))
{
	f->packets++;
	return 0;
}

SEC("xdp")
int count_flows(void *ctx)
{
	struct flow_key key = {};
	struct flow *f = bpf_map_lookup_elem(&flows, &key);

	if (f)
		bump(f);
	return 2;
}

char LICENSE[] SEC("license") = "GPL";
