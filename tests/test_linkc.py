"""The C linker (fastbpf._elfscan.LinkTables, used by fastbpf._linkraw) links
every program of every committed object as the Python linker does, byte for
byte, and on objects with bytes flipped in their code, relocations and
.BTF.ext it gives the Python linker's answer or error (ELFError/BTFError)."""

from __future__ import annotations

import array
import glob
import os
import random
import sys

import pytest

import fastbpf
from fastbpf import ELFError
from fastbpf.btf import BTFError

_elfscan = pytest.importorskip("fastbpf._elfscan")

from fastbpf import _linkraw  # noqa: E402
from fastbpf.elf import ELFFile, objfile  # noqa: E402

TESTDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata")
OBJECTS = sorted(glob.glob(os.path.join(TESTDATA, "*.o")))
NATIVE = "-el.o" if sys.byteorder == "little" else "-eb.o"


class FakeMap:
    def __init__(self, fd):
        self.fd = fd


def _link_all(spec, maps, c):
    """{program: link_raw's outcome} with the C linker on (*c*) or off."""
    cache = {} if c else {_linkraw._C: ()}
    out = {}
    for name, ps in spec.programs.items():
        try:
            out[name] = _linkraw.link_raw(spec, ps, maps, {}, cache)
        except (ELFError, BTFError) as e:
            out[name] = (type(e), str(e))
    return out, cache.get(_linkraw._C)


def _c_linked(state, spec):
    """The programs LinkTables.link takes (not handed to the Python linker)."""
    if not state:
        return set()
    linker, index = state
    return {name for name, ps in spec.programs.items()
            if linker.link(index[ps._label]) is not None}


@pytest.mark.parametrize("path", [p for p in OBJECTS if p.endswith(NATIVE)],
                         ids=os.path.basename)
def test_c_linker_matches_python(path):
    spec = fastbpf.load_collection_spec(path)
    maps = {name: FakeMap(100 + i) for i, name in enumerate(spec.maps)}
    c, state = _link_all(spec, maps, True)
    py, _ = _link_all(fastbpf.load_collection_spec(path), maps, False)
    assert c == py
    taken = _c_linked(state, spec)
    if os.path.basename(path).startswith(("many_progs", "loader", "legacy_maps", "struct_ops")):
        assert taken, "the C linker took no program"
    if os.path.basename(path).startswith("many_progs"):
        assert taken == set(spec.programs)


def test_c_linker_tables_of_many_progs():
    spec = fastbpf.load_collection_spec(os.path.join(TESTDATA, "many_progs" + NATIVE))
    obj, ctx, _ = spec._object
    t = obj.link_tables(ctx)
    assert set(t.map_names) == set(spec.maps)
    assert len(t.sections) == len(obj.prog_secs) == 3
    for sec in t.sections:
        assert sec.func.shape[1] == 2 and sec.line.shape[1] == 4 and len(sec.line)
        assert sec.rel.dtype.name == "int64" and sec.rel.shape[1] == 4
        assert list(sec.rel[:, 0]) == sorted(sec.rel[:, 0])      # by slot
        assert set(sec.rel[:, 1]) <= {1, 2, 3, 4}
    assert (t.functions[:, 0] >= 0).all()                        # every function in C


@pytest.mark.parametrize("path", OBJECTS, ids=os.path.basename)
def test_ext_rows_match_python(path):
    """The C reader of .BTF.ext and ExtRecords agree on what the linker needs."""
    try:
        spec = fastbpf.load_collection_spec(path)
    except (ELFError, BTFError):
        pytest.skip("object not parseable on its own")
    obj = spec._object[0]
    if obj._ext_raw is None:
        pytest.skip("no .BTF.ext")
    names = {obj.elf.names[s]: s for s in obj.prog_secs}
    c = _elfscan.ext_rows(obj._ext_raw, obj.btf, names)
    py = objfile._ext_rows_python(obj.ext, names)
    assert {k: tuple(bytes(x) for x in v) for k, v in c.items()} == py


