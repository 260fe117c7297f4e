"""Start ``python -m server`` as a child process, wait until it is ready, stop it.

The one way the tests, the benchmark and the local scenario backend run a
real server.  ``ServerProcess`` picks free loopback ports, passes every
setting as a flag (the caller's ``FS_*`` variables are not inherited, so they
cannot change what runs), sends the output to a log file, and waits for
``/readyz`` to answer 200.  The server runs in a process group of its own:
``stop()`` sends SIGTERM to the supervisor, SIGKILLs the group if it
outlives the timeout, and afterwards SIGKILLs anything of that group still
alive (recorded first in ``leftovers``: a clean server leaves none).

``ChildServer`` is the part that is not specific to this server (start with
a fresh port on a clash, readiness, pids, stopping); ``bench`` runs its
asyncio baseline with it.  Only processes started here are ever signalled.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import psutil

from .config import SETTINGS

__all__ = ["ChildServer", "ServerProcess", "free_port", "server_command", "wait_until",
           "http_get", "http_status", "HOST", "REPO_ROOT"]

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
START_ATTEMPTS = 3                  # a free port may be taken before the server binds it
_FLAGS = {setting.field: setting.flags[0] for setting in SETTINGS}


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def server_command(python: str = sys.executable, **settings) -> list[str]:
    """``python -m server`` with each setting (a ``ServerConfig`` field) as its flag."""
    command = [python, "-m", "server"]
    for field, value in settings.items():
        if field not in _FLAGS:
            raise ValueError(f"unknown server setting {field!r}; known: {', '.join(_FLAGS)}")
        command += [_FLAGS[field], str(value)]
    return command


def wait_until(ready: Callable[[], bool], timeout: float,
               process: subprocess.Popen | None = None, interval: float = 0.05) -> bool:
    """Poll ``ready()`` until it is true (True) or ``timeout`` s pass or ``process``
    exits (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (process is None or process.poll() is None):
        if ready():
            return True
        time.sleep(interval)
    return False


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of a GET of ``url``; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()
    except (OSError, ValueError):
        return 0, b""


def http_status(url: str, timeout: float = 5.0) -> int:
    return http_get(url, timeout)[0]


def _environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ChildServer:
    """A server process of ours: start until ready, pids, stop by process group."""

    label = "server"
    host = HOST

    def __init__(self, log_path: str | os.PathLike, ready_timeout: float = READY_TIMEOUT):
        self.log_path = Path(log_path)
        self.ready_timeout = ready_timeout
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.exit_code: int | None = None
        self.leftovers: list[int] = []
        self._known: dict[int, float] = {}      # pid -> create time, every process seen

    # -- what a subclass defines ------------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def is_ready(self) -> bool:
        raise NotImplementedError

    def pick_ports(self) -> None:
        self.port = free_port()

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        return (HOST, self.port)

    def start(self):
        """Start and wait until ready; returns self.  Raises RuntimeError naming the log."""
        for _attempt in range(START_ATTEMPTS):
            self.pick_ports()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    self.command(), cwd=REPO_ROOT, env=_environment(), stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            if self._wait_ready():
                self.pids()
                return self
            if self.proc.poll() is None:
                self.stop()
                raise RuntimeError(f"{self.label} not ready after {self.ready_timeout:g} s; "
                                   f"see {self.log_path}:\n{self.log()[-3000:]}")
        raise RuntimeError(f"{self.label} exited at start (status {self.proc.returncode}); "
                           f"see {self.log_path}:\n{self.log()[-3000:]}")

    def _wait_ready(self) -> bool:
        return wait_until(self.is_ready, self.ready_timeout, self.proc)

    def pids(self) -> list[int]:
        """The server's pid and its current children's (all remembered for stop())."""
        try:
            server = psutil.Process(self.proc.pid)
            children = server.children(recursive=True)
        except psutil.Error:
            return [self.proc.pid]
        for child in [server, *children]:
            try:
                self._known.setdefault(child.pid, child.create_time())
            except psutil.Error:
                pass
        return [self.proc.pid] + [child.pid for child in children]

    def worker_pids(self) -> list[int]:
        return self.pids()[1:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Signal the server, wait up to ``timeout`` s, then clean up its group;
        returns the exit status (negative: killed by that signal)."""
        if self.proc is None or self.exit_code is not None:
            return self.exit_code
        if self.proc.poll() is None:
            self.pids()
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.proc.wait()
        self.exit_code = self.proc.returncode
        self.leftovers = self.leftover_processes()
        self._kill_group()
        for pid in self.leftovers:
            self._kill_known(pid)
        return self.exit_code

    def leftover_processes(self) -> list[int]:
        """Processes seen as the server's children that are still alive (not zombies)."""
        alive = []
        for pid, created in self._known.items():
            try:
                process = psutil.Process(pid)
                if (abs(process.create_time() - created) < 0.01
                        and process.status() != psutil.STATUS_ZOMBIE):
                    alive.append(pid)
            except psutil.Error:
                pass
        return sorted(set(alive) | set(self.leftovers))

    def _kill_group(self) -> None:
        # the group keeps the server's pid as its id while any member lives,
        # so the id cannot name anyone else's processes
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _kill_known(self, pid: int) -> None:
        try:
            process = psutil.Process(pid)
            if abs(process.create_time() - self._known[pid]) < 0.01:
                process.kill()
        except psutil.Error:
            pass

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for_log(self, text: str, timeout: float = 5.0) -> str:
        """The log once it holds ``text`` (the server writes access lines in batches)."""
        deadline = time.monotonic() + timeout
        while text not in self.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.log()


class ServerProcess(ChildServer):
    """``python -m server`` on free ports of 127.0.0.1.

    ``settings`` are further ``ServerConfig`` fields (``timeout=10``,
    ``log_level="WARNING"``); ``wrapper`` is a command prefix that must
    ``exec`` the server (a cgroup join, say) so that its pid stays the server's.
    """

    def __init__(self, storage: str | os.PathLike, mode: str = "thread", pool: int = 5, *,
                 log_path: str | os.PathLike | None = None, python: str = sys.executable,
                 wrapper: list[str] | tuple[str, ...] = (),
                 ready_timeout: float = READY_TIMEOUT, **settings):
        self.storage = Path(storage)
        self.mode = mode
        self.pool = pool
        self.python = python
        self.wrapper = list(wrapper)
        self.settings = settings
        self.metrics_port = 0
        self.label = f"{mode}({pool})"
        super().__init__(log_path or self.storage.parent / f"server-{os.getpid()}-{id(self)}.log",
                         ready_timeout)

    def pick_ports(self) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        while self.metrics_port == self.port:
            self.metrics_port = free_port()

    def command(self) -> list[str]:
        return self.wrapper + server_command(
            self.python, mode=self.mode, pool=self.pool, host=HOST, port=self.port,
            metrics_port=self.metrics_port, storage_dir=self.storage, **self.settings)

    def is_ready(self) -> bool:
        return http_status(self.url("/readyz")) == 200

    # -- the metrics port -------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.metrics_port}{path}"

    def http(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """(status, body); status 0 when the port does not answer."""
        return http_get(self.url(path), timeout)

    def http_json(self, path: str) -> dict:
        """The JSON body, for 503 (not ready) as well as 200; OSError if unreachable."""
        status, body = self.http(path)
        if status not in (200, 503):
            raise OSError(f"GET {self.url(path)}: " + (f"status {status}" if status
                                                       else "no answer"))
        return json.loads(body)

    def http_text(self, path: str) -> str:
        status, body = self.http(path)
        if status != 200:
            raise OSError(f"GET {self.url(path)}: status {status}")
        return body.decode()

    def stats(self) -> dict:
        return self.http_json("/stats")
