"""The fastbpf command against live objects, compared with ``bpftool -j``."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from fastbpf import Map, MapSpec, MapType, Program, ProgramSpec, ProgramType, asm, features
from fastbpf.asm import R0
from fastbpf.cli import main

sys.path.insert(0, os.path.dirname(__file__))
from cli_maps import SPECS, every_map, fill  # noqa: E402

pytestmark = pytest.mark.kernel

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.join(os.path.dirname(HERE), "testdata")
needs_bpftool = pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool not installed")


def run(*argv: str) -> tuple[int, str, str]:
    """The CLI in-process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def bpftool(*argv: str) -> tuple[int, object]:
    r = subprocess.run(["bpftool", "-j", *argv], capture_output=True, text=True)
    text = r.stdout.strip()
    return r.returncode, (json.loads(text) if text else None)


def ret_prog(name: str, value: int = 2) -> Program:
    return Program.load(ProgramSpec(ProgramType.XDP, asm.Instructions(
        [asm.Mov.imm(R0, value), asm.exit()]), name=name))


def test_version():
    from fastbpf import __version__
    r = subprocess.run([sys.executable, "-m", "fastbpf.cli", "--version"], capture_output=True,
                       text=True, cwd=os.path.dirname(HERE))
    assert r.returncode == 0 and r.stdout.strip() == f"fastbpf {__version__}"


@needs_bpftool
@pytest.mark.parametrize("mtype", list(SPECS) + [MapType.STRUCT_OPS], ids=lambda t: t.name)
def test_map_dump_matches_bpftool_for_every_map_type(mtype, unique_name):
    for t, m in every_map(unique_name, only=mtype):
        if isinstance(m, str):
            pytest.skip(m)
        with m:
            fill(m, t)
            brc, theirs = bpftool("map", "dump", "id", str(m.id))
            rc, out, err = run("map", "dump", str(m.id), "--json")
            if brc != 0:
                # Keyless maps and local storage cannot be walked: both refuse.
                assert rc == 1 and err.startswith("fastbpf: ") and theirs in (None, [])
                continue
            assert rc == 0, err
            assert json.loads(out) == theirs
            if t == MapType.HASH:
                assert len(theirs) == 2  # the comparison is not of two empty lists
            # The same facts as bpftool's `map show`.
            rc, out, _ = run("map", "show", "id", str(m.id), "-j")
            _, facts = bpftool("map", "show", "id", str(m.id))
            ours = json.loads(out)
            for k, v in facts.items():
                if isinstance(v, (int, str)) and k != "type" or k == "type" and \
                        isinstance(v, str):
                    assert ours[k] == v, k


@needs_bpftool
def test_array_and_percpu_keys_are_the_indexes(unique_name):
    """The old `dump` printed bytes(np.uint32(i)) (i zero bytes) as keys."""
    with Map.create(MapSpec(MapType.PERCPU_ARRAY, key=4, value=np.uint32, max_entries=3,
                            name=unique_name)) as m:
        ncpus = len(m[0])
        m[2] = np.arange(7, 7 + ncpus, dtype=np.uint32)
        rc, out, _ = run("map", "dump", str(m.id), "-j")
        entries = json.loads(out)
        assert [e["key"] for e in entries] == [[f"0x0{i}", "0x00", "0x00", "0x00"]
                                               for i in range(3)]
        assert [c["value"][0] for c in entries[2]["values"]] == \
            [f"0x{7 + c:02x}" for c in range(ncpus)]
        rc, table, _ = run("map", "dump", str(m.id))
        lines = table.splitlines()
        assert lines[0].split() == ["key"] + [f"cpu{c}" for c in range(ncpus)]
        # The map has BTF from its dtypes: the table shows numbers.
        assert lines[3].split() == ["2"] + [str(7 + c) for c in range(ncpus)]


def test_object_names(unique_name, bpffs_dir):
    with Map.create(MapSpec(MapType.HASH, key=np.uint32, value=np.uint64, max_entries=2,
                            name=unique_name)) as m:
        pin = os.path.join(bpffs_dir, "m")
        m.pin(pin)
        for ref in ([str(m.id)], ["id", str(m.id)], ["pinned", pin], ["name", unique_name],
                    [pin]):
            rc, out, err = run("map", "show", *ref, "-j")
            assert rc == 0, (ref, err)
            assert json.loads(out)["id"] == m.id
        rc, out, _ = run("map", "list", "-f", "-j")
        mine = [r for r in json.loads(out) if r["id"] == m.id]
        assert mine[0]["pinned"] == [pin] and mine[0]["name"] == unique_name
        rc, _, err = run("map", "show", "name", unique_name + "x")
        assert rc == 1 and "no map named" in err
        rc, _, err = run("map", "show", "id", str(0xFFFFFFF0))
        assert rc == 1 and "map" in err


