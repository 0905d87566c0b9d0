"""``fastbpf map list|show|dump|lookup|update|delete``."""

from __future__ import annotations

import argparse
import csv
import errno
import io
import json
import os
import sys
from typing import Any, Iterator

import numpy as np

from .. import _core, btf
from ..enums import MapType
from ..errors import BPFError
from ..maps import Map, MapInfo
from ._common import (OBJ_HELP, CLIError, add_list_show, add_output_flags, info_by_id, list_objects,
                      parse_data, parse_ref, print_json, print_table, progress, resolve_ids,
                      type_name)

__all__ = ["register", "map_facts", "dump_entries"]


def register(sub: Any) -> None:
    """Add ``map`` and its subcommands to the parser."""
    p = sub.add_parser("map", help="list, show, dump and edit maps")
    ms = p.add_subparsers(dest="map_cmd", required=True, metavar="SUBCOMMAND")
    add_list_show(ms, "map", cmd_list)
    d = ms.add_parser("dump", help="dump a map's entries (BTF-formatted when it has BTF)")
    d.add_argument("obj", nargs="+", help=OBJ_HELP)
    d.add_argument("--format", choices=("table", "json", "csv", "npy"), default=None,
                   help="output format (default: table; json with -j)")
    d.add_argument("-o", "--output", help="write to this file instead of stdout")
    add_output_flags(d)
    d.set_defaults(fn=cmd_dump)
    for name, fn in (("lookup", cmd_lookup), ("update", cmd_update), ("delete", cmd_delete)):
        s = ms.add_parser(name, help=f"{name} one entry (keys/values as JSON or hex)")
        s.add_argument("obj", nargs="+", help=OBJ_HELP)
        s.add_argument("--key", required=True,
                       help="the key: JSON (5, [1,2], {\"field\": 1}) or hex ('0x05000000', "
                            "'hex:05 00 00 00')")
        if name == "update":
            s.add_argument("--value", required=True, help="the value, JSON or hex; for per-CPU "
                           "maps a JSON list of one value per CPU, or one value for all")
            s.add_argument("--flags", choices=("any", "noexist", "exist"), default="any")
        add_output_flags(s)
        s.set_defaults(fn=fn)
    h = ms.add_parser("hist", help="draw a bucketed map as a histogram (BCC style)",
                      add_help=False)
    h.add_argument("rest", nargs=argparse.REMAINDER)
    h.set_defaults(fn=lambda a: _hist(a.rest))


def _hist(rest: list[str]) -> int:
    from ..metrics import cli_hist  # fastbpf.metrics owns the rendering
    return cli_hist(rest)


def map_facts(map_id: int, pins: dict[int, list[str]] | None = None) -> dict[str, Any] | None:
    """bpftool's ``map show`` facts for one map, with its JSON field names
    (None if the map went away)."""
    got = info_by_id("map", map_id, MapInfo.from_fd)
    if got is None:
        return None
    info, extra = got
    out: dict[str, Any] = {
        "id": info.id, "type": type_name("map", int(info.type)), "name": info.name,
        "flags": info.flags, "bytes_key": info.key_size, "bytes_value": info.value_size,
        "max_entries": info.max_entries,
    }
    if "memlock" in extra:
        out["bytes_memlock"] = int(extra["memlock"])
    if "frozen" in extra:
        out["frozen"] = int(extra["frozen"])
    if info.btf_id:
        out["btf_id"] = info.btf_id
    if pins is not None and info.id in pins:
        out["pinned"] = pins[info.id]
    return out


def cmd_list(args: argparse.Namespace) -> int:
    """``map list`` / ``map show OBJ``."""
    return list_objects(
        args, "map", "map", map_facts,
        ["id", "type", "name", "key", "value", "max_entries", "memlock", "flags", "btf"],
        lambda r: [r["id"], r["type"], r["name"], r["bytes_key"], r["bytes_value"],
                   r["max_entries"], r.get("bytes_memlock", ""), hex(r["flags"]),
                   r.get("btf_id", "")],
        right=(0, 3, 4, 5, 6))


