"""``fastbpf gen skeleton``: typed skeletons generated, imported, loaded and type-checked.

Skeletons are generated for the testdata objects into a temporary directory,
imported from there and used against the real kernel (test_run, maps and
variables); regeneration is byte for byte; mypy --strict accepts a correct
user of a skeleton and names the misspelt attribute in a wrong one.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import time
import types

import numpy as np
import pytest

import fastbpf
from fastbpf.gen import class_name, generate, main, mangle
from fastbpf.gen.runtime import SkeletonMismatchError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTDATA = os.path.join(ROOT, "testdata")
OBJECTS = sorted(glob.glob(os.path.join(TESTDATA, "*.o"))) + [
    os.path.join(ROOT, "examples", "syscalls.bpf.o")]
_counter = iter(range(1 << 30))


def _import(path: str) -> types.ModuleType:
    """Import a generated module from *path* under a fresh name (nothing registered)."""
    name = f"_fastbpf_test_skel_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _gen(obj: str, out: str, *extra: str) -> types.ModuleType:
    assert main(["skeleton", obj, "-o", out, *extra]) == 0
    return _import(out)


@pytest.fixture(scope="module")
def skels(tmp_path_factory):
    """Skeleton modules of the loader tour and the odd-names object."""
    d = tmp_path_factory.mktemp("skels")
    return types.SimpleNamespace(
        dir=d,
        loader=_gen(os.path.join(TESTDATA, "loader-el.o"), str(d / "loader_skel.py")),
        names=_gen(os.path.join(TESTDATA, "gen_names-el.o"), str(d / "names_skel.py")),
    )


# -- naming ------------------------------------------------------------------


@pytest.mark.parametrize("path, want", [
    ("prog.bpf.o", "ProgSkel"), ("/x/count_syscalls.bpf.o", "CountSyscallsSkel"),
    ("loader-el.o", "LoaderElSkel"), ("my.prog.o", "MySkel"), ("1x.o", "Bpf1xSkel"),
    ("--.o", "BpfSkel"), ("xdpFilter.o", "XdpFilterSkel"), ("été.o", "TSkel"),
])
def test_class_name_rule(path, want):
    assert class_name(path) == want


def test_mangling_rule():
    got = mangle([".data", "data", ".rodata", "class", "None", "__x", "__init__", "_p",
                  "f.v", ".data.my-sec", "1st", "", "match", "data_", "x__x"])
    assert got == {".data": "data__", "data": "data", ".rodata": "rodata", "class": "class_",
                   "None": "None_", "__x": "x__x_", "__init__": "x__init__", "_p": "_p",
                   "f.v": "f_v", ".data.my-sec": "data_my_sec", "1st": "_1st", "": "_",
                   "match": "match", "data_": "data_", "x__x": "x__x"}
    assert all(v.isidentifier() for v in got.values()) and len(set(got.values())) == len(got)
    assert list(got) == sorted(got), "generated order is the sorted object names"


# -- generation --------------------------------------------------------------


@pytest.mark.parametrize("obj", OBJECTS, ids=os.path.basename)
def test_every_object_generates_deterministically(obj, tmp_path):
    """Every object (both byte orders) gives a module that compiles and
    regenerates byte for byte, in process and through ``python3 -m``."""
    out1, out2 = tmp_path / "a_skel.py", tmp_path / "b" / "a_skel.py"
    assert main(["skeleton", obj, "-o", str(out1)]) == 0
    out2.parent.mkdir()
    r = subprocess.run([sys.executable, "-m", "fastbpf.gen", "skeleton", obj, "-o", str(out2)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    text = out1.read_bytes()
    assert text == out2.read_bytes()
    compile(text, str(out1), "exec")
    with open(obj, "rb") as f:
        data = f.read()
    assert generate(data, object_path=obj, output_path=str(out1)).encode() == text
    assert b"/tmp" not in text and ROOT.encode() not in text  # no absolute paths
    spec = fastbpf.load_collection_spec(obj)
    mod = _import(str(out1))
    names = [n for n in dir(mod) if n.endswith("Skel")]
    assert names == [class_name(obj)]
    dts = getattr(mod, names[0] + "MapDtypes")
    for n, py in mangle(spec.maps).items():  # the literals are the spec's dtypes
        assert getattr(dts, py) == (spec.maps[n].key_dtype, spec.maps[n].value_dtype)


def test_cli_errors_and_stdout(tmp_path, capsys):
    obj = os.path.join(TESTDATA, "core_globals-el.o")
    assert main(["skeleton", obj, "--name", "Globals"]) == 0
    out = capsys.readouterr().out
    assert "class Globals(_rt.Skeleton):" in out and "class GlobalsSpec(" in out
    for bad in ("class", "_Hidden", "np", "a-b"):
        assert main(["skeleton", obj, "--name", bad, "-o", str(tmp_path / "x.py")]) == 1
        assert "cannot name a skeleton class" in capsys.readouterr().err
    assert main(["skeleton", str(tmp_path / "missing.o"), "-o", str(tmp_path / "x.py")]) == 1
    (tmp_path / "junk.o").write_bytes(b"not an object")
    assert main(["skeleton", str(tmp_path / "junk.o"), "-o", str(tmp_path / "x.py")]) == 1
    assert "junk.o" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x.py")
    assert main(["skeleton"]) == 2  # usage errors are statuses: the caller exits
    assert "usage: fastbpf gen skeleton" in capsys.readouterr().err
    assert main(["--help"]) == 0 and "skeleton" in capsys.readouterr().out


# -- use against the kernel --------------------------------------------------


def test_loader_skeleton_programs_maps_variables(skels, no_fd_leak):
    Skel = skels.loader.LoaderElSkel
    with Skel.load() as skel:
        assert isinstance(skel.programs.count_packets, fastbpf.Program)
        assert isinstance(skel.maps.counts, fastbpf.Map)
        r = skel.programs.count_packets.test_run(b"\0" * 64)
        assert r.retval == 2  # verdict = XDP_PASS
        assert skel.maps.counts[np.uint32(0)] == 1
        assert skel.variables.packets.value == 1
        assert type(skel.variables.packets.value) is np.uint64
        assert skel.variables.last_len.value == 64 * 3  # scale() by multiplier
        skel.variables.packets.set(41)
        skel.programs.count_packets.test_run(b"\0" * 64)
        assert skel.variables.packets.value == 42
        assert skel.variables.pair_var.value["b"] == 2
        assert skel.variables.verdict.readonly
        with pytest.raises(PermissionError):
            skel.variables.verdict.set(1)
        assert skel.maps.rodata is skel.collection.maps[".rodata"]
        assert skel.maps[".rodata"] is skel.maps.rodata and ".kconfig" in skel.maps
        assert len(skel.programs) == 7 and "count_packets" in list(skel.programs)
        assert skel.maps.pinned_pairs.value_dtype == \
            skels.loader.LoaderElSkelMapDtypes.pinned_pairs.value
        assert skel.variables.packets.variable is skel.collection.variables["packets"]
    with pytest.raises(fastbpf.ClosedError):
        skel.variables.packets.value


def test_spec_edit_then_load_with_pins(skels, bpffs_dir, no_fd_leak):
    Skel = skels.loader.LoaderElSkel
    spec = Skel.spec()
    assert isinstance(spec.maps.counts, fastbpf.MapSpec)
    assert isinstance(spec.programs.count_packets, fastbpf.ProgramSpec)
    assert spec.variables.multiplier.value == 3 and spec.variables.multiplier.readonly
    spec.variables.multiplier.set(5)
    spec.variables.verdict.set(1)  # XDP_DROP
    spec.maps.counts.max_entries = 100
    with spec.load(pin_path=bpffs_dir) as skel:
        assert os.path.exists(os.path.join(bpffs_dir, "pinned_pairs"))
        assert skel.maps.counts.max_entries == 100
        assert skel.programs.count_packets.test_run(b"\0" * 20).retval == 1
        assert skel.variables.last_len.value == 100
        assert skel.variables.multiplier.value == 5
    assert Skel.spec().variables.multiplier.value == 3  # every spec() is fresh
    with Skel.load(pin_path=bpffs_dir) as skel, \
            fastbpf.Map.from_pin(os.path.join(bpffs_dir, "pinned_pairs")) as pinned:
        assert skel.maps.pinned_pairs.info().id == pinned.info().id  # the pin is reused


def test_mangled_names_against_the_kernel(skels, no_fd_leak):
    m = skels.names
    with m.GenNamesElSkel.load() as skel:
        assert skel.programs.def_.test_run(b"\0" * 64).retval == 2  # lambda = XDP_PASS
        assert skel.variables.def_calls.value == 1 and skel.variables.None_.value == 1
        assert skel.variables.x__hidden.value == 5
        assert skel.variables._private.value == 5 + 7
        assert skel.variables.class_.value == 1
        assert list(skel.variables.ports.value) == [80, 443, 8080]
        assert skel.variables.tag.value == b"gen"
        assert tuple(skel.variables.origin.value) == (3, 4)
        p = skel.maps.data[np.uint32(1)]  # the map "data", not the section ".data"
        assert (p["x"], p["y"]) == (83, 4)
        assert skel.maps.data_ is skel.collection.maps[".data"]
        assert skel.maps.import_[np.uint64(1)] == 2
        assert skel.maps.data_my_sec is skel.collection.maps[".data.my-sec"]
    assert m.GenNamesElSkelVariableDtypes.origin == np.dtype([("x", "<u4"), ("y", "<u4")])


def test_no_embed_loads_the_adjacent_file_and_detects_a_stale_one(tmp_path, no_fd_leak):
    objdir, moddir = tmp_path / "obj", tmp_path / "pkg"
    objdir.mkdir()
    moddir.mkdir()
    obj = objdir / "prog.bpf.o"
    shutil.copy(os.path.join(TESTDATA, "many_progs-el.o"), obj)
    mod = _gen(str(obj), str(moddir / "prog_skel.py"), "--no-embed")
    text = (moddir / "prog_skel.py").read_text()
    assert "_OBJECT_PATH: _t.Final = '../obj/prog.bpf.o'" in text
    assert len(text) < 20000  # the object is not in it
    with mod.ProgSkel.load() as skel:
        assert skel.variables.seen.value == 1 and skel.variables.factor.value == 2
        assert skel.collection.maps[".data"].name == "prog.data"  # libbpf's naming
        assert len(skel.programs) == 16
    shutil.copy(os.path.join(TESTDATA, "core_globals-el.o"), obj)  # rebuilt: other names
    with pytest.raises(SkeletonMismatchError, match="regenerate"):
        mod.ProgSkel.spec()
    with mod.ProgSkel.load(source=os.path.join(TESTDATA, "many_progs-el.o")) as skel:
        assert skel.variables.factor.value == 2
    with open(os.path.join(TESTDATA, "many_progs-eb.o"), "rb") as f:
        with pytest.raises(SkeletonMismatchError,
                           match=r"'>u8'.* in the object, the skeleton says .*'<u8'"):
            mod.ProgSkel.spec(source=f.read())  # same names, other byte order


# -- typing ------------------------------------------------------------------

_GOOD = """\
from __future__ import annotations

