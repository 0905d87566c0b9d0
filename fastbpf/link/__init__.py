"""Attaching programs to hooks. Every attachment is a :class:`Link`."""

from __future__ import annotations

from ._base import DetachLink, FDLink, Link, LinkInfo, link_ids

__all__ = ["Link", "FDLink", "DetachLink", "LinkInfo", "link_ids"]

# Tracing hooks (tracepoints, raw_tp, tp_btf, fentry/LSM, perf events).
from .perf_event import PerfEventGroup, PerfEventLink, attach_perf_event
from .tracing import (attach_raw_tracepoint, attach_tp_btf, attach_tracepoint,
                      attach_tracing, tracepoint_id)

__all__ += ["PerfEventGroup", "PerfEventLink", "attach_perf_event", "attach_raw_tracepoint",
            "attach_tp_btf", "attach_tracepoint", "attach_tracing", "tracepoint_id"]

# Networking hooks (XDP, tc, sockets, cgroups, netns, netfilter).
from .cgroup import attach_cgroup
from .netfilter import NFHook, NFProto, attach_netfilter
from .netns import attach_flow_dissector, attach_sk_lookup
from .socket import attach_socket_filter
from .tc import TCFilterLink, attach_tc, attach_tcx
from .xdp import attach_xdp

__all__ += ["attach_xdp", "attach_tcx", "attach_tc", "TCFilterLink", "attach_socket_filter",
            "attach_cgroup", "attach_sk_lookup", "attach_flow_dissector", "attach_netfilter",
            "NFProto", "NFHook"]

# uprobes.
from .uprobe import attach_uprobe, attach_uprobe_multi

__all__ += ["attach_uprobe", "attach_uprobe_multi"]

# kprobes.
from .kprobe import attach_kprobe, attach_kprobe_multi

__all__ += ["attach_kprobe", "attach_kprobe_multi"]

# bpf_iter.
from .iter import IterLink, attach_iter

__all__ += ["IterLink", "attach_iter"]

# struct_ops.
from .struct_ops import (StructOpsLink, attach_struct_ops, create_struct_ops_map,
                         struct_ops_program_spec)

__all__ += ["StructOpsLink", "attach_struct_ops", "create_struct_ops_map",
            "struct_ops_program_spec"]
