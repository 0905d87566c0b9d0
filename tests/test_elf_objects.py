"""Objects nobody on the project wrote, the testdata Makefile, and hostile input.

* Every compiled BPF object Debian ships (xdp-tools, libxdp1: /usr/lib/*/bpf)
  and every CO-RE object embedded as a libbpf skeleton in Debian's
  executables (libbpf-tools: /usr/sbin/*; pcp's BPF PMDA modules) that
  libbpf (``bpftool prog loadall``) loads on this kernel loads through
  fastbpf too, into the same instructions (the kernel's xlated dump, map
  references by name); where libbpf refuses (fentry without trampolines, a
  kernel function or field this kernel lacks, a map the tool sizes at run
  time), fastbpf raises the same kind of error naming the same program or
  map, not a crash.
* ``make`` in testdata/ reproduces the committed objects (when clang is there).
* Mutated testdata objects give a spec, ELFError or BTFError, nothing else.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import struct
import subprocess

import pytest

import fastbpf
from fastbpf.errors import CORERelocationError
from fastbpf import _core
from fastbpf.maps import Map
from fastbpf.programs import Program

HERE = os.path.dirname(__file__)
TESTDATA = os.path.normpath(os.path.join(HERE, "..", "testdata"))
DEBIAN_OBJECTS = sorted(glob.glob("/usr/lib/*/bpf/*.o"))
# pcp is not installed by scripts/setup.sh (its postinst starts daemons):
# setup unpacks the .deb here instead.
PCP_UNPACKED = "/var/cache/fastbpf-test/pcp"
PCP_MODULES = "usr/lib/pcp/pmdas/bpf/modules/*.so"


def _package_files(pkg: str) -> list[str]:
    for f in (f"/var/lib/dpkg/info/{pkg}.list", f"/var/lib/dpkg/info/{pkg}:amd64.list"):
        if os.path.exists(f):
            with open(f) as fh:
                return fh.read().split()
    return []


def embedded_bpf_objects(binary: str) -> list[bytes]:
    """The BPF objects a libbpf skeleton embeds in *binary*: each ELF header
    with e_machine EM_BPF (247), cut at the end of its section table."""
    with open(binary, "rb") as f:
        data = f.read()
    out = []
    i = data.find(b"\x7fELF\x02\x01")
    while i != -1:
        if len(data) - i > 64 and struct.unpack_from("<H", data, i + 18)[0] == 247:
            shoff = struct.unpack_from("<Q", data, i + 0x28)[0]
            shentsize, shnum = struct.unpack_from("<HH", data, i + 0x3A)
            out.append(data[i:i + shoff + shentsize * shnum])
        i = data.find(b"\x7fELF\x02\x01", i + 1)
    return out


def _skeleton_hosts() -> list:
    """(package, executable) pairs; one skipped entry for a missing package."""
    hosts = {
        "libbpf-tools": sorted(f for f in _package_files("libbpf-tools")
                               if f.startswith("/usr/sbin/") and os.path.isfile(f)),
        "pcp": sorted(glob.glob("/" + PCP_MODULES)
                      or glob.glob(os.path.join(PCP_UNPACKED, PCP_MODULES))),
    }
    params = []
    for pkg, files in hosts.items():
        if not files:
            params.append(pytest.param(pkg, None, id=f"{pkg}-absent", marks=pytest.mark.skip(
                reason=f"Debian package {pkg} is absent (scripts/setup.sh provides it)")))
        params += [pytest.param(pkg, f, id=f"{pkg}-{os.path.basename(f)}") for f in files]
    return params


def _xlated(prog: Program) -> list:
    """The kernel's xlated instructions, map references by map name (the
    two loads' map ids differ)."""
    raw = _core.prog_xlated_insns(prog.fd)
    out, names, i = [], {}, 0
    while i < len(raw) // 8:
        code, regs, off, imm = struct.unpack_from("<BBhi", raw, i * 8)
        if code == 0x18 and regs >> 4 in (1, 2, 5, 6):  # ld_imm64 of a map (fd, value, idx)
            if imm not in names:
                with Map.from_id(imm) as m:
                    names[imm] = m.info().name
            hi = struct.unpack_from("<BBhi", raw, i * 8 + 8)
            out += [(code, regs, off, names[imm]), hi[:3] + (hi[3] if regs >> 4 in (2, 6) else 0,)]
            i += 2
            continue
        out.append((code, regs, off, imm))
        i += 1
    return out


