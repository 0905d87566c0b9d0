"""``fastbpf gen skeleton``: a typed Python module for one compiled BPF object.

The generated module declares a class per object (``prog.bpf.o`` ->
``ProgSkel``) whose ``programs``, ``maps`` and ``variables`` namespaces have
one typed attribute per object in the file, so mypy and IDEs know every name;
the dtypes are spelled out as ``np.dtype(...)`` literals. Behaviour lives in
:mod:`fastbpf.gen.runtime`; the module only declares.

Naming rules (also in the README, "Typed skeletons"):

* **Class**: the object file's base name up to its first dot (libbpf's object
  name), split at every character that is not an ASCII letter or digit, each
  part capitalised (the rest of the part kept as is), joined, plus ``Skel``:
  ``prog.bpf.o`` -> ``ProgSkel``, ``count_syscalls.bpf.o`` ->
  ``CountSyscallsSkel``, ``loader-el.o`` -> ``LoaderElSkel``. A name that
  would start with a digit gets the prefix ``Bpf`` (``1x.o`` ->
  ``Bpf1xSkel``); one with no letters or digits is ``BpfSkel``. ``--name``
  overrides it (a Python identifier, not starting with ``_``).
* **Attributes**: the object's names with one leading dot dropped
  (``.rodata`` -> ``rodata``, as bpftool's C skeletons do), every other
  character that is not an ASCII letter, digit or ``_`` replaced by ``_``
  (``.data.custom`` -> ``data_custom``, ``func.static_var`` ->
  ``func_static_var``); ``_`` prefixed when it would start with a digit or be
  empty; ``x`` prefixed when it starts with two underscores (Python would
  mangle such a name inside the class body); ``_`` appended to keywords
  (``class`` -> ``class_``). Names that then collide keep their spelling if
  they needed no change, the others get ``_`` appended until unique, in order
  of the original names. ``ns["original name"]`` always works.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import keyword
import os
import pprint
import re
import textwrap
from typing import Any, Iterable

import numpy as np

from .. import btf as _btf
from ..collection import CollectionSpec, load_collection_spec
from ..elf.objfile import object_name
from ..enums import MapType, ProgramType

__all__ = ["generate", "class_name", "mangle", "SkeletonError"]

#: Module-level names of a generated module that a class name must not shadow.
_RESERVED = frozenset({"np", "npt", "fastbpf", "annotations"})
_SUFFIXES = ("Spec", "Programs", "Maps", "Variables", "ProgramSpecs", "MapSpecs",
             "VariableSpecs", "MapDtypes", "VariableDtypes")


class SkeletonError(ValueError):
    """The skeleton cannot be generated as asked (a bad ``--name``, a dtype numpy cannot spell)."""


def class_name(path: str) -> str:
    """The skeleton class name for the object at *path* (see the module docstring)."""
    base = object_name(path) or os.path.basename(path)
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", base) if p]
    name = "".join(p[0].upper() + p[1:] for p in parts)
    if not name or name[0].isdigit():
        name = "Bpf" + name
    return name + "Skel"


def check_class_name(name: str) -> str:
    """*name* if it can be a generated class name, else :class:`SkeletonError`."""
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_") \
            or name in _RESERVED:
        raise SkeletonError(f"{name!r} cannot name a skeleton class: it must be a Python "
                            f"identifier, not a keyword, not start with '_', and not be one of "
                            f"{', '.join(sorted(_RESERVED))}")
    return name


def _mangle_one(name: str) -> str:
    s = name[1:] if name.startswith(".") else name
    s = re.sub(r"[^A-Za-z0-9_]", "_", s)
    if not s or s[0].isdigit():
        s = "_" + s
    if s.startswith("__"):
        s = "x" + s
    if keyword.iskeyword(s):
        s += "_"
    return s


def mangle(names: Iterable[str]) -> dict[str, str]:
    """Python attribute names for object *names*, unique (see the module docstring)."""
    names = sorted(set(names))
    out: dict[str, str] = {}
    taken: set[str] = set()
    for n in names:  # names that need no change keep it
        if _mangle_one(n) == n:
            out[n] = n
            taken.add(n)
    for n in names:
        if n in out:
            continue
        s = _mangle_one(n)
        while s in taken:
            s += "_"
        out[n] = s
        taken.add(s)
    return {n: out[n] for n in names}


def c_type(t: Any) -> str:
    """A short C spelling of BTF type *t* for comments (``struct pair``, ``__u32``)."""
    T = _btf.types
    if t is None:
        return "?"
    if isinstance(t, T.Typedef):
        return t.name
    if isinstance(t, (T.Struct, T.Union, T.Enum, T.Fwd)):
        if isinstance(t, T.Fwd):
            kw = "union" if t.union else "struct"
        else:
            kw = "struct" if isinstance(t, T.Struct) else \
                "union" if isinstance(t, T.Union) else "enum"
        return f"{kw} {t.name}" if t.name else f"{kw} {{...}}"
    if isinstance(t, T.Const):
        return "const " + c_type(t.type)
    if isinstance(t, T.Volatile):
        return "volatile " + c_type(t.type)
    if isinstance(t, (T.Restrict, T.TypeTag)):
        return c_type(t.type)
    if isinstance(t, T.Pointer):
        return c_type(t.target) + " *"
    if isinstance(t, T.Array):
        return f"{c_type(t.type)}[{t.nelems}]"
    if isinstance(t, T.Datasec):
        return f"section {t.name}"
    if isinstance(t, T.Void):
        return "void"
    return str(t.name) or type(t).__name__.lower()


def _describe(x: Any) -> str:
    """C spelling of a MapSpec key/value (a BTF type or a byte size)."""
    if x is None or isinstance(x, bool):
        return "none"
    if isinstance(x, (int, np.integer)):
        return f"{int(x)} bytes" if int(x) else "none"
    if type(x).__module__.startswith("fastbpf.btf"):
        return c_type(x)
    return str(x)


def _text(s: str) -> str:
    """*s* safe inside a docstring or comment of the generated code."""
    return s.encode("unicode_escape").decode("ascii").replace('"', '\\"')


def dtype_literal(dt: np.dtype | None, indent: str = "") -> str:
    """Source text ``np.dtype(...)`` that evaluates to *dt* (``None`` for None).

    The argument is numpy's own spelling, parsed as a Python literal and
    printed again (so field names from the object can never become code).
    """
    if dt is None:
        return "None"
    r = repr(dt)
    align = r.endswith(", align=True)")
    inner = r[len("dtype("):-len(", align=True)") if align else -1]
    try:
        if not r.startswith("dtype("):
            raise ValueError(r)
        arg = ast.literal_eval(inner)
        same = np.dtype(arg, align=align) == dt
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        same = False
    if not same:
        raise SkeletonError(f"numpy cannot spell dtype {dt!r} as a literal")
    body = pprint.pformat(arg, width=max(40, 88 - len(indent)), sort_dicts=False,
                          compact=True)
    return ("np.dtype(" + body.replace("\n", "\n" + indent + "         ")
            + (", align=True)" if align else ")"))


_SCALARS = {("b", 1): "np.bool_", ("f", 2): "np.float16", ("f", 4): "np.float32",
            ("f", 8): "np.float64"}
for _n in (1, 2, 4, 8):
    _SCALARS[("u", _n)] = f"np.uint{8 * _n}"
    _SCALARS[("i", _n)] = f"np.int{8 * _n}"


def value_type(dt: np.dtype) -> str:
    """The annotation of a variable's ``.value`` with dtype *dt*."""
    if dt.subdtype is not None:
        return f"npt.NDArray[{value_type(dt.subdtype[0])}]"
    if dt.kind == "S":
        return "np.bytes_"
    if dt.kind == "U":
        return "np.str_"
    if dt.kind == "V":
        return "np.void"
    return _SCALARS.get((dt.kind, dt.itemsize), "_t.Any")


