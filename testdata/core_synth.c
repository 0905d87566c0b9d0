/* CO-RE against synthetic target BTF built by the tests (tests/test_core.py):
 * struct core_blob is laid out differently in each target (members moved,
 * resized, renamed, missing, bitfields shifted), and the raw_tp programs
 * read it from their context (test_run copies ctx_in into the kernel), so
 * a test can relocate them against a target, fill a context laid out as
 * that target says, run them and check what they read. core_mem is only
 * relocated (direct loads and stores: LDX, ST and STX, whose offsets and
 * sizes change). */
#include "core_defs.h"

struct core_blob {
	unsigned int a;
	unsigned short b;
	unsigned int f1:3;
	int f2:5;
	unsigned int f3:12;
	char name[8];
	int arr[4];
	unsigned long long c;
	int gone;
} __attribute__((preserve_access_index));

/* A flavor with a member the base type lacks: chosen by existence. */
struct core_blob___v2 {
	unsigned int a_renamed;
} __attribute__((preserve_access_index));

enum core_state { CORE_IDLE = 0, CORE_BUSY = 1, CORE_GONE = 2 };

enum core_wide { CORE_WIDE_LOW = 1, CORE_WIDE_HIGH = 0x100000000ULL };

typedef struct core_blob core_blob_t;

#define READ_FIELD(name, field) \
	SEC("raw_tp") int blob_##name(struct core_blob *b) \
	{ \
		unsigned long long v = 0; \
		bpf_probe_read_kernel(&v, bpf_core_field_size(b->field), \
				      __builtin_preserve_access_index(&b->field)); \
		return v; \
	}

READ_FIELD(a, a)
READ_FIELD(b, b)
READ_FIELD(c, c)
READ_FIELD(arr2, arr[2])
READ_FIELD(name1, name[1])

#define READ_BITS(name) \
	SEC("raw_tp") int blob_##name(struct core_blob *b) \
	{ \
		return CORE_READ_BITFIELD(b, name); \
	}

READ_BITS(f1)
READ_BITS(f2)
READ_BITS(f3)

SEC("raw_tp") int blob_a_or_renamed(struct core_blob *b)
{
	unsigned int v = 0;
	struct core_blob___v2 *b2 = (void *)b;

	if (bpf_core_field_exists(b2->a_renamed))
		CORE_READ_INTO(&v, b2, a_renamed);
	else
		CORE_READ_INTO(&v, b, a);
	return v;
}

SEC("raw_tp") int blob_gone(struct core_blob *b)
{
	int v = -1;

	if (bpf_core_field_exists(b->gone))
		CORE_READ_INTO(&v, b, gone);
	return v;
}

SEC("raw_tp") int blob_info(void *ctx)
{
	return bpf_core_type_size(struct core_blob) | bpf_core_type_exists(core_blob_t) << 8 |
	       bpf_core_type_matches(struct core_blob) << 9 |
	       bpf_core_enum_value_exists(enum core_state, CORE_GONE) << 10 |
	       bpf_core_field_signed(((struct core_blob *)ctx)->f2) << 11 |
	       bpf_core_field_signed(((struct core_blob *)ctx)->f1) << 12;
}

SEC("raw_tp") int blob_enum(void *ctx)
{
	return bpf_core_enum_value(enum core_state, CORE_BUSY) << 4 |
	       bpf_core_enum_value(enum core_state, CORE_IDLE);
}

SEC("raw_tp") int blob_enum64(void *ctx)
{
	return bpf_core_enum_value(enum core_wide, CORE_WIDE_HIGH) >> 32;
}

SEC("raw_tp") int blob_type_ids(void *ctx)
{
	return bpf_core_type_id_kernel(struct core_blob) << 16 | bpf_core_type_id_local(core_blob_t);
}

struct core_mem {
	unsigned int u32f;
	int s32f;
	unsigned long long u64f;
	void *ptr;
	unsigned short u16f;
} __attribute__((preserve_access_index));

/* Never loaded: the tests check how the loads and stores are patched. */
SEC("raw_tp") int mem_access(struct core_mem *m)
{
	m->u32f = 7;				/* ST */
	m->u16f = (unsigned short)m->s32f;	/* LDX, STX */
	return m->u64f + (long)m->ptr + m->u32f;
}

char LICENSE[] SEC("license") = "GPL";
