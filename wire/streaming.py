"""Base64 in aligned pieces, and streamed messages batched into sends.

A GET reply and an UPLOAD request carry a whole file as base64 between a
head and a tail.  Neither side holds the file: it reads a piece
(``FILE_CHUNK_BYTES``, a multiple of 3 so no piece needs padding), encodes
it, and sends.  ``StreamEncoder`` is that message as bytes, handed out in
batches of about ``SEND_BATCH_BYTES`` so that small pieces are coalesced
into one send; the caller owns the socket.  A server's batches come as
lists of buffers of at most ``ENCODE_PIECE_BYTES`` of file each
(``encode_pieces``), for ``socket.sendmsg``.  ``Base64Decoder`` is the
receiving side: strict, fed in arbitrary pieces, decoding whole quanta
straight from the caller's buffer.

Why pieces, and why pybase64 decodes into a bytearray: on free-threaded
CPython 3.13 every Python object larger than 128 KiB gets a fresh mimalloc
page, and a page that held Python objects is freed only once every thread
has passed a quiescent point (QSBR); until then each new large object takes
new memory.  A 1 MiB bytes object made and dropped per piece by 10 workers
grew the server by 450-620 MiB.  Smaller objects reuse their pages, and
a bytearray's buffer is not a Python object (its page is freed at once).

The base64 work is done by ``BASE64_ENGINE``: ``pybase64`` (SIMD) when it is
installed, else the standard library's ``binascii``.  Both accept exactly the
same text (``Base64Decoder`` adds the one rule ``binascii`` lacks) and both
give the same error messages.
"""

from __future__ import annotations

import binascii
import sysconfig
from functools import partial
from typing import Callable, NamedTuple

__all__ = ["FILE_CHUNK_BYTES", "ENCODE_PIECE_BYTES", "SEND_BATCH_BYTES", "RECV_BYTES",
           "RECV_BYTES_BY_BUILD",
           "SMALL_RECV_BYTES", "Base64Engine", "Base64Encoder", "Base64Decoder", "StreamEncoder"]

FREE_THREADED_BUILD = sysconfig.get_config_var("Py_GIL_DISABLED") == 1
# file bytes read per piece (a multiple of 3).  Default build: 192 KiB, 256 KiB
# of base64, so that a piece and its base64 fit a 512 KiB L2 cache together (a
# GET's server CPU per 100 MB: 50-70 ms, against 90-120 ms with 768 KiB
# pieces).  Free-threaded 3.13 runs Python code unspecialized, and there the
# 4 times as many turns of the loop per MB cost more than the cache saves
# (about 150 against 120 ms), so it keeps 768 KiB.
FILE_CHUNK_BYTES = 3 * 256 * 1024 if FREE_THREADED_BUILD else 3 * 64 * 1024
# file bytes encoded into one bytes object by ``encode_pieces``.  Free-threaded
# build: 64 KiB of base64, a "medium" mimalloc block (<= 128 KiB; see above).
# Default build: a whole chunk.  There, a chunk's base64 in small pieces freed
# at once can make the C library's malloc give the memory back and fault it in
# again for the next chunk (measured with 1 MiB: about 80 page faults a chunk),
# where one object larger than malloc's mmap threshold raises it and is reused.
ENCODE_PIECE_BYTES = 3 * 16 * 1024 if FREE_THREADED_BUILD else FILE_CHUNK_BYTES
SEND_BATCH_BYTES = 256 * 1024       # coalesce encoded pieces up to this into one send
# most bytes asked of one recv() while a file arrives.  Default build: 1 MiB.
# recv(), the decode and the write each let the GIL go, and with several uploads
# in thread mode each of those hands it to another thread (about 15 futex calls
# per receive with five uploads); 1 MiB halves the hand-offs of 512 KiB (100 MB
# UPLOAD, same run: 1 client 906 -> 1,020 MB/s thread, 887 -> 1,106 process;
# 5 clients 1,024 -> 1,106 and 1,196 -> 1,255); 4 MiB was slower than 512 KiB.
# Free-threaded build: no GIL to hand over, and 512 KiB keeps the memory of
# its five uploads lower.
RECV_BYTES_BY_BUILD = {False: 1024 * 1024, True: 512 * 1024}    # by FREE_THREADED_BUILD
RECV_BYTES = RECV_BYTES_BY_BUILD[FREE_THREADED_BUILD]
# ... between files, and as the first room of each file: a buffer of this size
# comes from malloc's heap (its mmap threshold is 128 KiB), so a fresh
# connection's small request or reply costs no page faults
SMALL_RECV_BYTES = 64 * 1024

