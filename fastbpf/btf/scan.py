"""The pure-Python twin of :mod:`fastbpf._btfscan`: one pass over a BTF type
section that validates and indexes it.

This is the specification the C scanner follows (``tests/test_btf_fuzz.py``
checks that both give the same answers); :class:`~.spec.Spec` uses it only
where the extension module is not built.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

__all__ = ["FIXED", "PER_ITEM", "LEAF_KINDS", "scan_python", "edges_python",
           "find_cycle_python"]

# Words after the 3-word common header, per kind: fixed, and per vlen item.
FIXED = [0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0]
PER_ITEM = [0, 0, 0, 0, 3, 3, 2, 0, 0, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 3]


def scan_python(w: np.ndarray, first_id: int = 1) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, int, int, str | None, int]:
    """The pure-Python twin of :func:`fastbpf._btfscan.scan`."""
    words = w.tolist()
    n = len(words)
    offs: list[int] = []
    o = 0
    max_ref = max_str = 0
    error = None
    while o < n:
        if n - o < 3:
            error = f"type record {len(offs) + 1} at byte {4 * o}: truncated header"
            break
        info = words[o + 1]
        kind = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        if kind == 0 or kind > 19:
            error = f"type record {len(offs) + 1} at byte {4 * o}: unknown kind {kind}"
            break
        per = PER_ITEM[kind]
        items = vlen if per else 0
        end = o + 3 + FIXED[kind] + items * per
        if end > n:
            error = (f"type record {len(offs) + 1} at byte {4 * o}: kind {kind} with "
                     f"vlen {vlen} runs past the end of the type section")
            break
        max_str = max(max_str, words[o])
        if kind in (2, 8, 9, 10, 11, 12, 13, 14, 17, 18):
            max_ref = max(max_ref, words[o + 2])
        if kind == 3:
            max_ref = max(max_ref, words[o + 3], words[o + 4])
        elif kind in (4, 5, 13):
            for j in range(o + 3, end, per):
                max_str = max(max_str, words[j])
                max_ref = max(max_ref, words[j + 1])
        elif kind in (6, 19):
            for j in range(o + 3, end, per):
                max_str = max(max_str, words[j])
        elif kind == 15:
            for j in range(o + 3, end, 3):
                max_ref = max(max_ref, words[j])
        offs.append(o)
        o = end
    offs_arr = np.array(offs, dtype=np.uint32)
    kinds = ((w[offs_arr.astype(np.intp) + 1] >> 24) & 0x1F).astype(np.uint8)
    cycle = -1
    if error is None and offs and max_ref < first_id + len(offs):
        cycle = find_cycle_python(w, offs_arr, kinds, first_id)
    return offs_arr, kinds, w[offs_arr.astype(np.intp)], max_ref, max_str, error, cycle


def edges_python(words: list[int], o: int) -> list[int]:
    info = words[o + 1]
    kind = (info >> 24) & 0x1F
    vlen = info & 0xFFFF
    if kind in (8, 9, 10, 11, 12, 14, 17, 18):
        return [words[o + 2]]
    if kind == 3:
        return [words[o + 3]]
    if kind in (4, 5):
        return [words[o + 4 + 3 * k] for k in range(vlen)]
    if kind == 13:
        return [words[o + 2]] + [words[o + 4 + 2 * k] for k in range(vlen)]
    if kind == 15:
        return [words[o + 3 + 3 * k] for k in range(vlen)]
    return []


LEAF_KINDS = frozenset((1, 2, 6, 7, 16, 19))  # no edges that need a target's layout


def find_cycle_python(w: np.ndarray, offs: np.ndarray, kinds: np.ndarray, first_id: int) -> int:
    """The cycle check of :func:`scan_python`: the id of a type on a
    reference cycle that does not pass through a pointer, or -1. All ids
    must be in range.

    Every cycle has an edge from a type to itself or to a later id, and
    that edge's target is not a leaf (it has edges of its own); so the
    search starts only from the sources of such edges, ascending, and
    never enters leaves. The C version searches in the same order and
    gives the same answer."""
    words = w.tolist()
    offl = offs.tolist()
    kl = kinds.tolist()
    n = len(offl)
    edges = [[e - first_id for e in edges_python(words, o)
              if e >= first_id and kl[e - first_id] not in LEAF_KINDS] for o in offl]
    roots = [i for i in range(n) if any(e >= i for e in edges[i])]
    color = bytearray(n)
    for root in roots:
        if color[root]:
            continue
        color[root] = 1
        stack: list[tuple[int, Iterator[int]]] = [(root, iter(edges[root]))]
        while stack:
            node, it = stack[-1]
            for nxt in it:
                if color[nxt] == 1:
                    return nxt + first_id
                if color[nxt] == 0:
                    color[nxt] = 1
                    stack.append((nxt, iter(edges[nxt])))
                    break
            else:
                color[node] = 2
                stack.pop()
    return -1
