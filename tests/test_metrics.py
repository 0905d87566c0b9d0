"""fastbpf.metrics: real programs fill real maps, a real HTTP server serves
them, and prometheus_client's parser reads the exposition back; every value
must equal what the map holds (read independently, element by element)."""

from __future__ import annotations

import collections
import contextlib
import io
import ipaddress
import os
import socket
import struct
import sys
import urllib.request

import numpy as np
import pytest

pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry, start_http_server  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from prometheus_client.utils import floatToGoString  # noqa: E402

from fastbpf import Map, MapSpec, MapType, link  # noqa: E402
from fastbpf.metrics import (ConfigError, MapCollector, cli_hist, factorize,  # noqa: E402
                             render_histogram)

sys.path.insert(0, os.path.dirname(__file__))
import metricutil as mu  # noqa: E402
import netutil  # noqa: E402

PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp"}


# ---------------------------------------------------------------------------
# helpers


@contextlib.contextmanager
def http_registry(*collectors):
    """A registry with *collectors*, served on 127.0.0.1 (an ephemeral port)."""
    reg = CollectorRegistry()
    for c in collectors:
        reg.register(c)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def scrape(url: str) -> dict:
    """{(sample name, frozenset(labels)): value} of one HTTP scrape."""
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def samples(got: dict, name: str) -> dict:
    """{frozenset(labels): value} of the samples called *name*."""
    return {lab: v for (n, lab), v in got.items() if n == name}


def per_entry(m: Map) -> list[tuple]:
    """(key, value summed over CPUs) for every entry, read one element at a time."""
    return [(k, int(np.sum(m[k]))) for k in m.keys()]


def send_icmp_echo(ns: netutil.NetNS, dst: str, count: int) -> None:
    """*count* ICMP echo requests (ids and sequence numbers differ, so do checksums)."""
    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
            for seq in range(count):
                body = bytearray(struct.pack("!BBHHH", 8, 0, 0, 0x4242, seq + 1) + b"fastbpf!")
                csum = sum(struct.unpack(f"!{len(body) // 2}H", body))
                csum = (csum & 0xFFFF) + (csum >> 16)
                struct.pack_into("!H", body, 2, ~((csum & 0xFFFF) + (csum >> 16)) & 0xFFFF)
                s.sendto(bytes(body), (dst, 0))
    ns.run(send)


@pytest.fixture
def veth():
    with netutil.VethPair() as vp:
        yield vp


# ---------------------------------------------------------------------------
# counters from veth traffic


def test_counter_from_xdp_traffic_by_protocol(veth, unique_name, no_fd_leak):
    with mu.flow_map(unique_name) as m, mu.flow_counter(m) as prog:
        lk = veth.b.run(link.attach_xdp, prog, veth.IF_B, mode="generic")
        with lk:
            rx = netutil.udp_receiver(veth.b, veth.IP_B, 9999)
            try:
                netutil.send_udp(veth.a, (veth.IP_B, 9999), 7)
                netutil.send_udp(veth.a, (veth.IP_B, 5353), 4)
                got = netutil.drain(rx)
            finally:
                rx.close()
            assert len(got) == 7
            send_icmp_echo(veth.a, veth.IP_B, 3)
        c = MapCollector(m, "fb_packets", "Packets by protocol", labels=[
            {"name": "proto", "field": "proto",
             "decoders": [{"name": "uint"},
                          {"name": "static_map", "static_map": PROTO_NAMES}]},
            {"name": "daddr", "field": "daddr", "decoders": [{"name": "inet_ip"}]},
        ])
        with http_registry(c) as url:
            got = samples(scrape(url), "fb_packets_total")
        # The same sums, from the map read element by element: dport (and
        # the ICMP checksum in those bytes) is not a label, so its entries add up.
        want = collections.Counter()
        for k, v in per_entry(m):
            addr = str(ipaddress.ip_address(k["daddr"].tobytes()))
            want[frozenset({"proto": PROTO_NAMES[int(k["proto"])], "daddr": addr}.items())] += v
        assert got == {k: float(v) for k, v in want.items()}
        assert got[frozenset({"proto": "udp", "daddr": veth.IP_B}.items())] == 11
        assert got[frozenset({"proto": "icmp", "daddr": veth.IP_B}.items())] == 3
        assert len(per_entry(m)) >= 4  # two UDP ports and several ICMP checksums: summed
        assert c.errors == 0