def _open_one(tokens: list[str]) -> Map:
    ids = resolve_ids("map", parse_ref(tokens))
    if len(ids) != 1:
        raise CLIError(f"{' '.join(tokens)!r} names {len(ids)} maps ({ids}); use an id")
    try:
        return Map.from_id(ids[0])
    except BPFError as e:
        raise CLIError(f"cannot open map {ids[0]}: {e}") from None


def btf_types(info: MapInfo, vmlinux_value_id: int = 0) -> tuple[btf.Type | None,
                                                                   btf.Type | None]:
    """The BTF types of a map's key and value (None where it has none); a
    struct_ops map's value type is in vmlinux (*vmlinux_value_id*)."""
    if vmlinux_value_id:
        try:
            return None, btf.load_kernel_spec().type_by_id(vmlinux_value_id)
        except (OSError, btf.BTFError):
            return None, None
    if not info.btf_id or not (info.btf_key_type_id or info.btf_value_type_id):
        return None, None
    try:
        with btf.Handle.from_id(info.btf_id) as h:
            spec = h.spec()
    except (BPFError, btf.BTFError):
        return None, None
    kt = spec.type_by_id(info.btf_key_type_id) if info.btf_key_type_id else None
    vt = spec.type_by_id(info.btf_value_type_id) if info.btf_value_type_id else None
    return kt, vt


def _hexlist(b: bytes) -> list[str]:
    return [f"0x{x:02x}" for x in b]


def _walk_keys(fd: int, key_size: int, limit: int) -> list[bytes]:
    keys: list[bytes] = []
    cur: bytes | None = None
    nxt = bytearray(key_size)
    # A hash map rewritten meanwhile can restart the walk: stop at capacity.
    while len(keys) < limit and _core.map_get_next_key(fd, cur, nxt):
        cur = bytes(nxt)
        keys.append(cur)
    return keys


def dump_entries(m: Map) -> Iterator[tuple[bytes, list[bytes] | bytes | int]]:
    """``(key bytes, value bytes)`` for each entry, per-CPU values as a
    list with one item per possible CPU; the value is the errno when the
    kernel refuses lookups of that key (perf event arrays, socket maps)."""
    info = m.info()
    if m.key_size == 0:
        return
    percpu = isinstance(info.type, MapType) and info.type.is_percpu
    ncpus = _core.possible_cpus()
    step = (m.value_size + 7) & ~7
    buf = bytearray(step * ncpus if percpu else max(m.value_size, 1))
    keys = _walk_keys(m.fd, m.key_size, max(m.max_entries, 1))
    # Slots of map-of-maps and prog arrays are empty, not broken, when missing.
    skip_missing = info.type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS,
                                 MapType.PROG_ARRAY)
    for k in progress(keys, f"map {info.id}"):
        try:
            found = _core.map_lookup_elem(m.fd, k, buf)
        except BPFError as e:
            yield k, e.errno or 0
            continue
        if not found:
            if not skip_missing:
                yield k, errno.ENOENT  # bpftool prints these too (empty devmap slots...)
            continue
        if percpu:
            yield k, [bytes(buf[c * step:c * step + m.value_size]) for c in range(ncpus)]
        else:
            yield k, bytes(buf[:m.value_size])


def _fmt(data: bytes, t: btf.Type | None) -> Any:
    return btf.format(data, t) if t is not None else None


def _json_entries(m: Map, kt: btf.Type | None, vt: btf.Type | None) -> list[dict[str, Any]]:
    out = []
    for k, v in dump_entries(m):
        e: dict[str, Any] = {"key": _hexlist(k)}
        f: dict[str, Any] = {}
        if kt is not None:
            f["key"] = _fmt(k, kt)
        if isinstance(v, int):
            e["value"] = {"error": os.strerror(v)}  # as bpftool puts it
        elif isinstance(v, list):
            e["values"] = [{"cpu": c, "value": _hexlist(x)} for c, x in enumerate(v)]
            if vt is not None:
                f["values"] = [{"cpu": c, "value": _fmt(x, vt)} for c, x in enumerate(v)]
        else:
            e["value"] = _hexlist(v)
            if vt is not None:
                f["value"] = _fmt(v, vt)
        if f:
            e["formatted"] = f
        out.append(e)
    return out


