"""Dynamic PMUs of the kernel (kprobe, uprobe): their type and retprobe bit."""

from __future__ import annotations

import os

_DEVICES = "/sys/bus/event_source/devices"


def pmu_type(pmu: str) -> int | None:
    """The perf event type number of *pmu* ("kprobe", "uprobe"), or None
    when the kernel has no such PMU."""
    try:
        with open(os.path.join(_DEVICES, pmu, "type")) as f:
            return int(f.read())
    except FileNotFoundError:
        return None


def retprobe_bit(pmu: str) -> int:
    """The config bit that turns a probe of *pmu* into a return probe.

    ``format/retprobe`` reads "config:0"; the bit has never changed, but
    reading it is what perf does.
    """
    try:
        with open(os.path.join(_DEVICES, pmu, "format", "retprobe")) as f:
            return 1 << int(f.read().strip().split(":", 1)[1])
    except (FileNotFoundError, ValueError, IndexError):
        return 1
