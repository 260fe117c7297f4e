"""The connection handler alone, over a socketpair: no pool, no process."""

import base64
import errno
import hashlib
import logging
import os
import socket
import threading

import pytest

import wire
from server.config import ServerConfig
from server.handler import CLOSED, WAIT_READ, WAIT_WRITE, Connection, ConnectionHandler
from server.stats import WorkerTable
from server.storage import Storage
from tests.support import read_reply, temp_files

pytestmark = pytest.mark.unit


class Session:
    def __init__(self, root, **settings):
        self.root = root
        self.storage = Storage(root)
        self.config = ServerConfig(**{"timeout": 5.0, **settings})
        self.table = WorkerTable(1)
        self.client, server_end = socket.socketpair()
        self.client.settimeout(10)
        handler = ConnectionHandler(self.storage, self.config)
        self.thread = threading.Thread(
            target=handler.handle, args=(server_end, ("127.0.0.1", 40000), self.table.slot(0)))
        self.thread.start()
        self.decoder = wire.ReplyDecoder()

    def ask(self, raw: bytes) -> dict:
        self.client.sendall(raw)
        return read_reply(self.client, self.decoder)

    def closed_by_server(self) -> bool:
        try:
            return self.client.recv(1) == b""
        except ConnectionResetError:
            return True

    def finish(self):
        self.client.close()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def session(tmp_path):
    sessions = []

    def open_session(**settings):
        sessions.append(Session(tmp_path, **settings))
        return sessions[-1]
    yield open_session
    for s in sessions:
        s.finish()


def test_several_requests_on_one_connection(session, tmp_path):
    s = session()
    content = os.urandom(100_003)
    assert s.ask(b"LIST\r\n\r\n") == {"status": "OK", "data": []}
    reply = s.ask(wire.encode_request("UPLOAD", "r.bin", content))
    assert reply == {"status": "OK", "data": "file r.bin uploaded (100003 bytes)"}
    reply = s.ask(b"get r.bin\r\n\r\n")
    assert reply["data_namafile"] == "r.bin"
    assert reply["data_file_bytes"] == content
    assert s.ask(b"List\r\n\r\n") == {"status": "OK", "data": ["r.bin"]}
    assert s.ask(b"DELETE r.bin\r\n\r\n") == {"status": "OK", "data": "file r.bin deleted"}
    assert s.ask(b"DELETE r.bin\r\n\r\n") == {"status": "ERROR",
                                               "data": "file 'r.bin' not found"}
    row = s.table.rows()[0]
    assert row["requests"] == 6
    assert row["UPLOAD_OK"] == 1 and row["DELETE_ERROR"] == 1
    assert row["bytes_in"] > 4 * len(content) // 3


def test_get_reply_is_exactly_what_json_dumps_gives(session, tmp_path):
    (tmp_path / "a.txt").write_bytes(b"hello")
    s = session()
    s.client.sendall(b"GET a.txt\r\n\r\n")
    raw = b""
    while not raw.endswith(b"\r\n\r\n"):
        raw += s.client.recv(4096)
    import json
    expected = json.dumps({"status": "OK", "data_namafile": "a.txt",
                           "data_file": base64.b64encode(b"hello").decode()})
    assert raw == expected.encode() + b"\r\n\r\n"


def test_invalid_base64_is_refused_and_the_connection_goes_on(session, tmp_path):
    (tmp_path / "keep.txt").write_bytes(b"old")
    s = session()
    reply = s.ask(b"UPLOAD keep.txt aGVsbG8*d29ybGQ=\r\n\r\n")
    assert reply["status"] == "ERROR" and "not valid base64" in reply["data"]
    assert s.ask(b"LIST\r\n\r\n") == {"status": "OK", "data": ["keep.txt"]}
    assert (tmp_path / "keep.txt").read_bytes() == b"old"
    assert temp_files(tmp_path) == []