def test_missing_map_is_an_error():
    rc, _, err = run("map", "dump", str(0xFFFFFFF0))
    assert rc == 1 and "cannot open map" in err


@needs_bpftool
def test_update_lookup_delete_json_and_hex(unique_name):
    vd = np.dtype([("packets", "<u8"), ("port", ">u2"), ("tag", "S6")])
    with Map.create(MapSpec(MapType.HASH, key=np.uint32, value=vd, max_entries=4,
                            name=unique_name)) as m:
        assert run("map", "update", str(m.id), "--key", "7",
                   "--value", '{"packets": 5, "port": 8080, "tag": "web"}')[0] == 0
        assert run("map", "update", str(m.id), "--key", "hex:09 00 00 00",
                   "--value", "0x" + "01" * 8 + "1f90" + "00" * 6)[0] == 0
        assert m[7]["packets"] == 5 and m[7]["port"] == 8080 and m[7]["tag"] == b"web"
        assert m[9]["packets"] == 0x0101010101010101 and m[9]["port"] == 8080
        _, theirs = bpftool("map", "lookup", "id", str(m.id), "key", "7", "0", "0", "0")
        rc, out, _ = run("map", "lookup", str(m.id), "--key", "7", "-j")
        ours = json.loads(out)
        assert ours["key"] == theirs["key"] and ours["value"] == theirs["value"]
        assert ours["formatted"] == theirs["formatted"]
        rc, _, err = run("map", "update", str(m.id), "--key", "7", "--value", "{}",
                         "--flags", "noexist")
        assert rc == 1 and "exists" in err.lower()
        assert run("map", "delete", str(m.id), "--key", "0x07000000")[0] == 0
        assert 7 not in m
        rc, _, err = run("map", "lookup", str(m.id), "--key", "7")
        assert rc == 1 and "not found" in err
        rc, _, err = run("map", "update", str(m.id), "--key", "7", "--value", '{"nope": 1}')
        assert rc == 1 and "nope" in err


def test_percpu_update_per_cpu(unique_name):
    with Map.create(MapSpec(MapType.PERCPU_HASH, key=np.uint32, value=np.uint32,
                            max_entries=4, name=unique_name)) as m:
        from fastbpf import possible_cpus
        n = possible_cpus()
        assert run("map", "update", str(m.id), "--key", "1",
                   "--value", json.dumps(list(range(10, 10 + n))))[0] == 0
        assert m[1].tolist() == list(range(10, 10 + n))
        assert run("map", "update", str(m.id), "--key", "2", "--value", "3")[0] == 0
        assert m[2].tolist() == [3] * n


@needs_bpftool
def test_typed_map_dump_formats(unique_name, tmp_path):
    kd = np.dtype([("saddr", ">u4"), ("dport", ">u2"), ("proto", "u1")], align=True)
    vd = np.dtype([("packets", "<u8"), ("hist", "<u4", (2, 3)), ("inner", [("a", "i2")])])
    with Map.create(MapSpec(MapType.HASH, key=kd, value=vd, max_entries=4,
                            name=unique_name)) as m:
        k = np.zeros((), kd)
        k["saddr"], k["dport"], k["proto"] = 0x0A000001, 443, 6
        v = np.zeros((), vd)
        v["packets"], v["hist"][1, 2], v["inner"]["a"] = 9, 4, -3
        m[k] = v
        rc, out, _ = run("map", "dump", str(m.id), "-j")
        _, theirs = bpftool("map", "dump", "id", str(m.id))
        assert json.loads(out) == theirs
        assert theirs[0]["formatted"]["value"]["hist"] == [[0, 0, 0], [0, 0, 4]]
        npy = tmp_path / "d.npy"
        assert run("map", "dump", str(m.id), "--format", "npy", "-o", str(npy))[0] == 0
        arr = np.load(npy)
        assert arr.dtype.names == ("key", "value")
        assert arr["key"].dtype == kd and arr["value"].dtype == vd
        assert arr[0]["key"]["dport"] == 443 and arr[0]["value"]["inner"]["a"] == -3
        rc, text, _ = run("map", "dump", str(m.id), "--format", "csv")
        head, row = text.splitlines()[:2]
        cols = dict(zip(head.split(","), row.split(",")))
        assert cols["value.packets"] == "9" and cols["value.hist[1][2]"] == "4"
        assert cols["value.inner.a"] == "-3" and cols["key.proto"] == "6"
        rc, table, _ = run("map", "dump", str(m.id), "-o", str(tmp_path / "t.txt"))
        assert '"packets": 9' in (tmp_path / "t.txt").read_text()


