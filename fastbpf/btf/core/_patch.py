"""Rewriting one relocated instruction (libbpf's bpf_core_patch_insn).

Forms libbpf patches, and so do we: ALU/ALU64 with an immediate (``rX =
imm``, ``rX += imm``), loads and stores (``LDX``/``ST``/``STX``: the offset,
and the access size when the field's size changed), and ``ld_imm64``. The
instruction must hold the value computed from the local BTF, unless the
relocation is one whose value the compiler may legitimately disagree with
(bitfields, type ids).
"""

from __future__ import annotations

from typing import Any

from ...asm.instruction import Instruction

#: The poison call's immediate: "bad relo" (0xbad2310 = 195896080). The
#: verifier rejects a reachable one with "invalid func unknown#195896080".
POISON_IMM = 0xBAD2310
_CALL = 0x85          # BPF_JMP | BPF_CALL
_LD_IMM64 = 0x18
_MASK64 = (1 << 64) - 1
_SHRT_MAX = 0x7FFF
_SIZE_BYTES = {0x18: 8, 0x00: 4, 0x08: 2, 0x10: 1}   # BPF_DW, W, H, B
_BYTES_SIZE = {v: k for k, v in _SIZE_BYTES.items()}


def poison(insn: Instruction) -> tuple[Instruction, ...]:
    """The poison call(s) replacing *insn*: two for an ld_imm64, which
    keeps its two slots (libbpf poisons both halves)."""
    call = insn.replace(opcode=_CALL, dst=0, src=0, offset=0, constant=POISON_IMM,
                        reference=None, map=None)
    if insn.opcode == _LD_IMM64:
        return (call, Instruction(_CALL, 0, 0, 0, POISON_IMM))
    return (call,)


def patch(insn: Instruction, res: Any) -> tuple[Instruction, ...]:
    """The instruction(s) that replace *insn* for result *res*; raises
    ValueError (with libbpf's reason) when the instruction does not fit."""
    if res.poison:
        return poison(insn)
    orig, new = res.orig_val, res.new_val
    code = insn.opcode
    cls = code & 0x07
    if cls in (0x04, 0x07):  # ALU, ALU64
        if code & 0x08:
            raise ValueError(f"instruction {insn} uses a register, not an immediate")
        if res.validate and (insn.constant & _MASK64) != orig:
            raise ValueError(f"unexpected value in instruction {insn} (ALU/ALU64): "
                             f"got {insn.constant & 0xFFFFFFFF}, expected {orig} -> {new}")
        return (insn.replace(constant=new & 0xFFFFFFFF),)
    if cls in (0x01, 0x02, 0x03):  # LDX, ST, STX
        if res.validate and (insn.offset & _MASK64) != orig:
            raise ValueError(f"unexpected offset in instruction {insn} (LDX/ST/STX): "
                             f"got {insn.offset & 0xFFFF}, expected {orig} -> {new}")
        if new > _SHRT_MAX:
            raise ValueError(f"offset {new} is too large for instruction {insn}")
        if res.fail_memsz_adjust:
            # The field changed size and reading it with another width
            # would give a wrong value: refuse, but only at run time.
            return poison(insn)
        if res.new_sz != res.orig_sz:
            have = _SIZE_BYTES.get(code & 0x18)
            if have != res.orig_sz:
                raise ValueError(f"instruction {insn} accesses {have} bytes, expected "
                                 f"{res.orig_sz}")
            size = _BYTES_SIZE.get(res.new_sz)
            if size is None:
                raise ValueError(f"invalid new access size {res.new_sz} for {insn}")
            code = (code & 0xE0) | size | cls
        return (insn.replace(opcode=code, offset=new),)
    if cls == 0x00:  # LD
        if code != _LD_IMM64 or insn.src != 0 or insn.offset != 0:
            raise ValueError(f"instruction {insn} (LDIMM64) has an unexpected form")
        if res.validate and (insn.constant & _MASK64) != orig:
            raise ValueError(f"unexpected value in instruction {insn} (LDIMM64): got "
                             f"{insn.constant & _MASK64}, expected {orig} -> {new}")
        return (insn.replace(constant=new & _MASK64),)
    raise ValueError(f"cannot relocate instruction {insn} (opcode {code:#04x})")
