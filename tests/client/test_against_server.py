"""The client against the real server, in thread and process mode (pool 5)."""

import hashlib
import io
import json
import os
import threading
import time
import tracemalloc
import urllib.request

import pytest

import wire
from client import ClientConnectionError, FileClient, FileClientError, ServerError
from tests.support import stored_files

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

# around a chunk's end (wire.FILE_CHUNK_BYTES) too
SIZES = [0, 1, 2, 3, 4, 5, 1000, wire.FILE_CHUNK_BYTES - 1, wire.FILE_CHUNK_BYTES + 1, 700_001]


def content(size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(f"{seed}".encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def client_for(server, **kwargs) -> FileClient:
    kwargs.setdefault("timeout", 10)
    return FileClient(server.host, server.port, **kwargs)


def temp_leftovers(directory) -> list[str]:
    return [name for name in os.listdir(directory) if name.startswith(".")]


def server_connections(server) -> int:
    url = f"http://{server.host}:{server.metrics_port}/stats"
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.load(reply)["totals"]["connections"]


# -- each command ---------------------------------------------------------------

def test_list(shared_server):
    client = client_for(shared_server)
    assert client.list() == []
    for name in ("b.txt", "a.txt", "c"):
        client.upload(name, b"x")
    assert client.list() == ["a.txt", "b.txt", "c"]


@pytest.mark.parametrize("size", SIZES)
def test_upload_then_get_bytes(shared_server, size):
    data = content(size, size)
    client = client_for(shared_server)
    message = client.upload("f.bin", data)
    assert message == f"file f.bin uploaded ({size} bytes)"
    assert (shared_server.storage / "f.bin").read_bytes() == data
    assert client.get("f.bin") == data


def test_delete(shared_server):
    client = client_for(shared_server)
    client.upload("gone.txt", b"bye")
    assert client.delete("gone.txt") == "file gone.txt deleted"
    assert client.list() == []
    assert not (shared_server.storage / "gone.txt").exists()
    with pytest.raises(ServerError, match="not found"):
        client.delete("gone.txt")


def test_upload_replaces_a_file(shared_server):
    client = client_for(shared_server)
    client.upload("r.txt", b"first version")
    client.upload("r.txt", b"second")
    assert client.get("r.txt") == b"second"


# -- GET destinations ----------------------------------------------------------

def test_get_to_path(shared_server, tmp_path):
    data = content(500_000, 1)
    client = client_for(shared_server)
    client.upload("p.bin", data)
    dest = tmp_path / "p.bin"
    assert client.get("p.bin", dest=str(dest)) == len(data)
    assert dest.read_bytes() == data
    dest.write_bytes(b"old content to be replaced")
    assert client.get("p.bin", dest=dest) == len(data)        # PathLike, overwrite
    assert dest.read_bytes() == data
    assert temp_leftovers(tmp_path) == []


def test_failed_get_to_path_leaves_no_file(shared_server, tmp_path):
    client = client_for(shared_server)
    new = tmp_path / "new.bin"
    with pytest.raises(ServerError, match="not found"):
        client.get("missing.bin", dest=new)
    assert not new.exists()
    existing = tmp_path / "existing.bin"
    existing.write_bytes(b"keep me")
    with pytest.raises(ServerError):
        client.get("missing.bin", dest=existing)
    assert existing.read_bytes() == b"keep me"
    assert temp_leftovers(tmp_path) == []


def test_get_to_file_objects(shared_server, tmp_path):
    data = content(300_000, 2)
    client = client_for(shared_server)
    client.upload("o.bin", data)
    buffer = io.BytesIO(b"head:")
    buffer.seek(0, io.SEEK_END)
    assert client.get("o.bin", dest=buffer) == len(data)
    assert buffer.getvalue() == b"head:" + data
    with open(tmp_path / "out.bin", "wb") as file:
        assert client.get("o.bin", dest=file) == len(data)
    assert (tmp_path / "out.bin").read_bytes() == data
    with pytest.raises(TypeError, match="dest"):
        client.get("o.bin", dest=12)


# -- UPLOAD sources --------------------------------------------------------------

def test_upload_from_path_and_file_objects(shared_server, tmp_path):
    data = content(400_001, 3)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    client = client_for(shared_server)
    client.upload("from-str", str(source))
    client.upload("from-pathlike", source)
    with open(source, "rb") as file:
        client.upload("from-file", file)
    with open(source, "rb", buffering=0) as raw:
        raw.seek(1)                                   # the rest, from the current position
        client.upload("from-raw-file", raw)
    client.upload("from-bytesio", io.BytesIO(data))
    client.upload("from-bytearray", bytearray(data))
    client.upload("from-memoryview", memoryview(data)[10:])
    stored = {name: client.get(name) for name in client.list()}
    assert stored == {
        "from-str": data, "from-pathlike": data, "from-file": data,
        "from-raw-file": data[1:], "from-bytesio": data, "from-bytearray": data,
        "from-memoryview": data[10:],
    }
    with pytest.raises(TypeError, match="source"):
        client.upload("x", 12)
    with pytest.raises(FileNotFoundError):
        client.upload("x", tmp_path / "no-such-file")


def test_progress_and_byte_counts(shared_server):
    data = content(1_000_003, 4)
    client = client_for(shared_server)
    sent = []
    client.upload("prog.bin", data, progress=sent.append)
    assert sum(sent) == len(data) and len(sent) > 1
    encoded = len(wire.encode_request("UPLOAD", "prog.bin", data))
    assert client.last_request_bytes == encoded
    reply = wire.ok_reply(f"file prog.bin uploaded ({len(data)} bytes)")
    assert client.last_reply_bytes == len(reply)
    received = []
    assert client.get("prog.bin", dest=io.BytesIO(), progress=received.append) == len(data)
    assert sum(received) == len(data) and len(received) > 1
    assert client.last_request_bytes == len(b"GET prog.bin\r\n\r\n")
    assert client.last_reply_bytes == (len(wire.get_reply_prefix("prog.bin"))
                                       + (len(data) + 2) // 3 * 4 + len(wire.GET_REPLY_SUFFIX))


# -- errors from the server ----------------------------------------------------

def test_missing_file(shared_server):
    client = client_for(shared_server)
    with pytest.raises(ServerError) as info:
        client.get("nope.txt")
    assert info.value.message == "file 'nope.txt' not found"
    assert isinstance(info.value, FileClientError)


@pytest.mark.parametrize("name", ["../escape", "a/b", "a\\b", ".hidden", "..", "tab\there",
                                  "x" * 256])
def test_bad_names_are_refused_by_the_server(shared_server, name):
    client = client_for(shared_server)
    for call in (lambda: client.get(name), lambda: client.upload(name, b"data"),
                 lambda: client.delete(name)):
        with pytest.raises(ServerError) as info:
            call()
        assert info.value.message
    assert client.list() == []
    assert stored_files(shared_server) == []


@pytest.mark.parametrize("name", ["", "with space", "line\r\nbreak", "new\nline"])
def test_names_the_protocol_cannot_carry_are_refused_locally(shared_server, name):
    client = client_for(shared_server)
    for call in (lambda: client.get(name), lambda: client.upload(name, b"data"),
                 lambda: client.delete(name)):
        with pytest.raises(ValueError):
            call()
    assert client.connections_opened == 0


# -- persistent connections ----------------------------------------------------

def test_persistent_connection_20_mixed_requests(shared_server):
    before = server_connections(shared_server)
    with client_for(shared_server, persistent=True) as client:
        expected = {}
        for step in range(20):
            name = f"file{step % 4}.bin"
            kind = step % 5
            if kind in (0, 3):
                expected[name] = content(step * 1000 + 1, step)
                assert client.upload(name, expected[name]).startswith(f"file {name} uploaded")
            elif kind == 1:
                assert client.list() == sorted(expected)
            elif kind == 2 and name in expected:
                assert client.get(name) == expected[name]
            elif kind == 4 and name in expected:
                assert client.delete(name) == f"file {name} deleted"
                del expected[name]
            else:
                assert client.list() == sorted(expected)
        assert client.list() == sorted(expected)
        assert client.connections_opened == 1
    assert server_connections(shared_server) - before == 1


def test_persistent_reconnects_after_an_error(shared_server):
    with client_for(shared_server, persistent=True) as client:
        client.upload("k.txt", b"keep")
        with pytest.raises(ServerError):
            client.get("missing.txt")
        assert client.get("k.txt") == b"keep"     # on a new connection
        assert client.connections_opened == 2
        client.close()
        client.close()
        assert client.list() == ["k.txt"]
        assert client.connections_opened == 3


def test_one_connection_per_request_by_default(shared_server):
    before = server_connections(shared_server)
    client = client_for(shared_server)
    client.upload("d.txt", b"d")
    client.list()
    client.get("d.txt")
    assert client.connections_opened == 3
    assert server_connections(shared_server) - before == 3


def test_concurrent_clients(shared_server):
    errors = []

    def work(index):
        try:
            with client_for(shared_server, persistent=index % 2 == 0) as client:
                data = content(50_000 + index, index)
                for round_ in range(3):
                    name = f"c{index}-{round_}"
                    client.upload(name, data)
                    assert client.get(name) == data
                    assert name in client.list()
                    client.delete(name)
        except Exception as exc:           # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=40)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert client_for(shared_server).list() == []


# -- large transfer in bounded memory ------------------------------------------

def test_50_mb_round_trip_in_bounded_memory(shared_server, tmp_path):
    size = 50 * 1024 * 1024
    source = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with open(source, "wb") as file:
        for _index in range(50):
            block = os.urandom(1024 * 1024)
            digest.update(block)
            file.write(block)
    dest = tmp_path / "big-copy.bin"
    client = client_for(shared_server, timeout=30)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        assert client.upload("big.bin", source).endswith(f"({size} bytes)")
        assert client.get("big.bin", dest=dest) == size
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"client peak {peak / 1e6:.2f} MB")
    assert peak < 16 * 1024 * 1024, f"client peak {peak / 1e6:.1f} MB"
    copy = hashlib.sha256()
    with open(dest, "rb") as file:
        for block in iter(lambda: file.read(1024 * 1024), b""):
            copy.update(block)
    assert copy.hexdigest() == digest.hexdigest()
    assert os.path.getsize(shared_server.storage / "big.bin") == size
    assert temp_leftovers(tmp_path) == []


# -- servers with other settings -----------------------------------------------

def test_upload_over_the_server_limit(server_factory):
    limited = server_factory("thread", max_upload_bytes=1000)
    with client_for(limited, persistent=True) as client:
        with pytest.raises(ServerError, match="larger than the limit"):
            client.upload("big", content(2 * 1024 * 1024))
        assert client.upload("small", b"fits") == "file small uploaded (4 bytes)"
        assert client.list() == ["small"]
        assert client.connections_opened == 2


@pytest.mark.slow
def test_persistent_connection_closed_by_server_idle_timeout(server_factory):
    impatient = server_factory("thread", timeout=0.3)
    with client_for(impatient, persistent=True) as client:
        client.upload("i.txt", b"idle")
        time.sleep(1.5)                        # the server closes the idle connection
        assert client.list() == ["i.txt"]      # retried once, transparently
        assert client.connections_opened == 2
        time.sleep(1.5)
        with pytest.raises(ClientConnectionError, match="closed the connection"):
            client.delete("i.txt")             # not retried: DELETE is not idempotent
        assert client.delete("i.txt") == "file i.txt deleted"
        assert client.connections_opened == 3
