"""The local backend: server, Locust master and workers as processes on 127.0.0.1.

No Docker needed.  The server's CPU and memory limits are applied with a
cgroup when this process may make one (see ``scenarios.limits``); otherwise
the run is recorded as unlimited.  Locust shares the machine with the server,
which the report says next to the numbers, unless a ``Placement`` pins the
server and Locust to separate CPUs.  The CPU of every Locust process is sampled
into ``locust-cpu.jsonl`` (see ``scenarios.generator``).

The server runs on the scenario's ``python``: the lab's own interpreter, the
free-threaded ``.venv-ft`` or a path; Locust always runs on the lab's own.
``check_scenarios`` finds and probes each interpreter before anything starts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from scenarios import limits as cgroup_limits
from scenarios.backends.base import (LOCUST_OVERHEAD_SECONDS, REPO_ROOT, Backend,
                                     BackendError, Outcome, Progress, locustfiles, stop_process,
                                     wait_for_exit)
from scenarios.generator import CPU_FILE, LocustCpuSampler
from scenarios.placement import Placement
from scenarios.results import LOCUST_PREFIX, STATS_FILE
from scenarios.sampler import StatsSampler
from scenarios.schema import PYTHON_DEFAULT, PYTHON_FREETHREADED, Scenario
from server.launcher import ServerProcess, free_port

READY_TIMEOUT = 30.0
FREETHREADED_PYTHON = REPO_ROOT / ".venv-ft" / "bin" / "python"     # `make venv-ft`
PROBE_TIMEOUT = 60.0
# run by a server interpreter before the lab starts: it must import the server, and
# it says which interpreter it is (the same dict as /stats "interpreter")
PROBE = ("import json, server.__main__; from server.stats import interpreter_info; "
         "print(json.dumps(interpreter_info()))")


def resolve_python(key: str, default: str = sys.executable) -> str:
    """The interpreter a scenario's ``python`` key names; BackendError (one line,
    naming the path and what is wrong) when there is none."""
    if key == PYTHON_DEFAULT:
        return default
    if key == PYTHON_FREETHREADED:
        if not FREETHREADED_PYTHON.exists():
            raise BackendError(f"python {key}: {FREETHREADED_PYTHON} does not exist "
                               "(run `make venv-ft` first)")
        return str(FREETHREADED_PYTHON)
    path = Path(key).expanduser()
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.exists():
        raise BackendError(f"python {key!r}: {path} does not exist")
    if path.is_dir() or not os.access(path, os.X_OK):
        raise BackendError(f"python {key!r}: {path} is not an executable file")
    return str(path)


def probe_python(key: str, python: str) -> dict:
    """What ``python`` says about itself (version, free_threaded, gil_enabled) once it
    has imported the server; BackendError when it cannot, or when ``key`` asked for a
    free-threaded interpreter and this one is not."""
    try:
        probe = subprocess.run([python, "-c", PROBE], cwd=REPO_ROOT, capture_output=True,
                               text=True, timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BackendError(f"python {key!r}: {python} does not run: {error}") from None
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
        raise BackendError(f"python {key!r}: {python} cannot run the server: {last}")
    try:
        info = json.loads(probe.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BackendError(f"python {key!r}: {python} did not describe itself "
                           f"(printed {probe.stdout[-200:]!r})") from None
    if key == PYTHON_FREETHREADED and not info.get("free_threaded"):
        raise BackendError(f"python {key}: {python} is Python {info.get('version', '?')} "
                           "without free threading (not built with --disable-gil); "
                           "rebuild it with `make venv-ft`")
    return info


class LocalBackend(Backend):
    name = "local"
    runs_capacity_searches = True

    def __init__(self, python: str = sys.executable, apply_limits: bool = True,
                 cpu_placement: Placement | None = None):
        self.python = python
        self.apply_limits = apply_limits
        self.cpu_placement = cpu_placement
        self.placement = cpu_placement.record() if cpu_placement else None
        self.server_pythons: dict[str, str] = {}    # scenario key -> checked interpreter

    def server_python(self, scenario: Scenario) -> str:
        """The interpreter that runs ``scenario``'s server (resolved once per key)."""
        if scenario.python not in self.server_pythons:
            python = resolve_python(scenario.python, self.python)
            if scenario.python != PYTHON_DEFAULT:
                probe_python(scenario.python, python)
            self.server_pythons[scenario.python] = python
        return self.server_pythons[scenario.python]

    def check_scenarios(self, scenarios: list[Scenario]) -> None:
        for scenario in scenarios:
            try:
                self.server_python(scenario)
            except BackendError as error:
                raise BackendError(f"scenario {scenario.name!r}: {error}") from None

    def check(self) -> None:
        probe = subprocess.run([self.python, "-c", "import locust, server"], cwd=REPO_ROOT,
                               capture_output=True, text=True)
        if probe.returncode != 0:
            raise BackendError(f"{self.python} cannot import locust and server "
                               "(run `make install` first)")

    def _locust(self, scenario: Scenario, *args: str) -> list[str]:
        pin = self.cpu_placement.locust_prefix() if self.cpu_placement else []
        return [*pin, self.python, "-m", "locust", "-f", locustfiles(scenario), *args]

    def run(self, scenario: Scenario, folder: Path, progress: Progress) -> Outcome:
        try:
            server_python = self.server_python(scenario)
        except BackendError as error:
            return Outcome("error", str(error), False)
        storage = tempfile.mkdtemp(prefix="fileserver-lab-")
        limits, limits_note = None, "limits not applied (--no-limits)"
        if self.apply_limits:
            limits, why = cgroup_limits.limits_for(
                f"fileserver-lab-{os.getpid()}-{uuid.uuid4().hex[:8]}",
                scenario.server_cpus, scenario.memory_bytes)
            limits_note = f"limits not applied: {why}" if limits is None else ""
        enforced = limits is not None
        pin = self.cpu_placement.server_prefix() if self.cpu_placement else []
        server = ServerProcess(storage, scenario.mode, scenario.pool,
                               log_path=folder / "server.log", python=server_python,
                               wrapper=limits.wrap(pin) if limits else pin,
                               ready_timeout=READY_TIMEOUT, log_level="INFO",
                               stats_interval=10)
        locust_log = open(folder / "locust.log", "wb")
        locust_processes: list[subprocess.Popen] = []
        sampler = cpu_sampler = None
        try:
            try:
                server.start()
            except RuntimeError as exc:
                return Outcome("error", str(exc).splitlines()[0], enforced)
            stats_url = server.url("/stats")
            sampler = StatsSampler(stats_url, folder / STATS_FILE).start()
            env = dict(os.environ, **dict(scenario.locust_env()),
                       LOCUST_EXPECT_WORKERS_MAX_WAIT="60")
            master_port = free_port()
            master = subprocess.Popen(
                self._locust(scenario, "--master", "--master-bind-host", "127.0.0.1",
                             "--master-bind-port", str(master_port), "--headless",
                             "--host", f"tcp://127.0.0.1:{server.port}",
                             "--server-stats-url", stats_url,
                             "--csv", str(folder / LOCUST_PREFIX), "--csv-full-history",
                             "--html", str(folder / "report.html"), "--only-summary"),
                cwd=folder, env=env, stdout=locust_log, stderr=subprocess.STDOUT)
            locust_processes.append(master)
            for _ in range(scenario.locust_workers):
                locust_processes.append(subprocess.Popen(
                    self._locust(scenario, "--worker", "--master-host", "127.0.0.1",
                                 "--master-port", str(master_port)),
                    cwd=folder, env=env, stdout=locust_log, stderr=subprocess.STDOUT))
            cpu_sampler = LocustCpuSampler(
                {"master": master.pid, **{f"worker-{index}": process.pid for index, process
                                          in enumerate(locust_processes[1:], 1)}},
                folder / CPU_FILE).start()
            code = wait_for_exit(master, scenario.duration + LOCUST_OVERHEAD_SECONDS,
                                 progress, lambda: sampler.latest)
            return Outcome.from_exit_code(code, limits_note, enforced)
        finally:
            if sampler is not None:
                sampler.stop()
            if cpu_sampler is not None:
                cpu_sampler.stop()
            for process in reversed(locust_processes):
                stop_process(process, timeout=15)
            locust_log.close()
            server_code = server.stop()
            if server_code not in (0, None):
                with open(folder / "server.log", "ab") as server_log:
                    server_log.write(f"\n[runner] server exited with status {server_code}\n"
                                     .encode())
            if limits is not None:
                limits.remove()
            shutil.rmtree(storage, ignore_errors=True)
