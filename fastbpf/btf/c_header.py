"""BTF -> C: a ``vmlinux.h``-style header, and a readable raw listing.

:func:`c_header` writes every struct, union, enum and typedef of a spec as
C that clang compiles for ``-target bpf`` with the same layout: padding
the compiler would not add by itself becomes anonymous bitfields, structs
that need it are ``__attribute__((packed))``, and names that BTF holds
twice (distinct types with one name) get ``___2``-style suffixes, as
bpftool does. Functions and variables are not emitted.

:func:`raw_listing` prints one line per type, like ``bpftool btf dump``.
"""

from __future__ import annotations

import sys
from typing import Iterable

from ..errors import BTFError
from .spec import Spec
from .types import (
    Array, Composite, Datasec, DeclTag, Enum, Float, Func, FuncProto, Fwd, Int, Pointer,
    Qualifier, Type, Typedef, TypeTag, Union, Var, Void,
)
from .types import Const, Restrict, Volatile

__all__ = ["c_header", "raw_listing", "spec_from_path"]


def spec_from_path(path: str) -> Spec:
    """The BTF of a raw BTF file or of an ELF object's ``.BTF`` section."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"\x7fELF":
        return Spec.from_file(path)
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        sec = ELFFile(f).get_section_by_name(".BTF")
        if sec is None:
            raise BTFError(f"{path} has no .BTF section (compile with -g)")
        return Spec.parse(sec.data())


class _Emitter:
    def __init__(self, types: list[Type]) -> None:
        self.types = types
        self.out: list[str] = []
        self.done: set[int] = set()       # id() of types already defined
        self.busy: set[int] = set()
        self.tag_name: dict[int, str] = {}
        self.ident_name: dict[int, str] = {}
        self.enumerators: dict[tuple[int, int], str] = {}
        self._align: dict[int, int] = {}
        self._packed: dict[int, bool] = {}
        self._name_all()

    # -- names -------------------------------------------------------------------

    def _name_all(self) -> None:
        tags: dict[str, int] = {}
        idents: dict[str, int] = {}

        def unique(space: dict[str, int], name: str) -> str:
            n = space.get(name, 0) + 1
            space[name] = n
            return name if n == 1 else f"{name}___{n}"

        fwd_names = []
        for t in self.types:
            if isinstance(t, (Composite, Enum)) and t.name:
                self.tag_name[id(t)] = unique(tags, t.name)
            elif isinstance(t, Fwd):
                fwd_names.append(t)
            elif isinstance(t, Typedef):
                # The kernel's va_list layout differs from the BPF target's
                # builtin: keep the kernel's under another name.
                name = t.name + "___btf" if t.name in _BUILTINS else t.name
                self.ident_name[id(t)] = unique(idents, name)
        for t in fwd_names:
            # A forward declaration names the struct of the same name.
            self.tag_name[id(t)] = t.name
            tags.setdefault(t.name, 1)
        for t in self.types:
            if isinstance(t, Enum):
                for i, v in enumerate(t.values):
                    self.enumerators[(id(t), i)] = unique(idents, v.name)

    def _tag(self, t: Type) -> str:
        name = self.tag_name.get(id(t), t.name)
        if isinstance(t, Enum):
            return f"enum {name}"
        if isinstance(t, Fwd):
            return f"{'union' if t.union else 'struct'} {name}"
        return f"{'union' if isinstance(t, Union) else 'struct'} {name}"

    # -- layout --------------------------------------------------------------------

    def align(self, t: Type) -> int:
        while isinstance(t, Qualifier):
            t = t.type
        key = id(t)
        got = self._align.get(key)
        if got is not None:
            return got
        a = 1
        if isinstance(t, (Int, Float)):
            a = min(t.size, 16) or 1
        elif isinstance(t, Enum):
            a = t.size or 1
        elif isinstance(t, Pointer):
            a = 8
        elif isinstance(t, Array):
            a = self.align(t.type)
        elif isinstance(t, Composite):
            a = 1 if self.packed(t) else max([self._natural(m.type) for m in t.members] or [1])
        self._align[key] = a
        return a

    def _natural(self, t: Type) -> int:
        try:
            return self.align(t)
        except BTFError:
            return 1

    def packed(self, t: Composite) -> bool:
        got = self._packed.get(id(t))
        if got is not None:
            return got
        self._packed[id(t)] = False   # provisional, for cycles through arrays of itself
        packed = False
        maxa = 1
        for m in t.members:
            a = self._natural(m.type)
            maxa = max(maxa, a)
            if m.bitfield_size:
                unit = 8 * _size(m.type)
                if unit and (m.bit_offset % unit) + m.bitfield_size > unit:
                    packed = True
            elif m.bit_offset % (8 * a):
                packed = True
        if t.size % maxa:
            packed = True
        self._packed[id(t)] = packed
        return packed

    # -- dependency order ---------------------------------------------------------

    def need_complete(self, t: Type) -> None:
        """Make sure *t* can be used by value here."""
        while isinstance(t, (Const, Volatile, Restrict, TypeTag)):
            t = t.type
        if isinstance(t, Typedef):
            self.emit_typedef(t)
            self.need_complete(t.type)
        elif isinstance(t, Array):
            self.need_complete(t.type)
        elif isinstance(t, Composite):
            if t.name:
                self.emit_composite(t)
            else:
                for m in t.members:
                    self.need_complete(m.type)
        elif isinstance(t, Enum):
            if t.name:
                self.emit_enum(t)
        elif isinstance(t, Pointer):
            self.need_ref(t.target)
        elif isinstance(t, FuncProto):
            self.need_ref(t.return_type)
            for p in t.params:
                self.need_ref(p.type)

    def need_ref(self, t: Type) -> None:
        """Make sure *t* can be named behind a pointer here."""
        while isinstance(t, (Const, Volatile, Restrict, TypeTag)):
            t = t.type
        if isinstance(t, Typedef):
            self.emit_typedef(t)
        elif isinstance(t, Composite) and t.name:
            return  # forward-declared at the top
        else:
            self.need_complete(t)

    def emit_typedef(self, t: Typedef) -> None:
        if id(t) in self.done or id(t) in self.busy:
            return
        self.busy.add(id(t))
        target = t.type
        if not (isinstance(target, (Composite, Fwd)) and target.name):
            self.need_complete(target)
        self.out.append(f"typedef {self.decl(target, self.ident_name.get(id(t), t.name), 0)};\n")
        self.busy.discard(id(t))
        self.done.add(id(t))

    def emit_enum(self, t: Enum) -> None:
        if id(t) in self.done:
            return
        self.done.add(id(t))
        self.out.append(f"{self.enum_body(t, 0)};\n\n")

    def emit_composite(self, t: Composite) -> None:
        if id(t) in self.done or id(t) in self.busy:
            return
        self.busy.add(id(t))
        for m in t.members:
            self.need_complete(m.type)
        self.out.append(f"{self.composite_body(t, 0)};\n\n")
        self.busy.discard(id(t))
        self.done.add(id(t))

    # -- declarations -------------------------------------------------------------

    def enum_body(self, t: Enum, indent: int) -> str:
        head = self._tag(t) if t.name else "enum"
        if not t.values:
            return head
        pad = "\t" * (indent + 1)
        lines = []
        for i, v in enumerate(t.values):
            val = int(v.value)
            suffix = ""
            if val > 0x7FFFFFFF:
                suffix = "ULL"
            elif val < -0x80000000:
                suffix = "LL"
            lines.append(f"{pad}{self.enumerators.get((id(t), i), v.name)} = {val}{suffix},")
        attr = " __attribute__((packed))" if t.size < 4 else ""
        return head + " {\n" + "\n".join(lines) + "\n" + "\t" * indent + "}" + attr

    def composite_body(self, t: Composite, indent: int) -> str:
        head = self._tag(t) if t.name else ("union" if isinstance(t, Union) else "struct")
        pad = "\t" * (indent + 1)
        lines: list[str] = []
        packed = self.packed(t)
        cur = 0
        is_union = isinstance(t, Union)
        for m in t.members:
            if not is_union and m.bit_offset > cur:
                lines.extend(pad + p for p in _padding(cur, m.bit_offset))
            inner = m.name
            text = self.decl(m.type, inner, indent + 1)
            if m.bitfield_size:
                text += f": {m.bitfield_size}"
                end = m.bit_offset + m.bitfield_size
            else:
                end = m.bit_offset + 8 * _size(m.type)
            lines.append(f"{pad}{text};")
            cur = max(cur, end) if not is_union else 0
        if not is_union and 8 * t.size > cur:
            lines.extend(pad + p for p in _padding(cur, 8 * t.size))
        attr = " __attribute__((packed))" if packed else ""
        return head + " {\n" + "\n".join(lines) + ("\n" if lines else "") + \
            "\t" * indent + "}" + attr

    def decl(self, t: Type, inner: str, indent: int) -> str:
        """C declaration of *inner* (a name, or a declarator) of type *t*."""
        for _ in range(256):
            if isinstance(t, (Const, Volatile, Restrict)):
                q = {Const: "const", Volatile: "volatile", Restrict: "restrict"}[type(t)]
                if not (inner == q or inner.startswith(q + " ")):
                    inner = f"{q} {inner}" if inner else q
                t = t.type
            elif isinstance(t, TypeTag):
                t = t.type
            elif isinstance(t, Pointer):
                target = t.target
                while isinstance(target, TypeTag):
                    target = target.type
                inner = f"(*{inner})" if isinstance(target, (Array, FuncProto)) else f"*{inner}"
                t = target
            elif isinstance(t, Array):
                inner = f"{inner}[{t.nelems}]"
                t = t.type
            elif isinstance(t, FuncProto):
                params = []
                for p in t.params:
                    if isinstance(p.type, Void) and not p.name:
                        params.append("...")
                    else:
                        params.append(self.decl(p.type, p.name, indent))
                inner = f"{inner}({', '.join(params) or 'void'})"
                t = t.return_type
            else:
                break
        base = self.base_name(t, indent)
        return f"{base} {inner}" if inner else base

    def base_name(self, t: Type, indent: int) -> str:
        if isinstance(t, Void):
            return "void"
        if isinstance(t, (Int, Float)):
            return t.name
        if isinstance(t, Typedef):
            return self.ident_name.get(id(t), t.name)
        if isinstance(t, Enum):
            return self._tag(t) if t.name else self.enum_body(t, indent)
        if isinstance(t, Composite):
            return self._tag(t) if t.name else self.composite_body(t, indent)
        if isinstance(t, Fwd):
            return self._tag(t)
        raise BTFError(f"{t!r} cannot be written as a C type")

    # -- the header -------------------------------------------------------------------

    def header(self, guard: str) -> str:
        fwd = sorted({self._tag(t) for t in self.types
                      if (isinstance(t, (Composite, Fwd))) and t.name})
        self.out += [f"#ifndef {guard}\n#define {guard}\n\n",
                     "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute push "
                     "(__attribute__((preserve_access_index)), apply_to = record)\n#endif\n\n"]
        self.out += [f"{f};\n" for f in fwd]
        self.out.append("\n")
        # Anonymous enums used as a type are written where they are used.
        used = {id(r) for t in self.types for r in t.references()
                if isinstance(r, Enum) and not r.name}
        for t in self.types:
            if isinstance(t, Enum) and not t.name and t.values and id(t) not in used:
                self.out.append(f"{self.enum_body(t, 0)};\n\n")
            elif isinstance(t, Enum) and t.name:
                self.emit_enum(t)
        for t in self.types:
            if isinstance(t, Composite) and t.name:
                self.emit_composite(t)
            elif isinstance(t, Typedef):
                self.emit_typedef(t)
        self.out += ["\n#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute pop\n"
                     "#endif\n\n", f"#endif /* {guard} */\n"]
        return "".join(self.out)


#: Typedefs the compiler defines itself (and would refuse to see redefined).
_BUILTINS = frozenset({"__builtin_va_list"})


def _size(t: Type) -> int:
    try:
        return int(t.size)
    except BTFError:
        return 0


def _padding(start: int, end: int) -> list[str]:
    """Anonymous bitfields covering bits [start, end): they add no alignment."""
    out = []
    a = start
    while a < end:
        if a % 8:
            k = min(8 - a % 8, end - a)
            out.append(f"unsigned char: {k};")
            a += k
            continue
        for bits, ctype in ((64, "long"), (32, "int"), (16, "short"), (8, "char")):
            if a % bits == 0 and a + bits <= end:
                out.append(f"{ctype}: {bits};")
                a += bits
                break
        else:
            k = end - a
            out.append(f"unsigned char: {k};")
            a += k
    return out


def c_header(spec: Spec | Iterable[Type], guard: str = "__VMLINUX_H__") -> str:
    """A C header declaring every struct, union, enum and typedef of *spec*."""
    types = list(spec)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20000))  # deep chains of by-value members
    try:
        return _Emitter(types).header(guard)
    finally:
        sys.setrecursionlimit(old)


def raw_listing(spec: Spec) -> Iterable[str]:
    """One line per type, in the style of ``bpftool btf dump ... format raw``."""
    for t in spec:
        tid = spec.type_id(t)
        kind = t.kind.name
        name = f"'{t.name}'" if t.name else "'(anon)'"
        if isinstance(t, Int):
            yield (f"[{tid}] INT {name} size={t.size} bits_offset={t.bit_offset} "
                   f"nr_bits={t.bits} encoding={_int_enc(t)}")
        elif isinstance(t, Float):
            yield f"[{tid}] FLOAT {name} size={t.size}"
        elif isinstance(t, Pointer):
            yield f"[{tid}] PTR '(anon)' type_id={_tid(spec, t.target)}"
        elif isinstance(t, Array):
            yield (f"[{tid}] ARRAY '(anon)' type_id={_tid(spec, t.type)} "
                   f"index_type_id={_tid(spec, t.index_type)} nr_elems={t.nelems}")
        elif isinstance(t, Composite):
            yield f"[{tid}] {kind} {name} size={t.size} vlen={len(t.members)}"
            for m in t.members:
                bf = f" bitfield_size={m.bitfield_size}" if m.bitfield_size else ""
                yield (f"\t'{m.name or '(anon)'}' type_id={_tid(spec, m.type)} "
                       f"bits_offset={m.bit_offset}{bf}")
        elif isinstance(t, Enum):
            sign = "SIGNED" if t.signed else "UNSIGNED"
            yield f"[{tid}] {kind} {name} encoding={sign} size={t.size} vlen={len(t.values)}"
            suffix = "ULL" if t.kind.name == "ENUM64" and not t.signed else \
                "LL" if t.kind.name == "ENUM64" else ""
            for v in t.values:
                yield f"\t'{v.name}' val={v.value}{suffix}"
        elif isinstance(t, Fwd):
            yield f"[{tid}] FWD {name} fwd_kind={'union' if t.union else 'struct'}"
        elif isinstance(t, (Qualifier, Var, Func, DeclTag)):
            extra = ""
            if isinstance(t, Var):
                extra = f", linkage={t.linkage.name.lower()}"
            elif isinstance(t, Func):
                extra = f" linkage={t.linkage.name.lower()}"
            elif isinstance(t, DeclTag):
                extra = f" component_idx={t.component_idx}"
            yield f"[{tid}] {kind} {name} type_id={_tid(spec, t.type)}{extra}"
        elif isinstance(t, FuncProto):
            yield (f"[{tid}] FUNC_PROTO '(anon)' ret_type_id={_tid(spec, t.return_type)} "
                   f"vlen={len(t.params)}")
            for p in t.params:
                yield f"\t'{p.name or '(anon)'}' type_id={_tid(spec, p.type)}"
        elif isinstance(t, Datasec):
            yield f"[{tid}] DATASEC {name} size={t.size} vlen={len(t.vars)}"
            for v in t.vars:
                what = f" ({v.type.kind.name} '{v.type.name}')" if v.type.name else ""
                yield f"\ttype_id={_tid(spec, v.type)} offset={v.offset} size={v.size}{what}"
        else:
            yield f"[{tid}] {kind} {name}"


def _tid(spec: Spec, t: Type) -> int:
    try:
        return spec.type_id(t)
    except BTFError:
        return -1


def _int_enc(t: Int) -> str:
    if t.signed:
        return "SIGNED"
    if t.is_char:
        return "CHAR"
    return "BOOL" if t.is_bool else "(none)"

