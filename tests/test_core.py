"""CO-RE relocations (fastbpf.btf.core): every kind, against the running
kernel's BTF (and the programs run) and against synthetic target BTF built
here (moved, resized, renamed, missing and bitfield members, enum values
that differ, flavors, ambiguity), for both byte orders; hostile records."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import threading

import pytest

from fastbpf import btf, features
from fastbpf.btf import core
from fastbpf.btf.types import (Array, Enum, Enum64, Int, IntEncoding, Member, Pointer, Struct,
                               Typedef, VOID)
from fastbpf.enums import ProgramType
from fastbpf.errors import BTFError, CORERelocationError, VerifierError

sys.path.insert(0, os.path.dirname(__file__))
import core_objects  # noqa: E402
from core_objects import load as load_object  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.join(os.path.dirname(HERE), "testdata")
K = btf.CoreReloKind


def obj(name: str, order: str = "el") -> core_objects.CoreObject:
    return load_object(os.path.join(TESTDATA, f"{name}-{order}.o"))


def need_raw_tp() -> None:
    for probe in (features.probe_vmlinux_btf(),
                  features.probe_program_type(ProgramType.RAW_TRACEPOINT),
                  features.probe_helper(ProgramType.RAW_TRACEPOINT, 113),   # probe_read_kernel
                  features.probe_helper(ProgramType.RAW_TRACEPOINT, 35)):   # get_current_task
        if not probe:
            pytest.skip(probe.reason)


def load_prog(fn: core_objects.Func):
    from fastbpf import Program, ProgramSpec
    return Program.load(ProgramSpec(ProgramType.RAW_TRACEPOINT, fn.insns, name=fn.name[:15]))


def run(fn, ctx: bytes | None = None) -> int:
    with load_prog(fn) as p:
        return p.test_run(ctx=ctx).retval


# ---------------------------------------------------------------- synthetic targets

U16 = Int("unsigned short", 2)
U32 = Int("unsigned int", 4)
S32 = Int("int", 4, IntEncoding.SIGNED)
U64 = Int("unsigned long long", 8)
S64 = Int("long long", 8, IntEncoding.SIGNED)
CHAR = Int("char", 1, IntEncoding.SIGNED)


def blob_t1(extra=()) -> btf.Spec:
    """core_blob with every member moved; b widened to 4 bytes; arr longer;
    f3 crossing a 4-byte boundary (an 8-byte load); 'gone' missing;
    core_state with other values; core_wide with a wider value."""
    blob = Struct("core_blob", 64, [
        Member("c", U64, 0),
        Member("arr", Array(S32, 6), 64),
        Member("name", Array(CHAR, 8), 256),
        Member("b", U32, 320),
        Member("a", U32, 352),
        Member("f2", S32, 385, 5),
        Member("f1", U32, 390, 3),
        Member("f3", U32, 412, 12),
    ])
    state = Enum("core_state", 4, [("CORE_IDLE", 5), ("CORE_BUSY", 6)])
    wide = Enum64("core_wide", 8, [("CORE_WIDE_LOW", 1), ("CORE_WIDE_HIGH", 3 << 32)])
    return btf.Spec.from_types([blob, Typedef("core_blob_t", blob), state, wide, *extra])


T1_VALUES = dict(c=0x1122334455667788, arr=[10, 11, 12, 13, 14, 15], name=b"abcdefgh",
                 b=0xA0B0C0D0, a=0x01020304, f2=-3, f1=5, f3=0xABC)


def blob_bytes(spec: btf.Spec, values: dict) -> bytes:
    """A little-endian core_blob laid out as *spec* says, holding *values*."""
    t = spec.type_by_name("core_blob", kind=btf.Kind.STRUCT)
    buf = bytearray(t.size)
    bits = 0
    for m in t.members:
        v = values[m.name]
        if m.bitfield_size:
            bits |= (v & ((1 << m.bitfield_size) - 1)) << m.bit_offset
            continue
        off = m.bit_offset // 8
        mt = m.type
        if isinstance(mt, Array):
            if mt.type.size == 1:
                buf[off:off + mt.nelems] = v
            else:
                struct.pack_into(f"<{mt.nelems}i", buf, off, *v)
        else:
            buf[off:off + mt.size] = v.to_bytes(mt.size, "little", signed=v < 0)
    raw = int.from_bytes(buf, "little") | bits
    out = raw.to_bytes(len(buf), "little")
    return out + b"\0" * (-len(out) % 8)


def relocate_all(o, target, **kw) -> dict:
    """Relocate every function of *o*; {name: [CORERelocation]}."""
    cache: dict = {}
    return {name: core.relocate_instructions(o.spec, fn.insns, fn.pairs(), target,
                                             cand_cache=cache, program=name, **kw)
            for name, fn in o.funcs.items() if fn.relos}


# ---------------------------------------------------------------- unit pieces

def test_essential_name():
    assert core.essential_name("task_struct___v2") == "task_struct"
    assert core.essential_name("task_struct") == "task_struct"
    assert core.essential_name("a___b___c") == "a___b"
    assert core.essential_name("___x") == "___x"          # no X before the separator
    assert core.essential_name("x___") == "x___"          # no Y after it
    assert core.essential_name("x____y") == "x____y"      # four underscores: not a flavor
    assert core.essential_name("") == ""


def test_local_type_id_needs_no_target():
    o = obj("core_synth")
    fn = o.funcs["blob_type_ids"]
    (local, target) = core.calculate_relocations(o.spec, fn.pairs(), btf.Spec())
    assert local.kind == K.TYPE_ID_LOCAL and local.target_value == local.local_value
    assert local.local_value == o.spec.type_by_name("core_blob_t").id
    assert target.kind == K.TYPE_ID_TARGET and target.target_value == 0 and not target.poisoned


# ---------------------------------------------------------------- synthetic: values

@pytest.mark.parametrize("order", ["el", "eb"])
def test_synthetic_values(order):
    o = obj("core_synth", order)
    target = blob_t1()
    res = {n: {(r.kind, r.path): r for r in rs} for n, rs in relocate_all(o, target).items()}
    t = target.type_by_name("core_blob", kind=btf.Kind.STRUCT)

    def one(fn, kind, path):
        return res[fn][(kind, path)]

    assert one("blob_a", K.FIELD_BYTE_OFFSET, "struct core_blob.a").target_value == 44
    assert one("blob_b", K.FIELD_BYTE_SIZE, "struct core_blob.b").target_value == 4
    assert one("blob_b", K.FIELD_BYTE_SIZE, "struct core_blob.b").local_value == 2
    assert one("blob_c", K.FIELD_BYTE_OFFSET, "struct core_blob.c").target_value == 0
    assert one("blob_arr2", K.FIELD_BYTE_OFFSET, "struct core_blob.arr[2]").target_value == 16
    assert one("blob_name1", K.FIELD_BYTE_OFFSET, "struct core_blob.name[1]").target_value == 33
    assert one("blob_name1", K.FIELD_BYTE_SIZE, "struct core_blob.name[1]").target_value == 1
    # bitfields: f3 crosses a 4-byte unit, so it is read with 8 bytes at 48
    f3 = {r.kind: r.target_value for r in res["blob_f3"].values()}
    assert f3[K.FIELD_BYTE_OFFSET] == 48 and f3[K.FIELD_BYTE_SIZE] == 8
    assert f3[K.FIELD_RSHIFT_U64] == 64 - 12 and f3[K.FIELD_SIGNED] == 0
    big = order == "eb"
    for name in ("f1", "f2", "f3"):
        got = {r.kind: r.target_value for r in res[f"blob_{name}"].values()}
        m = t.member(name)
        off, size = got[K.FIELD_BYTE_OFFSET], got[K.FIELD_BYTE_SIZE]
        want = ((8 - size) * 8 + (m.bit_offset - off * 8) if big
                else 64 - (m.bit_offset + m.bitfield_size - off * 8))
        assert got[K.FIELD_LSHIFT_U64] == want, name
        assert got[K.FIELD_RSHIFT_U64] == 64 - m.bitfield_size
    assert {r.kind: r.target_value for r in res["blob_f2"].values()}[K.FIELD_SIGNED] == 1
    gone = {r.kind: r for r in res["blob_gone"].values()}
    assert gone[K.FIELD_EXISTS].target_value == 0 and gone[K.FIELD_BYTE_OFFSET].poisoned
    info = {r.kind: r.target_value for r in res["blob_info"].values()}
    assert info[K.TYPE_SIZE] == 64 and info[K.TYPE_EXISTS] == 1
    assert info[K.TYPE_MATCHES] == 0              # local 'gone' is missing in the target
    assert info[K.ENUMVAL_EXISTS] == 0            # CORE_GONE is not in the target enum
    enum = {r.path: r.target_value for r in res["blob_enum"].values()}
    assert enum == {"enum core_state::CORE_BUSY": 6, "enum core_state::CORE_IDLE": 5}
    (wide,) = res["blob_enum64"].values()
    assert wide.local_value == 1 << 32 and wide.target_value == 3 << 32
    ids = {r.kind: r.target_value for r in res["blob_type_ids"].values()}
    assert ids[K.TYPE_ID_TARGET] == target.type_id(t)


def test_synthetic_patched_instructions():
    o = obj("core_synth")
    fn = o.funcs["blob_b"]
    before = list(fn.insns)
    rs = core.relocate_instructions(o.spec, fn.insns, fn.pairs(), blob_t1())
    for r in rs:
        assert before[r.index].constant == r.local_value
        assert fn.insns[r.index].constant == r.target_value
        assert fn.insns[r.index].opcode == before[r.index].opcode
    assert [i for i, (a, b) in enumerate(zip(before, fn.insns)) if a != b] == sorted(
        r.index for r in rs)


def test_memory_access_patching():
    """LDX/ST/STX: offsets move; unsigned and pointer fields may change
    size; a signed field that changes size poisons the access."""
    o = obj("core_synth")
    fn = o.funcs["mem_access"]
    before = list(fn.insns)
    target = btf.Spec.from_types([Struct("core_mem", 48, [
        Member("u16f", U16, 0),
        Member("u32f", U64, 64),            # u32 -> u64: allowed, W -> DW
        Member("s32f", S64, 128),           # int -> long long: poisoned
        Member("u64f", U64, 192),
        Member("ptr", Pointer(VOID), 256),
    ])])
    rs = core.relocate_instructions(o.spec, fn.insns, fn.pairs(), target)
    by_path: dict = {}
    for r in rs:
        by_path.setdefault(r.path, []).append(r)
    for r in by_path["struct core_mem.u32f"]:
        old, new = before[r.index], fn.insns[r.index]
        assert new.offset == 8 and r.local_size == 4 and r.target_size == 8
        assert old.opcode & 0x18 == 0x00 and new.opcode & 0x18 == 0x18     # W -> DW
        assert new.opcode & 0xE7 == old.opcode & 0xE7
    (s32,) = by_path["struct core_mem.s32f"]
    assert s32.poisoned and fn.insns[s32.index].opcode == 0x85
    assert fn.insns[s32.index].constant == core.POISON_IMM
    (u16,) = by_path["struct core_mem.u16f"]
    assert fn.insns[u16.index].offset == 0
    assert fn.insns[u16.index].opcode == before[u16.index].opcode
    (ptr,) = by_path["struct core_mem.ptr"]
    assert fn.insns[ptr.index].offset == 32
    (u64,) = by_path["struct core_mem.u64f"]
    assert fn.insns[u64.index].offset == 24
    classes = {before[r.index].opcode & 7 for r in rs}
    assert classes == {1, 3}                          # LDX and STX (clang emits no ST here)
    # ST (store of an immediate), written by hand: *(u32 *)(r1 + 0) = 7
    from fastbpf.asm import Instruction, Instructions
    mem = o.spec.type_by_name("core_mem", kind=btf.Kind.STRUCT)
    insns = Instructions([Instruction(0x62, 1, 0, 0, 7), Instruction(0x95)])
    (r,) = core.relocate_instructions(o.spec, insns, [(0, btf.CoreRelo(0, mem.id, "0:0",
                                                                       K.FIELD_BYTE_OFFSET))],
                                      target)
    assert insns[0] == Instruction(0x7A, 1, 0, 8, 7)  # ST DW at offset 8


def test_flavors_and_ambiguity():
    o = obj("core_synth")
    fn = o.funcs["blob_a_or_renamed"]
    v2 = Struct("core_blob___v2", 4, [Member("a_renamed", U32, 0)])
    rs = core.calculate_relocations(o.spec, fn.pairs(), blob_t1([v2]))
    got = {(r.kind, r.path): r for r in rs}
    assert got[(K.FIELD_EXISTS, "struct core_blob___v2.a_renamed")].target_value == 1
    assert got[(K.FIELD_BYTE_OFFSET, "struct core_blob___v2.a_renamed")].target_value == 0
    assert got[(K.FIELD_BYTE_OFFSET, "struct core_blob___v2.a_renamed")].candidate is v2
    # two flavors that agree: fine; that disagree: an error naming both
    fa = o.funcs["blob_a"]
    x = Struct("core_blob___x", 8, [Member("a", U32, 32)])
    y = Struct("core_blob___y", 8, [Member("a", U32, 32)])
    (r, _) = core.calculate_relocations(o.spec, fa.pairs(), btf.Spec.from_types([x, y]))
    assert r.target_value == 4 and r.candidates == 2
    y2 = Struct("core_blob___y", 8, [Member("a", U32, 0)])
    with pytest.raises(CORERelocationError, match="ambiguity.*core_blob___"):
        core.calculate_relocations(o.spec, fa.pairs(), btf.Spec.from_types([x, y2]))
    # incompatible member type (a struct where an int is expected): no match
    z = Struct("core_blob___z", 8, [Member("a", Struct("inner", 4, []), 0)])
    (r, _) = core.calculate_relocations(o.spec, fa.pairs(), btf.Spec.from_types([z]))
    assert r.poisoned and r.candidate is None


def test_candidates_pruned_like_libbpf():
    """A candidate that failed one relocation is not offered to the next
    relocation of the same local type (libbpf's shared candidate list)."""
    o = obj("core_synth")
    only_a = Struct("core_blob___p", 8, [Member("a", U32, 0)])
    only_b = Struct("core_blob___q", 8, [Member("b", U16, 0)])
    target = btf.Spec.from_types([only_a, only_b])
    cache: dict = {}
    (ra, _) = core.calculate_relocations(o.spec, o.funcs["blob_a"].pairs(), target,
                                         cand_cache=cache)
    (rb, _) = core.calculate_relocations(o.spec, o.funcs["blob_b"].pairs(), target,
                                         cand_cache=cache)
    assert not ra.poisoned and rb.poisoned
    (rb, _) = core.calculate_relocations(o.spec, o.funcs["blob_b"].pairs(), target)
    assert not rb.poisoned and rb.candidate is only_b


def test_compat_rules():
    from fastbpf.btf.core import _match
    # types_are_compat: pointers and arrays recurse, ints ignore size, protos count params
    assert _match.types_are_compat(Pointer(U32), Pointer(S64))
    assert not _match.types_are_compat(Pointer(U32), Pointer(Struct("s", 4)))
    assert _match.types_are_compat(Array(U32, 2), Array(U16, 9))
    from fastbpf.btf.types import FuncProto, Param, Fwd
    p1 = FuncProto(S32, [Param("a", U32)])
    assert _match.types_are_compat(p1, FuncProto(U64, [Param("x", U16)]))
    assert not _match.types_are_compat(p1, FuncProto(S32, []))
    assert _match.types_are_compat(Enum("e", 4), Enum64("e", 8))
    # fields: composites mix, enums by essential name, anonymous ok
    assert _match.fields_are_compat(Struct("a", 4), Struct("b", 4))
    assert _match.fields_are_compat(Enum("e___1", 4), Enum("e", 4))
    assert not _match.fields_are_compat(Enum("e", 4), Enum("f", 4))
    assert _match.fields_are_compat(Enum("", 4), Enum("f", 4))
    assert not _match.fields_are_compat(U32, Pointer(U32))
    # types_match: sizes and signedness of ints, enum names, fwd behind pointers
    assert _match.types_match(U32, Int("unsigned int", 4))
    assert not _match.types_match(U32, Int("x", 4))          # names must match too
    assert not _match.types_match(U32, Int("unsigned int", 4, IntEncoding.SIGNED))
    assert not _match.types_match(U32, Int("unsigned int", 8))
    assert _match.types_match(Pointer(Struct("s", 4, [Member("q", U32, 0)])), Pointer(Fwd("s")))
    assert not _match.types_match(Struct("s", 4, [Member("q", U32, 0)]), Fwd("s"))
    assert _match.types_match(Enum("e", 4, [("A", 1)]), Enum64("e", 4, [("B", 0), ("A", 9)]))
    assert not _match.types_match(Enum("e", 4, [("A", 1)]), Enum("e", 8, [("A", 1)]))
    assert not _match.types_match(Array(U32, 2), Array(U32, 3))


# ---------------------------------------------------------------- synthetic: run them

def test_synthetic_programs_run():
    need_raw_tp()
    o = obj("core_synth")
    target = blob_t1()
    relocate_all(o, target)
    ctx = blob_bytes(target, T1_VALUES)
    want = {
        "blob_a": 0x01020304, "blob_b": 0xA0B0C0D0, "blob_c": 0x55667788, "blob_arr2": 12,
        "blob_name1": ord("b"), "blob_f1": 5, "blob_f2": (-3) & 0xFFFFFFFF, "blob_f3": 0xABC,
        "blob_a_or_renamed": 0x01020304, "blob_gone": 0xFFFFFFFF,
        "blob_info": 64 | 1 << 8 | 1 << 11, "blob_enum": 6 << 4 | 5, "blob_enum64": 3,
    }
    got = {name: run(o.funcs[name], ctx) for name in want}
    assert got == want


def test_synthetic_renamed_flavor_runs():
    need_raw_tp()
    o = obj("core_synth")
    v2 = Struct("core_blob___v2", 4, [Member("a_renamed", U32, 32)])
    fn = o.funcs["blob_a_or_renamed"]
    core.relocate_instructions(o.spec, fn.insns, fn.pairs(), blob_t1([v2]))
    ctx = bytearray(blob_bytes(blob_t1(), T1_VALUES))
    ctx[4:8] = (0x0BADCAFE).to_bytes(4, "little")
    assert run(fn, bytes(ctx)) == 0x0BADCAFE


# ---------------------------------------------------------------- the running kernel

@pytest.fixture
def kernel():
    p = features.probe_vmlinux_btf()
    if not p:
        pytest.skip(p.reason)
    return btf.load_kernel_spec()


def test_kernel_values(kernel):
    o = obj("core_kinds")
    res = relocate_all(o, None)
    ts = kernel.type_by_name("task_struct", kind=btf.Kind.STRUCT)
    tgid = res["field_offset"][0]
    assert tgid.target_value == ts.member("tgid").bit_offset // 8
    assert tgid.candidate is ts and tgid.target is kernel
    (tid,) = res["type_id_target"]
    assert tid.target_value == ts.id
    (size,) = res["type_size"]
    assert size.target_value == ts.size
    state = res["state_flavors"]
    assert [r.poisoned for r in state] == [False, False, True]
    assert all(r.slot == r.index for r in res["read_pid"])


def test_kernel_programs_run(kernel):
    need_raw_tp()
    o = obj("core_kinds")
    relocate_all(o, None)
    ts = kernel.type_by_name("task_struct", kind=btf.Kind.STRUCT)
    tid = threading.get_native_id()
    with open(f"/proc/self/task/{tid}/comm", "rb") as f:
        comm = f.read().rstrip(b"\n").ljust(16, b"\0")

    def size(name):
        m = ts.member(name)
        return m.type.size if not m.bitfield_size else btf.skip_qualifiers(m.type).size

    want = {
        "read_tgid": os.getpid(), "read_pid": tid,
        "read_comm1": int.from_bytes(comm[1:5], "little"),
        "field_exists": 1 | 1 << 2 | 1 << 4 | 1 << 5,
        "field_sizes": size("comm") | size("pid") << 8 | size("mm") << 16 | size("in_execve") << 24,
        "field_offset": ts.member("tgid").bit_offset // 8,
        "field_signed": 1 | 1 << 2,
        "bitfields": (os.getpid() & 0xFFFF) << 2,
        "state_flavors": 0,                     # __state of a running task: TASK_RUNNING
        "type_info": 1 | 1 << 2 | 1 << 3 | 1 << 6,
        "type_size": ts.size, "type_size_missing": 0, "type_id_target": ts.id,
        "type_id_local": o.spec.type_by_name("task_struct", kind=btf.Kind.STRUCT).id,
        "enum_exists": 1 | 1 << 2, "enum_value": 3, "enum64_value": 0x7F,
    }
    got = {name: run(o.funcs[name]) for name in want}
    assert got == want
    args = struct.pack("<3Q", 7, 0x1234, 9)
    assert run(o.funcs["ctx_arg"], args) == 0x1234


def test_kernel_poison_becomes_core_error(kernel):
    need_raw_tp()
    o = obj("core_kinds")
    fn = o.funcs["unguarded"]
    rels = core.relocate_instructions(o.spec, fn.insns, fn.pairs(), program="unguarded")
    assert rels[0].poisoned
    with pytest.raises(VerifierError) as info:
        load_prog(fn)
    err = core.poison_error(info.value, rels, program="unguarded")
    assert isinstance(err, CORERelocationError) and isinstance(err, VerifierError)
    assert err.relocation is rels[0]
    text = str(err)
    assert "struct task_struct.not_in_any_kernel" in text and "0:8" in text
    assert "unguarded" in text and "task_struct" in text
    assert err.log == info.value.log
    other = VerifierError(13, "program load", "prog 'x'", "R0 !read_ok")
    assert core.poison_error(other, rels) is other


def test_target_as_path_and_list(tmp_path, kernel):
    o = obj("core_synth")
    target = blob_t1()
    path = tmp_path / "target.btf"
    path.write_bytes(target.encode())
    fn = o.funcs["blob_a"]
    (r, _) = core.calculate_relocations(o.spec, fn.pairs(), str(path))
    assert r.target_value == 44
    # a list: the first spec is searched first; the others only when it has none
    (r, _) = core.calculate_relocations(o.spec, fn.pairs(), [kernel, target])
    assert r.target_value == 44 and r.target is target
    if shutil.which("objcopy") and shutil.which("gcc"):
        src = tmp_path / "e.c"
        src.write_text("int x;\n")
        elf = tmp_path / "vmlinux"
        subprocess.run(["gcc", "-c", "-o", str(elf), str(src)], check=True)
        subprocess.run(["objcopy", "--add-section", f".BTF={path}", str(elf)], check=True)
        (r, _) = core.calculate_relocations(o.spec, fn.pairs(), str(elf))
        assert r.target_value == 44
    with pytest.raises(BTFError):
        core.calculate_relocations(o.spec, fn.pairs(), str(tmp_path / "missing"))
    bad = tmp_path / "bad.btf"
    bad.write_bytes(b"\x9f\xeb\x01\x00garbage")
    with pytest.raises(BTFError):
        core.calculate_relocations(o.spec, fn.pairs(), str(bad))


# It replaces the session's cached kernel BTF, whose mapping holds an fd: the
# reloaded cache gets a new fd number, which the leak check would report.
@pytest.mark.leaks_ok
def test_module_btf(tmp_path, kernel, monkeypatch):
    """Candidates come from module BTF when vmlinux has none; broken, empty
    or unreadable module BTF never fails relocations that do not need it."""
    from fastbpf.btf import kernel as kmod
    d = tmp_path / "btf"
    d.mkdir()
    shutil.copyfile("/sys/kernel/btf/vmlinux", d / "vmlinux")
    (d / "broken").write_bytes(b"\x9f\xeb\x01\x00" + b"\xff" * 40)
    (d / "empty").write_bytes(b"")
    monkeypatch.setattr(kmod, "BTF_DIR", str(d))
    btf.flush_kernel_specs()
    try:
        base = btf.load_kernel_spec()
        split = btf.Spec(base=base)
        split.add(Struct("core_blob", 8, [Member("a", base.type_by_name("int", kind=btf.Kind.INT),
                                                 32)]))
        (d / "fake_mod").write_bytes(split.encode())
        o = obj("core_synth")
        (r, _) = core.calculate_relocations(o.spec, o.funcs["blob_a"].pairs())
        assert r.target_value == 4 and r.target is not base
        assert r.target.base is base
        os.unlink(d / "fake_mod")
        btf.flush_kernel_specs()
        k = obj("core_kinds")
        res = {n: [x.target_value for x in rs] for n, rs in relocate_all(k, None).items()}
        assert res["type_info"][1] == 0     # searched the modules, found nothing, no error
    finally:
        monkeypatch.undo()
        btf.flush_kernel_specs()
        btf.load_kernel_spec()


# ---------------------------------------------------------------- hostile input

def _one(o, access="0:0", type_id=None, kind=K.FIELD_BYTE_OFFSET, index=3, fn="blob_a"):
    f = o.funcs[fn]
    tid = o.spec.type_by_name("core_blob", kind=btf.Kind.STRUCT).id if type_id is None else type_id
    return f, [(index, btf.CoreRelo(24, tid, access, kind))]


@pytest.mark.parametrize("access", ["", ":0", "0:", "0::1", "-1", "0:x", "0:99", " 0", "0:1:0",
                                    ":".join(["0"] * 70), "0:6:7"])
def test_bad_access_strings(access):
    o = obj("core_synth")
    f, relos = _one(o, access)
    with pytest.raises(BTFError):
        core.relocate_instructions(o.spec, f.insns, relos, blob_t1())


@pytest.mark.parametrize("type_id,kind,access", [
    (0, K.FIELD_BYTE_OFFSET, "0:0"), (10 ** 6, K.FIELD_BYTE_OFFSET, "0:0"),
    (-1, K.FIELD_BYTE_OFFSET, "0:0"), (None, 99, "0:0"), (None, K.TYPE_SIZE, "1"),
    (None, K.ENUMVAL_VALUE, "0"), (None, K.FIELD_BYTE_OFFSET, "0:0:0")])
def test_bad_records(type_id, kind, access):
    o = obj("core_synth")
    f, relos = _one(o, access, type_id, kind)
    with pytest.raises(BTFError):
        core.relocate_instructions(o.spec, f.insns, relos, blob_t1())


def test_bad_instructions():
    o = obj("core_synth")
    f, relos = _one(o, index=10 ** 4)
    with pytest.raises(BTFError, match="instruction"):
        core.relocate_instructions(o.spec, f.insns, relos, blob_t1())
    # the instruction does not hold the local value: libbpf's validation
    f, relos = _one(o, index=3, access="0:1")
    with pytest.raises(CORERelocationError, match="unexpected value"):
        core.relocate_instructions(o.spec, f.insns, relos, blob_t1())
    # an instruction form that is never relocated (exit)
    exit_index = len(f.insns) - 1
    f, relos = _one(o, index=exit_index)
    with pytest.raises(CORERelocationError, match="cannot relocate"):
        core.relocate_instructions(o.spec, f.insns, relos, blob_t1())
    with pytest.raises(TypeError):
        core.relocate_instructions(o.spec, f.insns, [(0, "nope")], blob_t1())
    with pytest.raises(TypeError):
        core.relocate_instructions(o.spec, f.insns, [], 42)


def test_impossible_bitfield_is_an_error():
    o = obj("core_synth")
    # f3 spans 12 bits from bit 60 with a 4-byte... no: from bit 60 over a
    # u64 boundary, which no single load reads
    blob = Struct("core_blob", 16, [Member("f3", U64, 60, 12)])
    f = o.funcs["blob_f3"]
    with pytest.raises(CORERelocationError, match="bitfield"):
        core.relocate_instructions(o.spec, f.insns, f.pairs(), btf.Spec.from_types([blob]))


def test_fuzzed_records_fail_cleanly():
    import random
    rnd = random.Random(1234)
    o = obj("core_kinds")
    target = blob_t1()
    fns = [f for f in o.funcs.values() if f.relos]
    for _ in range(400):
        f = rnd.choice(fns)
        i, _, _, rec = rnd.choice(f.relos)
        access = rnd.choice([rec.access, rec.access + ":" + str(rnd.randrange(100)),
                             str(rnd.randrange(5)), "0:" + str(rnd.randrange(1 << 20))])
        tid = rnd.choice([rec.type_id, rnd.randrange(len(o.spec) + 5)])
        kind = rnd.choice(list(K))
        relo = btf.CoreRelo(rec.insn_off, tid, access, kind)
        insns = f.insns.copy()
        try:
            core.relocate_instructions(o.spec, insns, [(i, relo)], rnd.choice([target, None]))
        except (BTFError, CORERelocationError):
            pass


def test_big_endian_objects_agree(kernel):
    """The same source compiled for bpfeb relocates to the same values
    against the kernel, except the bitfield left shifts, which follow the
    object's byte order."""
    el = relocate_all(obj("core_kinds", "el"), None)
    eb = relocate_all(obj("core_kinds", "eb"), None)
    assert el.keys() == eb.keys()
    shifts = 0
    for name in el:
        def key(r):
            value = None if r.kind == K.FIELD_LSHIFT_U64 else r.target_value
            return (int(r.kind), r.path, r.poisoned, value)
        # (the big-endian bitfield macro asks for the byte size twice)
        assert set(map(key, el[name])) == set(map(key, eb[name])), name
        shifts += sum(r.kind == K.FIELD_LSHIFT_U64 for r in eb[name])
    assert shifts >= 3
    ts = kernel.type_by_name("task_struct", kind=btf.Kind.STRUCT)
    m = ts.member("in_execve")
    lsh = {r.path: r.target_value for r in eb["bitfields"] if r.kind == K.FIELD_LSHIFT_U64}
    off = {r.path: r.target_value for r in eb["bitfields"] if r.kind == K.FIELD_BYTE_OFFSET}
    size = {r.path: r.target_value for r in eb["bitfields"] if r.kind == K.FIELD_BYTE_SIZE}
    p = "struct task_struct.in_execve"
    assert lsh[p] == (8 - size[p]) * 8 + (m.bit_offset - off[p] * 8)


def test_result_text():
    o = obj("core_synth")
    fn = o.funcs["blob_gone"]
    rs = core.relocate_instructions(o.spec, fn.insns, fn.pairs(), blob_t1())
    assert "field_exists" in rs[0].describe() and "1 -> 0" in rs[0].describe()
    assert "poisoned" in rs[1].describe() and "struct core_blob.gone" in repr(rs[1])
    assert rs[1].target_path is None and rs[1].reason


def test_poisoned_ld_imm64_named_by_slot(kernel):
    """A poisoned ld_imm64 becomes two poison calls (same slots, one more
    list item); the verifier stops at the reachable one, and poison_error
    names that relocation, not the dead one."""
    need_raw_tp()
    o = obj("core_kinds")
    fn = o.funcs["unguarded_enum"]
    n = len(fn.insns)
    slots = fn.insns.size if hasattr(fn.insns, "size") else None
    rels = core.relocate_instructions(o.spec, fn.insns, fn.pairs(), program="unguarded_enum")
    poisoned = [r for r in rels if r.poisoned]
    assert len(poisoned) == 2
    assert len(fn.insns) == n + 2
    if slots is not None:
        assert fn.insns.size == slots
    with pytest.raises(VerifierError) as info:
        load_prog(fn)
    assert "unknown#195896080" in info.value.log
    err = core.poison_error(info.value, rels, program="unguarded_enum")
    assert isinstance(err, CORERelocationError)
    assert err.relocation is not None and "PIDTYPE_NOPE" in err.relocation.path
    assert "enum pid_type::PIDTYPE_NOPE" in str(err)