@pytest.mark.parametrize("stem", ["many_progs", "loader", "legacy_maps"])
def test_c_linker_writes_the_object_byte_order(stem):
    """Both byte orders: the C tables of the big-endian object link to the
    little-endian program with every field swapped."""
    out = {}
    for order in ("el", "eb"):
        spec = fastbpf.load_collection_spec(os.path.join(TESTDATA, f"{stem}-{order}.o"))
        obj, ctx, _ = spec._object
        t = obj.link_tables(ctx)
        linker = t.linker([100 + i for i in range(len(t.map_names))], bytes([1] * len(t.labels)))
        out[order] = {name: linker.link(t.index[ps._label])
                      for name, ps in spec.programs.items()}
        out[order + "names"] = t.map_names
    assert out["elnames"] == out["ebnames"]
    assert out["el"].keys() == out["eb"].keys()
    assert any(v is not None for v in out["el"].values())
    for name, le in out["el"].items():
        be = out["eb"][name]
        assert (le is None) == (be is None), name
        if le is None:
            continue
        swapped = bytearray(be[0])
        for p in range(0, len(swapped), 8):
            code, regs = swapped[p], swapped[p + 1]
            swapped[p:p + 8] = bytes([code, ((regs & 0xF) << 4) | (regs >> 4)]) + \
                swapped[p + 2:p + 4][::-1] + swapped[p + 4:p + 8][::-1]
        assert bytes(swapped) == le[0], name
        for a, b in zip(le[1:], be[1:]):
            w = array.array("I", b)
            w.byteswap()
            assert w.tobytes() == a, name


def test_c_linker_declines_what_python_must_handle():
    path = os.path.join(TESTDATA, "many_progs" + NATIVE)
    spec = fastbpf.load_collection_spec(path)
    maps = {name: FakeMap(100 + i) for i, name in enumerate(spec.maps)}
    obj, ctx, _ = spec._object
    t = obj.link_tables(ctx)
    fds = [100 + i for i in range(len(t.map_names))]
    ok = bytes([1] * len(t.labels))
    n = len(t.labels)
    linker = t.linker(fds, ok)
    assert linker.link(-1) is None and linker.link(n) is None
    with pytest.raises(ValueError):
        t.linker(fds[:-1], ok)                        # fds of another table
    with pytest.raises(ValueError):
        t.linker(fds, ok[:-1])
    root = t.index[next(iter(spec.programs.values()))._label]
    assert linker.link(root) is not None
    assert t.linker(fds, bytes(n)).link(root) is None     # replaced functions
    missing = list(fds)
    missing[t.map_names.index(".rodata")] = None
    assert t.linker(missing, ok).link(root) is None
    # A map the load lacks: the Python linker's error.
    del maps[".rodata"]
    ps = next(iter(spec.programs.values()))
    with pytest.raises(ELFError, match="uses map '.rodata', which the collection does not"):
        _linkraw.link_raw(spec, ps, maps, {}, {})


def test_c_linker_matches_python_on_flipped_bytes():
    rng = random.Random(1313)
    seeds = []
    for stem in ("many_progs", "loader", "legacy_maps", "struct_ops", "metrics_export"):
        data = open(os.path.join(TESTDATA, stem + NATIVE), "rb").read()
        elf = ELFFile(data)
        # Where the linkers read: code, its relocations, .BTF.ext, the symbol table.
        spans = [(elf.sh_offset[i], elf.sh_size[i]) for i, nm in enumerate(elf.names)
                 if elf.sh_size[i] and (i in _code_sections(elf) or nm.startswith(".rel")
                                        or nm in (".BTF.ext", ".symtab"))]
        seeds.append((data, spans))
    compared = taken = 0
    for _ in range(250):
        data, spans = rng.choice(seeds)
        buf = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            off, size = rng.choice(spans)
            buf[off + rng.randrange(size)] = rng.randrange(256)
        try:
            spec_c = fastbpf.load_collection_spec(bytes(buf))
            spec_py = fastbpf.load_collection_spec(bytes(buf))
        except (ELFError, BTFError):
            continue
        maps = {name: FakeMap(100 + i) for i, name in enumerate(spec_c.maps)}
        c, state = _link_all(spec_c, maps, True)
        py, _ = _link_all(spec_py, maps, False)
        assert c == py
        compared += 1
        taken += len(_c_linked(state, spec_c))
    assert compared > 100 and taken > 100


def _code_sections(elf):
    return {i for i, f in enumerate(elf.sh_flags) if f & 0x4}
