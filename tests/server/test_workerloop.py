"""One WorkerLoop on a real listener, in a thread: no pool, no process."""

import contextlib
import socket
import threading
import time

import pytest

from server.config import ServerConfig
from server.handler import CLOSED, READY, ConnectionHandler
from server.pools import PreforkPool, StopSignal, ThreadPool
from server.stats import WorkerTable
from server.storage import Storage
from server.workerloop import ConnectionRoom, WorkerLoop
from server.launcher import wait_until
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


@contextlib.contextmanager
def a_loop_in_a_thread(handler, runner=None, room=None, table=None):
    """A WorkerLoop on a new listener, run in a thread (by ``runner(loop, stop)``
    if given), with ``room`` (room for 10 connections if not) and row 0 of
    ``table``; yields the port.  On the way out: stops it, checks it ended and
    gave back the room it took."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    stop = threading.Event()
    own_room = ConnectionRoom(10) if room is None else None
    room = room or own_room
    loop = WorkerLoop(listener, handler, (table or WorkerTable(1)).slot(0), stop.is_set, room)
    thread = threading.Thread(target=(lambda: runner(loop, stop)) if runner else loop.run)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(10)
        listener.close()
        room_given_back = room.available()
        if own_room is not None:
            own_room.close()
    assert not thread.is_alive()
    assert room_given_back == room.limit


def test_a_loop_run_again_after_an_error_still_accepts(tmp_path):
    handler = FailingOnce(Storage(tmp_path), ServerConfig(timeout=5.0))
    errors = []

    def run_like_the_pool(loop, stop):   # ThreadPool._run_worker: run again after an error
        while not stop.is_set():
            try:
                loop.run()
            except RuntimeError as exc:
                errors.append(exc)
    with a_loop_in_a_thread(handler, run_like_the_pool) as port:
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


def test_a_loop_takes_room_as_it_needs_it_and_gives_back_what_it_does_not(tmp_path):
    handler = ConnectionHandler(Storage(tmp_path), ServerConfig(timeout=30.0))
    table = WorkerTable(1)
    with ConnectionRoom(64, workers=2) as room:
        assert room.chunk == 8 and room.available() == 64
        with a_loop_in_a_thread(handler, room=room, table=table) as port:
            clients = [socket.create_connection(("127.0.0.1", port), timeout=5)
                       for _ in range(70)]
            try:
                for sock in clients:
                    sock.sendall(b"L")      # held open, waiting for the rest of a request
                assert wait_until(lambda: table.rows()[0]["open_connections"] == 64, 5)
                assert room.available() == 0
                # the 65th waits in the backlog, its request unanswered
                clients[64].sendall(b"IST\r\n\r\n")
                clients[64].settimeout(0.3)
                with pytest.raises(TimeoutError):
                    clients[64].recv(1)
                assert table.rows()[0]["open_connections"] == 64
                clients[64].settimeout(5)
                for sock in clients[:64]:
                    sock.sendall(b"IST\r\n\r\n")
                for sock in clients[:64]:
                    assert read_reply(sock)["status"] == "OK"
                    sock.close()
                # the rest are accepted now, and the room of the others given back
                # but for less than two chunks
                for sock in clients[64:]:
                    if sock is not clients[64]:
                        sock.sendall(b"IST\r\n\r\n")
                    assert read_reply(sock)["status"] == "OK"
                    sock.close()
                assert wait_until(lambda: room.available() > 64 - 2 * room.chunk, 5)
            finally:
                for sock in clients:
                    sock.close()


@pytest.mark.parametrize("pool_class", [ThreadPool, PreforkPool])
def test_a_pool_listener_hands_out_sockets_that_send_without_delay(tmp_path, pool_class):
    """Connections no longer set TCP_NODELAY one by one: they inherit it from
    the listener the pool prepared (Linux copies it into accepted sockets)."""
    handler = ConnectionHandler(Storage(tmp_path), ServerConfig())
    with socket.create_server(("127.0.0.1", 0)) as listener:
        pool = pool_class(1, listener, handler, WorkerTable(1), StopSignal())
        try:
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
        finally:
            pool._close_pipes()             # never started


class AlwaysReady:
    """A connection whose every turn ends with more to do at once (a client
    pipelining without end)."""

    def __init__(self, sock):
        self.sock, self.fd, self.closed, self.in_request, self.turns = (
            sock, sock.fileno(), False, True, 0)

    def advance(self):
        if not self.in_request:          # the test is over
            self.close()
            return CLOSED
        self.turns += 1
        return READY

    def deadline(self):
        return float("inf")

    def close(self):
        self.closed = True
        self.sock.close()

    expire = close


class FirstAlwaysReady(ConnectionHandler):
    def open(self, sock, address, slot):
        if not hasattr(self, "endless"):
            self.endless = AlwaysReady(sock)
            return self.endless
        return super().open(sock, address, slot)


def test_a_connection_with_more_to_do_waits_for_the_next_pass(tmp_path):
    """READY ends a connection's turn: the others (and new clients) go first."""
    handler = FirstAlwaysReady(Storage(tmp_path), ServerConfig(timeout=5.0))
    with a_loop_in_a_thread(handler) as port:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as endless:
                endless.sendall(b"LIST\r\n\r\n")
                deadline = time.monotonic() + 5
                while not getattr(handler, "endless", None) and time.monotonic() < deadline:
                    time.sleep(0.01)
                with socket.create_connection(("127.0.0.1", port), timeout=5) as other:
                    other.sendall(b"LIST\r\n\r\n")
                    assert read_reply(other) == {"status": "OK", "data": []}
            assert handler.endless.turns > 1
        finally:
            if getattr(handler, "endless", None):
                handler.endless.in_request = False      # so that it closes when stopping
