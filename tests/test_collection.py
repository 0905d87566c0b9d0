"""The ELF loader end to end: objects from testdata/ loaded into the kernel,
their programs run (BPF_PROG_TEST_RUN) or attached, results read back through
maps and variables."""

from __future__ import annotations

import errno
import gc
import os
import shutil
import struct
import subprocess
import uuid

import numpy as np
import pytest

import fastbpf
from fastbpf import asm, btf
from fastbpf.elf import internal_map_name
from fastbpf.linker import read_kconfig

HERE = os.path.dirname(__file__)
TESTDATA = os.path.join(HERE, "..", "testdata")
LOADER = os.path.join(TESTDATA, "loader-el.o")
LOADER_EB = os.path.join(TESTDATA, "loader-eb.o")
PACKET = bytes(64)


def _fds() -> set[int]:
    gc.collect()
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def coll():
    with fastbpf.load_collection(LOADER) as c:
        yield c


def test_spec_describes_the_object():
    spec = fastbpf.load_collection_spec(LOADER)
    assert set(spec.programs) == {"count_packets", "use_subprogs", "tail_target", "do_tail_call",
                                  "tc_externs", "find_task", "on_getppid"}
    assert spec.programs["count_packets"].type == fastbpf.ProgramType.XDP
    assert spec.programs["on_getppid"].type == fastbpf.ProgramType.TRACEPOINT
    assert spec.programs["find_task"].flags & fastbpf.ProgramFlags.SLEEPABLE
    assert spec.programs["tc_externs"].section == "tc"
    counts = spec.maps["counts"]
    assert counts.type == fastbpf.MapType.HASH and counts.max_entries == 64
    assert counts.key_dtype == np.uint32 and counts.value_dtype == np.uint64
    assert spec.maps["pinned_pairs"].pinning == fastbpf.PinType.BY_NAME
    assert spec.maps["outer"].inner.type == fastbpf.MapType.ARRAY
    assert spec.maps["outer"].contents == [(0, "inner_a"), (1, "inner_b")]
    assert spec.maps["jumps"].contents == [(1, "tail_target")]
    ro = spec.maps[".rodata"]
    assert ro.freeze and ro.flags & fastbpf.MapFlags.RDONLY_PROG
    assert spec.variables["verdict"].value == 2
    assert spec.variables["last_len"].value == 7
    assert spec.variables["custom_ro"].value == 22
    pair = spec.variables["pair_var"].value
    assert (pair["a"], pair["b"]) == (1, 2)
    assert spec.programs["count_packets"].license == "GPL"
    insns = spec.programs["count_packets"].instructions
    assert isinstance(insns, asm.Instructions)
    assert insns[0].symbol == "count_packets" and insns[0].meta.func.name == "count_packets"
    assert any(i.meta is not None and i.meta.line is not None for i in insns)
    assert {i.reference for i in insns if i.reference} >= {"counts", ".bss", ".rodata"}


def test_data_map_names_follow_libbpf():
    assert internal_map_name("loader-el", ".rodata") == "loader_e.rodata"
    assert internal_map_name("loader-el", ".bss") == "loader_e.bss"
    assert internal_map_name("x", ".data") == "x.data"
    assert internal_map_name("loader-el", ".rodata.custom") == ".rodata.custom"
    assert internal_map_name("obj", ".data.a-very-long-name") == ".data.a_very_lo"


@pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool is not installed")
def test_map_names_match_bpftool(bpffs_dir):
    # (loader.o pins a map by name, which bpftool would put in /sys/fs/bpf)
    obj = os.path.join(TESTDATA, "many_progs-el.o")
    pins = os.path.join(bpffs_dir, "maps")
    out = subprocess.run(["bpftool", "prog", "loadall", obj, os.path.join(bpffs_dir, "p"),
                          "pinmaps", pins], capture_output=True, text=True)
    try:
        assert out.returncode == 0, out.stderr
        theirs = set()
        for f in os.listdir(pins):
            with fastbpf.Map.from_pin(os.path.join(pins, f)) as m:
                theirs.add(m.info().name)
    finally:
        shutil.rmtree(os.path.join(bpffs_dir, "p"), ignore_errors=True)
        shutil.rmtree(pins, ignore_errors=True)
    with fastbpf.load_collection(obj) as coll:
        ours = {m.info().name for m in coll.maps.values()}
    assert ours == theirs and "many_pro.rodata" in ours


