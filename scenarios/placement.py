"""CPU placement for the local backend: the server and Locust on separate CPUs.

``python -m scenarios run --server-cpuset 0 --locust-cpuset 1`` pins the server
(supervisor and every worker it forks) to CPU 0 and every Locust process
(master and workers) to CPU 1, through ``taskset -c LIST``, which sets the CPU
affinity and then execs the command (so the pid stays the server's or
Locust's).  The lists use taskset's syntax: ``0``, ``0-1``, ``0,2``,
``0-6:2``.  Giving one of the two options pins the other side to the usable
CPUs left over.

This is placement, not a limit: the scenario key ``server_cpus`` is a CPU
*quota* (a cgroup), which still applies on top of the pinning.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass

SERVER_OPTION = "--server-cpuset"
LOCUST_OPTION = "--locust-cpuset"
_RANGE = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$")


class PlacementError(ValueError):
    """A placement request that cannot be honoured; one line."""


def parse_cpu_list(text: str) -> frozenset[int]:
    """``"0-2,5"`` -> {0, 1, 2, 5} (taskset's list syntax); PlacementError if malformed."""
    cpus: set[int] = set()
    for part in text.split(","):
        match = _RANGE.match(part.strip())
        if not match:
            raise PlacementError(f"{text!r} is not a CPU list (examples: 0, 0-1, 0,2)")
        first, last, stride = match.groups()
        last = first if last is None else last
        if int(last) < int(first) or (stride is not None and int(stride) == 0):
            where = "" if part.strip() == text.strip() else f"{text!r}: "
            raise PlacementError(f"{where}{part.strip()!r} is not a CPU range")
        cpus.update(range(int(first), int(last) + 1, int(stride or 1)))
    return frozenset(cpus)


def format_cpu_list(cpus) -> str:
    """{0, 1, 2, 5} -> ``"0-2,5"``."""
    parts, ordered = [], sorted(cpus)
    start = previous = None
    for cpu in ordered + [None]:
        if previous is not None and cpu == previous + 1:
            previous = cpu
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = cpu
    return ",".join(parts)


def usable_cpus() -> frozenset[int]:
    """The CPUs this process may run on (and so may give its children)."""
    return frozenset(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Placement:
    server: frozenset[int]
    locust: frozenset[int]

    @staticmethod
    def _pin(cpus: frozenset[int]) -> list[str]:
        return ["taskset", "-c", format_cpu_list(cpus)]

    def server_prefix(self) -> list[str]:
        """Command prefix that execs the server pinned to its CPUs."""
        return self._pin(self.server)

    def locust_prefix(self) -> list[str]:
        """Command prefix that execs a Locust process pinned to its CPUs."""
        return self._pin(self.locust)

    def record(self) -> dict:
        """What ``run.json`` keeps under ``placement``."""
        return {"server": format_cpu_list(self.server), "locust": format_cpu_list(self.locust),
                "method": "taskset -c"}


def placement_from_options(server: str | None, locust: str | None, backend: str,
                           available: frozenset[int] | None = None,
                           taskset: str | None = "auto") -> Placement | None:
    """The placement asked for on the command line, validated; None when not asked.
    ``available`` defaults to ``usable_cpus()``, ``taskset`` to its path on PATH."""
    if server is None and locust is None:
        return None
    given = " and ".join(option for option, value in ((SERVER_OPTION, server),
                                                      (LOCUST_OPTION, locust)) if value is not None)
    if backend != "local":
        raise PlacementError(f"CPU placement ({given}) works with the local backend only, "
                             f"not {backend}")
    available = usable_cpus() if available is None else available
    sets = {}
    for option, value in ((SERVER_OPTION, server), (LOCUST_OPTION, locust)):
        if value is None:
            continue
        try:
            cpus = parse_cpu_list(value)
        except PlacementError as error:
            raise PlacementError(f"{option}: {error}") from None
        missing = sorted(cpus - available)
        if missing:
            raise PlacementError(
                f"{option} {value}: CPU {format_cpu_list(missing)} is not available on this "
                f"machine (usable: {format_cpu_list(available)})")
        sets[option] = cpus
    for option, other, side in ((SERVER_OPTION, LOCUST_OPTION, "Locust"),
                                (LOCUST_OPTION, SERVER_OPTION, "the server")):
        if other not in sets:
            rest = available - sets[option]
            if not rest:
                raise PlacementError(f"{option} {format_cpu_list(sets[option])} leaves no CPU "
                                     f"for {side} on this machine; give {other} as well")
            sets[other] = frozenset(rest)
    overlap = sets[SERVER_OPTION] & sets[LOCUST_OPTION]
    if overlap:
        raise PlacementError(f"{SERVER_OPTION} {server} and {LOCUST_OPTION} {locust} overlap on "
                             f"CPU {format_cpu_list(overlap)}; give them separate CPUs")
    if taskset == "auto":
        taskset = shutil.which("taskset")
    if not taskset:
        raise PlacementError("CPU placement needs taskset (util-linux), not found on PATH")
    return Placement(sets[SERVER_OPTION], sets[LOCUST_OPTION])
