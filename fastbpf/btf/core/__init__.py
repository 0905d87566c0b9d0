"""CO-RE: rewrite relocated instructions against the running kernel's BTF.

An object compiled with ``__attribute__((preserve_access_index))`` (or
``BPF_CORE_READ``, ``bpf_core_field_exists``, ``bpf_core_type_exists``,
``bpf_core_enum_value`` ...) records in ``.BTF.ext`` which instructions hold
a field offset, a size, a type id or an enum value taken from the *local*
BTF it was compiled against. Before load each of those values is recomputed
against the *target* BTF (vmlinux, modules, or any BTF the caller gives) and
written into the instruction. The rules are libbpf's (``relo_core.c``):
same candidates, same compatibility checks, same values, same validation of
the instruction, same poison for what cannot be satisfied.

- :func:`relocate_instructions` patches a program in place and returns one
  :class:`CORERelocation` per relocation;
- :func:`calculate_relocations` computes the same results without patching
  (what ``ProgramSpec.core_relocations()`` shows);
- :func:`poison_error` turns a verifier rejection of a poisoned instruction
  into a :class:`~fastbpf.errors.CORERelocationError` naming the relocation.

How a loader uses it: after linking a program, pair each instruction that
carries a ``.BTF.ext`` CO-RE record with that record, call
:func:`relocate_instructions` with one ``cand_cache`` dict shared by all
programs of the object (libbpf's candidate cache), keep the results, and if
the kernel then refuses the program with a :class:`VerifierError`, raise
``poison_error(err, results, name)`` instead.
"""

from __future__ import annotations

import errno as _errno
import re
from typing import Any, Sequence

from ...errors import BTFError, CORERelocationError, VerifierError
from ..ext import CoreRelo, CoreReloKind
from ..spec import Spec
from ..types import Type
from . import _match
from ._match import KIND_TEXT, Result, ReloFailure, essential_name
from ._patch import POISON_IMM, patch
from ._targets import Targets, load_target_file, resolve_targets

__all__ = [
    "CORERelocation", "relocate_instructions", "calculate_relocations", "poison_error",
    "essential_name", "load_target_file", "POISON_IMM", "CandidateCache",
]

#: Shared candidate lists (libbpf's cand_cache): local root type id ->
#: [(target spec, candidate type)], pruned as relocations reject candidates.
CandidateCache = dict

_MEMO = object()  # key of the pass-wide memo inside a candidate cache


class CORERelocation:
    """The outcome of one CO-RE relocation.

    Attributes:
        index: the instruction's index in the program (as passed in).
        slot: its position in 8-byte slots (what the verifier log shows).
        kind: a :class:`~fastbpf.btf.CoreReloKind`.
        local_type / local_type_id: the root type in the object's BTF.
        access: the raw access string (``"0:1:2"``).
        path: the access as text, e.g. ``struct task_struct.comm[2]`` or
            ``enum pid_type::PIDTYPE_TGID``.
        target_path: the same, in the matched target type (None if none).
        local_value: the value the compiler put in the instruction.
        target_value: the value against the target BTF.
        poisoned: the instruction became ``call 0xbad2310``.
        candidate: the matched target root type (None: no match).
        target: the spec holding ``candidate``.
        candidates: how many target candidates were considered.
        local_size / target_size: memory access sizes (byte offset
            relocations of non-bitfield fields; 0 otherwise).
        reason: why it is poisoned (None otherwise).
    """

    index: int
    slot: int
    kind: CoreReloKind
    local_type: Type
    local_type_id: int
    access: str
    local_value: int
    target_value: int
    poisoned: bool
    candidate: Type | None
    target: Spec | None
    candidates: int
    local_size: int
    target_size: int
    validate: bool
    reason: str | None
    _res: Result
    _lspec: _match.CoreSpec
    _tspec: _match.CoreSpec | None

    __slots__ = ("index", "slot", "kind", "local_type", "local_type_id", "access",
                 "local_value", "target_value", "poisoned", "candidate", "target", "candidates",
                 "local_size", "target_size", "validate", "reason", "_res", "_lspec", "_tspec")

    @property
    def path(self) -> str:
        """The local access as text (``struct task_struct.pid``)."""
        return self._lspec.path()

    @property
    def target_path(self) -> str | None:
        """The matched access in the target type, or None."""
        return self._tspec.path() if self._tspec is not None else None

    def __repr__(self) -> str:
        state = "poisoned" if self.poisoned else f"{self.local_value} -> {self.target_value}"
        return (f"<CORERelocation insn {self.index} {KIND_TEXT.get(self.kind, self.kind)} "
                f"{self.path}: {state}>")

    def describe(self) -> str:
        """One line: instruction, kind, access path, values."""
        kind = KIND_TEXT.get(self.kind, str(self.kind))
        if self.poisoned:
            what = f"poisoned ({self.reason})"
        else:
            what = f"{self.local_value} -> {self.target_value}"
            if self.local_size != self.target_size:
                what += f", load size {self.local_size} -> {self.target_size}"
        where = f" [target {self.target_path}]" if self.target_path else ""
        return f"insn #{self.index}: <{kind}> {self.path} ({self.access}){where}: {what}"


