"""The BTF type model: one class per kind.

Types refer to each other by object, not by id, so a graph of types can be
built, edited and moved between specs freely; ids exist only inside a
:class:`~fastbpf.btf.Spec`. Types that come from a parsed blob resolve their
references on first access (a pointer to ``task_struct`` does not decode
``task_struct`` until someone follows it), which is what keeps loading the
kernel's 126k types cheap.

Equality between types is identity: graphs can be cyclic through pointers,
and two specs may legitimately hold distinct but identical-looking types.
Compare specs with ``==`` (see :meth:`Spec.__eq__`) to compare content.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

from ..errors import BTFError

if TYPE_CHECKING:  # pragma: no cover
    from .spec import Spec

__all__ = [
    "Kind", "IntEncoding", "Linkage", "Type", "Void", "VOID", "Int", "Pointer",
    "Array", "Composite", "Struct", "Union", "Member", "Enum", "Enum64",
    "EnumValue", "Fwd", "Typedef", "Volatile", "Const", "Restrict", "Func",
    "FuncProto", "Param", "Var", "Datasec", "VarSecinfo", "Float", "DeclTag",
    "TypeTag", "Qualifier", "skip_qualifiers", "resolve_size", "MAX_RESOLVE_DEPTH",
]

#: Longest chain of typedefs/qualifiers/arrays followed before giving up;
#: the kernel uses 32 for the same purpose.
MAX_RESOLVE_DEPTH = 32


class Kind(enum.IntEnum):
    """BTF_KIND_* numbers, as in the kernel's ``include/uapi/linux/btf.h``."""

    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


class IntEncoding(enum.IntFlag):
    """BTF_INT_* encoding bits of an integer type."""

    NONE = 0
    SIGNED = 1
    CHAR = 2
    BOOL = 4


class Linkage(enum.IntEnum):
    """Linkage of a function (BTF_FUNC_*) or variable (BTF_VAR_*)."""

    STATIC = 0
    GLOBAL = 1
    EXTERN = 2


class Member(NamedTuple):
    """A member of a struct or union.

    ``bit_offset`` counts from the start of the enclosing type;
    ``bitfield_size`` is 0 for an ordinary member.
    """

    name: str
    type: "Type"
    bit_offset: int
    bitfield_size: int = 0


class EnumValue(NamedTuple):
    """One enumerator: its name and (signed or unsigned) value."""

    name: str
    value: int


class Param(NamedTuple):
    """A function parameter (``name`` may be empty)."""

    name: str
    type: "Type"


class VarSecinfo(NamedTuple):
    """A variable placed in a DATASEC at ``offset`` with ``size`` bytes."""

    type: "Type"
    offset: int
    size: int


class _Ref:
    """A reference to another type, resolved through the spec on first use.

    A parsed spec stores the referenced type id (an int) in the slot; reading
    the attribute swaps it for the Type object.
    """

    __slots__ = ("slot",)

    def __init__(self, slot: str):
        self.slot = slot

    def __set_name__(self, owner: Any, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj: Any, cls: Any = None) -> Any:
        if obj is None:
            return self
        value = getattr(obj, self.slot)
        if type(value) is int:
            value = obj._spec.type_by_id(value)
            setattr(obj, self.slot, value)
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        if not isinstance(value, Type):
            raise TypeError(f"expected a btf Type, got {type(value).__name__}")
        setattr(obj, self.slot, value)


class _LazyList:
    """A list attribute (members, values, params, vars) decoded on first use."""

    __slots__ = ("slot",)

    def __init__(self) -> None:
        self.slot = ""

    def __set_name__(self, owner: Any, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj: Any, cls: Any = None) -> Any:
        if obj is None:
            return self
        value = getattr(obj, self.slot)
        if value is None:
            value = obj._spec._decode_items(obj)
            setattr(obj, self.slot, value)
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj, self.slot, list(value))


