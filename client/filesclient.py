"""Blocking client for the course file protocol (LIST, GET, UPLOAD, DELETE).

Plain stdlib: one ``socket`` per connection, blocking calls with a timeout,
so gevent's monkey patching (and therefore Locust) can use it unchanged.
The wire format itself lives in the sans-I/O ``wire`` package; this module
only moves bytes between it, the socket and files.

Memory stays bounded whatever the file size when the data goes to or comes
from a file: an UPLOAD reads its source in chunks (a multiple of 3 bytes,
so each chunk's base64 stands alone) into one reused buffer and sends each
piece as it is encoded; a GET into ``dest`` decodes the reply as it arrives
and writes it out.  Replies are received straight into the decoder's buffer
(``recv_into``) and decoded from it without copies, with the same ``wire``
pieces the server uses, so the client costs no more CPU per byte than the
server does.

``FileClient`` is not thread-safe: use one per thread or greenlet.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import secrets
import socket
from typing import Callable

import wire

__all__ = [
    "FileClient", "parse_address", "DEFAULT_PORT", "DEFAULT_METRICS_PORT",
    "FileClientError", "ServerError", "ClientProtocolError", "ClientConnectionError",
    "ClientTimeoutError",
]

DEFAULT_PORT = wire.DEFAULT_PORT
DEFAULT_METRICS_PORT = wire.DEFAULT_METRICS_PORT      # the server's /stats and /metrics

Progress = Callable[[int], None]

_BAD_NAME_CHARS = (" ", "\r", "\n")


# --------------------------------------------------------------------------
# errors

class FileClientError(Exception):
    """Base class of every error this client raises on purpose."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ServerError(FileClientError):
    """The server answered ``{"status": "ERROR", "data": message}``."""


class ClientProtocolError(FileClientError):
    """The reply was malformed or truncated; the connection is not reused."""


class ClientConnectionError(FileClientError):
    """Connecting, sending or receiving failed (refused, reset, closed, timed out).

    ``host``/``port`` name the server and ``cause`` holds the underlying
    ``OSError`` (None when the server simply closed the connection).
    """

    def __init__(self, message: str, host: str, port: int, cause: BaseException | None = None):
        super().__init__(message)
        self.host = host
        self.port = port
        self.cause = cause


class ClientTimeoutError(ClientConnectionError):
    """A connect, send or receive took longer than the client's ``timeout``."""


class _ClosedEarly(ClientConnectionError):
    """The server closed or reset the connection before sending any reply byte."""


# --------------------------------------------------------------------------
# addresses

_PORT_RE = re.compile(r"[0-9]{1,5}")


def _parse_port(text: str, original: str) -> int:
    if not _PORT_RE.fullmatch(text):
        raise ValueError(f"invalid address {original!r}: port {text!r} is not a number")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"invalid address {original!r}: port {port} is not in 1..65535")
    return port


