"""Fixtures: the real server (tests.support.ServerProcess), and tiny scripted fake servers."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import ServerProcess

HOST = "127.0.0.1"


def start_server(storage: Path, mode: str, pool: int = 5, **settings) -> ServerProcess:
    storage.mkdir(parents=True, exist_ok=True)
    return ServerProcess(storage, mode=mode, pool=pool, **settings)


def stop_server(server: ServerProcess) -> None:
    """SIGTERM by pid, bounded wait; the exit status must be 0."""
    code = server.stop()
    assert code == 0, f"server exit status {code}:\n{server.log()}"


@pytest.fixture(scope="module", params=["thread", "process"])
def running_server(request, tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp(f"server-{request.param}") / "files",
                          request.param)
    yield server
    stop_server(server)


@pytest.fixture
def server(running_server):
    """The module's server with an empty storage folder."""
    assert running_server.proc.poll() is None, running_server.log()
    for entry in running_server.storage.iterdir():
        if entry.is_file():
            entry.unlink()
    return running_server


@pytest.fixture
def server_factory(tmp_path):
    """Start extra servers (with FS_* settings, e.g. timeout=0.3) stopped at teardown."""
    started = []

    def factory(mode="thread", pool=5, **settings):
        server = start_server(tmp_path / f"files-{len(started)}", mode, pool, **settings)
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