def _text(x: Any) -> str:
    if isinstance(x, list) and x and isinstance(x[0], str) and x[0].startswith("0x"):
        return " ".join(s[2:] for s in x)
    return json.dumps(x, separators=(", ", ": "))


def _flatten(prefix: str, x: Any, out: dict[str, Any]) -> None:
    if isinstance(x, dict):
        for k, v in x.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(x, list) and x and not (isinstance(x[0], str) and x[0].startswith("0x")):
        for i, v in enumerate(x):
            _flatten(f"{prefix}[{i}]", v, out)
    elif isinstance(x, list):
        out[prefix] = "".join(s[2:] for s in x)  # raw bytes as one hex run
    else:
        out[prefix] = x


def _plain(e: dict[str, Any]) -> tuple[Any, Any]:
    """(key, value) of one JSON entry, formatted where BTF allows."""
    f = e.get("formatted", {})
    key = f.get("key", e["key"])
    if "values" in e:
        vals = f.get("values", e["values"])
        return key, [c["value"] for c in vals]
    return key, f.get("value", e.get("value"))


def _npy_array(m: Map, entries: list[dict[str, Any]]) -> np.ndarray:
    ncpus = _core.possible_cpus()
    percpu = bool(entries and "values" in entries[0]) or m.percpu
    kd = m.key_dtype if m.key_dtype is not None else np.dtype(("V", m.key_size))
    vd = m.value_dtype if m.value_dtype is not None else np.dtype(("V", m.value_size))
    dt = np.dtype([("key", kd), ("value", (vd, (ncpus,)) if percpu else vd)])
    arr = np.zeros(len(entries), dtype=dt)
    raw = arr.view(np.uint8).reshape(len(entries), dt.itemsize)
    voff = dt.fields["value"][1] if dt.fields else 0
    for i, e in enumerate(entries):
        raw[i, :m.key_size] = np.frombuffer(bytes(int(b, 16) for b in e["key"]), np.uint8)
        if percpu:
            for c, item in enumerate(e["values"]):
                o = voff + c * vd.itemsize
                raw[i, o:o + m.value_size] = list(int(b, 16) for b in item["value"])
        elif isinstance(e.get("value"), list):
            raw[i, voff:voff + m.value_size] = list(int(b, 16) for b in e["value"])
    return arr


def cmd_dump(args: argparse.Namespace) -> int:
    """``map dump OBJ [--format table|json|csv|npy] [-o FILE]``."""
    fmt = args.format or ("json" if args.json or args.pretty else "table")
    with _open_one(args.obj) as m:
        info = m.info()
        if m.key_size == 0:
            raise CLIError(f"map {info.id} ({type_name('map', int(info.type))}) has no keys "
                           "to dump")
        kt, vt = btf_types(info, _core.map_info(m.fd)["btf_vmlinux_value_type_id"])
        entries = _json_entries(m, kt, vt)
        if fmt == "npy":
            arr = _npy_array(m, entries)
            if args.output:
                np.save(args.output, arr, allow_pickle=False)
            elif sys.stdout.isatty():
                raise CLIError("npy is binary: give -o FILE or redirect stdout")
            else:
                np.save(sys.stdout.buffer, arr, allow_pickle=False)
            return 0
    text = io.StringIO()
    if fmt == "json":
        json.dump(entries, text, indent=2 if args.pretty else None)
        text.write("\n")
    elif fmt == "csv":
        rows = []
        for e in entries:
            k, v = _plain(e)
            row: dict[str, Any] = {}
            _flatten("key", k, row)
            _flatten("value", v, row)
            rows.append(row)
        cols: list[str] = []
        for r in rows:
            cols.extend(c for c in r if c not in cols)
        w = csv.DictWriter(text, fieldnames=cols or ["key", "value"])
        w.writeheader()
        w.writerows(rows)
    else:
        percpu = m.percpu
        ncpus = _core.possible_cpus()
        heads = ["key"] + ([f"cpu{c}" for c in range(ncpus)] if percpu else ["value"])
        rows2 = []
        for e in entries:
            k, v = _plain(e)
            rows2.append([_text(k)] + ([_text(x) for x in v] if percpu else [_text(v)]))
        out = sys.stdout
        sys.stdout = text
        try:
            print_table(heads, rows2)
            print(f"{len(entries)} entries")
        finally:
            sys.stdout = out
    if args.output:
        with open(args.output, "w") as f:
            f.write(text.getvalue())
    else:
        sys.stdout.write(text.getvalue())
    return 0


