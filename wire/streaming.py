"""Base64 in aligned pieces, and streamed messages batched into sends.

A GET reply and an UPLOAD request carry a whole file as base64 between a
head and a tail.  Neither side holds the file: it reads a piece
(``FILE_CHUNK_BYTES``, a multiple of 3 so no piece needs padding), encodes
it, and sends.  ``StreamEncoder`` is that message as bytes, handed out in
batches of about ``SEND_BATCH_BYTES`` so that small pieces are coalesced
into one send; the caller owns the socket.  ``Base64Decoder`` is the
receiving side: strict, fed in arbitrary pieces.
"""

from __future__ import annotations

import binascii

__all__ = ["FILE_CHUNK_BYTES", "SEND_BATCH_BYTES", "RECV_BYTES",
           "Base64Encoder", "Base64Decoder", "StreamEncoder"]

FILE_CHUNK_BYTES = 3 * 64 * 1024    # file bytes read per piece: a multiple of 3
SEND_BATCH_BYTES = 256 * 1024       # coalesce encoded pieces up to this into one send
RECV_BYTES = 256 * 1024             # bytes asked of each recv()


class Base64Encoder:
    """Encodes a byte stream in pieces; output is identical to one b64encode."""

    def __init__(self) -> None:
        self._pending = b""

    def encode(self, data: bytes) -> bytes:
        if self._pending:
            data = self._pending + data
        usable = len(data) - len(data) % 3
        self._pending = bytes(data[usable:])
        return binascii.b2a_base64(data[:usable], newline=False) if usable else b""

    def finish(self) -> bytes:
        tail, self._pending = self._pending, b""
        return binascii.b2a_base64(tail, newline=False) if tail else b""


class Base64Decoder:
    """Strictly decodes base64 text fed in arbitrary pieces.

    Only whole 4-character quanta are decoded; padding may appear only in
    the last quantum.  Raises ``ValueError`` on any invalid character.
    """

    def __init__(self) -> None:
        self._pending = bytearray()
        self._finished = False   # a padded quantum was seen

    def decode(self, text) -> bytes:
        if not text:
            return b""
        if self._finished:
            raise ValueError("data after base64 padding")
        self._pending += text
        usable = len(self._pending) - len(self._pending) % 4
        if not usable:
            return b""
        # Only the last two characters may be padding.  Python 3.11's strict
        # mode lets "YWJj====" through, but not "YWJj" and "====" apart.
        pad = self._pending.find(b"=", 0, usable)
        if 0 <= pad < usable - 2:
            raise ValueError("misplaced base64 padding")
        with memoryview(self._pending) as view:
            try:
                out = binascii.a2b_base64(view[:usable], strict_mode=True)
            except binascii.Error as exc:
                raise ValueError(str(exc)) from None
            if view[usable - 1] == ord("="):
                self._finished = True
        del self._pending[:usable]
        if self._finished and self._pending:    # as when the rest comes in a later piece
            raise ValueError("data after base64 padding")
        return out

    def finish(self) -> None:
        if self._pending:
            raise ValueError(
                f"base64 length is not a multiple of 4 "
                f"({len(self._pending)} characters left over)")


class StreamEncoder:
    """One streamed message: ``head``, the base64 of the content, ``tail``.

    Feed the content with ``encode(piece)``: it returns the next batch to
    send once at least ``batch_bytes`` are pending, else ``b""``.
    ``finish()`` returns the rest, ending with ``tail``.  ``content_bytes``
    counts the content fed so far.
    """

    def __init__(self, head: bytes, tail: bytes, batch_bytes: int = SEND_BATCH_BYTES):
        self._encoder = Base64Encoder()
        self._tail = tail
        self._batch_bytes = batch_bytes
        self._pending = [head]
        self._pending_size = len(head)
        self.content_bytes = 0

    def encode(self, piece) -> bytes:
        encoded = self._encoder.encode(piece)
        self.content_bytes += len(piece)
        self._pending.append(encoded)
        self._pending_size += len(encoded)
        if self._pending_size < self._batch_bytes:
            return b""
        return self._take()

    def finish(self) -> bytes:
        self._pending += [self._encoder.finish(), self._tail]
        return self._take()

    def _take(self) -> bytes:
        pending = self._pending
        batch = pending[0] if len(pending) == 1 else b"".join(pending)
        self._pending, self._pending_size = [], 0
        return batch