def parse_address(address: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``"tcp://h:p"``, ``"h:p"``, ``"h"``, ``"[::1]:p"``, ``"[::1]"`` or ``"::1"``
    -> ``(host, port)``; IPv6 hosts come back without brackets.

    Raises ``ValueError`` naming the problem for anything else.
    """
    if not isinstance(address, str):
        raise ValueError(f"invalid address {address!r}: expected a string")
    original = address
    text = address.strip()
    if "://" in text:
        scheme, text = text.split("://", 1)
        if scheme.lower() != "tcp":
            raise ValueError(f"invalid address {original!r}: scheme must be tcp://, "
                             f"not {scheme + '://'!r}")
        if text.endswith("/"):
            text = text[:-1]
    if not text:
        raise ValueError(f"invalid address {original!r}: the host is empty")
    if any(ch in text for ch in "/?#@ \t\r\n"):
        raise ValueError(f"invalid address {original!r}: expected host, host:port "
                         f"or tcp://host:port")
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"invalid address {original!r}: missing ']' after IPv6 host")
        host, rest = text[1:close], text[close + 1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"invalid address {original!r}: {host!r} is not an "
                             f"IPv6 address") from None
        if not rest:
            return host, _check_default(default_port)
        if not rest.startswith(":"):
            raise ValueError(f"invalid address {original!r}: expected ':port' after ']'")
        return host, _parse_port(rest[1:], original)
    if "]" in text:
        raise ValueError(f"invalid address {original!r}: ']' without '['")
    if text.count(":") > 1:
        # several colons without brackets: only a bare IPv6 address makes sense
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            raise ValueError(f"invalid address {original!r}: write an IPv6 host with a "
                             f"port as [host]:port") from None
        return text, _check_default(default_port)
    host, colon, port_text = text.partition(":")
    if not host:
        raise ValueError(f"invalid address {original!r}: the host is empty")
    if not colon:
        return host, _check_default(default_port)
    return host, _parse_port(port_text, original)


def _check_default(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"invalid default port {port!r}: expected an integer in 1..65535")
    return port


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"file name must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError("file name is empty")
    for ch in _BAD_NAME_CHARS:
        if ch in name:
            raise ValueError(f"file name {name!r} cannot be sent: the protocol does not "
                             f"allow {ch!r} in a name")
    return name


# --------------------------------------------------------------------------
# the client

class FileClient:
    """Client of one file server.

    By default every call opens a connection, sends one request, reads the
    reply and closes (as the course's clients do).  With ``persistent=True``
    one connection serves many calls; after *any* error (including an ERROR
    reply) it is discarded and the next call connects again, so a socket in
    an unknown state is never reused.  A LIST or GET that finds its reused
    connection already closed by the server (idle timeout) is retried once
    on a fresh one.

    ``timeout`` (seconds) bounds each socket operation: the connect, each
    send and each receive; it is not a limit on a whole transfer.

    After each call, ``last_request_bytes`` and ``last_reply_bytes`` hold the
    raw bytes sent and received for it (partial counts if it failed), and
    ``connections_opened`` counts the connections made so far.
    """

    def __init__(self, host: str, port: int = DEFAULT_PORT, timeout: float | None = 30.0,
                 persistent: bool = False):
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"invalid port {port!r}: expected an integer in 1..65535")
        if not host or not isinstance(host, str):
            raise ValueError(f"invalid host {host!r}")
        self.host = host
        self.port = port
        self.timeout = timeout
        self.persistent = persistent
        self.last_request_bytes = 0
        self.last_reply_bytes = 0
        self.connections_opened = 0
        self._sock: socket.socket | None = None

    @classmethod
    def from_address(cls, address: str, default_port: int = DEFAULT_PORT, **kwargs) -> "FileClient":
        """A client for ``"tcp://h:p"``, ``"h:p"``, ``"h"`` or ``"[::1]:p"``."""
        host, port = parse_address(address, default_port)
        return cls(host, port, **kwargs)

    @property
    def address(self) -> str:
        return _format_address(self.host, self.port)

    def __repr__(self) -> str:
        state = ("connected" if self._sock is not None else "idle") if self.persistent \
            else "one connection per request"
        return f"<FileClient {self.address} timeout={self.timeout} {state}>"

    # -- lifecycle --------------------------------------------------------------
    def close(self) -> None:
        """Close the persistent connection, if any (the client stays usable)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> "FileClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- commands ---------------------------------------------------------------
    def list(self) -> list[str]:
        """Names of the files on the server."""
        request = wire.encode_request("LIST")

        def receive(sock):
            fields = self._read_small_reply(sock)
            names = fields.get("data")
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ClientProtocolError(
                    f"LIST reply from {self.address} has no list of names in 'data'")
            return names

        return self._exchange(lambda sock: self._send(sock, request), receive, retry=True)

    def get(self, name: str, dest=None, progress: Progress | None = None):
        """Download ``name``.

        With ``dest=None`` returns the content as ``bytes``.  Otherwise the
        content is streamed into ``dest`` in constant memory and the number of
        bytes written is returned: ``dest`` is a path (written to a temporary
        file beside it, renamed into place only when the whole file arrived,
        so a failure leaves no partial file and an existing file untouched)
        or a binary file object (written from its current position; on error
        it may hold part of the content).

        ``progress(n)`` is called with the size of each decoded piece.
        """
        _check_name(name)
        if dest is None:
            pieces: list[bytes] = []
            self._get_into(name, pieces.append, progress)
            return b"".join(pieces)
        if isinstance(dest, (str, os.PathLike)):
            return self._get_to_path(name, os.fspath(dest), progress)
        if hasattr(dest, "write"):
            return self._get_into(name, dest.write, progress)
        raise TypeError(f"dest must be None, a path or a binary file object, "
                        f"not {type(dest).__name__}")

    def upload(self, name: str, source, progress: Progress | None = None) -> str:
        """Upload ``source`` as ``name``; returns the server's message.

        ``source`` is ``bytes``-like content, a path (``str`` or PathLike) or a
        binary file object (read from its current position to its end).  It is
        read, encoded and sent in chunks, in constant memory.
        ``progress(n)`` is called with the number of content bytes in each
        batch handed to the socket.
        """
        _check_name(name)
        if isinstance(source, (bytes, bytearray, memoryview)):
            view = memoryview(source).cast("B")
            step = wire.FILE_CHUNK_BYTES
            return self._upload(name, (view[i:i + step] for i in range(0, len(view), step)),
                                progress)
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as file:
                return self._upload(name, _read_chunks(file), progress)
        if hasattr(source, "read"):
            return self._upload(name, _read_chunks(source), progress)
        raise TypeError(f"source must be bytes, a path or a binary file object, "
                        f"not {type(source).__name__}")

    def delete(self, name: str) -> str:
        """Delete ``name``; returns the server's message."""
        _check_name(name)
        request = wire.encode_request("DELETE", name)
        return self._exchange(lambda sock: self._send(sock, request),
                              lambda sock: self._message(self._read_small_reply(sock), "DELETE"),
                              retry=False)

    # -- GET ----------------------------------------------------------------------
    def _get_to_path(self, name: str, path: str, progress: Progress | None) -> int:
        directory, base = os.path.split(os.path.abspath(path))
        temp_path, fd = _create_temp(directory, base)
        try:
            with os.fdopen(fd, "wb") as file:
                written = self._get_into(name, file.write, progress)
            os.replace(temp_path, path)
        except BaseException:
            try:
                os.unlink(temp_path)
            except OSError:
                pass
            raise
        return written

    def _get_into(self, name: str, write: Callable[[bytes], object],
                  progress: Progress | None) -> int:
        request = wire.encode_request("GET", name)

        def receive(sock) -> int:
            written = 0
            decoder = wire.ReplyDecoder()
            start = self._next_event(sock, decoder)
            fields = start.fields
            if fields.get("status") != "OK":
                self._finish(sock, decoder)
                raise ServerError(_error_message(fields))
            if fields.get("data_namafile") != name:
                raise ClientProtocolError(
                    f"GET {name!r}: reply from {self.address} names the file "
                    f"{fields.get('data_namafile')!r}")
            if start.streamed:
                while True:
                    event = self._next_event(sock, decoder)
                    if isinstance(event, wire.ReplyEnd):
                        break
                    write(event.data)
                    written += len(event.data)
                    if progress is not None:
                        progress(len(event.data))
                self._check_no_trailing(decoder)
                return written
            # a GET reply in an unusual key order arrives whole
            self._finish(sock, decoder)
            content = fields.get("data_file")
            if not isinstance(content, str):
                raise ClientProtocolError(f"GET reply from {self.address} has no data_file")
            try:
                base64 = wire.Base64Decoder()       # as strict as the streamed form
                data = base64.decode(content.encode("ascii"))
                base64.finish()
            except (UnicodeEncodeError, ValueError) as exc:
                raise ClientProtocolError(
                    f"GET reply from {self.address}: data_file is not valid base64: {exc}"
                ) from None
            write(data)
            if progress is not None and data:
                progress(len(data))
            return len(data)

        return self._exchange(lambda sock: self._send(sock, request), receive, retry=True)

    # -- UPLOAD -------------------------------------------------------------------
    def _upload(self, name: str, chunks, progress: Progress | None) -> str:
        def send(sock) -> None:
            request = wire.upload_request_stream(name)
            reported = 0                # content bytes already reported as sent
            for chunk in chunks:
                if not isinstance(chunk, (bytes, bytearray, memoryview)):
                    raise TypeError(f"upload source must be binary; read() returned "
                                    f"{type(chunk).__name__}")
                batch = request.encode(chunk)
                if batch:
                    self._send(sock, batch)
                    reported = _report(progress, request.content_bytes, reported)
            self._send(sock, request.finish())
            _report(progress, request.content_bytes, reported)

        def send_or_read_refusal(sock) -> None:
            try:
                send(sock)
            except ClientConnectionError as exc:
                # The server may have refused the upload (too large, say) and
                # closed: its ERROR reply, if it got through, says why.
                fields = self._try_read_refusal(sock)
                if fields is not None:
                    raise ServerError(_error_message(fields)) from exc
                raise

        return self._exchange(send_or_read_refusal,
                              lambda sock: self._message(self._read_small_reply(sock), "UPLOAD"),
                              retry=False)

    def _try_read_refusal(self, sock) -> dict | None:
        decoder = wire.ReplyDecoder()
        try:
            sock.settimeout(min(self.timeout or 1.0, 1.0))
            for _ in range(64):
                count = decoder.receive_into(sock.recv_into)
                self.last_reply_bytes += count
                event = decoder.next_event()
                if isinstance(event, wire.ReplyStart):
                    return event.fields if event.fields.get("status") == "ERROR" else None
                if not count:
                    return None
        except (OSError, wire.ProtocolError):
            return None
        return None

    # -- connection handling ----------------------------------------------------------
    def _exchange(self, send, receive, retry: bool):
        """Run one request on a connection; discard the connection on any error."""
        attempts = 2 if retry and self.persistent else 1
        for attempt in range(attempts):
            reused = self._sock is not None
            self.last_request_bytes = 0
            self.last_reply_bytes = 0
            sock = self._sock if reused else self._connect()
            self._sock = sock if self.persistent else None
            try:
                sock.settimeout(self.timeout)       # for every send and receive below
                send(sock)
                result = receive(sock)
            except _ClosedEarly:
                self._discard(sock)
                if reused and attempt + 1 < attempts:
                    continue        # a stale keep-alive connection: once more on a new one
                raise
            except BaseException:
                self._discard(sock)
                raise
            if not self.persistent:
                self._discard(sock)
            return result
        raise AssertionError("unreachable")

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise self._connection_error(exc, "cannot connect to") from exc
        self.connections_opened += 1
        try:
            # requests end with a small write right after big ones: avoid Nagle's delay
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return sock

    def _discard(self, sock: socket.socket) -> None:
        if self._sock is sock:
            self._sock = None
        try:
            sock.close()
        except OSError:
            pass

    def _connection_error(self, exc: BaseException, doing: str) -> ClientConnectionError:
        where = self.address
        if isinstance(exc, socket.timeout):
            return ClientTimeoutError(
                f"{doing} {where}: timed out after {self.timeout:g} s", self.host, self.port, exc)
        if isinstance(exc, socket.gaierror):
            return ClientConnectionError(
                f"{doing} {where}: cannot resolve host {self.host!r}: {exc.strerror or exc}",
                self.host, self.port, exc)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        reason = reason or type(exc).__name__
        return ClientConnectionError(f"{doing} {where}: {reason}", self.host, self.port, exc)

    def _io_error(self, exc: OSError, doing: str) -> ClientConnectionError:
        """A send/recv failure; a reset before any reply byte is a _ClosedEarly."""
        error = self._connection_error(exc, doing)
        if self.last_reply_bytes == 0 and _is_reset(exc):
            error = _ClosedEarly(error.message, self.host, self.port, exc)
        return error

    def _send(self, sock: socket.socket, data: bytes) -> None:
        try:
            sock.sendall(data)
        except OSError as exc:
            raise self._io_error(exc, "sending to") from exc
        self.last_request_bytes += len(data)

    def _receive(self, sock: socket.socket, decoder: wire.ReplyDecoder) -> None:
        """Receive what has arrived straight into the decoder's buffer."""
        try:
            count = decoder.receive_into(sock.recv_into)
        except OSError as exc:
            raise self._io_error(exc, "receiving from") from exc
        self.last_reply_bytes += count

    # -- reply reading --------------------------------------------------------------
    def _next_event(self, sock: socket.socket, decoder: wire.ReplyDecoder):
        """The decoder's next event, receiving as needed (never NEED_DATA)."""
        while True:
            try:
                event = decoder.next_event()
            except wire.ProtocolError as exc:
                raise ClientProtocolError(
                    f"bad reply from {self.address}: {exc.message}") from exc
            if isinstance(event, wire.ReplyClosed):
                raise _ClosedEarly(f"{self.address} closed the connection without "
                                   f"replying", self.host, self.port)
            if event is not wire.NEED_DATA:
                return event
            self._receive(sock, decoder)

    def _finish(self, sock: socket.socket, decoder: wire.ReplyDecoder) -> None:
        event = self._next_event(sock, decoder)
        if not isinstance(event, wire.ReplyEnd):
            raise ClientProtocolError(f"bad reply from {self.address}: unexpected {event!r}")
        self._check_no_trailing(decoder)

    def _check_no_trailing(self, decoder: wire.ReplyDecoder) -> None:
        if decoder.trailing_data:
            raise ClientProtocolError(
                f"bad reply from {self.address}: {len(decoder.trailing_data)} unexpected "
                f"bytes after the reply")

    def _read_small_reply(self, sock: socket.socket) -> dict:
        decoder = wire.ReplyDecoder()
        start = self._next_event(sock, decoder)
        if start.streamed:
            raise ClientProtocolError(f"bad reply from {self.address}: unexpected file content")
        self._finish(sock, decoder)
        fields = start.fields
        if fields.get("status") != "OK":
            raise ServerError(_error_message(fields))
        return fields

    def _message(self, fields: dict, verb: str) -> str:
        message = fields.get("data")
        if not isinstance(message, str):
            raise ClientProtocolError(
                f"{verb} reply from {self.address} has no message in 'data'")
        return message


# --------------------------------------------------------------------------
# helpers

def _error_message(fields: dict) -> str:
    message = fields.get("data")
    if message is None:
        return "the server reported an error without a message"
    return message if isinstance(message, str) else str(message)


def _report(progress: Progress | None, sent: int, reported: int) -> int:
    """Call ``progress`` with the content bytes sent since the last report."""
    if progress is not None and sent > reported:
        progress(sent - reported)
    return sent


def _is_reset(exc: OSError) -> bool:
    return isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)) \
        or getattr(exc, "errno", None) in (errno.ECONNRESET, errno.EPIPE)


def _read_chunks(file):
    """Chunks of a binary file object up to its end (a short read is not the end).

    A file with ``readinto`` is read into one buffer, reused for every chunk
    (the encoder keeps nothing of a chunk once it has encoded it).
    """
    readinto = getattr(file, "readinto", None)
    if readinto is None:
        while True:
            chunk = file.read(wire.FILE_CHUNK_BYTES)
            if chunk is None:
                _not_ready()
            if not chunk:
                return
            yield chunk
    buffer = memoryview(bytearray(wire.FILE_CHUNK_BYTES))
    while True:
        count = readinto(buffer)
        if count is None:
            _not_ready()
        if not count:
            return
        yield buffer[:count]


def _not_ready():
    # a non-blocking raw file with nothing ready
    raise OSError(errno.EAGAIN, "upload source is non-blocking and has no data ready")


def _create_temp(directory: str, base: str) -> tuple[str, int]:
    """A new, exclusively created file beside the destination (mode from umask)."""
    for _ in range(100):
        temp_path = os.path.join(directory, f".{base[:200]}.{secrets.token_hex(6)}.part")
        try:
            fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        return temp_path, fd
    raise FileExistsError(errno.EEXIST, "cannot create a temporary file", directory)