def test_dump_shows_no_progress_when_piped(unique_name):
    with Map.create(MapSpec(MapType.HASH, key=np.uint32, value=np.uint32, max_entries=20000,
                            name=unique_name)) as m:
        m.update_batch(np.arange(20000, dtype=np.uint32), np.arange(20000, dtype=np.uint32))
        r = subprocess.run([sys.executable, "-m", "fastbpf.cli", "map", "dump", str(m.id),
                            "--format", "csv"], capture_output=True, text=True,
                           cwd=os.path.dirname(HERE))
        assert r.returncode == 0 and r.stderr == ""
        assert len(r.stdout.splitlines()) == 20001


@needs_bpftool
def test_prog_show_matches_bpftool(unique_name):
    from fastbpf import enable_stats
    with ret_prog(unique_name) as p:
        with enable_stats():
            p.test_run(b"\0" * 64, repeat=3)
        rc, out, _ = run("prog", "show", "name", unique_name, "-j")
        ours = json.loads(out)
        _, theirs = bpftool("prog", "show", "id", str(p.id))
        for k, v in theirs.items():
            if k == "loaded_at":
                assert abs(ours[k] - v) <= 2
            elif k not in ("pids",):
                assert ours[k] == v, k
        assert ours["run_cnt"] >= 3
        rc, out, _ = run("prog", "list")
        assert any(unique_name in line and line.split()[0] == str(p.id)
                   for line in out.splitlines())


@needs_bpftool
def test_prog_dump_xlated_with_source_lines(bpffs_dir):
    obj = os.path.join(TESTDATA, "core_globals-el.o")
    r = subprocess.run(["bpftool", "prog", "loadall", obj, bpffs_dir], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"bpftool could not load {obj}: {r.stderr.strip()[-200:]}")
    pin = os.path.join(bpffs_dir, sorted(os.listdir(bpffs_dir))[0])
    rc, out, err = run("prog", "dump", "xlated", "pinned", pin, "-j")
    assert rc == 0, err
    ours = json.loads(out)
    _, theirs = bpftool("prog", "dump", "xlated", "pinned", pin)
    assert len(ours) == len(theirs)
    srcs = [(i, e["src"]) for i, e in enumerate(theirs) if "src" in e]
    assert srcs and [(i, ours[i]["src"]["text"]) for i, _ in srcs] == srcs
    for o, t in zip(ours, theirs):
        plain = t["disasm"].split(") ", 1)[1]
        if "call" not in plain:
            assert o["disasm"] == plain
    rc, text, _ = run("prog", "dump", "xlated", "pinned", pin)
    assert f"; {srcs[0][1]} @ " in text


