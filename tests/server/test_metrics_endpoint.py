"""The metrics port runs in a thread of its own and no client can hold it.

In process (``MetricsServer`` on an in-process listener): the routes and HTTP
errors, the whole-request deadline, the connection cap, and a fork that waits
for the thread to finish its step.  Against a real ``python -m server`` in
both modes: with a client sending headers at 1 byte/s and ten idle sockets
open, ``/healthz`` answers within 1 s, a killed worker is replaced (process
mode) and SIGTERM stops the server at once.
"""

import json
import os
import select
import signal
import socket
import threading
import time

import psutil
import pytest

from server import metrics
from server.config import MODES
from server.healthcheck import probe_url
from server.launcher import http_get, wait_until
from server.metrics import MetricsServer
from tests.support import ServerProcess

SLOW_REQUEST = b"GET /stats HTTP/1.1\r\nHost: fileserver\r\nX-Slow: " + b"a" * 4000


class MetricsAttack:
    """What froze the old endpoint: one client sending a request's headers a byte
    a second and ``idle`` connections that send nothing, each opened again as
    soon as the server closes it, until ``stop()``.  Records how long each slow
    connection lived and how many bytes it had sent."""

    def __init__(self, port: int, idle: int = 10, byte_every: float = 1.0):
        self.port = port
        self.idle_count = idle
        self.byte_every = byte_every
        self.slow_lifetimes: list[tuple[float, int]] = []     # (seconds, bytes sent)
        self.idle_closed = 0
        self.server_gone = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="MetricsAttack")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(10)

    def _connect(self) -> socket.socket:
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass                    # completes in the background
        except OSError:
            self.server_gone = True     # stopped by the test: nothing left to attack
        return sock

    def _run(self) -> None:
        idle = [self._connect() for _ in range(self.idle_count)]
        slow, slow_since, sent, next_byte = self._connect(), time.monotonic(), 0, 0.0
        try:
            while not self._stop.wait(0.05):
                if self.server_gone:
                    return
                readable, _, _ = select.select(idle + [slow], [], [], 0)
                for sock in readable:
                    closed = _closed_by_peer(sock)
                    if closed and sock is slow:
                        self.slow_lifetimes.append((time.monotonic() - slow_since, sent))
                        slow.close()
                        slow, slow_since, sent, next_byte = self._connect(), time.monotonic(), 0, 0
                    elif closed:
                        self.idle_closed += 1
                        idle[idle.index(sock)] = self._connect()
                        sock.close()
                now = time.monotonic()
                if now >= next_byte:
                    try:
                        slow.send(SLOW_REQUEST[sent:sent + 1])
                        sent += 1
                    except OSError:
                        pass                # closed: seen as readable next round
                    next_byte = now + self.byte_every
        finally:
            for sock in idle + [slow]:
                sock.close()


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def healthz_seconds(port: int) -> float:
    """Seconds /healthz took to answer 200 (fails the test on anything else)."""
    started = time.monotonic()
    status, body = http_get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    elapsed = time.monotonic() - started
    assert (status, json.loads(body or b"null")) == (200, {"status": "alive"}), elapsed
    return elapsed


