/* Global variables in .data, .bss and .rodata, and CO-RE relocations, so
 * .BTF.ext carries func_info, line_info and core_relo records. */
#include "bpf_defs.h"

struct task_struct {
	int pid;
	int tgid;
	char comm[16];
} __attribute__((preserve_access_index));

enum pid_type { PIDTYPE_PID, PIDTYPE_TGID };

unsigned long long counter;                  /* .bss */
int limit = 10;                              /* .data */
const volatile int debug_level = 1;          /* .rodata */
char greeting[8] = "hello";                  /* .data */

static __attribute__((noinline)) int read_pid(struct task_struct *t)
{
	int pid = 0;

	bpf_probe_read_kernel(&pid, sizeof(pid), &t->pid);
	return pid;
}

SEC("raw_tp/sys_enter")
int on_enter(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	int tgid = 0;

	if (!__builtin_preserve_field_info(t->tgid, 2 /* FIELD_EXISTS */))
		return 0;
	bpf_probe_read_kernel(&tgid, sizeof(tgid), &t->tgid);
	if (tgid > limit + debug_level)
		counter += read_pid(t);
	return __builtin_preserve_enum_value(*(typeof(enum pid_type) *)PIDTYPE_TGID, 1 /* VALUE */);
}

char LICENSE[] SEC("license") = "GPL";
