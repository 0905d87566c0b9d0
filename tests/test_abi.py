"""Our declared kernel ABI against the system's <linux/bpf.h> and the
running kernel's BTF.

fastbpf declares the uapi structs itself (fastbpf/_abi.pxd). Wherever the
build host's header knows a struct or field, sizes and offsets must agree.
Every field, the newer ones included, is also compared with the kernel's own
description of ``union bpf_attr``, ``struct bpf_*_info`` and
``perf_event_attr`` in /sys/kernel/btf/vmlinux. The attach-type-specific
tails of LINK_CREATE (packed by fastbpf/_linkattr.pyx) are in the same table
(``_abi_layout.layout()``) and are checked the same two ways.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from fastbpf import _abi_layout, _linkattr

pytestmark = pytest.mark.noroot

HEADER = "/usr/include/linux/bpf.h"

# The one table of our layouts; the LINK_CREATE tails and bpf_iter_link_info
# (offsets within the tail) are checked apart from the core structs.
LAYOUT = _abi_layout.layout()
TAILS = {n: v for n, v in LAYOUT.items()
         if n.startswith(("link_create.", "bpf_iter_link_info.", "bpf_link_info."))}
CORE = {n: v for n, v in LAYOUT.items() if n not in TAILS}

# our struct -> (C expression naming the matching object in the header,
# whether our struct is the whole C object (sizes comparable))
MATCH = {
    "map_create": ("((union bpf_attr *)0)->", False),
    "map_elem": ("((union bpf_attr *)0)->", False),
    "map_batch": ("((union bpf_attr *)0)->batch.", False),
    "prog_load": ("((union bpf_attr *)0)->", False),
    "obj": ("((union bpf_attr *)0)->", False),
    "prog_attach": ("((union bpf_attr *)0)->", False),
    "test": ("((union bpf_attr *)0)->test.", False),
    "get_id": ("((union bpf_attr *)0)->", False),
    "info": ("((union bpf_attr *)0)->info.", False),
    "query": ("((union bpf_attr *)0)->query.", False),
    "raw_tracepoint": ("((union bpf_attr *)0)->raw_tracepoint.", False),
    "btf_load": ("((union bpf_attr *)0)->", False),
    "link_create": ("((union bpf_attr *)0)->link_create.", False),
    "link_update": ("((union bpf_attr *)0)->link_update.", False),
    "bpf_map_info": ("((struct bpf_map_info *)0)->", True),
    "bpf_prog_info": ("((struct bpf_prog_info *)0)->", True),
    "bpf_btf_info": ("((struct bpf_btf_info *)0)->", True),
    "bpf_link_info": ("((struct bpf_link_info *)0)->", True),
    "perf_event_attr": ("((struct perf_event_attr *)0)->", True),
}
# Names that differ between our structs and the header's.
RENAME = {
    ("map_elem", "value"): "value",
    ("get_id", "start_id"): "start_id",
    ("link_create", "extra"): "target_btf_id",
    ("bpf_link_info", "extra"): "raw_tracepoint",   # the union's first member
    ("link_update", "old_prog_fd"): "old_prog_fd",
    ("query", "prog_cnt"): "prog_cnt",
    ("perf_event_attr", "sample_period"): "sample_period",
    ("perf_event_attr", "wakeup_events"): "wakeup_events",
}
SIZEOF = {
    "bpf_map_info": "struct bpf_map_info",
    "bpf_prog_info": "struct bpf_prog_info",
    "bpf_btf_info": "struct bpf_btf_info",
    "bpf_link_info": "struct bpf_link_info",
    "perf_event_attr": "struct perf_event_attr",
}


def _header_layout(tmp_path):
    """Our core structs and the header's offsets of their fields."""
    ours = CORE
    checks = []
    for name, (size, fields) in ours.items():
        prefix, _ = MATCH[name]
        for field in fields:
            cfield = RENAME.get((name, field), field)
            checks.append((name, field, f"(long)(size_t)&{prefix}{cfield}"))
    return ours, _compile_probes(tmp_path, checks, SIZEOF)


