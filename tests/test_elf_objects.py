"""Objects nobody on the project wrote, the testdata Makefile, and hostile input.

* Every compiled BPF object Debian ships (xdp-tools, libxdp1: /usr/lib/*/bpf)
  that libbpf (``bpftool prog loadall``) loads on this kernel loads through
  fastbpf too; those libbpf refuses fail here with a BPFError, not a crash.
* ``make`` in testdata/ reproduces the committed objects (when clang is there).
* Mutated testdata objects give a spec, ELFError or BTFError, nothing else.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import pytest

import fastbpf

HERE = os.path.dirname(__file__)
TESTDATA = os.path.normpath(os.path.join(HERE, "..", "testdata"))
DEBIAN_OBJECTS = sorted(glob.glob("/usr/lib/*/bpf/*.o"))


def _libbpf_loads(path: str, pin_dir: str) -> tuple[bool, str]:
    target = os.path.join(pin_dir, "libbpf")
    out = subprocess.run(["bpftool", "prog", "loadall", path, target], capture_output=True,
                         text=True)
    shutil.rmtree(target, ignore_errors=True)
    return out.returncode == 0, out.stderr


@pytest.mark.skipif(not DEBIAN_OBJECTS, reason="no Debian BPF objects (install xdp-tools "
                                               "or libxdp1)")
@pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool is not installed")
@pytest.mark.parametrize("path", DEBIAN_OBJECTS, ids=os.path.basename)
def test_debian_object_loads_like_libbpf(path, bpffs_dir):
    spec = fastbpf.load_collection_spec(path)
    assert spec.programs
    ok, err = _libbpf_loads(path, bpffs_dir)
    if ok:
        with spec.load() as coll:
            assert set(coll.programs) == set(spec.programs)
            for p in coll.programs.values():
                assert p.id > 0
    else:
        # libbpf refused it (fentry here: no trampolines); so do we, politely.
        with pytest.raises(fastbpf.BPFError):
            spec.load()


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
