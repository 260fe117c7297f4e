"""The benchmark's own client: one request per connection, as cheap as it can be.

Why not ``client.FileClient``: the bench measures the server, so its client
must cost as little CPU as possible on a machine it shares with the server.
``FileClient`` reads a source and base64-encodes every piece of an upload,
and decodes every piece of a GET.  The bench's files are a random block
repeated (``BlockFile``), whose base64 is one encoded piece repeated: this
client sends that piece again and again for an upload, and compares a GET
reply, byte for byte as it arrives, with the reply the file must give (the
comparison is a memcmp against a 1 MiB piece the CPU keeps cached, cheaper
than decoding, and stricter: it checks every byte of the file).
The protocol itself still comes from ``wire`` (request heads, the GET
reply's prefix and suffix, ``ReplyDecoder`` for other replies), so the two
clients cannot disagree about the format.

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

__all__ = ["BenchError", "BlockFile", "Client"]

# bytes of a file's repeated block (a multiple of 3): 1 MiB of base64 per piece
BLOCK_BYTES = 3 * 256 * 1024


class BenchError(Exception):
    pass


class BlockFile:
    """A ``size``-byte file made of one random block (``BLOCK_BYTES``, from
    ``seed``) repeated, and its base64 in constant memory.

    The block is encoded once: the base64 of the whole file is ``piece``
    ``count`` times, then ``tail`` (the encoding of the remainder).
    """

    def __init__(self, size: int, seed: int = 0):
        self.block = random.Random(seed).randbytes(BLOCK_BYTES)
        self.size = size
        self.count, remainder = divmod(size, BLOCK_BYTES)
        self.piece = binascii.b2a_base64(self.block, newline=False)
        self.tail = binascii.b2a_base64(self.block[:remainder], newline=False) if remainder else b""
        self.base64_size = self.count * len(self.piece) + len(self.tail)

    def write(self, path: str) -> None:
        with open(path, "wb") as out:
            for _ in range(self.count):
                out.write(self.block)
            out.write(self.block[:self.size - self.count * BLOCK_BYTES])


class _ExpectedGetReply:
    """The exact reply a GET of ``content`` (stored as ``name``) must bring:
    wire's prefix, the file's base64, wire's suffix."""

    def __init__(self, name: str, content: BlockFile):
        self.prefix = wire.get_reply_prefix(name)
        self.content = content
        self._bulk_start = len(self.prefix)
        self._tail_start = self._bulk_start + content.count * len(content.piece)
        self._suffix_start = self._tail_start + len(content.tail)
        self.size = self._suffix_start + len(wire.GET_REPLY_SUFFIX)

    def _part_at(self, position: int) -> tuple[bytes, int]:
        """The part of the reply holding byte ``position``, and where in it."""
        if position < self._bulk_start:
            return self.prefix, position
        if position < self._tail_start:
            return self.content.piece, (position - self._bulk_start) % len(self.content.piece)
        if position < self._suffix_start:
            return self.content.tail, position - self._tail_start
        return wire.GET_REPLY_SUFFIX, position - self._suffix_start

    def _spans(self, position: int, count: int):
        """(part, offset, length) for the reply's bytes from ``position``, at most
        ``count`` of them, in order."""
        end = min(position + count, self.size)
        while position < end:
            part, offset = self._part_at(position)
            length = min(len(part) - offset, end - position)
            yield part, offset, length
            position += length

    def bytes_at(self, position: int, count: int) -> bytes:
        """The reply's bytes from ``position`` (at most ``count``), as one object."""
        return b"".join(part[offset:offset + length]
                        for part, offset, length in self._spans(position, count))

    def describe_difference(self, received: bytearray, count: int, position: int) -> str:
        """Where ``received[:count]`` first differs from the reply, and both there."""
        expected = self.bytes_at(position, count)
        first = next((i for i in range(count) if received[i] != expected[i]), count)
        return (f"at byte {position + first}: got {bytes(received[first:first + 80])!r}, "
                f"expected {expected[first:first + 80]!r}")

    def matches(self, received: bytearray, count: int, position: int) -> bool:
        """Whether ``received[:count]`` are the reply's bytes from ``position``
        (all inside the reply)."""
        if position + count > self.size:
            return False
        done = 0
        for part, offset, length in self._spans(position, count):
            with memoryview(part) as whole, whole[offset:offset + length] as expected:
                if not received.startswith(expected, done):     # a memcmp
                    return False
            done += length
        return True


class Client:
    """One client: replies are received straight into the decoder's buffer, or
    (GET) into one buffer of ``wire.RECV_BYTES``, reused."""

    def __init__(self, address: tuple[str, int], timeout: float):
        self.address = address
        self.timeout = timeout
        self._received = bytearray(wire.RECV_BYTES)

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

    def get(self, name: str, content: BlockFile) -> int:
        """GET ``name``, whose content must be ``content``: every byte of the
        reply is checked as it arrives, nothing is kept."""
        deadline = time.monotonic() + self.timeout
        expected = _ExpectedGetReply(name, content)
        received = self._received
        position = 0
        with self._connect() as sock:
            sock.sendall(wire.encode_request("GET", name))
            while position < expected.size:
                if time.monotonic() > deadline:
                    raise BenchError("reply took longer than the request timeout")
                count = sock.recv_into(received)
                if not count:
                    raise BenchError(f"GET {name}: connection closed after {position} of "
                                     f"{expected.size} reply bytes")
                wanted = min(count, expected.size - position)
                if not expected.matches(received, wanted, position):
                    raise BenchError(f"GET {name}: the reply differs from the file's "
                                     + expected.describe_difference(received, wanted, position))
                if count > wanted:
                    raise BenchError(f"GET {name}: bytes after the reply")
                position += count
        return content.size

    def upload(self, name: str, source: BlockFile) -> int:
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
