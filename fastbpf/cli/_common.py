"""Pieces every subcommand shares: naming objects as bpftool does, reading
the kernel's facts about them, printing tables/JSON, progress, and parsing
keys and values typed on the command line."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .. import _core
from ..enums import LinkType, MapType, ProgramType
from ..errors import BPFError

__all__ = ["CLIError", "ObjectRef", "parse_ref", "resolve_ids", "fdinfo", "type_name",
           "print_json", "print_table", "progress", "parse_data", "wall_time_of",
           "pinned_paths", "list_objects", "info_by_id", "add_output_flags", "add_list_show",
           "OBJ_HELP"]

#: How an object is named on the command line, for --help texts.
OBJ_HELP = "ID, 'id ID', 'pinned PATH', 'name NAME' or a bare pin path"


class CLIError(Exception):
    """A user-facing error: printed as ``fastbpf: <message>``, exit status 1."""


class ObjectRef:
    """One object as named on the command line (bpftool's grammar)."""

    def __init__(self, kind: str, value: str) -> None:
        self.kind = kind      # "id", "pinned" or "name"
        self.value = value

    def __repr__(self) -> str:
        return f"{self.kind} {self.value}"


def parse_ref(tokens: Sequence[str]) -> ObjectRef:
    """``["5"]``, ``["id", "5"]``, ``["pinned", P]``, ``["name", N]`` or ``[P]``."""
    toks = list(tokens)
    if len(toks) == 2 and toks[0] in ("id", "pinned", "name"):
        kind, val = toks
        if kind == "id" and not val.isdigit():
            raise CLIError(f"'id' takes a number, not {val!r}")
        return ObjectRef(kind, val)
    if len(toks) == 1:
        t = toks[0]
        if t.isdigit():
            return ObjectRef("id", t)
        if os.sep in t or os.path.exists(t):
            return ObjectRef("pinned", t)
        raise CLIError(f"cannot tell what {t!r} names: use {OBJ_HELP}")
    raise CLIError(f"expected {OBJ_HELP}, got {' '.join(toks)!r}")


_KINDS: dict[str, tuple[Callable[[], list[int]], Callable[[int], Any],
                        Callable[[int], dict[str, Any]]]] = {
    "map": (_core.map_ids, _core.map_get_fd_by_id, _core.map_info),
    "prog": (_core.prog_ids, _core.prog_get_fd_by_id, _core.prog_info),
    "link": (_core.link_ids, _core.link_get_fd_by_id, _core.link_info),
}


def resolve_ids(kind: str, ref: ObjectRef | None) -> list[int]:
    """The ids *ref* names (every object of *kind* when None).

    A name may match several objects, as in bpftool; a pin of the wrong kind
    or a missing id is a :class:`CLIError`.
    """
    ids_of, by_id, info_of = _KINDS[kind]
    if ref is None:
        return list(ids_of())
    if ref.kind == "id":
        return [int(ref.value)]
    if ref.kind == "pinned":
        try:
            with _core.obj_get(ref.value) as fd:
                info = info_of(fd.fd)
        except BPFError as e:
            raise CLIError(f"cannot open the {kind} pinned at {ref.value!r}: {e}") from None
        return [info["id"]]
    found = []
    for i in ids_of():
        try:
            with by_id(i) as fd:
                if info_of(fd.fd).get("name") == ref.value:
                    found.append(i)
        except BPFError:
            continue  # gone between listing and opening
    if not found:
        raise CLIError(f"no {kind} named {ref.value!r}")
    return found


def fdinfo(fd: int) -> dict[str, str]:
    """``/proc/self/fdinfo/FD`` as a dict (memlock, frozen, prog_jited, ...)."""
    out: dict[str, str] = {}
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k.strip()] = v.strip()
    except OSError:
        pass
    return out


def type_name(kind: str, value: int) -> str | int:
    """The lower-case type name bpftool prints (the number when unknown)."""
    enum_cls: Any = {"map": MapType, "prog": ProgramType, "link": LinkType}[kind]
    try:
        return str(enum_cls(value).name.lower())
    except ValueError:
        return value