class Type:
    """Base of all BTF types.

    Attributes:
        name: the type's name, ``""`` for anonymous types.
        id: the type id in the spec the type was decoded from or added to
            (``None`` for a type in no spec yet).
    """

    __slots__ = ("name", "id", "_spec", "__weakref__")
    kind: Kind = Kind.UNKN

    def __init__(self, name: str = ""):
        self.name = name
        self.id: int | None = None
        self._spec: Spec | None = None

    @property
    def size(self) -> int:
        """Size in bytes, following typedefs, qualifiers and arrays."""
        return resolve_size(self)

    def references(self) -> list["Type"]:
        """The types this type refers to directly, in encoding order."""
        return []

    def copy(self) -> Type:
        """A shallow copy: the same references, no spec, no id."""
        cls = type(self)
        new = cls.__new__(cls)
        for klass in cls.__mro__:
            for slot in getattr(klass, "__slots__", ()):
                if slot in ("id", "_spec", "__weakref__") or slot.startswith("__"):
                    continue
                if hasattr(self, slot) and not isinstance(getattr(klass, slot.lstrip("_"), None),
                                                          (_Ref, _LazyList)):
                    object.__setattr__(new, slot, getattr(self, slot))
        # Resolve lazy attributes through their descriptors so the copy
        # never depends on this type's spec.
        for klass in cls.__mro__:
            for attr, desc in vars(klass).items():
                if isinstance(desc, (_Ref, _LazyList)):
                    value = getattr(self, attr)
                    setattr(new, attr, list(value) if isinstance(desc, _LazyList) else value)
        new.id = None
        new._spec = None
        return new

    def _describe(self) -> str:
        return f"{self.kind.name.lower()} {self.name!r}" if self.name else f"anonymous {self.kind.name.lower()}"

    def __repr__(self) -> str:
        where = f" id={self.id}" if self.id is not None else ""
        return f"<{type(self).__name__} {self.name!r}{where}>"