def test_run_counts_through_maps_and_variables(coll):
    prog = coll.programs["count_packets"]
    for _ in range(3):
        assert prog.test_run(PACKET).retval == fastbpf.XDPAction.PASS
    assert coll.maps["counts"][0] == 3
    assert coll.variables["packets"].value == 3
    assert coll.variables["last_len"].value == 64 * 3
    coll.variables["packets"].set(100)           # a live write, seen by the program
    prog.test_run(PACKET)
    assert coll.variables["packets"].value == 101
    assert coll.maps[".bss"].info().name == "loader_e.bss"
    assert coll.maps["pinned_pairs"].value_dtype.names == ("a", "b")


def test_rodata_set_before_load_and_frozen_after():
    spec = fastbpf.load_collection_spec(LOADER)
    spec.variables["verdict"].set(fastbpf.XDPAction.DROP)
    spec.variables["multiplier"].set(5)
    with pytest.raises(ValueError):
        spec.variables["multiplier"].set(-1)
    with spec.load() as c:
        r = c.programs["count_packets"].test_run(PACKET)
        assert r.retval == fastbpf.XDPAction.DROP
        assert c.variables["last_len"].value == 64 * 5
        assert c.variables["verdict"].value == 1
        with pytest.raises(PermissionError):
            c.variables["verdict"].set(2)
    # the file's value is untouched in a fresh spec
    assert fastbpf.load_collection_spec(LOADER).variables["verdict"].value == 2


def test_subprograms_callbacks_weak_and_map_of_maps(coll):
    coll.maps["pinned_pairs"][1] = (3, 4)
    assert coll.programs["use_subprogs"].test_run(PACKET).retval == fastbpf.XDPAction.PASS
    assert coll.variables["loop_sum"].value == 0 + 1 + 2 + 3 + 4   # bpf_loop callback
    assert coll.variables["pair_var"].value["a"] == 7 + 101        # global + __weak
    assert coll.variables["custom_data"].value == 11 + 22           # .data.custom/.rodata.custom
    assert coll.maps["inner_b"][0] == 5                              # outer[1] is inner_b
    assert coll.maps["inner_a"][0] == 0
    assert coll.maps["outer"][0].info().id == coll.maps["inner_a"].info().id


def test_prog_array_static_initialiser(coll):
    r = coll.programs["do_tail_call"].test_run(PACKET)
    assert r.retval == fastbpf.XDPAction.TX
    assert coll.variables["tail_hits"].value == 1


def _kallsyms(name):
    with open("/proc/kallsyms") as f:
        for line in f:
            parts = line.split()
            if parts[2] == name:
                return int(parts[0], 16)
    return None


def test_kconfig_and_ksym_externs(coll):
    r = coll.programs["tc_externs"].test_run(PACKET)
    assert r.retval == 3 * (1 + 2)
    v = coll.variables
    rel = os.uname().release.split("-")[0].split(".")
    want = (int(rel[0]) << 16) | (int(rel[1]) << 8) | min(int(rel[2]) if len(rel) > 2 else 0, 255)
    assert v["kver"].value == want
    assert v["has_cookie"].value == 1
    cfg = read_kconfig()
    if cfg:
        assert v["bpf_syscall"].value == {"y": 1, "m": 2}[cfg["CONFIG_BPF_SYSCALL"]]
        assert v["hz"].value == int(cfg.get("CONFIG_HZ", "0"))
    assert v["not_a_thing"].value == 0                   # __weak and absent
    assert v["schedule_addr"].value == _kallsyms("schedule")
    assert v["CONFIG_FASTBPF_NOT_A_THING"].value == 0


def test_variables_are_made_on_first_use_from_the_load_time_maps():
    """coll.variables is built when first read, from the spec's variables and
    the maps as they were at load: a map detached (or a variable added to the
    spec) before that read changes nothing; after close a read says why."""
    spec = fastbpf.load_collection_spec(LOADER)
    with spec.load() as c:
        assert "variables" not in c.__dict__ and c._variables is None
        data = c.detach_map(".data")
        try:
            spec.variables["not_loaded"] = spec.variables["verdict"]
            assert repr(c).endswith(f"{len(c.variables)} variables>")
            v = c.variables
            assert c.variables is v and "not_loaded" not in v
            assert set(v) == {n for n, vs in spec.variables.items()
                              if vs.section in c.maps or vs.section == ".data"} - {"not_loaded"}
            assert v["last_len"]._map is data and v["last_len"].value == 7
            v["last_len"].set(41)
            assert data[0]["last_len"] == 41
            assert isinstance(v["verdict"], fastbpf.Variable) and v["verdict"].value == 2
        finally:
            data.close()
    with pytest.raises(fastbpf.ClosedError, match="variable 'verdict'"):
        c.variables["verdict"].value
    with spec.load() as c2:
        pass
    with pytest.raises(fastbpf.ClosedError):   # first read after close
        c2.variables["verdict"].value


