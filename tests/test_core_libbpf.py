"""Differential test: fastbpf's CO-RE results against libbpf's, relocation
by relocation, on the testdata objects, against the running kernel's BTF
and against synthetic target BTF (libbpf's ``btf_custom_path``).

A small C loader (built here with gcc and -lbpf) opens and loads each
object with libbpf's debug log on; libbpf prints every relocation's local
spec, its chosen candidate and how it patched the instruction. libbpf
relocates before it loads, so programs the verifier rejects still show
their relocations. Objects are little-endian only: libbpf refuses objects
of the other byte order.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from fastbpf import btf, features
from fastbpf.btf import core
from fastbpf.btf.types import Member, Struct
from fastbpf.errors import CORERelocationError

sys.path.insert(0, os.path.dirname(__file__))
import core_objects  # noqa: E402
from test_core import U32, blob_t1, TESTDATA  # noqa: E402

LOADER_C = r"""
#include <bpf/libbpf.h>
#include <stdarg.h>
#include <stdio.h>

static int print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return vfprintf(stdout, fmt, ap);
}

int main(int argc, char **argv)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .btf_custom_path = argc > 2 ? argv[2] : NULL);
	struct bpf_object *obj;

	libbpf_set_print(print);
	obj = bpf_object__open_file(argv[1], &opts);
	if (!obj) {
		printf("OPEN FAILED\n");
		return 1;
	}
	printf("LOAD RESULT %d\n", bpf_object__load(obj));
	bpf_object__close(obj);
	return 0;
}
"""

_RELO = re.compile(r"prog '([^']+)': relo #(\d+): (.*)$")
_PATCH = re.compile(r"patched insn #(\d+) \(([A-Z0-9/]+)\) (imm64|imm|off|mem_sz) (\d+) -> (\d+)")
_SPEC = re.compile(r"^<([a-z_0-9]+)> \[(\d+)\] (.*) \((?:[0-9:]+ @ offset [0-9.]+|0 @ offset 0)\)$")
_SPEC_NOOFF = re.compile(r"^<([a-z_0-9]+)> \[(\d+)\] (.*)$")
_CAND = re.compile(r"^matching candidate #\d+ <[a-z_0-9]+> \[(\d+)\]")


@pytest.fixture(scope="module")
def loader(tmp_path_factory):
    if not shutil.which("gcc") or not os.path.exists("/usr/include/bpf/libbpf.h"):
        pytest.skip("libbpf headers (libbpf-dev) or gcc are absent")
    d = tmp_path_factory.mktemp("corediff")
    src = d / "loader.c"
    src.write_text(LOADER_C)
    exe = d / "loader"
    subprocess.run(["gcc", "-O1", "-o", str(exe), str(src), "-lbpf"], check=True)
    return str(exe)


def libbpf_relocations(loader: str, path: str, target: str | None = None) -> dict:
    """{(prog, relo #): {...}} parsed from libbpf's debug log."""
    args = [loader, path] + ([target] if target else [])
    out = subprocess.run(args, capture_output=True, text=True, timeout=120).stdout
    got: dict = {}
    for line in out.splitlines():
        m = _RELO.search(line)
        if not m:
            continue
        key = (m.group(1), int(m.group(2)))
        rest = m.group(3)
        e = got.setdefault(key, {"poisoned": False, "insn": None, "cand": None})
        p = _PATCH.match(rest)
        if p:
            e["insn"] = int(p.group(1))
            if p.group(3) == "mem_sz":
                e["mem_sz"] = (int(p.group(4)), int(p.group(5)))
            else:
                e["old"], e["new"] = int(p.group(4)), int(p.group(5))
            continue
        if rest.startswith("substituting insn #"):
            e["poisoned"] = True
            n = int(rest.split("#")[1].split()[0])
            e["insn"] = n if e["insn"] is None else min(n, e["insn"])
            continue
        c = _CAND.match(rest)
        if c and e["cand"] is None:
            e["cand"] = int(c.group(1))
            continue
        if "ambiguity" in rest or "failed to relocate" in rest:
            e["error"] = rest
            continue
        s = _SPEC.match(rest) or _SPEC_NOOFF.match(rest)
        if s and "local" not in e:
            e["local"] = (s.group(1), int(s.group(2)), s.group(3))
    return got


def ours(path: str, target) -> dict:
    """{(prog, relo #): (CORERelocation, insns before, insns after)}."""
    o = core_objects.load(path)
    cache: dict = {}
    out = {}
    for name, fn in o.funcs.items():
        if not fn.relos:
            continue
        before = list(fn.insns)
        rels = core.relocate_instructions(o.spec, fn.insns, fn.pairs(), target,
                                          cand_cache=cache, program=name)
        for (idx, n, slot, _), r in zip(fn.relos, rels):
            assert r.slot == slot
            out[(name, n)] = (r, before[idx])
    return out


def compare(theirs: dict, mine: dict) -> int:
    assert set(theirs) == set(mine), (sorted(set(theirs) ^ set(mine)))
    for key, e in theirs.items():
        r, old_insn = mine[key]
        kind, lid, text = e["local"]
        assert kind == core_kind_text(r), key
        text = text.split(" = ")[0]        # libbpf adds an enumerator's value
        assert lid == r.local_type_id and text == r.path, (key, text, r.path)
        assert e["insn"] == r.slot, key
        assert e["poisoned"] == r.poisoned, (key, e, r)
        if e["cand"] is not None and r.kind != btf.CoreReloKind.TYPE_ID_LOCAL:
            assert r.candidate is not None and r.target.type_id(r.candidate) == e["cand"], key
        if not r.poisoned:
            assert e["new"] == r.target_value, (key, e, r)
            if old_insn.opcode & 7 in (1, 2, 3):
                assert e["old"] == old_insn.offset & 0xFFFFFFFFFFFFFFFF, key
            else:
                assert e["old"] == old_insn.constant & (0xFFFFFFFFFFFFFFFF), key
            if "mem_sz" in e:
                assert e["mem_sz"] == (r.local_size, r.target_size), key
            elif old_insn.opcode & 7 in (1, 2, 3):     # sizes matter to loads/stores only
                assert r.local_size == r.target_size, key
    return len(theirs)


def core_kind_text(r) -> str:
    from fastbpf.btf.core._match import KIND_TEXT
    return KIND_TEXT[r.kind]


COUNTS: dict = {}


@pytest.mark.parametrize("name", ["core_kinds", "core_globals", "core_synth"])
def test_against_kernel(loader, name):
    p = features.probe_vmlinux_btf()
    if not p:
        pytest.skip(p.reason)
    path = os.path.join(TESTDATA, f"{name}-el.o")
    n = compare(libbpf_relocations(loader, path), ours(path, None))
    assert n > 0
    COUNTS[("kernel", name)] = n


def synthetic_target() -> btf.Spec:
    from fastbpf.btf.types import Pointer, VOID
    from test_core import U16, U64, S64
    v2 = Struct("core_blob___v2", 8, [Member("a_renamed", U32, 32)])
    mem = Struct("core_mem", 48, [
        Member("u16f", U16, 0), Member("u32f", U64, 64), Member("s32f", S64, 128),
        Member("u64f", U64, 192), Member("ptr", Pointer(VOID), 256)])
    return blob_t1([v2, mem])


@pytest.mark.parametrize("name", ["core_kinds", "core_synth"])
def test_against_synthetic_target(loader, name, tmp_path):
    target = synthetic_target()
    tpath = tmp_path / "target.btf"
    tpath.write_bytes(target.encode())
    path = os.path.join(TESTDATA, f"{name}-el.o")
    n = compare(libbpf_relocations(loader, path, str(tpath)), ours(path, str(tpath)))
    assert n > 0
    COUNTS[("synthetic", name)] = n


def test_ambiguity_agrees(loader, tmp_path):
    """Both refuse the same relocation when two flavors disagree."""
    x = Struct("core_blob___x", 8, [Member("a", U32, 32)])
    y = Struct("core_blob___y", 8, [Member("a", U32, 0)])
    tpath = tmp_path / "amb.btf"
    tpath.write_bytes(btf.Spec.from_types([x, y]).encode())
    path = os.path.join(TESTDATA, "core_synth-el.o")
    theirs = libbpf_relocations(loader, path, str(tpath))
    failed = [k for k, e in theirs.items() if "error" in e]
    assert len(failed) == 1
    with pytest.raises(CORERelocationError, match="ambiguity") as info:
        ours(path, str(tpath))
    assert f"prog '{failed[0][0]}'" in str(info.value)


def _embedded_bpf_objects(binary: str) -> list[bytes]:
    """BPF ELF objects embedded in a skeleton-based executable."""
    import struct
    with open(binary, "rb") as f:
        data = f.read()
    out = []
    i = data.find(b"\x7fELF\x02\x01", 1)
    while i != -1:
        if len(data) - i > 64 and struct.unpack_from("<H", data, i + 18)[0] == 247:  # EM_BPF
            shoff = struct.unpack_from("<Q", data, i + 0x28)[0]
            shentsize, shnum = struct.unpack_from("<HH", data, i + 0x3A)
            out.append(data[i:i + shoff + shentsize * shnum])
        i = data.find(b"\x7fELF\x02\x01", i + 1)
    return out


# The skeleton hosts of tests/test_elf_objects.py: libbpf-tools' executables
# and pcp's BPF PMDA modules (installed, or unpacked by scripts/setup.sh).
_PCP_MODULES = ("/usr/lib/pcp/pmdas/bpf/modules/*.so",
                "/var/cache/fastbpf-test/pcp/usr/lib/pcp/pmdas/bpf/modules/*.so")


@pytest.fixture(scope="module")
def real_objects(tmp_path_factory) -> list[str]:
    """Paths of the BPF objects extracted from Debian's libbpf-tools and pcp."""
    import glob
    res = subprocess.run(["dpkg", "-L", "libbpf-tools"], capture_output=True, text=True)
    hosts = [b for b in res.stdout.split() if b.startswith("/usr/sbin/") and os.path.isfile(b)]
    hosts += sorted(glob.glob(_PCP_MODULES[0]) or glob.glob(_PCP_MODULES[1]))
    if not hosts:
        pytest.skip("Debian packages libbpf-tools and pcp are absent (scripts/setup.sh)")
    d = tmp_path_factory.mktemp("skeletons")
    out = []
    for b in hosts:
        for k, blob in enumerate(_embedded_bpf_objects(b)):
            path = d / f"{os.path.basename(b)}-{k}.bpf.o"
            path.write_bytes(blob)
            out.append(str(path))
    if not out:
        pytest.skip("libbpf-tools and pcp hold no BPF objects")
    return out


def _compare_objects(loader: str, paths: list[str], target: str | None) -> tuple[int, int]:
    compared = objects = 0
    for path in paths:
        theirs = libbpf_relocations(loader, path, target)
        if not theirs:
            continue
        mine = ours(path, target)
        assert set(theirs) <= set(mine), path
        compared += compare(theirs, {key: mine[key] for key in theirs})
        objects += 1
    return objects, compared


def test_real_objects(loader, real_objects):
    """The BPF objects inside Debian's libbpf-tools (biolatency, execsnoop,
    ...) and pcp's BPF PMDA: every relocation libbpf applies, fastbpf
    computes the same.
    libbpf stops before CO-RE for objects whose maps it cannot create
    here; those show no relocations and are not compared."""
    p = features.probe_vmlinux_btf()
    if not p:
        pytest.skip(p.reason)
    objects, compared = _compare_objects(loader, real_objects, None)
    assert objects > 0 and compared > 0
    COUNTS[("libbpf-tools", "kernel")] = (objects, compared)


def mutated_kernel_btf() -> bytes:
    """This kernel's BTF, changed the way other kernels differ: task_struct
    grows and moves from 'pid' on, loses 'tgid', has 'state' for
    '__state', an unsigned 'pid', a wider unsigned 'flags' and wider signed
    'prio' and 'exit_code'; enum pid_type's values move; inode.i_ino is
    renamed. A fresh parse, so the process's cached kernel spec is untouched."""
    s = btf.Spec.from_file("/sys/kernel/btf/vmlinux")
    S = btf.Kind.STRUCT
    ulong = s.type_by_name("long unsigned int", kind=btf.Kind.INT)
    long_ = s.type_by_name("long int", kind=btf.Kind.INT)
    uint = s.type_by_name("unsigned int", kind=btf.Kind.INT)
    ts = s.type_by_name("task_struct", kind=S)
    out, shift = [], False
    for m in ts.members:
        shift = shift or m.name == "pid"
        if m.name == "tgid":
            continue
        if m.name == "__state":
            m = m._replace(name="state")
        elif m.name == "pid":
            m = m._replace(type=uint)
        elif m.name == "flags":
            m = m._replace(type=ulong)
        elif m.name in ("prio", "exit_code"):
            m = m._replace(type=long_)
        if shift:
            m = m._replace(bit_offset=m.bit_offset + 512)
        out.append(m)
    ts.members = out
    ts.size += 64
    e = s.type_by_name("pid_type", kind=btf.Kind.ENUM)
    e.values = [v._replace(value=v.value + 10) for v in e.values]
    ino = s.type_by_name("inode", kind=S)
    ino.members = [m._replace(name="i_ino_x") if m.name == "i_ino" else m for m in ino.members]
    return s.encode()


def test_real_objects_against_another_kernel(loader, real_objects, tmp_path):
    """btfhub-style: the same objects (and testdata's) relocated against a
    kernel BTF that is not the running one; moved, missing, renamed and
    resized fields and changed enum values poison and move the same
    instructions in both."""
    p = features.probe_vmlinux_btf()
    if not p:
        pytest.skip(p.reason)
    target = tmp_path / "other-vmlinux.btf"
    target.write_bytes(mutated_kernel_btf())
    paths = real_objects + [os.path.join(TESTDATA, f"{n}-el.o")
                            for n in ("core_kinds", "core_bench", "core_globals")]
    objects, compared = _compare_objects(loader, paths, str(target))
    assert objects > 0 and compared > 0
    COUNTS[("libbpf-tools", "other kernel")] = (objects, compared)