def test_refused_upload_name_skips_its_body(session, tmp_path):
    s = session()
    body = base64.b64encode(os.urandom(300_000))
    reply = s.ask(b"UPLOAD .sneaky " + body + b"\r\n\r\n")
    assert reply == {"status": "ERROR", "data": "file name '.sneaky' must not start with '.'"}
    assert s.ask(b"LIST\r\n\r\n") == {"status": "OK", "data": []}


def test_line_without_terminator_over_the_limit_closes(session):
    s = session(max_line_bytes=1024)
    reply = s.ask(b"GET " + b"x" * 2000)
    assert reply["status"] == "ERROR"
    assert "longer than 1024 bytes" in reply["data"]
    assert s.closed_by_server()


def test_upload_over_the_limit_closes_and_writes_nothing(session, tmp_path):
    (tmp_path / "big.bin").write_bytes(b"old")
    s = session(max_upload_bytes=10_000)
    s.client.sendall(b"UPLOAD big.bin " + base64.b64encode(os.urandom(30_000)))
    reply = read_reply(s.client, s.decoder)
    assert reply["status"] == "ERROR" and "larger than the limit of 10000" in reply["data"]
    assert s.closed_by_server()
    assert (tmp_path / "big.bin").read_bytes() == b"old"
    assert temp_files(tmp_path) == []


def test_silence_mid_request_times_out_with_an_error(session):
    s = session(timeout=0.3)
    reply = s.ask(b"GET some")
    assert reply["status"] == "ERROR" and "timed out" in reply["data"]
    assert s.closed_by_server()


def test_idle_connection_is_closed_quietly(session):
    s = session(timeout=0.3)
    assert s.closed_by_server()


def test_disconnect_mid_upload_removes_temp_and_keeps_old(session, tmp_path):
    (tmp_path / "f.bin").write_bytes(b"old")
    s = session()
    s.client.sendall(b"UPLOAD f.bin " + base64.b64encode(os.urandom(3 * 100_000)))
    s.client.shutdown(socket.SHUT_WR)
    s.thread.join(10)
    assert (tmp_path / "f.bin").read_bytes() == b"old"
    assert temp_files(tmp_path) == []


def test_large_upload_and_get_match_by_sha256(session, tmp_path):
    content = os.urandom(8 * 1024 * 1024 + 1)
    s = session()
    assert s.ask(wire.encode_request("UPLOAD", "big", content))["status"] == "OK"
    reply = s.ask(b"GET big\r\n\r\n")
    assert hashlib.sha256(reply["data_file_bytes"]).digest() == hashlib.sha256(content).digest()


@pytest.mark.parametrize("raw, message", [
    (b"\r\n\r\n", "empty request"),
    (b"FETCH x\r\n\r\n", "unknown command 'FETCH x'"),
    (b"GET\r\n\r\n", "usage: GET <name>"),
    (b"GET a b\r\n\r\n", "usage: GET <name>"),
    (b"LIST all\r\n\r\n", "LIST takes no argument"),
    (b"UPLOAD x\r\n\r\n", "usage: UPLOAD <name> <base64 content>"),
    (b"GET \xff\xfe\r\n\r\n", "not valid UTF-8"),
    (b"GET ../../etc/passwd\r\n\r\n", "must not contain '/'"),
    (b"DELETE .\r\n\r\n", "is not allowed"),
])
def test_bad_requests_get_clear_errors_and_the_connection_survives(session, raw, message):
    s = session()
    reply = s.ask(raw)
    assert reply["status"] == "ERROR"
    assert message in reply["data"]
    assert s.ask(b"LIST\r\n\r\n")["status"] == "OK"


def test_a_failed_write_names_the_file_and_keeps_the_old_one(session, tmp_path, monkeypatch):
    from server import storage as storage_module

    def disk_full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(storage_module.Upload, "write", disk_full)
    (tmp_path / "keep.txt").write_bytes(b"old")
    s = session()
    reply = s.ask(wire.encode_request("UPLOAD", "keep.txt", b"new content"))
    assert reply == {"status": "ERROR",
                     "data": "cannot store 'keep.txt': No space left on device"}
    assert s.ask(b"LIST\r\n\r\n") == {"status": "OK", "data": ["keep.txt"]}
    assert (tmp_path / "keep.txt").read_bytes() == b"old"
    assert temp_files(tmp_path) == []