def wall_time_of(boot_ns: int) -> int:
    """Seconds since the epoch of a CLOCK_BOOTTIME instant (``load_time``)."""
    boot = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    return int(boot + boot_ns / 1e9)


def pinned_paths(kind: str, root: str = "/sys/fs/bpf") -> dict[int, list[str]]:
    """Ids of the objects of *kind* pinned under *root* -> their paths (bpftool -f)."""
    _, _, info_of = _KINDS[kind]
    out: dict[int, list[str]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for fn in files:
            p = os.path.join(dirpath, fn)
            try:
                with _core.obj_get(p) as fd:
                    out.setdefault(info_of(fd.fd)["id"], []).append(p)
            except (BPFError, OSError, ValueError):
                continue  # another kind of object, or gone
    return out


def print_json(obj: Any, pretty: bool = False) -> None:
    """JSON on stdout, compact (bpftool -j) or indented (-p)."""
    print(json.dumps(obj, indent=2 if pretty else None, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, bytes):
        return o.hex()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]],
                right: Sequence[int] = ()) -> None:
    """Columns aligned with spaces; columns in *right* are right-aligned."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, c in enumerate(cells):
            out.append(c.rjust(widths[i]) if i in right else c.ljust(widths[i]))
        return "  ".join(out).rstrip()

    print(line(headers))
    for r in rows:
        print(line(r))


def info_by_id(kind: str, obj_id: int,
               read: Callable[[int], Any]) -> tuple[Any, dict[str, str]] | None:
    """``(read(fd), fdinfo(fd))`` of the *kind* object with id *obj_id*,
    or None when it went away (or cannot be opened)."""
    by_id = _KINDS[kind][1]
    try:
        fd = by_id(obj_id)
    except BPFError:
        return None
    with fd:
        return read(fd.fd), fdinfo(fd.fd)


def add_output_flags(s: Any) -> None:
    """``-j``/``--json``, ``-p``/``--pretty`` and ``-f``/``--bpffs`` on the
    (argparse) subcommand parser *s*."""
    s.add_argument("-j", "--json", action="store_true", help="JSON with bpftool's field names")
    s.add_argument("-p", "--pretty", action="store_true", help="indented JSON (implies -j)")
    s.add_argument("-f", "--bpffs", action="store_true", help="show pinned paths")


def add_list_show(subparsers: Any, noun: str, fn: Callable[[Any], int]) -> None:
    """The ``list`` and ``show OBJ`` subcommands of *noun* (``"map"``,
    ``"program"``, ``"link"``), both run by *fn*."""
    for name, help_ in (("list", f"list every {noun}"), ("show", f"show the {noun}s named")):
        s = subparsers.add_parser(name, help=help_)
        s.add_argument("obj", nargs="*" if name == "list" else "+", help=OBJ_HELP)
        add_output_flags(s)
        s.set_defaults(fn=fn)


def list_objects(args: Any, kind: str, noun: str,
                 facts: Callable[[int, dict[Any, Any] | None], dict[str, Any] | None],
                 headers: Sequence[str], cells: Callable[[dict[str, Any]], list[Any]],
                 right: Sequence[int] = ()) -> int:
    """``<kind> list`` / ``<kind> show OBJ``: one row of *facts* per object
    ``args.obj`` names (every object of *kind* without it), as JSON
    (``--json``/``--pretty``) or a table of *headers* and *cells*, with
    the pin paths last under ``--bpffs``."""
    ref = parse_ref(args.obj) if args.obj else None
    pins = pinned_paths(kind) if args.bpffs else None
    rows = [r for r in (facts(i, pins) for i in resolve_ids(kind, ref)) if r is not None]
    if ref is not None and ref.kind == "id" and not rows:
        raise CLIError(f"no {noun} with id {ref.value}")
    if args.json or args.pretty:
        print_json(rows[0] if ref is not None and len(rows) == 1 else rows, args.pretty)
        return 0
    pinned = pins is not None
    print_table(list(headers) + (["pinned"] if pinned else []),
                [cells(r) + ([" ".join(r.get("pinned", []))] if pinned else []) for r in rows],
                right=right)
    return 0


def progress(items: Sequence[Any] | range, what: str, min_items: int = 4096) -> Iterator[Any]:
    """Iterate *items*, with a progress bar on stderr when it is a terminal.

    Nothing is drawn when stderr is piped, for short runs, or without rich.
    """
    n = len(items)
    if n < min_items or not sys.stderr.isatty():
        yield from items
        return
    try:
        from rich.progress import Progress
    except ImportError:
        yield from items
        return
    with Progress(transient=True, console=_stderr_console()) as bar:
        task = bar.add_task(what, total=n)
        for i, x in enumerate(items):
            yield x
            if i % 256 == 255:
                bar.update(task, completed=i + 1)


def _stderr_console() -> Any:
    from rich.console import Console
    return Console(stderr=True)


def _hex_bytes(text: str) -> bytes:
    parts = text.replace(",", " ").split()
    if len(parts) == 1:
        s = parts[0]
        s = s[2:] if s.lower().startswith("0x") else s
        return bytes.fromhex(s)
    return bytes(int(p, 16) for p in parts)


def parse_data(text: str, dtype: np.dtype, what: str) -> bytes:
    """The bytes of a key or value typed as hex or JSON, for *dtype*.

    ``hex:01 00 00 00`` / ``0x01000000`` / ``01 00 00 00`` (several
    space-separated hex bytes) are raw bytes. Anything else is JSON: a
    number, a list (arrays, per-CPU values) or an object with field names
    (structured dtypes).
    """
    size = dtype.itemsize
    t = text.strip()
    raw: bytes | None = None
    if t.startswith("hex:"):
        raw = _hex_bytes(t[4:])
    elif t.lower().startswith("0x") or (len(t.split()) > 1 and
                                        all(len(p) <= 4 for p in t.split())):
        try:
            raw = _hex_bytes(t)
        except ValueError:
            raw = None
    if raw is not None:
        if len(raw) != size:
            raise CLIError(f"{what} {text!r} is {len(raw)} bytes; the map's {what}s are {size}")
        return raw
    try:
        obj = json.loads(t)
    except json.JSONDecodeError as e:
        raise CLIError(f"{what} {text!r} is neither hex nor JSON: {e}") from None
    try:
        return _json_to_bytes(obj, dtype)
    except (TypeError, ValueError, OverflowError) as e:
        raise CLIError(f"{what} {text!r} does not fit {dtype}: {e}") from None


def _json_to_bytes(obj: Any, dtype: np.dtype) -> bytes:
    if dtype.kind == "V" and dtype.fields is None and dtype.subdtype is None:
        # Raw bytes: an int becomes its little-endian encoding, a list the bytes.
        if isinstance(obj, int):
            return obj.to_bytes(dtype.itemsize, "little", signed=obj < 0)
        if isinstance(obj, list):
            return bytes(int(x, 0) if isinstance(x, str) else int(x) for x in obj)
        raise TypeError(f"raw {dtype.itemsize}-byte data wants an int or a list of bytes")
    arr = np.zeros((), dtype=dtype)
    _fill(arr, obj)
    return arr.tobytes()


def _fill(arr: np.ndarray, obj: Any) -> None:
    dt = arr.dtype
    if dt.fields is not None:
        if not isinstance(obj, dict):
            arr[()] = tuple(obj) if isinstance(obj, list) else obj
            return
        unknown = set(obj) - set(dt.names or ())
        if unknown:
            raise ValueError(f"no field(s) {sorted(unknown)} in {dt.names}")
        for k, v in obj.items():
            _fill(arr[k], v)
        return
    if dt.kind == "S" and isinstance(obj, str):
        arr[...] = obj.encode()
        return
    arr[...] = obj
