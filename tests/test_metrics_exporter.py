"""The config-driven exporter, end to end on pinned maps: every decoder, both
histogram bucket types, bad configs naming their line, maps that disappear,
``fastbpf export`` as a process, and the maps of a clang-built object.

Loading an object through fastbpf's ELF loader (``object:`` in the config)
is the one step not covered here: the loader lives on another branch.
"""

from __future__ import annotations

import logging
import os
import platform
import signal
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest

pytest.importorskip("prometheus_client")
pytest.importorskip("yaml")

from fastbpf import Map, MapSpec, MapType, btf, link  # noqa: E402
from fastbpf.metrics.config import parse_config  # noqa: E402
from fastbpf.metrics.decoders import ConfigError  # noqa: E402
from fastbpf.metrics.exporter import Exporter  # noqa: E402
from fastbpf.programs import Program  # noqa: E402
from prometheus_client.utils import floatToGoString  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import metricutil as mu  # noqa: E402
import netutil  # noqa: E402
from test_metrics import KINDS, LENGTHS, per_entry, samples, scrape, veth  # noqa: E402,F401

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CGROUP2 = "/sys/fs/cgroup/unified"
GETPID = {"x86_64": 39, "aarch64": 172}.get(platform.machine())

#: struct dec_key { u64 addr; u64 cgid; u32 nr; u8 ip[4]; char comm[16]; u32 num; u32 pad; }
DEC_KEY = btf.Struct("dec_key", 48, [
    ("addr", mu.U64, 0), ("cgid", mu.U64, 64), ("nr", mu.U32, 128),
    ("ip", btf.Array(mu.U8, 4), 160), ("comm", btf.Array(mu.CHAR, 16), 192),
    ("num", mu.U32, 320), ("pad", mu.U32, 352)])


def unique_function() -> tuple[int, str]:
    """A kernel function whose address no other listed symbol shares."""
    rows = []
    with open("/proc/kallsyms") as f:
        for line in f:
            a, t, name = line.split()[:3]
            if int(a, 16):
                rows.append((int(a, 16), t, name))
    if not rows:
        pytest.skip("/proc/kallsyms shows no addresses (kptr_restrict)")
    rows.sort()
    for i in range(1, len(rows) - 1):
        a, t, name = rows[i]
        if t in "tT" and rows[i - 1][0] < a < rows[i + 1][0] - 8 and name == "schedule":
            return a, name
    for i in range(1, len(rows) - 1):
        a, t, name = rows[i]
        if t in "tT" and rows[i - 1][0] < a < rows[i + 1][0] - 8:
            return a, name
    pytest.skip("no function symbol with a unique address")


@pytest.fixture
def cgroup_dir():
    if not os.path.isdir(CGROUP2):
        pytest.skip(f"no cgroup v2 hierarchy at {CGROUP2}")
    path = os.path.join(CGROUP2, "fbtest-" + uuid.uuid4().hex[:10])
    yield path
    if os.path.isdir(path):
        os.rmdir(path)


def write_config(tmp_path, text: str) -> str:
    p = tmp_path / "exporter.yaml"
    p.write_text(textwrap.dedent(text))
    return str(p)