# -- the connection as a worker drives it: advance() until it must wait ---------

@pytest.fixture
def driven(tmp_path):
    opened = []

    def open_driven(**settings):
        opened.append(Driven(tmp_path, **settings))
        return opened[-1]
    yield open_driven
    for d in opened:
        d.connection.close()
        d.client.close()


class Driven:
    """A Connection on a socketpair, advanced by the test as a worker would."""

    def __init__(self, root, **settings):
        self.table = WorkerTable(1)
        self.slot = self.table.slot(0)
        config = ServerConfig(**{"timeout": 5.0, **settings})
        self.client, server_end = socket.socketpair()
        self.client.settimeout(10)
        self.connection = ConnectionHandler(Storage(root), config).open(
            server_end, ("127.0.0.1", 40001), self.slot)

    def busy(self) -> int:
        return self.table.rows()[0]["busy"]

    def advance_while_the_client_reads(self) -> tuple[int, dict]:
        """Advance a connection parked on writing while the client reads its
        reply; (what it waits for then, the reply)."""
        received = {}
        reader = threading.Thread(target=lambda: received.update(read_reply(self.client)))
        reader.start()
        wait = WAIT_WRITE
        while wait == WAIT_WRITE:
            wait = self.connection.advance()
        reader.join(10)
        return wait, received


def test_a_connection_without_a_whole_request_is_handed_back_at_once(driven, tmp_path):
    d = driven()
    assert d.connection.advance() == WAIT_READ          # nothing yet
    d.client.sendall(b"LI")
    assert d.connection.advance() == WAIT_READ          # a line still arriving
    assert d.busy() == 0 and d.table.rows()[0]["requests"] == 0
    d.client.sendall(b"ST\r\n\r\n")
    assert d.connection.advance() == WAIT_READ          # served, waiting for the next
    assert read_reply(d.client) == {"status": "OK", "data": []}
    assert d.busy() == 0 and d.table.rows()[0]["requests"] == 1
    d.client.close()
    assert d.connection.advance() == CLOSED


class _CountingSocket:
    """A socket whose receives are counted."""

    def __init__(self, sock):
        self._sock, self.receives = sock, 0

    def recv(self, size):
        self.receives += 1
        return self._sock.recv(size)

    def recv_into(self, buffer, size=0):
        self.receives += 1
        return self._sock.recv_into(buffer, size)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def test_an_answered_connection_waits_without_receiving_again(driven):
    d = driven()
    counted = d.connection.sock = _CountingSocket(d.connection.sock)
    replies = wire.ReplyDecoder()
    d.client.sendall(b"LIST\r\n\r\n")
    assert d.connection.advance() == WAIT_READ
    assert read_reply(d.client, replies) == {"status": "OK", "data": []}
    assert counted.receives == 1            # the request; no read after the reply
    d.client.sendall(b"LIST\r\n\r\nLIST\r\n\r\n")     # two at once: both answered
    assert d.connection.advance() == WAIT_READ
    assert [read_reply(d.client, replies) for _ in range(2)] == [
        {"status": "OK", "data": []}] * 2
    assert counted.receives == 2
    assert d.table.rows()[0]["requests"] == 3