def raw_exchange(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        return reply


# -- in process -----------------------------------------------------------------------------

@pytest.fixture
def endpoint():
    state = {"ready": True, "calls": 0}

    def snapshot():
        state["calls"] += 1
        return {"pool": 2, "calls": state["calls"]}

    def readiness():
        return {"ready": state["ready"]}

    server = MetricsServer("127.0.0.1", 0, snapshot, readiness)
    server.routes.pop("/metrics")        # Prometheus needs a whole /stats document
    server.start()
    server.state = state
    yield server
    server.close()


@pytest.mark.unit
def test_routes_and_http_errors(endpoint):
    port = endpoint.port
    assert http_get(f"http://127.0.0.1:{port}/healthz") == (200, b'{\n "status": "alive"\n}')
    status, body = http_get(f"http://127.0.0.1:{port}/stats?x=1")
    assert (status, json.loads(body)) == (200, {"pool": 2, "calls": 1})
    endpoint.state["ready"] = False
    assert http_get(f"http://127.0.0.1:{port}/readyz")[0] == 503
    status, body = http_get(f"http://127.0.0.1:{port}/nope")
    assert status == 404 and "/healthz" in json.loads(body)["error"]

    head = raw_exchange(port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    assert b"Content-Length: 22\r\n" in head and b"Connection: close\r\n" in head
    post = raw_exchange(port, b"POST /healthz HTTP/1.1\r\n\r\n")
    assert post.startswith(b"HTTP/1.0 405 ") and b"Allow: GET, HEAD\r\n" in post
    assert raw_exchange(port, b"garbage\r\n\r\n").startswith(b"HTTP/1.0 400 ")
    huge = b"GET /healthz HTTP/1.1\r\nX-Big: " + b"b" * (metrics.MAX_REQUEST_BYTES + 10)
    assert raw_exchange(port, huge).startswith(b"HTTP/1.0 431 ")


@pytest.mark.unit
@pytest.mark.slow
def test_a_slow_client_and_idle_sockets_cannot_hold_the_endpoint(endpoint):
    with MetricsAttack(endpoint.port) as attack:
        time.sleep(0.5)
        latencies = []
        deadline = time.monotonic() + 5.5
        while time.monotonic() < deadline:
            latencies.append(healthz_seconds(endpoint.port))
            time.sleep(0.2)
    assert max(latencies) < 1.0, latencies
    # the deadline is for the whole request, not for each recv: the slow client
    # sent a byte every second and was still closed after REQUEST_SECONDS
    assert attack.slow_lifetimes, "the slow client was never closed"
    seconds, sent = attack.slow_lifetimes[0]
    assert sent >= 2
    assert metrics.REQUEST_SECONDS - 0.1 <= seconds <= metrics.REQUEST_SECONDS + 1.0
    assert attack.idle_closed >= 10       # each idle socket too, after REQUEST_SECONDS


@pytest.mark.unit
def test_beyond_the_connection_cap_the_oldest_is_closed(endpoint):
    idle = [socket.create_connection(("127.0.0.1", endpoint.port), timeout=2)
            for _ in range(metrics.MAX_CONNECTIONS + 5)]
    try:
        started = time.monotonic()
        assert healthz_seconds(endpoint.port) < 1.0
        assert time.monotonic() - started < 1.0
        # the first ones were closed to make room, well before their deadline
        assert idle[0].recv(10) == b""
        assert time.monotonic() - started < metrics.REQUEST_SECONDS / 2
    finally:
        for sock in idle:
            sock.close()


@pytest.mark.unit
def test_a_fork_waits_until_the_thread_has_finished_its_step():
    """A child must not inherit a lock the thread held: the at-fork hook lets the
    fork happen only between the thread's steps."""
    in_step, step_done = threading.Event(), []

    def slow_snapshot():
        in_step.set()
        time.sleep(0.5)
        step_done.append(True)
        return {}

    server = MetricsServer("127.0.0.1", 0, slow_snapshot, lambda: {"ready": True})
    server.start()
    client = threading.Thread(target=http_get, args=(f"http://127.0.0.1:{server.port}/stats",))
    client.start()
    read_end, write_end = os.pipe()
    try:
        assert in_step.wait(5)
        pid = os.fork()
        if pid == 0:                                   # the child: report, then leave
            server.close_in_child()
            os.write(write_end, b"done" if step_done else b"mid-step")
            os._exit(0)
        os.close(write_end)
        write_end = -1
        assert os.read(read_end, 16) == b"done"
        assert os.waitpid(pid, 0)[1] == 0
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
        client.join(10)
        server.close()


# -- against a real server --------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_under_attack_healthz_answers_workers_are_replaced_and_sigterm_stops(tmp_path, mode):
    srv = ServerProcess(tmp_path / "files", mode=mode, pool=3)
    try:
        with MetricsAttack(srv.metrics_port):
            time.sleep(1.0)
            latencies = [healthz_seconds(srv.metrics_port)]
            if mode == "process":
                victim = srv.worker_pids()[0]
                os.kill(victim, signal.SIGKILL)

                def replaced() -> bool:
                    pids = srv.worker_pids()
                    return victim not in pids and len(pids) == 3

                started = time.monotonic()
                assert wait_until(replaced, 5), srv.log()[-2000:]
                assert time.monotonic() - started < 2.0
                assert psutil.Process(srv.worker_pids()[-1]).ppid() == srv.proc.pid
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                latencies.append(healthz_seconds(srv.metrics_port))
                time.sleep(0.2)
            assert max(latencies) < 1.0, latencies
            assert srv.http_json("/readyz")["workers_alive"] == 3
            started = time.monotonic()
            code = srv.stop()
            stop_seconds = time.monotonic() - started
    finally:
        srv.stop()
    assert code == 0, srv.log()[-3000:]
    assert stop_seconds < 2.0
    assert srv.leftover_processes() == []
    assert "Traceback" not in srv.log()


@pytest.mark.unit
@pytest.mark.parametrize("host, url", [
    (None, "http://127.0.0.1:9665/readyz"),           # the default, loopback
    ("0.0.0.0", "http://127.0.0.1:9665/readyz"),      # the images' wildcard
    ("::", "http://[::1]:9665/readyz"),
    ("10.1.2.3", "http://10.1.2.3:9665/readyz"),
    ("fd00::7", "http://[fd00::7]:9665/readyz"),
])
def test_the_healthcheck_probes_where_the_metrics_port_listens(host, url):
    environ = {"FS_METRICS_PORT": "9665"} | ({"FS_METRICS_HOST": host} if host else {})
    assert probe_url(environ, "readyz") == url
