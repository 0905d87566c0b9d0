"""BTF decoding, lookup, encoding and .BTF.ext, on clang's objects (both
byte orders) and on the running kernel's vmlinux BTF."""

import os

import numpy as np
import pytest

import fastbpf.btf.spec as spec_mod
from fastbpf import btf, features
from fastbpf.btf import Kind

import elfutil
from elfutil import data_path

pytestmark = pytest.mark.noroot
ENDIANS = ["el", "eb"]
OBJECTS = ["btf_types", "core_globals"]


def sections(obj, endian, *names):
    return elfutil.sections(data_path(f"{obj}-{endian}.o"), *names)


def load(obj, endian):
    (raw,) = sections(obj, endian, ".BTF")
    return btf.Spec.parse(raw)


@pytest.fixture(scope="module", params=ENDIANS)
def types_spec(request):
    return load("btf_types", request.param)


def test_byte_order_follows_magic():
    assert load("btf_types", "el").byte_order == "little"
    assert load("btf_types", "eb").byte_order == "big"
    (raw,) = sections("btf_types", "eb", ".BTF")
    assert raw[:2] == b"\xeb\x9f"


def test_every_kind_is_decoded(types_spec):
    kinds = {t.kind for t in types_spec}
    assert kinds == set(Kind) - {Kind.UNKN}


def test_both_byte_orders_decode_to_the_same_types():
    assert load("btf_types", "el") == load("btf_types", "eb")
    assert load("core_globals", "el") == load("core_globals", "eb")


def test_lookup_by_id_name_and_iteration(types_spec):
    s = types_spec
    ev = s.type_by_name("everything")
    assert isinstance(ev, btf.Struct) and ev.kind == Kind.STRUCT
    assert s.type_by_id(ev.id) is ev
    assert s.type_id(ev) == ev.id
    assert s.type_by_id(0) is btf.VOID
    ids = [t.id for t in s]
    assert ids == list(range(1, len(s)))
    assert s.type_by_name("everything", kind=Kind.STRUCT) is ev
    assert s.type_by_name("everything", kind="STRUCT" and Kind.STRUCT) is ev
    with pytest.raises(btf.BTFError, match="no BTF type"):
        s.type_by_name("no_such_type")
    with pytest.raises(btf.BTFError, match="no BTF type STRUCT"):
        s.type_by_name("color", kind=Kind.STRUCT)
    with pytest.raises(btf.BTFError):
        s.type_by_id(len(s))
    assert s.type_by_name("u32").kind == Kind.TYPEDEF
    assert ev in s and btf.Int("int", 4) not in s


def test_ambiguous_names_need_a_kind():
    s = btf.Spec()
    st = btf.Struct("thing", 4, [("a", btf.Int("int", 4, btf.IntEncoding.SIGNED), 0)])
    s.add(st)
    s.add(btf.Fwd("thing"))
    assert s.type_by_name("thing") is st          # the definition wins over a fwd
    s.add(btf.Typedef("thing", st))
    with pytest.raises(btf.BTFError, match="pass kind="):
        s.type_by_name("thing")
    assert s.type_by_name("thing", Kind.TYPEDEF).type is st
    assert len(s.types_by_name("thing")) == 3


def test_struct_members(types_spec):
    ev = types_spec.type_by_name("everything")
    assert ev.size == 256
    names = [m.name for m in ev.members]
    assert names[:4] == ["c", "sc", "uc", "flag"]
    assert "" in names                      # the anonymous struct and union
    m = ev.members[0]
    name, typ, bit_offset, bitfield_size = m  # tuple-like
    assert (name, typ.name, bit_offset, bitfield_size) == ("c", "char", 0, 0)
    assert ev.member("x").bit_offset == 164 * 8     # found inside the anonymous struct
    assert ev.member("as_u32").bit_offset == 176 * 8
    with pytest.raises(KeyError):
        ev.member("nope")
    bits = types_spec.type_by_name("bits")
    got = [(m.name, m.bit_offset, m.bitfield_size) for m in bits.members]
    assert got == [("a", 0, 3), ("b", 3, 5), ("c", 8, 7), ("d", 32, 1), ("e", 64, 40),
                   ("f", 112, 0), ("g", 128, 4), ("h", 132, 4)]


