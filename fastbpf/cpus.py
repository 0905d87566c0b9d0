"""CPU sets as the kernel lists them in sysfs (``0-3,6,8-9``).

One parser for every place that needs a CPU list: per-CPU perf events and
readers want the CPUs *online* now; per-CPU map values have one slot per
*possible* CPU (holes in the mask included).
"""

from __future__ import annotations

import functools

__all__ = ["parse_cpu_list", "online_cpus", "possible_cpus"]

_SYSFS = "/sys/devices/system/cpu/"


def parse_cpu_list(text: str) -> list[int]:
    """The CPUs of a sysfs CPU list such as ``"0-3,6"``, ascending as written."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def _read(name: str) -> list[int]:
    with open(_SYSFS + name) as f:
        return parse_cpu_list(f.read())


def online_cpus() -> list[int]:
    """The CPUs online now (``/sys/devices/system/cpu/online``); read afresh
    on each call, since CPUs come and go."""
    return _read("online")


@functools.lru_cache(maxsize=None)
def possible_cpus() -> int:
    """How many CPUs are possible (``/sys/devices/system/cpu/possible``): the
    length of every per-CPU map value. Fixed at boot, so read once."""
    return len(_read("possible"))
