"""What generated skeletons build on (``fastbpf gen skeleton``).

A generated module declares names and types (one attribute per program, map
and variable, dtypes spelled out as literals); the behaviour lives here, so a
fix to it needs no regeneration. Everything here is public because generated
code calls it, but users rarely need it directly: :class:`TypedVariable` and
:class:`MapDtypes` are the types they see.
"""

from __future__ import annotations

import base64
import os
from typing import (TYPE_CHECKING, Any, Callable, Generic, Iterator, Mapping, NamedTuple,
                    Sequence, Tuple, TypeVar)

import numpy as np

from ..collection import Collection, CollectionSpec, load_collection_spec
from ..variables import Variable, VariableSpec

if TYPE_CHECKING:
    from typing import TypeAlias
    import numpy.typing as npt

__all__ = ["SkeletonMismatchError", "MapDtypes", "Namespace", "VariableNamespace",
           "VariableSpecNamespace", "TypedVariable", "TypedVariableSpec", "SkeletonSpec",
           "Skeleton", "read_spec", "check_types", "Names", "Source"]

T = TypeVar("T")
V = TypeVar("V")
_S = TypeVar("_S", bound="Skeleton")

#: (Python attribute name, name in the object) pairs, as generated.
Names = Sequence[Tuple[str, str]]
#: Where a skeleton's object comes from: a path, the object's bytes, or None
#: for the skeleton's own (embedded, or the file beside the module).
Source: TypeAlias = "str | os.PathLike[str] | bytes | None"

# The one attribute a namespace keeps besides the generated names. Generated
# names never start with two underscores (see fastbpf.gen.skeleton), so a
# dunder cannot collide with one.
_ITEMS = "__fastbpf_items__"


class SkeletonMismatchError(ValueError):
    """The object lacks a name the skeleton declares, or its type differs.

    Raised when a skeleton loads an object other than the one it was
    generated from (``--no-embed`` with a rebuilt file, or ``source=``):
    regenerate the skeleton.
    """


class MapDtypes(NamedTuple):
    """The numpy dtypes of a map's keys and values (None: the map has none)."""

    key: np.dtype[Any] | None
    value: np.dtype[Any] | None


class Namespace(Generic[T]):
    """Objects by Python attribute (``ns.name``) and by object name (``ns["name"]``).

    A generated subclass declares one typed attribute per object. ``len()``,
    iteration (object names) and ``in`` work as on the collection's dicts.
    """

    def __init__(self, objects: Mapping[str, Any], names: Names,
                 wrap: Callable[[Any], T] | None = None) -> None:
        """Take each object named in *names* from *objects* (keyed by object name).

        *wrap* turns each into the attribute's value. Beyond the generated
        names the namespace has dunder attributes only, so any name fits.
        """
        items: dict[str, T] = {}
        for attr, name in names:
            if name not in objects:
                raise SkeletonMismatchError(
                    f"{type(self).__name__}: the object has no {name!r}; it is not the object "
                    f"this skeleton was generated from (regenerate it)")
            obj = objects[name]
            items[name] = value = obj if wrap is None else wrap(obj)
            setattr(self, attr, value)
        self.__dict__[_ITEMS] = items

    def __getitem__(self, name: str) -> T:
        """The object named *name* in the object file (not the mangled name)."""
        items: dict[str, T] = self.__dict__[_ITEMS]
        return items[name]

    def __iter__(self) -> Iterator[str]:
        """Object names, in the generated order."""
        return iter(self.__dict__[_ITEMS])

    def __len__(self) -> int:
        """How many objects the namespace holds."""
        return len(self.__dict__[_ITEMS])

    def __contains__(self, name: object) -> bool:
        """True if *name* (an object name) is in the namespace."""
        return name in self.__dict__[_ITEMS]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {', '.join(self.__dict__[_ITEMS])}>"


def _check_dtype(what: str, have: np.dtype[Any] | None, want: np.dtype[Any] | None) -> None:
    if have != want:
        raise SkeletonMismatchError(f"{what} is {have} in the object, the skeleton says {want} "
                                    f"(regenerate the skeleton)")


class TypedVariable(Generic[V]):
    """A loaded global variable whose value has a known type *V*.

    Wraps a :class:`fastbpf.Variable` (``.variable``): ``.value`` reads the
    map's memory and is typed (a numpy scalar such as ``np.uint32``,
    ``np.void`` for structs, an array for C arrays); :meth:`set` writes it.
    """

    __slots__ = ("variable",)

    def __init__(self, variable: Variable) -> None:
        """Wrap *variable*."""
        self.variable = variable

    @property
    def name(self) -> str:
        """The variable's name in the object."""
        return self.variable.name

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype of the value."""
        return self.variable.spec.dtype

    @property
    def readonly(self) -> bool:
        """True for variables of frozen sections (``.rodata``, ``.kconfig``)."""
        return self.variable.readonly

    @property
    def value(self) -> V:
        """The current value, read from the map's memory."""
        return self.variable.value  # type: ignore[no-any-return]

    def set(self, value: npt.ArrayLike) -> None:
        """Write *value* where the program sees it (PermissionError for .rodata)."""
        self.variable.set(value)

    def __repr__(self) -> str:
        return f"<TypedVariable {self.name!r} {self.dtype}>"


