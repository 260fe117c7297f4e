"""Error handling against scripted fake servers (127.0.0.1 only, all bounded)."""

import io
import threading
import time

import pytest

import wire
from client import (ClientConnectionError, ClientProtocolError, ClientTimeoutError, FileClient,
                    FileClientError, ServerError)
from tests.support import free_port

from .conftest import HOST, read_request

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


def replying(*replies: bytes):
    """A script: for each reply, read one request and send the reply."""
    def script(fake, conn):
        for reply in replies:
            fake.requests.append(read_request(conn))
            conn.sendall(reply)
    return script


def list_reply(names):
    return wire.ok_reply(names)


@pytest.mark.parametrize("reply", [
    b"hello there\r\n\r\n",                                  # not JSON
    b"[1, 2, 3]\r\n\r\n",                                    # not an object
    b'{"status": "MAYBE", "data": []}\r\n\r\n',              # unknown status
    b'{"status": "OK", "data": "not a list"}\r\n\r\n',       # LIST without a list
    b'{"status": "OK", "data": [1, 2]}\r\n\r\n',             # names are not strings
    b'{"status": "OK", "da',                                 # truncated, then closed
    b'{"status": "OK", "data": []}\r\n\r\nEXTRA',            # bytes after the reply
])
def test_list_malformed_reply_is_a_protocol_error(fake_server, reply):
    fake = fake_server(replying(reply))
    client = FileClient(HOST, fake.port, timeout=5)
    with pytest.raises(ClientProtocolError) as info:
        client.list()
    assert isinstance(info.value, FileClientError)
    assert f"{HOST}:{fake.port}" in info.value.message
    assert fake.requests == [b"LIST\r\n\r\n"]


def test_garbage_without_terminator_then_close(fake_server):
    fake = fake_server(replying(b"\x00\xff" * 1000))
    with pytest.raises(ClientProtocolError, match="closed before the reply was complete"):
        FileClient(HOST, fake.port, timeout=5).list()


def test_truncated_get_reply(fake_server, tmp_path):
    prefix = wire.get_reply_prefix("f.bin")
    fake = fake_server(replying(prefix + b"QUJDREVG"),         # closes mid data_file
                       replying(prefix + b"QUJDREVG\"}"))      # closes inside the suffix
    client = FileClient(HOST, fake.port, timeout=5)
    dest = tmp_path / "f.bin"
    with pytest.raises(ClientProtocolError):
        client.get("f.bin", dest=dest)
    with pytest.raises(ClientProtocolError):
        client.get("f.bin", dest=dest)
    assert list(tmp_path.iterdir()) == []    # no partial file, no temporary file


@pytest.mark.parametrize("body", [
    b"QUJD*EVG",          # invalid character
    b"QUJDRA==QUJD",      # data after padding
    b"QUJDR",             # length not a multiple of 4
])
def test_get_invalid_base64(fake_server, body):
    fake = fake_server(replying(wire.get_reply_prefix("x") + body + wire.GET_REPLY_SUFFIX))
    with pytest.raises(ClientProtocolError, match="base64"):
        FileClient(HOST, fake.port, timeout=5).get("x")


def test_get_reply_for_another_file(fake_server):
    fake = fake_server(replying(wire.get_reply_prefix("other") + b"QUJD" + wire.GET_REPLY_SUFFIX))
    with pytest.raises(ClientProtocolError, match="other"):
        FileClient(HOST, fake.port, timeout=5).get("x")


def test_get_reply_in_another_key_order_is_accepted(fake_server):
    reply = wire.encode_reply({"data_file": "QUJDRA==", "status": "OK", "data_namafile": "x"})
    fake = fake_server(replying(reply), replying(reply))
    client = FileClient(HOST, fake.port, timeout=5)
    assert client.get("x") == b"ABCD"
    seen = []
    assert client.get("x", dest=io.BytesIO(), progress=seen.append) == 4
    assert seen == [4]


def test_error_reply_with_odd_message(fake_server):
    fake = fake_server(replying(wire.encode_reply({"status": "ERROR", "data": 42})),
                       replying(wire.encode_reply({"status": "ERROR"})))
    client = FileClient(HOST, fake.port, timeout=5)
    with pytest.raises(ServerError) as info:
        client.delete("x")
    assert info.value.message == "42"
    with pytest.raises(ServerError, match="without a message"):
        client.delete("x")


