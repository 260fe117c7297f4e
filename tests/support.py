"""Helpers shared by the tests: a real server process (``server.launcher``), raw protocol,
a command line's usage error."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import wire
from server import launcher
from server.launcher import REPO_ROOT, free_port
from server.storage import LOCK_NAME

__all__ = ["REPO_ROOT", "ServerProcess", "free_port", "connect", "read_reply", "request",
           "command", "stored_files", "temp_files", "usage_error"]


class ServerProcess(launcher.ServerProcess):
    """A real server started at construction, with the tests' defaults (no stats lines)."""

    def __init__(self, storage: Path, mode: str = "thread", pool: int = 5,
                 log_path: Path | None = None, **settings):
        settings.setdefault("stats_interval", 0)
        super().__init__(storage, mode, pool, log_path=log_path, ready_timeout=20.0, **settings)
        self.start()


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return sock


def read_reply(sock: socket.socket, decoder: wire.ReplyDecoder | None = None) -> dict:
    """One reply, GET content included (decoded into ``data_file_bytes``)."""
    decoder = decoder or wire.ReplyDecoder()
    fields, content, streamed = None, bytearray(), False
    while True:
        event = decoder.next_event()
        if event is wire.NEED_DATA:
            decoder.receive_data(sock.recv(1 << 16))
            continue
        if isinstance(event, wire.ReplyStart):
            fields, streamed = dict(event.fields), event.streamed
        elif isinstance(event, wire.ReplyData):
            content += event.data
        elif isinstance(event, wire.ReplyEnd):
            if streamed:
                fields["data_file_bytes"] = bytes(content)
            return fields


def request(port: int, raw: bytes, timeout: float = 10.0) -> dict:
    """Send raw request bytes on a new connection and read one reply."""
    with connect(port, timeout) as sock:
        sock.sendall(raw)
        return read_reply(sock)


def command(port: int, verb: str, name: str | None = None, content: bytes | None = None) -> dict:
    return request(port, wire.encode_request(verb, name, content))


def stored_files(server) -> list[str]:
    """What is in a server's storage folder, but for its lock file."""
    return sorted(p.name for p in server.storage.iterdir() if p.name != LOCK_NAME)


def temp_files(storage: Path) -> list[str]:
    return [p.name for p in storage.iterdir() if p.name.startswith(".upload-")]


def usage_error(module: str, *args: str) -> str:
    """Run ``python -m module args``; assert it exits 2 (a usage error) and
    return the last line of its stderr, where argparse puts the message."""
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    return done.stderr.strip().splitlines()[-1]