EVERY_DECODER = """\
    maps:
      decoded: {{pin: {pins}/decoded}}
      len_exp2: {{pin: {pins}/exp2}}
      len_linear: {{pin: {pins}/linear}}
    metrics:
      counters:
        - name: fb_decoded_total
          help: One label per decoder
          map: decoded
          labels:
            - {{name: sym, field: addr, decoders: [{{name: ksym}}]}}
            - {{name: cgroup, field: cgid, decoders: [{{name: cgroup}}]}}
            - {{name: syscall, field: nr, decoders: [{{name: syscall}}]}}
            - {{name: ip, field: ip, decoders: [{{name: inet_ip}}]}}
            - name: comm
              field: comm
              decoders:
                - {{name: string}}
                - {{name: regexp, regexps: ["^fb"]}}
            - name: num
              field: num
              decoders:
                - {{name: uint}}
                - name: static_map
                  static_map: {{1: one, 2: two}}
      histograms:
        - name: fb_len_exp2
          help: Packet lengths, log2 buckets
          map: len_exp2
          bucket_type: exp2
          bucket_min: 0
          bucket_max: 20
          labels:
            - {{name: bucket, size: 4, decoders: [{{name: uint}}]}}
        - name: fb_len_linear
          help: Packet lengths, 32-byte buckets
          map: len_linear
          bucket_type: linear
          bucket_max: 47
          bucket_multiplier: 32
          labels:
            - name: kind
              field: kind
              decoders: [{{name: uint}}, {{name: static_map, static_map: {{0: even, 1: odd}}}}]
            - {{name: bucket, field: bucket, decoders: [{{name: uint}}]}}
"""


@pytest.fixture
def pinned(bpffs_dir, unique_name):
    """The three maps of EVERY_DECODER, pinned; the histograms filled by test_run."""
    d = Map.create(MapSpec(MapType.HASH, key=DEC_KEY, value=mu.U64, max_entries=64,
                           name=unique_name + "d"))
    e, lin = mu.exp2_map(unique_name + "e"), mu.linear_map(unique_name + "l")
    try:
        with mu.length_histograms(e, lin) as prog:
            mu.send_lengths(prog, LENGTHS, KINDS)
        for m, n in ((d, "decoded"), (e, "exp2"), (lin, "linear")):
            m.pin(os.path.join(bpffs_dir, n))
        yield bpffs_dir, d, e, lin
    finally:
        for m in (d, e, lin):
            m.close()


@pytest.mark.skipif(GETPID is None, reason="syscall numbers known for x86_64 and aarch64 only")
def test_every_decoder_and_both_bucket_types(tmp_path, pinned, cgroup_dir, no_fd_leak):
    pins, d, e, lin = pinned
    addr, sym = unique_function()
    cfg = parse_config(EVERY_DECODER.format(pins=pins))
    kd = d.key_dtype

    def key(cgid, comm, num, pad=0):
        k = np.zeros((), kd)
        k["addr"], k["cgid"], k["nr"], k["ip"] = addr + 4, cgid, GETPID, [10, 1, 2, 3]
        k["comm"], k["num"], k["pad"] = comm, num, pad
        return k

    root_id = os.stat(CGROUP2).st_ino
    d[key(root_id, b"fbtest", 1)] = 5
    d[key(root_id, b"fbtest", 1, pad=9)] = 6     # same labels: summed
    d[key(root_id, b"other", 1)] = 100           # dropped by the regexp
    d[key(root_id, b"fbtest", 3)] = 7            # not in the static map
    with Exporter(cfg) as ex:
        addr_port = ex.serve(0, "127.0.0.1")
        url = f"http://127.0.0.1:{addr_port[1]}/metrics"
        got = scrape(url)
        base = {"sym": sym, "syscall": "getpid", "ip": "10.1.2.3", "comm": "fbtest"}

        def labels(cg, num):
            return frozenset(dict(base, cgroup=cg, num=num).items())
        assert samples(got, "fb_decoded_total") == {labels(CGROUP2, "one"): 11.0,
                                                    labels(CGROUP2, "unknown:3"): 7.0}
        # A cgroup made after the first scrape: a cache miss refreshes the table.
        os.mkdir(cgroup_dir)
        d[key(os.stat(cgroup_dir).st_ino, b"fbtest", 2)] = 13
        got = scrape(url)
        assert samples(got, "fb_decoded_total")[labels(cgroup_dir, "two")] == 13.0

        # exp2: cumulative buckets, count and the sum slot, equal to the map.
        slots = [int(np.sum(e[i])) for i in range(mu.EXP2_BUCKETS)]
        b = samples(got, "fb_len_exp2_bucket")
        assert [b[frozenset({"le": floatToGoString(2 ** i)}.items())] for i in range(21)] \
            == np.cumsum(slots[:21]).tolist()
        assert got[("fb_len_exp2_count", frozenset())] == sum(slots[:21]) == len(LENGTHS)
        assert got[("fb_len_exp2_sum", frozenset())] == slots[mu.EXP2_SUM] == sum(LENGTHS)
        # linear, grouped by kind.
        lb = samples(got, "fb_len_linear_bucket")
        for kind, kname in ((0, "even"), (1, "odd")):
            counts = np.zeros(48)
            for k, v in per_entry(lin):
                if k["kind"] == kind:
                    counts[int(k["bucket"])] += v
            want = np.cumsum(counts).tolist()
            assert [lb[frozenset({"kind": kname, "le": floatToGoString(i * 32)}.items())]
                    for i in range(48)] == want
            assert got[("fb_len_linear_count", frozenset({"kind": kname}.items()))] == want[-1]
        # The exporter's own metrics.
        errs = samples(got, "fastbpf_exporter_map_read_errors_total")
        assert set(errs.values()) == {0.0} and len(errs) == 3
        durs = samples(got, "fastbpf_exporter_scrape_duration_seconds")
        assert len(durs) == 3 and all(v > 0 for v in durs.values())


