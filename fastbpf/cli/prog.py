"""``fastbpf prog list|show|dump xlated|jited|tracelog``."""

from __future__ import annotations

import argparse
import re
import shutil
import struct
import subprocess
import tempfile
from typing import Any, NamedTuple

import numpy as np

from .. import _abi_layout, _core, btf
from ..asm import Instructions
from ..errors import BPFError
from ..programs import ProgramInfo
from ._common import (OBJ_HELP, CLIError, add_list_show, add_output_flags, info_by_id, list_objects,
                      parse_ref, print_json, resolve_ids, type_name, wall_time_of)

__all__ = ["register", "prog_facts", "program_info", "ProgDetails", "prog_details"]


def register(sub: Any) -> None:
    """Add ``prog`` and its subcommands to the parser."""
    p = sub.add_parser("prog", help="list, show, disassemble programs; print trace_printk output")
    ps = p.add_subparsers(dest="prog_cmd", required=True, metavar="SUBCOMMAND")
    add_list_show(ps, "program", cmd_list)
    d = ps.add_parser("dump", help="disassemble a program (xlated: BPF; jited: machine code)")
    d.add_argument("what", choices=("xlated", "jited"))
    d.add_argument("obj", nargs="+", help=OBJ_HELP)
    add_output_flags(d)
    d.set_defaults(fn=cmd_dump)
    t = ps.add_parser("tracelog", help="print bpf_trace_printk() output as it arrives")
    t.add_argument("--timeout", type=float, default=None,
                   help="stop after this many seconds without a line")
    t.add_argument("-j", "--json", action="store_true", help="one JSON object per line")
    t.set_defaults(fn=cmd_tracelog)


def program_info(fd: int) -> ProgramInfo:
    """:class:`ProgramInfo` of the program behind *fd*."""
    return ProgramInfo.from_fd(fd)


def prog_facts(prog_id: int, pins: dict[int, list[str]] | None = None) -> dict[str, Any] | None:
    """bpftool's ``prog show`` facts for one program, with its JSON field names
    (None if it went away)."""
    got = info_by_id("prog", prog_id, ProgramInfo.from_fd)
    if got is None:
        return None
    i, extra = got
    out: dict[str, Any] = {"id": i.id, "type": type_name("prog", int(i.type))}
    if i.name:
        out["name"] = i.name
    out.update(tag=i.tag, gpl_compatible=i.gpl_compatible)
    if i.run_time_ns or i.run_cnt:
        out.update(run_time_ns=i.run_time_ns, run_cnt=i.run_cnt)
    if i.recursion_misses:
        out["recursion_misses"] = i.recursion_misses
    out.update(loaded_at=wall_time_of(i.load_time), uid=i.created_by_uid,
               bytes_xlated=i.xlated_prog_len, jited=bool(i.jited_prog_len),
               bytes_jited=i.jited_prog_len)
    if "memlock" in extra:
        out["bytes_memlock"] = int(extra["memlock"])
    if i.map_ids:
        out["map_ids"] = list(i.map_ids)
    if i.btf_id:
        out["btf_id"] = i.btf_id
    if pins is not None and i.id in pins:
        out["pinned"] = pins[i.id]
    return out


def cmd_list(args: argparse.Namespace) -> int:
    """``prog list`` / ``prog show OBJ``."""
    return list_objects(
        args, "prog", "program", prog_facts,
        ["id", "type", "name", "tag", "run_cnt", "run_time_ns", "xlated", "jited", "memlock",
         "maps", "btf"],
        lambda r: [r["id"], r["type"], r.get("name", ""), r["tag"], r.get("run_cnt", 0),
                   r.get("run_time_ns", 0), r["bytes_xlated"], r["bytes_jited"],
                   r.get("bytes_memlock", ""), ",".join(map(str, r.get("map_ids", []))),
                   r.get("btf_id", "")],
        right=(0, 4, 5, 6, 7, 8))


