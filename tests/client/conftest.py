"""Fixtures: the real server as a subprocess, and tiny scripted fake servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
READY_SECONDS = 15.0
STOP_SECONDS = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    mode: str
    port: int
    metrics_port: int
    storage: Path
    process: subprocess.Popen
    log_path: Path

    @property
    def host(self) -> str:
        return HOST

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def clear_storage(self) -> None:
        for entry in self.storage.iterdir():
            if entry.is_file():
                entry.unlink()


def _ready(metrics_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{metrics_port}/readyz", timeout=0.5) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_server(tmp_path: Path, mode: str, pool: int = 5, extra_args=()) -> RunningServer:
    """Start ``python -m server`` on free ports; bounded wait for /readyz."""
    storage = tmp_path / f"storage-{mode}"
    storage.mkdir(exist_ok=True)
    for attempt in range(3):          # a free port may be taken between probe and bind
        port, metrics_port = free_port(), free_port()
        log_path = tmp_path / f"server-{mode}-{port}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "server", "--mode", mode, "--pool", str(pool),
                 "--ip", HOST, "--port", str(port), "--metrics-port", str(metrics_port),
                 "--storage", str(storage), "--stats-interval", "0", *extra_args],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
        server = RunningServer(mode, port, metrics_port, storage, process, log_path)
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            if _ready(metrics_port):
                return server
            time.sleep(0.05)
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_SECONDS)
            pytest.fail(f"server not ready after {READY_SECONDS} s:\n{server.log()}")
        if "in use" not in server.log() or attempt == 2:
            pytest.fail(f"server exited with {process.returncode}:\n{server.log()}")
    raise AssertionError("unreachable")


def stop_server(server: RunningServer) -> None:
    """SIGTERM by pid, bounded wait, and the exit status must be 0."""
    process = server.process
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_SECONDS)
            pytest.fail(f"server did not stop within {STOP_SECONDS} s of SIGTERM:\n{server.log()}")
    assert process.returncode == 0, f"server exit status {process.returncode}:\n{server.log()}"


@pytest.fixture(scope="module", params=["thread", "process"])
def running_server(request, tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp(f"server-{request.param}"), request.param)
    yield server
    stop_server(server)


@pytest.fixture
def server(running_server):
    """The module's server with an empty storage folder."""
    assert running_server.process.poll() is None, running_server.log()
    running_server.clear_storage()
    return running_server


@pytest.fixture
def server_factory(tmp_path):
    """Start extra servers (with extra flags) that are stopped at teardown."""
    started = []

    def factory(mode="thread", pool=5, extra_args=()):
        server = start_server(tmp_path, mode, pool, extra_args)
        started.append(server)
        return server

    yield factory
    for server in started:
        stop_server(server)


# --------------------------------------------------------------------------
# fake servers

def read_request(conn: socket.socket, limit: int = 1 << 20) -> bytes:
    """Read up to and including the request terminator (bounded)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < limit:
        piece = conn.recv(65536)
        if not piece:
            break
        data += piece
    return data


@dataclass
class FakeServer:
    """A listening socket on 127.0.0.1 whose connections run scripted handlers.

    ``scripts[i](conn)`` serves the i-th accepted connection; accepting stops
    after the last script.  Everything is bounded by timeouts.
    """
    scripts: list
    port: int = 0
    requests: list = field(default_factory=list)
    errors: list = field(default_factory=list)

    def __post_init__(self):
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(10.0)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        for script in self.scripts:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10.0)
                try:
                    script(self, conn)
                except OSError as exc:
                    self.errors.append(exc)

    def close(self):
        try:
            self._listener.shutdown(socket.SHUT_RDWR)   # wakes a blocked accept()
        except OSError:
            pass
        self._listener.close()
        self._thread.join(timeout=15.0)


@pytest.fixture
def fake_server():
    created = []

    def factory(*scripts):
        fake = FakeServer(list(scripts))
        created.append(fake)
        return fake

    yield factory
    for fake in created:
        fake.close()