def test_a_request_that_arrives_whole_is_counted_as_any_other(driven, tmp_path):
    (tmp_path / "a.txt").write_bytes(b"abc")
    d = driven()
    d.client.sendall(b"LIST\r\n\r\n")
    assert d.connection.advance() == WAIT_READ          # served in the turn's one receive
    assert read_reply(d.client) == {"status": "OK", "data": ["a.txt"]}
    row = d.table.rows()[0]
    assert (row["requests"], row["LIST_OK"], row["bytes_in"], row["busy"]) == (1, 1, 8, 0)
    assert row["bytes_out"] == len(wire.ok_reply(["a.txt"])) and row["busy_ns"] > 0
    connection = d.connection
    assert (connection.requests, connection.bytes_in, connection.request_started,
            connection.in_request) == (1, 8, None, False)
    d.client.sendall(b"GET a.txt\r\n\r\n")            # a reply under way: the general loop
    assert d.connection.advance() == WAIT_READ
    assert read_reply(d.client)["data_file_bytes"] == b"abc"
    d.client.sendall(b"BOGUS\r\n\r\n")                # refused: the general loop reports it
    assert d.connection.advance() == WAIT_READ
    assert read_reply(d.client)["status"] == "ERROR"
    assert d.table.rows()[0]["requests"] == 3 and d.connection.requests == 3


def test_when_stopping_an_answered_connection_closes_at_its_next_turn(tmp_path):
    stopping = False
    client, server_end = socket.socketpair()
    client.settimeout(10)
    handler = ConnectionHandler(Storage(tmp_path), ServerConfig(), lambda: stopping)
    connection = handler.open(server_end, ("127.0.0.1", 40002), WorkerTable(1).slot(0))
    try:
        client.sendall(b"LIST\r\n\r\n")
        assert connection.advance() == WAIT_READ
        assert read_reply(client) == {"status": "OK", "data": []}
        stopping = True
        assert connection.advance() == CLOSED     # what a worker winding down does
        assert client.recv(1) == b""
    finally:
        connection.close()
        client.close()


def test_a_reply_to_a_peer_that_is_gone_closes_the_connection_quietly(driven, caplog):
    d = driven()
    d.client.sendall(b"LIST\r\n\r\n")
    d.client.close()                        # gone before the reply is sent
    with caplog.at_level(logging.INFO, logger="server"):
        assert d.connection.advance() == CLOSED
    assert d.table.rows()[0]["LIST_OK"] == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def a_list_larger_than_the_socket_takes(driven, folder) -> tuple["Driven", list[str]]:
    """A connection whose socket takes 4 KiB at once, and 1,500 long names in
    ``folder``: a LIST reply that needs several turns.  (It, the names.)"""
    names = [f"{index:04d}-" + "n" * 120 for index in range(1500)]
    for name in names:
        (folder / name).write_bytes(b"")
    d = driven()
    d.connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return d, names


def test_a_reply_the_socket_does_not_take_whole_is_finished_when_the_peer_reads(
        driven, tmp_path):
    d, names = a_list_larger_than_the_socket_takes(driven, tmp_path)
    d.client.sendall(b"LIST\r\n\r\n")
    assert d.connection.advance() == WAIT_WRITE         # the rest waits for the reader
    assert d.table.rows()[0]["requests"] == 1           # counted before it is all out
    wait, received = d.advance_while_the_client_reads()
    assert wait == WAIT_READ and not d.connection.in_request
    assert received == {"status": "OK", "data": names}


def test_a_connection_is_between_requests_again_after_a_reply_that_took_turns(
        driven, tmp_path):
    """Whatever turn ends a request (here a reply that waited for its reader),
    the next request starts with the between-requests receive."""
    d, names = a_list_larger_than_the_socket_takes(driven, tmp_path)
    d.client.sendall(b"LIST\r\n\r\n")
    assert d.connection.advance() == WAIT_WRITE
    wait, received = d.advance_while_the_client_reads()
    assert wait == WAIT_READ and received["data"] == names
    assert d.connection._between_requests()
    d.client.sendall(b"LI")                       # a request still arriving is not
    assert d.connection.advance() == WAIT_READ and not d.connection._between_requests()
    d.client.sendall(b"ST\r\n\r\n")
    wait, received = d.advance_while_the_client_reads()
    assert wait == WAIT_READ and received["data"] == names
    assert d.connection._between_requests() and d.table.rows()[0]["requests"] == 2


