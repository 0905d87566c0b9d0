/* CO-RE builtins spelled out, as libbpf's bpf_core_read.h defines them, so
 * the CO-RE test objects build without libbpf's headers. */
#ifndef FASTBPF_TESTDATA_CORE_DEFS_H
#define FASTBPF_TESTDATA_CORE_DEFS_H

#include "bpf_defs.h"

/* __builtin_preserve_field_info kinds */
#define BPF_FIELD_BYTE_OFFSET 0
#define BPF_FIELD_BYTE_SIZE 1
#define BPF_FIELD_EXISTS 2
#define BPF_FIELD_SIGNED 3
#define BPF_FIELD_LSHIFT_U64 4
#define BPF_FIELD_RSHIFT_U64 5
/* __builtin_btf_type_id kinds */
#define BPF_TYPE_ID_LOCAL 0
#define BPF_TYPE_ID_TARGET 1
/* __builtin_preserve_type_info kinds */
#define BPF_TYPE_EXISTS 0
#define BPF_TYPE_SIZE 1
#define BPF_TYPE_MATCHES 2
/* __builtin_preserve_enum_value kinds */
#define BPF_ENUMVAL_EXISTS 0
#define BPF_ENUMVAL_VALUE 1

#define __CORE_RELO(src, field, info) \
	__builtin_preserve_field_info((src)->field, BPF_FIELD_##info)
#define bpf_core_field_exists(f) __builtin_preserve_field_info(f, BPF_FIELD_EXISTS)
#define bpf_core_field_size(f) __builtin_preserve_field_info(f, BPF_FIELD_BYTE_SIZE)
#define bpf_core_field_offset(f) __builtin_preserve_field_info(f, BPF_FIELD_BYTE_OFFSET)
#define bpf_core_field_signed(f) __builtin_preserve_field_info(f, BPF_FIELD_SIGNED)
#define bpf_core_type_id_local(t) __builtin_btf_type_id(*(typeof(t) *)0, BPF_TYPE_ID_LOCAL)
#define bpf_core_type_id_kernel(t) __builtin_btf_type_id(*(typeof(t) *)0, BPF_TYPE_ID_TARGET)
#define bpf_core_type_exists(t) __builtin_preserve_type_info(*(typeof(t) *)0, BPF_TYPE_EXISTS)
#define bpf_core_type_size(t) __builtin_preserve_type_info(*(typeof(t) *)0, BPF_TYPE_SIZE)
#define bpf_core_type_matches(t) __builtin_preserve_type_info(*(typeof(t) *)0, BPF_TYPE_MATCHES)
#define bpf_core_enum_value_exists(t, v) \
	__builtin_preserve_enum_value(*(typeof(t) *)v, BPF_ENUMVAL_EXISTS)
#define bpf_core_enum_value(t, v) __builtin_preserve_enum_value(*(typeof(t) *)v, BPF_ENUMVAL_VALUE)

/* Read src->field (its local size) with a relocated address. */
#define CORE_READ_INTO(dst, src, field) \
	bpf_probe_read_kernel(dst, sizeof(*(dst)), __builtin_preserve_access_index(&(src)->field))

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define __CORE_BITFIELD_PROBE_READ(dst, src, fld) \
	bpf_probe_read_kernel((void *)dst, __CORE_RELO(src, fld, BYTE_SIZE), \
			      (const void *)src + __CORE_RELO(src, fld, BYTE_OFFSET))
#else
/* LSHIFT_U64 assumes the value was loaded into the low-order bytes */
#define __CORE_BITFIELD_PROBE_READ(dst, src, fld) \
	bpf_probe_read_kernel((void *)dst + (8 - __CORE_RELO(src, fld, BYTE_SIZE)), \
			      __CORE_RELO(src, fld, BYTE_SIZE), \
			      (const void *)src + __CORE_RELO(src, fld, BYTE_OFFSET))
#endif

/* A bitfield (or any integer field), signed or not, read through a probe. */
#define CORE_READ_BITFIELD(s, field) ({ \
	unsigned long long val = 0; \
	__CORE_BITFIELD_PROBE_READ(&val, s, field); \
	val <<= __CORE_RELO(s, field, LSHIFT_U64); \
	if (__CORE_RELO(s, field, SIGNED)) \
		val = ((long long)val) >> __CORE_RELO(s, field, RSHIFT_U64); \
	else \
		val = val >> __CORE_RELO(s, field, RSHIFT_U64); \
	val; \
})

#endif