# -- program details: instructions, jited code, line info -----------------------------

class ProgDetails(NamedTuple):
    """What a disassembly needs beyond :class:`ProgramInfo`."""

    xlated: bytes
    jited: bytes
    #: Start address of each jited function (ksyms) and its length.
    func_addrs: list[int]
    func_lens: list[int]
    #: (instruction offset, file, line, column, source text) per line_info record.
    lines: list[tuple[int, str, int, int, str]]
    #: (jited address) per line_info record, same order as *lines*.
    jited_lines: list[int]


_LAYOUT = _abi_layout.layout()["bpf_prog_info"]


def prog_details(fd: int) -> ProgDetails:
    """Fetch instructions, machine code and line info of the program *fd*."""
    size, off = _LAYOUT
    first = bytearray(size)
    _core.obj_get_info_by_fd(fd, first)

    def u32(b: bytes | bytearray, name: str) -> int:
        return int(struct.unpack_from("<I", b, off[name])[0])

    xl, jl = u32(first, "xlated_prog_len"), u32(first, "jited_prog_len")
    nks, nfl = u32(first, "nr_jited_ksyms"), u32(first, "nr_jited_func_lens")
    nli, nji = u32(first, "nr_line_info"), u32(first, "nr_jited_line_info")
    lrs, jlrs = u32(first, "line_info_rec_size"), u32(first, "jited_line_info_rec_size")
    btf_id = u32(first, "btf_id")
    # Buffers the kernel fills in a second call; numpy gives stable addresses.
    bufs: dict[str, np.ndarray] = {"xlated_prog_insns": np.zeros(max(xl, 1), np.uint8),
            "jited_prog_insns": np.zeros(max(jl, 1), np.uint8),
            "jited_ksyms": np.zeros(max(nks, 1), np.uint64),
            "jited_func_lens": np.zeros(max(nfl, 1), np.uint32),
            "line_info": np.zeros(max(nli * lrs, 1), np.uint8),
            "jited_line_info": np.zeros(max(nji * jlrs, 8), np.uint8)}
    second = bytearray(size)
    for name, n in (("xlated_prog_len", xl), ("jited_prog_len", jl), ("nr_jited_ksyms", nks),
                    ("nr_jited_func_lens", nfl), ("nr_line_info", nli),
                    ("nr_jited_line_info", nji), ("line_info_rec_size", lrs),
                    ("jited_line_info_rec_size", jlrs)):
        struct.pack_into("<I", second, off[name], n)
    for name, arr in bufs.items():
        struct.pack_into("<Q", second, off[name], arr.ctypes.data)
    _core.obj_get_info_by_fd(fd, second)
    lines: list[tuple[int, str, int, int, str]] = []
    if nli and btf_id:
        try:
            with btf.Handle.from_id(btf_id) as h:
                spec = h.spec()
            li = bufs["line_info"].tobytes()
            for r in range(nli):
                insn, fname, lline, lcol = struct.unpack_from("<IIII", li, r * lrs)
                lines.append((insn, spec.string_at(fname), lcol >> 10, lcol & 0x3FF,
                              spec.string_at(lline)))
        except (BPFError, btf.BTFError, IndexError, ValueError):
            lines = []
    jlines = ([int(x) for x in bufs["jited_line_info"][:nji * 8].view(np.uint64)]
              if jlrs == 8 and nji else [])
    return ProgDetails(bufs["xlated_prog_insns"][:xl].tobytes(),
                       bufs["jited_prog_insns"][:jl].tobytes(),
                       [int(x) for x in bufs["jited_ksyms"][:nks]],
                       [int(x) for x in bufs["jited_func_lens"][:nfl]], lines, jlines)


