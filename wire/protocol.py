"""Sans-I/O wire format of the course file protocol.

A request is one ASCII line ended by ``\\r\\n\\r\\n``: ``LIST``, ``GET <name>``,
``UPLOAD <name> <base64>`` or ``DELETE <name>``; command words are
case-insensitive.  Every reply is one JSON object followed by the same
terminator.

Nothing here touches a socket or a file.  ``RequestDecoder`` takes bytes with
``receive_data()`` and hands out events with ``next_event()`` (or
``NEED_DATA``), in the style of h11.  An UPLOAD is not buffered: it comes out
as ``UploadStart``, any number of ``UploadData`` chunks of decoded bytes, and
``UploadEnd``, so memory stays bounded by the chunk size whatever the file
size.  The decoder remembers how far it has searched for the terminator, so
finding it is linear in the input however it is chunked.

``ReplyDecoder`` is the client's mirror image: it streams the ``data_file``
field of a GET reply and buffers any other (small) reply.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass

from .receivebuffer import TERMINATOR, TERMINATOR_TAIL, ReceiveBuffer
from .streaming import RECV_BYTES, SMALL_RECV_BYTES, Base64Decoder, StreamEncoder

__all__ = [
    "TERMINATOR", "NEED_DATA", "COMMANDS", "DEFAULT_PORT", "DEFAULT_METRICS_PORT",
    "DEFAULT_MAX_LINE_BYTES", "DEFAULT_MAX_UPLOAD_BYTES", "DEFAULT_MAX_REPLY_BYTES",
    "ProtocolError", "Command", "UploadStart", "UploadData", "UploadEnd",
    "RequestDecoder", "whole_request", "encode_request", "upload_request_head",
    "upload_request_stream",
    "encode_reply", "ok_reply", "error_reply",
    "get_reply_prefix", "GET_REPLY_SUFFIX", "get_reply_stream",
    "ReplyStart", "ReplyData", "ReplyEnd", "ReplyClosed", "ReplyDecoder",
]

COMMANDS = ("LIST", "GET", "UPLOAD", "DELETE")
_LAST_TERMINATOR_BYTE = TERMINATOR[-1]

# Where a server listens unless told otherwise: the protocol port, and the
# HTTP port of /stats, /metrics, /healthz and /readyz.  The server's settings,
# the client and the Locust users all take them from here.
DEFAULT_PORT = 6665
DEFAULT_METRICS_PORT = 9665

# A non-upload request is a verb and one file name (<= 255 bytes): 4 KiB is
# generous for that and small enough that junk without a terminator is cut
# off early.
DEFAULT_MAX_LINE_BYTES = 4 * 1024
DEFAULT_MAX_UPLOAD_BYTES = 1024 ** 3
# Non-GET replies are small JSON documents (LIST of a large folder is the
# biggest); cap what a client buffers for them.
DEFAULT_MAX_REPLY_BYTES = 64 * 1024 * 1024

_UPLOAD_HEAD = b"UPLOAD "


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


class ProtocolError(Exception):
    """Input that breaks the protocol.

    ``fatal`` means the byte stream can no longer be trusted (an unterminated
    line that grew past its limit, an upload over its limit): the peer gets
    the error reply and the connection is closed.  A non-fatal error gets an
    error reply and the connection goes on with the next request.
    """

    def __init__(self, message: str, *, fatal: bool = False):
        super().__init__(message)
        self.message = message
        self.fatal = fatal


@dataclass(frozen=True)
class Command:
    """A complete LIST, GET or DELETE request (``name`` is None for LIST)."""
    verb: str
    name: str | None = None


_LIST = Command("LIST")     # immutable: one for every LIST (a frozen dataclass is slow to make)


@dataclass(frozen=True)
class UploadStart:
    name: str


@dataclass(frozen=True)
class UploadData:
    data: bytes | bytearray     # a bytearray with pybase64 (see wire.streaming)


@dataclass(frozen=True)
class UploadEnd:
    size: int


# --------------------------------------------------------------------------
# requests

def _parse_line(line: bytes) -> Command:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("request is not valid UTF-8") from None
    parts = text.split(" ")
    # ASCII-only case folding: str.upper() would turn "lıst" or "LIſT" into "LIST"
    verb = parts[0].upper() if parts[0].isascii() else parts[0]
    if verb == "LIST":
        if len(parts) != 1:
            raise ProtocolError("LIST takes no argument")
        return _LIST
    if verb in ("GET", "DELETE"):
        if len(parts) != 2 or not parts[1]:
            raise ProtocolError(f"usage: {verb} <name>")
        return Command(verb, parts[1])
    if verb == "UPLOAD":
        raise ProtocolError("usage: UPLOAD <name> <base64 content>")
    if not text.strip():
        raise ProtocolError("empty request")
    shown = text if len(text) <= 40 else text[:40] + "..."
    raise ProtocolError(
        f"unknown command {shown!r}; expected one of {', '.join(COMMANDS)}")


def whole_request(data, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Command | None:
    """The request ``data`` holds when it is exactly one whole request line other
    than UPLOAD, with its terminator: what a ``RequestDecoder`` idle with nothing
    buffered would give for ``receive_data(data)`` then ``next_event()``, without
    one (a connection's request usually arrives so, in one receive).  None
    otherwise, also for a line that breaks the protocol: then pass ``data`` to a
    decoder's ``receive_data()``, as always."""
    if type(data) is not bytes or not data.endswith(TERMINATOR):
        return None
    end = data.find(TERMINATOR)
    if end != len(data) - len(TERMINATOR) or end > max_line_bytes:
        return None
    if data[:len(_UPLOAD_HEAD)].upper() == _UPLOAD_HEAD:
        return None
    try:
        return _parse_line(data[:end])
    except ProtocolError:
        return None


class _Decoder:
    """What both decoders share: a ``ReceiveBuffer`` fed by ``receive_data()``."""

    _bulk_room = SMALL_RECV_BYTES    # grows while receives fill it (see receive_into)

    def __init__(self) -> None:
        self._input = ReceiveBuffer()

    def _begin_file(self) -> None:
        """A file's base64 starts: a fresh decoder, and the smallest receive room."""
        self._b64 = Base64Decoder()
        self._bulk_room = SMALL_RECV_BYTES

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; ``b""`` at the end of the stream."""
        self._input.receive(data)

    BULK_STATES: tuple[str, ...] = ()     # states in which a file's base64 is arriving

    def receive_into(self, recv_into, size: int | None = None) -> int:
        """Bytes from the peer, written straight into the decoder's buffer by
        ``recv_into(buffer)`` (``sock.recv_into``), up to ``size``; returns the
        count, 0 at the end of the stream (as ``receive_data(b"")``).

        ``size`` defaults to ``SMALL_RECV_BYTES`` outside the ``BULK_STATES``.
        In them it starts there for each file and doubles, up to ``RECV_BYTES``,
        each time a receive fills it: a large file arrives in few large
        receives (fewer passes through the decoder per MB), a small one costs
        no large buffer.  An explicit ``size`` leaves that room as it is."""
        if size is not None:
            return self._input.receive_into(recv_into, size)
        if self.state not in self.BULK_STATES:
            return self._input.receive_into(recv_into, SMALL_RECV_BYTES)
        size = self._bulk_room
        count = self._input.receive_into(recv_into, size)
        if count == size and size < RECV_BYTES:
            self._bulk_room = min(2 * size, RECV_BYTES)
        return count

    @property
    def trailing_data(self) -> bytes:
        return self._input.trailing_data

    def _decode_plain(self):
        """The middle of a file's base64, decoded with no search for its end first.

        A strict decode of the buffer's whole quanta succeeds only if they are
        base64 characters without padding, and then the text does not end among
        them: the search for its end (a CR, the closing quote), one more pass
        over every byte of the file, is not needed.  Returns (decoded, text
        consumed, its last two characters); None, with nothing consumed, when
        the text may end here (the buffer ends as a message does, the stream
        has ended) or the decoder refused it: the caller's search then finds
        which.
        """
        received = self._input
        buffer = received.data
        size = len(buffer) - len(buffer) % 4
        if not size or received.eof or buffer[-1] == _LAST_TERMINATOR_BYTE:
            return None
        with received.view(size) as text:
            data = self._b64.decode_plain(text)
        if data is None:
            return None
        tail = bytes(buffer[size - 2:size])
        received.drop(size)
        return data, size, tail


class RequestDecoder(_Decoder):
    """Turns the bytes of a connection into request events.

    Call ``receive_data(bytes)`` whenever bytes arrive (``b""`` at end of
    stream), then ``next_event()`` until it returns ``NEED_DATA``.  Errors
    are raised as ``ProtocolError``; after a non-fatal one the decoder is
    ready for the next request (a broken UPLOAD is skipped up to its
    terminator first).
    """

    IDLE = "IDLE"
    UPLOAD_BODY = "UPLOAD_BODY"      # base64 content of an UPLOAD is arriving
    UPLOAD_ENDING = "UPLOAD_ENDING"  # terminator seen, UploadEnd not yet handed out
    SKIP_BODY = "SKIP_BODY"          # a rejected UPLOAD: discard up to its terminator
    CLOSED = "CLOSED"
    BULK_STATES = (UPLOAD_BODY, SKIP_BODY)

    # what every decoder starts with (one made per connection: each sets its
    # own as they change)
    state = IDLE
    _b64: Base64Decoder | None = None
    _upload_size = 0
    # base64 text of the current upload body so far (decoded or skipped) and
    # its last two characters: what a skipped body is measured by
    _body_chars = 0
    _body_tail = b""

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
                 max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES):
        super().__init__()
        self.max_line_bytes = max_line_bytes
        self.max_upload_bytes = max_upload_bytes

    def whole_request(self, data) -> Command | None:
        """``whole_request(data)`` for this decoder, which must be idle with
        nothing buffered (None otherwise)."""
        if self.state != self.IDLE or self._input.data:
            return None
        return whole_request(data, self.max_line_bytes)

    def skip_upload(self) -> None:
        """Discard the rest of the current UPLOAD (the caller refused it).  The
        size limit still holds: a body that passes it is a fatal error."""
        if self.state == self.UPLOAD_BODY:
            self.state = self.SKIP_BODY
        elif self.state == self.UPLOAD_ENDING:
            self.state = self.IDLE

    @property
    def in_request(self) -> bool:
        """True while part of a request has arrived but not all of it."""
        return self.state != self.IDLE or bool(self._input.data)

    # -- output -------------------------------------------------------------
    def next_event(self):
        if self.state == self.IDLE:
            return self._next_request()
        if self.state == self.UPLOAD_BODY:
            return self._next_upload_piece()
        if self.state == self.UPLOAD_ENDING:
            self.state = self.IDLE
            return UploadEnd(self._upload_size)
        if self.state == self.SKIP_BODY:
            return self._skip_body()
        return NEED_DATA

    def _next_request(self):
        if not self._input.data:
            return NEED_DATA            # between requests (at the end of the stream too)
        upload = self._upload_header()
        if upload is not None:
            return upload
        received = self._input
        end = received.find_terminator()
        if end < 0:
            # The last bytes may be the start of the terminator: the line is
            # known to be too long only once it is, without them.
            if len(received) - TERMINATOR_TAIL > self.max_line_bytes:
                self._line_too_long()
            if received.eof and received.data:
                self.state = self.CLOSED
                raise ProtocolError("connection closed in the middle of a request",
                                    fatal=True)
            return NEED_DATA
        if end > self.max_line_bytes:
            # the same verdict as when the line arrives in pieces
            self._line_too_long()
        line = received.take(end)
        received.drop(len(TERMINATOR))
        return _parse_line(line)

    def _line_too_long(self):
        self.state = self.CLOSED
        raise ProtocolError(
            f"request line longer than {self.max_line_bytes} bytes", fatal=True)

    def _upload_header(self):
        """Start an UPLOAD as soon as ``UPLOAD <name> `` has arrived."""
        buffer = self._input.data
        if len(buffer) < len(_UPLOAD_HEAD) or buffer[:len(_UPLOAD_HEAD)].upper() != _UPLOAD_HEAD:
            return None
        name_end = buffer.find(b" ", len(_UPLOAD_HEAD), self.max_line_bytes)
        if name_end < 0:
            return None     # a bare "UPLOAD x" line, or the name is still arriving
        if 0 <= buffer.find(TERMINATOR, 0, name_end) < name_end:
            return None     # "UPLOAD x\r\n\r\n...": parsed as a line (usage error)
        raw_name = self._input.take(name_end)[len(_UPLOAD_HEAD):]
        self._input.drop(1)
        self._begin_file()
        self._upload_size = 0
        self._body_chars = 0
        self._body_tail = b""
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            self.state = self.SKIP_BODY
            raise ProtocolError("file name is not valid UTF-8") from None
        if not name:
            self.state = self.SKIP_BODY
            raise ProtocolError("usage: UPLOAD <name> <base64 content>")
        self.state = self.UPLOAD_BODY
        return UploadStart(name)

    def _body_bounds(self) -> tuple[int, int]:
        """(terminator index or -1, how much of the buffer is base64 text).

        Base64 text holds no CR, so a one-byte search (memchr) finds either
        the terminator or a stray CR; it is several times faster than
        searching for the four-byte terminator, and this is the hot loop of
        every upload.
        """
        received = self._input
        buffer = received.data
        cr = buffer.find(b"\r", received.searched)
        if cr < 0:
            received.searched = len(buffer)
            return -1, len(buffer)
        if buffer.startswith(TERMINATOR, cr):
            return cr, cr
        if TERMINATOR.startswith(buffer[cr:]):
            received.searched = cr            # a terminator still arriving
            return -1, cr
        self.state = self.SKIP_BODY
        raise ProtocolError("upload content is not valid base64: a stray carriage return")

    def _next_upload_piece(self):
        plain = self._decode_plain()
        if plain is not None:
            data, size, tail = plain
            self._count_body(size, tail)
            self._count_decoded(len(data))
            return UploadData(data)
        end, body_end = self._body_bounds()
        if end < 0 and self._input.eof:
            self.state = self.CLOSED
            raise ProtocolError("connection closed in the middle of an upload", fatal=True)
        if body_end <= 0 and end < 0:
            return NEED_DATA
        received = self._input
        if end < 0 and body_end == len(received):
            # a cut quantum waits in the buffer for its rest
            body_end = self._b64.whole_quanta(received.data)
            if not body_end:
                return NEED_DATA
        try:
            # decoded straight from the receive buffer: no copy of the text
            with received.view(body_end) as text:
                self._count_body(body_end, text[-2:])
                data = self._b64.decode(text)
            if end >= 0:
                self._b64.finish()
        except ValueError as exc:
            received.drop(body_end)
            # skipped up to its terminator (perhaps already here), size limit included
            self.state = self.SKIP_BODY
            raise ProtocolError(f"upload content is not valid base64: {exc}") from None
        received.drop(body_end)
        self._count_decoded(len(data))
        if end >= 0:
            self._input.drop(len(TERMINATOR))
            self.state = self.UPLOAD_ENDING
        return UploadData(data) if data else self.next_event()

    def _skip_body(self):
        received = self._input
        end = received.find_terminator()
        # what cannot hold the terminator is dropped; memory stays bounded
        body = received.searched if end < 0 else end
        self._count_body(body, received.data[max(body - 2, 0):body])
        if self._skipped_size() > self.max_upload_bytes:
            self._too_large()
        if end < 0:
            received.drop(body)
            if received.eof:
                self.state = self.CLOSED
            return NEED_DATA
        received.drop(end + len(TERMINATOR))
        self.state = self.IDLE
        return self.next_event()

    def _count_decoded(self, size: int) -> None:
        self._upload_size += size
        if self._upload_size > self.max_upload_bytes:
            self._too_large()

    def _count_body(self, size: int, tail) -> None:
        """``size`` more characters of the body, ending with ``tail``."""
        if size:
            self._body_chars += size
            self._body_tail = (self._body_tail + bytes(tail))[-2:]

    def _skipped_size(self) -> int:
        """The decoded size of the body so far, as for one decoded: whole
        4-character quanta, less the padding that ends one."""
        padding = len(self._body_tail) - len(self._body_tail.rstrip(b"="))
        if self._body_chars % 4:
            padding = 0                 # the padded quantum is not complete yet
        return self._body_chars // 4 * 3 - padding

    def _too_large(self):
        self.state = self.CLOSED
        raise ProtocolError(
            f"upload larger than the limit of {self.max_upload_bytes} bytes", fatal=True)


def encode_request(verb: str, name: str | None = None, content: bytes | None = None) -> bytes:
    """Whole request bytes; for large uploads use ``upload_request_head`` and stream."""
    verb = verb.upper()
    if verb == "UPLOAD":
        return (upload_request_head(name) + binascii.b2a_base64(content or b"", newline=False)
                + TERMINATOR)
    text = verb if name is None else f"{verb} {name}"
    return text.encode("utf-8") + TERMINATOR


def upload_request_head(name: str) -> bytes:
    return _UPLOAD_HEAD + name.encode("utf-8") + b" "


def upload_request_stream(name: str) -> StreamEncoder:
    """A client's UPLOAD of ``name``, with the file fed in pieces."""
    return StreamEncoder(upload_request_head(name), TERMINATOR)


# --------------------------------------------------------------------------
# replies

_JSON = json.JSONEncoder()


def encode_reply(reply: dict) -> bytes:
    # json.dumps's text (its defaults, without its per-call argument handling);
    # control characters are escaped, so the text never holds the terminator
    return _JSON.encode(reply).encode("ascii") + TERMINATOR


def ok_reply(data) -> bytes:
    if type(data) is list:
        # LIST's names, on every LIST: the same text, without the encoder's per-call set-up
        try:
            items = ", ".join(map(_quote_ascii, data))
        except TypeError:
            pass                        # not all strings: the encoder's way
        else:
            return _OK_LIST_HEAD + items.encode("ascii") + _OK_LIST_TAIL
    return encode_reply({"status": "OK", "data": data})


_quote_ascii = json.encoder.encode_basestring_ascii   # a JSON string, as json.dumps quotes it
_OK_LIST_HEAD = b'{"status": "OK", "data": ['
_OK_LIST_TAIL = b"]}" + TERMINATOR


def error_reply(message: str) -> bytes:
    return encode_reply({"status": "ERROR", "data": message})


_GET_HEAD = b'{"status": "OK", "data_namafile": '
_GET_FILE_MARK = b', "data_file": "'
GET_REPLY_SUFFIX = b'"}' + TERMINATOR
# A GET reply's head (status and the JSON-quoted name of at most 255 bytes)
# is far shorter; a reply whose data_file does not start within this many
# bytes is not streamed but buffered whole.
_MAX_GET_HEAD_BYTES = 64 * 1024


def get_reply_prefix(name: str) -> bytes:
    """Bytes before the base64 of a GET reply; the same text ``json.dumps`` gives."""
    return _GET_HEAD + json.dumps(name).encode("ascii") + _GET_FILE_MARK


def get_reply_stream(name: str) -> StreamEncoder:
    """The server's GET reply for ``name``, with the file fed in pieces."""
    return StreamEncoder(get_reply_prefix(name), GET_REPLY_SUFFIX)


@dataclass(frozen=True)
class ReplyStart:
    """A reply's fields; for a streamed GET, without ``data_file``."""
    fields: dict
    streamed: bool


@dataclass(frozen=True)
class ReplyData:
    data: bytes | bytearray     # a bytearray with pybase64 (see wire.streaming)


@dataclass(frozen=True)
class ReplyEnd:
    pass


@dataclass(frozen=True)
class ReplyClosed:
    """The peer closed the connection between replies (not inside one)."""


class ReplyDecoder(_Decoder):
    """Client side: turns reply bytes into ReplyStart, ReplyData*, ReplyEnd.

    A GET reply in the usual key order (as json.dumps of the course's dict
    writes it) is streamed: its ``data_file`` comes out decoded, piece by
    piece.  Any other reply is buffered whole, up to ``max_reply_bytes``,
    parsed, and handed out as ``ReplyStart(fields, streamed=False)`` then
    ``ReplyEnd``.  End of stream between replies gives ``ReplyClosed``; end
    of stream inside a reply raises ``ProtocolError``.
    """

    BETWEEN_REPLIES = "BETWEEN_REPLIES"
    FILE_DATA = "FILE_DATA"          # the base64 of a streamed GET is arriving
    ENDING = "ENDING"                # the reply is complete, ReplyEnd not yet handed out
    BULK_STATES = (FILE_DATA,)

    def __init__(self, max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES):
        super().__init__()
        self.max_reply_bytes = max_reply_bytes
        self.state = self.BETWEEN_REPLIES
        self._b64: Base64Decoder | None = None

    def next_event(self):
        if self.state == self.BETWEEN_REPLIES:
            return self._start()
        if self.state == self.FILE_DATA:
            return self._data()
        self.state = self.BETWEEN_REPLIES
        return ReplyEnd()

    def _truncated(self):
        if self._input.eof:
            raise ProtocolError("connection closed before the reply was complete", fatal=True)
        return NEED_DATA

    def _start(self):
        received = self._input
        buffer = received.data
        if not buffer:
            return ReplyClosed() if received.eof else NEED_DATA
        if buffer.startswith(_GET_HEAD):
            mark = buffer.find(_GET_FILE_MARK, len(_GET_HEAD), _MAX_GET_HEAD_BYTES)
            # a mark after a terminator belongs to a later reply, not this one
            if mark >= 0 and buffer.find(TERMINATOR, 0, mark) < 0:
                return self._start_streamed(mark)
            if len(buffer) < _MAX_GET_HEAD_BYTES and buffer.find(TERMINATOR) < 0:
                return self._truncated()
        end = received.find_terminator()
        if end < 0:
            # as for request lines: the last bytes may start the terminator
            if len(buffer) - TERMINATOR_TAIL > self.max_reply_bytes:
                raise ProtocolError(
                    f"reply larger than {self.max_reply_bytes} bytes", fatal=True)
            return self._truncated()
        if end > self.max_reply_bytes:      # the same verdict as when it comes in pieces
            raise ProtocolError(f"reply larger than {self.max_reply_bytes} bytes", fatal=True)
        raw = received.take(end)
        received.drop(len(TERMINATOR))
        try:
            fields = json.loads(raw)
        except (ValueError, RecursionError) as exc:   # RecursionError: deep nesting
            raise ProtocolError(f"reply is not valid JSON: {exc}", fatal=True) from None
        if not isinstance(fields, dict) or fields.get("status") not in ("OK", "ERROR"):
            raise ProtocolError("reply is not an object with status OK or ERROR", fatal=True)
        self.state = self.ENDING
        return ReplyStart(fields, streamed=False)

    def _start_streamed(self, mark: int):
        try:
            name = json.loads(bytes(self._input.data[len(_GET_HEAD):mark]))
        except (ValueError, RecursionError):
            raise ProtocolError("GET reply has a malformed data_namafile", fatal=True) from None
        self._input.drop(mark + len(_GET_FILE_MARK))
        self._begin_file()
        self.state = self.FILE_DATA
        return ReplyStart({"status": "OK", "data_namafile": name}, streamed=True)

    def _data(self):
        plain = self._decode_plain()
        if plain is not None:
            return ReplyData(plain[0])
        received = self._input
        quote = received.data.find(b'"')
        # without the closing quote, a cut quantum waits in the buffer for its rest
        body = quote if quote >= 0 else self._b64.whole_quanta(received.data)
        if quote < 0 and not body:
            return self._truncated()
        try:
            with received.view(body) as text:      # no copy of the text
                data = self._b64.decode(text)
            if quote >= 0:
                self._b64.finish()
        except ValueError as exc:
            raise ProtocolError(f"data_file is not valid base64: {exc}", fatal=True) from None
        received.drop(body)
        if quote >= 0:
            if len(received) < len(GET_REPLY_SUFFIX):
                if data:
                    return ReplyData(data)
                return self._truncated()
            if not received.data.startswith(GET_REPLY_SUFFIX):
                raise ProtocolError("GET reply does not end with '\"}' and the terminator",
                                    fatal=True)
            received.drop(len(GET_REPLY_SUFFIX))
            self.state = self.ENDING
        if data:
            return ReplyData(data)
        return self.next_event() if self.state == self.ENDING else self._truncated()