def test_scalar_kinds(types_spec):
    s = types_spec
    ev = s.type_by_name("everything")
    by = {m.name: m.type for m in ev.members if m.name}
    assert by["c"].is_char and by["c"].signed and by["c"].size == 1
    assert by["flag"].is_bool
    assert isinstance(by["f"], btf.Float) and by["f"].size == 4
    assert isinstance(by["d"], btf.Float) and by["d"].size == 8
    assert isinstance(by["ptr"], btf.Pointer) and by["ptr"].target is btf.VOID
    assert isinstance(by["name"].target, btf.Const) and by["name"].target.type.name == "char"
    assert by["next"].target is ev                   # a cycle through a pointer
    assert isinstance(by["vol"], btf.Volatile)
    assert isinstance(by["cst"], btf.Const)
    assert isinstance(by["rp"], btf.Restrict) and isinstance(by["rp"].type, btf.Pointer)
    assert isinstance(by["cv"], btf.Typedef) and by["cv"].size == 2
    tag = by["tagged"].target
    assert isinstance(tag, btf.TypeTag) and tag.name == "user" and tag.type.name == "int"
    proto = by["cb"].target
    assert isinstance(proto, btf.FuncProto)
    assert proto.return_type.name == "int"
    assert [p.type.kind for p in proto.params] == [Kind.INT, Kind.PTR]
    m = by["matrix"]
    assert isinstance(m, btf.Array) and m.nelems == 2 and m.type.nelems == 3 and m.size == 24


def test_enums(types_spec):
    s = types_spec
    color = s.type_by_name("color")
    assert color.kind == Kind.ENUM and color.signed and color.size == 4
    assert dict(color.values) == {"RED": 0, "GREEN": 1, "BLUE": 2, "NEG": -1}
    big = s.type_by_name("big64")
    assert big.kind == Kind.ENUM64 and isinstance(big, btf.Enum64) and not big.signed
    assert dict(big.values) == {"BIG_A": 1, "BIG_B": 0x1234567890, "BIG_C": 0xFFFFFFFFFFFFFFF0}
    tiny = s.type_by_name("tiny")
    assert tiny.size == 1 and tiny.name_of(200) == "TINY_Y" and tiny.name_of(3) is None


def test_funcs_vars_datasecs_tags(types_spec):
    s = types_spec
    bump = s.type_by_name("bump")
    assert bump.kind == Kind.FUNC and bump.linkage == btf.Linkage.STATIC
    assert [p.name for p in bump.type.params] == ["f"]
    main = s.type_by_name("count_flows")
    assert main.linkage == btf.Linkage.GLOBAL
    tags = {t.name: t for t in s if t.kind == Kind.DECL_TAG}
    assert tags["func_tag"].type is bump and tags["func_tag"].component_idx == -1
    assert tags["arg_tag"].component_idx == 0
    assert tags["tail_tag"].type.name == "everything" and tags["tail_tag"].component_idx == 36
    assert tags["everything_tag"].component_idx == -1
    data = s.type_by_name(".data", Kind.DATASEC)
    assert [v.type.name for v in data.vars] == ["everything_init", "bits_init"]
    assert [v.size for v in data.vars] == [256, 24]
    var = s.type_by_name("everything_init")
    assert isinstance(var, btf.Var) and var.linkage == btf.Linkage.GLOBAL
    fwd = s.type_by_name("never_defined")
    assert isinstance(fwd, btf.Fwd) and not fwd.union
    assert s.type_by_name("never_defined_union").union
    with pytest.raises(btf.BTFError):
        fwd.size


def test_btf_defined_map(types_spec):
    s = types_spec
    flows = s.type_by_name("flows")
    assert isinstance(flows, btf.Var)
    d = flows.type
    assert [m.name for m in d.members] == ["type", "max_entries", "key", "value"]
    by = {m.name: m.type for m in d.members}
    assert by["type"].target.nelems == 1          # BPF_MAP_TYPE_HASH
    assert by["max_entries"].target.nelems == 1024
    assert by["key"].target.name == "flow_key"
    assert by["value"].target.name == "flow"
    maps = s.type_by_name(".maps", Kind.DATASEC)
    assert maps.vars[0].type is flows