_PAD = ord("=")


class Base64Engine(NamedTuple):
    """The functions that do the base64 work (both take any bytes-like object)."""
    name: str
    encode: Callable[[object], bytes]
    # strict; raises binascii.Error; bytes or (pybase64) a bytearray
    decode: Callable[[object], bytes | bytearray]
    # whether ``decode`` refuses padding before the last two characters
    # ("YWJj===="), which binascii's strict mode lets through
    refuses_long_padding: bool


STDLIB_ENGINE = Base64Engine(
    "binascii", partial(binascii.b2a_base64, newline=False),
    partial(binascii.a2b_base64, strict_mode=True), refuses_long_padding=False)


def load_engine() -> Base64Engine:
    """pybase64's engine if it can be imported, else the standard library's."""
    try:
        import pybase64
    except ImportError:
        return STDLIB_ENGINE
    # decoded into a bytearray: same speed, and no large Python object per piece
    return Base64Engine(f"pybase64 {pybase64.__version__}", pybase64.b64encode,
                        partial(pybase64.b64decode_as_bytearray, validate=True),
                        refuses_long_padding=True)


# What encoders and decoders made from now on use (tests switch it; read it
# as ``wire.streaming.BASE64_ENGINE``, ``from ... import`` would copy it).
BASE64_ENGINE = load_engine()


def _invalid(text) -> str:
    """Why strict decoding refused ``text`` (whole quanta): the standard library's words."""
    text = bytes(text)
    if 0 <= text.find(b"=") < len(text) - 2:
        return "misplaced base64 padding"
    try:
        binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error as exc:
        return str(exc)
    return "invalid base64"


class Base64Encoder:
    """Encodes a byte stream in pieces; output is identical to one b64encode."""

    def __init__(self, engine: Base64Engine | None = None) -> None:
        self._encode = (engine or BASE64_ENGINE).encode
        self._pending = b""

    def encode(self, data) -> bytes:
        if self._pending:
            data = self._pending + data
        usable = len(data) - len(data) % 3
        self._pending = bytes(data[usable:])
        return self._encode(data[:usable]) if usable else b""

    def encode_pieces(self, data) -> list[bytes]:
        """As ``encode``, in pieces of at most ``ENCODE_PIECE_BYTES`` of ``data``
        (none empty); ``data`` itself is not copied."""
        pieces = []
        with memoryview(data) as view:
            start = 0
            if self._pending:
                # complete the cut quantum with the first bytes of data
                start = min(3 - len(self._pending), len(view))
                self._pending += view[:start]
                if len(self._pending) == 3:
                    pieces.append(self._encode(self._pending))
                    self._pending = b""
            usable = len(view) - (len(view) - start) % 3
            for offset in range(start, usable, ENCODE_PIECE_BYTES):
                with view[offset:min(offset + ENCODE_PIECE_BYTES, usable)] as piece:
                    pieces.append(self._encode(piece))
            if usable < len(view):
                self._pending += view[usable:]
        return pieces

    def finish(self) -> bytes:
        tail, self._pending = self._pending, b""
        return self._encode(tail) if tail else b""


