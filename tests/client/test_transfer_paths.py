"""The client's GET and UPLOAD on wire's copy-free pieces, against scripted fake servers."""

import errno
import hashlib
import io
import random

import pytest

import wire
from client import ClientProtocolError, FileClient

from .conftest import HOST

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


def content(size: int) -> bytes:
    return hashlib.shake_256(str(size).encode()).digest(size)


def read_upload(conn) -> bytes:
    """The whole request (an upload may be larger than any fixed limit)."""
    data = bytearray()
    while not data.endswith(wire.TERMINATOR):
        piece = conn.recv(1 << 20)
        if not piece:
            break
        data += piece
    return bytes(data)


def storing(fake, conn):
    """Reads one upload, replies as the server would."""
    request = read_upload(conn)
    fake.requests.append(request)
    conn.sendall(wire.ok_reply("stored"))


def sending_in_pieces(reply: bytes, seed: int = 0):
    """Reads one request, sends ``reply`` in pieces of random sizes."""
    def script(fake, conn):
        fake.requests.append(conn.recv(65536))
        rng = random.Random(seed)
        offset = 0
        while offset < len(reply):
            size = rng.choice([1, 3, 1000, 65536, 300_001])
            conn.sendall(reply[offset:offset + size])
            offset += size
    return script


class ReadintoSource(io.RawIOBase):
    """A binary source that records the buffers it is asked to fill."""

    def __init__(self, data: bytes, most: int | None = None):
        self._data = io.BytesIO(data)
        self._most = most
        self.buffers = []

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self.buffers.append(memoryview(buffer).obj)
        view = memoryview(buffer)[:self._most] if self._most else buffer
        return self._data.readinto(view)


SIZE = 2 * wire.FILE_CHUNK_BYTES + 1001           # two whole chunks and a cut one


def test_upload_from_a_file_reads_every_chunk_into_one_buffer(fake_server):
    fake = fake_server(storing)
    data = content(SIZE)
    source = ReadintoSource(data)
    assert FileClient(HOST, fake.port, timeout=10).upload("f.bin", source) == "stored"
    assert fake.requests == [wire.encode_request("UPLOAD", "f.bin", data)]
    assert len(source.buffers) == 4                # 3 chunks and the end
    assert all(buffer is source.buffers[0] for buffer in source.buffers)


def test_upload_from_a_file_with_short_reads(fake_server):
    fake = fake_server(storing)
    data = content(100_000)
    sent = []
    source = ReadintoSource(data, most=1001)       # pieces that cut base64 quanta
    FileClient(HOST, fake.port, timeout=10).upload("f.bin", source, progress=sent.append)
    assert fake.requests == [wire.encode_request("UPLOAD", "f.bin", data)]
    assert sum(sent) == len(data)


def test_upload_from_an_object_that_only_reads(fake_server):
    class Reader:
        def __init__(self, data):
            self._data = io.BytesIO(data)

        def read(self, size):
            return self._data.read(min(size, 5000))
    fake = fake_server(storing)
    data = content(50_000)
    FileClient(HOST, fake.port, timeout=10).upload("f.bin", Reader(data))
    assert fake.requests == [wire.encode_request("UPLOAD", "f.bin", data)]


@pytest.mark.parametrize("method", ["readinto", "read"])
def test_upload_from_a_non_blocking_source_with_nothing_ready(fake_server, method):
    class NotReady:
        def read(self, size):
            return None
    if method == "readinto":
        NotReady.readinto = lambda self, buffer: None
    fake = fake_server(storing)
    with pytest.raises(OSError) as error:
        FileClient(HOST, fake.port, timeout=10).upload("f.bin", NotReady())
    assert error.value.errno == errno.EAGAIN


@pytest.mark.parametrize("seed", range(3))
def test_get_received_in_pieces_of_any_size(fake_server, tmp_path, seed):
    data = content(1_000_003)
    reply = wire.encode_reply({"status": "OK", "data_namafile": "f.bin",
                               "data_file": wire.streaming.STDLIB_ENGINE.encode(data).decode()})
    fake = fake_server(sending_in_pieces(reply, seed), sending_in_pieces(reply, seed))
    client = FileClient(HOST, fake.port, timeout=10)
    assert client.get("f.bin") == data
    assert client.last_reply_bytes == len(reply)
    assert client.get("f.bin", dest=tmp_path / "f.bin") == len(data)
    assert (tmp_path / "f.bin").read_bytes() == data


@pytest.mark.parametrize("order", ["streamed", "other key order"])
def test_get_refuses_padding_before_the_last_two_characters(fake_server, order):
    # binascii's strict mode alone would return b"abc"
    if order == "streamed":
        reply = wire.get_reply_prefix("x") + b"YWJj====" + wire.GET_REPLY_SUFFIX
    else:
        reply = wire.encode_reply({"data_file": "YWJj====", "status": "OK", "data_namafile": "x"})
    fake = fake_server(sending_in_pieces(reply))
    with pytest.raises(ClientProtocolError, match="not valid base64: misplaced base64 padding"):
        FileClient(HOST, fake.port, timeout=5).get("x")
