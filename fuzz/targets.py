"""Fuzz targets: one function per parser, each taking the fuzzer's bytes.

A target returns normally for input that was parsed, or refused with the
parser's documented error (BTFError, ValueError, ELFError); anything else
(another exception, a crash in the C scanner, a hang) is a bug. Shared by
``scripts/fuzz.py`` (atheris, long runs) and ``tests/test_fuzz.py`` (a short
run of each in the suite).
"""

from __future__ import annotations

import io
import os
from typing import Callable

TESTDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "testdata")


def _sections(name_filter: Callable[[str], bool]) -> list[bytes]:
    """The contents of matching sections of every object in testdata/."""
    from elftools.elf.elffile import ELFFile
    out = []
    for fn in sorted(os.listdir(TESTDATA)):
        if not fn.endswith(".o"):
            continue
        with open(os.path.join(TESTDATA, fn), "rb") as f:
            elf = ELFFile(io.BytesIO(f.read()))
            for sec in elf.iter_sections():
                if name_filter(sec.name) and sec.data_size:
                    out.append(sec.data())
    return out


def seeds(target: str) -> list[bytes]:
    """Corpus seeds for *target*, from the objects in testdata/."""
    if target == "btf":
        return _sections(lambda n: n == ".BTF")
    if target == "btf_ext":
        return _sections(lambda n: n == ".BTF.ext")
    if target == "asm":
        return _sections(lambda n: n == ".text" or "/" in n)
    if target == "elf":
        out = []
        for fn in sorted(os.listdir(TESTDATA)):
            if fn.endswith(".o"):
                with open(os.path.join(TESTDATA, fn), "rb") as f:
                    out.append(f.read())
        return out
    raise ValueError(f"unknown target {target!r}; one of {sorted(TARGETS)}")


def fuzz_btf(data: bytes) -> None:
    """BTF: the C scanner and its Python twin agree, and everything a user
    can reach from a parsed spec (dtypes, formatting, re-encoding) works or
    raises BTFError."""
    import numpy as np
    import fastbpf.btf.spec as spec_mod
    from fastbpf import btf
    results = []
    for mod in (spec_mod._scanmod, None):
        saved = spec_mod._scanmod
        spec_mod._scanmod = mod
        try:
            results.append(btf.Spec.parse(data))
        except btf.BTFError:
            results.append(btf.BTFError)
        finally:
            spec_mod._scanmod = saved
    fast, slow = results
    if not isinstance(fast, btf.Spec):
        if isinstance(slow, btf.Spec):
            raise AssertionError("the C scanner refused BTF that the Python twin accepts")
        return
    if not isinstance(slow, btf.Spec) or not np.array_equal(fast._offs, slow._offs):
        raise AssertionError("the C scanner and the Python twin disagree")
    for t in fast:
        for attr in ("members", "values", "params", "vars", "type", "target"):
            try:
                getattr(t, attr)
            except (AttributeError, btf.BTFError):
                pass
        try:
            dt = btf.to_dtype(t, bitfields="raw", unsupported="raw")
            # Formatting is linear in the size (a Python object per item);
            # 4 KiB keeps one input well under the 10 s hang limit when
            # instrumented on a loaded machine (47 KiB arrays took > 10 s).
            if 0 < dt.itemsize <= 1 << 12:
                btf.format(bytes(dt.itemsize), t)
        except btf.BTFError:
            pass
    try:
        fast.encode()
    except btf.BTFError:
        pass


_EXT_SPEC = None


def fuzz_btf_ext(data: bytes) -> None:
    """.BTF.ext against the BTF of testdata/core_globals-el.o."""
    global _EXT_SPEC
    from fastbpf import btf
    if _EXT_SPEC is None:
        from elftools.elf.elffile import ELFFile
        with open(os.path.join(TESTDATA, "core_globals-el.o"), "rb") as f:
            raw = ELFFile(io.BytesIO(f.read())).get_section_by_name(".BTF").data()
        _EXT_SPEC = btf.Spec.parse(raw)
    try:
        ext = btf.ExtInfo.parse(data, _EXT_SPEC)
    except btf.BTFError:
        return
    repr(ext)


def fuzz_asm(data: bytes) -> None:
    """Instruction decoding: what decodes re-encodes to the same bytes, in
    both byte orders, and disassembles (labelled too)."""
    from fastbpf.asm import Instructions
    for order in ("little", "big"):
        try:
            prog = Instructions.decode(data, order)
        except ValueError:
            continue
        if prog.encode(order) != data:
            raise AssertionError(f"decode/encode round trip changed the bytes ({order})")
        str(prog)
        try:
            labelled = prog.label_targets()
        except ValueError:
            continue
        str(labelled)


def fuzz_elf(data: bytes) -> None:
    """The ELF object loader: ``load_collection_spec`` returns a
    CollectionSpec or raises ELFError / BTFError, nothing else; so does
    decoding each program's instructions (done lazily, on first use). An
    ELFError that only wraps a stray Python exception (the loader's last-resort
    "malformed object: IndexError: ..." net) counts as a finding too: the
    error must say what is wrong with the object."""
    import fastbpf
    from fastbpf.btf import BTFError
    try:
        spec = fastbpf.load_collection_spec(data)
    except fastbpf.ELFError as e:
        _check_named(e)
        return
    except BTFError:
        return
    if not isinstance(spec, fastbpf.CollectionSpec):
        raise AssertionError(f"load_collection_spec returned {type(spec).__name__}")
    for prog in spec.programs.values():
        try:
            prog.instructions
        except fastbpf.ELFError as e:
            _check_named(e)
        except BTFError:
            pass


def _check_named(e: Exception) -> None:
    if STRICT_ELF and str(e).startswith("malformed object: "):
        raise AssertionError(f"unnamed loader error: {e}") from e


#: Whether an ELFError from the loader's catch-all is a finding (see fuzz_elf).
STRICT_ELF = os.environ.get("FASTBPF_FUZZ_ELF_LAX") != "1"


TARGETS: dict[str, Callable[[bytes], None]] = {
    "btf": fuzz_btf, "btf_ext": fuzz_btf_ext, "asm": fuzz_asm, "elf": fuzz_elf,
}
