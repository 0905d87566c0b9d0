/* Reports what the C compiler decided about the test structs: sizeof,
 * alignof and offsetof of every member, and the bytes and field values of
 * the initialized instances. Run at testdata build time; the output,
 * layout.json, is committed so the tests need no compiler.
 * x86-64 and BPF agree on the sizes and alignments of every type used here. */
#include <stddef.h>
#include <stdio.h>
#include "btf_types.h"

static int first;

#define BEGIN(tag, type) \
	printf("%s\n    \"%s\": {\"size\": %zu, \"align\": %zu, \"members\": {", \
	       first++ ? "," : "", tag, sizeof(type), _Alignof(type)); \
	{ int n_ = 0; typedef type T_;
#define M(field) printf("%s\"%s\": %zu", n_++ ? ", " : "", #field, offsetof(T_, field));
#define END() printf("}}"); }

static void hex(const char *name, const void *p, size_t n)
{
	const unsigned char *b = p;

	printf(",\n  \"%s\": \"", name);
	for (size_t i = 0; i < n; i++)
		printf("%02x", b[i]);
	printf("\"");
}

int main(void)
{
	struct everything ev = EVERYTHING_INIT;
	struct bits bits = BITS_INIT;

	printf("{\n  \"structs\": {");
	BEGIN("inner", struct inner) M(a) M(b) M(c) END()
	BEGIN("num", union num) M(i) M(f) M(bytes) END()
	BEGIN("flow_key", struct flow_key) M(saddr) M(daddr) M(sport) M(dport) M(proto) END()
	BEGIN("flow", struct flow) M(packets) M(bytes) M(first_seen) M(comm) M(active)
		M(color) M(delta) END()
	BEGIN("everything", struct everything)
		M(c) M(sc) M(uc) M(flag) M(s) M(us) M(i) M(ui) M(l) M(ul) M(ll) M(ull)
		M(f) M(d) M(ptr) M(name) M(next) M(comm) M(matrix) M(cube) M(in)
		M(inners) M(n) M(x) M(y) M(as_u64) M(as_u32) M(named_anon)
		M(named_anon.na) M(named_anon.nb) M(color) M(big) M(tiny) M(vol)
		M(cst) M(rp) M(td) M(cv) M(cb) M(tagged) M(tail) END()
	BEGIN("bits", struct bits) M(f) END()
	printf("\n  },\n  \"enum_sizes\": {\"color\": %zu, \"big64\": %zu, \"tiny\": %zu}",
	       sizeof(enum color), sizeof(enum big64), sizeof(enum tiny));
	printf(",\n  \"bits_values\": {\"a\": %u, \"b\": %u, \"c\": %d, \"d\": %u, "
	       "\"e\": %llu, \"f\": %u, \"g\": %d, \"h\": %d}",
	       bits.a, bits.b, bits.c, bits.d, (unsigned long long)bits.e, bits.f,
	       bits.g, (int)bits.h);
	hex("everything_le", &ev, sizeof(ev));
	hex("bits_le", &bits, sizeof(bits));
	printf("\n}\n");
	return 0;
}