import numpy as np

from loader_skel import LoaderElSkel, LoaderElSkelMapDtypes


def run() -> int:
    spec = LoaderElSkel.spec()
    spec.variables.multiplier.set(5)
    spec.maps.counts.max_entries = 128
    start: np.uint32 = spec.variables.multiplier.value
    with spec.load(pin_path=None) as skel:
        r = skel.programs.count_packets.test_run(b"\\0" * 64)
        n: np.uint64 = skel.variables.packets.value
        pair: np.void = skel.variables.pair_var.value
        dt = LoaderElSkelMapDtypes.pinned_pairs.value
        assert dt is not None
        rows = np.zeros(4, dt)
        print(r.retval, n, start, pair, rows, skel.maps.counts.key_dtype, skel.maps.rodata)
    return 0
"""

_BAD = """\
from __future__ import annotations

from loader_skel import LoaderElSkel

with LoaderElSkel.load() as skel:
    skel.programs.count_paket.test_run(b"")
    skel.variables.packets.value.decode()
    LoaderElSkel.spec().maps.countz.max_entries = 1
"""


def test_mypy_strict_on_a_skeleton_user(skels, tmp_path):
    """One mypy --strict run: every testdata skeleton and a correct user pass, a
    user with misspelt names fails on exactly those lines, naming them."""
    mypy = shutil.which("mypy")
    if mypy is None:
        pytest.skip("mypy is not installed")
    d = tmp_path / "user"
    d.mkdir()
    shutil.copy(skels.dir / "loader_skel.py", d / "loader_skel.py")
    # Every other object's skeleton too: each generated module passes --strict.
    others = []
    for obj in OBJECTS:
        if obj.endswith("-eb.o") or obj.endswith("loader-el.o"):
            continue
        out = d / (os.path.basename(obj).split(".")[0].replace("-", "_") + "_skel.py")
        assert main(["skeleton", obj, "-o", str(out)]) == 0
        others.append(out.name)
    (d / "good.py").write_text(_GOOD)
    (d / "bad.py").write_text(_BAD)
    # The library's own typing is checked elsewhere (mypy --strict fastbpf);
    # here only the generated module and its users count.
    (d / "mypy.ini").write_text("[mypy]\n\n[mypy-fastbpf.*]\nfollow_imports = silent\n")
    env = dict(os.environ, MYPYPATH=ROOT)
    t0 = time.monotonic()
    r = subprocess.run([mypy, "--strict", "--config-file", "mypy.ini", "--cache-dir",
                        str(tmp_path / "cache"), "--no-error-summary", "--show-error-codes",
                        "loader_skel.py", "good.py", "bad.py", *others],
                       cwd=d, env=env, capture_output=True, text=True, timeout=600)
    took = time.monotonic() - t0
    lines = [ln for ln in r.stdout.splitlines() if ": error:" in ln]
    assert r.returncode == 1, r.stdout + r.stderr
    assert all(ln.startswith("bad.py:") for ln in lines), r.stdout
    assert any("bad.py:6:" in ln and '"count_paket"' in ln and "count_packets" in ln
               for ln in lines), r.stdout
    assert any("bad.py:7:" in ln and '"decode"' in ln for ln in lines), r.stdout
    assert any("bad.py:8:" in ln and '"countz"' in ln for ln in lines), r.stdout
    assert len(lines) == 3, r.stdout
    print(f"mypy --strict on {len(others) + 1} skeletons and two users: {took:.1f}s")
    # The good user also runs as written.
    r = subprocess.run([sys.executable, "-c", "import good; good.run()"], cwd=d,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, str(d)])),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_namespace_takes_any_generated_name():
    """A namespace has no attribute of its own but dunders: names such as
    ``_wrap`` or ``keys`` are the object's."""
    from fastbpf.gen.runtime import Namespace, VariableNamespace
    names = [("_wrap", "_wrap"), ("keys", "keys"), ("items", "it.ems")]
    ns: Namespace[int] = Namespace({"_wrap": 1, "keys": 2, "it.ems": 3}, names)
    assert (ns._wrap, ns.keys, ns.items) == (1, 2, 3)  # type: ignore[attr-defined]
    assert list(ns) == ["_wrap", "keys", "it.ems"] and ns["it.ems"] == 3 and len(ns) == 3
    with pytest.raises(SkeletonMismatchError, match="no 'gone'"):
        VariableNamespace({}, [("gone", "gone")])
