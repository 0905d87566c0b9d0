/* Types whose BTF the tests decode and whose C layout they compare with
 * numpy dtypes. Shared by the BPF objects (clang, both endians) and by the
 * host program layout.c, which reports what the C compiler decided.
 * No system headers: the BPF side must build without any.
 */
#ifndef FASTBPF_TESTDATA_BTF_TYPES_H
#define FASTBPF_TESTDATA_BTF_TYPES_H

#ifndef __bpf__
/* gcc knows neither BTF tag attribute. */
#define TYPE_TAG(x)
#define DECL_TAG(x)
#else
#define TYPE_TAG(x) __attribute__((btf_type_tag(x)))
#define DECL_TAG(x) __attribute__((btf_decl_tag(x)))
#endif

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef signed char s8;
typedef short s16;
typedef int s32;
typedef long long s64;
typedef u32 my_u32_t;
typedef const volatile u16 cv_u16_t;

enum color { RED = 0, GREEN = 1, BLUE = 2, NEG = -1 };
/* A value above 32 bits makes clang emit BTF_KIND_ENUM64. */
enum big64 { BIG_A = 1, BIG_B = 0x1234567890ULL, BIG_C = 0xfffffffffffffff0ULL };
enum __attribute__((packed)) tiny { TINY_X = 1, TINY_Y = 200 };

struct inner {
	u16 a;
	u8 b;
	u32 c; /* 1 byte of padding before */
};

union num {
	u32 i;
	float f;
	u8 bytes[4];
};

struct flow_key {
	u32 saddr;
	u32 daddr;
	u16 sport;
	u16 dport;
	u8 proto; /* 3 bytes of tail padding */
};

struct flow {
	u64 packets;
	u64 bytes;
	u32 first_seen;
	char comm[16];
	_Bool active;
	enum color color;
	s64 delta;
};

struct everything {
	char c;
	signed char sc;
	unsigned char uc;
	_Bool flag;
	short s;
	unsigned short us;
	int i;
	unsigned int ui;
	long l;
	unsigned long ul;
	long long ll;
	unsigned long long ull;
	float f;
	double d;
	void *ptr;
	const char *name;
	struct everything *next;
	char comm[16];
	u32 matrix[2][3];
	u8 cube[2][2][2];
	struct inner in;
	struct inner inners[2];
	union num n;
	struct {
		u32 x;
		u32 y;
	};
	union {
		u64 as_u64;
		u32 as_u32[2];
	};
	struct {
		u16 na;
		u8 nb;
	} named_anon;
	enum color color;
	enum big64 big;
	enum tiny tiny;
	volatile u32 vol;
	const u64 cst;
	u32 *restrict rp;
	my_u32_t td;
	cv_u16_t cv;
	int (*cb)(int, void *);
	int TYPE_TAG("user") *tagged;
	u64 tail DECL_TAG("tail_tag");
} DECL_TAG("everything_tag");

struct bits {
	u32 a : 3;
	u32 b : 5;
	s32 c : 7;
	u32 : 0;
	u8 d : 1;
	u64 e : 40;
	u16 f;
	s8 g : 4;
	enum color h : 4;
};

/* Known values, shared by the BPF objects (as initialized globals in .data)
 * and layout.c, so the tests can check the formatter on both byte orders. */
#define EVERYTHING_INIT { \
	.c = 'A', .sc = -5, .uc = 250, .flag = 1, .s = -1234, .us = 60000, \
	.i = -100000, .ui = 4000000000u, .l = -5000000000L, \
	.ul = 10000000000UL, .ll = -7, .ull = 0xfedcba9876543210ULL, \
	.f = 1.5f, .d = -2.25, .ptr = 0, .name = 0, .next = 0, \
	.comm = "fastbpf", .matrix = { { 1, 2, 3 }, { 4, 5, 6 } }, \
	.cube = { { { 1, 2 }, { 3, 4 } }, { { 5, 6 }, { 7, 8 } } }, \
	.in = { 1, 2, 3 }, .inners = { { 4, 5, 6 }, { 7, 8, 9 } }, \
	.n = { .i = 0x3fc00000 }, .x = 11, .y = 12, .as_u64 = 0x0000000d0000000cULL, \
	.named_anon = { 13, 14 }, .color = NEG, .big = BIG_B, .tiny = TINY_Y, \
	.vol = 15, .cst = 16, .rp = 0, .td = 17, .cv = 18, .cb = 0, .tagged = 0, \
	.tail = 0xdeadbeef, \
}

#define BITS_INIT { .a = 5, .b = 17, .c = -33, .d = 1, .e = 0x123456789aULL, \
	.f = 0xbeef, .g = -3, .h = BLUE }

#endif