def _pinning_loader(cmd: list, target: str) -> tuple[bool, str, dict]:
    """Run *cmd*, a libbpf loader that pins every program under *target*:
    (loaded?, libbpf's log, {program: xlated}); the pins are removed."""
    out = subprocess.run(cmd, capture_output=True, text=True)
    progs = {}
    try:
        if out.returncode == 0:
            for name in os.listdir(target):
                with Program.from_pin(os.path.join(target, name)) as p:
                    progs[name] = _xlated(p)
    finally:
        shutil.rmtree(target, ignore_errors=True)
    return out.returncode == 0, out.stderr, progs


def _libbpf_load(path: str, pin_dir: str) -> tuple[bool, str, dict]:
    """bpftool prog loadall: (loaded?, libbpf's log, {program: xlated})."""
    target = os.path.join(pin_dir, "libbpf")
    return _pinning_loader(["bpftool", "prog", "loadall", path, target], target)


def _expected_error(log: str) -> tuple[type, str | None]:
    """The fastbpf error class and the name (program or map) to expect
    for libbpf's failure *log*."""
    prog = re.search(r"prog '([^']+)': failed to (?:load|prepare)", log)
    if "failed to resolve CO-RE relocation" in log:
        return CORERelocationError, prog and prog.group(1)
    if "failed to find kernel BTF type ID" in log:
        return fastbpf.TargetNotFoundError, prog and prog.group(1)
    if prog and "BPF program load failed: Operation not permitted" in log:
        return fastbpf.NotSupportedError, prog.group(1)
    m = re.search(r"map '([^']+)': failed to create", log)
    if m:
        return fastbpf.BPFError, m.group(1)[:15]  # map names are the kernel's 15 bytes
    return fastbpf.BPFError, None


SIZED_LOADER_C = r"""
#include <bpf/libbpf.h>
#include <stdlib.h>
/* Load argv[1] as a tool does after sizing its run-time maps: a map declared
 * with max_entries 0 gets argv[3] entries, a stack map without a value size
 * 127 frames; pin the programs in argv[2]. */
int main(int argc, char **argv)
{
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	struct bpf_map *m;

	if (!obj)
		return 2;
	bpf_object__for_each_map(m, obj) {
		if (bpf_map__max_entries(m) == 0)
			bpf_map__set_max_entries(m, atoi(argv[3]));
		if (bpf_map__type(m) == BPF_MAP_TYPE_STACK_TRACE && bpf_map__value_size(m) == 0)
			bpf_map__set_value_size(m, 127 * 8);
	}
	if (bpf_object__load(obj))
		return 1;
	return bpf_object__pin_programs(obj, argv[2]) ? 3 : 0;
}
"""
SIZED_ENTRIES = 1024


@pytest.fixture(scope="module")
def sized_loader(tmp_path_factory):
    if not shutil.which("gcc") or not os.path.exists("/usr/include/bpf/libbpf.h"):
        pytest.skip("libbpf headers (libbpf-dev) or gcc are absent")
    d = tmp_path_factory.mktemp("sized")
    (d / "sized.c").write_text(SIZED_LOADER_C)
    subprocess.run(["gcc", "-O1", "-o", str(d / "sized"), str(d / "sized.c"), "-lbpf"],
                   check=True)
    return str(d / "sized")