def test_kfunc_call(coll):
    ctx = struct.pack("<i", os.getpid())
    r = coll.programs["find_task"].test_run(ctx=ctx)
    assert r.retval == 0 and coll.variables["task_found"].value == 1
    r = coll.programs["find_task"].test_run(ctx=struct.pack("<i", 0x7FFFFFF0))
    assert r.retval == 1


def test_auto_attach_tracepoint(coll):
    with coll.programs["on_getppid"].attach():
        for _ in range(5):
            os.getppid()
    assert coll.maps["counts"][9] >= 5
    with pytest.raises(ValueError, match="interface"):
        coll.programs["count_packets"].attach()


def test_func_and_line_info_reach_the_kernel(coll):
    prog = coll.programs["use_subprogs"]
    assert fastbpf._core.prog_info(prog.fd)["btf_id"] == coll.btf.id
    if shutil.which("bpftool"):
        out = subprocess.run(["bpftool", "prog", "dump", "xlated", "id", str(prog.id)],
                             capture_output=True, text=True).stdout
        assert "bpf_loop(5, loop_cb, 0, 0);" in out
        assert "static int loop_cb(__u32 i, void *ctx)" in out or "loop_cb" in out


def test_pin_by_name_reuses_and_checks(bpffs_dir):
    spec = fastbpf.load_collection_spec(LOADER)
    with spec.load(pin_path=bpffs_dir) as a:
        pin = os.path.join(bpffs_dir, "pinned_pairs")
        assert os.path.exists(pin)
        a.maps["pinned_pairs"][2] = (5, 6)
        with spec.load(pin_path=bpffs_dir) as b:
            assert b.maps["pinned_pairs"].info().id == a.maps["pinned_pairs"].info().id
            assert tuple(b.maps["pinned_pairs"][2]) == (5, 6)
    bad = spec.copy()
    bad.maps["pinned_pairs"].max_entries = 8
    before = _fds()
    with pytest.raises(fastbpf.MapIncompatibleError, match="max_entries") as ei:
        bad.load(pin_path=bpffs_dir)
    assert ei.value.fields == {"max_entries": (8, 4)}
    assert _fds() == before
    assert os.listdir(bpffs_dir) == ["pinned_pairs"]


def test_pin_by_name_without_pin_path_pins_nothing(bpffs_dir):
    # libbpf would pin at /sys/fs/bpf/<name>; fastbpf leaves bpffs alone
    # unless given a directory (pin_path, or the map spec's own pin_dir).
    spec = fastbpf.load_collection_spec(LOADER)
    name = "fb" + uuid.uuid4().hex[:12]
    spec.maps["pinned_pairs"].name = name
    default = os.path.join("/sys/fs/bpf", name)
    with spec.load() as c:
        assert not os.path.exists(default)
        assert c.maps["pinned_pairs"].info().name == name
    assert not os.path.exists(default)
    spec.maps["pinned_pairs"].pin_dir = bpffs_dir
    with spec.load() as a:
        assert os.listdir(bpffs_dir) == [name]
        a.maps["pinned_pairs"][1] = (3, 4)
        with spec.load() as b:  # reused, not recreated
            assert b.maps["pinned_pairs"].info().id == a.maps["pinned_pairs"].info().id
    with spec.load(pin_path=bpffs_dir) as c:   # pin_path wins over nothing, reuses too
        assert tuple(c.maps["pinned_pairs"][1]) == (3, 4)
    assert os.listdir(bpffs_dir) == [name]


def test_failed_load_leaves_nothing(bpffs_dir):
    spec = fastbpf.load_collection_spec(LOADER)
    spec.programs["tail_target"].instructions = asm.Instructions([asm.exit()])  # r0 unset
    before = _fds()
    with pytest.raises(fastbpf.VerifierError) as ei:
        spec.load(pin_path=bpffs_dir)
    assert "tail_target" in str(ei.value)
    assert _fds() == before
    assert os.listdir(bpffs_dir) == []