def test_map_that_disappears_is_an_error_metric(tmp_path, pinned, caplog, no_fd_leak):
    pins, d, e, lin = pinned
    cfg = parse_config(EVERY_DECODER.format(pins=pins))
    with Exporter(cfg) as ex:
        _, port = ex.serve(0, "127.0.0.1")
        url = f"http://127.0.0.1:{port}/metrics"
        os.unlink(os.path.join(pins, "exp2"))
        with caplog.at_level(logging.WARNING, logger="fastbpf.metrics"):
            got = scrape(url)
        assert "fb_len_exp2" in caplog.text and "is gone" in caplog.text
        assert not samples(got, "fb_len_exp2_count")
        assert samples(got, "fb_len_linear_count")  # the others are still served
        errs = samples(got, "fastbpf_exporter_map_read_errors_total")
        assert errs[frozenset({"metric": "fb_len_exp2"}.items())] == 1.0
        assert errs[frozenset({"metric": "fb_len_linear"}.items())] == 0.0
        # The pin comes back (a new map there): the metric follows it.
        with mu.exp2_map("fbback") as e2:
            e2[3] = np.full(e2.value_stride // 8, 2, np.uint64)
            e2.pin(os.path.join(pins, "exp2"))
            got = scrape(url)
        assert got[("fb_len_exp2_count", frozenset())] == 2 * (e2.value_stride // 8)


def test_decode_failure_during_scrape_is_an_error_metric(tmp_path, bpffs_dir, unique_name,
                                                         caplog, no_fd_leak):
    with mu.exp2_map(unique_name) as e:
        e.pin(os.path.join(bpffs_dir, "h"))
        e[1] = np.ones(e.value_stride // 8, np.uint64)
        cfg = parse_config(f"""
maps: {{h: {{pin: {bpffs_dir}/h}}}}
metrics:
  histograms:
    - name: fb_bad_buckets
      help: buckets decoded to words
      map: h
      bucket_max: 4
      labels:
        - {{name: b, size: 4, decoders: [{{name: uint}}, {{name: static_map, static_map: {{1: one}}}}]}}
""")
        with Exporter(cfg) as ex, caplog.at_level(logging.WARNING, logger="fastbpf.metrics"):
            text = ex.scrape().decode()
            assert 'fastbpf_exporter_map_read_errors_total{metric="fb_bad_buckets"} 1.0' in text
            assert "non-integer" in caplog.text
            assert "fb_bad_buckets_bucket" not in text


# ---------------------------------------------------------------------------
# bad configs: each names its line


BAD = [
    ("unknown map", """\
        maps: {}
        metrics:
          counters:
            - name: fb_x
              help: x
              map: nosuchmap
        """, 4, "unknown map 'nosuchmap'"),
    ("field not in BTF", """\
        maps: {{decoded: {{pin: {pins}/decoded}}}}
        metrics:
          counters:
            - name: decoded
              help: x
              labels:
                - name: port
                  field: sport
        """, 7, "no field 'sport'"),
    ("decoder does not fit", """\
        maps: {{decoded: {{pin: {pins}/decoded}}}}
        metrics:
          counters:
            - name: decoded
              help: x
              labels:
                - name: n
                  field: nr
                  decoders:
                    - name: string
        """, 10, "'string' needs a char array, but key field 'nr' is uint32"),
    ("buckets overflow", """\
        maps: {{exp2: {{pin: {pins}/exp2}}}}
        metrics:
          histograms:
            - name: exp2
              help: x
              bucket_type: exp2
              bucket_max: 4096
              labels: [{{name: b, size: 4}}]
        """, 4, "overflow"),
    ("unknown decoder", """\
        metrics:
          counters:
            - name: c
              help: x
              labels:
                - {name: a, size: 4, decoders: [{name: uintt}]}
        """, 6, "unknown decoder 'uintt'"),
    ("typo in a key", """\
        metrics:
          counters:
            - name: c
              hlep: x
        """, 3, "unknown keys hlep"),
    ("not YAML", """\
        metrics:
          counters: [
            - name: c
        """, 3, "not valid YAML"),
]


@pytest.mark.parametrize("what,text,line,msg", BAD, ids=[b[0] for b in BAD])
def test_bad_config_names_its_line(what, text, line, msg, pinned, no_fd_leak):
    pins = pinned[0]
    text = textwrap.dedent(text).format(pins=pins) if "{pins}" in text else textwrap.dedent(text)
    with pytest.raises(ConfigError) as ei:
        Exporter(parse_config(text))
    assert ei.value.line == line, str(ei.value)
    assert msg in str(ei.value) and str(ei.value).startswith(f"line {line}: ")


# ---------------------------------------------------------------------------
# the command


def _export_proc(cfg_path: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fastbpf.cli", "export", cfg_path,
                             "--port", "0", "--addr", "127.0.0.1"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_fastbpf_export_command(tmp_path, pinned, no_fd_leak):
    pins, d, e, lin = pinned
    cfg = write_config(tmp_path, f"""\
        maps: {{len_exp2: {{pin: {pins}/exp2}}}}
        metrics:
          histograms:
            - name: len_exp2
              help: lengths
              bucket_max: 20
              labels: [{{name: bucket, size: 4}}]
        """)
    p = _export_proc(cfg)
    try:
        line = p.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), p.stderr.read() if p.poll() else line
        got = scrape(f"http://127.0.0.1:{int(line.rsplit(':', 1)[1])}/metrics")
        assert got[("len_exp2_count", frozenset())] == len(LENGTHS)
        assert got[("len_exp2_sum", frozenset())] == sum(LENGTHS)
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0


def test_fastbpf_export_bad_config_exit_status(tmp_path, pinned, no_fd_leak):
    cfg = write_config(tmp_path, """\
        metrics:
          counters:
            - name: c
              help: x
              map: gone
        """)
    p = _export_proc(cfg)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 2
    assert err.strip() == (f"fastbpf export: {cfg}:3: counter 'c': unknown map 'gone', not in "
                           f"'maps:' (no object) (known: none)")


# ---------------------------------------------------------------------------
# a clang-built object (testdata/metrics_export.c), loaded by bpftool for now


COMPILED_CONFIG = """\
    maps:
      packets: {{pin: {maps}/packets}}
      packet_bytes: {{pin: {maps}/packet_bytes}}
    metrics:
      counters:
        - name: packets_total
          help: Packets received, by IP protocol
          map: packets
          labels:
            - name: proto
              field: proto
              decoders:
                - name: uint
                - name: static_map
                  static_map: {{1: icmp, 6: tcp, 17: udp}}
            - {{name: daddr, field: daddr, decoders: [{{name: inet_ip}}]}}
      histograms:
        - name: packet_bytes
          help: Frame lengths, log2 buckets
          bucket_type: exp2
          bucket_max: 20
          labels:
            - {{name: bucket, size: 4, decoders: [{{name: uint}}]}}
"""


def test_export_maps_of_a_compiled_object(veth, bpffs_dir, no_fd_leak):
    """The object's maps carry clang's BTF: labels name C fields of struct flow_key.

    bpftool (libbpf) loads the object and pins its maps until fastbpf's ELF
    loader exists; then this test's twin names the object under ``object:``.
    """
    obj = os.path.join(ROOT, "testdata", "metrics_export-el.o")
    progs, maps = os.path.join(bpffs_dir, "progs"), os.path.join(bpffs_dir, "maps")
    subprocess.run(["bpftool", "prog", "loadall", obj, progs, "pinmaps", maps], check=True,
                   capture_output=True)
    with Program.from_pin(os.path.join(progs, "count_packets")) as prog:
        lk = veth.b.run(link.attach_xdp, prog, veth.IF_B, mode="generic")
        with lk:
            rx = netutil.udp_receiver(veth.b, veth.IP_B, 9999)
            try:
                netutil.send_udp(veth.a, (veth.IP_B, 9999), 9, b"y" * 32)
                assert len(netutil.drain(rx)) == 9
            finally:
                rx.close()
    with Exporter(parse_config(textwrap.dedent(COMPILED_CONFIG).format(maps=maps))) as ex:
        _, port = ex.serve(0, "127.0.0.1")
        got = scrape(f"http://127.0.0.1:{port}/metrics")
    frame = 14 + 20 + 8 + 32
    assert samples(got, "packets_total") == {
        frozenset({"proto": "udp", "daddr": veth.IP_B}.items()): 9.0}
    assert got[("packet_bytes_count", frozenset())] == 9
    assert got[("packet_bytes_sum", frozenset())] == 9 * frame
    b = samples(got, "packet_bytes_bucket")
    slot = frame.bit_length() - 1
    assert b[frozenset({"le": floatToGoString(2 ** (slot - 1))}.items())] == 0
    assert b[frozenset({"le": floatToGoString(2 ** slot)}.items())] == 9


def test_export_loads_object(veth, no_fd_leak):
    """The twin of the test above with fastbpf's own loader: the config
    names the object, the exporter reads the collection's maps by name."""
    from fastbpf.metrics.exporter import load_object
    obj = os.path.join(ROOT, "testdata", "metrics_export-el.o")
    metrics = textwrap.dedent(COMPILED_CONFIG).format(maps="").split("metrics:", 1)[1]
    cfg = parse_config(f"object: {obj}\nmetrics:{metrics}")
    coll, links = load_object(cfg)
    assert links == []
    with coll:
        # The interface lives in the veth's namespace: attach from there.
        lk = veth.b.run(coll.programs["count_packets"].attach, veth.IF_B)
        with lk:
            rx = netutil.udp_receiver(veth.b, veth.IP_B, 9999)
            try:
                netutil.send_udp(veth.a, (veth.IP_B, 9999), 9, b"y" * 32)
                assert len(netutil.drain(rx)) == 9
            finally:
                rx.close()
        with Exporter(cfg, coll) as ex:
            _, port = ex.serve(0, "127.0.0.1")
            got = scrape(f"http://127.0.0.1:{port}/metrics")
    frame = 14 + 20 + 8 + 32
    assert samples(got, "packets_total") == {
        frozenset({"proto": "udp", "daddr": veth.IP_B}.items()): 9.0}
    assert got[("packet_bytes_count", frozenset())] == 9
    assert got[("packet_bytes_sum", frozenset())] == 9 * frame
