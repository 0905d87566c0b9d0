"""BTF -> numpy dtype and value formatting, checked against what the C
compiler says (testdata/layout.json) and against initialized globals in the
.data section of clang's objects, in both byte orders."""

import json
import os

import numpy as np
import pytest
from elftools.elf.elffile import ELFFile

from fastbpf import btf, features

pytestmark = pytest.mark.noroot

from elfutil import TESTDATA, btf_spec, data_path, section
LAYOUT = json.load(open(os.path.join(TESTDATA, "layout.json")))

EVERYTHING = {
    "c": 65, "sc": -5, "uc": 250, "flag": True, "s": -1234, "us": 60000, "i": -100000,
    "ui": 4000000000, "l": -5000000000, "ul": 10000000000, "ll": -7,
    "ull": 0xFEDCBA9876543210, "f": 1.5, "d": -2.25, "ptr": 0, "name": 0, "next": 0,
    "comm": "fastbpf", "matrix": [[1, 2, 3], [4, 5, 6]],
    "cube": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]], "in": {"a": 1, "b": 2, "c": 3},
    "inners": [{"a": 4, "b": 5, "c": 6}, {"a": 7, "b": 8, "c": 9}],
    "x": 11, "y": 12, "as_u64": 0xD0000000C, "named_anon": {"na": 13, "nb": 14},
    "color": "NEG", "big": "BIG_B", "tiny": "TINY_Y", "vol": 15, "cst": 16, "rp": 0,
    "td": 17, "cv": 18, "cb": 0, "tagged": 0, "tail": 0xDEADBEEF,
}


def load(endian):
    """(spec, {global name: bytes}) of btf_types-<endian>.o."""
    path = data_path(f"btf_types-{endian}.o")
    spec = btf_spec(path)
    data = section(path, ".data")
    with open(path, "rb") as f:
        syms = {s.name: s for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols()}
    values = {}
    for name in ("everything_init", "bits_init"):
        s = syms[name]
        values[name] = data[s["st_value"]:s["st_value"] + s["st_size"]]
    return spec, values


@pytest.fixture(scope="module", params=["el", "eb"])
def obj(request):
    return load(request.param)


@pytest.mark.parametrize("struct", ["inner", "num", "flow_key", "flow", "everything"])
def test_dtype_layout_matches_the_c_compiler(obj, struct):
    spec, _ = obj
    want = LAYOUT["structs"][struct]
    dt = btf.to_dtype(spec.type_by_name(struct))
    assert dt.itemsize == want["size"]
    for path, off in want["members"].items():
        d, got = dt, 0
        for part in path.split("."):
            d, o = d.fields[part][:2]
            got += o
        assert got == off, path


def test_dtype_kinds_and_byte_order(obj):
    spec, _ = obj
    ev = btf.to_dtype(spec.type_by_name("everything"))
    c = "<" if spec.byte_order == "little" else ">"
    f = {k: v[0] for k, v in ev.fields.items()}
    assert f["c"] == np.dtype("i1") and f["uc"] == np.dtype("u1")
    assert f["flag"] == np.dtype("?")
    assert f["i"] == np.dtype(c + "i4") and f["ull"] == np.dtype(c + "u8")
    assert f["f"] == np.dtype(c + "f4") and f["d"] == np.dtype(c + "f8")
    assert f["ptr"] == np.dtype(c + "u8") and f["cb"] == np.dtype(c + "u8")
    assert f["comm"] == np.dtype("S16")
    assert f["matrix"].shape == (2, 3) and f["matrix"].base == np.dtype(c + "u4")
    assert f["cube"].shape == (2, 2, 2)
    assert f["inners"].shape == (2,) and f["inners"].base.names == ("a", "b", "c")
    assert f["color"] == np.dtype(c + "i4")           # signed enum
    assert f["big"] == np.dtype(c + "u8") and f["tiny"] == np.dtype("u1")
    assert f["vol"] == np.dtype(c + "u4") and f["cv"] == np.dtype(c + "u2")
    num = f["n"]
    assert [num.fields[k][1] for k in ("i", "f", "bytes")] == [0, 0, 0]   # union
    # Anonymous struct/union members are flattened; named ones nest.
    assert "x" in ev.names and "as_u32" in ev.names and "named_anon" in ev.names
    assert btf.to_dtype(spec.type_by_name("flow")).fields["comm"][0] == np.dtype("S16")
    assert btf.to_dtype(spec.type_by_name("u32")) == np.dtype(c + "u4")
    assert btf.to_dtype(spec.type_by_name("everything"), byte_order="little") \
        .fields["i"][0] == np.dtype("<i4")


def test_dtype_reads_the_c_initialized_bytes(obj):
    spec, values = obj
    rec = np.frombuffer(values["everything_init"],
                        dtype=btf.to_dtype(spec.type_by_name("everything")))[0]
    assert rec["comm"] == b"fastbpf"
    assert rec["matrix"].tolist() == [[1, 2, 3], [4, 5, 6]]
    assert rec["inners"]["c"].tolist() == [6, 9]
    assert (rec["x"], rec["y"], rec["as_u64"]) == (11, 12, 0xD0000000C)
    assert rec["named_anon"]["nb"] == 14 and rec["n"]["f"] == 1.5
    assert rec["color"] == -1 and rec["big"] == 0x1234567890 and rec["tiny"] == 200
    assert rec["d"] == -2.25 and rec["l"] == -5000000000 and rec["flag"]


