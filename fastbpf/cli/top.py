"""``fastbpf top``: a live, sorted view of every program's run statistics,
in the spirit of Netflix's bpftop.

The kernel counts runs and run time only while statistics are enabled;
``top`` holds a BPF_ENABLE_STATS descriptor for its lifetime and closes it
when it exits, Ctrl-C included (the kernel then stops counting unless
someone else asked too).
"""

from __future__ import annotations

import argparse
import signal
import time
from typing import Any, NamedTuple

from .. import _core
from ..errors import BPFError
from ..programs import enable_stats
from ._common import type_name
from .prog import program_info

__all__ = ["register", "Sample", "sample", "rates", "TopRow"]


def register(sub: Any) -> None:
    """Add ``top`` to the parser."""
    p = sub.add_parser("top", help="live per-program run counts, runs/s, ns/run and CPU share")
    p.add_argument("-i", "--interval", type=float, default=1.0, help="seconds between refreshes")
    p.add_argument("--once", action="store_true",
                   help="print one snapshot (over one interval) and exit, for scripts")
    p.add_argument("-n", "--limit", type=int, default=0, help="show at most this many rows")
    p.set_defaults(fn=cmd_top)


class Sample(NamedTuple):
    """One reading of a program's counters."""

    id: int
    type: str
    name: str
    run_cnt: int
    run_time_ns: int


def sample() -> dict[int, Sample]:
    """The counters of every loaded program, by id."""
    out: dict[int, Sample] = {}
    for i in _core.prog_ids():
        try:
            with _core.prog_get_fd_by_id(i) as fd:
                info = program_info(fd.fd)
        except BPFError:
            continue  # unloaded meanwhile
        out[i] = Sample(i, str(type_name("prog", int(info.type))), info.name,
                        info.run_cnt, info.run_time_ns)
    return out


class TopRow(NamedTuple):
    """A program's rates between two samples."""

    id: int
    type: str
    name: str
    run_cnt: int
    runs_per_s: float
    avg_ns: float
    cpu_pct: float


def rates(before: dict[int, Sample], after: dict[int, Sample], seconds: float) -> list[TopRow]:
    """Rows sorted by CPU share (then run count), from two samples."""
    rows = []
    for i, a in after.items():
        b = before.get(i)
        d_cnt = a.run_cnt - (b.run_cnt if b else 0)
        d_ns = a.run_time_ns - (b.run_time_ns if b else 0)
        rows.append(TopRow(i, a.type, a.name, a.run_cnt, d_cnt / seconds if seconds else 0.0,
                           d_ns / d_cnt if d_cnt else 0.0,
                           100.0 * d_ns / (seconds * 1e9) if seconds else 0.0))
    rows.sort(key=lambda r: (-r.cpu_pct, -r.runs_per_s, -r.run_cnt, r.id))
    return rows


def _table(rows: list[TopRow], limit: int, interval: float) -> Any:
    from rich.table import Table
    t = Table(title=f"fastbpf top — {len(rows)} programs, every {interval:g}s "
                    "(BPF stats on while running; q or Ctrl-C quits)",
              title_justify="left", expand=False)
    for col, just in (("ID", "right"), ("TYPE", "left"), ("NAME", "left"),
                      ("RUNS", "right"), ("RUNS/S", "right"), ("AVG NS", "right"),
                      ("CPU %", "right")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rows[:limit] if limit else rows:
        t.add_row(str(r.id), r.type, r.name, str(r.run_cnt), f"{r.runs_per_s:,.0f}",
                  f"{r.avg_ns:,.0f}", f"{r.cpu_pct:.2f}")
    return t


def cmd_top(args: argparse.Namespace) -> int:
    """Run the live view (or one snapshot with --once)."""
    try:
        from rich.console import Console
        from rich.live import Live
    except ImportError:
        raise SystemExit("fastbpf top needs rich: pip install 'fastbpf[cli]'") from None
    console = Console()
    interval = max(0.1, float(args.interval))
    # SIGTERM ends the view as cleanly as Ctrl-C does.
    old = signal.signal(signal.SIGTERM, _raise_interrupt)
    stats = enable_stats()
    try:
        before, t0 = sample(), time.monotonic()
        if args.once:
            time.sleep(interval)
            after, t1 = sample(), time.monotonic()
            console.print(_table(rates(before, after, t1 - t0), args.limit, interval))
            return 0
        with Live(_table(rates(before, before, 0.0), args.limit, interval), console=console,
                  screen=False, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                after, t1 = sample(), time.monotonic()
                live.update(_table(rates(before, after, t1 - t0), args.limit, interval),
                            refresh=True)
                before, t0 = after, t1
    except KeyboardInterrupt:
        return 0
    finally:
        stats.close()
        signal.signal(signal.SIGTERM, old)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
