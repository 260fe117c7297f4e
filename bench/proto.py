"""The benchmark's own client: one request per connection, as cheap as it can be.

Why not ``client.FileClient``: the bench measures the server, so its client
must cost as little CPU as possible on a machine it shares with the server.
``FileClient`` reads a source and base64-encodes every piece of an upload;
this client encodes one block once (``UploadSource``) and sends it again and
again, and it counts GET data without keeping or writing it.  The protocol
itself still comes from ``wire`` (request heads, ``ReplyDecoder``), so the
two clients cannot disagree about the format.

Each function opens a connection, sends one request, reads the whole reply,
closes, and returns the number of file bytes moved (0 for LIST).  Anything
unexpected raises ``BenchError`` (or an ``OSError`` / ``wire.ProtocolError``),
which the load runner counts as an error.
"""

from __future__ import annotations

import binascii
import os
import random
import socket
import time

import wire
from wire import NEED_DATA, ReplyData, ReplyEnd, ReplyStart

__all__ = ["BenchError", "Client", "UploadSource"]

# raw bytes per pre-encoded piece (a multiple of 3): 1 MiB of base64 per send
UPLOAD_BLOCK = 3 * 256 * 1024


class BenchError(Exception):
    pass


class UploadSource:
    """Base64 of a ``size``-byte file made of a repeated random block.

    The piece is encoded once; an upload sends it ``size // UPLOAD_BLOCK``
    times then the encoding of the remainder, which is exactly the base64 of
    the whole file, in constant memory.
    """

    def __init__(self, size: int, seed: int = 0):
        block = random.Random(seed).randbytes(UPLOAD_BLOCK)
        self.size = size
        self.count, remainder = divmod(size, UPLOAD_BLOCK)
        self.piece = binascii.b2a_base64(block, newline=False)
        self.tail = binascii.b2a_base64(block[:remainder], newline=False) if remainder else b""


class Client:
    """One client: replies are received straight into the decoder's buffer."""

    def __init__(self, address: tuple[str, int], timeout: float):
        self.address = address
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.address)
        except BaseException:
            sock.close()
            raise
        return sock

    def _read_reply(self, sock: socket.socket, deadline: float) -> tuple[dict, int]:
        """Whole reply: (fields, streamed data bytes); data is discarded."""
        decoder = wire.ReplyDecoder()
        fields, size = None, 0
        while True:
            event = decoder.next_event()
            if event is NEED_DATA:
                if time.monotonic() > deadline:
                    raise BenchError("reply took longer than the request timeout")
                decoder.receive_into(sock.recv_into)
            elif isinstance(event, ReplyData):
                size += len(event.data)
            elif isinstance(event, ReplyStart):
                fields = event.fields
            elif isinstance(event, ReplyEnd):
                if decoder.trailing_data:
                    raise BenchError("bytes after the reply")
                return fields, size

    def list(self, expected: int | None = None) -> int:
        deadline = time.monotonic() + self.timeout
        with self._connect() as sock:
            sock.sendall(b"LIST\r\n\r\n")
            fields, _ = self._read_reply(sock, deadline)
        if fields.get("status") != "OK" or not isinstance(fields.get("data"), list):
            raise BenchError(f"LIST failed: {str(fields)[:200]}")
        if expected is not None and len(fields["data"]) != expected:
            raise BenchError(f"LIST gave {len(fields['data'])} names, expected {expected}")
        return 0

    def get(self, name: str, size: int) -> int:
        deadline = time.monotonic() + self.timeout
        with self._connect() as sock:
            sock.sendall(wire.encode_request("GET", name))
            fields, received = self._read_reply(sock, deadline)
        if fields.get("status") != "OK":
            raise BenchError(f"GET {name} failed: {str(fields)[:200]}")
        if received != size:
            raise BenchError(f"GET {name}: {received} bytes, expected {size}")
        return received

    def upload(self, name: str, source: UploadSource) -> int:
        deadline = time.monotonic() + self.timeout
        with self._connect() as sock:
            sock.sendall(wire.upload_request_head(name))
            for _ in range(source.count):
                if time.monotonic() > deadline:
                    raise BenchError("upload took longer than the request timeout")
                sock.sendall(source.piece)
            sock.sendall(source.tail + wire.TERMINATOR)
            fields, _ = self._read_reply(sock, deadline)
        if fields.get("status") != "OK":
            raise BenchError(f"UPLOAD {name} failed: {str(fields)[:200]}")
        if f"({source.size} bytes)" not in str(fields.get("data")):
            raise BenchError(f"UPLOAD {name}: unexpected reply {str(fields)[:200]}")
        return source.size


def make_files(folder: str, sizes: dict[str, int]) -> None:
    """Write files of random bytes (1 MiB at a time) into ``folder``."""
    for name, size in sizes.items():
        with open(os.path.join(folder, name), "wb") as out:
            left = size
            while left:
                piece = os.urandom(min(left, 1 << 20))
                out.write(piece)
                left -= len(piece)
