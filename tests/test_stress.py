"""Concurrency stress: many threads on the same maps while another thread
closes them and creates new ones.

Every operation either works or raises a clear error (ClosedError, a
BPFError, KeyError for a key deleted meanwhile); nothing crashes, nothing
deadlocks, and no value ever shows up in a map it was not written to (each
map generation tags its values, so a call that reached a recycled fd number
would be seen). Bounded by FASTBPF_STRESS_SECONDS (default 30).
"""

from __future__ import annotations

import os
import random
import threading
import time
import traceback

import numpy as np
import pytest

from fastbpf import ClosedError, Map, MapSpec, MapType
from fastbpf.errors import BPFError

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

SECONDS = float(os.environ.get("FASTBPF_STRESS_SECONDS", "30"))
N = 256


class Slot:
    """The current map of one kind and its generation, swapped by the closer."""

    def __init__(self, mtype: MapType) -> None:
        self.mtype = mtype
        self.lock = threading.Lock()
        self.gen = 0
        self.map = self._make()

    def _make(self) -> Map:
        m = Map.create(MapSpec(type=self.mtype, key=np.uint32, value=np.uint64, max_entries=N,
                               name=f"fbstress{self.gen % 100}"))
        return m

    def get(self) -> tuple[int, Map]:
        with self.lock:
            return self.gen, self.map

    def swap(self) -> Map:
        with self.lock:
            old = self.map
            self.gen += 1
            self.map = self._make()
        return old


def tag(gen: int, x: int) -> int:
    return (gen << 32) | (x & 0xFFFFFFFF)


def test_threads_hammer_maps_while_another_closes_and_reopens_them():
    slots = [Slot(MapType.HASH), Slot(MapType.ARRAY)]
    stop = threading.Event()
    errors: list[str] = []
    counts: dict[str, int] = {}
    clean = (ClosedError, BPFError, KeyError)

    wrong_map: list[str] = []

    def check(gen: int, values, op: str) -> None:
        for v in np.atleast_1d(np.asarray(values, dtype=np.uint64)):
            g = int(v) >> 32
            if v and g != gen:
                wrong_map.append(f"{op}: generation {gen} map read a value of generation {g}")
                return

    def worker(name: str, op) -> None:
        rng = random.Random(name)
        done = 0
        while not stop.is_set():
            slot = slots[rng.randrange(len(slots))]
            gen, m = slot.get()
            try:
                op(rng, gen, m)
                done += 1
            except clean:
                pass
            except Exception:
                errors.append(f"{name}: {traceback.format_exc()}")
                return
        counts[name] = done

    def update(rng, gen, m):
        k = rng.randrange(N)
        m[k] = tag(gen, k)

    def lookup(rng, gen, m):
        v = m.get(rng.randrange(N))
        if v is not None:
            check(gen, v, "lookup")

    def batch_read(rng, gen, m):
        if m.type == MapType.HASH or rng.random() < 0.5:
            _, values = m.lookup_batch()
            check(gen, values, "lookup_batch")

    def batch_write(rng, gen, m):
        keys = np.array(rng.sample(range(N), 16), np.uint32)
        m.update_batch(keys, np.array([tag(gen, int(k)) for k in keys], np.uint64))

    def iterate(rng, gen, m):
        for _, v in m.items():
            check(gen, v, "items")

    def delete(rng, gen, m):
        if m.type == MapType.HASH:
            m.pop(rng.randrange(N), None)

    def closer() -> None:
        rng = random.Random("closer")
        swaps = 0
        while not stop.is_set():
            time.sleep(rng.uniform(0.005, 0.03))
            old = slots[rng.randrange(len(slots))].swap()
            old.close()
            swaps += 1
        counts["closer"] = swaps

    ops = dict(update=update, lookup=lookup, batch_read=batch_read, batch_write=batch_write,
               iterate=iterate, delete=delete)
    threads = [threading.Thread(target=worker, args=(n, f), name=f"stress-{n}")
               for n, f in ops.items()]
    threads.append(threading.Thread(target=closer, name="stress-closer"))
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline and not errors:
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=20)
        hung = [t.name for t in threads if t.is_alive()]
        for s in slots:
            s.map.close()
    assert not hung, f"threads deadlocked: {hung}"
    assert not errors, errors[:3]
    # A GIL-released call on a map closed meanwhile must not reach the fd
    # number of its successor (each call holds its own fd).
    assert not wrong_map, sorted(set(w.split(":")[0] for w in wrong_map))
    # Every thread got real work done, and the closer really swapped maps.
    assert set(counts) == set(ops) | {"closer"}
    assert min(counts.values()) > 0, counts