def test_host_bytes_match_the_bpfel_object():
    _, values = load("el")
    assert values["everything_init"].hex() == LAYOUT["everything_le"]
    assert values["bits_init"].hex() == LAYOUT["bits_le"]


def test_bitfields_are_refused_or_raw(obj):
    spec, values = obj
    bits = spec.type_by_name("bits")
    with pytest.raises(btf.BTFError, match="bitfield"):
        btf.to_dtype(bits)
    raw = btf.to_dtype(bits, bitfields="raw")
    assert raw.itemsize == LAYOUT["structs"]["bits"]["size"]
    spans = {k: (v[1], v[0].shape[0]) for k, v in raw.fields.items() if k != "f"}
    assert spans == {"_bitfield_a": (0, 2), "_bitfield_d": (4, 1), "_bitfield_e": (8, 5),
                     "_bitfield_g": (16, 1)}
    assert raw.fields["f"][1] == LAYOUT["structs"]["bits"]["members"]["f"]
    skip = btf.to_dtype(bits, bitfields="skip")
    assert skip.names == ("f",) and skip.itemsize == raw.itemsize
    rec = np.frombuffer(values["bits_init"], dtype=raw)[0]
    assert rec["f"] == 0xBEEF
    with pytest.raises(ValueError):
        btf.to_dtype(bits, bitfields="maybe")


def test_format_everything(obj):
    spec, values = obj
    ev = spec.type_by_name("everything")
    got = btf.format(values["everything_init"], ev)
    for k, v in EVERYTHING.items():
        assert got[k] == v, k
    assert got["n"]["f"] == 1.5 and got["n"]["i"] == 0x3FC00000
    # as_u32 depends on the byte order; it must agree with as_u64.
    lo, hi = got["as_u32"]
    assert (hi << 32 | lo if spec.byte_order == "little" else lo << 32 | hi) == got["as_u64"]
    json.dumps(got)                                     # JSON-ready


def test_format_bitfields_match_c(obj):
    spec, values = obj
    got = btf.format(values["bits_init"], spec.type_by_name("bits"))
    want = dict(LAYOUT["bits_values"])
    want["h"] = "BLUE"                                   # enum bitfields by name
    assert got == want


def test_format_accepts_records_arrays_and_scalars(obj):
    spec, values = obj
    ev = spec.type_by_name("everything")
    dt = btf.to_dtype(ev)
    arr = np.frombuffer(values["everything_init"], dtype=dt)
    want = btf.format(values["everything_init"], ev)
    assert btf.format(arr[0], ev) == want                # np.void record
    assert btf.format(arr.reshape(()), ev) == want       # 0-d structured array
    two = np.frombuffer(values["everything_init"] * 2, dtype=dt)
    assert btf.format(two, ev) == [want, want]
    u32 = spec.type_by_name("u32")
    c = "<" if spec.byte_order == "little" else ">"
    assert btf.format(np.array(7, dtype=c + "u4")[()], u32) == 7
    assert btf.format(np.uint32(7), u32) == 7            # native scalar, own byte order
    assert btf.format(2, spec.type_by_name("color")) == "BLUE"
    assert btf.format(5, spec.type_by_name("color")) == 5
    with pytest.raises(ValueError):
        btf.format(b"\0" * 3, u32)
    with pytest.raises(TypeError):
        btf.format("text", u32)


def test_format_flow_value():
    spec, _ = load("el")
    flow = spec.type_by_name("flow")
    v = np.zeros((), dtype=btf.to_dtype(flow))
    v["packets"] = 3
    v["comm"] = b"curl"
    v["active"] = True
    v["color"] = 7
    assert btf.format(v, flow) == {"packets": 3, "bytes": 0, "first_seen": 0, "comm": "curl",
                                   "active": True, "color": 7, "delta": 0}


def test_unsupported_types():
    i128 = btf.Int("__int128", 16, btf.IntEncoding.SIGNED)
    with pytest.raises(btf.BTFError, match="128-bit"):
        btf.to_dtype(i128)
    assert btf.to_dtype(i128, unsupported="raw") == np.dtype("V16")
    assert btf.format((-2).to_bytes(16, "little", signed=True), i128, byte_order="little") == -2
    with pytest.raises(btf.BTFError):
        btf.to_dtype(btf.Float("long double", 16))
    proto = btf.FuncProto(btf.VOID, [])
    for t in (btf.VOID, proto, btf.Func("f", proto), btf.Fwd("s")):
        with pytest.raises(btf.BTFError):
            btf.to_dtype(t)
    with pytest.raises(btf.BTFError):
        btf.format(b"", btf.VOID)


