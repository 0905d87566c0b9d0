/* A CO-RE-heavy object for bench/bench_core.py: 12 raw_tp programs, 285
 * relocations against task_struct, mm_struct, signal_struct and cred, as a
 * tracing tool would read them. No maps: every program loads as it is. */
#include "core_defs.h"

typedef struct { unsigned int val; } kuid_t;
typedef struct { unsigned int val; } kgid_t;

struct cred {
	kuid_t uid;
	kgid_t gid;
	kuid_t euid;
	kgid_t egid;
	kuid_t suid;
	kgid_t sgid;
	kuid_t fsuid;
	kgid_t fsgid;
} __attribute__((preserve_access_index));

struct signal_struct {
	int nr_threads;
	int group_exit_code;
	int flags;
} __attribute__((preserve_access_index));

struct mm_struct {
	unsigned long task_size;
	unsigned long total_vm;
	unsigned long locked_vm;
	unsigned long data_vm;
	unsigned long exec_vm;
	unsigned long stack_vm;
	unsigned long start_code;
	unsigned long end_code;
	unsigned long start_data;
	unsigned long end_data;
	unsigned long start_brk;
	unsigned long brk;
	unsigned long start_stack;
	unsigned long arg_start;
	unsigned long arg_end;
	unsigned long env_start;
	unsigned long env_end;
	unsigned long mmap_base;
	int map_count;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	int flags;
	int prio;
	int static_prio;
	int normal_prio;
	int rt_priority;
	int exit_code;
	int exit_signal;
	int pdeath_signal;
	int personality;
	int nr_cpus_allowed;
	int on_cpu;
	int recent_used_cpu;
	int wake_cpu;
	unsigned long long utime;
	unsigned long long stime;
	unsigned long long gtime;
	unsigned long long nvcsw;
	unsigned long long nivcsw;
	unsigned long long start_time;
	unsigned long long min_flt;
	unsigned long long maj_flt;
	unsigned int in_execve:1;
	unsigned int sched_reset_on_fork:1;
	char comm[16];
	struct mm_struct *mm;
	struct task_struct *real_parent;
	struct task_struct *parent;
	struct task_struct *group_leader;
	struct cred *cred;
	struct cred *real_cred;
	struct signal_struct *signal;
} __attribute__((preserve_access_index));

#define RD(src, f) ({ unsigned long long __v = 0; CORE_READ_INTO((typeof((src)->f) *)&__v, src, f); __v; })
#define PTR(src, f) ({ void *__p = 0; CORE_READ_INTO(&__p, src, f); (typeof((src)->f))__p; })

static inline __attribute__((always_inline)) struct task_struct *current(void)
{
	return (void *)bpf_get_current_task();
}

SEC("raw_tp") int task0(void *ctx)
{
	struct task_struct *t = current();
	unsigned long long acc = 0;

	struct task_struct *p = t;
	acc += RD(p, pid);
	acc += RD(p, tgid);
	acc += RD(p, flags);
	acc += RD(p, prio);
	acc += RD(p, static_prio);
	acc += RD(p, normal_prio);
	acc += RD(p, rt_priority);
	acc += RD(p, exit_code);
	acc += RD(p, exit_signal);
	acc += RD(p, pdeath_signal);
	acc += RD(p, personality);
	acc += RD(p, nr_cpus_allowed);
	acc += RD(p, on_cpu);
	acc += RD(p, recent_used_cpu);
	acc += RD(p, wake_cpu);
	acc += RD(p, utime);
	acc += RD(p, stime);
	acc += RD(p, gtime);
	acc += RD(p, nvcsw);
	acc += RD(p, nivcsw);
	acc += RD(p, start_time);
	acc += RD(p, min_flt);
	acc += RD(p, maj_flt);
	acc += CORE_READ_BITFIELD(p, in_execve);
	acc += RD(p, comm[3]);
	return acc;
}