def test_counter_without_labels_sums_everything(unique_name, no_fd_leak):
    with Map.create(MapSpec(MapType.PERCPU_ARRAY, key=np.uint32, value=np.uint64,
                            max_entries=4, name=unique_name)) as m:
        for i in range(4):
            m[i] = np.arange(m.value_stride // 8, dtype=np.uint64) + i
        c = MapCollector(m, "fb_all", "all", kind="gauge")
        with http_registry(c) as url:
            got = scrape(url)
        assert got[("fb_all", frozenset())] == sum(int(np.sum(m[i])) for i in range(4))


# ---------------------------------------------------------------------------
# histograms from test_run


LENGTHS = [14, 15, 40, 64, 64, 100, 200, 333, 512, 1000, 1500, 20, 90]
KINDS = [i % 2 for i in range(len(LENGTHS))]


@pytest.fixture
def hist_maps(unique_name):
    with mu.exp2_map(unique_name + "e") as e, mu.linear_map(unique_name + "l") as lin:
        with mu.length_histograms(e, lin) as prog:
            mu.send_lengths(prog, LENGTHS, KINDS)
        yield e, lin


def test_exp2_histogram_from_test_run(hist_maps, no_fd_leak):
    e, _ = hist_maps
    c = MapCollector(e, "fb_len_exp2", "lengths", kind="histogram",
                     labels=[{"name": "bucket", "size": 4, "decoders": [{"name": "uint"}]}],
                     bucket_type="exp2", bucket_min=0, bucket_max=20, bucket_multiplier=1)
    with http_registry(c) as url:
        got = scrape(url)
    slots = [int(np.sum(e[i])) for i in range(mu.EXP2_BUCKETS)]
    # What the program wrote is what the packets say...
    want_slots = collections.Counter(mu.exp2_slot(n) for n in LENGTHS)
    assert slots[:21] == [want_slots.get(i, 0) for i in range(21)]
    assert slots[mu.EXP2_SUM] == sum(LENGTHS)
    # ...and the exposition is the map, made cumulative.
    cum = 0
    for i in range(21):
        cum += slots[i]
        assert got[("fb_len_exp2_bucket", frozenset({"le": floatToGoString(2 ** i)}.items()))] == cum
    assert got[("fb_len_exp2_bucket", frozenset({"le": "+Inf"}.items()))] == len(LENGTHS)
    assert got[("fb_len_exp2_count", frozenset())] == len(LENGTHS)
    assert got[("fb_len_exp2_sum", frozenset())] == sum(LENGTHS)


@pytest.mark.parametrize("bucket_type", ["linear", "fixed"])
def test_grouped_histogram_from_test_run(hist_maps, bucket_type, no_fd_leak):
    _, lin = hist_maps
    kw = (dict(bucket_min=0, bucket_max=47, bucket_multiplier=32) if bucket_type == "linear"
          else dict(bucket_keys=[0, 1, 2, 3, 6, 10, 15, 31], bucket_multiplier=32))
    c = MapCollector(lin, "fb_len_lin", "lengths", kind="histogram", labels=[
        {"name": "kind", "field": "kind",
         "decoders": [{"name": "uint"}, {"name": "static_map", "static_map": {0: "even", 1: "odd"}}]},
        {"name": "bucket", "field": "bucket", "decoders": [{"name": "uint"}]},
    ], bucket_type=bucket_type, **kw)
    with http_registry(c) as url:
        got = scrape(url)
    entries = per_entry(lin)
    keys = kw.get("bucket_keys") or list(range(48))
    for kind, kname in ((0, "even"), (1, "odd")):
        counts = collections.Counter()
        for k, v in entries:
            if k["kind"] == kind:
                counts[int(k["bucket"])] += v
        assert counts == collections.Counter(
            n >> mu.LINEAR_SHIFT for n, kd in zip(LENGTHS, KINDS) if kd == kind)
        cum = 0
        for b in keys:
            cum += counts.get(b, 0)
            lab = frozenset({"kind": kname, "le": floatToGoString(b * 32)}.items())
            assert got[("fb_len_lin_bucket", lab)] == cum
        assert got[("fb_len_lin_count", frozenset({"kind": kname}.items()))] == cum
        assert got[("fb_len_lin_sum", frozenset({"kind": kname}.items()))] == 0  # no sum slot


def test_histogram_bucket_settings_are_checked(unique_name, no_fd_leak):
    with mu.exp2_map(unique_name) as e:
        lab = [{"name": "bucket", "size": 4}]
        with pytest.raises(ConfigError, match="overflow"):
            MapCollector(e, "h", "h", "histogram", lab, bucket_max=5000)
        with pytest.raises(ConfigError, match="bucket_max"):
            MapCollector(e, "h", "h", "histogram", lab, bucket_type="linear")
        with pytest.raises(ConfigError, match="ascending"):
            MapCollector(e, "h", "h", "histogram", lab, bucket_type="fixed", bucket_keys=[3, 1])
        with pytest.raises(ConfigError, match="does not fit"):
            MapCollector(e, "h", "h", "histogram",
                         [{"name": "bucket", "size": 1, "padding": 3}], bucket_max=300)


# ---------------------------------------------------------------------------
# decoding details


def test_factorize_matches_numpy_unique():
    rng = np.random.default_rng(5)
    for col in (rng.integers(0, 50, 10_000).astype(np.uint32),
                rng.integers(1 << 40, (1 << 40) + 9, 1000).astype(np.uint64),
                rng.integers(0, 1 << 62, 1000).astype(np.uint64),
                np.array([b"ab", b"c", b"ab"], "S2"),
                np.zeros(0, np.uint16)):
        u, inv = factorize(col)
        nu, ninv = np.unique(col, return_inverse=True)
        assert u.tolist() == nu.tolist() and inv.tolist() == ninv.reshape(-1).tolist()


def test_regexp_drops_and_equal_labels_are_summed(unique_name, no_fd_leak):
    kd = np.dtype([("comm", "S8"), ("tid", "<u4")])
    with Map.create(MapSpec(MapType.HASH, key=kd, value=np.uint64, max_entries=16,
                            name=unique_name)) as m:
        rows = [(b"nginx", 1, 5), (b"nginx", 2, 7), (b"curl", 3, 11), (b"nginx2", 4, 1)]
        m.update_batch(np.array([(c, t) for c, t, _ in rows], kd),
                       np.array([v for *_, v in rows], np.uint64))
        c = MapCollector(m, "fb_by_comm", "by comm", labels=[
            {"name": "comm", "field": "comm",
             "decoders": [{"name": "string"}, {"name": "regexp", "regexps": ["^nginx$", "^curl"]}]}])
        with http_registry(c) as url:
            got = samples(scrape(url), "fb_by_comm_total")
        assert got == {frozenset({"comm": "nginx"}.items()): 12.0,
                       frozenset({"comm": "curl"}.items()): 11.0}


def test_decoder_that_does_not_fit_fails_at_construction(unique_name, no_fd_leak):
    with mu.flow_map(unique_name) as m:
        with pytest.raises(ConfigError, match="'string' needs a char array"):
            MapCollector(m, "x", "x", labels=[{"name": "p", "field": "proto",
                                               "decoders": [{"name": "string"}]}])
        with pytest.raises(ConfigError, match="'ksym' needs 8 bytes"):
            MapCollector(m, "x", "x", labels=[{"name": "p", "field": "daddr",
                                               "decoders": [{"name": "ksym"}]}])
        with pytest.raises(ConfigError, match="no field 'sport'"):
            MapCollector(m, "x", "x", labels=[{"name": "p", "field": "sport"}])
        with pytest.raises(ConfigError, match="add up to 4 bytes"):
            MapCollector(m, "x", "x", labels=[{"name": "p", "size": 4}])


def test_scrape_failure_is_counted_not_raised(unique_name, no_fd_leak):
    m = Map.create(MapSpec(MapType.ARRAY, key=np.uint32, value=np.uint64, max_entries=2,
                           name=unique_name))
    c = MapCollector(m, "fb_gone", "gone", labels=[{"name": "i", "size": 4}])
    m[1] = 3
    assert [s.value for s in c.collect()[0].samples] == [0.0, 3.0]
    m.close()
    assert c.collect() == []
    assert c.errors == 1 and "closed" in c.last_error.lower()


# ---------------------------------------------------------------------------
# histograms in the terminal


def test_render_histogram_like_bcc(hist_maps, bpffs_dir, no_fd_leak):
    e, lin = hist_maps
    text = render_histogram(e, "exp2", unit="bytes")
    lines = text.splitlines()
    assert lines[0].split() == ["bytes", ":", "count", "distribution"]
    want = collections.Counter(mu.exp2_slot(n) for n in LENGTHS)
    rows = {ln.split(":")[0].strip(): int(ln.split(":")[1].split()[0]) for ln in lines[1:]}
    # Slots 1..10 drawn as BCC's ranges; the sum slot (21) is far out but a real count.
    assert rows["8 -> 15"] == want[3] and rows["512 -> 1023"] == want[9]
    assert rows["1024 -> 2047"] == want[10]
    assert rows["0 -> 1"] == 0 and len(rows) == mu.EXP2_SUM + 1
    assert rows["2097152 -> 4194303"] == sum(LENGTHS)  # the sum slot is just another slot here
    for ln in lines[1:]:
        cnt = int(ln.split(":")[1].split()[0])
        assert ln.split("|")[1] == ("*" * round(cnt / sum(LENGTHS) * 40)).ljust(40)
    # Grouped: one block per kind, each from the linear map.
    g = render_histogram(lin, "linear", bucket_field="bucket", group_by="kind",
                         bucket_multiplier=32, unit="bytes")
    assert "kind = 0" in g and "kind = 1" in g
    odd = g.split("kind = 1")[1]
    assert "1024 -> 1055" in odd or "1024 -> 1055" in g
    # The command-line entry point, on a pin.
    pin = os.path.join(bpffs_dir, "exp2")
    e.pin(pin)
    out = io.StringIO()
    assert cli_hist([pin, "--unit", "bytes"], out=out) == 0
    assert out.getvalue() == text
    out = io.StringIO()
    assert cli_hist([str(e.id), "--unit", "bytes", "--interval", "0.01", "--count", "2"],
                    out=out) == 0
    assert out.getvalue() == text + "\n" + text


def test_render_histogram_from_arrays():
    counts = np.zeros((8, 2))
    counts[1] = [1, 1]
    counts[3] = [4, 0]
    text = render_histogram(counts, "exp2")
    rows = [ln.split(":") for ln in text.splitlines()[1:]]
    assert [r[0].strip() for r in rows] == ["0 -> 1", "2 -> 3", "4 -> 7", "8 -> 15"]
    assert [int(r[1].split()[0]) for r in rows] == [0, 2, 0, 4]
    assert rows[3][1].split("|")[1] == "*" * 40 and rows[1][1].split("|")[1] == "*" * 20 + " " * 20
    assert "(no samples)" in render_histogram(np.zeros(4), "linear")
