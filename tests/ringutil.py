"""Test helpers shared by the ring buffer and perf reader tests: a record
whose every byte position tells which record and which word it came from."""

from __future__ import annotations

import numpy as np

from fastbpf import asm
from fastbpf.asm import R7, R8, R9, R10, Size

# 64 bytes whose fields have the sizes the copy loops special-case (4, 8,
# 16, 32 via adjacent fields, 64 for the whole record) and odd ones (3, 13).
WORDS = np.dtype([("a", "<u4"), ("b", "<u4"), ("c", "<u8"), ("d", "<u8", 2),
                  ("f", "u1", 3), ("g", "u1", 13), ("h", "<u8", 2)])
assert WORDS.itemsize == 64


def store_record(body: list, base: int, words: bool) -> None:
    """Append instructions storing the 8 u64s of a record at r10+base: seq
    (in r7) in each, or with *words* seq * 16 + k in word k."""
    if words:
        body += [asm.Mov.reg(R8, R7), asm.Lsh.imm(R8, 4)]
    for k in range(8):
        if words:
            body += [asm.Mov.reg(R9, R8), asm.Add.imm(R9, k),
                     asm.store_mem(R10, base + 8 * k, R9, Size.DW)]
        else:
            body.append(asm.store_mem(R10, base + 8 * k, R7, Size.DW))


def words_expected(seqs) -> np.ndarray:
    """The records store_record(words=True) writes for *seqs*, as WORDS."""
    w = np.asarray(seqs, np.uint64)[:, None] * np.uint64(16) + np.arange(8, dtype=np.uint64)
    return w.astype("<u8").view(WORDS).reshape(-1)
