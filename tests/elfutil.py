"""Reading the committed test objects in ``testdata/`` (pyelftools)."""

from __future__ import annotations

import io
import os

from elftools.elf.elffile import ELFFile

from fastbpf import btf

__all__ = ["TESTDATA", "data_path", "sections", "section", "btf_spec"]

TESTDATA = os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir, "testdata"))


def data_path(name: str) -> str:
    """The path of ``testdata/<name>``."""
    return os.path.join(TESTDATA, name)


def sections(obj: str | bytes, *names: str) -> list[bytes]:
    """The contents of sections *names* of the ELF object *obj* (a path,
    or the object's bytes). A missing section raises KeyError."""
    f = io.BytesIO(obj) if isinstance(obj, bytes) else open(obj, "rb")
    with f:
        elf = ELFFile(f)
        out = []
        for n in names:
            sec = elf.get_section_by_name(n)
            if sec is None:
                raise KeyError(f"{obj if isinstance(obj, str) else 'object'} has no section {n}")
            out.append(sec.data())
        return out


def section(obj: str | bytes, name: str) -> bytes:
    """The contents of section *name* of the ELF object *obj*."""
    return sections(obj, name)[0]


def btf_spec(obj: str | bytes) -> btf.Spec:
    """The ``.BTF`` section of *obj*, parsed."""
    return btf.Spec.parse(section(obj, ".BTF"))
