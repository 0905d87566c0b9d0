"""What fuzzing the object loader found, one test per defect, and the
structure-aware mutator's own contract (fuzz/elfmut.py).

Each defect's input is kept in fuzz/crashes/elf/ too (replayed by
tests/test_fuzz.py); here the input is rebuilt from a testdata object by
changing the one field that matters, and the error is checked by value.
"""

from __future__ import annotations

import os
import random
import struct
import sys

import pytest

import fastbpf

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "fuzz"))
import elfmut  # noqa: E402
import targets  # noqa: E402

pytestmark = [pytest.mark.noroot, pytest.mark.fuzz]

TESTDATA = os.path.join(os.path.dirname(__file__), os.pardir, "testdata")


def _object(name: str) -> bytes:
    with open(os.path.join(TESTDATA, name), "rb") as f:
        return f.read()


def _symbol_offset(data: bytes, want: str) -> int:
    """File offset of the symbol-table record of the symbol named *want*."""
    lay = elfmut._Layout(data)
    o = lay.order
    symtab = next(i for i, s in enumerate(lay.sections) if s[1] == 2)
    s = lay.sections[symtab]
    strtab = lay.sections[s[6]]
    names = data[strtab[4]:strtab[4] + strtab[5]]
    for j in range(s[5] // 24):
        at = s[4] + 24 * j
        name_off, = struct.unpack_from(o + "I", data, at)
        if names[name_off:names.index(b"\0", name_off)] == want.encode():
            return at
    raise LookupError(want)


@pytest.mark.parametrize("obj", ["core_globals-el.o", "core_globals-eb.o"])
def test_data_symbol_value_past_its_section_is_a_btf_error(obj):
    # Found by the elf fuzz target: a .data symbol whose 64-bit value does not
    # fit BTF's 32-bit DATASEC offset gave an OverflowError from numpy (seen
    # as "malformed object: OverflowError: ..."), not a named error.
    data = bytearray(_object(obj))
    spec = fastbpf.load_collection_spec(bytes(data))
    var = next(v for v in spec.variables.values() if v.section == ".data")
    at = _symbol_offset(bytes(data), var.name)
    order = "<" if obj.endswith("-el.o") else ">"
    struct.pack_into(order + "Q", data, at + 8, 2**64 - 2)
    with pytest.raises(fastbpf.btf.BTFError) as e:
        fastbpf.load_collection_spec(bytes(data))
    assert str(e.value) == (f"variable {var.name!r} of DATASEC '.data': its symbol is at "
                            f"offset {2**64 - 2}, past the "
                            f"{spec.maps['.data'].value_size}-byte section")


@pytest.mark.parametrize("obj", ["core_globals-el.o", "core_globals-eb.o"])
def test_bss_larger_than_a_btf_size_is_a_btf_error(obj):
    # Found by the elf fuzz target: a .bss (NOBITS, so no file bytes bound its
    # size) of more than 2**32 bytes overflowed the DATASEC size word.
    data = bytearray(_object(obj))
    lay = elfmut._Layout(bytes(data))
    i = lay.names.index(".bss")
    order = "<" if obj.endswith("-el.o") else ">"
    struct.pack_into(order + "Q", data, lay.shoff + 64 * i + 32, 2**63 + 5)
    with pytest.raises(fastbpf.btf.BTFError) as e:
        fastbpf.load_collection_spec(bytes(data))
    assert str(e.value) == f"section '.bss' of {2**63 + 5} bytes is too large for its DATASEC"


def test_saved_elf_crash_inputs_give_named_errors():
    d = os.path.join(os.path.dirname(__file__), os.pardir, "fuzz", "crashes", "elf")
    names = sorted(os.listdir(d))
    assert names, "fuzz/crashes/elf/ holds the inputs the fuzzer found"
    for name in names:
        with open(os.path.join(d, name), "rb") as f:
            data = f.read()
        with pytest.raises((fastbpf.ELFError, fastbpf.btf.BTFError)) as e:
            fastbpf.load_collection_spec(data)
        assert not str(e.value).startswith("malformed object: "), (name, str(e.value))


def test_mutator_keeps_the_layout_and_changes_something():
    rng = random.Random("elfmut")
    seeds = targets.seeds("elf")
    changed = 0
    for i in range(200):
        seed = seeds[i % len(seeds)]
        out = elfmut.mutate_elf(seed, rng)
        assert len(out) == len(seed)
        changed += out != seed
    # A change may rewrite a field to the value it had; nearly all differ.
    assert changed >= 180


def test_mutator_leaves_what_is_not_elf_alone():
    rng = random.Random(0)
    assert elfmut.mutate_elf(b"", rng) == b""
    assert elfmut.mutate_elf(b"\x7fELF" + bytes(10), rng) == b"\x7fELF" + bytes(10)


def test_elf_target_flags_a_wrapped_python_error():
    # The loader's last-resort net turns a stray IndexError into
    # "ELFError: malformed object: IndexError: ..."; the fuzz target treats
    # that as a finding, since the message says nothing about the object.
    with pytest.raises(AssertionError, match="unnamed loader error"):
        targets._check_named(fastbpf.ELFError("malformed object: IndexError: x"))
    targets._check_named(fastbpf.ELFError("ELF section 3 runs past the end"))


@pytest.mark.parametrize("obj", ["loader-el.o", "loader-eb.o"])
def test_kconfig_externs_larger_than_a_map_value_are_a_btf_error(obj):
    # Found by the elf fuzz target (as an out-of-memory): a .kconfig extern
    # whose BTF type claims ~4 GiB made the loader allocate the whole .kconfig
    # map value (14 s, 4 GB) before anything refused it.
    from fastbpf import btf
    data = bytearray(_object(obj))
    order = "<" if obj.endswith("-el.o") else ">"
    lay = elfmut._Layout(bytes(data))
    s = lay.sections[lay.names.index(".BTF")]
    raw = bytes(data[s[4]:s[4] + s[5]])
    spec = btf.Spec.parse(raw)
    tristate = spec.types_by_name("libbpf_tristate")[0]
    hdr_len, type_off = struct.unpack_from(order + "I", raw, 4)[0], \
        struct.unpack_from(order + "I", raw, 8)[0]
    # The enum's size word: the third word of its record.
    at = s[4] + hdr_len + type_off + 4 * int(spec._offs[spec.type_id(tristate) - 1]) + 8
    struct.pack_into(order + "I", data, at, 0xF0000000)
    with pytest.raises(btf.BTFError) as e:
        fastbpf.load_collection_spec(bytes(data))
    # 4 + 1 bytes, the enum at 8, then a 4-byte int and a 1-byte bool.
    assert str(e.value) == f"the .kconfig externs take {8 + 0xF0000000 + 4 + 1} bytes, " \
                           f"more than {1 << 22}"