def test_prog_dump_jited(unique_name):
    with ret_prog(unique_name) as p:
        info = p.info()
        rc, out, err = run("prog", "dump", "jited", str(p.id), "-j")
        assert rc == 0, err
        listing = json.loads(out)
        nbytes = sum(len(e["hex"]) // 2 for e in listing)
        assert nbytes == info.jited_prog_len
        if shutil.which("objdump") or shutil.which("llvm-objdump-19"):
            assert listing[-1]["disasm"].split()[0] in ("ret", "retq", "int3", "jmp")


def test_link_list_matches_bpftool(unique_name):
    from fastbpf.link import attach_raw_tracepoint
    why = features.skip_reason("program_type", ProgramType.RAW_TRACEPOINT)
    if why:
        pytest.skip(why)
    with Program.load(ProgramSpec(ProgramType.RAW_TRACEPOINT, asm.Instructions(
            [asm.Mov.imm(R0, 0), asm.exit()]), name=unique_name)) as p:
        with attach_raw_tracepoint(p, "sys_enter") as link:
            lid = link.info().id
            rc, out, _ = run("link", "list", "-j")
            mine = [r for r in json.loads(out) if r["id"] == lid]
            assert mine and mine[0]["prog_id"] == p.id and mine[0]["type"] == "raw_tracepoint"
            if shutil.which("bpftool"):
                _, theirs = bpftool("link", "show", "id", str(lid))
                assert {k: theirs[k] for k in ("id", "type", "prog_id")} == \
                    {k: mine[0][k] for k in ("id", "type", "prog_id")}
            rc, out, _ = run("link", "show", str(lid))
            assert out.splitlines()[1].split()[:3] == [str(lid), "raw_tracepoint", str(p.id)]


def test_top_once_lists_programs_with_rates(unique_name):
    pytest.importorskip("rich")
    why = features.skip_reason("bpf_stats")
    if why:
        pytest.skip(why)
    with ret_prog(unique_name) as p:
        r = subprocess.Popen([sys.executable, "-m", "fastbpf.cli", "top", "--once", "-i", "1.5"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=os.path.dirname(HERE), env={**os.environ, "COLUMNS": "200"})
        import time
        deadline = time.monotonic() + 20
        while not _holds_stats(r.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        p.test_run(b"\0" * 64, repeat=1000)
        out, err = r.communicate(timeout=30)
        assert r.returncode == 0, err
        row = [line for line in out.splitlines() if unique_name in line]
        assert row, out
        cells = [c.strip() for c in row[0].split("│") if c.strip()]
        assert cells[0] == str(p.id) and cells[1] == "xdp"
        assert int(cells[3]) >= 1000   # runs counted while top held the stats on


def test_top_in_tmux(unique_name):
    pytest.importorskip("rich")
    if shutil.which("tmux") is None:
        pytest.skip("tmux not installed")
    why = features.skip_reason("bpf_stats")
    if why:
        pytest.skip(why)
    import time
    session = "fbtop" + unique_name
    with ret_prog(unique_name) as p:
        cmd = f"cd {os.path.dirname(HERE)} && {sys.executable} -m fastbpf.cli top -i 0.5; " \
              f"echo TOP-EXIT=$?; sleep 30"
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "200", "-y", "50",
                        cmd], check=True)
        try:
            deadline = time.monotonic() + 20
            pane = ""
            while time.monotonic() < deadline:
                p.test_run(b"\0" * 64, repeat=100)
                pane = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                      capture_output=True, text=True).stdout
                if unique_name in pane and "RUNS/S" in pane:
                    break
                time.sleep(0.3)
            row = [line for line in pane.splitlines() if unique_name in line]
            assert row, pane
            assert row[0].split("│")[1].strip() == str(p.id)
            top_pid = _pid_of(f"-m fastbpf.cli top -i 0.5")
            assert top_pid and _holds_stats(top_pid)
            subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                pane = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                      capture_output=True, text=True).stdout
                if "TOP-EXIT=" in pane:
                    break
                time.sleep(0.2)
            assert "TOP-EXIT=0" in pane, pane
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def _holds_stats(pid: int) -> bool:
    """Whether process *pid* holds a BPF_ENABLE_STATS descriptor."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if "bpf-stats" in os.readlink(f"/proc/{pid}/fd/{fd}"):
                return True
        except OSError:
            continue
    return False


def _pid_of(needle: str) -> int | None:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if needle in cmd and cmd.startswith(sys.executable):
            return int(pid)
    return None


def test_dump_shows_progress_on_a_terminal(unique_name, tmp_path):
    pytest.importorskip("rich")
    if shutil.which("script") is None:
        pytest.skip("script (util-linux) not installed")
    with Map.create(MapSpec(MapType.HASH, key=np.uint32, value=np.uint32, max_entries=60000,
                            name=unique_name)) as m:
        m.update_batch(np.arange(60000, dtype=np.uint32), np.arange(60000, dtype=np.uint32))
        typescript = tmp_path / "typescript"
        out = tmp_path / "out.csv"
        # `script` runs the command on a pseudo-terminal and records what it drew.
        cmd = f"{sys.executable} -m fastbpf.cli map dump {m.id} --format csv -o {out}"
        r = subprocess.run(["script", "-qec", cmd, str(typescript)], capture_output=True,
                           cwd=os.path.dirname(HERE), env={**os.environ, "TERM": "xterm"})
        assert r.returncode == 0, r.stdout
        drawn = typescript.read_bytes().decode("utf-8", "replace")
        assert f"map {m.id}" in drawn and "━" in drawn   # rich's bar, then erased
        assert len(out.read_text().splitlines()) == 60001