def test_a_get_to_a_reader_that_stalls_is_parked_and_resumed(driven, tmp_path):
    content = os.urandom(8 * 1024 * 1024)
    (tmp_path / "big.bin").write_bytes(content)
    d = driven()
    d.client.sendall(b"GET big.bin\r\n\r\n")
    assert d.connection.advance() == WAIT_WRITE         # the socket buffers filled up
    assert d.busy() == 0 and d.connection.in_request
    sent_so_far = d.table.rows()[0]["bytes_out"]
    assert 0 < sent_so_far < len(content)

    wait, received = d.advance_while_the_client_reads()
    assert wait == WAIT_READ and not d.connection.in_request
    assert received["data_file_bytes"] == content
    assert d.table.rows()[0]["GET_OK"] == 1
    d.connection.close()


def test_a_stalled_upload_keeps_its_state_while_parked(driven, tmp_path):
    d = driven()
    encoded = base64.b64encode(b"0123456789" * 1000)
    d.client.sendall(b"UPLOAD kept.bin " + encoded[:5000])
    assert d.connection.advance() == WAIT_READ          # parked mid-body
    assert d.busy() == 0 and d.connection.in_transfer
    assert len(temp_files(tmp_path)) == 1
    d.client.sendall(encoded[5000:] + b"\r\n\r\n")
    assert d.connection.advance() == WAIT_READ
    assert read_reply(d.client) == {"status": "OK", "data": "file kept.bin uploaded (10000 bytes)"}
    assert (tmp_path / "kept.bin").read_bytes() == b"0123456789" * 1000
    d.connection.close()


def test_deadlines_of_a_parked_connection(driven, tmp_path):
    d = driven(timeout=30, request_timeout=2, min_rate=1000)
    connection = d.connection
    assert connection.advance() == WAIT_READ
    assert connection.deadline() == pytest.approx(connection.last_activity + 30)
    d.client.sendall(b"GET x")
    connection.advance()
    assert connection.deadline() == pytest.approx(connection.request_started + 2)
    connection.expire()
    reply = read_reply(d.client)
    assert reply["status"] == "ERROR" and "not complete after 2 s" in reply["data"]
    assert connection.closed


def test_an_error_mid_upload_after_expiry_removes_the_temporary_file(driven, tmp_path):
    d = driven(timeout=30, request_timeout=1, min_rate=10_000)
    d.client.sendall(b"UPLOAD slow.bin QUJD")
    assert d.connection.advance() == WAIT_READ
    assert len(temp_files(tmp_path)) == 1
    # 3 bytes in: the transfer must have lasted 1 s (the grace) before it counts as slow
    assert d.connection.deadline() == pytest.approx(d.connection.request_started + 1)
    d.connection.expire()
    reply = read_reply(d.client)
    assert reply["status"] == "ERROR" and "slower than 10000 bytes/s" in reply["data"]
    assert temp_files(tmp_path) == []
    assert d.table.rows()[0]["UPLOAD_ERROR"] == 1


def test_a_refused_upload_whose_body_passes_the_limit_gets_one_reply(session):
    s = session(max_upload_bytes=1000)
    s.client.sendall(b"UPLOAD .hidden " + base64.b64encode(os.urandom(3000)) + b"\r\n\r\n")
    reply = read_reply(s.client, s.decoder)
    assert reply == {"status": "ERROR", "data": "file name '.hidden' must not start with '.'"}
    assert s.closed_by_server()
    row = s.table.rows()[0]
    assert row["requests"] == 1 and row["UPLOAD_ERROR"] == 1


def test_after_a_refused_upload_the_next_request_is_answered(session):
    s = session()
    reply = s.ask(b"UPLOAD .hidden QUJD\r\n\r\n")
    assert reply["status"] == "ERROR"
    assert s.ask(b"BOGUS\r\n\r\n")["status"] == "ERROR"
    assert s.ask(b"LIST\r\n\r\n") == {"status": "OK", "data": []}


def test_every_command_but_upload_has_its_method():
    assert set(Connection._COMMANDS) == set(wire.COMMANDS) - {"UPLOAD"}