def _fail(message: str, rel: CORERelocation | None = None,
          program: str | None = None) -> CORERelocationError:
    obj = f"prog {program!r}" if program else None
    return CORERelocationError(_errno.EINVAL, "CO-RE relocation", obj, hint=message,
                               relocation=rel)


def _resolve_one(local: Spec, index: int, relo: CoreRelo, targets: Targets, cache: dict[Any, Any],
                 program: str | None) -> CORERelocation:
    """libbpf's bpf_core_resolve_relo + bpf_core_calc_relo_insn."""
    kind = relo.kind
    if not isinstance(kind, CoreReloKind):
        raise BTFError(f"unknown CO-RE relocation kind {int(kind)} (insn #{index})")
    if not isinstance(relo.type_id, int) or not 0 < relo.type_id < len(local):
        raise BTFError(f"CO-RE relocation of insn #{index} refers to type id {relo.type_id}, "
                       f"outside the object's BTF")
    # Specs and per-candidate outcomes are pure functions of (type, access,
    # kind) and the candidate, and objects repeat accesses a lot (every
    # BPF_CORE_READ of task->pid): remember them for the whole pass.
    memo = cache.get(_MEMO)
    if memo is None:
        memo = cache[_MEMO] = {}
    key = (relo.type_id, relo.access, kind)
    lspec = memo.get(key)
    if lspec is None:
        lspec = memo[key] = _match.parse_spec(local, relo.type_id, relo.access, kind)
    rel = CORERelocation()
    rel.index = index
    rel.slot = index
    rel.kind = kind
    rel.local_type = lspec.root
    rel.local_type_id = relo.type_id
    rel.access = relo.access
    rel._lspec = lspec
    rel._tspec = None
    rel.candidate = None
    rel.target = None
    rel.candidates = 0
    rel.reason = None
    big = local.byte_order == "big"
    name = lspec.root.name
    res: Any  # a Result once the try below has run (it raises otherwise)
    tspec: Any
    chosen: Any
    r: Any
    try:
        if kind == CoreReloKind.TYPE_ID_LOCAL:
            res = Result()
            res.validate = False
            res.orig_val = res.new_val = relo.type_id
            rel.candidate, rel.target = lspec.root, local
        else:
            if not name:
                raise ReloFailure(f"<{KIND_TEXT[kind]}> relocation of an anonymous "
                                   f"{lspec.root.kind.name.lower()} (libbpf refuses these)")
            cands = cache.get(relo.type_id)
            if cands is None:  # libbpf: cand_cache, keyed by local type id
                cands = targets.candidates(lspec.root)
                cache[relo.type_id] = cands
            rel.candidates = len(cands)
            res, tspec, chosen = None, None, None
            kept = []
            for cspec, cand in cands:
                mkey = (key, id(cand))
                hit = memo.get(mkey)
                if hit is None:
                    m = _match.spec_match(lspec, cspec, cand)
                    hit = memo[mkey] = (m, _match.calc_relo(kind, lspec, m, big)
                                        if m is not None else None)
                m, r = hit
                if m is None:
                    continue
                if res is None:
                    res, tspec, chosen = r, m, (cspec, cand)
                elif m.bit_offset != tspec.bit_offset:
                    raise ReloFailure(
                        f"field offset ambiguity: {_desc(cand, cspec)} puts it at bit "
                        f"{m.bit_offset}, {_desc(chosen[1], chosen[0])} at bit {tspec.bit_offset}")
                elif r.poison != res.poison or r.new_val != res.new_val:
                    raise ReloFailure(
                        f"relocation decision ambiguity: {_desc(cand, cspec)} gives "
                        f"{_outcome(r)}, {_desc(chosen[1], chosen[0])} gives {_outcome(res)}")
                kept.append((cspec, cand))
            if kept:
                # libbpf narrows the shared candidate list to the ones that
                # matched; later relocations of the same type see only those.
                cands[:] = kept
                rel.target, rel.candidate = chosen
                rel._tspec = tspec
            else:
                res = _match.calc_relo(kind, lspec, None, big)
    except ReloFailure as e:
        raise _fail(f"relocation of insn #{index} <{KIND_TEXT[kind]}> {lspec.path()} "
                    f"({relo.access}): {e}", None, program) from None
    except BTFError as e:
        raise _fail(f"relocation of insn #{index} <{KIND_TEXT[kind]}> {lspec.path()} "
                    f"({relo.access}): target BTF: {e}", None, program) from None
    rel._res = res
    rel.local_value = res.orig_val
    rel.target_value = res.new_val
    rel.poisoned = res.poison
    rel.validate = res.validate
    rel.local_size = res.orig_sz
    rel.target_size = res.new_sz
    if res.poison:
        rel.reason = (f"no {_thing(kind)} in the target BTF" if rel.candidate is None
                      else "the target cannot satisfy it")
        if rel.candidate is None and targets.skipped:
            rel.reason += f" (unreadable module BTF: {'; '.join(targets.skipped)})"
    return rel


