"""The bench's reference servers (asyncio, a bare thread pool, a bare pre-forked
pool): each answers LIST like the real server, refuses anything else, and stops on
SIGTERM with status 0, leaving none of its processes behind."""

import json
import socket

import psutil
import pytest

from bench.proto import make_files
from bench.servers import AsyncioServer, PreforkServer, ThreadPoolServer

pytestmark = pytest.mark.integration

NAMES = ["a.txt", "b.txt", "c.txt"]


def ask(address, request: bytes) -> dict:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(request)
        reply = b""
        while not reply.endswith(b"\r\n\r\n"):
            data = sock.recv(65536)
            assert data, f"connection closed after {reply!r}"
            reply += data
    return json.loads(reply[:-4])


@pytest.mark.parametrize("make", [
    lambda storage, log: AsyncioServer(storage, log, "protocol"),
    lambda storage, log: AsyncioServer(storage, log, "streams"),
    lambda storage, log: ThreadPoolServer(storage, log, 4),
    lambda storage, log: PreforkServer(storage, log, 4),
], ids=["asyncio-protocol", "asyncio-streams", "threadpool", "prefork"])
def test_a_reference_server_answers_list_and_stops_cleanly(tmp_path, make):
    storage = tmp_path / "files"
    storage.mkdir()
    make_files(str(storage), {name: 10 for name in NAMES})
    (storage / ".hidden").write_bytes(b"x")
    server = make(str(storage), str(tmp_path / "server.log")).start()
    try:
        pids = server.pids()
        assert ask(server.address, b"LIST\r\n\r\n") == {"status": "OK", "data": NAMES}
        # several connections at once: each is answered (the pool serves them all)
        socks = [socket.create_connection(server.address, timeout=5) for _ in range(6)]
        for sock in socks:
            sock.sendall(b"list\r\n\r\n")
        for sock in socks:
            with sock:
                reply = b""
                while not reply.endswith(b"\r\n\r\n"):
                    reply += sock.recv(65536)
                assert json.loads(reply[:-4])["data"] == NAMES
        assert ask(server.address, b"GET a.txt\r\n\r\n")["status"] == "ERROR"
    finally:
        status = server.stop()
    assert status == 0
    assert not [pid for pid in pids if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def test_the_prefork_reference_runs_its_pool_of_processes(tmp_path):
    storage = tmp_path / "files"
    storage.mkdir()
    server = PreforkServer(str(storage), str(tmp_path / "server.log"), 3).start()
    try:
        assert len(server.pids()) == 1 + 3
        assert ask(server.address, b"LIST\r\n\r\n") == {"status": "OK", "data": []}
    finally:
        assert server.stop() == 0