def _compile_probes(tmp_path, checks, sizeof):
    """Print each (name, field, C expression) of *checks* from a C program
    built against the system header; expressions the header cannot compile
    (fields it lacks) are dropped. Returns ``{name: {field: value}}``."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None or not os.path.exists(HEADER):
        pytest.skip("needs a C compiler and the system <linux/bpf.h>")
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <linux/bpf.h>",
             "#include <linux/perf_event.h>"]
    # Find which fields exist with one compile per field (cheap: ~150 tiny compiles
    # would be slow, so test them all in one file guarded by __has_field-free trick:
    # compile once, drop failing lines, repeat).
    present = list(checks)
    for _ in range(len(checks) + 1):
        src = "\n".join(lines + ["int main(void) {"] +
                        [f'  printf("{n} {f} %ld\\n", {expr});' for n, f, expr in present] +
                        [f'  printf("{n} __size__ %ld\\n", (long)sizeof({t}));'
                         for n, t in sizeof.items()] +
                        ["  return 0; }"])
        c = tmp_path / "abi.c"
        c.write_text(src)
        r = subprocess.run([cc, "-w", "-o", str(tmp_path / "abi"), str(c)],
                           capture_output=True, text=True)
        if r.returncode == 0:
            break
        bad_lines = {int(part.split(":")[1]) for part in r.stderr.splitlines()
                     if part.startswith(str(c) + ":") and "error" in part}
        offset = len(lines) + 2  # 1-based line of the first printf
        drop = {i - offset for i in bad_lines}
        if not drop:
            pytest.fail("could not compile the ABI probe:\n" + r.stderr[-2000:])
        present = [p for i, p in enumerate(present) if i not in drop]
    out = subprocess.run([str(tmp_path / "abi")], capture_output=True, text=True,
                         check=True).stdout
    theirs: dict = {}
    for line in out.splitlines():
        n, f, v = line.split()
        theirs.setdefault(n, {})[f] = int(v)
    return theirs


def test_layouts_match_system_header(tmp_path):
    ours, theirs = _header_layout(tmp_path)
    compared = 0
    for name, (size, fields) in ours.items():
        hdr = theirs.get(name, {})
        for field, off in fields.items():
            if field in hdr:
                assert off == hdr[field], f"{name}.{field}: ours at {off}, <linux/bpf.h> at {hdr[field]}"
                compared += 1
        if "__size__" in hdr:
            # Our struct may know newer trailing fields, never fewer bytes.
            assert size >= hdr["__size__"], f"{name}: ours {size} < header {hdr['__size__']}"
    assert compared > 150, f"only {compared} fields compared"


def test_newer_fields_are_ordered_and_aligned():
    for name, (size, fields) in CORE.items():
        offsets = list(fields.values())
        assert offsets == sorted(offsets), f"{name}: fields out of order"
        assert size % 8 == 0 or size % 4 == 0
        assert max(offsets) < size


# -- the kernel's BTF ------------------------------------------------------------

# our struct -> (the kernel type holding it, the member path to it)
BTF_ROOT = {
    "map_batch": ("bpf_attr", "batch."),
    "test": ("bpf_attr", "test."),
    "info": ("bpf_attr", "info."),
    "query": ("bpf_attr", "query."),
    "raw_tracepoint": ("bpf_attr", "raw_tracepoint."),
    "link_create": ("bpf_attr", "link_create."),
    "link_update": ("bpf_attr", "link_update."),
    "bpf_map_info": ("bpf_map_info", ""),
    "bpf_prog_info": ("bpf_prog_info", ""),
    "bpf_btf_info": ("bpf_btf_info", ""),
    "bpf_link_info": ("bpf_link_info", ""),
    "perf_event_attr": ("perf_event_attr", ""),
}

# LINK_CREATE's tails and bpf_iter_link_info (fastbpf/_linkattr.pyx): where
# each lives in the kernel's types; offsets of the tails count from the
# start of the tail (link_create.target_btf_id).
TAIL_ROOT = {
    "link_create.perf_event": ("bpf_attr", "link_create.perf_event."),
    "link_create.kprobe_multi": ("bpf_attr", "link_create.kprobe_multi."),
    "link_create.tracing": ("bpf_attr", "link_create.tracing."),
    "link_create.netfilter": ("bpf_attr", "link_create.netfilter."),
    "link_create.tcx": ("bpf_attr", "link_create.tcx."),
    "link_create.uprobe_multi": ("bpf_attr", "link_create.uprobe_multi."),
    "link_create.iter": ("bpf_attr", "link_create."),
    "bpf_iter_link_info.map": ("bpf_iter_link_info", "map."),
    "bpf_iter_link_info.cgroup": ("bpf_iter_link_info", "cgroup."),
    "bpf_iter_link_info.task": ("bpf_iter_link_info", "task."),
    **{f"bpf_link_info.{k}": ("bpf_link_info", f"{k}.")
       for k in ("tracing", "cgroup", "netns", "xdp", "struct_ops", "netfilter", "tcx",
                 "netkit", "sockmap")},
}
# C spelling of each root type, for the header probe.
C_ROOT = {"bpf_attr": "union bpf_attr", "bpf_iter_link_info": "union bpf_iter_link_info",
          "bpf_link_info": "struct bpf_link_info"}
TAIL_START = "link_create.target_btf_id"


@pytest.fixture(scope="module")
def kernel_btf():
    from fastbpf import btf
    try:
        return btf.load_kernel_spec()
    except (OSError, btf.BTFError) as e:
        pytest.skip(f"no kernel BTF: {e}")


def _btf_offset(spec, root: str, path: str) -> int:
    """The byte offset of the member *path* (dotted) inside the kernel type *root*."""
    from fastbpf.btf import skip_qualifiers
    t = spec.type_by_name(root)
    bits = 0
    for part in path.split("."):
        m = skip_qualifiers(t).member(part)
        bits += m.bit_offset
        t = m.type
    return bits // 8


def _tail_base(root: str, prefix: str) -> str:
    """The member that tail offsets count from: link_create's union, or
    the tail's own member of the other roots."""
    return TAIL_START if root == "bpf_attr" else prefix.rstrip(".")


