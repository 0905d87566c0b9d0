"""Every entry point, run without privileges, raises PermissionError and
says which capability it lacks.

The child process imports fastbpf as root (the interpreter lives in a
directory only root may read, so setpriv cannot start it as another user),
then drops to uid/gid 65534 with no groups and no capabilities left, and
tries each entry point. Objects the calls need (a loaded program) are made
before the drop, as a service would get them from its privileged parent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.kernel

CHILD = r'''
import json, os, sys
import numpy as np
from fastbpf import Map, MapSpec, MapType, Program, ProgramSpec, asm, btf, features, link, programs
from fastbpf.enums import AttachType, ProgramType
from fastbpf.link import tracing

tp = Program.load(ProgramSpec(type=ProgramType.TRACEPOINT,
                              instructions=asm.Instructions([asm.Mov.imm(asm.R0, 0), asm.exit()])))
pin = sys.argv[1]
tp.pin(pin)           # a pin this process made while it could
features.clear_cache()
os.setgroups([])
os.setgid(65534)
os.setuid(65534)      # from root to nobody: every capability goes
assert open("/proc/self/status").read().count("CapEff:\t0000000000000000") == 1

def attempt(name, fn):
    try:
        fn()
        return [name, "no error", ""]
    except BaseException as e:
        return [name, type(e).__name__, str(e), isinstance(e, PermissionError)]

hello = asm.Instructions([asm.Mov.imm(asm.R0, 0), asm.exit()])
rows = [
    attempt("Map.create", lambda: Map.create(MapSpec(type=MapType.HASH, key=4, value=4,
                                                     max_entries=1))),
    attempt("Program.load", lambda: Program.load(ProgramSpec(type=ProgramType.XDP,
                                                             instructions=hello))),
    attempt("Map.from_id", lambda: Map.from_id(1)),
    attempt("Program.from_id", lambda: Program.from_id(1)),
    attempt("Program.from_pin", lambda: Program.from_pin(pin)),
    attempt("btf.Handle.load", lambda: btf.Handle.load(btf.Spec())),
    attempt("enable_stats", lambda: programs.enable_stats()),
    attempt("features.probe_map_type", lambda: features.probe_map_type(MapType.HASH)),
    attempt("features.probe_link", lambda: features.probe_link(AttachType.TCX_INGRESS)),
    attempt("attach_tracepoint", lambda: link.attach_tracepoint(tp, "syscalls",
                                                                "sys_enter_getpid")),
]
print(json.dumps(rows))
'''

# What each message must name: the capability (or root) the call lacks.
NEEDS = {
    "Map.create": ("map create", "CAP_BPF"),
    "Program.load": ("program load", "CAP_BPF"),
    "Map.from_id": ("open map id 1", "CAP_BPF"),
    "Program.from_id": ("open program id 1", "CAP_BPF"),
    # The pin is root's (mode 0600): the file permission refuses first.
    "Program.from_pin": ("open pinned object", "EACCES"),
    "btf.Handle.load": ("btf load", "CAP_BPF"),
    "enable_stats": ("enable stats", "CAP_BPF"),
    "features.probe_map_type": ("may not use bpf(2) at all", "CAP_BPF"),
    "features.probe_link": ("may not use bpf(2) at all", "CAP_BPF"),
    "attach_tracepoint": ("tracefs is mounted at", "may not read it", "CAP_PERFMON"),
}


@pytest.fixture(scope="module")
def unprivileged_results():
    import shutil
    import uuid
    root = os.path.join(os.path.dirname(__file__), os.pardir)
    # A clean child: this suite may run under scripts/kernel-without.
    env = {k: v for k, v in os.environ.items() if k != "KERNEL_WITHOUT"}
    # Keep preloads such as a sanitizer runtime; drop only the shim.
    env["LD_PRELOAD"] = ":".join(x for x in os.environ.get("LD_PRELOAD", "").split(":")
                                 if x and "kernel-without" not in x and "kernel_without" not in x)
    env["PYTHONPATH"] = os.path.abspath(root)
    pins = os.path.join("/sys/fs/bpf", "fastbpf-test-" + uuid.uuid4().hex[:12])
    os.mkdir(pins)
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, os.path.join(pins, "tp")],
                             capture_output=True, text=True, env=env, timeout=120)
    finally:
        shutil.rmtree(pins, ignore_errors=True)
    assert out.returncode == 0, out.stderr
    return {r[0]: r[1:] for r in json.loads(out.stdout)}


@pytest.mark.parametrize("entry", sorted(NEEDS))
def test_entry_point_without_privileges_names_what_is_missing(unprivileged_results, entry):
    if os.path.isfile("/proc/sys/kernel/unprivileged_bpf_disabled"):
        with open("/proc/sys/kernel/unprivileged_bpf_disabled") as f:
            if f.read().strip() == "0" and entry != "attach_tracepoint":
                pytest.skip("unprivileged bpf(2) is enabled here: these calls may succeed")
    kind, text, *is_perm = unprivileged_results[entry]
    assert is_perm == [True], f"{entry}: {kind}: {text}"
    for frag in NEEDS[entry]:
        assert frag in text, f"{entry}: {frag!r} not in {text!r}"
