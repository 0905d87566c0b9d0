"""Map.to_dataframe() and Map.to_arrow(): columns named after the fields,
nested structs flattened with dots, per-CPU values summed or spread, big-endian
fields made native, contiguous columns shared with Arrow without a copy."""

from __future__ import annotations

import numpy as np
import pytest

from fastbpf import Map, MapSpec, MapType, possible_cpus

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")

KEY = np.dtype([("addr", [("ip", "u1", (4,)), ("port", ">u2")]), ("proto", "u1"),
                ("pad", "u1")])
VALUE = np.dtype([("packets", "<u8"), ("bytes", "<u8")])


@pytest.fixture
def flows(unique_name):
    with Map.create(MapSpec(MapType.PERCPU_HASH, key=KEY, value=VALUE, max_entries=16,
                            name=unique_name)) as m:
        ncpu = possible_cpus()
        for i in range(5):
            k = np.zeros((), KEY)
            k["addr"]["ip"] = [10, 0, 0, i]
            k["addr"]["port"] = 8000 + i
            k["proto"] = 6 if i % 2 else 17
            v = np.zeros(ncpu, VALUE)
            v["packets"] = np.arange(ncpu) + i
            v["bytes"] = (np.arange(ncpu) + i) * 100
            m[k] = v
        yield m


def test_to_dataframe_sums_cpus_and_flattens(flows, no_fd_leak):
    df = flows.to_dataframe()
    assert list(df.columns) == ["addr.ip[0]", "addr.ip[1]", "addr.ip[2]", "addr.ip[3]",
                                "addr.port", "proto", "pad", "packets", "bytes"]
    assert df["addr.port"].dtype == np.dtype("=u2")  # big-endian made native
    assert len(df) == 5
    for _, row in df.iterrows():
        k = np.zeros((), KEY)
        k["addr"]["ip"] = [row[f"addr.ip[{i}]"] for i in range(4)]
        k["addr"]["port"] = row["addr.port"]
        k["proto"] = row["proto"]
        v = flows[k]
        assert row["packets"] == v["packets"].sum() and row["bytes"] == v["bytes"].sum()
        assert row["addr.port"] - 8000 == k["addr"]["ip"][3]


def test_to_dataframe_per_cpu_columns(flows, no_fd_leak):
    ncpu = possible_cpus()
    df = flows.to_dataframe(per_cpu="columns")
    assert [c for c in df.columns if c.startswith("packets.")] == \
        [f"packets.cpu{i}" for i in range(ncpu)]
    i = df["addr.port"].to_numpy().astype(int) - 8000
    for cpu in range(ncpu):
        assert (df[f"packets.cpu{cpu}"].to_numpy() == i + cpu).all()
        assert (df[f"bytes.cpu{cpu}"].to_numpy() == (i + cpu) * 100).all()
    with pytest.raises(ValueError, match="per_cpu"):
        flows.to_dataframe(per_cpu="mean")


def test_to_arrow(flows, no_fd_leak):
    t = flows.to_arrow()
    assert t.column_names == ["addr.ip", "addr.port", "proto", "pad", "packets", "bytes"]
    ips = t.column("addr.ip").to_pylist()
    ports = t.column("addr.port").to_pylist()
    assert sorted(ip[3] for ip in ips) == list(range(5))
    assert all(p - 8000 == ip[3] for p, ip in zip(ports, ips))
    df = flows.to_dataframe()
    assert t.column("packets").to_pylist() == df["packets"].tolist()


def test_scalar_map_columns_are_zero_copy_in_arrow(unique_name, no_fd_leak):
    with Map.create(MapSpec(MapType.HASH, key=np.uint32, value=np.uint64, max_entries=64,
                            name=unique_name)) as m:
        m.update_batch(np.arange(10, dtype=np.uint32), np.arange(10, dtype=np.uint64) * 7)
        from fastbpf.metrics.frames import map_columns
        cols = map_columns(m)
        assert list(cols) == ["key", "value"]
        t = pa.table({k: pa.array(v) for k, v in cols.items()})
        # Arrow's buffer is the batch array's memory.
        assert t.column("value").chunk(0).buffers()[1].address == cols["value"].ctypes.data
        got = dict(zip(m.to_arrow().column("key").to_pylist(),
                       m.to_arrow().column("value").to_pylist()))
        assert got == {i: i * 7 for i in range(10)}
        df = m.to_dataframe()
        assert dict(zip(df["key"], df["value"])) == {i: i * 7 for i in range(10)}
