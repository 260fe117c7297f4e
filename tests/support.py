"""Helpers shared by the tests: start a real server process, talk raw protocol."""

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

import psutil

import wire

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``python -m server`` as a child of the test, on free loopback ports."""

    host = "127.0.0.1"

    def __init__(self, storage: Path, mode: str = "thread", pool: int = 5,
                 log_path: Path | None = None, **settings):
        self.storage = storage
        self.mode = mode
        self.pool = pool
        self.port = free_port()
        self.metrics_port = free_port()
        self.log_path = log_path or storage.parent / f"server-{self.port}.log"
        env = dict(os.environ, FS_STATS_INTERVAL="0", PYTHONUNBUFFERED="1")
        env.update({f"FS_{key.upper()}": str(value) for key, value in settings.items()})
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "--mode", mode, "--pool", str(pool),
             "--ip", "127.0.0.1", "--port", str(self.port),
             "--metrics-port", str(self.metrics_port), "--storage", str(storage)],
            cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.wait_ready()
        self.pids = {self.proc.pid} | {c.pid for c in psutil.Process(self.proc.pid).children()}

    def wait_ready(self, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return self.http_json("/readyz")
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.log()}")

    def http_json(self, path: str) -> dict:
        """The JSON body, for 503 (not ready) as well as 200."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}",
                                        timeout=5) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                if error.code != 503:
                    raise
                return json.loads(error.read())

    def http_text(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}",
                                    timeout=5) as response:
            return response.read().decode()

    def stats(self) -> dict:
        return self.http_json("/stats")

    def worker_pids(self) -> list[int]:
        return [c.pid for c in psutil.Process(self.proc.pid).children()]

    def wait_for_log(self, text: str, timeout: float = 5.0) -> str:
        """The log once it holds ``text`` (log lines are written in batches)."""
        deadline = time.monotonic() + timeout
        while text not in self.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.log()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self._log.close()
        return code

    def leftover_processes(self) -> list[int]:
        alive = []
        for pid in self.pids | set(getattr(self, "extra_pids", ())):
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        return alive


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


def temp_files(storage: Path) -> list[str]:
    return [p.name for p in storage.iterdir() if p.name.startswith(".upload-")]
