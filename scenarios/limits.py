"""CPU and memory limits for a locally started server, through cgroups.

The compose and Kubernetes backends get a scenario's ``server_cpus`` and
``server_memory`` from the container runtime.  Locally the same limits need a
cgroup of our own: that works as root (or with a delegated cgroup) on cgroup v2
and on the v1 ``cpu`` and ``memory`` hierarchies.  Where no cgroup can be made
the server runs unlimited, and the run records ``limits_enforced: no``.

The server is moved into the cgroup before it execs, so the workers it forks
are inside from their first instruction::

    sh -c 'echo $$ > .../cgroup.procs && exec "$@"' sh python -m server ...
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CFS_PERIOD_US = 100_000


def _own_path(controller: str, proc_cgroup: str) -> str:
    """This process's cgroup path for a v1 controller, or for v2 (controller "")."""
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers = parts[1].split(",") if parts[1] else [""]
        if controller in controllers:
            return parts[2]
    return "/"


class CgroupLimits:
    """One cgroup (v2) or a pair of them (v1 cpu + memory) holding the server."""

    def __init__(self, directories: list[Path]):
        self.directories = directories

    @property
    def procs_files(self) -> list[Path]:
        return [directory / "cgroup.procs" for directory in self.directories]

    def wrap(self, command: list[str]) -> list[str]:
        """``command`` started inside the cgroup(s)."""
        joins = " && ".join(f"echo $$ > {shlex.quote(str(path))}" for path in self.procs_files)
        return ["sh", "-c", f'{joins} && exec "$@"', "sh", *command]

    def remove(self) -> None:
        """Remove the cgroups; call once the server and its workers are gone."""
        for directory in self.directories:
            try:
                directory.rmdir()
            except OSError:
                pass            # still busy or already gone: the kernel keeps it harmlessly

    @classmethod
    def create(cls, name: str, cpus: float, memory: int, root: Path = CGROUP_ROOT,
               proc_cgroup: str | None = None) -> tuple[CgroupLimits | None, str]:
        """Make the cgroup(s) and set the limits: ``(limits, "")`` or ``(None, why not)``.
        ``proc_cgroup`` is the text of /proc/self/cgroup (read when None)."""
        if proc_cgroup is None:
            try:
                proc_cgroup = Path("/proc/self/cgroup").read_text()
            except OSError as error:
                return None, f"cannot read /proc/self/cgroup: {error.strerror}"
        if (root / "cgroup.controllers").exists():
            return cls._create_v2(name, cpus, memory, root, _own_path("", proc_cgroup))
        return cls._create_v1(name, cpus, memory, root, proc_cgroup)

    @classmethod
    def _create_v2(cls, name, cpus, memory, root, own) -> tuple[CgroupLimits | None, str]:
        quota = max(1000, round(cpus * CFS_PERIOD_US))
        why = "no cgroup v2 folder with the cpu and memory controllers is writable"
        # a child of our own cgroup, else a sibling of it (v2 keeps processes out
        # of cgroups that delegate controllers)
        for parent in (root / own.lstrip("/"), (root / own.lstrip("/")).parent):
            directory = parent / name
            try:
                directory.mkdir()
            except OSError as error:
                why = f"cannot create {directory}: {error.strerror}"
                continue
            try:
                available = (directory / "cgroup.controllers").read_text().split()
                if not {"cpu", "memory"} <= set(available):
                    raise OSError(0, f"cpu and memory controllers not delegated to {parent}")
                (directory / "cpu.max").write_text(f"{quota} {CFS_PERIOD_US}\n")
                (directory / "memory.max").write_text(f"{memory}\n")
                if (directory / "memory.swap.max").exists():
                    (directory / "memory.swap.max").write_text("0\n")
            except OSError as error:
                why = f"cannot set limits in {directory}: {error.strerror}"
                directory.rmdir()
                continue
            return cls([directory]), ""
        return None, why

    @classmethod
    def _create_v1(cls, name, cpus, memory, root, proc_cgroup) -> tuple[CgroupLimits | None, str]:
        quota = max(1000, round(cpus * CFS_PERIOD_US))
        settings = {
            "cpu": {"cpu.cfs_period_us": CFS_PERIOD_US, "cpu.cfs_quota_us": quota},
            "memory": {"memory.limit_in_bytes": memory},
        }
        made: list[Path] = []
        for controller, values in settings.items():
            directory = root / controller / _own_path(controller, proc_cgroup).lstrip("/") / name
            try:
                directory.mkdir()
                made.append(directory)
                for file_name, value in values.items():
                    (directory / file_name).write_text(f"{value}\n")
            except OSError as error:
                cls(made).remove()
                return None, f"cannot set up the v1 {controller} cgroup {directory}: " \
                             f"{error.strerror or error}"
        return cls(made), ""


def limits_for(name: str, cpus: float, memory: int) -> tuple[CgroupLimits | None, str]:
    """``CgroupLimits.create`` unless FS_LAB_NO_CGROUPS is set (then unlimited)."""
    if os.environ.get("FS_LAB_NO_CGROUPS"):
        return None, "FS_LAB_NO_CGROUPS is set"
    return CgroupLimits.create(name, cpus, memory)