def test_closed_without_reply_is_a_connection_error(fake_server):
    fake = fake_server(replying(b""))
    with pytest.raises(ClientConnectionError) as info:
        FileClient(HOST, fake.port, timeout=5).list()
    assert f"{HOST}:{fake.port}" in str(info.value)
    assert "without replying" in str(info.value)


def test_refused_connection():
    port = free_port()          # bound then closed: nothing listens there
    client = FileClient(HOST, port, timeout=5)
    started = time.monotonic()
    with pytest.raises(ClientConnectionError) as info:
        client.list()
    assert time.monotonic() - started < 5
    error = info.value
    assert not isinstance(error, ClientTimeoutError)
    assert f"{HOST}:{port}" in error.message
    assert "refused" in error.message.lower()
    assert isinstance(error.cause, ConnectionRefusedError)
    assert (error.host, error.port) == (HOST, port)
    assert client.connections_opened == 0


def test_timeout_when_the_server_never_answers(fake_server):
    def silent(fake, conn):
        fake.requests.append(read_request(conn))
        read_request(conn)            # wait (bounded) until the client gives up
    fake = fake_server(silent)
    client = FileClient(HOST, fake.port, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ClientTimeoutError) as info:
        client.get("x")
    elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 5
    assert isinstance(info.value, ClientConnectionError)
    assert f"{HOST}:{fake.port}" in info.value.message
    assert "timed out after 0.5 s" in info.value.message
    assert fake.requests == [b"GET x\r\n\r\n"]


def test_persistent_discards_socket_after_protocol_error(fake_server):
    fake = fake_server(replying(b"garbage\r\n\r\n"), replying(list_reply(["a"])))
    with FileClient(HOST, fake.port, timeout=5, persistent=True) as client:
        with pytest.raises(ClientProtocolError):
            client.list()
        assert client.list() == ["a"]
        assert client.connections_opened == 2


def test_persistent_discards_socket_after_timeout(fake_server):
    def slow(fake, conn):
        fake.requests.append(read_request(conn))
        time.sleep(1.0)
        try:
            conn.sendall(list_reply(["late"]))   # must never be read as the next reply
        except OSError:
            pass
    fake = fake_server(slow, replying(list_reply(["fresh"])))
    with FileClient(HOST, fake.port, timeout=0.3, persistent=True) as client:
        with pytest.raises(ClientTimeoutError):
            client.list()
        client.timeout = 5
        assert client.list() == ["fresh"]
        assert client.connections_opened == 2


def test_persistent_retries_list_on_a_connection_closed_while_idle(fake_server):
    first_done = threading.Event()

    def one_then_close(fake, conn):
        replying(list_reply(["one"]))(fake, conn)
        first_done.set()
    fake = fake_server(one_then_close, replying(list_reply(["two"])))
    with FileClient(HOST, fake.port, timeout=5, persistent=True) as client:
        assert client.list() == ["one"]
        assert first_done.wait(5)
        time.sleep(0.1)                   # let the FIN arrive
        assert client.list() == ["two"]
        assert client.connections_opened == 2


def test_persistent_does_not_retry_delete(fake_server):
    first_done = threading.Event()

    def one_then_close(fake, conn):
        replying(wire.ok_reply("file a deleted"))(fake, conn)
        first_done.set()
    fake = fake_server(one_then_close, replying(wire.ok_reply("file b deleted")))
    with FileClient(HOST, fake.port, timeout=5, persistent=True) as client:
        assert client.delete("a") == "file a deleted"
        assert first_done.wait(5)
        time.sleep(0.1)
        with pytest.raises(ClientConnectionError):
            client.delete("b")
        assert client.delete("b") == "file b deleted"
        assert client.connections_opened == 2


def test_request_bytes_are_what_the_server_received(fake_server):
    fake = fake_server(replying(wire.ok_reply("stored")))
    client = FileClient(HOST, fake.port, timeout=5)
    assert client.upload("n.txt", b"hello world") == "stored"
    assert fake.requests == [wire.encode_request("UPLOAD", "n.txt", b"hello world")]
    assert client.last_request_bytes == len(fake.requests[0])
    assert client.last_reply_bytes == len(wire.ok_reply("stored"))


def test_upload_source_that_is_not_binary(fake_server):
    fake = fake_server(replying(wire.ok_reply("never")))
    with pytest.raises(TypeError, match="binary"):
        FileClient(HOST, fake.port, timeout=5).upload("t.txt", io.StringIO("text"))
