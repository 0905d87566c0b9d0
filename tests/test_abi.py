"""Our declared kernel ABI against the system's <linux/bpf.h>.

fastbpf declares the uapi structs itself (fastbpf/_abi.pxd). Wherever the
build host's header knows a struct or field, sizes and offsets must agree;
fields newer than the header are checked only for alignment and order.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from fastbpf import _core

pytestmark = pytest.mark.noroot

HEADER = "/usr/include/linux/bpf.h"

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
    "perf_event_attr": ("((struct perf_event_attr *)0)->", True),
}
# Names that differ between our structs and the header's.
RENAME = {
    ("map_elem", "value"): "value",
    ("get_id", "start_id"): "start_id",
    ("link_create", "extra"): "target_btf_id",
    ("link_update", "old_prog_fd"): "old_prog_fd",
    ("query", "prog_cnt"): "prog_cnt",
    ("perf_event_attr", "sample_period"): "sample_period",
    ("perf_event_attr", "wakeup_events"): "wakeup_events",
}
SIZEOF = {
    "bpf_map_info": "struct bpf_map_info",
    "bpf_prog_info": "struct bpf_prog_info",
    "bpf_btf_info": "struct bpf_btf_info",
    "perf_event_attr": "struct perf_event_attr",
}


def _header_layout(tmp_path):
    """Compile probes one field at a time; a field the header lacks fails
    to compile and is reported as None."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None or not os.path.exists(HEADER):
        pytest.skip("needs a C compiler and the system <linux/bpf.h>")
    ours = _core._abi_layout()
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <linux/bpf.h>",
             "#include <linux/perf_event.h>"]
    checks = []
    for name, (size, fields) in ours.items():
        prefix, _ = MATCH[name]
        for field in fields:
            cfield = RENAME.get((name, field), field)
            checks.append((name, field, f"(long)(size_t)&{prefix}{cfield}"))
    # Find which fields exist with one compile per field (cheap: ~150 tiny compiles
    # would be slow, so test them all in one file guarded by __has_field-free trick:
    # compile once, drop failing lines, repeat).
    present = list(checks)
    for _ in range(len(checks) + 1):
        src = "\n".join(lines + ["int main(void) {"] +
                        [f'  printf("{n} {f} %ld\\n", {expr});' for n, f, expr in present] +
                        [f'  printf("{n} __size__ %ld\\n", (long)sizeof({t}));'
                         for n, t in SIZEOF.items()] +
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
    return ours, theirs


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
    for name, (size, fields) in _core._abi_layout().items():
        offsets = list(fields.values())
        assert offsets == sorted(offsets), f"{name}: fields out of order"
        assert size % 8 == 0 or size % 4 == 0
        assert max(offsets) < size