def test_struct_by_value_cycle_is_an_error_not_a_crash():
    s = btf.Struct("loop", 8, [])
    s.members = [btf.Member("self", btf.Typedef("loop_t", s), 0)]
    with pytest.raises(btf.BTFError):
        btf.to_dtype(s)
    with pytest.raises(btf.BTFError):
        btf.format(b"\0" * 8, s)


def test_datasec_with_offsets():
    i32 = btf.Int("int", 4, btf.IntEncoding.SIGNED)
    sec = btf.Datasec(".data", 12, [(btf.Var("a", i32), 0, 4),
                                    (btf.Var("b", btf.Array(i32, 2)), 4, 8)])
    dt = btf.to_dtype(sec, byte_order="little")
    assert dt.itemsize == 12 and dt.fields["b"][1] == 4
    raw = np.array([1, 2, 3], dtype="<i4").tobytes()
    assert btf.format(raw, sec, byte_order="little") == {"a": 1, "b": [2, 3]}


@pytest.mark.skipif(bool(features.skip_reason("vmlinux_btf")),
                    reason=str(features.skip_reason("vmlinux_btf")))
def test_kernel_struct_dtypes():
    s = btf.load_kernel_spec()
    ts = s.type_by_name("task_struct")
    with pytest.raises(btf.BTFError, match="bitfield"):
        btf.to_dtype(ts)
    dt = btf.to_dtype(ts, bitfields="raw")
    assert dt.itemsize == ts.size
    assert dt.fields["pid"][1] * 8 == ts.member("pid").bit_offset
    for name in ("iphdr", "ethhdr", "bpf_map_info", "list_head"):
        t = s.type_by_name(name)
        assert btf.to_dtype(t, bitfields="raw").itemsize == t.size
    skb = s.type_by_name("__sk_buff")
    value = btf.format(bytes(skb.size), skb)
    assert value["len"] == 0 and len(value["cb"]) == 5


@pytest.mark.parametrize("obj", ["core_globals-el.o", "core_globals-eb.o"])
def test_format_reads_what_to_dtype_lays_out_for_object_file_datasecs(obj):
    """clang leaves DATASEC sizes at 0 in .o files: to_dtype sizes the section
    by its variables, and format must accept exactly that many bytes."""
    import io
    path = os.path.join(os.path.dirname(__file__), "..", "testdata", obj)
    with open(path, "rb") as f:
        raw = ELFFile(io.BytesIO(f.read())).get_section_by_name(".BTF").data()
    spec = btf.Spec.parse(raw)
    secs = [t for t in spec if isinstance(t, btf.Datasec)]
    assert {t.name for t in secs} >= {".bss", ".data", ".rodata"}
    for t in secs:
        assert t.size == 0
        dt = btf.to_dtype(t)
        assert dt.itemsize == max(v.offset + v.size for v in t.vars) > 0
        rec = np.zeros(1, dt)[0]
        out = btf.format(rec, t)
        assert set(out) == set(dt.names)
        with pytest.raises(ValueError, match=f"the type has {dt.itemsize}"):
            btf.format(bytes(dt.itemsize + 1), t)


def test_format_agrees_with_to_dtype_for_a_variable_naming_a_datasec():
    """Found by the BTF fuzzer (fuzz/crashes/btf/regression-var-naming-datasec):
    in malformed BTF a VAR may name a DATASEC; to_dtype sized it by the
    section's variables while format said 'the type has 0'."""
    path = os.path.join(os.path.dirname(__file__), "..", "fuzz", "crashes", "btf",
                        "regression-var-naming-datasec")
    with open(path, "rb") as f:
        spec = btf.Spec.parse(f.read())
    checked = 0
    for t in spec:
        if isinstance(t, btf.Var) and isinstance(t.type, btf.Datasec):
            dt = btf.to_dtype(t, bitfields="raw", unsupported="raw")
            assert dt.itemsize > t.size == 0
            out = btf.format(bytes(dt.itemsize), t)
            assert isinstance(out, dict)
            checked += 1
    assert checked >= 1


def test_an_array_of_datasecs_has_no_dtype():
    """Found by the BTF fuzzer (fuzz/crashes/btf/regression-array-of-datasec):
    an ARRAY whose element is a DATASEC (size 0 in objects) got a dtype sized
    by the section's variables while format took the array's size, 0."""
    i32 = btf.Int("int", 4, btf.IntEncoding.SIGNED)
    sec = btf.Datasec(".data", 0, [(btf.Var("a", i32), 0, 4)])
    for t in (btf.Array(sec, 4), btf.Array(btf.Var("v", sec), 2)):
        with pytest.raises(btf.BTFError, match="has elements of kind"):
            btf.to_dtype(t, bitfields="raw", unsupported="raw")
    path = os.path.join(os.path.dirname(__file__), "..", "fuzz", "crashes", "btf",
                        "regression-array-of-datasec")
    with open(path, "rb") as f:
        spec = btf.Spec.parse(f.read())
    arrays = [t for t in spec if isinstance(t, btf.Array)
              and isinstance(btf.skip_qualifiers(t.type, vars=True), btf.Datasec)]
    assert arrays
    for t in arrays:
        with pytest.raises(btf.BTFError):
            btf.to_dtype(t, bitfields="raw", unsupported="raw")
