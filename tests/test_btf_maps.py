"""Maps whose keys and values are BTF types: numpy dtypes and bpftool output."""

import json
import shutil
import subprocess

import numpy as np
import pytest

from fastbpf import Map, MapSpec, MapType, btf

from elfutil import btf_spec, data_path

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def spec():
    return btf_spec(data_path("btf_types-el.o"))


def test_btf_typed_map_has_c_dtypes(spec, unique_name, no_fd_leak):
    flow = spec.type_by_name("flow", kind=btf.Kind.STRUCT)
    u32 = spec.type_by_name("unsigned int", kind=btf.Kind.INT)
    with Map.create(MapSpec(type=MapType.HASH, key=u32, value=flow, max_entries=8,
                            name=unique_name)) as m:
        assert m.key_dtype == np.uint32
        assert m.value_dtype.names[:2] == ("packets", "bytes")
        assert m.value_dtype.itemsize == flow.size
        info = m.info()
        assert info.btf_id and info.btf_key_type_id and info.btf_value_type_id
        v = np.zeros((), m.value_dtype)
        v["packets"] = 3
        v["comm"] = b"curl"
        m[5] = v
        got = m[5]
        assert got["packets"] == 3 and got["comm"] == b"curl"
        assert btf.format(got, flow)["comm"] == "curl"
        keys, values = m.lookup_batch()
        assert values.dtype == m.value_dtype and values["packets"].tolist() == [3]

        if shutil.which("bpftool"):
            out = subprocess.run(["bpftool", "map", "dump", "id", str(info.id), "-j"],
                                 capture_output=True, text=True, check=True).stdout
            entry = json.loads(out)[0]
            assert entry["formatted"]["key"] == 5
            assert entry["formatted"]["value"] == btf.format(got, flow)