def _unsized_maps(spec) -> list:
    return [m for m in spec.maps.values()
            if m.max_entries == 0 or (m.type == fastbpf.MapType.STACK_TRACE and not m.value_size)]


def _check_sized(path: str, pin_dir: str, loader: str) -> bool:
    """The tool's own sizing of its maps on both sides, then the same outcome."""
    spec = fastbpf.load_collection_spec(path)
    for m in _unsized_maps(spec):
        if m.max_entries == 0:
            m.max_entries = SIZED_ENTRIES
        if m.type == fastbpf.MapType.STACK_TRACE and not m.value_size:
            m.value = 127 * 8
    target = os.path.join(pin_dir, "sized")
    ok, log, theirs = _pinning_loader([loader, path, target, str(SIZED_ENTRIES)], target)
    return _same_outcome(path, spec, ok, log, theirs)


def check_loads_like_libbpf(path: str, pin_dir: str, request=None) -> bool:
    """Load *path* with libbpf and with fastbpf: the same programs into the
    same xlated instructions, or the same kind of refusal. True if loaded.
    An object libbpf refuses only for maps its tool sizes at run time is
    then loaded sized on both sides (with *request*'s C loader)."""
    spec = fastbpf.load_collection_spec(path)
    ok, log, theirs = _libbpf_load(path, pin_dir)
    loaded = _same_outcome(path, spec, ok, log, theirs)
    if not loaded and request is not None and _unsized_maps(spec) and \
            re.search(r"map '[^']+': failed to create", log):
        return _check_sized(path, pin_dir, request.getfixturevalue("sized_loader"))
    return loaded


def _same_outcome(path: str, spec, ok: bool, log: str, theirs: dict) -> bool:
    if ok:
        with spec.load() as coll:
            assert set(coll.programs) == set(theirs)
            for name, p in coll.programs.items():
                assert p.id > 0
                assert _xlated(p) == theirs[name], f"{path}: program {name!r} differs"
        return True
    cls, name = _expected_error(log)
    with pytest.raises(fastbpf.BPFError) as info:
        spec.load()
    assert isinstance(info.value, cls), (log[-2000:], info.value)
    if name is not None:
        assert f"'{name}'" in str(info.value), (log[-2000:], info.value)
    return False


@pytest.mark.skipif(not DEBIAN_OBJECTS, reason="no Debian BPF objects (install xdp-tools "
                                               "or libxdp1)")
@pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool is not installed")
@pytest.mark.parametrize("path", DEBIAN_OBJECTS, ids=os.path.basename)
def test_debian_object_loads_like_libbpf(path, bpffs_dir):
    assert fastbpf.load_collection_spec(path).programs
    check_loads_like_libbpf(path, bpffs_dir)


@pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool is not installed")
@pytest.mark.parametrize("package,host", _skeleton_hosts())
def test_skeleton_object_loads_like_libbpf(package, host, bpffs_dir, tmp_path, request):
    """The CO-RE objects inside libbpf-tools' executables and pcp's BPF
    PMDA modules, compiled against another kernel's vmlinux.h."""
    blobs = embedded_bpf_objects(host)
    assert blobs, f"{host} embeds no BPF object"
    for k, blob in enumerate(blobs):
        path = tmp_path / f"{os.path.basename(host)}-{k}.bpf.o"
        path.write_bytes(blob)
        spec = fastbpf.load_collection_spec(str(path))
        assert spec.programs and spec.btf is not None
        check_loads_like_libbpf(str(path), bpffs_dir, request)