SEC("raw_tp") int task1(void *ctx)
{
	struct task_struct *t = current();
	unsigned long long acc = 0;

	struct task_struct *p = PTR(t, real_parent);
	acc += RD(p, pid);
	acc += RD(p, tgid);
	acc += RD(p, flags);
	acc += RD(p, prio);
	acc += RD(p, static_prio);
	acc += RD(p, normal_prio);
	acc += RD(p, rt_priority);
	acc += RD(p, exit_code);
	acc += RD(p, exit_signal);
	acc += RD(p, pdeath_signal);
	acc += RD(p, personality);
	acc += RD(p, nr_cpus_allowed);
	acc += RD(p, on_cpu);
	acc += RD(p, recent_used_cpu);
	acc += RD(p, wake_cpu);
	acc += RD(p, utime);
	acc += RD(p, stime);
	acc += RD(p, gtime);
	acc += RD(p, nvcsw);
	acc += RD(p, nivcsw);
	acc += RD(p, start_time);
	acc += RD(p, min_flt);
	acc += RD(p, maj_flt);
	acc += CORE_READ_BITFIELD(p, in_execve);
	acc += RD(p, comm[3]);
	return acc;
}

SEC("raw_tp") int task2(void *ctx)
{
	struct task_struct *t = current();
	unsigned long long acc = 0;

	struct task_struct *p = PTR(t, parent);
	acc += RD(p, pid);
	acc += RD(p, tgid);
	acc += RD(p, flags);
	acc += RD(p, prio);
	acc += RD(p, static_prio);
	acc += RD(p, normal_prio);
	acc += RD(p, rt_priority);
	acc += RD(p, exit_code);
	acc += RD(p, exit_signal);
	acc += RD(p, pdeath_signal);
	acc += RD(p, personality);
	acc += RD(p, nr_cpus_allowed);
	acc += RD(p, on_cpu);
	acc += RD(p, recent_used_cpu);
	acc += RD(p, wake_cpu);
	acc += RD(p, utime);
	acc += RD(p, stime);
	acc += RD(p, gtime);
	acc += RD(p, nvcsw);
	acc += RD(p, nivcsw);
	acc += RD(p, start_time);
	acc += RD(p, min_flt);
	acc += RD(p, maj_flt);
	acc += CORE_READ_BITFIELD(p, in_execve);
	acc += RD(p, comm[3]);
	return acc;
}

SEC("raw_tp") int task3(void *ctx)
{
	struct task_struct *t = current();
	unsigned long long acc = 0;

	struct task_struct *p = PTR(t, group_leader);
	acc += RD(p, pid);
	acc += RD(p, tgid);
	acc += RD(p, flags);
	acc += RD(p, prio);
	acc += RD(p, static_prio);
	acc += RD(p, normal_prio);
	acc += RD(p, rt_priority);
	acc += RD(p, exit_code);
	acc += RD(p, exit_signal);
	acc += RD(p, pdeath_signal);
	acc += RD(p, personality);
	acc += RD(p, nr_cpus_allowed);
	acc += RD(p, on_cpu);
	acc += RD(p, recent_used_cpu);
	acc += RD(p, wake_cpu);
	acc += RD(p, utime);
	acc += RD(p, stime);
	acc += RD(p, gtime);
	acc += RD(p, nvcsw);
	acc += RD(p, nivcsw);
	acc += RD(p, start_time);
	acc += RD(p, min_flt);
	acc += RD(p, maj_flt);
	acc += CORE_READ_BITFIELD(p, in_execve);
	acc += RD(p, comm[3]);
	return acc;
}

