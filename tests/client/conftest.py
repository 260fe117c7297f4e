"""Tiny scripted fake servers.  The real servers (``shared_server``, ``server_factory``)
are fixtures of tests/conftest.py."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

import pytest

HOST = "127.0.0.1"


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