class Void(Type):
    """The void type (id 0 in every spec)."""

    __slots__ = ()
    kind = Kind.UNKN

    def __init__(self) -> None:
        super().__init__("")
        self.id = 0

    @property
    def size(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "<Void>"


#: The one void type.
VOID = Void()


class Int(Type):
    """An integer type (also char and bool, told apart by ``encoding``).

    ``bits`` and ``bit_offset`` are the legacy bitfield description of the
    INT record; ordinary integers have ``bits == 8 * size`` and offset 0.
    """

    __slots__ = ("_size", "encoding", "bits", "bit_offset")
    kind = Kind.INT

    def __init__(self, name: str, size: int, encoding: IntEncoding = IntEncoding.NONE,
                 bits: int | None = None, bit_offset: int = 0):
        super().__init__(name)
        self._size = size
        self.encoding = IntEncoding(encoding)
        self.bits = 8 * size if bits is None else bits
        self.bit_offset = bit_offset

    @property
    def size(self) -> int:
        return self._size

    @size.setter
    def size(self, value: int) -> None:
        self._size = value

    @property
    def signed(self) -> bool:
        return bool(self.encoding & IntEncoding.SIGNED)

    @property
    def is_char(self) -> bool:
        """True for plain ``char`` (by CHAR encoding or by name)."""
        return self._size == 1 and (bool(self.encoding & IntEncoding.CHAR) or self.name == "char")

    @property
    def is_bool(self) -> bool:
        return bool(self.encoding & IntEncoding.BOOL)


class Float(Type):
    """A floating point type."""

    __slots__ = ("_size",)
    kind = Kind.FLOAT

    def __init__(self, name: str, size: int):
        super().__init__(name)
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    @size.setter
    def size(self, value: int) -> None:
        self._size = value


class Pointer(Type):
    """A pointer to ``target``. Pointers are 8 bytes: BPF is a 64-bit target."""

    __slots__ = ("_target",)
    kind = Kind.PTR
    target = _Ref("_target")

    def __init__(self, target: Type):
        super().__init__("")
        self.target = target

    @property
    def size(self) -> int:
        return 8

    def references(self) -> list[Type]:
        return [self.target]


class Array(Type):
    """An array of ``nelems`` elements of ``type``, indexed by ``index_type``."""

    __slots__ = ("_type", "_index_type", "nelems")
    kind = Kind.ARRAY
    type = _Ref("_type")
    index_type = _Ref("_index_type")

    def __init__(self, type: Type, nelems: int, index_type: Type | None = None):
        super().__init__("")
        self.type = type
        self.index_type = index_type if index_type is not None else Int("__ARRAY_SIZE_TYPE__", 4)
        self.nelems = nelems

    def references(self) -> list[Type]:
        return [self.type, self.index_type]


class Composite(Type):
    """Common base of :class:`Struct` and :class:`Union`."""

    __slots__ = ("_size", "_members")
    members = _LazyList()

    def __init__(self, name: str, size: int, members: Iterable[Member] = ()) -> None:
        super().__init__(name)
        self._size = size
        self.members = [m if isinstance(m, Member) else Member(*m) for m in members]

    @property
    def size(self) -> int:
        return self._size

    @size.setter
    def size(self, value: int) -> None:
        self._size = value

    def member(self, name: str) -> Member:
        """The member called *name*, looking into anonymous members too.

        The returned member's ``bit_offset`` is relative to this type.
        """
        for m in self.members:
            if m.name == name:
                found: Member = m
                return found
        for m in self.members:
            if not m.name:
                inner = skip_qualifiers(m.type)
                if isinstance(inner, Composite):
                    try:
                        found = inner.member(name)
                    except KeyError:
                        continue
                    return found._replace(bit_offset=found.bit_offset + m.bit_offset)
        raise KeyError(f"{self._describe()} has no member {name!r}")

    def references(self) -> list[Type]:
        return [m.type for m in self.members]


class Struct(Composite):
    """A struct: ``members`` is a list of :class:`Member`."""

    __slots__ = ()
    kind = Kind.STRUCT


class Union(Composite):
    """A union: ``members`` is a list of :class:`Member` (usually at offset 0)."""

    __slots__ = ()
    kind = Kind.UNION


class Enum(Type):
    """An enum of 1, 2, 4 or 8 bytes whose values fit in 32 bits.

    ``signed`` (the kind flag) says whether values are signed.
    """

    __slots__ = ("_size", "_values", "signed")
    kind = Kind.ENUM
    values = _LazyList()

    def __init__(self, name: str, size: int = 4, values: Iterable[EnumValue] = (),
                 signed: bool = False) -> None:
        super().__init__(name)
        self._size = size
        self.values = [v if isinstance(v, EnumValue) else EnumValue(*v) for v in values]
        self.signed = signed

    @property
    def size(self) -> int:
        return self._size

    @size.setter
    def size(self, value: int) -> None:
        self._size = value

    def name_of(self, value: int) -> str | None:
        """The name of the first enumerator equal to *value*, or None."""
        for v in self.values:
            if v.value == value:
                return str(v.name)
        return None


class Enum64(Enum):
    """An enum whose values need 64 bits (BTF_KIND_ENUM64)."""

    __slots__ = ()
    kind = Kind.ENUM64

    def __init__(self, name: str, size: int = 8, values: Iterable[EnumValue] = (),
                 signed: bool = False) -> None:
        super().__init__(name, size, values, signed)


class Fwd(Type):
    """A forward declaration of a struct (or union, if ``union``)."""

    __slots__ = ("union",)
    kind = Kind.FWD

    def __init__(self, name: str, union: bool = False):
        super().__init__(name)
        self.union = union

    @property
    def size(self) -> int:
        raise BTFError(f"forward declaration {self.name!r} has no size")


class Qualifier(Type):
    """Base of the types that only decorate another: typedef, const, ..."""

    __slots__ = ("_type",)
    type = _Ref("_type")

    def __init__(self, type: Type, name: str = ""):
        super().__init__(name)
        self.type = type

    def references(self) -> list[Type]:
        return [self.type]


class Typedef(Qualifier):
    """``typedef type name``."""

    __slots__ = ()
    kind = Kind.TYPEDEF

    def __init__(self, name: str, type: Type):
        super().__init__(type, name)


class Volatile(Qualifier):
    """``volatile type``."""

    __slots__ = ()
    kind = Kind.VOLATILE


class Const(Qualifier):
    """``const type``."""

    __slots__ = ()
    kind = Kind.CONST


class Restrict(Qualifier):
    """``restrict type``."""

    __slots__ = ()
    kind = Kind.RESTRICT


class TypeTag(Qualifier):
    """``type __attribute__((btf_type_tag(name)))``."""

    __slots__ = ()
    kind = Kind.TYPE_TAG

    def __init__(self, name: str, type: Type):
        super().__init__(type, name)


class FuncProto(Type):
    """A function signature: ``return_type`` and ``params``.

    A trailing parameter with void type and no name marks varargs.
    """

    __slots__ = ("_return_type", "_params")
    kind = Kind.FUNC_PROTO
    return_type = _Ref("_return_type")
    params = _LazyList()

    def __init__(self, return_type: Type, params: Iterable[Param] = ()) -> None:
        super().__init__("")
        self.return_type = return_type
        self.params = [p if isinstance(p, Param) else Param(*p) for p in params]

    @property
    def size(self) -> int:
        raise BTFError("a function prototype has no size")

    def references(self) -> list[Type]:
        return [self.return_type] + [p.type for p in self.params]


class Func(Type):
    """A function: its name, prototype (``type``) and linkage."""

    __slots__ = ("_type", "linkage")
    kind = Kind.FUNC
    type = _Ref("_type")

    def __init__(self, name: str, type: Type, linkage: Linkage = Linkage.STATIC):
        super().__init__(name)
        self.type = type
        self.linkage = Linkage(linkage) if linkage in (0, 1, 2) else linkage

    @property
    def size(self) -> int:
        raise BTFError(f"function {self.name!r} has no size")

    def references(self) -> list[Type]:
        return [self.type]


class Var(Type):
    """A global variable: name, type and linkage."""

    __slots__ = ("_type", "linkage")
    kind = Kind.VAR
    type = _Ref("_type")

    def __init__(self, name: str, type: Type, linkage: Linkage = Linkage.GLOBAL):
        super().__init__(name)
        self.type = type
        self.linkage = Linkage(linkage) if linkage in (0, 1, 2) else linkage

    def references(self) -> list[Type]:
        return [self.type]


class Datasec(Type):
    """A data section (``.data``, ``.bss``, ...) and the variables in it.

    In object files straight from clang ``size`` and the offsets are 0: the
    loader fills them in from the ELF symbol table.
    """

    __slots__ = ("_size", "_vars")
    kind = Kind.DATASEC
    vars = _LazyList()

    def __init__(self, name: str, size: int = 0, vars: Iterable[VarSecinfo] = ()) -> None:
        super().__init__(name)
        self._size = size
        self.vars = [v if isinstance(v, VarSecinfo) else VarSecinfo(*v) for v in vars]

    @property
    def size(self) -> int:
        return self._size

    @size.setter
    def size(self, value: int) -> None:
        self._size = value

    def references(self) -> list[Type]:
        return [v.type for v in self.vars]


class DeclTag(Type):
    """``__attribute__((btf_decl_tag(name)))`` on ``type``.

    ``component_idx`` is -1 for the type itself, else the index of the
    member or parameter that carries the tag.
    """

    __slots__ = ("_type", "component_idx")
    kind = Kind.DECL_TAG
    type = _Ref("_type")

    def __init__(self, name: str, type: Type, component_idx: int = -1):
        super().__init__(name)
        self.type = type
        self.component_idx = component_idx

    @property
    def size(self) -> int:
        raise BTFError(f"decl tag {self.name!r} has no size")

    def references(self) -> list[Type]:
        return [self.type]


#: Classes by kind, for the decoder.
KIND_CLASSES: dict[int, type] = {
    Kind.INT: Int, Kind.PTR: Pointer, Kind.ARRAY: Array, Kind.STRUCT: Struct,
    Kind.UNION: Union, Kind.ENUM: Enum, Kind.FWD: Fwd, Kind.TYPEDEF: Typedef,
    Kind.VOLATILE: Volatile, Kind.CONST: Const, Kind.RESTRICT: Restrict,
    Kind.FUNC: Func, Kind.FUNC_PROTO: FuncProto, Kind.VAR: Var,
    Kind.DATASEC: Datasec, Kind.FLOAT: Float, Kind.DECL_TAG: DeclTag,
    Kind.TYPE_TAG: TypeTag, Kind.ENUM64: Enum64,
}

_TRANSPARENT = (Typedef, Volatile, Const, Restrict, TypeTag)


def skip_qualifiers(t: Type, typedefs: bool = True, vars: bool = False) -> Type:
    """Follow typedefs (unless *typedefs* is false), const, volatile,
    restrict and type tags (and variables, with *vars*) down to the type
    they decorate."""
    kinds: tuple[type, ...] = _TRANSPARENT if typedefs else (Volatile, Const, Restrict, TypeTag)
    if vars:
        kinds = kinds + (Var,)
    for _ in range(MAX_RESOLVE_DEPTH):
        if not isinstance(t, kinds):
            return t
        t = t.type  # type: ignore[attr-defined]
    raise BTFError(f"chain of qualifiers/typedefs longer than {MAX_RESOLVE_DEPTH} at {t!r}")


def resolve_size(t: Type) -> int:
    """Size in bytes of *t*, following qualifiers, typedefs and arrays."""
    mult = 1
    for _ in range(MAX_RESOLVE_DEPTH):
        if isinstance(t, _TRANSPARENT) or isinstance(t, Var):
            t = t.type
        elif isinstance(t, Array):
            mult *= t.nelems
            t = t.type
        elif isinstance(t, (Int, Float, Composite, Enum, Datasec)):
            return mult * t._size
        elif isinstance(t, Pointer):
            return mult * 8
        elif isinstance(t, Void):
            return 0
        else:
            raise BTFError(f"{t._describe()} has no size")
    raise BTFError(f"chain of types longer than {MAX_RESOLVE_DEPTH} at {t!r}")


def _any(x: Any) -> Any:  # pragma: no cover - typing helper
    return x