def _key_bytes(m: Map, text: str) -> bytes:
    kd = m.key_dtype if m.key_dtype is not None else np.dtype(("V", m.key_size))
    return parse_data(text, kd, "key")


def _value_buffer(m: Map) -> bytearray:
    ncpus = _core.possible_cpus()
    step = (m.value_size + 7) & ~7
    return bytearray(step * ncpus if m.percpu else m.value_size)


def cmd_lookup(args: argparse.Namespace) -> int:
    """``map lookup OBJ --key K``."""
    with _open_one(args.obj) as m:
        info = m.info()
        k = _key_bytes(m, args.key)
        buf = _value_buffer(m)
        if not _core.map_lookup_elem(m.fd, k, buf):
            raise CLIError(f"key {args.key} not found in map {info.id}")
        kt, vt = btf_types(info)
        step = (m.value_size + 7) & ~7
        e: dict[str, Any] = {"key": _hexlist(k)}
        if m.percpu:
            vals = [bytes(buf[c * step:c * step + m.value_size])
                    for c in range(_core.possible_cpus())]
            e["values"] = [{"cpu": c, "value": _hexlist(x)} for c, x in enumerate(vals)]
            if vt is not None:
                e["formatted"] = {"values": [{"cpu": c, "value": _fmt(x, vt)}
                                             for c, x in enumerate(vals)]}
        else:
            e["value"] = _hexlist(bytes(buf))
            if vt is not None:
                e["formatted"] = {"value": _fmt(bytes(buf), vt)}
        if kt is not None:
            e.setdefault("formatted", {})["key"] = _fmt(k, kt)
    if args.json or args.pretty:
        print_json(e, args.pretty)
    else:
        key, value = _plain(e)
        print(f"key: {_text(key)}")
        if isinstance(value, list) and m.percpu:
            for c, v in enumerate(value):
                print(f"value (CPU {c:02d}): {_text(v)}")
        else:
            print(f"value: {_text(value)}")
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    """``map update OBJ --key K --value V [--flags any|noexist|exist]``."""
    flags = {"any": 0, "noexist": 1, "exist": 2}[args.flags]
    with _open_one(args.obj) as m:
        k = _key_bytes(m, args.key)
        vd = m.value_dtype if m.value_dtype is not None else np.dtype(("V", m.value_size))
        if m.percpu:
            ncpus = _core.possible_cpus()
            step = (m.value_size + 7) & ~7
            buf = bytearray(step * ncpus)
            text = args.value.strip()
            items: list[str]
            parsed = None
            if text.startswith("["):
                try:
                    parsed = json.loads(text)
                except json.JSONDecodeError:
                    parsed = None
            if isinstance(parsed, list) and len(parsed) == ncpus and vd.subdtype is None:
                items = [json.dumps(x) for x in parsed]
            else:
                items = [text] * ncpus
            for c, item in enumerate(items):
                buf[c * step:c * step + m.value_size] = parse_data(item, vd, "value")
            _core.map_update_elem(m.fd, k, bytes(buf), flags)
        else:
            _core.map_update_elem(m.fd, k, parse_data(args.value, vd, "value"), flags)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """``map delete OBJ --key K``."""
    with _open_one(args.obj) as m:
        if not _core.map_delete_elem(m.fd, _key_bytes(m, args.key)):
            raise CLIError(f"key {args.key} not found in map {m.info().id}")
    return 0
