"""One WorkerLoop on a real listener, in a thread: no pool, no process."""

import socket
import threading
import time

import pytest

from server.config import ServerConfig
from server.handler import ConnectionHandler
from server.pools import PreforkPool, StopSignal, ThreadPool
from server.stats import WorkerTable
from server.storage import Storage
from server.workerloop import WorkerLoop
from tests.support import read_reply

pytestmark = pytest.mark.unit


class FailingOnce(ConnectionHandler):
    """open() raises for the first connection, as a bug would."""

    def __init__(self, *args):
        super().__init__(*args)
        self.failed = False

    def open(self, sock, address, slot):
        if not self.failed:
            self.failed = True
            raise RuntimeError("injected")
        return super().open(sock, address, slot)


def test_a_loop_run_again_after_an_error_still_accepts(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    stop = threading.Event()
    handler = FailingOnce(Storage(tmp_path), ServerConfig(timeout=5.0))
    loop = WorkerLoop(listener, handler, WorkerTable(1).slot(0), stop.is_set, 10)
    errors = []

    def run_like_the_pool():         # ThreadPool._run_worker: run again after an error
        while not stop.is_set():
            try:
                loop.run()
            except RuntimeError as exc:
                errors.append(exc)
    thread = threading.Thread(target=run_like_the_pool)
    thread.start()
    try:
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as first:
            first.sendall(b"LIST\r\n\r\n")
            try:                                     # closed by the failed open()
                assert first.recv(100) == b""
            except ConnectionResetError:
                pass                                 # ... with the request unread
        with socket.create_connection(("127.0.0.1", port), timeout=5) as second:
            second.sendall(b"LIST\r\n\r\n")
            assert read_reply(second) == {"status": "OK", "data": []}
        assert [str(e) for e in errors] == ["injected"]
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert not thread.is_alive()


@pytest.mark.parametrize("pool_class", [ThreadPool, PreforkPool])
def test_a_pool_listener_hands_out_sockets_that_send_without_delay(tmp_path, pool_class):
    """Connections no longer set TCP_NODELAY one by one: they inherit it from
    the listener the pool prepared (Linux copies it into accepted sockets)."""
    handler = ConnectionHandler(Storage(tmp_path), ServerConfig())
    with socket.create_server(("127.0.0.1", 0)) as listener:
        pool = pool_class(1, listener, handler, WorkerTable(1), StopSignal())
        pool._prepare_listener()
        with socket.create_connection(listener.getsockname(), timeout=5) as client:
            client.sendall(b"LIST\r\n\r\n")          # TCP_DEFER_ACCEPT: after data
            accepted = None
            for _ in range(100):
                try:
                    accepted, _ = listener.accept()
                    break
                except BlockingIOError:
                    time.sleep(0.05)
            assert accepted is not None
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