def test_spec_copy_is_independent():
    spec = fastbpf.load_collection_spec(LOADER)
    c = spec.copy()
    c.variables["verdict"].set(1)
    c.maps["counts"].max_entries = 5
    assert spec.variables["verdict"].value == 2 and spec.maps["counts"].max_entries == 64


def test_sources_bytes_and_file_objects():
    with open(LOADER, "rb") as f:
        a = fastbpf.load_collection_spec(f)
    b = fastbpf.load_collection_spec(open(LOADER, "rb").read())
    c = fastbpf.load_collection_spec(bytearray(open(LOADER, "rb").read()), name="x")
    assert set(a.programs) == set(b.programs) == set(c.programs)
    assert b.maps[".rodata"].name == ".rodata" and c.maps[".rodata"].name == "x.rodata"
    with pytest.raises(TypeError):
        fastbpf.load_collection_spec(12)


def test_big_endian_object_parses_but_does_not_load():
    spec = fastbpf.load_collection_spec(LOADER_EB)
    le = fastbpf.load_collection_spec(LOADER)
    assert spec.byte_order == "big"
    assert set(spec.programs) == set(le.programs) and set(spec.maps) == set(le.maps)
    assert spec.variables["verdict"].value == 2 and spec.variables["custom_ro"].value == 22
    assert len(spec.programs["count_packets"].instructions) == \
        len(le.programs["count_packets"].instructions)
    with pytest.raises(fastbpf.ELFError, match="big-endian"):
        spec.load()


@pytest.mark.parametrize("obj", sorted(f for f in os.listdir(TESTDATA) if f.endswith("-eb.o")))
def test_every_big_endian_object_fails_to_load_with_elferror(obj):
    # Never a verifier error about garbage instructions: the byte order is
    # checked before the kernel sees anything, and nothing is left open.
    path = os.path.join(TESTDATA, obj)
    spec = fastbpf.load_collection_spec(path)
    assert spec.byte_order == "big"
    before = _fds()
    for load in (spec.load, lambda: fastbpf.load_collection(path),
                 lambda: fastbpf.load_collection(open(path, "rb").read())):
        with pytest.raises(fastbpf.ELFError, match="big-endian.*little-endian") as ei:
            load()
        assert not isinstance(ei.value, fastbpf.VerifierError)
    assert _fds() == before


def test_legacy_maps_section():
    with fastbpf.load_collection(os.path.join(TESTDATA, "legacy_maps-el.o")) as c:
        assert c.maps["legacy_counts"].info().max_entries == 4
        c.programs["count_socket"].test_run(PACKET)
        once = int(c.maps["legacy_counts"][2].view(np.uint64))
        c.programs["count_socket"].test_run(PACKET)
        assert once > 0 and c.maps["legacy_counts"][2].view(np.uint64) == 2 * once
        assert c.maps["legacy_hash"][2].view(np.uint32) == 2


def test_many_programs_object():
    with fastbpf.load_collection(os.path.join(TESTDATA, "many_progs-el.o")) as c:
        assert len(c.programs) == 16 and len(c.maps) == 13
        c.programs["prog1"].test_run(PACKET)
        assert c.maps["map1"][1] == 1


def test_close_releases_everything():
    before = _fds()
    c = fastbpf.load_collection(LOADER)
    v = c.variables["packets"]
    assert v.value == 0
    c.close()
    c.close()
    assert _fds() == before


def test_errors_on_garbage():
    with pytest.raises(fastbpf.ELFError):
        fastbpf.load_collection_spec(b"")
    with pytest.raises(fastbpf.ELFError):
        fastbpf.load_collection_spec(b"\x7fELF" + bytes(100))
    raw = bytearray(open(LOADER, "rb").read())
    raw[18] = 62  # EM_X86_64
    with pytest.raises(fastbpf.ELFError, match="not BPF"):
        fastbpf.load_collection_spec(bytes(raw))


def test_instruction_metadata_survives_replace_and_is_ignored_by_equality():
    insns = fastbpf.load_collection_spec(LOADER).programs["tail_target"].instructions
    first = insns[0]
    moved = first.replace(dst=first.dst)
    assert moved.meta is first.meta and moved == first
    bare = first.replace(meta=None)
    assert bare == first and hash(bare) == hash(first) and bare.meta is None
    assert insns.resolve()[0].meta is first.meta
    tagged = asm.Mov.imm(asm.R0, 0).with_meta(section="x")
    assert tagged.meta.section == "x" and tagged == asm.Mov.imm(asm.R0, 0)