def _thing(kind: int) -> str:
    if kind in _match.ENUMVAL_KINDS:
        return "such enum value"
    if kind in _match.TYPE_KINDS:
        return "such type"
    return "such field"


def _desc(t: Type, spec: Spec) -> str:
    tid: int | None
    try:
        tid = spec.type_id(t)
    except BTFError:
        tid = t.id
    return f"candidate [{tid}] {t.name}"


def _outcome(r: Result) -> str:
    return "failure" if r.poison else f"success {r.new_val}"


def _check_pairs(relos: Any) -> list[Any]:
    out = []
    for item in relos:
        try:
            index, relo = item
        except (TypeError, ValueError):
            raise TypeError("relos must be (instruction index, btf.CoreRelo) pairs") from None
        if not isinstance(relo, CoreRelo):
            raise TypeError(f"expected a btf.CoreRelo, got {type(relo).__name__}")
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"instruction index must be an int, not {type(index).__name__}")
        out.append((index, relo))
    return out


def calculate_relocations(local: Spec, relos: Sequence[tuple[int, CoreRelo]],
                          target: Spec | Sequence[Spec] | str | None = None, *,
                          insns: Any = None, cand_cache: dict[Any, Any] | None = None,
                          program: str | None = None) -> list[CORERelocation]:
    """Resolve CO-RE relocations without patching anything.

    *local* is the object's BTF; *relos* pairs an instruction index with
    its ``.BTF.ext`` record; *target* is None (the running kernel's BTF,
    modules included), a :class:`~fastbpf.btf.Spec`, a list of specs (the
    first searched first, the others only for names it lacks), or the path
    of a raw BTF file or a vmlinux ELF. With *insns*, ``slot`` is filled in.

    Raises :class:`~fastbpf.btf.BTFError` for malformed records and
    :class:`~fastbpf.errors.CORERelocationError` for relocations libbpf
    would refuse (ambiguous candidates, impossible bitfield loads).
    """
    pairs = _check_pairs(relos)
    if not isinstance(local, Spec):
        raise TypeError(f"local must be a btf.Spec, not {type(local).__name__}")
    targets = resolve_targets(target)
    cache = cand_cache if cand_cache is not None else {}
    out = [_resolve_one(local, i, r, targets, cache, program) for i, r in pairs]
    if insns is not None:
        _fill_slots(insns, out)
    return out


def _fill_slots(insns: Any, results: list[CORERelocation]) -> None:
    slots = []
    pos = 0
    for insn in insns:
        slots.append(pos)
        pos += 2 if insn.opcode == 0x18 else 1
    for r in results:
        if 0 <= r.index < len(slots):
            r.slot = slots[r.index]