def _short(dt: np.dtype | None) -> str:
    """*dt* for a docstring: its name, or "a record" when numpy's spelling is long."""
    if dt is None:
        return "none"
    text = _text(str(dt).replace(", ", ","))  # one word: wrapping never splits it
    return f"``{text}``" if len(text) <= 40 else f"a record of {dt.itemsize} bytes"


def _enum_name(enum: Any, v: Any) -> str:
    try:
        return str(enum(int(v)).name)
    except (ValueError, TypeError):
        return str(v)


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        self.lines.append(line.rstrip())

    def doc(self, text: str, indent: str) -> None:
        body: list[str] = []
        for para in text.strip("\n").split("\n"):
            # Wrap prose only; indented lines (examples) stay as they are.
            if para.startswith(" ") or len(indent) + len(para) <= 92:
                body.append(para)
            else:
                body += textwrap.wrap(para, 92 - len(indent), break_long_words=False,
                                      break_on_hyphens=False)
        if len(body) == 1:
            self(f'{indent}"""{body[0]}"""')
        else:
            self(f'{indent}"""{body[0]}')
            for ln in body[1:]:
                self(f"{indent}{ln}" if ln else "")
            self(f'{indent}"""')


def generate(data: bytes, *, object_path: str, output_path: str | None = None,
             name: str | None = None, embed: bool = True) -> str:
    """The source of the skeleton module for the object *data*.

    *object_path* is where the object lives (its base name names the class
    and the data maps; with ``embed=False`` the module loads it from there,
    relative to *output_path*'s directory). The result depends only on the
    arguments: no time, no absolute path, no version.
    """
    cls = check_class_name(name) if name is not None else class_name(object_path)
    spec = load_collection_spec(data, name=object_name(object_path))
    return _Generator(spec, data, cls, object_path, output_path, embed).run()