# Features in the order kernels gained them: a kernel lacking one lacks the later ones.
_BTF_AGES = ["func", "datasec", "func_global", "float", "decl_tag", "type_tag", "enum64"]


@pytest.mark.parametrize("first_missing", range(len(_BTF_AGES) + 1))
@pytest.mark.parametrize("obj", ["loader-el.o", "btf_types-el.o", "many_progs-el.o"])
def test_sanitised_btf_loads_for_older_kernels(obj, first_missing):
    """The BTF rewritten for a kernel without the newer kinds is still valid BTF."""
    from fastbpf.elf.btffix import sanitize
    spec = fastbpf.load_collection_spec(os.path.join(TESTDATA, obj))
    missing = frozenset(_BTF_AGES[first_missing:])
    blob = sanitize(spec.btf, spec.btf_blob, missing)
    fastbpf._core.btf_load(blob).close()
    kinds = {t.kind for t in btf.Spec.parse(blob)}
    if "func" in missing:
        assert btf.Kind.FUNC not in kinds and btf.Kind.FUNC_PROTO not in kinds
    if "datasec" in missing:
        assert btf.Kind.DATASEC not in kinds and btf.Kind.VAR not in kinds
    if "enum64" in missing:
        assert btf.Kind.ENUM64 not in kinds


@pytest.mark.parametrize("obj", sorted(f for f in os.listdir(TESTDATA) if f.endswith("-el.o")))
def test_sanitize_skips_only_blobs_it_would_not_change(obj):
    """With nothing missing, sanitize hands back the very blob when the full
    rewrite would give the same bytes, and rewrites everything else; the C
    check and its numpy twin agree."""
    from fastbpf.elf import btffix
    spec = fastbpf.load_collection_spec(os.path.join(TESTDATA, obj))
    if spec.btf is None or spec.btf_blob is None:
        pytest.skip(f"{obj} has no BTF")
    s, blob = spec.btf, spec.btf_blob
    full = btffix._sanitize(s, blob, frozenset())
    got = btffix.sanitize(s, blob, frozenset())
    assert got == full
    skipped = btffix._nothing_to_fix(s, blob)
    assert skipped == (got is blob)
    args = (s._words, s._offs, s._kinds, blob, s._str_start, s._str_len)
    py = btffix.needs_sanitize_py(*args)
    if btffix._needs_sanitize_c is not None:
        assert btffix._needs_sanitize_c(*args) == py
    # Externs (ksyms.o, loader.o's .kconfig/.ksyms) are rewritten; an object
    # without them comes back untouched.
    assert py == (full != blob)
    if obj == "many_progs-el.o":
        assert skipped
    if obj == "ksyms-el.o":
        assert not skipped


def test_sanitize_check_sees_each_extern_kind():
    """An extern VAR, an extern FUNC and a .ksyms DATASEC each make the check
    say "rewrite", in C and in numpy, and the rewrite then changes the blob."""
    from fastbpf.elf import btffix
    i32 = btf.Int("int", 4, btf.IntEncoding.SIGNED)
    proto = btf.FuncProto(i32, [btf.Param("x", i32)])
    cases = {
        "plain": [btf.Var("v", i32, btf.Linkage.GLOBAL),
                  btf.Func("f", proto, btf.Linkage.GLOBAL)],
        "extern var": [btf.Var("v", i32, btf.Linkage.EXTERN)],
        "extern func": [btf.Func("f", proto, btf.Linkage.EXTERN)],
    }
    ksym = btf.Var("k", i32, btf.Linkage.GLOBAL)
    cases["ksyms"] = [btf.Datasec(".ksyms", 4, [btf.VarSecinfo(ksym, 0, 4)])]
    for what, roots in cases.items():
        blob = btf.Spec.from_types(roots).encode()
        s = btf.Spec.parse(blob)
        args = (s._words, s._offs, s._kinds, blob, s._str_start, s._str_len)
        want = what != "plain"
        assert btffix.needs_sanitize_py(*args) is want, what
        if btffix._needs_sanitize_c is not None:
            assert btffix._needs_sanitize_c(*args) is want, what
        out = btffix.sanitize(s, blob, frozenset())
        assert (out is blob) is (not want), what
        assert out == btffix._sanitize(s, blob, frozenset()), what


