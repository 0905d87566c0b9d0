"""What every attach function does with the program it is given.

``program`` may be a :class:`fastbpf.Program` or anything with an ``fd``
(or a bare fd); :func:`check_program_type` refuses a program of the wrong
type with a message naming the type the hook wants (the kernel only says
EINVAL).
"""

from __future__ import annotations

from typing import Any, Iterable

from ..enums import ProgramType

__all__ = ["fd_of", "check_program_type"]


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
