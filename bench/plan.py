"""Which servers a bench run measures: a server mode on an interpreter.

``thread`` and ``process`` run on the lab's own interpreter and are measured
everywhere.  With a free-threaded CPython (``.venv-ft/bin/python``, made by
``make venv-ft``, or ``--ft-python PATH``), ``thread-ft`` is thread mode on
it with the GIL off (LIST at every level, the 100 MB transfers at one client,
the memory phase), and ``thread-ft-gil`` the same binary with ``PYTHON_GIL=1``
(LIST at the top level only): the fair comparison for the GIL alone.
Without that interpreter the free-threaded points are skipped, with a line
saying how to get them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from scenarios.backends import BackendError
from scenarios.backends import local
from scenarios.schema import PYTHON_FREETHREADED

__all__ = ["SIZES", "ALL_TRANSFERS", "SINGLE_100MB", "FT", "FT_GIL", "Variant", "FreeThreaded",
           "PlanError", "free_threaded_python", "variants"]

MB = 1_000_000
SIZES = {"10MB": 10 * MB, "100MB": 100 * MB}
# transfer points as (op, size label, concurrent clients)
ALL_TRANSFERS = tuple((op, size, clients) for op in ("GET", "UPLOAD") for size in SIZES
                      for clients in (1, 5))
SINGLE_100MB = (("GET", "100MB", 1), ("UPLOAD", "100MB", 1))
FT, FT_GIL = "thread-ft", "thread-ft-gil"


class PlanError(Exception):
    """The run cannot be planned as asked (one line, naming what is wrong)."""


@dataclass(frozen=True)
class Variant:
    name: str                           # thread, process, thread-ft, thread-ft-gil
    mode: str                           # the server's FS_MODE
    python: str = sys.executable
    gil_enabled: bool | None = None     # what the server must report; None: not checked
    list_levels: tuple[int, ...] = ()   # LIST concurrency levels it is measured at
    transfers: tuple[tuple[str, str, int], ...] = ()
    memory: bool = False

    @property
    def free_threaded(self) -> bool:
        return self.gil_enabled is not None

    @property
    def wrapper(self) -> list[str]:
        """Command prefix that sets PYTHON_GIL (``env`` execs the server, keeping its pid).
        A free-threaded variant with the GIL off runs as users run it: PYTHON_GIL unset."""
        if self.gil_enabled is None:
            return []
        return ["env", "PYTHON_GIL=1"] if self.gil_enabled else ["env", "-u", "PYTHON_GIL"]

    def record(self) -> dict:
        return {"name": self.name, "mode": self.mode, "python": self.python,
                "gil_enabled": self.gil_enabled, "list_levels": list(self.list_levels),
                "transfers": [list(point) for point in self.transfers], "memory": self.memory}


@dataclass(frozen=True)
class FreeThreaded:
    python: str | None = None           # None: the free-threaded points are skipped
    version: str | None = None
    skipped: str | None = None          # the line that says why, and how to get them


def free_threaded_python(explicit: str | None = None, skip: bool = False) -> FreeThreaded:
    """The free-threaded interpreter of this run: ``explicit`` (``--ft-python``), else
    ``.venv-ft/bin/python`` when it exists.  PlanError when the one named or found does
    not run the server or is not a free-threaded build."""
    if skip:
        return FreeThreaded(skipped="free-threaded points skipped (--no-ft)")
    if explicit is None:
        default = Path(local.FREETHREADED_PYTHON)
        if not default.exists():
            return FreeThreaded(skipped=f"free-threaded points skipped: {default} does not "
                                        "exist (`make venv-ft` makes it, or pass "
                                        "--ft-python PATH)")
        python, where = str(default), "free-threaded points"
        hint = " (`make venv-ft` rebuilds it; --no-ft skips these points)"
    else:
        where, hint = "--ft-python", ""
        try:
            python = local.resolve_python(explicit)
        except BackendError as error:
            raise PlanError(f"{where}: {error}") from None
    try:
        info = local.probe_python(PYTHON_FREETHREADED, python)
    except BackendError as error:
        raise PlanError(f"{where}: {error}{hint}") from None
    return FreeThreaded(python=python, version=info.get("version"))


def variants(modes: list[str], list_clients: list[int], ft: FreeThreaded) -> list[Variant]:
    """The servers of a run, in the order they are measured."""
    planned = [Variant(mode, mode, list_levels=tuple(list_clients), transfers=ALL_TRANSFERS,
                       memory=True) for mode in modes]
    if ft.python:
        planned.append(Variant(FT, "thread", ft.python, gil_enabled=False,
                               list_levels=tuple(list_clients), transfers=SINGLE_100MB,
                               memory=True))
        planned.append(Variant(FT_GIL, "thread", ft.python, gil_enabled=True,
                               list_levels=(max(list_clients),)))
    return planned