class Base64Decoder:
    """Strictly decodes base64 text fed in arbitrary pieces.

    Whole 4-character quanta are decoded straight from the piece given (a
    memoryview of the caller's buffer costs no copy); only the 1-3
    characters of a quantum cut by the end of a piece are kept.  Padding may
    appear only in the last two characters of the last quantum.  Raises
    ``ValueError`` on any invalid character.
    """

    def __init__(self, engine: Base64Engine | None = None) -> None:
        self._engine = engine or BASE64_ENGINE
        self._pending = b""      # 0-3 characters of a quantum cut by a piece's end
        self._finished = False   # a padded quantum was seen

    @property
    def finished(self) -> bool:
        """A padded quantum was seen: the text must end here."""
        return self._finished

    def whole_quanta(self, text) -> int:
        """How much of ``text`` to hand over now so that no quantum is cut.

        The rest (0-3 characters) can wait in the caller's buffer for the
        next piece, and this decoder copies nothing.  Text that padding has
        ended is handed over whole: what follows the padding is an error now.
        """
        size = len(text) - len(text) % 4
        if self._finished or (size and text[size - 1] == _PAD):
            return len(text)
        return size

    def decode_plain(self, quanta):
        """``quanta`` decoded if they are whole quanta of base64 characters
        without padding (so no end of the text can be among them); None, and
        nothing changed, if not, or if this decoder holds a cut quantum or has
        finished.  The check is the strict decode itself, not a pass of its own."""
        size = len(quanta)
        if not size or size % 4 or self._pending or self._finished or quanta[-1] == _PAD:
            return None
        try:
            return self._engine.decode(quanta)
        except (binascii.Error, ValueError):
            return None

    def decode(self, text) -> bytes:
        size = len(text)
        if size % 4 or self._pending or self._finished or not size:
            return self._decode_cut(text)
        return self._decode_quanta(text)    # whole quanta: the usual case, no copy

    def _decode_cut(self, text) -> bytes:
        """``text`` that does not start or end on a quantum boundary."""
        if not len(text):
            return b""
        if self._finished:
            raise ValueError("data after base64 padding")
        if self._pending:
            text = self._pending + text
        with memoryview(text) as view:
            usable = len(view) - len(view) % 4
            self._pending = bytes(view[usable:])
            if not usable:
                return b""
            with view[:usable] as quanta:
                out = self._decode_quanta(quanta)
        if self._finished and self._pending:    # as when the rest comes in a later piece
            raise ValueError("data after base64 padding")
        return out

    def _decode_quanta(self, quanta) -> bytes:
        try:
            out = self._engine.decode(quanta)
        except (binascii.Error, ValueError):
            raise ValueError(_invalid(quanta)) from None
        if quanta[-1] == _PAD:
            # binascii.a2b_base64("YWJj====", strict_mode=True) is b"abc": only
            # the last two characters may be padding
            if quanta[-3] == _PAD and not self._engine.refuses_long_padding:
                raise ValueError("misplaced base64 padding")
            self._finished = True
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
    ``finish()`` returns the rest, ending with ``tail``.  ``encode_pieces``
    and ``finish_pieces`` do the same with each batch as a list of buffers
    (``[]`` for none), each of at most ``ENCODE_PIECE_BYTES`` of content:
    for ``socket.sendmsg``, with no large object made and no join.
    ``content_bytes`` counts the content fed so far.  A piece is not kept
    after ``encode`` returns, so the caller may read the next one into the
    same buffer.
    """

    def __init__(self, head: bytes, tail: bytes, batch_bytes: int = SEND_BATCH_BYTES,
                 engine: Base64Engine | None = None):
        self._encoder = Base64Encoder(engine)
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

    def encode_pieces(self, piece) -> list[bytes]:
        encoded = self._encoder.encode_pieces(piece)
        self.content_bytes += len(piece)
        self._pending += encoded
        self._pending_size += sum(map(len, encoded))
        if self._pending_size < self._batch_bytes:
            return []
        return self._take_pieces()

    def finish(self) -> bytes:
        self._pending += [self._encoder.finish(), self._tail]
        return self._take()

    def finish_pieces(self) -> list[bytes]:
        self._pending += [self._encoder.finish(), self._tail]
        return self._take_pieces()

    def _take(self) -> bytes:
        pending = self._pending
        batch = pending[0] if len(pending) == 1 else b"".join(pending)
        self._pending, self._pending_size = [], 0
        return batch

    def _take_pieces(self) -> list[bytes]:
        pieces = [piece for piece in self._pending if piece]
        self._pending, self._pending_size = [], 0
        return pieces
