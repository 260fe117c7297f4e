"""Starting, watching and stopping the servers under test.

Only processes started here are signalled, always by pid.  ``RssSampler``
sums the RSS of a server's process and all its children every ~50 ms.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import psutil

__all__ = ["ManagedServer", "RealServer", "AsyncioServer", "RssSampler", "free_port",
           "REPO_ROOT"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _clean_env() -> dict:
    # FS_* variables of the caller's shell must not change what is measured
    # (flags win over them, but not every setting is passed as a flag).
    env = {k: v for k, v in os.environ.items() if not k.startswith("FS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ManagedServer:
    """A server process of ours: start, wait until ready, pids, stop."""

    label = "server"

    def __init__(self, storage: str, log_path: str):
        self.storage = storage
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.exit_code: int | None = None
        self._known_children: dict[int, float] = {}    # pid -> create_time

    @property
    def address(self) -> tuple[str, int]:
        return (HOST, self.port)

    def command(self) -> list[str]:
        raise NotImplementedError

    def _probe_ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        for _attempt in range(3):           # a picked port may be taken meanwhile
            self._pick_ports()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(self.command(), cwd=REPO_ROOT, env=_clean_env(),
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            deadline = time.monotonic() + READY_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if self._probe_ready():
                    self.children()
                    return
                time.sleep(0.05)
            if self.proc.poll() is None:    # not ready in time: give up on it
                self.stop()
                raise RuntimeError(f"{self.label} not ready after {READY_TIMEOUT:g} s; "
                                   f"see {self.log_path}")
        raise RuntimeError(f"{self.label} exited at start (status {self.proc.returncode}); "
                           f"see {self.log_path}")

    def _pick_ports(self) -> None:
        self.port = free_port()

    def children(self) -> list[int]:
        """Current child pids (remembered, so that they can be killed by pid later)."""
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []
        for kid in kids:
            try:
                self._known_children.setdefault(kid.pid, kid.create_time())
            except psutil.Error:
                pass
        return [kid.pid for kid in kids]

    def pids(self) -> list[int]:
        return [self.proc.pid] + self.children()

    def stop(self) -> int | None:
        """SIGTERM, wait; SIGKILL our own pids if it does not exit in time."""
        if self.proc is None or self.exit_code is not None:
            return self.exit_code
        if self.proc.poll() is None:
            self.children()
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # workers that outlived their supervisor (should not happen): kill by pid,
        # only if the pid still belongs to the process we saw
        for pid, created in self._known_children.items():
            try:
                proc = psutil.Process(pid)
                if abs(proc.create_time() - created) < 0.01:
                    proc.kill()
            except psutil.Error:
                pass
        self.exit_code = self.proc.returncode
        return self.exit_code

    def log_summary(self) -> dict:
        counts = {"lines": 0, "INFO": 0, "WARNING": 0, "ERROR": 0, "CRITICAL": 0,
                  "tracebacks": 0}
        notable: list[str] = []
        try:
            with open(self.log_path, "r", errors="replace") as log:
                for line in log:
                    counts["lines"] += 1
                    if line.startswith("Traceback"):
                        counts["tracebacks"] += 1
                    for level in ("WARNING", "ERROR", "CRITICAL", "INFO"):
                        if f" - {level} - " in line:
                            counts[level] += 1
                            if level != "INFO" and len(notable) < 10:
                                notable.append(line.rstrip()[:300])
                            break
        except OSError:
            pass
        counts["notable"] = notable
        counts["bytes"] = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        return counts


class RealServer(ManagedServer):
    """``python -m server`` at its default log level (INFO), output to a file."""

    def __init__(self, mode: str, pool: int, storage: str, log_path: str):
        super().__init__(storage, log_path)
        self.mode = mode
        self.pool = pool
        self.metrics_port = 0
        self.label = f"{mode}({pool})"

    def _pick_ports(self) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        while self.metrics_port == self.port:
            self.metrics_port = free_port()

    def command(self) -> list[str]:
        return [sys.executable, "-m", "server", "--mode", self.mode, "--pool", str(self.pool),
                "--ip", HOST, "--port", str(self.port), "--metrics-port", str(self.metrics_port),
                "--storage", self.storage, "--stats-interval", "0"]

    def _http(self, path: str) -> tuple[int, bytes]:
        url = f"http://{HOST}:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, b""
        except (OSError, ValueError):
            return 0, b""

    def _probe_ready(self) -> bool:
        return self._http("/readyz")[0] == 200

    def stats(self) -> dict | None:
        status, body = self._http("/stats")
        if status != 200:
            return None
        try:
            return json.loads(body)
        except ValueError:
            return None


class AsyncioServer(ManagedServer):
    """``python -m bench.asyncio_list``: the plain asyncio LIST baseline."""

    def __init__(self, storage: str, log_path: str, style: str = "protocol"):
        super().__init__(storage, log_path)
        self.style = style
        self.label = f"asyncio-{style}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.asyncio_list", "--port", str(self.port),
                "--storage", self.storage, "--style", self.style]

    def _probe_ready(self) -> bool:
        try:
            with socket.create_connection(self.address, timeout=1.0) as sock:
                sock.sendall(b"LIST\r\n\r\n")
                reply = b""
                while not reply.endswith(b"\r\n\r\n") and len(reply) < 1 << 20:
                    data = sock.recv(65536)
                    if not data:
                        return False
                    reply += data
                return b'"OK"' in reply
        except OSError:
            return False


class RssSampler:
    """Samples the summed RSS of a server's processes every ``interval`` s in a thread.

    Start it only when no process is about to be forked from this one.
    """

    def __init__(self, server: ManagedServer, interval: float = 0.05):
        self.server = server
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._procs: dict[int, psutil.Process] = {}
        self._refreshed = 0.0

    def _refresh(self) -> None:
        for pid in self.server.pids():
            if pid not in self._procs:
                try:
                    self._procs[pid] = psutil.Process(pid)
                except psutil.Error:
                    pass
        self._refreshed = time.monotonic()

    def sample(self) -> int:
        if time.monotonic() - self._refreshed > 0.5:
            self._refresh()
        total = 0
        for pid, proc in list(self._procs.items()):
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                del self._procs[pid]
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.sample()))
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._refresh()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.samples.append((time.monotonic(), self.sample()))

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)


def idle_rss(server: ManagedServer, seconds: float = 0.5) -> int:
    """Median summed RSS over ``seconds`` of an idle server."""
    sampler = RssSampler(server)
    values = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        values.append(sampler.sample())
        time.sleep(0.05)
    values.sort()
    return values[len(values) // 2]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the given processes (all their threads)."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total
