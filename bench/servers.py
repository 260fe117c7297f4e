"""The servers under test: ours through ``server.launcher``, and the asyncio baseline.

Only processes started here are signalled, always by pid or by their own
process group.  ``RssSampler`` sums the RSS of a server's process and all
its children every ~50 ms.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

import psutil

from server.launcher import REPO_ROOT, ChildServer, ServerProcess

__all__ = ["ChildServer", "RealServer", "AsyncioServer", "ThreadPoolServer", "PreforkServer",
           "RssSampler",
           "REPO_ROOT", "log_summary"]


class RealServer(ServerProcess):
    """``python -m server`` at its default log level (INFO), output to a file; on
    ``python`` (the lab's own by default), behind ``wrapper`` (see ``ServerProcess``)."""

    def __init__(self, mode: str, pool: int, storage: str, log_path: str, *,
                 python: str = sys.executable, wrapper: list[str] | tuple[str, ...] = (),
                 label: str | None = None):
        super().__init__(storage, mode, pool, log_path=log_path, python=python,
                         wrapper=wrapper, stats_interval=0)
        if label:
            self.label = label


class AsyncioServer(ChildServer):
    """``python -m bench.asyncio_list``: the plain asyncio LIST baseline."""

    def __init__(self, storage: str, log_path: str, style: str = "protocol"):
        super().__init__(log_path)
        self.storage = storage
        self.style = style
        self.label = f"asyncio-{style}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.asyncio_list", "--port", str(self.port),
                "--storage", self.storage, "--style", self.style]

    def is_ready(self) -> bool:
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


class ThreadPoolServer(AsyncioServer):
    """``python -m bench.threadpool_list``: a bare course-style ThreadPoolExecutor LIST server."""

    script = "bench.threadpool_list"
    kind = "threadpool"

    def __init__(self, storage: str, log_path: str, pool: int):
        super().__init__(storage, log_path)
        self.pool = pool
        self.label = f"{self.kind}({pool})"

    def command(self) -> list[str]:
        return [sys.executable, "-m", self.script, "--port", str(self.port),
                "--storage", self.storage, "--pool", str(self.pool)]


class PreforkServer(ThreadPoolServer):
    """``python -m bench.prefork_list``: a bare course-style pre-forked LIST server."""

    script = "bench.prefork_list"
    kind = "prefork"


def log_summary(log_path) -> dict:
    """Line counts per level, tracebacks and up to 10 notable lines of a server log."""
    counts = {"lines": 0, "INFO": 0, "WARNING": 0, "ERROR": 0, "CRITICAL": 0,
              "tracebacks": 0}
    notable: list[str] = []
    try:
        with open(log_path, "r", errors="replace") as log:
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
    counts["bytes"] = os.path.getsize(log_path) if os.path.exists(log_path) else 0
    return counts


class RssSampler:
    """Samples the summed RSS of a server's processes every ``interval`` s in a thread.

    Start it only when no process is about to be forked from this one.
    """

    def __init__(self, server: ChildServer, interval: float = 0.05):
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


def idle_rss(server: ChildServer, seconds: float = 0.5) -> int:
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
