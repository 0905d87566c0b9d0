"""The ``fastbpf`` command: look at the BPF objects in the running kernel.

    fastbpf maps                 list maps (id, type, sizes, name)
    fastbpf progs                list programs (id, type, tag, name, maps)
    fastbpf links                list links
    fastbpf dump MAP_ID [--json] dump a map's entries (keys and values as hex)
    fastbpf export CONFIG.yaml   serve maps as Prometheus metrics (fastbpf.metrics.exporter)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from . import _core
from .errors import BPFError


def _each(ids, open_by_id, info_of):
    for i in ids:
        try:
            with open_by_id(i) as fd:
                yield info_of(fd.fd)
        except BPFError:
            continue  # gone between listing and opening


def _name(enum_cls, value: int) -> str:
    try:
        return enum_cls(value).name.lower()
    except ValueError:
        return str(value)


def cmd_maps(args: argparse.Namespace) -> int:
    """List every map in the kernel."""
    from .enums import MapType
    rows = list(_each(_core.map_ids(), _core.map_get_fd_by_id, _core.map_info))
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'id':>8}  {'type':<22} {'key':>5} {'value':>6} {'max':>9}  name")
    for r in rows:
        print(f"{r['id']:>8}  {_name(MapType, r['type']):<22} {r['key_size']:>5} "
              f"{r['value_size']:>6} {r['max_entries']:>9}  {r['name']}")
    return 0


def cmd_progs(args: argparse.Namespace) -> int:
    """List every program in the kernel."""
    from .enums import ProgramType
    rows = list(_each(_core.prog_ids(), _core.prog_get_fd_by_id, _core.prog_info))
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'id':>8}  {'type':<22} {'tag':<16}  {'name':<16} maps")
    for r in rows:
        print(f"{r['id']:>8}  {_name(ProgramType, r['type']):<22} {r['tag']:<16}  "
              f"{r['name']:<16} {','.join(map(str, r['map_ids']))}")
    return 0


def cmd_links(args: argparse.Namespace) -> int:
    """List every bpf_link in the kernel."""
    from .enums import LinkType
    rows = list(_each(_core.link_ids(), _core.link_get_fd_by_id, _core.link_info))
    for r in rows:
        r.pop("extra", None)
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'id':>8}  {'type':<16} prog")
    for r in rows:
        print(f"{r['id']:>8}  {_name(LinkType, r['type']):<16} {r['prog_id']}")
    return 0


def cmd_dump(args: argparse.Namespace) -> int:
    """Dump one map's entries (keys and values as hex)."""
    from .maps import Map
    with Map.from_id(args.map_id) as m:
        if m.key_size == 0:
            print(f"map {args.map_id} has no keys", file=sys.stderr)
            return 1
        keys, values = m.lookup_batch()
        out = []
        for k, v in zip(keys, values):
            out.append({"key": bytes(k).hex(), "value": v.tobytes().hex()})
    if args.json:
        print(json.dumps(out))
    else:
        for e in out:
            print(f"{e['key']}: {e['value']}")
    return 0


def _export(rest: list) -> int:
    from .metrics.exporter import main as export_main  # needs the 'metrics' extra
    return export_main(rest)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastbpf`` command."""
    p = argparse.ArgumentParser(prog="fastbpf", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, fn, help_ in (("maps", cmd_maps, "list maps"), ("progs", cmd_progs, "list programs"),
                            ("links", cmd_links, "list links")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--json", action="store_true", help="print JSON")
        s.set_defaults(fn=fn)
    d = sub.add_parser("dump", help="dump a map's entries")
    d.add_argument("map_id", type=int)
    d.add_argument("--json", action="store_true", help="print JSON")
    d.set_defaults(fn=cmd_dump)
    e = sub.add_parser("export", help="serve maps as Prometheus metrics", add_help=False)
    e.add_argument("rest", nargs=argparse.REMAINDER)
    e.set_defaults(fn=lambda a: _export(a.rest))
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except (BPFError, ValueError) as e:
        print(f"fastbpf: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
