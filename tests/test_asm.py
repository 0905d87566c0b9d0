"""Tests of fastbpf.asm: encodings, round trips, labels, maps, text, errors.

None of these needs the kernel. The optional oracle test assembles the same
instructions with llvm-mc (when installed) and compares the bytes.

One file past 700 lines: the instruction set is one table, and its tests
(every form, both byte orders, the llvm oracle) read best side by side.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import struct
import subprocess

import pytest

from fastbpf import asm
from fastbpf.asm import (
    R0, R1, R2, R3, R4, R6, R9, R10, RFP, Helper, Instruction, Instructions, Size,
)

import elfutil
from elfutil import TESTDATA

pytestmark = pytest.mark.noroot
BYTEORDERS = ["little", "big"]


class FakeMap:
    """Anything with an ``.fd`` stands for a Map."""

    def __init__(self, fd, name="fake"):
        self.fd = fd
        self.name = name


# Every instruction form the builders make, with numeric targets so that each
# encodes on its own. (id, instruction)
_ALU_OPS = ["Add", "Sub", "Mul", "Div", "SDiv", "Or", "And", "Lsh", "Rsh", "Mod", "SMod",
            "Xor", "Mov", "Arsh"]
_JMP_OPS = ["JEq", "JNE", "JGT", "JGE", "JLT", "JLE", "JSGT", "JSGE", "JSLT", "JSLE", "JSet"]


def _forms():
    forms = []
    for name in _ALU_OPS:
        for suffix in ("", "32"):
            op = getattr(asm, name + suffix)
            forms.append((f"{name}{suffix}.imm", op.imm(R3, 7)))
            forms.append((f"{name}{suffix}.imm-neg", op.imm(R3, -7) if name not in (
                "Lsh", "Rsh", "Arsh") else op.imm(R3, 1)))
            forms.append((f"{name}{suffix}.reg", op.reg(R3, R9)))
    forms += [
        ("Neg", asm.Neg(R4)), ("Neg32", asm.Neg32(R4)),
        ("Mov32.imm-u32", asm.Mov32.imm(R1, 0xFFFFFFFF)),
        ("movsx8", asm.movsx(R1, R2, 8)), ("movsx16", asm.movsx(R1, R2, 16)),
        ("movsx32", asm.movsx(R1, R2, 32)), ("movsx32-8", asm.movsx32(R1, R2, 8)),
        ("movsx32-16", asm.movsx32(R1, R2, 16)),
        ("to_le16", asm.to_le(R1, 16)), ("to_le32", asm.to_le(R1, 32)),
        ("to_le64", asm.to_le(R1, 64)), ("to_be16", asm.to_be(R1, 16)),
        ("to_be32", asm.to_be(R1, 32)), ("to_be64", asm.to_be(R1, 64)),
        ("bswap16", asm.bswap(R1, 16)), ("bswap32", asm.bswap(R1, 32)),
        ("bswap64", asm.bswap(R1, 64)),
        ("addr_space_cast", asm.addr_space_cast(R1, R2, 0, 1)),
    ]
    for name in _JMP_OPS:
        for suffix in ("", "32"):
            op = getattr(asm, name + suffix)
            forms.append((f"{name}{suffix}.imm", op.imm(R1, -3, 5)))
            forms.append((f"{name}{suffix}.reg", op.reg(R1, R2, -5)))
    forms += [
        ("ja", asm.ja(12)), ("ja-back", asm.ja(-12)),
        ("gotol", asm.gotol(100000)), ("gotol-back", asm.gotol(-100000)),
        ("may_goto", asm.may_goto(3)),
        ("call", asm.call(Helper.map_lookup_elem)),
        ("call-int", asm.call(211)),
        ("call_func", asm.call_func(10)), ("call_func-back", asm.call_func(-10)),
        ("call_kfunc", asm.call_kfunc(12345)), ("call_kfunc-mod", asm.call_kfunc(777, 2)),
        ("exit", asm.exit()),
    ]
    for size in Size:
        forms += [
            (f"load_mem-{size.name}", asm.load_mem(R0, R1, -16, size)),
            (f"store_mem-{size.name}", asm.store_mem(R10, -8, R1, size)),
            (f"store_imm-{size.name}", asm.store_imm(R10, -8, -2, size)),
            (f"load_acquire-{size.name}", asm.load_acquire(R0, R1, 8, size)),
            (f"store_release-{size.name}", asm.store_release(R1, 8, R2, size)),
        ]
    for size in (Size.B, Size.H, Size.W):
        forms += [
            (f"load_mem_sx-{size.name}", asm.load_mem_sx(R0, R1, 4, size)),
            (f"load_abs-{size.name}", asm.load_abs(14, size)),
            (f"load_ind-{size.name}", asm.load_ind(R6, 2, size)),
        ]
    for size in (Size.W, Size.DW):
        for name in ("add", "or", "and", "xor"):
            fn = getattr(asm, f"atomic_{name}")
            forms.append((f"atomic_{name}-{size.name}", fn(R1, 4, R2, size)))
            forms.append((f"atomic_fetch_{name}-{size.name}", fn(R1, 4, R2, size, fetch=True)))
        forms.append((f"atomic_xchg-{size.name}", asm.atomic_xchg(R1, 0, R2, size)))
        forms.append((f"atomic_cmpxchg-{size.name}", asm.atomic_cmpxchg(R1, 0, R2, size)))
    forms += [
        ("load_imm64", asm.load_imm64(R1, 0x0123456789ABCDEF)),
        ("load_imm64-neg", asm.load_imm64(R1, -2)),
        ("load_imm64-u64", asm.load_imm64(R1, 0xFFFFFFFF00000001)),
        ("load_imm64-hi-bit31", asm.load_imm64(R1, 0x80000000_80000000)),
        ("load_map_ptr-fd", asm.load_map_ptr(R1, 5)),
        ("load_map_value-fd", asm.load_map_value(R1, 5, 24)),
        ("load_btf_id", asm.load_btf_id(R1, 4242)),
        ("load_func_ptr", asm.load_func_ptr(R1, 7)),
        ("load_func_ptr-back", asm.load_func_ptr(R1, -7)),
        ("load_map_idx", asm.load_map_idx(R1, 3)),
        ("load_map_idx_value", asm.load_map_idx_value(R1, 3, 16)),
    ]
    return forms


FORMS = _forms()


@pytest.mark.parametrize("byteorder", BYTEORDERS)
@pytest.mark.parametrize("insn", [f[1] for f in FORMS], ids=[f[0] for f in FORMS])
def test_roundtrip_every_form(insn, byteorder):
    raw = insn.encode(byteorder)
    assert len(raw) == insn.size
    back = Instruction.decode(raw, byteorder)
    assert back == insn
    assert back.encode(byteorder) == raw
    # The program path agrees with the single-instruction path.
    prog = Instructions([insn, asm.exit()])
    assert prog.encode(byteorder) == raw + asm.exit().encode(byteorder)
    assert Instructions.decode(prog.encode(byteorder), byteorder) == prog
    # Every form has text, and none of it is the fallback for unknown opcodes.
    assert str(insn) and "invalid" not in str(insn)


def test_forms_cover_every_opcode_kind():
    opcodes = {insn.opcode for _, insn in FORMS}
    # 12 binary ALU ops (sdiv/smod share div/mod's opcode) x 2 sources x 2
    # classes, + neg x 2, + end (le, be, bswap)
    alu = {o for o in opcodes if o & 7 in (asm.Class.ALU, asm.Class.ALU64)}
    assert len(alu) == 12 * 2 * 2 + 2 + 3
    jmp = {o for o in opcodes if o & 7 in (asm.Class.JMP, asm.Class.JMP32)}
    assert len(jmp) == 11 * 2 * 2 + 5  # + ja, gotol, may_goto, call, exit


def test_whole_program_roundtrip_both_byteorders():
    prog = Instructions(insn for _, insn in FORMS)
    for byteorder in BYTEORDERS:
        raw = prog.encode(byteorder)
        assert len(raw) == prog.size
        assert Instructions.decode(raw, byteorder) == prog
    assert prog.encode("little") != prog.encode("big")


# -- known encodings, computed by hand from the ISA document -----------------

def _le(code, dst, src, off, imm):
    return struct.pack("<BBhi", code, src << 4 | dst, off, imm)


def _be(code, dst, src, off, imm):
    return struct.pack(">BBhi", code, dst << 4 | src, off, imm)


KNOWN = [
    # mov64 r0, 0: ALU64 | MOV | K
    (asm.Mov.imm(R0, 0), bytes.fromhex("b700000000000000")),
    (asm.exit(), bytes.fromhex("9500000000000000")),
    (asm.Add.reg(R1, R2), bytes.fromhex("0f21000000000000")),
    (asm.Mov32.reg(R1, R2), bytes.fromhex("bc21000000000000")),
    (asm.load_mem(R0, R1, 4, Size.W), bytes.fromhex("6110040000000000")),
    (asm.store_mem(R10, -8, R1, Size.DW), bytes.fromhex("7b1af8ff00000000")),
    (asm.JEq.imm(R1, 0, 3), bytes.fromhex("1501030000000000")),
    (asm.call(Helper.map_lookup_elem), bytes.fromhex("8500000001000000")),
    (asm.Add.imm(R1, -4), bytes.fromhex("07010000fcffffff")),
    (asm.atomic_add(R1, 0, R2, Size.DW), bytes.fromhex("db21000000000000")),
    (asm.load_acquire(R0, R1, 0, Size.DW), bytes.fromhex("db10000000010000")),
    (asm.store_release(R1, 0, R2, Size.H), bytes.fromhex("cb21000010010000")),
    (asm.call_func(-3), bytes.fromhex("85100000fdffffff")),
    (asm.load_imm64(R1, 0x0123456789ABCDEF),
     bytes.fromhex("18010000efcdab89" "0000000067452301")),
    (asm.load_map_ptr(R1, 5), bytes.fromhex("1811000005000000" "0000000000000000")),
    (asm.load_map_value(R2, 6, 8), bytes.fromhex("1822000006000000" "0000000008000000")),
]


@pytest.mark.parametrize("insn,raw", KNOWN, ids=[str(k[0]) for k in KNOWN])
def test_known_little_endian_bytes(insn, raw):
    assert insn.encode() == raw
    assert Instruction.decode(raw) == insn


def test_known_big_endian_bytes():
    # In big-endian BPF dst is the high nibble of the regs byte.
    assert asm.Mov.reg(R1, R2).encode("big") == _be(0xBF, 1, 2, 0, 0)
    assert asm.Mov.reg(R1, R2).encode("big") == bytes.fromhex("bf12000000000000")
    assert asm.store_mem(R10, -8, R1, Size.DW).encode("big") == bytes.fromhex("7ba1fff800000000")
    assert asm.call(1).encode("big") == bytes.fromhex("8500000000000001")
    assert asm.load_imm64(R1, 0x0123456789ABCDEF).encode("big") == bytes.fromhex(
        "1810000089abcdef" "0000000001234567")
    assert asm.Mov.reg(R1, R2).encode("little") == _le(0xBF, 1, 2, 0, 0)


def test_ld_imm64_is_one_instruction_of_16_bytes():
    insn = asm.load_imm64(R1, 1 << 40)
    assert insn.size == 16 and insn.slots == 2 and insn.is_ld_imm64
    prog = Instructions([insn, asm.exit()])
    assert len(prog) == 2 and prog.size == 24
    assert prog.slot_offsets() == [0, 2]
    back = Instructions.decode(prog.encode())
    assert len(back) == 2 and back[0].constant == 1 << 40


def test_constants_are_stored_canonically():
    assert asm.Mov32.imm(R1, 0xFFFFFFFF).constant == -1
    assert asm.load_imm64(R1, 0xFFFFFFFFFFFFFFFF).constant == -1
    assert asm.load_imm64(R1, -1) == asm.load_imm64(R1, 0xFFFFFFFFFFFFFFFF)
    assert Instruction(0xB7, 1, 0, 0, 0xFFFFFFFF).constant == -1


@pytest.mark.skipif(not shutil.which("llvm-mc-19"), reason="llvm-mc-19 not installed")
@pytest.mark.parametrize("byteorder", BYTEORDERS)
def test_encodings_match_llvm(tmp_path, byteorder):
    pairs = [
        ("r0 = 0", asm.Mov.imm(R0, 0)),
        ("r1 += r2", asm.Add.reg(R1, R2)),
        ("w1 = w2", asm.Mov32.reg(R1, R2)),
        ("w3 -= 5", asm.Sub32.imm(R3, 5)),
        ("r1 s/= r2", asm.SDiv.reg(R1, R2)),
        ("w1 s%= 3", asm.SMod32.imm(R1, 3)),
        ("r1 s>>= 3", asm.Arsh.imm(R1, 3)),
        ("r1 = -r1", asm.Neg(R1)),
        ("r1 = (s16)r2", asm.movsx(R1, R2, 16)),
        ("w1 = (s8)w2", asm.movsx32(R1, R2, 8)),
        ("r1 = bswap32 r1", asm.bswap(R1, 32)),
        ("r1 = be16 r1", asm.to_be(R1, 16)),
        ("r1 = le64 r1", asm.to_le(R1, 64)),
        ("r0 = *(u32 *)(r1 + 4)", asm.load_mem(R0, R1, 4, Size.W)),
        ("r0 = *(s16 *)(r1 + 2)", asm.load_mem_sx(R0, R1, 2, Size.H)),
        ("*(u64 *)(r10 - 8) = r1", asm.store_mem(R10, -8, R1, Size.DW)),
        ("*(u8 *)(r10 - 1) = 7", asm.store_imm(R10, -1, 7, Size.B)),
        ("if r1 == 0 goto +3", asm.JEq.imm(R1, 0, 3)),
        ("if w1 s< w2 goto -2", asm.JSLT32.reg(R1, R2, -2)),
        ("if r1 & 8 goto +1", asm.JSet.imm(R1, 8, 1)),
        ("goto +4", asm.ja(4)),
        ("gotol +5", asm.gotol(5)),
        ("may_goto +3", asm.may_goto(3)),
        ("call 1", asm.call(1)),
        ("exit", asm.exit()),
        ("lock *(u64 *)(r1 + 0) += r2", asm.atomic_add(R1, 0, R2, Size.DW)),
        ("lock *(u32 *)(r1 + 4) ^= w2", asm.atomic_xor(R1, 4, R2, Size.W)),
        ("r2 = atomic_fetch_or((u64 *)(r1 + 0), r2)",
         asm.atomic_or(R1, 0, R2, Size.DW, fetch=True)),
        ("r2 = xchg_64(r1 + 8, r2)", asm.atomic_xchg(R1, 8, R2, Size.DW)),
        ("w0 = cmpxchg32_32(r1 + 0, w0, w2)", asm.atomic_cmpxchg(R1, 0, R2, Size.W)),
        ("r0 = *(u8 *)skb[12]", asm.load_abs(12, Size.B)),
        ("r0 = *(u16 *)skb[r6]", asm.load_ind(R6, 0, Size.H)),
        ("r1 = 0x123456789abcdef ll", asm.load_imm64(R1, 0x123456789ABCDEF)),
    ]
    src = tmp_path / "t.s"
    obj = tmp_path / "t.o"
    src.write_text("\n".join(text for text, _ in pairs) + "\n")
    triple = "bpfel" if byteorder == "little" else "bpfeb"
    subprocess.run(["llvm-mc-19", "-triple", triple, "-mcpu=v4", "-filetype=obj",
                    str(src), "-o", str(obj)], check=True, capture_output=True)
    text = _elf_section(obj.read_bytes(), ".text")
    ours = Instructions(insn for _, insn in pairs).encode(byteorder)
    assert ours == text
    assert Instructions.decode(text, byteorder) == Instructions(insn for _, insn in pairs)


_elf_section = elfutil.section


# -- decoding real programs ---------------------------------------------------

@pytest.mark.parametrize("suffix,byteorder", [("el", "little"), ("eb", "big")])
def test_decode_clang_objects(suffix, byteorder):
    path = os.path.join(TESTDATA, f"core_globals-{suffix}.o")
    if not os.path.exists(path):
        pytest.skip("testdata/core_globals objects not built")
    data = open(path, "rb").read()
    for section in (".text", "raw_tp/sys_enter"):
        raw = _elf_section(data, section)
        prog = Instructions.decode(raw, byteorder)
        assert prog.encode(byteorder) == raw
        assert prog.size == len(raw)
        labelled = prog.label_targets()
        assert labelled == Instructions.decode(raw, byteorder, labels=True)
        assert labelled.encode(byteorder) == raw
        # The listing shows every instruction once, and every jump names a
        # label that the listing defines.
        lines = str(labelled).splitlines()
        defined = {ln[:-1] for ln in lines if ln.endswith(":") and not ln.startswith(" ")}
        used = set(re.findall(r"<(\w+)>", str(labelled)))
        assert used <= defined, (used, defined)
        assert bool(used) == (section == "raw_tp/sys_enter")  # .text has no jumps
        assert sum(1 for ln in lines if ln.startswith(" ")) == len(labelled)


def test_decode_same_program_both_endians():
    el = os.path.join(TESTDATA, "core_globals-el.o")
    eb = os.path.join(TESTDATA, "core_globals-eb.o")
    if not (os.path.exists(el) and os.path.exists(eb)):
        pytest.skip("testdata/core_globals objects not built")
    a = Instructions.decode(_elf_section(open(el, "rb").read(), "raw_tp/sys_enter"), "little")
    b = Instructions.decode(_elf_section(open(eb, "rb").read(), "raw_tp/sys_enter"), "big")
    assert a == b


def test_decode_accepts_buffers():
    raw = Instructions([asm.Mov.imm(R0, 3), asm.exit()]).encode()
    assert Instructions.decode(bytearray(raw)) == Instructions.decode(memoryview(raw))
    np = pytest.importorskip("numpy")
    assert Instructions.decode(np.frombuffer(raw, dtype=np.uint64))[0].constant == 3


def test_label_targets_names_functions_and_jumps():
    prog = Instructions([
        asm.call_func(2),           # -> slot 3
        asm.JEq.imm(R0, 0, 0),      # -> slot 2
        asm.exit(),
        asm.Mov.imm(R0, 1),
        asm.exit(),
    ])
    labelled = prog.label_targets()
    assert labelled[3].symbol == "func_3" and labelled[0].reference == "func_3"
    assert labelled[2].symbol == "L2" and labelled[1].reference == "L2"
    assert labelled.encode() == prog.encode()
    with pytest.raises(ValueError, match="slot 99"):
        Instructions([asm.ja(98), asm.exit()]).label_targets()


# -- labels -------------------------------------------------------------------

def test_forward_and_backward_jumps():
    prog = Instructions([
        asm.Mov.imm(R0, 0).with_symbol("top"),      # slot 0
        asm.JGT.imm(R0, 10, "out"),                 # slot 1
        asm.Add.imm(R0, 1),                         # slot 2
        asm.ja("top"),                              # slot 3
        asm.exit().with_symbol("out"),              # slot 4
    ])
    resolved = prog.resolve()
    assert resolved[1].offset == 2      # 4 - 1 - 1
    assert resolved[3].offset == -4     # 0 - 3 - 1
    assert resolved[1].reference == "out"  # kept for re-resolution
    assert prog[1].offset == 0             # resolve() does not mutate
    raw = prog.encode()
    assert raw == resolved.encode()
    assert Instructions.decode(raw)[3].offset == -4


def test_ld_imm64_counts_two_slots():
    prog = Instructions([
        asm.JEq.imm(R1, 0, "end"),          # slot 0
        asm.load_imm64(R2, 1 << 33),        # slots 1-2
        asm.load_map_ptr(R3, 9),            # slots 3-4
        asm.Mov.imm(R0, 0),                 # slot 5
        asm.exit().with_symbol("end"),      # slot 6
    ])
    assert prog.resolve()[0].offset == 5
    back = Instructions([
        asm.load_imm64(R2, 1).with_symbol("start"),  # slots 0-1
        asm.ja("start"),                             # slot 2
    ])
    assert back.resolve()[1].offset == -3


def test_bpf_to_bpf_calls_and_func_pointers():
    prog = Instructions([
        asm.Mov.imm(R1, 1).with_symbol("main"),    # 0
        asm.call_func("double"),                   # 1
        asm.load_func_ptr(R2, "double"),           # 2-3
        asm.gotol("main_out"),                     # 4
        asm.exit().with_symbol("main_out"),        # 5
        asm.Mov.reg(R0, R1).with_symbol("double"),  # 6
        asm.Add.reg(R0, R0),                       # 7
        asm.call_func("double"),                   # 8 (recursion, backwards)
        asm.exit(),                                # 9
    ])
    r = prog.resolve()
    assert r[1].constant == 4          # 6 - 1 - 1
    assert r[2].constant == 3          # 6 - 2 - 1: relative to the slot after the first half
    assert r[3].constant == 0          # gotol: 5 - 4 - 1, in the immediate
    assert r[7].constant == -3         # 6 - 8 - 1
    raw = prog.encode()
    # The func pointer's second half stays zero even for backward targets.
    back = Instructions([asm.exit().with_symbol("f"), asm.load_func_ptr(R1, "f")]).encode()
    assert back[8:] == asm.load_func_ptr(R1, -2).encode()
    assert back[16:24] == bytes(8)
    assert Instructions.decode(raw) == Instructions(
        i.replace(symbol=None, reference=None) for i in r)


def test_re_resolution_after_edit():
    prog = Instructions([asm.JEq.imm(R1, 0, "x"), asm.Mov.imm(R0, 1),
                         asm.exit().with_symbol("x")]).resolve()
    assert prog[0].offset == 1
    prog.insert(1, asm.Mov.imm(R0, 2))
    assert prog.resolve()[0].offset == 2


def test_unresolved_label_is_named():
    prog = Instructions([asm.JEq.imm(R1, 0, "nowhere"), asm.exit()])
    with pytest.raises(ValueError, match="'nowhere'"):
        prog.encode()
    with pytest.raises(ValueError, match="'helper'"):
        Instructions([asm.call_func("helper"), asm.exit()]).encode()


def test_duplicate_label():
    prog = Instructions([asm.ja("a"), asm.exit().with_symbol("a"), asm.exit().with_symbol("a")])
    with pytest.raises(ValueError, match="'a'.*unique"):
        prog.encode()


def test_jump_out_of_range_after_resolution():
    far = Instructions([asm.JEq.imm(R1, 0, "far")]
                       + [asm.Mov.imm(R0, 0)] * 40000
                       + [asm.exit().with_symbol("far")])
    with pytest.raises(ValueError, match="16-bit jump offset.*gotol"):
        far.encode()
    ok = Instructions([asm.gotol("far")] + [asm.Mov.imm(R0, 0)] * 40000
                      + [asm.exit().with_symbol("far")])
    assert Instructions.decode(ok.encode())[0].constant == 40000


def test_reference_on_wrong_instruction():
    prog = Instructions([asm.Mov.imm(R0, 0).with_reference("x"), asm.exit()])
    with pytest.raises(ValueError, match="only jumps, calls and map loads"):
        prog.encode()


# -- maps ---------------------------------------------------------------------

def test_map_by_name_resolve_maps():
    prog = Instructions([
        asm.load_map_ptr(R1, "events"),
        asm.load_map_value(R2, "globals", 16),
        asm.Mov.imm(R0, 0),
        asm.exit(),
    ])
    assert prog[0].reference == "events" and prog[0].reference_kind == "map"
    with pytest.raises(ValueError, match="'events'.*resolve_maps"):
        prog.encode()
    partial = prog.resolve_maps({"events": 7})
    with pytest.raises(ValueError, match="'globals'"):
        partial.encode()
    globals_map = FakeMap(11, "globals")
    done = partial.resolve_maps({"globals": globals_map})
    assert prog[0].map is None  # original untouched
    raw = done.encode()
    back = Instructions.decode(raw)
    assert back[0].src == asm.PSEUDO_MAP_FD and back[0].constant == 7
    assert back[1].src == asm.PSEUDO_MAP_VALUE and back[1].constant == (16 << 32) | 11
    # Objects are read at encode time: a re-created map gets its new fd.
    globals_map.fd = 12
    assert Instructions.decode(done.encode())[1].constant == (16 << 32) | 12
    assert "map[globals][0]+16" in str(done)


def test_map_by_object_and_fd():
    m = FakeMap(42, "counts")
    insn = asm.load_map_ptr(R1, m)
    assert Instruction.decode(insn.encode()).constant == 42
    assert str(insn) == "r1 = map[counts]"
    assert asm.load_map_ptr(R1, 5) == Instruction(0x18, 1, 1, 0, 5)
    closed = FakeMap(-1)
    with pytest.raises(ValueError, match="not a valid file descriptor"):
        asm.load_map_ptr(R1, closed).encode()
    with pytest.raises(TypeError):
        asm.load_map_ptr(R1, 3.5)
    with pytest.raises(TypeError):
        Instructions([asm.load_map_ptr(R1, "m")]).resolve_maps({"m": "nope"})


def test_kfunc_by_name_must_be_resolved():
    prog = Instructions([asm.call_kfunc("bpf_task_acquire"), asm.exit()])
    with pytest.raises(ValueError, match="kfunc 'bpf_task_acquire'"):
        prog.encode()
    fixed = Instructions([prog[0].replace(constant=99, reference=None), prog[1]])
    assert Instructions.decode(fixed.encode())[0].constant == 99


# -- text ---------------------------------------------------------------------

TEXT = [
    (asm.Mov.imm(R0, 0), "r0 = 0"),
    (asm.Mov.imm(R0, -1), "r0 = -1"),
    (asm.Add.reg(R1, R2), "r1 += r2"),
    (asm.Mov32.reg(R1, R2), "w1 = w2"),
    (asm.Sub32.imm(R1, 3), "w1 -= 3"),
    (asm.Arsh.imm(R1, 3), "r1 s>>= 3"),
    (asm.SDiv.reg(R1, R2), "r1 s/= r2"),
    (asm.SMod32.imm(R1, 7), "w1 s%= 7"),
    (asm.Neg(R3), "r3 = -r3"),
    (asm.Neg32(R3), "w3 = -w3"),
    (asm.movsx(R1, R2, 16), "r1 = (s16)r2"),
    (asm.movsx32(R1, R2, 8), "w1 = (s8)w2"),
    (asm.to_be(R1, 16), "r1 = be16 r1"),
    (asm.to_le(R1, 32), "r1 = le32 r1"),
    (asm.bswap(R1, 64), "r1 = bswap64 r1"),
    (asm.addr_space_cast(R1, R2, 0, 1), "r1 = addr_space_cast(r2, 0, 1)"),
    (asm.load_mem(R0, R1, 4, Size.W), "r0 = *(u32 *)(r1 +4)"),
    (asm.load_mem_sx(R0, R1, 4, Size.B), "r0 = *(s8 *)(r1 +4)"),
    (asm.store_mem(R10, -8, R1, Size.DW), "*(u64 *)(r10 -8) = r1"),
    (asm.store_imm(R10, -4, 5, Size.W), "*(u32 *)(r10 -4) = 5"),
    (asm.JEq.imm(R1, 0, 3), "if r1 == 0x0 goto pc+3"),
    (asm.JNE32.imm(R1, -1, -2), "if w1 != 0xffffffff goto pc-2"),
    (asm.JSGE.reg(R1, R2, 1), "if r1 s>= r2 goto pc+1"),
    (asm.JSet.imm(R1, 4, 1), "if r1 & 0x4 goto pc+1"),
    (asm.JEq.imm(R1, 0, "out"), "if r1 == 0x0 goto <out>"),
    (asm.ja(-1), "goto pc-1"),
    (asm.gotol(70000), "gotol pc+70000"),
    (asm.may_goto(2), "may_goto pc+2"),
    (asm.call(Helper.map_lookup_elem), "call bpf_map_lookup_elem#1"),
    (asm.call(Helper.ringbuf_output), "call bpf_ringbuf_output#130"),
    (asm.call(9999), "call unknown#9999"),
    (asm.call_func(5), "call pc+5"),
    (asm.call_kfunc(100), "call kfunc#100"),
    (asm.exit(), "exit"),
    (asm.atomic_add(R1, 0, R2, Size.DW), "lock *(u64 *)(r1 +0) += r2"),
    (asm.atomic_and(R1, 8, R2, Size.W), "lock *(u32 *)(r1 +8) &= r2"),
    (asm.atomic_add(R1, 0, R2, Size.DW, fetch=True),
     "r2 = atomic64_fetch_add((u64 *)(r1 +0), r2)"),
    (asm.atomic_xchg(R1, 0, R2, Size.W), "r2 = atomic_xchg((u32 *)(r1 +0), r2)"),
    (asm.atomic_cmpxchg(R1, 0, R2, Size.DW), "r0 = atomic64_cmpxchg((u64 *)(r1 +0), r0, r2)"),
    (asm.load_acquire(R0, R1, 0, Size.DW), "r0 = load_acquire((u64 *)(r1 +0))"),
    (asm.store_release(R1, 0, R2, Size.H), "store_release((u16 *)(r1 +0), r2)"),
    (asm.load_abs(12, Size.H), "r0 = *(u16 *)skb[12]"),
    (asm.load_ind(R6, 2, Size.B), "r0 = *(u8 *)skb[r6 + 2]"),
    (asm.load_imm64(R1, 0x1234), "r1 = 0x1234"),
    (asm.load_imm64(R1, -1), "r1 = 0xffffffffffffffff"),
    (asm.load_map_ptr(R1, 5), "r1 = map_fd(5)"),
    (asm.load_map_ptr(R1, "events"), "r1 = map[events]"),
    (asm.load_map_value(R1, 5, 8), "r1 = map_fd(5)[0]+8"),
    (asm.load_map_idx(R1, 2), "r1 = map_idx(2)"),
    (asm.load_btf_id(R1, 77), "r1 = btf_id(77)"),
    (asm.load_func_ptr(R1, -4), "r1 = subprog[pc-4]"),
]


@pytest.mark.parametrize("insn,text", TEXT, ids=[t[1] for t in TEXT])
def test_instruction_text(insn, text):
    assert str(insn) == text


def test_program_text():
    prog = Instructions([
        asm.Mov.reg(R6, R1).with_symbol("prog"),
        asm.load_map_ptr(R1, "counts"),
        asm.Mov.reg(R2, RFP),
        asm.Add.imm(R2, -4),
        asm.call(Helper.map_lookup_elem),
        asm.JEq.imm(R0, 0, "out"),
        asm.atomic_add(R0, 0, R6, Size.DW),
        asm.Mov.imm(R0, 0).with_symbol("out"),
        asm.exit(),
    ])
    assert str(prog) == "\n".join([
        "prog:",
        "   0: r6 = r1",
        "   1: r1 = map[counts]",
        "   3: r2 = r10",
        "   4: r2 += -4",
        "   5: call bpf_map_lookup_elem#1",
        "   6: if r0 == 0x0 goto pc+1 <out>",
        "   7: lock *(u64 *)(r0 +0) += r6",
        "out:",
        "   8: r0 = 0",
        "   9: exit",
    ])
    # A program that cannot be resolved still prints, with labels only.
    broken = Instructions([asm.ja("missing"), asm.exit()])
    assert str(broken).splitlines()[0] == "   0: goto <missing>"


def test_invalid_opcode_text_does_not_raise():
    insn = Instruction(0xFF, 1, 2, 3, 4)
    assert "invalid opcode 0xff" in str(insn)
    assert Instruction.decode(insn.encode()) == insn


# -- helpers and registers ----------------------------------------------------

def test_helper_ids():
    assert Helper.map_lookup_elem == 1
    assert Helper.trace_printk == 6
    assert Helper.ringbuf_output == 130
    assert Helper.user_ringbuf_drain == 209
    assert Helper.cgrp_storage_get == 210
    assert Helper.cgrp_storage_delete == 211
    assert len(Helper) == 212
    assert [h.value for h in Helper] == list(range(212))
    assert str(Helper.ktime_get_ns) == "bpf_ktime_get_ns"


def test_helper_ids_match_system_header():
    path = "/usr/include/linux/bpf.h"
    if not os.path.exists(path):
        pytest.skip("no <linux/bpf.h>")
    text = open(path).read()
    start = text.index("#define __BPF_FUNC_MAPPER")
    body = text[start:text.index("\n\n", start)]
    names = re.findall(r"FN\((\w+)", body)
    names = [n for n in names if n != "x"]
    assert names, "could not parse __BPF_FUNC_MAPPER"
    for i, name in enumerate(names):
        assert Helper[name] == i


def test_registers():
    assert [int(r) for r in (asm.R0, asm.R1, asm.R10)] == [0, 1, 10]
    assert asm.RFP is asm.R10
    assert str(asm.R3) == "r3"


# -- errors -------------------------------------------------------------------

@pytest.mark.parametrize("make,exc,match", [
    (lambda: asm.Mov.imm(11, 0), ValueError, "register 11"),
    (lambda: asm.Add.reg(R1, -1), ValueError, "register -1"),
    (lambda: asm.Mov.imm(R10, 0), ValueError, "read-only"),
    (lambda: asm.load_mem(R10, R1, 0, Size.W), ValueError, "read-only"),
    (lambda: asm.Mov.imm(R0, 1 << 31), ValueError, "load_imm64"),
    (lambda: asm.Mov32.imm(R0, 1 << 32), ValueError, "32-bit"),
    (lambda: asm.JEq.imm(R0, 0xFFFFFFFF, 1), ValueError, "signed 32-bit"),
    (lambda: asm.Lsh.imm(R0, 64), ValueError, "shift"),
    (lambda: asm.Lsh32.imm(R0, 32), ValueError, "shift"),
    (lambda: asm.Div.imm(R0, 0), ValueError, "zero"),
    (lambda: asm.load_mem(R0, R1, 1 << 15, Size.W), ValueError, "16-bit"),
    (lambda: asm.JEq.imm(R0, 0, -(1 << 15) - 1), ValueError, "16-bit"),
    (lambda: asm.load_mem(R0, R1, 0, 4), TypeError, "Size"),
    (lambda: asm.load_mem_sx(R0, R1, 0, Size.DW), ValueError, "Size.DW"),
    (lambda: asm.atomic_add(R1, 0, R2, Size.B), ValueError, "Size.B"),
    (lambda: asm.movsx(R1, R2, 64), ValueError, "8, 16 or 32"),
    (lambda: asm.movsx32(R1, R2, 32), ValueError, "8 or 16"),
    (lambda: asm.bswap(R1, 8), ValueError, "16, 32 or 64"),
    (lambda: asm.load_imm64(R1, 1 << 64), ValueError, "64 bits"),
    (lambda: asm.load_map_value(R1, 3, -1), ValueError, "offset"),
    (lambda: asm.Mov.imm(R0, "1"), TypeError, "int"),
    (lambda: asm.Mov.imm(R0, 1.0), TypeError, "int"),
    (lambda: asm.Mov.imm(True, 1), TypeError, "int"),
    (lambda: Instruction(256), ValueError, "one byte"),
    (lambda: Instruction(0xB7, 0, 0, 0, 1 << 32), ValueError, "ld_imm64"),
    (lambda: Instruction(0xB7, symbol=""), TypeError, "symbol"),
    (lambda: asm.Mov.imm(R0, 0).replace(bogus=1), TypeError, "bogus"),
    (lambda: Instructions([asm.exit()]).encode("middle"), ValueError, "byte_order"),
])
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_instructions_are_immutable_values():
    a = asm.Mov.imm(R0, 1)
    with pytest.raises(AttributeError):
        a.constant = 2
    assert a == asm.Mov.imm(R0, 1) and hash(a) == hash(asm.Mov.imm(R0, 1))
    assert a != a.with_symbol("x")
    assert a.with_symbol("x").symbol == "x" and a.symbol is None
    assert pickle.loads(pickle.dumps(a.with_symbol("s"))) == a.with_symbol("s")
    assert "r0 = 1" in repr(a)


@pytest.mark.parametrize("raw,match", [
    (b"\x00" * 7, "not a multiple of 8"),
    (asm.exit().encode() + b"\x95", "not a multiple of 8"),
    (asm.load_imm64(R1, 5).encode()[:8], "missing its second half"),
    (asm.exit().encode() + asm.load_imm64(R1, 5).encode()[:8], "slot 1: ld_imm64"),
    (asm.load_imm64(R1, 5).encode()[:8] + asm.exit().encode(), "second half"),
    (bytes([0xB7, 0x0F, 0, 0, 0, 0, 0, 0]), "invalid register"),
    (bytes([0xB7, 0xB0, 0, 0, 0, 0, 0, 0]), "invalid register"),
])
def test_decode_errors(raw, match):
    with pytest.raises(ValueError, match=match):
        Instructions.decode(raw)


def test_decode_type_error():
    with pytest.raises(TypeError):
        Instructions.decode(12345)


def test_decode_garbage_never_crashes():
    import random
    rng = random.Random(1234)
    for _ in range(500):
        raw = bytes(rng.getrandbits(8) for _ in range(8 * rng.randint(0, 6)))
        for byteorder in BYTEORDERS:
            try:
                prog = Instructions.decode(raw, byteorder)
            except ValueError:
                continue
            str(prog)
            assert prog.encode(byteorder) == raw


def test_instructions_list_behaviour():
    prog = Instructions([asm.Mov.imm(R0, 0), asm.exit()])
    assert isinstance(prog[:1], Instructions)
    assert isinstance(prog + [asm.exit()], Instructions)
    assert isinstance([asm.exit()] + prog, Instructions)
    assert prog.symbols() == {}
    labelled = Instructions([asm.ja("x"), asm.exit().with_symbol("x")])
    assert labelled.symbols() == {"x": 1}
    assert labelled.references() == {"x": [0]}
    with pytest.raises(TypeError, match="instruction 1"):
        Instructions([asm.exit(), "exit"]).encode()


def test_large_program_encodes():
    # Not a timing test (speed lives in bench/); exercises the bulk path.
    body = [asm.Mov.imm(R0, i) if i % 3 else asm.JEq.imm(R0, i, "end") for i in range(4095)]
    prog = Instructions(body + [asm.exit().with_symbol("end")])
    raw = prog.encode()
    assert len(raw) == 4096 * 8
    assert Instructions.decode(raw).encode() == raw


def test_duplicate_labels_are_refused_even_without_a_jump_to_them():
    prog = Instructions([asm.Mov.imm(R0, 0).with_symbol("twice"), asm.exit().with_symbol("twice")])
    with pytest.raises(ValueError, match="label 'twice' is carried by instructions 0 and 1"):
        prog.encode()
    with pytest.raises(ValueError, match="labels must be unique"):
        prog.resolve()