def test_btf_feature_probes():
    from fastbpf import features
    for name in _BTF_AGES:
        p = features.probe_btf_feature(name)
        assert p.ok or p.errno, p
    assert features.missing_btf_features() == frozenset(
        n for n in _BTF_AGES if not features.probe_btf_feature(n).ok)


@pytest.mark.parametrize("obj", ["loader-el.o", "many_progs-el.o", "legacy_maps-el.o"])
def test_fast_path_links_what_the_instructions_path_links(obj):
    """The raw fast path and decode + link_program + resolve + encode agree."""
    from fastbpf._linkraw import link_raw
    from fastbpf.linker import link_program, resolve_externs
    from fastbpf.programs import ext_info_records

    class FakeMap:
        def __init__(self, fd):
            self.fd = fd

    path = os.path.join(TESTDATA, obj)
    fast_spec = fastbpf.load_collection_spec(path)
    slow_spec = fastbpf.load_collection_spec(path)
    maps = {name: FakeMap(100 + i) for i, name in enumerate(fast_spec.maps)}
    for name, ps in fast_spec.programs.items():
        raw, func_info, line_info, _ = link_raw(fast_spec, ps, maps, {})
        insns = link_program(slow_spec.programs[name].instructions, slow_spec.functions)
        insns, _ = resolve_externs(insns, slow_spec.ksyms, {})
        insns = insns.resolve_maps(maps)
        assert raw == insns.encode(), name
        fi, li = ext_info_records(insns, slow_spec.btf)
        assert func_info == (fi or b"") and line_info == (li or b""), name


def test_struct_ops_section_registers_a_congestion_control(unique_name):
    from fastbpf import link
    spec = fastbpf.load_collection_spec(os.path.join(TESTDATA, "struct_ops-el.o"))
    assert spec.struct_ops == {"fb_cc": "tcp_congestion_ops"}
    values = spec.maps["fb_cc"].contents[0][1]
    assert values == {"ssthresh": "fb_ssthresh", "cong_avoid": "fb_cong_avoid",
                      "undo_cwnd": "fb_undo_cwnd", "name": b"fb_elf_cc"}
    assert spec.maps["fb_cc"].flags & fastbpf.MapFlags.LINK
    values["name"] = unique_name.encode()          # CC names are machine-wide
    avail = "/proc/sys/net/ipv4/tcp_available_congestion_control"
    before = _fds()
    with spec.load() as coll:
        assert coll.programs["fb_ssthresh"].type == fastbpf.ProgramType.STRUCT_OPS
        with link.attach_struct_ops(coll.maps["fb_cc"]):
            assert unique_name in open(avail).read().split()
        assert unique_name not in open(avail).read().split()
    assert _fds() == before


def test_unknown_section_opens_and_loads_once_typed():
    raw = bytearray(open(os.path.join(TESTDATA, "legacy_maps-el.o"), "rb").read())
    # Rename section "socket" to "elsocket" (a tail of ".relsocket" in the name table).
    from fastbpf.elf import ELFFile
    elf = ELFFile(bytes(raw))
    i = elf.names.index("socket")
    strtab_off = int(elf.sections["offset"][int(elf.sections["link"][
        elf.names.index(".symtab")])])
    name_off = bytes(raw).find(b".relsocket\0", strtab_off) - strtab_off + 2
    shoff = int.from_bytes(raw[0x28:0x30], "little")
    raw[shoff + 64 * i:shoff + 64 * i + 4] = name_off.to_bytes(4, "little")
    spec = fastbpf.load_collection_spec(bytes(raw))
    assert spec.programs["count_socket"].type == fastbpf.ProgramType.UNSPEC
    before = _fds()
    with pytest.raises(fastbpf.ELFError, match="set spec.programs"):
        spec.load()
    assert _fds() == before
    spec.programs["count_socket"].type = fastbpf.ProgramType.SOCKET_FILTER
    with spec.load() as c:
        assert c.programs["count_socket"].test_run(PACKET).retval == 0


