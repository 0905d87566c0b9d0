/* Every CO-RE relocation kind against kernel types, as raw_tp programs
 * that return what they read (BPF_PROG_TEST_RUN, repeat 0, in the calling
 * thread): tests run them against the running kernel and check the values,
 * and relocate them against synthetic target BTF. No maps. */
#include "core_defs.h"

typedef int pid_t;

struct mm_struct {
	unsigned long task_size;
} __attribute__((preserve_access_index));

struct task_struct {
	pid_t pid;
	pid_t tgid;
	char comm[16];
	unsigned int flags;
	struct mm_struct *mm;
	unsigned int in_execve:1;
	unsigned int sched_reset_on_fork:1;
	int prio;
	int not_in_any_kernel;
} __attribute__((preserve_access_index));

/* Flavors: a field renamed in 5.14 (state -> __state). */
struct task_struct___old {
	long state;
} __attribute__((preserve_access_index));

struct task_struct___new {
	unsigned int __state;
} __attribute__((preserve_access_index));

enum pid_type {
	PIDTYPE_PID, PIDTYPE_TGID, PIDTYPE_PGID, PIDTYPE_SID, PIDTYPE_NOT_A_TYPE = 7, PIDTYPE_NOPE = 9
};
enum pid_type___m { PIDTYPE_PID___m, PIDTYPE_TGID___m };
enum perf_callchain_context {
	PERF_CONTEXT_KERNEL = 0xffffffffffffff80ULL,
	PERF_CONTEXT_NOPE = 1,
};

struct no_such_struct_anywhere {
	int x;
};

struct bpf_raw_tracepoint_args {
	unsigned long long args[0];
} __attribute__((preserve_access_index));

static inline __attribute__((always_inline)) struct task_struct *current(void)
{
	return (void *)bpf_get_current_task();
}

SEC("raw_tp") int read_tgid(void *ctx)
{
	pid_t v = 0;

	CORE_READ_INTO(&v, current(), tgid);
	return v;
}

SEC("raw_tp") int read_pid(void *ctx)
{
	pid_t v = 0;

	CORE_READ_INTO(&v, current(), pid);
	return v;
}

/* comm[1..4]: an array element in the access path */
SEC("raw_tp") int read_comm1(void *ctx)
{
	unsigned int v = 0;

	bpf_probe_read_kernel(&v, 4, __builtin_preserve_access_index(&current()->comm[1]));
	return v;
}

SEC("raw_tp") int field_exists(void *ctx)
{
	struct task_struct *t = current();
	struct task_struct___old *o = (void *)t;
	struct task_struct___new *n = (void *)t;

	return bpf_core_field_exists(t->pid) | bpf_core_field_exists(t->not_in_any_kernel) << 1 |
	       bpf_core_field_exists(t->in_execve) << 2 | bpf_core_field_exists(o->state) << 3 |
	       bpf_core_field_exists(n->__state) << 4 | bpf_core_field_exists(t->comm[2]) << 5;
}

SEC("raw_tp") int field_sizes(void *ctx)
{
	struct task_struct *t = current();

	return bpf_core_field_size(t->comm) | bpf_core_field_size(t->pid) << 8 |
	       bpf_core_field_size(t->mm) << 16 | bpf_core_field_size(t->in_execve) << 24;
}

SEC("raw_tp") int field_offset(void *ctx)
{
	return bpf_core_field_offset(current()->tgid);
}

SEC("raw_tp") int field_signed(void *ctx)
{
	struct task_struct *t = current();

	return bpf_core_field_signed(t->pid) | bpf_core_field_signed(t->flags) << 1 |
	       bpf_core_field_signed(t->prio) << 2 | bpf_core_field_signed(t->in_execve) << 3;
}

/* in_execve and sched_reset_on_fork are 0 in a test process; the test
 * checks the relocated shifts too */