class _Generator:
    def __init__(self, spec: CollectionSpec, data: bytes, cls: str, object_path: str,
                 output_path: str | None, embed: bool) -> None:
        self.spec, self.data, self.cls, self.embed = spec, data, cls, embed
        self.file = os.path.basename(object_path)
        self.objname = object_name(object_path)
        out_dir = os.path.dirname(os.path.abspath(output_path)) if output_path else os.getcwd()
        # POSIX separators so the text is the same whatever the platform.
        self.relpath = os.path.relpath(os.path.abspath(object_path), out_dir).replace(os.sep, "/")
        self.progs = mangle(spec.programs)
        self.maps = mangle(spec.maps)
        self.vars = mangle(spec.variables)
        self.w = _Writer()

    def run(self) -> str:
        w, c = self.w, self.cls
        self.header()
        self.namespace("Programs", "fastbpf.ObjectProgram", self.progs, self.program_doc,
                       "Programs of ``{f}``, loaded: a :class:`fastbpf.ObjectProgram` each.",
                       "_rt.Namespace[fastbpf.ObjectProgram]")
        self.namespace("Maps", "fastbpf.Map", self.maps, self.map_doc,
                       "Maps of ``{f}``, created: a :class:`fastbpf.Map` each.\n\n"
                       "Their key and value dtypes are in :class:`{c}MapDtypes`.",
                       "_rt.Namespace[fastbpf.Map]")
        self.namespace("Variables", "", self.vars, self.var_doc,
                       "Global variables of ``{f}``, live (read and written in the map's "
                       "memory).\n\nTheir dtypes are in :class:`{c}VariableDtypes`.",
                       "_rt.VariableNamespace", typed="_rt.TypedVariable")
        self.namespace("ProgramSpecs", "fastbpf.ProgramSpec", self.progs, self.program_doc,
                       "Programs of ``{f}`` before load: a :class:`fastbpf.ProgramSpec` each.",
                       "_rt.Namespace[fastbpf.ProgramSpec]")
        self.namespace("MapSpecs", "fastbpf.MapSpec", self.maps, self.map_doc,
                       "Maps of ``{f}`` before load: a :class:`fastbpf.MapSpec` each "
                       "(resize with ``max_entries``).", "_rt.Namespace[fastbpf.MapSpec]")
        self.namespace("VariableSpecs", "", self.vars, self.var_doc,
                       "Global variables of ``{f}`` before load: ``set()`` the value the "
                       "programs start with (``.rodata`` too).",
                       "_rt.VariableSpecNamespace", typed="_rt.TypedVariableSpec")
        self.dtypes()
        self.classes()
        return "\n".join(w.lines).rstrip("\n") + "\n"

    # -- pieces --------------------------------------------------------------

    def header(self) -> None:
        w, c, f = self.w, self.cls, _text(self.file)
        digest = hashlib.sha256(self.data).hexdigest()
        any_prog = next(iter(self.progs.values()), None)
        any_var = next((py for n, py in self.vars.items()
                        if not self.spec.variables[n].readonly), None)
        w(f"# Code generated by `fastbpf gen skeleton` from {f}. DO NOT EDIT.")
        usage = [f"Typed skeleton of ``{f}``: class :class:`{c}`.", "",
                 f"Object sha256 {digest}, "
                 + ("embedded in this module." if self.embed else
                    f"loaded from ``{_text(self.relpath)}`` beside this module."), "",
                 "Load it, use it, close it::", "",
                 f"    with {c}.load() as skel:"]
        if any_prog:
            usage.append(f"        skel.programs.{any_prog}  # fastbpf.ObjectProgram")
        if any_var:
            usage.append(f"        skel.variables.{any_var}.value")
        usage += ["", "or edit it first (set a variable, resize a map), then load it::", "",
                  f"    spec = {c}.spec()",
                  f"    with spec.load(pin_path=\"/sys/fs/bpf/app\") as skel:", "        ...",
                  ""]
        renamed = [(n, py) for d in (self.progs, self.maps, self.vars) for n, py in d.items()
                   if n != py]
        if renamed:
            usage.append("Attribute names that differ from the object's names:")
            usage.append("")
            usage += [f"* ``{_text(n)}`` -> ``{py}``" for n, py in renamed]
            usage.append("")
        w.doc("\n".join(usage), "")
        w()
        w("from __future__ import annotations")
        w()
        w("import os as _os")
        w("import typing as _t")
        w()
        w("import numpy as np")
        if any(v.dtype.subdtype is not None for v in self.spec.variables.values()):
            w("import numpy.typing as npt")
        w()
        w("import fastbpf")
        w("from fastbpf.gen import runtime as _rt")
        w()
        w("__all__ = [")
        for suffix in ("",) + _SUFFIXES:
            w(f"    {c + suffix!r},")
        w("]")
        w()
        w(f"_OBJECT_NAME: _t.Final = {self.objname!r}")
        if self.embed:
            w(f"_OBJECT_PATH: _t.Final = {self.file!r}  # where it came from; unused")
            b64 = base64.b64encode(self.data).decode("ascii")
            w("_OBJECT: _t.Final[_t.Optional[str]] = (")
            for i in range(0, len(b64), 76):
                w(f'    "{b64[i:i + 76]}"')
            w(")")
        else:
            w(f"_OBJECT_PATH: _t.Final = {self.relpath!r}  # relative to this module")
            w("_OBJECT: _t.Final[_t.Optional[str]] = None  # --no-embed: _OBJECT_PATH is read")
        for what, d in (("PROGRAMS", self.progs), ("MAPS", self.maps), ("VARIABLES", self.vars)):
            w(f"_{what}: _t.Final[_rt.Names] = (")
            for n, py in d.items():
                w(f"    ({py!r}, {n!r}),")
            w(")")
        w()

    def program_doc(self, name: str) -> str:
        p = self.spec.programs[name]
        at = f", attach type {_enum_name(_attach_type(), p.attach_type)}" \
            if p.attach_type is not None else ""
        return (f"``{_text(name)}``: {_enum_name(ProgramType, p.type)} program, section "
                f"``{_text(p.section)}``{at}.")

    def map_doc(self, name: str) -> str:
        m = self.spec.maps[name]
        return (f"``{_text(name)}``: {_enum_name(MapType, m.type)}, max_entries "
                f"{m.max_entries}; key ``{_text(_describe(m.key))}``, value "
                f"``{_text(_describe(m.value))}``.\n\nDtypes: "
                f":attr:`{self.cls}MapDtypes.{self.maps[name]}` (key {_short(m.key_dtype)}, "
                f"value {_short(m.value_dtype)}).")

    def var_doc(self, name: str) -> str:
        v = self.spec.variables[name]
        ro = ", read-only after load" if v.readonly else ""
        return (f"``{_text(name)}`` in ``{_text(v.section)}`` at offset {v.offset}{ro}: "
                f"C ``{_text(c_type(v.type))}``, dtype {_text(str(v.dtype))}.")

    def namespace(self, suffix: str, elem: str, names: dict[str, str], doc: Any, text: str,
                  base: str, typed: str = "") -> None:
        """A namespace class: one attribute of type *elem* (or *typed*[value type]) a name."""
        w = self.w
        w()
        w(f"class {self.cls}{suffix}({base}):")
        w.doc(text.format(f=_text(self.file), c=self.cls), "    ")
        for n, py in names.items():
            if typed:
                ann = f"{typed}[{value_type(self.spec.variables[n].dtype)}]"
            else:
                ann = elem
            w()
            w(f"    {py}: {ann}")
            w.doc(doc(n), "    ")
        w()

    def dtypes(self) -> None:
        w, c, f = self.w, self.cls, _text(self.file)
        w()
        w(f"class {c}MapDtypes:")
        w.doc(f"Key and value dtypes of the maps of ``{f}`` (:class:`fastbpf.gen.runtime."
              f"MapDtypes`).\n\nThe skeleton checks the object against them when it loads "
              f"it.", "    ")
        for n, py in self.maps.items():
            m = self.spec.maps[n]
            w()
            w(f"    {py}: _t.Final = _rt.MapDtypes(")
            w(f"        key={dtype_literal(m.key_dtype, ' ' * 12)},"
              f"  # {_text(_describe(m.key))}")
            w(f"        value={dtype_literal(m.value_dtype, ' ' * 14)},"
              f"  # {_text(_describe(m.value))}")
            w("    )")
            w.doc(f"``{_text(n)}``: key and value dtypes.", "    ")
        w()
        w()
        w(f"class {c}VariableDtypes:")
        w.doc(f"The dtypes of the global variables of ``{f}``.\n\nThe skeleton checks the "
              f"object against them when it loads it.", "    ")
        for n, py in self.vars.items():
            v = self.spec.variables[n]
            w()
            w(f"    {py}: _t.Final = {dtype_literal(v.dtype, ' ' * (len(py) + 16))}"
              f"  # {_text(c_type(v.type))}")
            w.doc(f"``{_text(n)}``: C ``{_text(c_type(v.type))}``.", "    ")
        w()
        w()
        w(f"_MAP_DTYPES: _t.Final[_t.Tuple[_t.Tuple[str, _rt.MapDtypes], ...]] = (")
        for n, py in self.maps.items():
            w(f"    ({n!r}, {c}MapDtypes.{py}),")
        w(")")
        w(f"_VARIABLE_DTYPES: _t.Final[_t.Tuple[_t.Tuple[str, np.dtype[_t.Any]], ...]] = (")
        for n, py in self.vars.items():
            w(f"    ({n!r}, {c}VariableDtypes.{py}),")
        w(")")
        w()

    def classes(self) -> None:
        w, c, f = self.w, self.cls, _text(self.file)
        pin = "pin_path: _t.Union[str, _os.PathLike[str], None] = None"
        kw = "kernel_btf: _t.Any = None, log_level: int = 0"
        w()
        w(f"class {c}Spec(_rt.SkeletonSpec):")
        w.doc(f"``{f}`` before load: edit its programs, maps and variables, then "
              f":meth:`load`.\n\n``collection_spec`` is the underlying "
              f":class:`fastbpf.CollectionSpec`.", "    ")
        w()
        for attr, suffix, what in (("programs", "ProgramSpecs", "programs"),
                                   ("maps", "MapSpecs", "maps"),
                                   ("variables", "VariableSpecs", "global variables")):
            w(f"    {attr}: {c}{suffix}")
            w.doc(f"The {what}, by Python name.", "    ")
        w()
        w("    def __init__(self, spec: fastbpf.CollectionSpec) -> None:")
        w.doc(f"Wrap *spec*, a CollectionSpec of ``{f}`` (use :meth:`{c}.spec`).",
              "        ")
        w("        super().__init__(spec)")
        w("        _rt.check_types(spec, _MAP_DTYPES, _VARIABLE_DTYPES)")
        w(f"        self.programs = {c}ProgramSpecs(spec.programs, _PROGRAMS)")
        w(f"        self.maps = {c}MapSpecs(spec.maps, _MAPS)")
        w(f"        self.variables = {c}VariableSpecs(spec.variables, _VARIABLES)")
        w()
        w(f"    def load(self, {pin},")
        w(f"             *, {kw}) -> {c}:")
        w.doc("Create the maps and load the programs (see "
              ":meth:`fastbpf.CollectionSpec.load`).\n\n*pin_path* is the directory of the "
              "maps pinned by name.", "        ")
        w(f"        return {c}(self._load(pin_path, kernel_btf, log_level))")
        w()
        w()
        w(f"class {c}(_rt.Skeleton):")
        w.doc(f"``{f}``, loaded: typed ``programs``, ``maps`` and ``variables``.\n\n"
              f"``collection`` is the underlying :class:`fastbpf.Collection`; "
              f":meth:`close` (or ``with``) releases it.", "    ")
        w()
        for attr, suffix, what in (("programs", "Programs", "programs"),
                                   ("maps", "Maps", "maps"),
                                   ("variables", "Variables", "global variables")):
            w(f"    {attr}: {c}{suffix}")
            w.doc(f"The {what}, by Python name.", "    ")
        w()
        w("    def __init__(self, collection: fastbpf.Collection) -> None:")
        w.doc(f"Wrap *collection*, loaded from ``{f}`` (use :meth:`load`); the skeleton "
              f"owns it.", "        ")
        w("        super().__init__(collection)")
        w("        try:")
        w(f"            self.programs = {c}Programs(collection.programs, _PROGRAMS)")
        w(f"            self.maps = {c}Maps(collection.maps, _MAPS)")
        w(f"            self.variables = {c}Variables(collection.variables, _VARIABLES)")
        w("        except BaseException:")
        w("            collection.close()")
        w("            raise")
        w()
        w("    @classmethod")
        w(f"    def spec(cls, source: _rt.Source = None) -> {c}Spec:")
        w.doc(f"A fresh, editable spec of ``{f}``.\n\n*source* (a path or the bytes of an "
              f"object) replaces the skeleton's own object; it must declare the same names "
              f"and types (else :class:`fastbpf.gen.runtime.SkeletonMismatchError`).",
              "        ")
        w(f"        return {c}Spec(_rt.read_spec(source, _OBJECT, __file__, _OBJECT_PATH,")
        w(f"                                    _OBJECT_NAME))")
        w()
        w("    @classmethod")
        w(f"    def load(cls, {pin},")
        w(f"             *, {kw},")
        w(f"             source: _rt.Source = None) -> {c}:")
        w.doc(f"``{c}.spec(source).load(pin_path, ...)`` in one call.", "        ")
        w("        return cls.spec(source).load(pin_path, kernel_btf=kernel_btf, "
          "log_level=log_level)")
        w()
        w()


def _attach_type() -> Any:
    from ..enums import AttachType
    return AttachType