def _open_prog(tokens: list[str]) -> tuple[int, _core.FD]:
    ids = resolve_ids("prog", parse_ref(tokens))
    if len(ids) != 1:
        raise CLIError(f"{' '.join(tokens)!r} names {len(ids)} programs ({ids}); use an id")
    try:
        return ids[0], _core.prog_get_fd_by_id(ids[0])
    except BPFError as e:
        raise CLIError(f"cannot open program {ids[0]}: {e}") from None


_MAP_FD = re.compile(r"map_fd\((\d+)\)")


def xlated_listing(d: ProgDetails) -> list[dict[str, Any]]:
    """One dict per instruction: ``pc``, ``disasm``, ``raw`` (hex) and,
    where line info exists, ``src`` = {file, line, col, text}."""
    from ..asm import format_instruction
    insns = Instructions.decode(d.xlated)
    by_pc = {ln[0]: ln for ln in d.lines}
    out: list[dict[str, Any]] = []
    pc = 0
    for insn in insns:
        # In xlated code the kernel has put map ids where the loader put fds.
        text = _MAP_FD.sub(r"map[id:\1]", format_instruction(insn))
        e: dict[str, Any] = {"pc": pc, "disasm": text}
        if pc in by_pc:
            _, f, line, col, text = by_pc[pc]
            e["src"] = {"file": f, "line": line, "col": col, "text": text.strip()}
        out.append(e)
        pc += 2 if insn.opcode == 0x18 else 1
    return out


def _objdump() -> str | None:
    # GNU objdump reads raw machine code ("-b binary"); llvm-objdump cannot.
    return shutil.which("objdump")


def jited_listing(d: ProgDetails) -> list[dict[str, Any]]:
    """The machine code, one dict per instruction (``addr``, ``hex``,
    ``disasm``) when an objdump is installed, else one dict per function
    with its bytes in hex."""
    tool = _objdump()
    funcs = list(zip(d.func_addrs, d.func_lens)) or [(0, len(d.jited))]
    if tool is None:
        out, pos = [], 0
        for addr, n in funcs:
            out.append({"addr": addr, "hex": d.jited[pos:pos + n].hex()})
            pos += n
        return out
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(d.jited)
        f.flush()
        cmd = [tool, "-D", "-b", "binary", "-m", "i386:x86-64", f.name]
        res = subprocess.run(cmd, capture_output=True, text=True)
    out = []
    for line in res.stdout.splitlines():
        where, sep, rest = line.partition(":\t")
        if not sep or not where.strip().isalnum():
            continue
        parts = rest.split("\t")
        out.append({"addr": int(where.strip(), 16), "hex": parts[0].strip().replace(" ", ""),
                    "disasm": " ".join(p.strip() for p in parts[1:]).strip()})
    return out


def cmd_dump(args: argparse.Namespace) -> int:
    """``prog dump xlated|jited OBJ``."""
    pid, fd = _open_prog(args.obj)
    with fd:
        d = prog_details(fd.fd)
    if args.what == "xlated":
        listing = xlated_listing(d)
        if args.json or args.pretty:
            print_json(listing, args.pretty)
            return 0
        for e in listing:
            if "src" in e:
                s = e["src"]
                print(f"; {s['text']} @ {s['file']}:{s['line']}")
            print(f"{e['pc']:4d}: {e['disasm']}")
        return 0
    if not d.jited:
        raise CLIError(f"program {pid} has no jited code (is the JIT off?)")
    listing = jited_listing(d)
    if args.json or args.pretty:
        print_json(listing, args.pretty)
        return 0
    for e in listing:
        print(f"{e['addr']:6x}:  {e['hex']:<24}  {e.get('disasm', '')}".rstrip())
    return 0


def cmd_tracelog(args: argparse.Namespace) -> int:
    """``prog tracelog``: the trace pipe, parsed, until Ctrl-C (or --timeout)."""
    from ..trace import trace_lines
    import json
    for line in trace_lines(timeout=args.timeout):
        if args.json:
            print(json.dumps(line._asdict()), flush=True)
        else:
            print(line.raw, flush=True)
    return 0
