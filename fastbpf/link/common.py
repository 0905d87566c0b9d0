"""What every attach function does with the program it is given.

``program`` may be a :class:`fastbpf.Program` or anything with an ``fd``
(or a bare fd); :func:`check_program_type` refuses a program of the wrong
type with a message naming the type the hook wants (the kernel only says
EINVAL).
"""

from __future__ import annotations

from typing import Any, Iterable

from .. import _core
from ..enums import ProgramType

__all__ = ["fd_of", "check_program_type", "check_program"]


def fd_of(program: Any) -> int:
    """The file descriptor of *program* (a Program, an object with ``fd``, or an fd)."""
    return int(getattr(program, "fd", program))


def check_program_type(program: Any, allowed: Iterable[ProgramType], hook: str) -> None:
    """Raise ValueError when *program* has a ``type`` that *hook* cannot take.
    Objects without a type (bare fds) pass: the kernel will judge them."""
    ptype = getattr(program, "type", None)
    allowed = tuple(allowed)
    if ptype is not None and isinstance(ptype, int) and int(ptype) not in {int(t) for t in allowed}:
        name = ptype.name if isinstance(ptype, ProgramType) else str(ptype)
        want = " or ".join(t.name for t in allowed)
        raise ValueError(f"{hook} needs a {want} program, not {name}")


def check_program(program: Any, allowed: Iterable[ProgramType], hook: str) -> None:
    """Refuse anything but a loaded program of an *allowed* type before the
    kernel sees it: a Map, None or a bare fd get a TypeError, a program of
    another type a ValueError, each naming *hook* (the kernel would say only
    EINVAL or EBADF)."""
    allowed = tuple(allowed)
    if not isinstance(program, _core.ProgramBase):
        want = " or ".join(ProgramType(t).name for t in allowed)
        kind = ("a Map" if isinstance(program, _core.MapBase)
                else "None" if program is None else f"a {type(program).__name__}")
        raise TypeError(f"{hook} needs a {want} program, not {kind}")
    check_program_type(program, allowed, hook)