class TypedVariableSpec(Generic[V]):
    """A global variable before load, whose value has a known type *V*.

    Wraps a :class:`fastbpf.VariableSpec` (``.spec``): :meth:`set` changes the
    value the program starts with (``.rodata`` too), ``.value`` reads it.
    """

    __slots__ = ("spec",)

    def __init__(self, spec: VariableSpec) -> None:
        """Wrap *spec*."""
        self.spec = spec

    @property
    def name(self) -> str:
        """The variable's name in the object."""
        return self.spec.name

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype of the value."""
        return self.spec.dtype

    @property
    def readonly(self) -> bool:
        """True for variables that are read-only once loaded (``.rodata``)."""
        return self.spec.readonly

    @property
    def value(self) -> V:
        """The value in the object, or as last set."""
        return self.spec.value  # type: ignore[no-any-return]

    def set(self, value: npt.ArrayLike) -> None:
        """Set the value the program starts with."""
        self.spec.set(value)

    def __repr__(self) -> str:
        return f"<TypedVariableSpec {self.name!r} {self.dtype}>"


class VariableNamespace(Namespace[TypedVariable[Any]]):
    """Base of generated namespaces of loaded variables."""

    def __init__(self, objects: Mapping[str, Any], names: Names) -> None:
        """Wrap each :class:`fastbpf.Variable` named in *names* in a :class:`TypedVariable`."""
        super().__init__(objects, names, TypedVariable)


class VariableSpecNamespace(Namespace[TypedVariableSpec[Any]]):
    """Base of generated namespaces of variables before load."""

    def __init__(self, objects: Mapping[str, Any], names: Names) -> None:
        """Wrap each :class:`fastbpf.VariableSpec` of *names* in a :class:`TypedVariableSpec`."""
        super().__init__(objects, names, TypedVariableSpec)


def check_types(spec: CollectionSpec, maps: Sequence[Tuple[str, MapDtypes]],
                variables: Sequence[Tuple[str, np.dtype[Any]]]) -> None:
    """Raise :class:`SkeletonMismatchError` unless *spec* has the dtypes generated."""
    for name, dts in maps:
        ms = spec.maps.get(name)
        if ms is None:
            continue  # Namespace reports missing names
        _check_dtype(f"the key of map {name!r}", ms.key_dtype, dts.key)
        _check_dtype(f"the value of map {name!r}", ms.value_dtype, dts.value)
    for name, dt in variables:
        vs = spec.variables.get(name)
        if vs is not None:
            _check_dtype(f"variable {name!r}", vs.dtype, dt)


def read_spec(source: Source, embedded: str | None, module_file: str, path: str,
              object_name: str) -> CollectionSpec:
    """The CollectionSpec a skeleton loads.

    *source* given by the user wins; else the *embedded* base64 object; else
    the file at *path*, relative to the generated module's directory.
    *object_name* prefixes data map names (``<name>.rodata``), as libbpf's
    would for the original file name, wherever the bytes come from.
    """
    if source is None:
        if embedded is not None:
            source = base64.b64decode(embedded)
        else:
            source = os.path.join(os.path.dirname(os.path.abspath(module_file)), path)
    return load_collection_spec(source, name=object_name)


class SkeletonSpec:
    """Base of generated spec classes: a :class:`CollectionSpec` to edit before load."""

    def __init__(self, spec: CollectionSpec) -> None:
        """Wrap *spec* (``.collection_spec``)."""
        self.collection_spec = spec

    def _load(self, pin_path: str | os.PathLike[str] | None, kernel_btf: Any,
              log_level: int) -> Collection:
        return self.collection_spec.load(pin_path, kernel_btf=kernel_btf, log_level=log_level)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.collection_spec!r}>"


class Skeleton:
    """Base of generated skeletons: a loaded :class:`Collection` (``.collection``).

    ``close()`` releases every map and program (pins stay); ``with`` closes.
    """

    def __init__(self, collection: Collection) -> None:
        """Wrap *collection*; the skeleton now owns it."""
        self.collection = collection

    def close(self) -> None:
        """Close every program, map and the BTF object (twice is harmless)."""
        self.collection.close()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.collection!r}>"