@pytest.mark.parametrize("obj", OBJECTS)
@pytest.mark.parametrize("endian", ENDIANS)
def test_round_trip_testdata(obj, endian):
    (raw,) = sections(obj, endian, ".BTF")
    spec = btf.Spec.parse(raw)
    enc = spec.encode()
    assert enc[:2] == raw[:2]                     # same byte order by default
    again = btf.Spec.parse(enc)
    assert again == spec
    assert again.encode() == enc
    other = "big" if spec.byte_order == "little" else "little"
    swapped = spec.encode(other)
    assert swapped != enc and btf.Spec.parse(swapped) == spec
    assert btf.Spec.parse(spec.encode("native")).byte_order == spec_mod.NATIVE_ORDER


def test_spec_equality_sees_differences():
    a = load("btf_types", "el")
    b = load("btf_types", "el")
    assert a == b
    b.type_by_name("inner").members[0] = b.type_by_name("inner").members[0]._replace(name="z")
    assert a != b
    c = load("btf_types", "el")
    c.add(btf.Int("extra", 4))
    assert a != c


def test_build_by_hand_and_encode():
    i32 = btf.Int("int", 4, btf.IntEncoding.SIGNED)
    node = btf.Struct("node", 16, [])
    node.members = [btf.Member("value", i32, 0), btf.Member("next", btf.Pointer(node), 64)]
    e = btf.Enum64("wide", 8, [("A", -1), ("B", 1 << 40)], signed=True)
    arr = btf.Array(btf.Typedef("val_t", i32), 3)
    fn = btf.Func("f", btf.FuncProto(i32, [("n", node), ("", btf.VOID)]), btf.Linkage.GLOBAL)
    tag = btf.DeclTag("t", node, 1)
    spec = btf.Spec.from_types([node, e, arr, fn, tag, btf.Float("double", 8)])
    assert spec.type_id(node) == 1
    back = btf.Spec.parse(spec.encode())
    assert back == spec
    n2 = back.type_by_name("node")
    assert n2.members[1].type.target is n2
    assert dict(back.type_by_name("wide").values) == {"A": -1, "B": 1 << 40}
    assert back.type_by_name("f").type.params[1].type is btf.VOID


def test_encode_needs_every_referenced_type():
    i32 = btf.Int("int", 4)
    s = btf.Spec([btf.Typedef("x", i32)])
    with pytest.raises(btf.BTFError, match="not in this spec"):
        s.encode()


def test_split_spec_continues_ids_and_strings():
    base = load("btf_types", "el")
    flow = base.type_by_name("flow")
    u32 = base.type_by_name("u32")
    extra = btf.Struct("module_thing", 64, [("f", flow, 0), ("n", u32, 56 * 8)])
    split = btf.Spec.from_types([extra, btf.Pointer(extra)], base=base)
    assert len(split) == len(base) + 2
    assert split.type_id(extra) == len(base)
    assert split.type_id(u32) == u32.id            # base types keep their ids
    raw = split.encode()
    back = btf.Spec.parse(raw, base=base)
    assert back == split
    t = back.type_by_name("module_thing")
    assert t.id == len(base)
    assert t.members[0].type is flow                # resolved in the base
    assert back.type_by_name("flow") is flow        # lookups fall back to the base
    assert back.type_by_id(1) is base.type_by_id(1)
    assert [x.id for x in back] == [len(base), len(base) + 1]