def relocate_instructions(local: Spec, insns: Any, relos: Sequence[tuple[int, CoreRelo]],
                          target: Spec | Sequence[Spec] | str | None = None, *,
                          cand_cache: dict[Any, Any] | None = None,
                          program: str | None = None) -> list[CORERelocation]:
    """Apply CO-RE relocations to *insns* (an ``asm.Instructions``) in place.

    Arguments as for :func:`calculate_relocations`; *cand_cache* may be
    shared by all programs of one object, which is what libbpf does (a
    candidate rejected by one relocation is then not offered to the next
    of the same type). *program* names the program in errors.

    Each instruction is checked as libbpf checks it (the value the compiler
    wrote must be the local value; load sizes may change only for pointers
    and unsigned integers) and rewritten. An unsatisfiable relocation
    poisons its instruction with ``call 0xbad2310``: harmless if the code is
    dead, otherwise the verifier rejects the program and
    :func:`poison_error` explains why. A poisoned ``ld_imm64`` becomes two
    poison calls, so it keeps its two slots but the list grows by one item:
    indexes after it shift (slots, and so jump offsets, do not).

    Returns one :class:`CORERelocation` per pair, in order.
    """
    results = calculate_relocations(local, relos, target, cand_cache=cand_cache,
                                    program=program)
    n = len(insns)
    for r in results:
        if not 0 <= r.index < n:
            raise BTFError(f"CO-RE relocation points at instruction #{r.index}, "
                           f"but the program has {n}")
    _fill_slots(insns, results)
    # Validate and compute every replacement first, then apply them from
    # the end so that a poisoned ld_imm64 (one item becoming two) does not
    # move instructions that are still to be patched.
    replacements: dict[int, tuple[Any, ...]] = {}
    for r in results:
        insn = replacements.get(r.index, (insns[r.index],))[0]
        try:
            new = patch(insn, r._res)
        except ValueError as e:
            raise _fail(f"relocation of insn #{r.index} <{KIND_TEXT[r.kind]}> {r.path}: {e}",
                        r, program) from None
        if new[0].opcode == 0x85 and new[0].constant == POISON_IMM and not r.poisoned:
            r.poisoned = True
            r.reason = ("the load size would change for a field that is neither a pointer "
                        "nor an unsigned integer")
        replacements[r.index] = new
    for index in sorted(replacements, reverse=True):
        insns[index:index + 1] = list(replacements[index])
    return results


_POISON_RE = re.compile(r"^(\d+): \(85\) call unknown#195896080$", re.M)


def poison_error(err: VerifierError, relocations: Sequence[CORERelocation],
                 program: str | None = None) -> VerifierError:
    """Explain a verifier rejection caused by a poisoned instruction.

    If *err*'s log shows the verifier reaching a ``call 0xbad2310`` that one
    of *relocations* wrote, return a :class:`CORERelocationError` (with the
    whole log) naming that relocation, its local type and its field path;
    otherwise return *err* unchanged. The loader raises what this returns.
    """
    log = getattr(err, "log", "") or ""
    if "unknown#195896080" not in log:
        return err
    poisoned = [r for r in relocations if r.poisoned]
    if not poisoned:
        return err
    m = _POISON_RE.findall(log)
    rel = None
    if m:
        slot = int(m[-1])
        rel = next((r for r in poisoned if r.slot == slot), None)
    if rel is None:
        rel = poisoned[0] if len(poisoned) == 1 else None
    if rel is None:
        return err
    hint = (f"the program uses a CO-RE relocation that failed: insn #{rel.slot} "
            f"<{KIND_TEXT[rel.kind]}> {rel.path} (local type [{rel.local_type_id}] "
            f"{rel.local_type.name or '<anon>'}, access {rel.access}): {rel.reason}; guard it "
            f"with bpf_core_field_exists / bpf_core_type_exists / bpf_core_enum_value_exists")
    name = program or (err.obj if err.obj else None)
    obj = name if name and name.startswith("prog") else (f"prog {name!r}" if name else None)
    return CORERelocationError(err.errno, err.op, obj, log, hint, relocation=rel)
