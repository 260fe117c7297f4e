"""What every backend shares: the interface, outcomes, waiting with progress."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from scenarios.schema import Scenario
from server.launcher import http_status, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO_ROOT / "locust" / "locustfile.py"
CAPACITY_SHAPE = REPO_ROOT / "locust" / "capacity_shape.py"
# Locust's exit status: 0 clean, 1 requests failed (--max-fail-ratio exceeded)
EXIT_STATUS = {0: "ok", 1: "failures"}
# Locust needs time beyond --run-time: workers joining, seeding GET files, stopping
LOCUST_OVERHEAD_SECONDS = 180

# progress(elapsed seconds of the load, latest /stats or None)
Progress = Callable[[float, "dict | None"], None]


class BackendError(RuntimeError):
    """The backend cannot run here (a missing tool, image or cluster); one line."""


@dataclass(frozen=True)
class Outcome:
    status: str                   # ok | failures | error
    note: str = ""
    limits_enforced: bool = True  # the server really ran within the scenario's limits

    @classmethod
    def from_exit_code(cls, code: int | None, note: str = "",
                       limits_enforced: bool = True) -> Outcome:
        status = "error" if code is None else EXIT_STATUS.get(code, "error")
        problem = ("Locust did not finish in time" if code is None
                   else f"Locust exited with status {code}" if status == "error" else "")
        return cls(status, "; ".join(filter(None, [problem, note])), limits_enforced)


def locustfiles(scenario: Scenario) -> str:
    """Locust's -f: the users, and for a capacity search the shape that drives them."""
    files = [LOCUSTFILE] + ([CAPACITY_SHAPE] if scenario.capacity is not None else [])
    return ",".join(str(path) for path in files)


class Backend:
    """Runs one scenario at a time; see the package docstring for the contract."""

    name = ""
    runs_capacity_searches = False      # the backend loads locust/capacity_shape.py
    placement: dict | None = None   # CPU placement of server and Locust, for run.json

    def check(self) -> None:
        """Raise BackendError when this backend cannot run on this machine."""

    def check_scenarios(self, scenarios: list[Scenario]) -> None:
        """Raise BackendError when one of ``scenarios`` cannot run here (checked
        before the first one starts; e.g. its ``python`` is missing)."""

    def run(self, scenario: Scenario, folder: Path, progress: Progress) -> Outcome:
        raise NotImplementedError


def refuse_interpreter_paths(backend: str, scenarios: list[Scenario]) -> None:
    """Containers run the server image of ``default`` or ``freethreaded``: a ``python``
    path is the local backend's only."""
    for scenario in scenarios:
        if scenario.server_image is None:
            raise BackendError(f"scenario {scenario.name!r}: python {scenario.python!r}: a "
                               f"path runs with the local backend only ({backend} takes "
                               "default or freethreaded)")


def wait_for_exit(process: subprocess.Popen, timeout: float, progress: Progress,
                  latest: Callable[[], "dict | None"], tick: float = 1.0) -> int | None:
    """Wait for ``process`` while reporting progress; None when it outlives ``timeout``."""
    started = time.monotonic()
    while True:
        code = process.poll()
        if code is not None:
            return code
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            return None
        progress(elapsed, latest())
        time.sleep(tick)


def wait_until_ready(url: str, timeout: float,
                     process: subprocess.Popen | None = None) -> str:
    """Poll the server's /readyz until it answers 200: "" when ready, else why not.
    With ``process``, give up as soon as it has exited."""
    if wait_until(lambda: http_status(url, timeout=2) == 200, timeout, process, interval=0.2):
        return ""
    if process is not None and process.poll() is not None:
        return f"the server exited with status {process.returncode} (see server.log)"
    return f"the server was not ready within {timeout:g} s (see server.log)"


def stop_process(process: subprocess.Popen, timeout: float = 30.0) -> int:
    """SIGTERM ``process``, then SIGKILL it if it outlives ``timeout``."""
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()
