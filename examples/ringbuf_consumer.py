"""Events from a BPF ring buffer, read as a numpy structured array.

An XDP program writes one event per packet (a sequence number it keeps in an
array map, and the packet's length) with ``bpf_ringbuf_output``; Python runs
it on test packets with BPF_PROG_TEST_RUN and drains the ring in batches.

Run as root: ``python3 examples/ringbuf_consumer.py [N]``.
"""

from __future__ import annotations

import sys

import numpy as np

from fastbpf import Map, MapSpec, MapType, Program, ProgramSpec, ProgramType, asm, ringbuf
from fastbpf.asm import R0, R1, R2, R3, R4, R6, R7, R10, Helper, Size

EVENT = np.dtype([("seq", "<u8"), ("length", "<u4"), ("pad", "<u4")])


def main(n: int = 1000) -> np.ndarray:
    """Run the program on *n* packets of growing size; return the events read."""
    with Map.create(MapSpec(MapType.RINGBUF, max_entries=1 << 16, name="events")) as events, \
            Map.create(MapSpec(MapType.ARRAY, key=4, value=np.uint64, max_entries=1,
                               name="seq")) as seq:
        prog = asm.Instructions([
            asm.Mov.reg(R6, R1),                        # ctx (struct xdp_md *)
            asm.store_imm(R10, -4, 0, Size.W),
            asm.Mov.reg(R2, R10),
            asm.Add.imm(R2, -4),
            asm.load_map_ptr(R1, seq),
            asm.call(Helper.map_lookup_elem),
            asm.JEq.imm(R0, 0, "out"),
            asm.Mov.imm(R7, 1),
            asm.atomic_add(R0, 0, R7, Size.DW, fetch=True),   # r7 = old sequence number
            asm.store_mem(R10, -24, R7, Size.DW),             # event.seq
            asm.load_mem(R1, R6, 4, Size.W),                  # data_end
            asm.load_mem(R2, R6, 0, Size.W),                  # data
            asm.Sub.reg(R1, R2),
            asm.store_mem(R10, -16, R1, Size.W),              # event.length
            asm.store_imm(R10, -12, 0, Size.W),
            asm.load_map_ptr(R1, events),
            asm.Mov.reg(R2, R10),
            asm.Add.imm(R2, -24),
            asm.Mov.imm(R3, EVENT.itemsize),
            asm.Mov.imm(R4, 0),
            asm.call(Helper.ringbuf_output),
            asm.Mov.imm(R0, 2).with_symbol("out"),            # XDP_PASS
            asm.exit(),
        ])
        got: list[np.ndarray] = []

        def drain(reader: ringbuf.Reader) -> None:
            batch = reader.read_batch(dtype=EVENT, timeout=0)
            assert isinstance(batch, np.ndarray)   # with a dtype: a structured array
            got.append(batch)

        with Program.load(ProgramSpec(ProgramType.XDP, prog, name="rb_events")) as p, \
                ringbuf.Reader(events) as reader:
            for i in range(n):
                p.test_run(b"\0" * (64 + i % 64))
                if i % 256 == 255:          # drain as we go: the ring is 64 KiB
                    drain(reader)
            drain(reader)
        out = np.concatenate(got)
    print(f"{len(out)} events; seq {out['seq'].min()}..{out['seq'].max()}, "
          f"mean length {out['length'].mean():.1f} bytes")
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
