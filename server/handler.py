"""One client connection: socket <-> wire decoder <-> storage.

``ConnectionHandler.handle(sock, address, slot)`` serves requests on one
connection until the client closes it, goes silent for ``timeout``
seconds, breaks the protocol beyond repair, or the server is stopping and
the connection is between requests.  It knows nothing of pools: the pool
calls it from whichever thread or process it runs, with that worker's
stats slot.

GET replies are streamed (file read in chunks whose size is a multiple of
3, so each chunk's base64 is independent), UPLOAD content is decoded as it
arrives into a temporary file: memory per connection is bounded by
``wire.RECV_BYTES`` and ``wire.SEND_BATCH_BYTES`` whatever the file size.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from typing import Callable

import wire
from wire import (NEED_DATA, Command, ProtocolError, UploadData, UploadEnd, UploadStart,
                  error_reply, ok_reply)

from .config import ServerConfig
from .logbuffer import AccessLog
from .storage import Storage, StorageError

__all__ = ["ConnectionHandler"]

log = logging.getLogger("server.connection")
access_log = AccessLog(log)


class _Closed(Exception):
    """The peer went away or the connection must end now."""


class ConnectionHandler:
    POLL_SECONDS = 1.0                  # how often an idle connection checks for shutdown
    LINGER_SECONDS = 2.0                # after a fatal error, drain so the reply is not reset
    LINGER_BYTES = 16 * 1024 * 1024

    def __init__(self, storage: Storage, config: ServerConfig,
                 should_stop: Callable[[], bool] = lambda: False):
        self.storage = storage
        self.timeout = config.timeout
        self.max_line_bytes = config.max_line_bytes
        self.max_upload_bytes = config.max_upload_bytes
        self.should_stop = should_stop

    def handle(self, sock: socket.socket, address, slot) -> None:
        connection = _Connection(sock, address, slot, self)
        slot.connection_opened(address)
        try:
            connection.serve()
        except Exception:
            log.exception("unexpected error serving %s", connection.peer)
        finally:
            connection.close()
            slot.connection_closed()
            connection.log_summary()


class _Connection:
    """State of one connection while it is served."""

    def __init__(self, sock, address, slot, handler: ConnectionHandler):
        self.sock = sock
        self.peer = _format_peer(address)
        self.slot = slot
        self.handler = handler
        self.storage = handler.storage
        self.decoder = wire.RequestDecoder(handler.max_line_bytes, handler.max_upload_bytes)
        self.upload = None
        self.started = time.monotonic()
        self.last_activity = self.started
        self.requests = 0
        self.bytes_in = 0
        self.bytes_out = 0
        # Kernel timeouts on a blocking socket: a recv or send is one system
        # call (Python's own timeouts add a poll() before each), and an expired
        # timeout surfaces as BlockingIOError (EAGAIN).
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                        _timeval(min(handler.POLL_SECONDS, handler.timeout)))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(handler.timeout))
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- main loop ------------------------------------------------------------
    def serve(self) -> None:
        try:
            while True:
                try:
                    event = self.decoder.next_event()
                except ProtocolError as exc:
                    self.reject(exc)
                    if exc.fatal:
                        self.linger()
                        return
                    continue
                if event is NEED_DATA:
                    if self.decoder.state == self.decoder.CLOSED or not self.receive():
                        return
                    continue
                self.dispatch(event)
        except _Closed:
            return
        finally:
            if self.upload is not None:
                self.upload.abort()
                self.upload = None

    def receive(self) -> bool:
        """Read more bytes into the decoder; False when the connection should end."""
        while True:
            if not self.decoder.in_request and self.handler.should_stop():
                return False
            try:
                data = self.sock.recv(wire.RECV_BYTES)
            except BlockingIOError:     # SO_RCVTIMEO expired: a poll tick
                silent = time.monotonic() - self.last_activity
                if silent < self.handler.timeout:
                    continue
                if self.decoder.in_request:
                    self.reject(ProtocolError(
                        f"timed out after {self.handler.timeout:g} s waiting for the rest "
                        f"of the request", fatal=True))
                return False
            except OSError:
                return False
            self.last_activity = time.monotonic()
            self.count_in(len(data))
            if not data and not self.decoder.in_request:
                return False          # clean close between requests
            self.decoder.receive_data(data)
            return True

    def dispatch(self, event) -> None:
        if isinstance(event, UploadData):
            self.write_upload(event.data)
        elif isinstance(event, UploadStart):
            self.start_upload(event.name)
        elif isinstance(event, UploadEnd):
            self.finish_upload()
        elif isinstance(event, Command):
            getattr(self, f"do_{event.verb.lower()}")(event)

    # -- commands ---------------------------------------------------------------
    def do_list(self, command: Command) -> None:
        self.reply("LIST", ok_reply(self.storage.list_names()))

    def do_delete(self, command: Command) -> None:
        try:
            self.storage.delete(command.name)
        except StorageError as exc:
            self.reply("DELETE", error_reply(str(exc)), ok=False)
            return
        self.reply("DELETE", ok_reply(f"file {command.name} deleted"))

    def do_get(self, command: Command) -> None:
        try:
            source = self.storage.open_read(command.name)
        except StorageError as exc:
            self.reply("GET", error_reply(str(exc)), ok=False)
            return
        with source:
            self.stream_file(command.name, source)

    def stream_file(self, name: str, source) -> None:
        reply = wire.get_reply_stream(name)
        while chunk := source.read(wire.FILE_CHUNK_BYTES):
            batch = reply.encode(chunk)
            if batch:
                self.send(batch)
        last = reply.finish()
        self.finish_request("GET", ok=True)
        self.send(last)

    def start_upload(self, name: str) -> None:
        try:
            self.upload = self.storage.start_upload(name)
        except (StorageError, OSError) as exc:
            self.decoder.skip_upload()
            self.reply("UPLOAD", error_reply(_storage_message(exc, name)), ok=False)

    def write_upload(self, data: bytes) -> None:
        if self.upload is None:
            return
        try:
            self.upload.write(data)
        except OSError as exc:
            upload, self.upload = self.upload, None
            upload.abort()
            self.decoder.skip_upload()
            self.reply("UPLOAD", error_reply(_storage_message(exc, upload.name)), ok=False)

    def finish_upload(self) -> None:
        upload, self.upload = self.upload, None
        if upload is None:
            return                      # already refused and answered
        try:
            upload.commit()
        except (StorageError, OSError) as exc:
            upload.abort()
            self.reply("UPLOAD", error_reply(_storage_message(exc, upload.name)), ok=False)
            return
        self.reply("UPLOAD", ok_reply(f"file {upload.name} uploaded ({upload.size} bytes)"))

    # -- replies ------------------------------------------------------------------
    def reject(self, error: ProtocolError) -> None:
        command = "UPLOAD" if self.upload is not None else "OTHER"
        if self.upload is not None:
            self.upload.abort()
            self.upload = None
        try:
            self.reply(command, error_reply(error.message), ok=False)
        except _Closed:
            if not error.fatal:
                raise

    def reply(self, command: str, payload: bytes, ok: bool = True) -> None:
        self.finish_request(command, ok)
        self.send(payload)

    def finish_request(self, command: str, ok: bool) -> None:
        """Count the request; called before its last bytes go out, so a client
        holding a whole reply always finds it in /stats."""
        self.requests += 1
        self.slot.request_done(command, ok)

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise _Closed() from exc
        self.last_activity = time.monotonic()
        self.count_out(len(data))

    def count_in(self, size: int) -> None:
        self.bytes_in += size
        self.slot.add_bytes(received=size)

    def count_out(self, size: int) -> None:
        self.bytes_out += size
        self.slot.add_bytes(sent=size)

    # -- closing ------------------------------------------------------------------
    def linger(self) -> None:
        """Half-close and drain briefly, so the peer reads our error reply
        instead of a reset caused by its unread bytes."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + self.handler.LINGER_SECONDS
            drained = 0
            while drained < self.handler.LINGER_BYTES and time.monotonic() < deadline:
                self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
                data = self.sock.recv(wire.RECV_BYTES)
                if not data:
                    break
                drained += len(data)
                self.count_in(len(data))
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def log_summary(self) -> None:
        seconds = max(time.monotonic() - self.started, 1e-6)
        rate = (self.bytes_in + self.bytes_out) / 1024 / seconds
        access_log.info(f"client {self.peer} closed: {self.requests} requests, "
                        f"in {_size(self.bytes_in)}, out {_size(self.bytes_out)}, "
                        f"{seconds:.3f} s, {rate:.1f} KB/s")


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1e6))


def _storage_message(exc: Exception, name: str) -> str:
    if isinstance(exc, StorageError):
        return str(exc)
    return f"cannot store {name!r}: {getattr(exc, 'strerror', None) or exc}"


def _format_peer(address) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address) or "local"


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"
