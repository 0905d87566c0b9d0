"""BTF, the BPF Type Format: types, kernel BTF, numpy dtypes, formatting.

- :class:`Spec` holds the types of one BTF blob: ``Spec.parse(raw)``,
  ``spec.type_by_name("task_struct")``, ``spec.type_by_id(i)``, ``iter(spec)``,
  ``spec.encode()``.
- One class per BTF kind (:mod:`fastbpf.btf.types`), with :class:`Kind`.
- :func:`load_kernel_spec` gives the running kernel's BTF (cached).
- :func:`to_dtype` turns a type into a numpy dtype with the C layout;
  :func:`format` turns a value into plain, JSON-ready Python data.
- :class:`ExtInfo` decodes ``.BTF.ext`` (func_info, line_info, CO-RE relocations).
- :class:`Handle` is a BTF object loaded into the kernel (:func:`btf_ids`
  lists them all);
  :func:`build_map_btf` prepares the BTF for a map's key and value.
"""

from __future__ import annotations

from ..errors import BTFError, BTFLoadError
from . import types as _types
from .types import *  # noqa: F401,F403
from .spec import Spec, parse_header
from .ext import ExtInfo, FuncInfo, LineInfo, CoreRelo, CoreReloKind
from .kernel import load_kernel_spec, kernel_module_names, flush_kernel_specs
from .dtype import to_dtype
from .fmt import format
from .handle import BTFInfo, Handle, btf_ids, build_map_btf, copy_types

__all__ = [
    "BTFError", "BTFLoadError", "Spec", "parse_header", "ExtInfo", "FuncInfo", "LineInfo",
    "CoreRelo", "CoreReloKind", "load_kernel_spec", "kernel_module_names",
    "flush_kernel_specs", "to_dtype", "format", "Handle", "BTFInfo", "btf_ids", "build_map_btf",
    "copy_types",
]
# `+=` of another module's __all__ is a form mypy understands (the export list it sees).
__all__ += _types.__all__
