"""Malformed BTF always ends in BTFError: never another exception, never a
hang. Hand-made corruptions first, then hypothesis over the decoder."""

import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

pytestmark = pytest.mark.noroot

# Deterministic draws by default, so a run of the suite never fails on a
# draw no earlier run made; FASTBPF_FUZZ=<examples> explores with random
# draws (and more of them) when hunting for bugs.
_EXPLORE = int(os.environ.get("FASTBPF_FUZZ", "0"))
settings.register_profile("fastbpf", derandomize=not _EXPLORE)
settings.load_profile("fastbpf")


def _n(default: int) -> int:
    return _EXPLORE or default
from hypothesis import strategies as st

import fastbpf.btf.spec as spec_mod
from fastbpf import btf

import elfutil
from elfutil import data_path


def section(obj, name):
    return elfutil.section(data_path(obj), name)


SMALL = section("core_globals-el.o", ".BTF")
SMALL_EXT = section("core_globals-el.o", ".BTF.ext")
BIG = section("btf_types-eb.o", ".BTF")


def blob(words, strings=b"\0a\0", order="<", hdr_len=24):
    types = struct.pack(f"{order}{len(words)}I", *words)
    hdr = struct.pack(order + "HBBIIIII", 0xEB9F, 1, 0, hdr_len, 0, len(types),
                      len(types), len(strings))
    return hdr + b"\0" * (hdr_len - 24) + types + strings


def info(kind, vlen=0, kflag=0):
    return (kflag << 31) | (kind << 24) | vlen


INT = [1, info(1), 4, 32]          # int "a", 4 bytes, 32 bits


def exercise(spec):
    """Touch everything a user might touch; only BTFError may come out."""
    for t in spec:
        for attr in ("members", "values", "params", "vars", "type", "target",
                     "return_type", "index_type"):
            try:
                getattr(t, attr)
            except AttributeError:
                pass
        try:
            btf.to_dtype(t, bitfields="raw", unsupported="raw")
            size = t.size
            if 0 < size < 1 << 16:
                btf.format(bytes(size), t)
        except btf.BTFError:
            pass
    spec.encode()


def test_valid_minimal_blob():
    s = btf.Spec.parse(blob(INT))
    assert s.type_by_name("a").size == 4


MALFORMED = [
    (b"", "shorter than"),
    (b"\x9f\xeb" + bytes(22), "version"),
    (b"\x00\x00" + bytes(30), "magic"),
    (blob(INT)[:-1], "past the end"),
    (blob(INT, hdr_len=1000)[:40], "header length"),
    (blob(INT + [5, 6]), "truncated header"),
    (blob([1, info(20), 4]), "unknown kind"),
    (blob([1, info(0), 4]), "unknown kind"),
    (blob([1, info(4, 0xFFFF), 4]), "runs past"),
    (blob([1, info(13, 5000), 0]), "runs past"),
    (blob([1, info(2), 7]), "type id 7"),
    (blob([1, info(3), 0, 1, 9, 2]), "type id 9"),
    (blob([1, info(4, 1), 4, 0, 5, 0]), "type id 5"),
    (blob([99, info(1), 4, 32]), "string offset 99"),
    (blob([1, info(4, 1), 4, 77, 0, 0]), "string offset 77"),
    (blob(INT, strings=b"a\0"), "start with an empty"),
    (blob(INT, strings=b"\0a"), "NUL"),
    (blob([1, info(8), 1]), "cycle"),                                # typedef a a
    (blob([0, info(10), 2, 0, info(9), 1]), "cycle"),                 # const <-> volatile
    (blob([1, info(4, 1), 4, 1, 1, 0]), "cycle"),                     # struct holds itself
    (blob([0, info(3), 0, 1, 1, 2]), "cycle"),                        # array of itself
    (blob(INT)[:24 + 3], "past the end"),
]


@pytest.mark.parametrize("data, match", [pytest.param(d, m, id=f"{i}-{m}")
                                         for i, (d, m) in enumerate(MALFORMED)])
def test_malformed(data, match):
    with pytest.raises(btf.BTFError, match=match):
        btf.Spec.parse(data)


def test_misaligned_type_section():
    good = blob(INT)
    hdr = bytearray(good[:24])
    struct.pack_into("<I", hdr, 12, 2)     # type_len 2
    with pytest.raises(btf.BTFError, match="aligned"):
        btf.Spec.parse(bytes(hdr) + good[24:])


def test_cycle_through_pointer_is_fine():
    # struct a { struct a *next; }
    s = btf.Spec.parse(blob([1, info(4, 1), 8, 1, 2, 0, 0, info(2), 1]))
    a = s.type_by_name("a")
    assert a.members[0].type.target is a


def test_every_truncation_of_a_real_blob():
    for n in range(len(SMALL)):
        with pytest.raises(btf.BTFError):
            btf.Spec.parse(SMALL[:n])


