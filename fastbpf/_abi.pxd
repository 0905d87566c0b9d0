# cython: language_level=3
"""The kernel ABI used by fastbpf, declared by the project in this one place.

Each bpf(2) command gets its own attribute struct, laid out exactly as the
matching member of the kernel's ``union bpf_attr`` (include/uapi/linux/bpf.h,
Linux 6.18). We do not include <linux/bpf.h>: manylinux build hosts carry old
headers, and fastbpf must know fields newer than the host that built it.
``tests/test_abi.py`` compiles a C program against the system header and checks
every size and offset below that the header also knows.

Unused trailing fields may be left out of a struct: the kernel accepts a
shorter bpf_attr and zero-fills the rest.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t

cdef extern from *:
    """
    #include <stdint.h>
    #include <stddef.h>
    #include <unistd.h>
    #include <sys/syscall.h>

    #ifndef __NR_bpf
    #  if defined(__x86_64__)
    #    define __NR_bpf 321
    #  elif defined(__aarch64__)
    #    define __NR_bpf 280
    #  else
    #    error "fastbpf: unknown __NR_bpf for this architecture"
    #  endif
    #endif
    #ifndef __NR_perf_event_open
    #  if defined(__x86_64__)
    #    define __NR_perf_event_open 298
    #  elif defined(__aarch64__)
    #    define __NR_perf_event_open 241
    #  endif
    #endif

    #define FBPF_A64 __attribute__((aligned(8)))
    typedef uint64_t fbpf_u64a FBPF_A64;

    typedef struct {
        uint32_t map_type, key_size, value_size, max_entries, map_flags;
        uint32_t inner_map_fd, numa_node;
        char map_name[16];
        uint32_t map_ifindex, btf_fd, btf_key_type_id, btf_value_type_id;
        uint32_t btf_vmlinux_value_type_id;
        fbpf_u64a map_extra;
        int32_t value_type_btf_obj_fd, map_token_fd;
    } fbpf_map_create_attr;

    typedef struct {
        uint32_t map_fd;
        fbpf_u64a key;
        fbpf_u64a value;     /* also next_key */
        fbpf_u64a flags;
    } fbpf_map_elem_attr;

    typedef struct {
        fbpf_u64a in_batch, out_batch, keys, values;
        uint32_t count, map_fd;
        fbpf_u64a elem_flags, flags;
    } fbpf_map_batch_attr;

    typedef struct {
        uint32_t prog_type, insn_cnt;
        fbpf_u64a insns, license;
        uint32_t log_level, log_size;
        fbpf_u64a log_buf;
        uint32_t kern_version, prog_flags;
        char prog_name[16];
        uint32_t prog_ifindex, expected_attach_type, prog_btf_fd;
        uint32_t func_info_rec_size;
        fbpf_u64a func_info;
        uint32_t func_info_cnt, line_info_rec_size;
        fbpf_u64a line_info;
        uint32_t line_info_cnt, attach_btf_id;
        uint32_t attach_prog_fd;   /* also attach_btf_obj_fd */
        uint32_t core_relo_cnt;
        fbpf_u64a fd_array, core_relos;
        uint32_t core_relo_rec_size, log_true_size;
        int32_t prog_token_fd;
        uint32_t fd_array_cnt;
    } fbpf_prog_load_attr;

    typedef struct {
        fbpf_u64a pathname;
        uint32_t bpf_fd, file_flags;
        int32_t path_fd;
    } fbpf_obj_attr;

    typedef struct {
        uint32_t target_fd;        /* also target_ifindex */
        uint32_t attach_bpf_fd, attach_type, attach_flags, replace_bpf_fd;
        uint32_t relative_fd;      /* also relative_id */
        fbpf_u64a expected_revision;
    } fbpf_prog_attach_attr;

    typedef struct {
        uint32_t prog_fd, retval, data_size_in, data_size_out;
        fbpf_u64a data_in, data_out;
        uint32_t repeat, duration, ctx_size_in, ctx_size_out;
        fbpf_u64a ctx_in, ctx_out;
        uint32_t flags, cpu, batch_size;
    } fbpf_test_run_attr;

    typedef struct {
        uint32_t start_id;         /* also prog_id, map_id, btf_id, link_id */
        uint32_t next_id, open_flags;
        int32_t fd_by_id_token_fd;
    } fbpf_get_id_attr;

    typedef struct {
        uint32_t bpf_fd, info_len;
        fbpf_u64a info;
    } fbpf_info_attr;

    typedef struct {
        uint32_t target_fd;        /* also target_ifindex */
        uint32_t attach_type, query_flags, attach_flags;
        fbpf_u64a prog_ids;
        uint32_t prog_cnt;         /* also count */
        uint32_t _pad;
        fbpf_u64a prog_attach_flags, link_ids, link_attach_flags;
        fbpf_u64a revision;
    } fbpf_prog_query_attr;

    typedef struct {
        fbpf_u64a name;
        uint32_t prog_fd, _pad;
        fbpf_u64a cookie;
    } fbpf_raw_tp_attr;

    typedef struct {
        fbpf_u64a btf, btf_log_buf;
        uint32_t btf_size, btf_log_size, btf_log_level, btf_log_true_size;
        uint32_t btf_flags;
        int32_t btf_token_fd;
    } fbpf_btf_load_attr;

    /* LINK_CREATE: the common head, then 48 bytes whose layout depends on
       the attach type (target_btf_id, iter_info, perf_event, kprobe_multi,
       tracing, netfilter, tcx, uprobe_multi, netkit): the fbpf_link_*
       structs below, packed by fastbpf/_linkattr.pyx. */
    typedef struct {
        uint32_t prog_fd;          /* also map_fd */
        uint32_t target_fd;        /* also target_ifindex */
        uint32_t attach_type, flags;
        union { fbpf_u64a _align; uint8_t bytes[48]; } extra;
    } fbpf_link_create_attr;

    /* The attach-type-specific tails of LINK_CREATE (the members of its
       union after the common head), packed by fastbpf/_linkattr.pyx. */
    typedef struct { fbpf_u64a bpf_cookie; } fbpf_link_perf_event;
    typedef struct {
        uint32_t flags, cnt;
        fbpf_u64a syms, addrs, cookies;
    } fbpf_link_kprobe_multi;
    typedef struct { uint32_t target_btf_id; fbpf_u64a cookie; } fbpf_link_tracing;
    typedef struct { uint32_t pf, hooknum; int32_t priority; uint32_t flags; } fbpf_link_netfilter;
    typedef struct {
        uint32_t relative_fd;      /* also relative_id */
        fbpf_u64a expected_revision;
    } fbpf_link_tcx;
    typedef struct {
        fbpf_u64a path, offsets, ref_ctr_offsets, cookies;
        uint32_t cnt, flags, pid;
    } fbpf_link_uprobe_multi;
    typedef struct { fbpf_u64a iter_info; uint32_t iter_info_len; } fbpf_link_iter;

    /* union bpf_iter_link_info: what link_create.iter_info points at. */
    typedef struct { uint32_t map_fd; } fbpf_iter_map;
    typedef struct { uint32_t order, cgroup_fd; fbpf_u64a cgroup_id; } fbpf_iter_cgroup;
    typedef struct { uint32_t tid, pid, pid_fd; } fbpf_iter_task;

    typedef struct {
        uint32_t link_fd, new_prog_fd, flags, old_prog_fd;
    } fbpf_link_update_attr;

    typedef struct { uint32_t link_fd; } fbpf_link_detach_attr;
    typedef struct { uint32_t type; } fbpf_enable_stats_attr;
    typedef struct { uint32_t link_fd, flags; } fbpf_iter_create_attr;
    typedef struct { uint32_t prog_fd, map_fd, flags; } fbpf_prog_bind_map_attr;
    typedef struct { uint32_t map_fd; } fbpf_map_freeze_attr;

    /* Object info (BPF_OBJ_GET_INFO_BY_FD). */
    typedef struct {
        uint32_t type, id, key_size, value_size, max_entries, map_flags;
        char name[16];
        uint32_t ifindex, btf_vmlinux_value_type_id;
        fbpf_u64a netns_dev, netns_ino;
        uint32_t btf_id, btf_key_type_id, btf_value_type_id, btf_vmlinux_id;
        fbpf_u64a map_extra;
    } fbpf_map_info;

    typedef struct {
        uint32_t type, id;
        uint8_t tag[8];
        uint32_t jited_prog_len, xlated_prog_len;
        fbpf_u64a jited_prog_insns, xlated_prog_insns;
        fbpf_u64a load_time;
        uint32_t created_by_uid, nr_map_ids;
        fbpf_u64a map_ids;
        char name[16];
        uint32_t ifindex;
        uint32_t gpl_compatible;   /* bit 0 */
        fbpf_u64a netns_dev, netns_ino;
        uint32_t nr_jited_ksyms, nr_jited_func_lens;
        fbpf_u64a jited_ksyms, jited_func_lens;
        uint32_t btf_id, func_info_rec_size;
        fbpf_u64a func_info;
        uint32_t nr_func_info, nr_line_info;
        fbpf_u64a line_info, jited_line_info;
        uint32_t nr_jited_line_info, line_info_rec_size, jited_line_info_rec_size;
        uint32_t nr_prog_tags;
        fbpf_u64a prog_tags;
        fbpf_u64a run_time_ns, run_cnt, recursion_misses;
        uint32_t verified_insns, attach_btf_obj_id, attach_btf_id;
    } fbpf_prog_info;

    typedef struct {
        fbpf_u64a btf;
        uint32_t btf_size, id;
        fbpf_u64a name;
        uint32_t name_len, kernel_btf;
    } fbpf_btf_info;

    typedef struct {
        uint32_t type, id, prog_id, _pad;
        union { fbpf_u64a _align; uint8_t bytes[64]; } extra;
    } fbpf_link_info;

    /* The type-specific members of bpf_link_info's union (the leading
       fields `fastbpf link` shows; "extra" above holds them). */
    typedef struct { uint32_t attach_type, target_obj_id, target_btf_id; } fbpf_link_info_tracing;
    typedef struct { fbpf_u64a cgroup_id; uint32_t attach_type; } fbpf_link_info_cgroup;
    typedef struct { uint32_t netns_ino, attach_type; } fbpf_link_info_netns;
    typedef struct { uint32_t ifindex; } fbpf_link_info_xdp;
    typedef struct { uint32_t map_id; } fbpf_link_info_struct_ops;
    typedef struct { uint32_t pf, hooknum; int32_t priority; uint32_t flags; } fbpf_link_info_netfilter;
    typedef struct { uint32_t ifindex, attach_type; } fbpf_link_info_tcx;
    typedef struct { uint32_t ifindex, attach_type; } fbpf_link_info_netkit;
    typedef struct { uint32_t map_id, attach_type; } fbpf_link_info_sockmap;

    /* perf_event_attr, PERF_ATTR_SIZE_VER8 (136 bytes). Bit flags are
       one 64-bit word; see PERF_BIT_* in fastbpf/_core.pyx. */
    typedef struct {
        uint32_t type, size;
        uint64_t config;
        uint64_t sample_period;    /* also sample_freq */
        uint64_t sample_type, read_format;
        uint64_t flags;
        uint32_t wakeup_events;    /* also wakeup_watermark */
        uint32_t bp_type;
        uint64_t config1;          /* also bp_addr, kprobe_func, uprobe_path */
        uint64_t config2;          /* also bp_len, kprobe_addr, probe_offset */
        uint64_t branch_sample_type, sample_regs_user;
        uint32_t sample_stack_user;
        int32_t clockid;
        uint64_t sample_regs_intr;
        uint32_t aux_watermark;
        uint16_t sample_max_stack, _reserved_2;
        uint32_t aux_sample_size, _reserved_3;
        uint64_t sig_data;
        uint64_t config3;
    } fbpf_perf_event_attr;

    /* struct perf_event_mmap_page, the first page of a perf ring: the
       fields the readers use (the ring's positions and where its data lies)
       at the kernel's offsets. Everything before data_head is padding here. */
    typedef struct {
        uint32_t version, compat_version;
        uint8_t _fbpf_unused[1016];
        uint64_t data_head;        /* written by the kernel (smp_store_release) */
        uint64_t data_tail;        /* written by the reader: consumed up to here */
        uint64_t data_offset;      /* where the data pages start (0 before 4.1) */
        uint64_t data_size;
    } fbpf_perf_mmap_page;

    static inline long fbpf_sys_bpf(int cmd, void *attr, unsigned int size) {
        return syscall(__NR_bpf, cmd, attr, size);
    }
    static inline long fbpf_sys_perf_event_open(void *attr, int pid, int cpu,
                                                int group_fd, unsigned long flags) {
        return syscall(__NR_perf_event_open, attr, pid, cpu, group_fd, flags);
    }
    """
    ctypedef uint64_t fbpf_u64a

    ctypedef struct fbpf_map_create_attr:
        uint32_t map_type, key_size, value_size, max_entries, map_flags
        uint32_t inner_map_fd, numa_node
        char map_name[16]
        uint32_t map_ifindex, btf_fd, btf_key_type_id, btf_value_type_id
        uint32_t btf_vmlinux_value_type_id
        uint64_t map_extra
        int32_t value_type_btf_obj_fd, map_token_fd

    ctypedef struct fbpf_map_elem_attr:
        uint32_t map_fd
        uint64_t key, value, flags

    ctypedef struct fbpf_map_batch_attr:
        uint64_t in_batch, out_batch, keys, values
        uint32_t count, map_fd
        uint64_t elem_flags, flags

    ctypedef struct fbpf_prog_load_attr:
        uint32_t prog_type, insn_cnt
        uint64_t insns, license
        uint32_t log_level, log_size
        uint64_t log_buf
        uint32_t kern_version, prog_flags
        char prog_name[16]
        uint32_t prog_ifindex, expected_attach_type, prog_btf_fd
        uint32_t func_info_rec_size
        uint64_t func_info
        uint32_t func_info_cnt, line_info_rec_size
        uint64_t line_info
        uint32_t line_info_cnt, attach_btf_id, attach_prog_fd, core_relo_cnt
        uint64_t fd_array, core_relos
        uint32_t core_relo_rec_size, log_true_size
        int32_t prog_token_fd
        uint32_t fd_array_cnt

    ctypedef struct fbpf_obj_attr:
        uint64_t pathname
        uint32_t bpf_fd, file_flags
        int32_t path_fd

    ctypedef struct fbpf_prog_attach_attr:
        uint32_t target_fd, attach_bpf_fd, attach_type, attach_flags, replace_bpf_fd
        uint32_t relative_fd
        uint64_t expected_revision

    ctypedef struct fbpf_test_run_attr:
        uint32_t prog_fd, retval, data_size_in, data_size_out
        uint64_t data_in, data_out
        uint32_t repeat, duration, ctx_size_in, ctx_size_out
        uint64_t ctx_in, ctx_out
        uint32_t flags, cpu, batch_size

    ctypedef struct fbpf_get_id_attr:
        uint32_t start_id, next_id, open_flags
        int32_t fd_by_id_token_fd

    ctypedef struct fbpf_info_attr:
        uint32_t bpf_fd, info_len
        uint64_t info

    ctypedef struct fbpf_prog_query_attr:
        uint32_t target_fd, attach_type, query_flags, attach_flags
        uint64_t prog_ids
        uint32_t prog_cnt
        uint64_t prog_attach_flags, link_ids, link_attach_flags, revision

    ctypedef struct fbpf_raw_tp_attr:
        uint64_t name
        uint32_t prog_fd
        uint64_t cookie

    ctypedef struct fbpf_btf_load_attr:
        uint64_t btf, btf_log_buf
        uint32_t btf_size, btf_log_size, btf_log_level, btf_log_true_size, btf_flags
        int32_t btf_token_fd

    ctypedef union fbpf_link_extra:
        uint8_t bytes[48]

    ctypedef struct fbpf_link_create_attr:
        uint32_t prog_fd, target_fd, attach_type, flags
        fbpf_link_extra extra

    ctypedef struct fbpf_link_perf_event:
        uint64_t bpf_cookie
    ctypedef struct fbpf_link_kprobe_multi:
        uint32_t flags, cnt
        uint64_t syms, addrs, cookies
    ctypedef struct fbpf_link_tracing:
        uint32_t target_btf_id
        uint64_t cookie
    ctypedef struct fbpf_link_netfilter:
        uint32_t pf, hooknum
        int32_t priority
        uint32_t flags
    ctypedef struct fbpf_link_tcx:
        uint32_t relative_fd
        uint64_t expected_revision
    ctypedef struct fbpf_link_uprobe_multi:
        uint64_t path, offsets, ref_ctr_offsets, cookies
        uint32_t cnt, flags, pid
    ctypedef struct fbpf_link_iter:
        uint64_t iter_info
        uint32_t iter_info_len
    ctypedef struct fbpf_iter_map:
        uint32_t map_fd
    ctypedef struct fbpf_iter_cgroup:
        uint32_t order, cgroup_fd
        uint64_t cgroup_id
    ctypedef struct fbpf_iter_task:
        uint32_t tid, pid, pid_fd

    ctypedef struct fbpf_link_update_attr:
        uint32_t link_fd, new_prog_fd, flags, old_prog_fd

    ctypedef struct fbpf_link_detach_attr:
        uint32_t link_fd
    ctypedef struct fbpf_enable_stats_attr:
        uint32_t type
    ctypedef struct fbpf_iter_create_attr:
        uint32_t link_fd, flags
    ctypedef struct fbpf_prog_bind_map_attr:
        uint32_t prog_fd, map_fd, flags
    ctypedef struct fbpf_map_freeze_attr:
        uint32_t map_fd

    ctypedef struct fbpf_map_info:
        uint32_t type, id, key_size, value_size, max_entries, map_flags
        char name[16]
        uint32_t ifindex, btf_vmlinux_value_type_id
        uint64_t netns_dev, netns_ino
        uint32_t btf_id, btf_key_type_id, btf_value_type_id, btf_vmlinux_id
        uint64_t map_extra

    ctypedef struct fbpf_prog_info:
        uint32_t type, id
        uint8_t tag[8]
        uint32_t jited_prog_len, xlated_prog_len
        uint64_t jited_prog_insns, xlated_prog_insns, load_time
        uint32_t created_by_uid, nr_map_ids
        uint64_t map_ids
        char name[16]
        uint32_t ifindex, gpl_compatible
        uint64_t netns_dev, netns_ino
        uint32_t nr_jited_ksyms, nr_jited_func_lens
        uint64_t jited_ksyms, jited_func_lens
        uint32_t btf_id, func_info_rec_size
        uint64_t func_info
        uint32_t nr_func_info, nr_line_info
        uint64_t line_info, jited_line_info
        uint32_t nr_jited_line_info, line_info_rec_size, jited_line_info_rec_size
        uint32_t nr_prog_tags
        uint64_t prog_tags, run_time_ns, run_cnt, recursion_misses
        uint32_t verified_insns, attach_btf_obj_id, attach_btf_id

    ctypedef struct fbpf_btf_info:
        uint64_t btf
        uint32_t btf_size, id
        uint64_t name
        uint32_t name_len, kernel_btf

    ctypedef union fbpf_link_info_extra:
        uint8_t bytes[64]

    ctypedef struct fbpf_link_info:
        uint32_t type, id, prog_id
        fbpf_link_info_extra extra

    ctypedef struct fbpf_perf_event_attr:
        uint32_t type, size
        uint64_t config, sample_period, sample_type, read_format, flags
        uint32_t wakeup_events, bp_type
        uint64_t config1, config2, branch_sample_type, sample_regs_user
        uint32_t sample_stack_user
        int32_t clockid
        uint64_t sample_regs_intr
        uint32_t aux_watermark
        uint16_t sample_max_stack
        uint32_t aux_sample_size
        uint64_t sig_data, config3

    ctypedef struct fbpf_perf_mmap_page:
        uint32_t version, compat_version
        uint64_t data_head, data_tail, data_offset, data_size

    long fbpf_sys_bpf(int cmd, void *attr, unsigned int size) nogil
    long fbpf_sys_perf_event_open(void *attr, int pid, int cpu, int group_fd,
                                  unsigned long flags) nogil

    # bpf(2) commands
    enum:
        BPF_MAP_CREATE "0"
        BPF_MAP_LOOKUP_ELEM "1"
        BPF_MAP_UPDATE_ELEM "2"
        BPF_MAP_DELETE_ELEM "3"
        BPF_MAP_GET_NEXT_KEY "4"
        BPF_PROG_LOAD "5"
        BPF_OBJ_PIN "6"
        BPF_OBJ_GET "7"
        BPF_PROG_ATTACH "8"
        BPF_PROG_DETACH "9"
        BPF_PROG_TEST_RUN "10"
        BPF_PROG_GET_NEXT_ID "11"
        BPF_MAP_GET_NEXT_ID "12"
        BPF_PROG_GET_FD_BY_ID "13"
        BPF_MAP_GET_FD_BY_ID "14"
        BPF_OBJ_GET_INFO_BY_FD "15"
        BPF_PROG_QUERY "16"
        BPF_RAW_TRACEPOINT_OPEN "17"
        BPF_BTF_LOAD "18"
        BPF_BTF_GET_FD_BY_ID "19"
        BPF_MAP_LOOKUP_AND_DELETE_ELEM "21"
        BPF_MAP_FREEZE "22"
        BPF_BTF_GET_NEXT_ID "23"
        BPF_MAP_LOOKUP_BATCH "24"
        BPF_MAP_LOOKUP_AND_DELETE_BATCH "25"
        BPF_MAP_UPDATE_BATCH "26"
        BPF_MAP_DELETE_BATCH "27"
        BPF_LINK_CREATE "28"
        BPF_LINK_UPDATE "29"
        BPF_LINK_GET_FD_BY_ID "30"
        BPF_LINK_GET_NEXT_ID "31"
        BPF_ENABLE_STATS "32"
        BPF_ITER_CREATE "33"
        BPF_LINK_DETACH "34"
        BPF_PROG_BIND_MAP "35"
