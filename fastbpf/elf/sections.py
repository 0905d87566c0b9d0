"""Program section names -> program type, expected attach type, attach target.

The table follows libbpf's ``section_defs`` (libbpf 1.x naming): a name
ending in ``+`` matches the bare prefix or the prefix followed by ``/`` and
an attach target (``tracepoint/syscalls/sys_enter_getpid``); other names
match exactly. The first matching row wins, so more specific rows come
first. ``.s`` forms load the program sleepable.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from ..enums import AttachType as A
from ..enums import ProgramType as P

__all__ = ["SectionDef", "SECTION_DEFS", "match_section"]


class SectionDef(NamedTuple):
    """One row of the table; ``kind`` names the auto-attach rule."""

    prefix: str
    type: P
    attach_type: A | None
    sleepable: bool = False
    kind: str = ""
    #: The kernel needs expected_attach_type at load (libbpf's non-optional rows).
    attach_at_load: bool = True
    frags: bool = False


def _d(prefix: str, ptype: P, attach: A | None = None, sleepable: bool = False, kind: str = "",
       at_load: bool = True, frags: bool = False) -> SectionDef:
    return SectionDef(prefix, ptype, attach, sleepable, kind, at_load, frags)


SECTION_DEFS: tuple[SectionDef, ...] = (
    _d("socket", P.SOCKET_FILTER, kind="socket"),
    _d("sk_reuseport/migrate", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT_OR_MIGRATE),
    _d("sk_reuseport", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT),
    _d("kprobe.multi+", P.KPROBE, A.TRACE_KPROBE_MULTI, kind="kprobe.multi"),
    _d("kretprobe.multi+", P.KPROBE, A.TRACE_KPROBE_MULTI, kind="kretprobe.multi"),
    _d("kprobe.session+", P.KPROBE, A.TRACE_KPROBE_SESSION, kind="kprobe.session"),
    _d("uprobe.multi.s+", P.KPROBE, A.TRACE_UPROBE_MULTI, True, kind="uprobe.multi"),
    _d("uretprobe.multi.s+", P.KPROBE, A.TRACE_UPROBE_MULTI, True, kind="uretprobe.multi"),
    _d("uprobe.multi+", P.KPROBE, A.TRACE_UPROBE_MULTI, kind="uprobe.multi"),
    _d("uretprobe.multi+", P.KPROBE, A.TRACE_UPROBE_MULTI, kind="uretprobe.multi"),
    _d("uprobe.session.s+", P.KPROBE, A.TRACE_UPROBE_SESSION, True, kind="uprobe.session"),
    _d("uprobe.session+", P.KPROBE, A.TRACE_UPROBE_SESSION, kind="uprobe.session"),
    _d("kprobe+", P.KPROBE, kind="kprobe"),
    _d("kretprobe+", P.KPROBE, kind="kretprobe"),
    _d("uprobe.s+", P.KPROBE, sleepable=True, kind="uprobe"),
    _d("uretprobe.s+", P.KPROBE, sleepable=True, kind="uretprobe"),
    _d("uprobe+", P.KPROBE, kind="uprobe"),
    _d("uretprobe+", P.KPROBE, kind="uretprobe"),
    _d("ksyscall+", P.KPROBE, kind="ksyscall"),
    _d("kretsyscall+", P.KPROBE, kind="kretsyscall"),
    _d("usdt.s+", P.KPROBE, sleepable=True, kind="usdt"),
    _d("usdt+", P.KPROBE, kind="usdt"),
    _d("tc/ingress", P.SCHED_CLS, A.TCX_INGRESS, kind="tcx"),
    _d("tc/egress", P.SCHED_CLS, A.TCX_EGRESS, kind="tcx"),
    _d("tcx/ingress", P.SCHED_CLS, A.TCX_INGRESS, kind="tcx"),
    _d("tcx/egress", P.SCHED_CLS, A.TCX_EGRESS, kind="tcx"),
    _d("tc", P.SCHED_CLS, kind="tc"),
    _d("classifier", P.SCHED_CLS, kind="tc"),
    _d("action", P.SCHED_ACT),
    _d("netkit/primary", P.SCHED_CLS, A.NETKIT_PRIMARY),
    _d("netkit/peer", P.SCHED_CLS, A.NETKIT_PEER),
    _d("tracepoint+", P.TRACEPOINT, kind="tracepoint"),
    _d("tp+", P.TRACEPOINT, kind="tracepoint"),
    _d("raw_tracepoint.w+", P.RAW_TRACEPOINT_WRITABLE, kind="raw_tp"),
    _d("raw_tp.w+", P.RAW_TRACEPOINT_WRITABLE, kind="raw_tp"),
    _d("raw_tracepoint+", P.RAW_TRACEPOINT, kind="raw_tp"),
    _d("raw_tp+", P.RAW_TRACEPOINT, kind="raw_tp"),
    _d("tp_btf+", P.TRACING, A.TRACE_RAW_TP, kind="tp_btf"),
    _d("fentry.s+", P.TRACING, A.TRACE_FENTRY, True, kind="tracing"),
    _d("fmod_ret.s+", P.TRACING, A.MODIFY_RETURN, True, kind="tracing"),
    _d("fexit.s+", P.TRACING, A.TRACE_FEXIT, True, kind="tracing"),
    _d("fentry+", P.TRACING, A.TRACE_FENTRY, kind="tracing"),
    _d("fmod_ret+", P.TRACING, A.MODIFY_RETURN, kind="tracing"),
    _d("fexit+", P.TRACING, A.TRACE_FEXIT, kind="tracing"),
    _d("freplace+", P.EXT, kind="freplace"),
    _d("lsm.s+", P.LSM, A.LSM_MAC, True, kind="lsm"),
    _d("lsm_cgroup+", P.LSM, A.LSM_CGROUP),
    _d("lsm+", P.LSM, A.LSM_MAC, kind="lsm"),
    _d("iter.s+", P.TRACING, A.TRACE_ITER, True, kind="iter"),
    _d("iter+", P.TRACING, A.TRACE_ITER, kind="iter"),
    _d("syscall", P.SYSCALL, sleepable=True),
    _d("xdp.frags/devmap", P.XDP, A.XDP_DEVMAP, frags=True),
    _d("xdp/devmap", P.XDP, A.XDP_DEVMAP),
    _d("xdp.frags/cpumap", P.XDP, A.XDP_CPUMAP, frags=True),
    _d("xdp/cpumap", P.XDP, A.XDP_CPUMAP),
    _d("xdp.frags", P.XDP, A.XDP, frags=True, kind="xdp"),
    _d("xdp", P.XDP, A.XDP, kind="xdp", at_load=False),
    _d("perf_event", P.PERF_EVENT),
    _d("lwt_in", P.LWT_IN),
    _d("lwt_out", P.LWT_OUT),
    _d("lwt_xmit", P.LWT_XMIT),
    _d("lwt_seg6local", P.LWT_SEG6LOCAL),
    _d("sockops", P.SOCK_OPS, A.CGROUP_SOCK_OPS, at_load=False, kind="cgroup"),
    _d("sk_skb/stream_parser", P.SK_SKB, A.SK_SKB_STREAM_PARSER, at_load=False),
    _d("sk_skb/stream_verdict", P.SK_SKB, A.SK_SKB_STREAM_VERDICT, at_load=False),
    _d("sk_skb/verdict", P.SK_SKB, A.SK_SKB_VERDICT, at_load=False),
    _d("sk_skb", P.SK_SKB),
    _d("sk_msg", P.SK_MSG, A.SK_MSG_VERDICT, at_load=False),
    _d("lirc_mode2", P.LIRC_MODE2, A.LIRC_MODE2, at_load=False),
    _d("flow_dissector", P.FLOW_DISSECTOR, A.FLOW_DISSECTOR, at_load=False,
       kind="flow_dissector"),
    _d("cgroup_skb/ingress", P.CGROUP_SKB, A.CGROUP_INET_INGRESS, at_load=False, kind="cgroup"),
    _d("cgroup_skb/egress", P.CGROUP_SKB, A.CGROUP_INET_EGRESS, at_load=False, kind="cgroup"),
    _d("cgroup/skb", P.CGROUP_SKB),
    _d("cgroup/sock_create", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, kind="cgroup"),
    _d("cgroup/sock_release", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_RELEASE, kind="cgroup"),
    _d("cgroup/sock", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, at_load=False, kind="cgroup"),
    _d("cgroup/post_bind4", P.CGROUP_SOCK, A.CGROUP_INET4_POST_BIND, kind="cgroup"),
    _d("cgroup/post_bind6", P.CGROUP_SOCK, A.CGROUP_INET6_POST_BIND, kind="cgroup"),
    _d("cgroup/bind4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_BIND, kind="cgroup"),
    _d("cgroup/bind6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_BIND, kind="cgroup"),
    _d("cgroup/connect4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT, kind="cgroup"),
    _d("cgroup/connect6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_CONNECT, kind="cgroup"),
    _d("cgroup/connect_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_CONNECT, kind="cgroup"),
    _d("cgroup/sendmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_SENDMSG, kind="cgroup"),
    _d("cgroup/sendmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_SENDMSG, kind="cgroup"),
    _d("cgroup/sendmsg_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_SENDMSG, kind="cgroup"),
    _d("cgroup/recvmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_RECVMSG, kind="cgroup"),
    _d("cgroup/recvmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_RECVMSG, kind="cgroup"),
    _d("cgroup/recvmsg_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_RECVMSG, kind="cgroup"),
    _d("cgroup/getpeername4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETPEERNAME, kind="cgroup"),
    _d("cgroup/getpeername6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETPEERNAME, kind="cgroup"),
    _d("cgroup/getpeername_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_GETPEERNAME,
       kind="cgroup"),
    _d("cgroup/getsockname4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETSOCKNAME, kind="cgroup"),
    _d("cgroup/getsockname6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETSOCKNAME, kind="cgroup"),
    _d("cgroup/getsockname_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_GETSOCKNAME,
       kind="cgroup"),
    _d("cgroup/sysctl", P.CGROUP_SYSCTL, A.CGROUP_SYSCTL, kind="cgroup"),
    _d("cgroup/getsockopt", P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT, kind="cgroup"),
    _d("cgroup/setsockopt", P.CGROUP_SOCKOPT, A.CGROUP_SETSOCKOPT, kind="cgroup"),
    _d("cgroup/dev", P.CGROUP_DEVICE, A.CGROUP_DEVICE, at_load=False, kind="cgroup"),
    _d("struct_ops.s+", P.STRUCT_OPS, sleepable=True),
    _d("struct_ops+", P.STRUCT_OPS),
    _d("sk_lookup", P.SK_LOOKUP, A.SK_LOOKUP, kind="sk_lookup"),
    _d("netfilter", P.NETFILTER, A.NETFILTER, kind="netfilter"),
)


@functools.lru_cache(maxsize=1024)
@functools.lru_cache(maxsize=1024)   # a scan of the table; objects repeat names
def match_section(name: str) -> tuple[SectionDef, str] | None:
    """The row for section *name* and the attach target after the prefix.

    ``match_section("tracepoint/syscalls/sys_enter_read")`` gives the
    tracepoint row and ``"syscalls/sys_enter_read"``; None if nothing
    matches (libbpf then refuses the program: type unknown).
    """
    for d in SECTION_DEFS:
        p = d.prefix
        if p.endswith("+"):
            base = p[:-1]
            if name == base:
                return d, ""
            if name.startswith(base + "/"):
                return d, name[len(base) + 1:]
        elif name == p:
            return d, ""
    return None