def test_auto_attach_xdp_counts_real_packets():
    """count_packets from the object, attached by section name to a veth."""
    import sys
    sys.path.insert(0, HERE)
    import netutil
    with netutil.VethPair() as vp, fastbpf.load_collection(LOADER) as coll:
        prog = coll.programs["count_packets"]
        with vp.b.run(prog.attach, vp.IF_B, mode="generic"):
            rx = netutil.udp_receiver(vp.b, vp.IP_B, 9998)
            try:
                netutil.send_udp(vp.a, (vp.IP_B, 9998), 7, b"y" * 32)
                got = netutil.drain(rx)
            finally:
                rx.close()
        assert len(got) == 7                          # XDP_PASS from .rodata
        assert coll.variables["packets"].value == 7
        assert coll.maps["counts"][0] == 7


def _in_kallsyms(name: str) -> bool:
    return _kallsyms(name) is not None


def test_typed_ksym_resolves_to_its_btf_id():
    from fastbpf.linker import link_program, resolve_externs
    spec = fastbpf.load_collection_spec(os.path.join(TESTDATA, "ksyms-el.o"))
    assert spec.ksyms == {"bpf_prog_active": ("ksym", False, True)}
    insns = link_program(spec.programs["read_typed_ksym"].instructions, spec.functions)
    insns, fd_array = resolve_externs(insns, spec.ksyms, {})
    want = btf.load_kernel_spec().type_by_name("bpf_prog_active", btf.Kind.VAR).id
    loads = [i for i in insns if i.opcode == asm.LD_IMM64 and i.src == asm.PSEUDO_BTF_ID]
    assert len(loads) == 1 and loads[0].constant == want and fd_array is None
    before = _fds()
    if _in_kallsyms("bpf_prog_active"):
        with spec.load() as c:
            c.programs["read_typed_ksym"].test_run(PACKET)
            assert c.variables["active_plus_one"].value >= 1
    else:
        # No CONFIG_KALLSYMS_ALL: the kernel cannot find the address (libbpf
        # fails the same way); the verifier log says so, nothing leaks.
        with pytest.raises(fastbpf.BPFError, match="read_typed_ksym") as ei:
            spec.load()
        assert ei.value.errno == errno.ENOENT
        assert "bpf_prog_active" in getattr(ei.value, "log", "")
    assert _fds() == before


def test_inner_map_named_symbolically():
    spec = fastbpf.load_collection_spec(LOADER)
    spec.maps["outer"].inner = "inner_a"           # a name, resolved by the collection
    with spec.load() as c:
        c.programs["use_subprogs"].test_run(PACKET)
        assert c.maps["inner_b"][0] == 5
    with pytest.raises(ValueError, match="collection"):
        fastbpf.Map.create(spec.maps["outer"])


def test_core_relocations_applied_at_load():
    spec = fastbpf.load_collection_spec(os.path.join(TESTDATA, "core_globals-el.o"))
    results = spec.programs["on_enter"].core_relocations()
    kernel = btf.load_kernel_spec()
    tgid = kernel.type_by_name("task_struct", btf.Kind.STRUCT).member("tgid")
    byte_off = [r for r in results if r.kind == btf.CoreReloKind.FIELD_BYTE_OFFSET]
    assert byte_off and byte_off[0].target_value == tgid.bit_offset // 8
    with spec.load() as coll:
        with coll.programs["on_enter"].attach():     # raw_tp/sys_enter
            for _ in range(20):
                os.getppid()
        assert coll.variables["counter"].value > 0  # read_pid() ran: relocated reads worked
        xlated = fastbpf._core.prog_xlated_insns(coll.programs["on_enter"].fd)
        imms = {int.from_bytes(xlated[i + 4:i + 8], "little", signed=True)
                for i in range(0, len(xlated), 8)}
        assert tgid.bit_offset // 8 in imms


def test_core_objects_of_the_core_tests_load():
    """btf.core's own test objects, through the loader: 18 programs relocate
    and verify; the unguarded one fails naming its relocation, leaking nothing."""
    spec = fastbpf.load_collection_spec(os.path.join(TESTDATA, "core_kinds-el.o"))
    bad = spec.copy()
    for name in list(spec.programs):
        if name.startswith("unguarded"):
            del spec.programs[name]
        elif name != "unguarded":
            del bad.programs[name]
    with spec.load() as coll:
        assert len(coll.programs) == len(spec.programs) >= 10
    before = _fds()
    with pytest.raises(fastbpf.BPFError) as ei:
        bad.load()
    assert type(ei.value).__name__ == "CORERelocationError"
    assert "not_in_any_kernel" in str(ei.value) and "unguarded" in str(ei.value)
    assert _fds() == before
