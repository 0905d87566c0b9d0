"""The C scanners of fastbpf._elfscan agree with their Python twins in
fastbpf.elf: on every committed object, and on objects with bytes flipped
in their tables (same answer or the same kind of error)."""

from __future__ import annotations

import glob
import os
import random

import pytest

import fastbpf
from fastbpf import ELFError
from fastbpf.btf import BTFError

_elfscan = pytest.importorskip("fastbpf._elfscan")

from fastbpf.elf import btffix, btfmaps, objfile, reader  # noqa: E402

TESTDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata")
OBJECTS = sorted(glob.glob(os.path.join(TESTDATA, "*.o")))


def _outcome(fn, *args):
    try:
        return fn(*args)
    except (ELFError, BTFError) as e:
        return type(e)


@pytest.mark.parametrize("path", OBJECTS, ids=os.path.basename)
def test_scan_elf_matches_python(path):
    data = open(path, "rb").read()
    assert _elfscan.scan_elf(data) == reader.scan_python(data)


def test_scan_elf_matches_python_on_flipped_bytes():
    rng = random.Random(13)
    seeds = [open(p, "rb").read() for p in OBJECTS[:6]]
    for _ in range(300):
        data = bytearray(rng.choice(seeds))
        shoff = int.from_bytes(data[0x28:0x30], "little" if data[5] == 1 else "big")
        for _ in range(rng.randint(1, 4)):
            at = rng.choice((rng.randrange(64), shoff + rng.randrange(64 * 8),
                             rng.randrange(len(data))))
            if at < len(data):
                data[at] = rng.randrange(256)
        a = _outcome(_elfscan.scan_elf, bytes(data))
        b = _outcome(reader.scan_python, bytes(data))
        assert a == b


@pytest.mark.parametrize("path", OBJECTS, ids=os.path.basename)
def test_sections_functions_datasecs_maps_match_python(path):
    data = open(path, "rb").read()
    try:
        obj = objfile.ObjectFile(data, "x")
    except (ELFError, BTFError):
        pytest.skip("object not parseable on its own")
    elf = obj.elf
    cols = (elf.names, elf.sh_type, elf.sh_flags, elf.sh_size, elf.sh_info)
    assert _elfscan.classify_sections(*cols) == objfile._classify_python(*cols)
    if obj._prog_set:
        args = (elf.symbol_names(), elf.sym_info, elf.sym_shndx, elf.sym_value, elf.sym_size,
                elf.names, elf.sh_size, obj._prog_set)
        c_funcs, c_labels, c_progs = _elfscan.index_functions(*args)
        p_funcs, p_labels, p_progs = objfile._index_python(*args)
        key = lambda f: (f.label, f.shndx, f.start, f.size, f.section)  # noqa: E731
        assert {k: key(f) for k, f in c_labels.items()} == \
            {k: key(f) for k, f in p_labels.items()}
        assert [(key(f), j) for f, j in c_progs] == [(key(f), j) for f, j in p_progs]
    if obj.btf is None:
        return
    raw = elf.section_bytes(obj._sec_index[".BTF"])
    spec = fastbpf.btf.Spec.parse(raw)
    sizes, by_name = {}, {}
    for i, (n, t, size) in enumerate(zip(elf.names, elf.sh_type, elf.sh_size)):
        if t in (1, 8) and n not in sizes:
            sizes[n] = size
        by_name[n] = elf.by_section.get(i, {})
    blob, kconfig, fixed, _ = btffix.fix_datasecs_fast(spec, sizes, by_name)
    assert (blob, kconfig) == btffix.fix_datasecs(
        spec, sizes, lambda s, v: by_name.get(s, {}).get(v))
    if fixed is not None:
        assert fixed == fastbpf.btf.Spec.parse(blob)
    if obj.maps_shndx >= 0:
        sec, offs = obj.datasec_id(".maps"), obj.symbols_in(".maps")
        assert _elfscan.map_defs(obj.btf, sec, offs) == \
            btfmaps._python_defs(btfmaps._Words(obj.btf), sec, offs)


@pytest.mark.parametrize("path", OBJECTS, ids=os.path.basename)
def test_code_scan_matches_python(path):
    data = open(path, "rb").read()
    try:
        spec = fastbpf.load_collection_spec(data)
    except (ELFError, BTFError):
        pytest.skip("object not parseable on its own")
    obj, ctx, _ = spec._object
    twin = objfile.ObjectFile(data, obj.name)
    for shndx in obj.prog_secs:
        a = _outcome(obj._section, shndx, ctx)
        b = _outcome(twin._section_python, shndx, ctx, twin.elf.section_bytes(shndx))
        assert a == b