def test_layouts_match_kernel_btf(kernel_btf):
    compared = 0
    for name, (size, fields) in CORE.items():
        root, prefix = BTF_ROOT.get(name, ("bpf_attr", ""))
        for field, off in fields.items():
            cfield = RENAME.get((name, field), field)
            theirs = _btf_offset(kernel_btf, root, prefix + cfield)
            assert off == theirs, f"{name}.{field}: ours at {off}, the kernel's BTF at {theirs}"
            compared += 1
    assert compared > 150


def test_link_create_tails_match_kernel_btf(kernel_btf):
    tails = TAILS
    assert set(tails) == set(TAIL_ROOT)
    for name, (size, fields) in tails.items():
        root, prefix = TAIL_ROOT[name]
        base = _btf_offset(kernel_btf, root, _tail_base(root, prefix))
        for field, off in fields.items():
            theirs = _btf_offset(kernel_btf, root, prefix + field) - base
            assert off == theirs, f"{name}.{field}: ours at {off}, the kernel's BTF at {theirs}"
        if root == "bpf_attr":
            # The tail must fit the 48 bytes _core.link_create copies.
            assert size <= 48, name
        else:
            member = kernel_btf.type_by_name(root).member(prefix.rstrip("."))
            from fastbpf.btf import resolve_size
            if root == "bpf_link_info":
                # We declare the leading fields `fastbpf link` shows.
                assert size <= resolve_size(member.type), f"{name}: ours {size} bytes"
            else:
                assert size == resolve_size(member.type), f"{name}: ours {size} bytes"


def test_link_create_tails_match_system_header(tmp_path):
    checks = []
    for name, (size, fields) in TAILS.items():
        root, prefix = TAIL_ROOT[name]
        c_root = C_ROOT[root]
        base = f"offsetof({c_root}, {_tail_base(root, prefix)})"
        checks += [(name, f, f"(long)(offsetof({c_root}, {prefix}{f}) - {base})")
                   for f in fields]
    theirs = _compile_probes(tmp_path, checks, {})
    compared = 0
    for name, (size, fields) in TAILS.items():
        for field, off in fields.items():
            if field in theirs.get(name, {}):
                assert off == theirs[name][field], f"{name}.{field}"
                compared += 1
    # 6.1 headers know perf_event, kprobe_multi, tracing, iter and the iter infos.
    assert compared >= 16, f"only {compared} tail fields compared"


def test_link_create_tails_pack_their_fields():
    # Each packer writes what it is given at the declared offset.
    import struct
    lay = TAILS
    raw = _linkattr.kprobe_multi(1, 2, 3, 4, 5)
    f = lay["link_create.kprobe_multi"][1]
    assert len(raw) == lay["link_create.kprobe_multi"][0]
    assert struct.unpack_from("=I", raw, f["cnt"])[0] == 2
    assert struct.unpack_from("=Q", raw, f["cookies"])[0] == 5
    raw = _linkattr.uprobe_multi(path=7, cnt=3, offsets=8, pid=9)
    f = lay["link_create.uprobe_multi"][1]
    assert struct.unpack_from("=Q", raw, f["path"])[0] == 7
    assert struct.unpack_from("=Q", raw, f["offsets"])[0] == 8
    assert struct.unpack_from("=I", raw, f["pid"])[0] == 9
    assert struct.unpack_from("=I", raw, f["cnt"])[0] == 3
    raw = _linkattr.netfilter(2, 1, -128, 1)
    assert struct.unpack_from("=i", raw, lay["link_create.netfilter"][1]["priority"])[0] == -128
    assert _linkattr.tracing(0, 0xFFFFFFFFFFFFFFFF)[8:] == b"\xff" * 8


def test_perf_mmap_page_matches_kernel_btf():
    """perf_event_mmap_page's fields as fastbpf._ring uses them (declared in
    _abi.pxd) against the running kernel's own description of the struct:
    the build host's headers may be older than the kernel."""
    from fastbpf import _ring, btf, features
    reason = features.skip_reason("vmlinux_btf")
    if reason:
        pytest.skip(reason)
    page = btf.load_kernel_spec().type_by_name("perf_event_mmap_page")
    ours = _ring._perf_mmap_page_layout()
    theirs = {f: page.member(f).bit_offset // 8 for f in ours}
    assert ours == theirs
    assert ours["data_head"] == 1024 and page.size >= ours["data_size"] + 8