SEC("raw_tp") int bitfields(void *ctx)
{
	struct task_struct *t = current();

	return CORE_READ_BITFIELD(t, in_execve) | CORE_READ_BITFIELD(t, sched_reset_on_fork) << 1 |
	       (CORE_READ_BITFIELD(t, tgid) & 0xffff) << 2;
}

SEC("raw_tp") int state_flavors(void *ctx)
{
	struct task_struct *t = current();

	if (bpf_core_field_exists(((struct task_struct___new *)t)->__state)) {
		unsigned int s = 1000;

		CORE_READ_INTO(&s, (struct task_struct___new *)t, __state);
		return s;
	}
	long s = 2000;

	CORE_READ_INTO(&s, (struct task_struct___old *)t, state);
	return s;
}

SEC("raw_tp") int type_info(void *ctx)
{
	return bpf_core_type_exists(struct task_struct) |
	       bpf_core_type_exists(struct no_such_struct_anywhere) << 1 |
	       bpf_core_type_matches(pid_t) << 2 | bpf_core_type_matches(enum pid_type___m) << 3 |
	       bpf_core_type_matches(enum pid_type) << 4 |
	       bpf_core_type_matches(struct no_such_struct_anywhere) << 5 |
	       bpf_core_type_exists(enum pid_type) << 6;
}

SEC("raw_tp") int type_size(void *ctx)
{
	return bpf_core_type_size(struct task_struct);
}

SEC("raw_tp") int type_size_missing(void *ctx)
{
	return bpf_core_type_size(struct no_such_struct_anywhere);
}

SEC("raw_tp") int type_id_target(void *ctx)
{
	return bpf_core_type_id_kernel(struct task_struct);
}

SEC("raw_tp") int type_id_local(void *ctx)
{
	return bpf_core_type_id_local(struct task_struct);
}

SEC("raw_tp") int enum_exists(void *ctx)
{
	return bpf_core_enum_value_exists(enum pid_type, PIDTYPE_SID) |
	       bpf_core_enum_value_exists(enum pid_type, PIDTYPE_NOT_A_TYPE) << 1 |
	       bpf_core_enum_value_exists(enum perf_callchain_context, PERF_CONTEXT_KERNEL) << 2 |
	       bpf_core_enum_value_exists(enum perf_callchain_context, PERF_CONTEXT_NOPE) << 3;
}

/* the missing value is guarded: its poisoned instruction is dead code */
SEC("raw_tp") int enum_value(void *ctx)
{
	if (bpf_core_enum_value_exists(enum pid_type, PIDTYPE_NOT_A_TYPE))
		return bpf_core_enum_value(enum pid_type, PIDTYPE_NOT_A_TYPE);
	return bpf_core_enum_value(enum pid_type, PIDTYPE_SID);
}

SEC("raw_tp") int enum64_value(void *ctx)
{
	unsigned long long v = bpf_core_enum_value(enum perf_callchain_context, PERF_CONTEXT_KERNEL);

	return (v >> 32) ^ (v & 0xffffffff);
}

/* a direct ctx load with a relocated offset (LDX) */
SEC("raw_tp") int ctx_arg(struct bpf_raw_tracepoint_args *ctx)
{
	return ctx->args[1];
}

/* an unguarded read of a missing field: the verifier meets the poison */
SEC("raw_tp") int unguarded(void *ctx)
{
	int v = 0;

	CORE_READ_INTO(&v, current(), not_in_any_kernel);
	return v;
}

/* two poisoned ld_imm64: the guarded one is dead code, the other is not */
SEC("raw_tp") int unguarded_enum(void *ctx)
{
	if (bpf_core_enum_value_exists(enum pid_type, PIDTYPE_NOT_A_TYPE))
		return bpf_core_enum_value(enum pid_type, PIDTYPE_NOT_A_TYPE);
	return bpf_core_enum_value(enum pid_type, PIDTYPE_NOPE) + 1;
}

char LICENSE[] SEC("license") = "GPL";