def test_ext_info_core_relos():
    ext = {}
    for endian in ENDIANS:
        raw, raw_ext = sections("core_globals", endian, ".BTF", ".BTF.ext")
        spec = btf.Spec.parse(raw)
        x = btf.ExtInfo.parse(raw_ext, spec)
        ext[endian] = x
        relos = x.core_relos["raw_tp/sys_enter"]
        kinds = {r.kind for r in relos}
        assert btf.CoreReloKind.FIELD_EXISTS in kinds
        assert btf.CoreReloKind.FIELD_BYTE_OFFSET in kinds
        assert btf.CoreReloKind.ENUMVAL_VALUE in kinds
        for r in relos:
            if r.kind == btf.CoreReloKind.FIELD_EXISTS:
                assert spec.type_by_id(r.type_id).name == "task_struct"
                assert r.access == "0:1"            # member 1: tgid
        assert x.core_relos[".text"][0].access == "0:0"   # read_pid(): t->pid
        funcs = {spec.type_by_id(f.type_id).name for fi in x.func_info.values() for f in fi}
        assert funcs == {"on_enter", "read_pid"}
        lines = [ln for li in x.line_info.values() for ln in li]
        assert lines and all(ln.file_name.endswith("core_globals.c") for ln in lines)
        assert any("bpf_probe_read_kernel" in ln.line for ln in lines)
        assert all(ln.line_num > 0 for ln in lines)
    assert ext["el"].core_relos == ext["eb"].core_relos
    assert ext["el"].line_info == ext["eb"].line_info


def test_ext_info_func_info_of_btf_types():
    raw, raw_ext = sections("btf_types", "eb", ".BTF", ".BTF.ext")
    spec = btf.Spec.parse(raw)
    x = btf.ExtInfo.parse(raw_ext, spec)
    assert x.byte_order == "big"
    assert spec.type_by_id(x.func_info["xdp"][0].type_id).name == "count_flows"
    assert x.core_relos == {}


@pytest.mark.parametrize("obj", OBJECTS)
def test_python_scanner_matches_c(obj, monkeypatch):
    if spec_mod._scanmod is None:
        pytest.skip("fastbpf._btfscan is not built")
    (raw,) = sections(obj, "eb", ".BTF")
    fast = btf.Spec.parse(raw)
    monkeypatch.setattr(spec_mod, "_scanmod", None)
    slow = btf.Spec.parse(raw)
    assert np.array_equal(fast._offs, slow._offs) and fast == slow


# ---------------------------------------------------------------- vmlinux

VMLINUX = "/sys/kernel/btf/vmlinux"
needs_vmlinux = pytest.mark.skipif(bool(features.skip_reason("vmlinux_btf")),
                                   reason=str(features.skip_reason("vmlinux_btf")))


@needs_vmlinux
def test_kernel_spec_is_cached_and_finds_task_struct():
    s = btf.load_kernel_spec()
    assert btf.load_kernel_spec() is s
    assert len(s) > 1000
    ts = s.type_by_name("task_struct")
    assert ts.kind == Kind.STRUCT and ts.size > 1000
    assert s.type_by_id(ts.id) is ts
    pid = ts.member("pid")
    assert pid.type.size == 4 and pid.bit_offset % 8 == 0
    assert s.type_by_name("bpf_map_type").kind == Kind.ENUM
    assert s.type_by_name("do_nanosleep", Kind.FUNC).type.kind == Kind.FUNC_PROTO
    assert btf.kernel_module_names() == sorted(
        n for n in os.listdir("/sys/kernel/btf") if n != "vmlinux")


@needs_vmlinux
def test_kernel_module_split_specs():
    if r := features.skip_reason("module_btf"):
        pytest.skip(r)
    mods = btf.kernel_module_names()
    base = btf.load_kernel_spec()
    m = btf.load_kernel_spec(mods[0])
    assert m.base is base and btf.load_kernel_spec(mods[0]) is m
    first = next(iter(m))
    assert first.id == len(base)


@needs_vmlinux
def test_kernel_round_trip():
    with open(VMLINUX, "rb") as f:
        raw = f.read()
    s = btf.Spec.parse(raw)
    enc = s.encode()
    back = btf.Spec.parse(enc)
    assert back == s
    assert back.encode() == enc


@needs_vmlinux
def test_kernel_names_match_a_full_scan():
    # The vectorized name lookup against a plain walk over all types.
    s = btf.Spec.parse(open(VMLINUX, "rb").read())
    wanted = {"task_struct", "list_head", "pid_t", "sk_buff", "xdp_md", "u8", "jiffies"}
    found = {}
    for t in s:
        if t.name in wanted:
            found.setdefault(t.name, []).append(t.id)
    for name in wanted:
        assert [t.id for t in s.types_by_name(name)] == found.get(name, [])