SEC("raw_tp") int mm0(void *ctx)
{
	struct task_struct *t = current();
	unsigned long long acc = 0;

	struct mm_struct *mm = PTR(t, mm);
	if (!mm) return 0;
	acc += RD(mm, task_size);
	acc += RD(mm, total_vm);
	acc += RD(mm, locked_vm);
	acc += RD(mm, data_vm);
	acc += RD(mm, exec_vm);
	acc += RD(mm, stack_vm);
	acc += RD(mm, start_code);
	acc += RD(mm, end_code);
	acc += RD(mm, start_data);
	acc += RD(mm, end_data);
	acc += RD(mm, start_brk);
	acc += RD(mm, brk);
	acc += RD(mm, start_stack);
	acc += RD(mm, arg_start);
	acc += RD(mm, arg_end);
	acc += RD(mm, env_start);
	acc += RD(mm, env_end);
	acc += RD(mm, mmap_base);
	acc += RD(mm, map_count);
	return acc;
}

SEC("raw_tp") int mm1(void *ctx)
{
	struct task_struct *t = current();
	unsigned long long acc = 0;

	struct task_struct *p = PTR(t, real_parent);
	struct mm_struct *mm = PTR(p, mm);
	if (!mm) return 0;
	acc += RD(mm, task_size);
	acc += RD(mm, total_vm);
	acc += RD(mm, locked_vm);
	acc += RD(mm, data_vm);
	acc += RD(mm, exec_vm);
	acc += RD(mm, stack_vm);
	acc += RD(mm, start_code);
	acc += RD(mm, end_code);
	acc += RD(mm, start_data);
	acc += RD(mm, end_data);
	acc += RD(mm, start_brk);
	acc += RD(mm, brk);
	acc += RD(mm, start_stack);
	acc += RD(mm, arg_start);
	acc += RD(mm, arg_end);
	acc += RD(mm, env_start);
	acc += RD(mm, env_end);
	acc += RD(mm, mmap_base);
	acc += RD(mm, map_count);
	return acc;
}

SEC("raw_tp") int mm2(void *ctx)
{
	struct task_struct *t = current();
	unsigned long long acc = 0;

	struct task_struct *p = PTR(t, parent);
	struct mm_struct *mm = PTR(p, mm);
	if (!mm) return 0;
	acc += RD(mm, task_size);
	acc += RD(mm, total_vm);
	acc += RD(mm, locked_vm);
	acc += RD(mm, data_vm);
	acc += RD(mm, exec_vm);
	acc += RD(mm, stack_vm);
	acc += RD(mm, start_code);
	acc += RD(mm, end_code);
	acc += RD(mm, start_data);
	acc += RD(mm, end_data);
	acc += RD(mm, start_brk);
	acc += RD(mm, brk);
	acc += RD(mm, start_stack);
	acc += RD(mm, arg_start);
	acc += RD(mm, arg_end);
	acc += RD(mm, env_start);
	acc += RD(mm, env_end);
	acc += RD(mm, mmap_base);
	acc += RD(mm, map_count);
	return acc;
}

SEC("raw_tp") int mm3(void *ctx)
{
	struct task_struct *t = current();
	unsigned long long acc = 0;

	struct task_struct *p = PTR(t, group_leader);
	struct mm_struct *mm = PTR(p, mm);
	if (!mm) return 0;
	acc += RD(mm, task_size);
	acc += RD(mm, total_vm);
	acc += RD(mm, locked_vm);
	acc += RD(mm, data_vm);
	acc += RD(mm, exec_vm);
	acc += RD(mm, stack_vm);
	acc += RD(mm, start_code);
	acc += RD(mm, end_code);
	acc += RD(mm, start_data);
	acc += RD(mm, end_data);
	acc += RD(mm, start_brk);
	acc += RD(mm, brk);
	acc += RD(mm, start_stack);
	acc += RD(mm, arg_start);
	acc += RD(mm, arg_end);
	acc += RD(mm, env_start);
	acc += RD(mm, env_end);
	acc += RD(mm, mmap_base);
	acc += RD(mm, map_count);
	return acc;
}