@pytest.mark.skipif(shutil.which("clang-19") is None, reason="clang-19 is not installed")
def test_make_reproduces_committed_objects(tmp_path):
    for f in os.listdir(TESTDATA):
        if f.endswith((".c", ".h")) or f == "Makefile":
            shutil.copy(os.path.join(TESTDATA, f), tmp_path / f)
    out = subprocess.run(["make", "-s", "-B", "-C", str(tmp_path)], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    built = sorted(p.name for p in tmp_path.glob("*.o"))
    committed = sorted(f for f in os.listdir(TESTDATA) if f.endswith(".o"))
    assert built == committed
    stale = [f for f in built
             if (tmp_path / f).read_bytes() != open(os.path.join(TESTDATA, f), "rb").read()]
    assert not stale, f"testdata objects differ from `make` output (run make -B): {stale}"


# -- fuzzing ------------------------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_SEEDS = [open(os.path.join(TESTDATA, f), "rb").read()
          for f in ("loader-el.o", "loader-eb.o", "legacy_maps-el.o", "btf_types-el.o",
                    "struct_ops-el.o")]


def _offsets_of_interest(data: bytes) -> list[int]:
    """Header, section table, symbol and relocation tables, BTF: where a flip bites."""
    from fastbpf.elf.reader import ELFFile
    elf = ELFFile(data)
    spots = list(range(0, 64))
    shoff = int.from_bytes(data[0x28:0x30], "little" if data[5] == 1 else "big")
    spots += range(shoff, min(len(data), shoff + 64 * len(elf.sections)))
    for i, name in enumerate(elf.names):
        if name in (".symtab", ".BTF", ".BTF.ext", ".maps", ".relxdp", ".rel.maps", "xdp",
                    ".rel.text", ".text", "maps", ".struct_ops.link") or name.startswith(".rel"):
            off, size = int(elf.sections["offset"][i]), int(elf.sections["size"][i])
            spots += range(off, min(off + size, off + 4096))
    return spots


_SPOTS = [_offsets_of_interest(s) for s in _SEEDS]


@st.composite
def _mutated(draw):
    k = draw(st.integers(0, len(_SEEDS) - 1))
    data = bytearray(_SEEDS[k])
    spots = _SPOTS[k]
    for _ in range(draw(st.integers(1, 8))):
        pos = spots[draw(st.integers(0, len(spots) - 1))]
        how = draw(st.integers(0, 2))
        if how == 0:
            data[pos] = draw(st.integers(0, 255))
        elif how == 1:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        else:
            data[pos:pos + 4] = draw(st.sampled_from(
                [b"\xff\xff\xff\xff", b"\0\0\0\0", b"\x00\x00\x00\x80", b"\x01\0\0\0"]))
    if draw(st.integers(0, 9)) == 0:  # now and then, truncated too
        del data[draw(st.integers(0, len(data))):]
    return bytes(data)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(_mutated())
def test_mutated_objects_give_spec_or_clean_error(data):
    try:
        spec = fastbpf.load_collection_spec(data)
    except (fastbpf.ELFError, fastbpf.BTFError):
        return
    # A spec that parsed must also decode every program without surprises.
    for p in spec.programs.values():
        try:
            p.instructions
            from fastbpf.linker import link_program
            link_program(p.instructions, spec.functions)
        except (fastbpf.ELFError, fastbpf.BTFError):
            pass


EXAMPLES = os.path.normpath(os.path.join(HERE, "..", "examples"))


@pytest.mark.skipif(shutil.which("clang-19") is None, reason="clang-19 is not installed")
def test_example_object_is_current(tmp_path):
    for f in ("syscalls.bpf.c", "Makefile"):
        shutil.copy(os.path.join(EXAMPLES, f), tmp_path / f)
    out = subprocess.run(["make", "-s", "-B", "-C", str(tmp_path)], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "syscalls.bpf.o").read_bytes() == \
        open(os.path.join(EXAMPLES, "syscalls.bpf.o"), "rb").read()


def test_example_script_runs():
    import sys
    env = dict(os.environ, PYTHONPATH=os.path.dirname(EXAMPLES))
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, "count_syscalls.py"), "0.5"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "getppid: 200" in out.stdout and "getpid: 200" in out.stdout
