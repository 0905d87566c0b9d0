import pytest
"""The fastbpf command against live objects."""

import json

import numpy as np

from fastbpf import Map, MapSpec, MapType
from fastbpf.cli import main

pytestmark = pytest.mark.kernel


def test_maps_and_dump(capsys, unique_name):
    with Map.create(MapSpec(type=MapType.HASH, key=np.uint32, value=np.uint64, max_entries=8,
                            name=unique_name)) as m:
        m[1] = 2
        m[3] = 4
        assert main(["maps", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        mine = [r for r in rows if r["id"] == m.id]
        assert mine and mine[0]["name"] == unique_name and mine[0]["value_size"] == 8
        assert main(["maps"]) == 0
        assert unique_name in capsys.readouterr().out
        assert main(["dump", str(m.id), "--json"]) == 0
        entries = json.loads(capsys.readouterr().out)
        assert sorted((e["key"], e["value"]) for e in entries) == [
            ("01000000", "0200000000000000"), ("03000000", "0400000000000000")]


def test_dump_missing_map_is_an_error(capsys):
    assert main(["dump", str(0xFFFFFFF0)]) == 1
    assert "open map" in capsys.readouterr().err