SEC("raw_tp") int cred0(void *ctx)
{
	struct task_struct *t = current();
	unsigned long long acc = 0;

	struct task_struct *p = t;
	struct cred *c = PTR(p, cred);
	struct signal_struct *s = PTR(p, signal);
	acc += RD(c, uid.val);
	acc += RD(c, gid.val);
	acc += RD(c, euid.val);
	acc += RD(c, egid.val);
	acc += RD(c, suid.val);
	acc += RD(c, sgid.val);
	acc += RD(c, fsuid.val);
	acc += RD(c, fsgid.val);
	acc += RD(s, nr_threads);
	acc += RD(s, group_exit_code);
	acc += RD(s, flags);
	acc += CORE_READ_BITFIELD(p, sched_reset_on_fork);
	return acc;
}

SEC("raw_tp") int cred1(void *ctx)
{
	struct task_struct *t = current();
	unsigned long long acc = 0;

	struct task_struct *p = PTR(t, real_parent);
	struct cred *c = PTR(p, cred);
	struct signal_struct *s = PTR(p, signal);
	acc += RD(c, uid.val);
	acc += RD(c, gid.val);
	acc += RD(c, euid.val);
	acc += RD(c, egid.val);
	acc += RD(c, suid.val);
	acc += RD(c, sgid.val);
	acc += RD(c, fsuid.val);
	acc += RD(c, fsgid.val);
	acc += RD(s, nr_threads);
	acc += RD(s, group_exit_code);
	acc += RD(s, flags);
	acc += CORE_READ_BITFIELD(p, sched_reset_on_fork);
	return acc;
}

SEC("raw_tp") int info0(void *ctx)
{
	struct task_struct *t = current();
	unsigned long long acc = 0;

	struct task_struct *p = t;
	acc += bpf_core_field_exists(p->pid) + bpf_core_field_size(p->pid);
	acc += bpf_core_field_exists(p->tgid) + bpf_core_field_size(p->tgid);
	acc += bpf_core_field_exists(p->flags) + bpf_core_field_size(p->flags);
	acc += bpf_core_field_exists(p->prio) + bpf_core_field_size(p->prio);
	acc += bpf_core_field_exists(p->static_prio) + bpf_core_field_size(p->static_prio);
	acc += bpf_core_field_exists(p->normal_prio) + bpf_core_field_size(p->normal_prio);
	acc += bpf_core_field_exists(p->rt_priority) + bpf_core_field_size(p->rt_priority);
	acc += bpf_core_field_exists(p->exit_code) + bpf_core_field_size(p->exit_code);
	acc += bpf_core_field_exists(p->exit_signal) + bpf_core_field_size(p->exit_signal);
	acc += bpf_core_field_exists(p->pdeath_signal) + bpf_core_field_size(p->pdeath_signal);
	return acc;
}

SEC("raw_tp") int info1(void *ctx)
{
	struct task_struct *t = current();
	unsigned long long acc = 0;

	struct task_struct *p = t;
	acc += bpf_core_field_exists(p->pid) + bpf_core_field_size(p->pid);
	acc += bpf_core_field_exists(p->tgid) + bpf_core_field_size(p->tgid);
	acc += bpf_core_field_exists(p->flags) + bpf_core_field_size(p->flags);
	acc += bpf_core_field_exists(p->prio) + bpf_core_field_size(p->prio);
	acc += bpf_core_field_exists(p->static_prio) + bpf_core_field_size(p->static_prio);
	acc += bpf_core_field_exists(p->normal_prio) + bpf_core_field_size(p->normal_prio);
	acc += bpf_core_field_exists(p->rt_priority) + bpf_core_field_size(p->rt_priority);
	acc += bpf_core_field_exists(p->exit_code) + bpf_core_field_size(p->exit_code);
	acc += bpf_core_field_exists(p->exit_signal) + bpf_core_field_size(p->exit_signal);
	acc += bpf_core_field_exists(p->pdeath_signal) + bpf_core_field_size(p->pdeath_signal);
	return acc;
}

char LICENSE[] SEC("license") = "GPL";