def test_bad_type_ids_and_names():
    s = btf.Spec.parse(SMALL)
    for bad in (-1, len(s), 1 << 40):
        with pytest.raises(btf.BTFError):
            s.type_by_id(bad)
    with pytest.raises(btf.BTFError):
        s.string_at(1 << 20)


def _parse_both(data):
    """Parse with the C and the Python scanner; they must agree."""
    results = []
    for mod in (spec_mod._scanmod, None):
        spec_mod_saved = spec_mod._scanmod
        spec_mod._scanmod = mod
        try:
            results.append(btf.Spec.parse(data))
        except btf.BTFError as e:
            results.append(type(e))
        finally:
            spec_mod._scanmod = spec_mod_saved
    return results


@settings(max_examples=_n(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([SMALL, BIG]), st.lists(
    st.tuples(st.integers(0, 4000), st.integers(0, 255)), min_size=1, max_size=6))
def test_fuzz_byte_flips(base, flips):
    data = bytearray(base)
    for pos, val in flips:
        data[pos % len(data)] = val
    fast, slow = _parse_both(bytes(data))
    if isinstance(fast, btf.Spec):
        assert isinstance(slow, btf.Spec) and np.array_equal(fast._offs, slow._offs)
        exercise(fast)
    else:
        assert fast is slow is btf.BTFError


@settings(max_examples=_n(200), deadline=None)
@given(st.lists(st.integers(0, 0xFFFFFFFF), max_size=40),
       st.binary(max_size=40), st.sampled_from(["<", ">"]))
def test_fuzz_random_records(words, strings, order):
    # Bias the info words towards valid kinds with small vlens.
    words = [(w & 0x8F1F0007) if i % 3 == 1 else (w % 64) for i, w in enumerate(words)]
    data = blob(words, b"\0" + strings + b"\0", order)
    try:
        spec = btf.Spec.parse(data)
    except btf.BTFError:
        return
    exercise(spec)


@settings(max_examples=_n(200), deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SMALL_EXT) - 1), st.integers(0, 255)),
                min_size=1, max_size=4))
def test_fuzz_ext(flips):
    spec = btf.Spec.parse(SMALL)
    data = bytearray(SMALL_EXT)
    for pos, val in flips:
        data[pos] = val
    try:
        btf.ExtInfo.parse(bytes(data), spec)
    except btf.BTFError:
        pass


def test_ext_truncations():
    spec = btf.Spec.parse(SMALL)
    for n in range(len(SMALL_EXT)):
        try:
            btf.ExtInfo.parse(SMALL_EXT[:n], spec)
        except btf.BTFError:
            pass


CYCLIC = [
    blob([1, info(8), 1]),                                   # typedef a a
    blob([0, info(10), 2, 0, info(9), 1]),                   # const <-> volatile
    blob(INT + [1, info(4, 2), 8, 1, 1, 0, 1, 3, 32,         # struct b { int; c }
                0, info(8), 2]),                             # typedef c b
    blob(INT + [0, info(2), 3, 0, info(3), 0, 4, 1, 2,       # ptr -> array of typedef
                1, info(8), 3]),                             # typedef -> array
]


@pytest.mark.skipif(spec_mod._scanmod is None, reason="fastbpf._btfscan is not built")
@pytest.mark.parametrize("data", CYCLIC)
def test_c_and_python_cycle_checks_name_the_same_type(data):
    msgs = []
    for mod in (spec_mod._scanmod, None):
        saved = spec_mod._scanmod
        spec_mod._scanmod = mod
        try:
            with pytest.raises(btf.BTFError, match="cycle") as e:
                btf.Spec.parse(data)
            msgs.append(str(e.value))
        finally:
            spec_mod._scanmod = saved
    assert msgs[0] == msgs[1]


@pytest.mark.skipif(spec_mod._scanmod is None, reason="fastbpf._btfscan is not built")
def test_c_name_match_agrees_with_numpy(monkeypatch):
    s = btf.Spec.parse(BIG)
    names = sorted({t.name for t in s if t.name}) + ["", "nope", "x" * 300, "a\0b"]
    fast = {n: s._match_names(np.arange(s._raw_count, dtype=np.uint32), s._name_offs,
                              n.encode()) for n in names}
    monkeypatch.setattr(spec_mod, "_scanmod", None)
    for n in names:
        slow = s._match_names(np.arange(s._raw_count, dtype=np.uint32), s._name_offs,
                              n.encode())
        assert np.array_equal(fast[n], slow), n


def test_zero_width_int_formats_as_zero():
    # Found by the byte-flip fuzz: a signed int of 0 bits made format()
    # shift by -1 (ValueError) instead of giving a value.
    spec = btf.Spec.parse(blob([1, info(1), 4, (1 << 24) | 0]))   # signed, 0 bits
    assert btf.format(bytes(4), spec.type_by_name("a")) == 0
