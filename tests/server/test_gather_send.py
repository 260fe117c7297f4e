"""A GET reply sent as several pieces per write (``socket.sendmsg``, as on a
free-threaded build: see ``wire.streaming.ENCODE_PIECE_BYTES``), through a
small socket buffer, so that writes stop in the middle of pieces."""

import os
import socket
import threading
from unittest import mock

import pytest

from server.config import ServerConfig
from server.handler import WAIT_READ, WAIT_WRITE, ConnectionHandler
from server.stats import WorkerTable
from server.storage import Storage
from tests.support import read_reply
from wire import streaming

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("piece", [3 * 1000, 3 * 16 * 1024])
def test_a_get_in_pieces_cut_by_a_full_socket_arrives_whole(tmp_path, piece):
    content = os.urandom(3 * 1024 * 1024 + 7)
    (tmp_path / "big.bin").write_bytes(content)
    table = WorkerTable(1)
    client, server_end = socket.socketpair()
    server_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    client.settimeout(10)
    connection = ConnectionHandler(Storage(tmp_path), ServerConfig(timeout=5.0)).open(
        server_end, ("127.0.0.1", 40002), table.slot(0))
    received = {}
    reader = threading.Thread(target=lambda: received.update(read_reply(client)))
    try:
        with mock.patch.object(streaming, "ENCODE_PIECE_BYTES", piece):
            client.sendall(b"GET big.bin\r\n\r\n")
            assert connection.advance() == WAIT_WRITE      # stopped mid-reply
            reader.start()
            wait = WAIT_WRITE
            while wait == WAIT_WRITE:
                wait = connection.advance()
        reader.join(10)
        assert wait == WAIT_READ
        assert received["data_file_bytes"] == content
        assert table.rows()[0]["GET_OK"] == 1
    finally:
        connection.close()
        client.close()
