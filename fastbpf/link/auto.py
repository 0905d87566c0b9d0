"""Auto-attach: attach a program where its ELF section name says, like libbpf.

``tracepoint/<category>/<name>``, ``raw_tp/<name>``, ``tp_btf/<name>``,
``fentry``/``fexit``/``fmod_ret``/``lsm``, ``iter/<kind>``,
``kprobe/<symbol>``, ``uprobe/<path>:<symbol>[+<offset>]`` name their target;
``xdp``, ``tc``, ``tcx/<direction>`` need an interface, ``cgroup...`` a cgroup
path, ``sk_lookup`` and ``flow_dissector`` a network namespace (default: the
caller's), and the rest take what their :mod:`fastbpf.link` function takes.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["auto_attach"]

_UPROBE = re.compile(r"^(?P<path>[^:]+):(?P<sym>[^+]*)(?:\+(?P<off>(0x)?[0-9a-fA-F]+))?$")


def auto_attach(prog: Any, *args: Any, **kwargs: Any) -> Any:
    """Attach *prog* (loaded from an object) as its section name says.

    Positional *args* give what the section cannot: the interface for
    ``xdp``/``tc``/``tcx``, the cgroup for ``cgroup*``/``sockops``, the
    socket for ``socket``. Raises ValueError when the section names no
    target and none is given.
    """
    from . import (attach_cgroup, attach_flow_dissector, attach_iter, attach_kprobe,
                   attach_netfilter, attach_raw_tracepoint, attach_sk_lookup,
                   attach_socket_filter, attach_tc, attach_tcx, attach_tp_btf,
                   attach_tracepoint, attach_tracing, attach_uprobe, attach_uprobe_multi,
                   attach_xdp)
    from ..elf.sections import match_section
    spec = getattr(prog, "spec", None)
    section = getattr(spec, "section", "") if spec is not None else ""
    found = match_section(section) if section else None
    if found is None:
        raise ValueError(f"program {prog.name!r} has no section name to attach by; "
                         f"use a fastbpf.link.attach_* function")
    d, target = found
    kind = d.kind

    def need(what: str) -> None:
        if not args:
            raise ValueError(f"program {prog.name!r} ({section}) attaches to {what}: "
                             f"pass it, e.g. prog.attach(...)")

    if kind == "tracepoint":
        if target.count("/") != 1:
            raise ValueError(f"section {section!r} should be tracepoint/<category>/<name>")
        cat, name = target.split("/")
        return attach_tracepoint(prog, cat, name, **kwargs)
    if kind == "raw_tp":
        if not target and not args:
            raise ValueError(f"section {section!r} names no raw tracepoint")
        return attach_raw_tracepoint(prog, target or args[0], **kwargs)
    if kind == "tp_btf":
        return attach_tp_btf(prog, **kwargs)
    if kind in ("tracing", "lsm"):
        return attach_tracing(prog, **kwargs)
    if kind == "iter":
        return attach_iter(prog, **kwargs)
    if kind in ("kprobe", "kretprobe"):
        if not target:
            raise ValueError(f"section {section!r} names no kernel function")
        sym, _, off = target.partition("+")
        return attach_kprobe(prog, sym, kind == "kretprobe", offset=int(off or "0", 0),
                             **kwargs)
    if kind in ("uprobe", "uretprobe"):
        m = _UPROBE.match(target)
        if not m:
            raise ValueError(f"section {section!r}: expected uprobe/<path>:<symbol>[+offset]")
        return attach_uprobe(prog, m["path"], m["sym"] or None, kind == "uretprobe",
                             offset=int(m["off"] or "0", 0), **kwargs)
    if kind in ("uprobe.multi", "uretprobe.multi"):
        path, _, pattern = target.partition(":")
        return attach_uprobe_multi(prog, path, [pattern] if pattern else None,
                                   kind == "uretprobe.multi", **kwargs)
    if kind == "xdp":
        need("an interface")
        return attach_xdp(prog, *args, **kwargs)
    if kind == "tcx":
        need("an interface")
        direction = "egress" if section.endswith("egress") else "ingress"
        return attach_tcx(prog, args[0], direction, **kwargs)
    if kind == "tc":
        need("an interface")
        return attach_tc(prog, *args, **kwargs)
    if kind == "cgroup":
        need("a cgroup (path or fd)")
        # Every cgroup section of the table names its attach type.
        return attach_cgroup(prog, args[0], d.attach_type, **kwargs)  # type: ignore[arg-type]
    if kind == "sk_lookup":
        return attach_sk_lookup(prog, *args, **kwargs)
    if kind == "flow_dissector":
        return attach_flow_dissector(prog, *args, **kwargs)
    if kind == "netfilter":
        return attach_netfilter(prog, *args, **kwargs)
    if kind == "socket":
        need("a socket")
        return attach_socket_filter(prog, *args, **kwargs)
    raise ValueError(f"program {prog.name!r}: section {section!r} cannot be attached "
                     f"automatically; use a fastbpf.link.attach_* function")
