"""The Linux release that introduced each map type, program type and attach type.

Used only to word errors ("added in Linux 5.8"): whether a feature is present
is always asked of the running kernel (:mod:`fastbpf.features`), never derived
from these numbers, because distributions backport features and hosts lock
them down.
"""

from __future__ import annotations

from .enums import AttachType, MapType, ProgramType

MAP_TYPE: dict[MapType, str] = {
    MapType.HASH: "3.19", MapType.ARRAY: "3.19", MapType.PROG_ARRAY: "4.2",
    MapType.PERF_EVENT_ARRAY: "4.3", MapType.PERCPU_HASH: "4.6", MapType.PERCPU_ARRAY: "4.6",
    MapType.STACK_TRACE: "4.6", MapType.CGROUP_ARRAY: "4.8", MapType.LRU_HASH: "4.10",
    MapType.LRU_PERCPU_HASH: "4.10", MapType.LPM_TRIE: "4.11", MapType.ARRAY_OF_MAPS: "4.12",
    MapType.HASH_OF_MAPS: "4.12", MapType.DEVMAP: "4.14", MapType.SOCKMAP: "4.14",
    MapType.CPUMAP: "4.15", MapType.XSKMAP: "4.18", MapType.SOCKHASH: "4.18",
    MapType.CGROUP_STORAGE: "4.19", MapType.REUSEPORT_SOCKARRAY: "4.19",
    MapType.PERCPU_CGROUP_STORAGE: "4.20", MapType.QUEUE: "4.20", MapType.STACK: "4.20",
    MapType.SK_STORAGE: "5.2", MapType.DEVMAP_HASH: "5.4", MapType.STRUCT_OPS: "5.6",
    MapType.RINGBUF: "5.8", MapType.INODE_STORAGE: "5.10", MapType.TASK_STORAGE: "5.11",
    MapType.BLOOM_FILTER: "5.16", MapType.USER_RINGBUF: "6.1", MapType.CGRP_STORAGE: "6.2",
    MapType.ARENA: "6.9",
}

PROGRAM_TYPE: dict[ProgramType, str] = {
    ProgramType.SOCKET_FILTER: "3.19", ProgramType.KPROBE: "4.1", ProgramType.SCHED_CLS: "4.1",
    ProgramType.SCHED_ACT: "4.1", ProgramType.TRACEPOINT: "4.7", ProgramType.XDP: "4.8",
    ProgramType.PERF_EVENT: "4.9", ProgramType.CGROUP_SKB: "4.10",
    ProgramType.CGROUP_SOCK: "4.10", ProgramType.LWT_IN: "4.10", ProgramType.LWT_OUT: "4.10",
    ProgramType.LWT_XMIT: "4.10", ProgramType.SOCK_OPS: "4.13", ProgramType.SK_SKB: "4.14",
    ProgramType.CGROUP_DEVICE: "4.15", ProgramType.SK_MSG: "4.17",
    ProgramType.RAW_TRACEPOINT: "4.17", ProgramType.CGROUP_SOCK_ADDR: "4.17",
    ProgramType.LWT_SEG6LOCAL: "4.18", ProgramType.LIRC_MODE2: "4.18",
    ProgramType.SK_REUSEPORT: "4.19", ProgramType.FLOW_DISSECTOR: "4.20",
    ProgramType.CGROUP_SYSCTL: "5.2", ProgramType.RAW_TRACEPOINT_WRITABLE: "5.2",
    ProgramType.CGROUP_SOCKOPT: "5.3", ProgramType.TRACING: "5.5",
    ProgramType.STRUCT_OPS: "5.6", ProgramType.EXT: "5.6", ProgramType.LSM: "5.7",
    ProgramType.SK_LOOKUP: "5.9", ProgramType.SYSCALL: "5.14", ProgramType.NETFILTER: "6.4",
}

ATTACH_TYPE: dict[AttachType, str] = {
    AttachType.CGROUP_INET_INGRESS: "4.10", AttachType.CGROUP_INET_EGRESS: "4.10",
    AttachType.CGROUP_INET_SOCK_CREATE: "4.10", AttachType.CGROUP_SOCK_OPS: "4.13",
    AttachType.SK_SKB_STREAM_PARSER: "4.14", AttachType.SK_SKB_STREAM_VERDICT: "4.14",
    AttachType.CGROUP_DEVICE: "4.15", AttachType.SK_MSG_VERDICT: "4.17",
    AttachType.CGROUP_INET4_BIND: "4.17", AttachType.CGROUP_INET6_BIND: "4.17",
    AttachType.CGROUP_INET4_CONNECT: "4.17", AttachType.CGROUP_INET6_CONNECT: "4.17",
    AttachType.CGROUP_INET4_POST_BIND: "4.17", AttachType.CGROUP_INET6_POST_BIND: "4.17",
    AttachType.CGROUP_UDP4_SENDMSG: "4.18", AttachType.CGROUP_UDP6_SENDMSG: "4.18",
    AttachType.LIRC_MODE2: "4.18", AttachType.FLOW_DISSECTOR: "4.20",
    AttachType.CGROUP_SYSCTL: "5.2", AttachType.CGROUP_UDP4_RECVMSG: "5.2",
    AttachType.CGROUP_UDP6_RECVMSG: "5.2", AttachType.CGROUP_GETSOCKOPT: "5.3",
    AttachType.CGROUP_SETSOCKOPT: "5.3", AttachType.TRACE_RAW_TP: "5.5",
    AttachType.TRACE_FENTRY: "5.5", AttachType.TRACE_FEXIT: "5.5",
    AttachType.MODIFY_RETURN: "5.7", AttachType.LSM_MAC: "5.7", AttachType.TRACE_ITER: "5.8",
    AttachType.CGROUP_INET4_GETPEERNAME: "5.8", AttachType.CGROUP_INET6_GETPEERNAME: "5.8",
    AttachType.CGROUP_INET4_GETSOCKNAME: "5.8", AttachType.CGROUP_INET6_GETSOCKNAME: "5.8",
    AttachType.XDP_DEVMAP: "5.8", AttachType.CGROUP_INET_SOCK_RELEASE: "5.9",
    AttachType.XDP_CPUMAP: "5.9", AttachType.SK_LOOKUP: "5.9", AttachType.XDP: "5.9",
    AttachType.SK_SKB_VERDICT: "5.13", AttachType.SK_REUSEPORT_SELECT: "5.14",
    AttachType.SK_REUSEPORT_SELECT_OR_MIGRATE: "5.14", AttachType.PERF_EVENT: "5.15",
    AttachType.TRACE_KPROBE_MULTI: "5.18", AttachType.LSM_CGROUP: "6.0",
    AttachType.STRUCT_OPS: "6.4", AttachType.NETFILTER: "6.4", AttachType.TCX_INGRESS: "6.6",
    AttachType.TCX_EGRESS: "6.6", AttachType.TRACE_UPROBE_MULTI: "6.6",
    AttachType.CGROUP_UNIX_CONNECT: "6.7", AttachType.CGROUP_UNIX_SENDMSG: "6.7",
    AttachType.CGROUP_UNIX_RECVMSG: "6.7", AttachType.CGROUP_UNIX_GETPEERNAME: "6.7",
    AttachType.CGROUP_UNIX_GETSOCKNAME: "6.7", AttachType.NETKIT_PRIMARY: "6.7",
    AttachType.NETKIT_PEER: "6.7", AttachType.TRACE_KPROBE_SESSION: "6.10",
    AttachType.TRACE_UPROBE_SESSION: "6.13",
}
