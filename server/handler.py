"""One client connection: socket <-> wire decoder <-> storage, advanced by a worker.

``ConnectionHandler.open(sock, address, slot)`` wraps an accepted socket in
a ``Connection``.  A worker calls ``Connection.advance()`` whenever the
socket is ready: it reads, serves every request that has fully arrived,
and returns what it must wait for next (``WAIT_READ``, ``WAIT_WRITE``) or
``CLOSED``.  It knows nothing of pools: the worker that calls it may be a
thread or a process, and ``handle()`` serves one connection to its end on
its own (tests and simple callers).

A request is served by one worker from start to end, and a worker serves
one request at a time.  What the worker does not do is wait for a slow
peer:

* a connection whose next request has not fully arrived (idle, or a
  request line still trickling in) is handed back at once, so idle and
  slowloris clients hold no worker;
* in the middle of an UPLOAD body or a reply (what the socket does not
  take at once is queued and sent from ``_advance``), a peer that has kept
  the worker waiting for ``PARK_AFTER_SECONDS`` in all during one
  ``advance()`` (a turn) gets the
  same treatment: the transfer is parked with its state (decoder,
  temporary file, open file and encoder) and resumed when the peer is
  ready again;
* pipelined requests are served one after another, but no new one starts
  after ``TURN_SECONDS`` of a turn: ``advance()`` returns ``READY`` and
  the worker gives its other connections their turn first.

Deadlines (``deadline()``, enforced by ``expire()``): a connection silent
for ``timeout`` seconds is closed; a request line must arrive within
``request_timeout`` seconds of its first byte; an UPLOAD body or a GET
reply slower on average than ``min_rate`` bytes/s (checked once it has
run ``request_timeout`` seconds) is cut.  Whatever happens in the middle of
a request gets an ERROR reply when one can still be sent.

GET replies are streamed (file read in chunks whose size is a multiple of
3, so each chunk's base64 is independent), UPLOAD content is decoded as it
arrives into a temporary file: memory per connection is bounded by
``wire.RECV_BYTES`` and ``wire.SEND_BATCH_BYTES`` whatever the file size.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from typing import Callable

import wire
from wire import (NEED_DATA, Command, ProtocolError, UploadData, UploadEnd, UploadStart,
                  error_reply, ok_reply)

from .config import ServerConfig
from .logbuffer import AccessLog
from .storage import Storage, StorageError

__all__ = ["ConnectionHandler", "Connection", "WAIT_READ", "WAIT_WRITE", "READY", "CLOSED"]

log = logging.getLogger("server.connection")
access_log = AccessLog(log)

WAIT_READ = select.EPOLLIN
WAIT_WRITE = select.EPOLLOUT
CLOSED = 0
READY = -1          # more to do at once: the worker's turn with this connection is over


class _Closed(Exception):
    """The peer went away or the connection must end now."""


class _Parked(Exception):
    """The peer stalled: hand the connection back until it is ready.
    ``_Parked(wait)``: what to wait for (no ``__init__``: raised on every connection)."""

    @property
    def wait(self) -> int:
        return self.args[0]


class ConnectionHandler:
    # A worker's turn with one connection: it waits for the peer at most
    # PARK_AFTER_SECONDS in all, and starts no new pipelined request after
    # TURN_SECONDS; then the connection is parked and the worker moves on.
    PARK_AFTER_SECONDS = 0.2
    TURN_SECONDS = 0.2
    # a turn this long is a long one: a transfer then calls Connection.long_turn
    LONG_TURN_SECONDS = 0.005
    LINGER_SECONDS = 2.0                # after a fatal error, drain so the reply is not reset
    LINGER_BYTES = 1024 * 1024          # ... but not much: a refused body is not read on and on

    def __init__(self, storage: Storage, config: ServerConfig,
                 should_stop: Callable[[], bool] = lambda: False):
        self.storage = storage
        self.timeout = config.timeout
        self.request_timeout = config.request_timeout
        self.min_rate = config.min_rate
        self.max_line_bytes = config.max_line_bytes
        self.max_upload_bytes = config.max_upload_bytes
        self.should_stop = should_stop
        self._local = threading.local()

    def chunk_buffer(self) -> bytearray:
        """The calling worker's buffer for reading a file piece (the encoder
        keeps nothing of it): one per thread, reused for every GET."""
        buffer = getattr(self._local, "chunk", None)
        if buffer is None:
            buffer = self._local.chunk = bytearray(wire.FILE_CHUNK_BYTES)
        return buffer

    def open(self, sock: socket.socket, address, slot) -> "Connection":
        return Connection(sock, address, slot, self)

    def handle(self, sock: socket.socket, address, slot) -> None:
        """Serve one connection until it ends, waiting on its socket in between."""
        slot.connection_opened()
        connection = self.open(sock, address, slot)
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        wait = connection.advance()
        while wait != CLOSED:
            if wait == READY:
                wait = connection.advance()
                continue
            poller.modify(sock, wait)
            seconds = max(min(connection.deadline(), time.monotonic() + 1.0)
                          - time.monotonic(), 0)
            if poller.poll(seconds * 1000):
                wait = connection.advance()
            elif self.should_stop() and not connection.in_request:
                connection.close()
                wait = CLOSED
            elif time.monotonic() >= connection.deadline():
                connection.expire()
                wait = CLOSED


class Connection:
    """State of one connection, from accept to close."""

    # what every connection starts with (a connection sets its own as they change)
    upload = None
    delivery: "_Delivery | None" = None
    request_started: float | None = None    # first byte of the current request
    request_bytes = 0                       # moved for the current request
    requests = 0
    answered = False                        # the current request got its reply
    bytes_in = 0
    bytes_out = 0
    closed = False
    _turn_started = _waited = 0.0
    _turn_requests = 0
    _pushed_back = None         # a request decoded but left for the next turn
    _serving = False
    # held while the socket is closed, by whoever may shut it down from another
    # thread (the worker sets its own: the pool's cut), so that it never meets a
    # reused number
    close_lock = contextlib.nullcontext()
    # called when this turn holds its worker long: a transfer has gone on for
    # LONG_TURN_SECONDS, or the worker waits for the peer (the worker loop
    # passes its accept token on)
    long_turn = staticmethod(lambda: None)
    _decoder: "wire.RequestDecoder | None" = None

    def __init__(self, sock, address, slot, handler: ConnectionHandler):
        self.sock = sock
        self.fd = sock.fileno()
        self.address = address
        self.peer = _format_peer(address)
        self.slot = slot
        self.handler = handler
        self.storage = handler.storage
        self.started = self.last_activity = time.monotonic()
        sock.setblocking(False)

    def fileno(self) -> int:
        """The socket's descriptor number, also once closed (the worker's key)."""
        return self.fd

    @property
    def decoder(self) -> wire.RequestDecoder:
        """The connection's request decoder, made at its first need: a request
        that arrives whole is served without one (``_serve_arrival``)."""
        decoder = self._decoder
        if decoder is None:
            handler = self.handler
            decoder = self._decoder = wire.RequestDecoder(handler.max_line_bytes,
                                                          handler.max_upload_bytes)
        return decoder

    def _between_requests(self) -> bool:
        """No byte of a request is buffered or decoded, no reply is going out:
        the next turn starts with a receive (``_serve_arrival``)."""
        decoder = self._decoder
        return (self.delivery is None and self._pushed_back is None
                and (decoder is None or not decoder.in_request))

    @property
    def in_request(self) -> bool:
        """Part of a request has arrived, a worker is serving one (its reply may
        not be out yet), or a reply is still going out."""
        return (self._serving or self.delivery is not None
                or (self._decoder is not None and self._decoder.in_request))

    @property
    def in_transfer(self) -> bool:
        """An UPLOAD body or a GET reply is under way (a worker has started it)."""
        decoder = self._decoder
        return self.delivery is not None or (decoder is not None and decoder.state in (
            decoder.UPLOAD_BODY, decoder.SKIP_BODY, decoder.UPLOAD_ENDING))

    # -- what a worker calls ----------------------------------------------------
    def advance(self) -> int:
        """Serve what the peer allows now, for one turn; returns WAIT_READ,
        WAIT_WRITE, READY (call again when the others had their turn) or CLOSED."""
        if self.closed:
            return CLOSED
        self._turn_started = time.monotonic()
        self._waited = 0.0
        self._turn_requests = 0
        try:
            if self._between_requests():
                wait = self._serve_arrival()
                if wait is not None:
                    return wait
            self._advance()
        except _Parked as parked:
            self._stop_serving()
            return parked.wait
        except _Closed:
            pass
        except Exception:
            log.exception("unexpected error serving %s", self.peer)
        self._stop_serving()
        self.close()
        return CLOSED

    def deadline(self) -> float:
        """The monotonic time at which a parked connection is given up."""
        return self._deadline()[0]

    def _deadline(self) -> tuple[float, str]:
        """(when, why): the earliest of the deadlines that apply now."""
        handler = self.handler
        deadlines = [(self.last_activity + handler.timeout,
                      f"timed out after {handler.timeout:g} s waiting for the rest "
                      f"of the request")]
        if self.request_started is not None and not self.in_transfer:
            deadlines.append((self.request_started + handler.request_timeout,
                              f"request not complete after {handler.request_timeout:g} s; "
                              f"closing the connection"))
        elif self.request_started is not None:
            deadlines.append((self._too_slow_at(),
                              f"transfer slower than {handler.min_rate} bytes/s; "
                              f"closing the connection"))
        return min(deadlines)

    def expire(self) -> None:
        """The deadline passed while parked: an ERROR reply if one can be sent, then close."""
        if not self.closed:
            reason = self._deadline()[1]
            if self.in_request:
                log.info("closing %s: %s", self.peer, reason)
            if self.in_request and self.delivery is None and not self.answered:
                self._reject_quietly(ProtocolError(reason, fatal=True))
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.upload is not None:
            self.upload.abort()
            self.upload = None
        if self.delivery is not None:
            self.delivery.close()
            self.delivery = None
        with self.close_lock:
            try:
                self.sock.close()
            except OSError:
                pass
        self.log_summary()

    # -- the loop -----------------------------------------------------------------
    def _serve_arrival(self) -> int | None:
        """The start of a turn between requests: receive, and when what came is
        one whole request (as usual), serve it without the general loop.
        Returns what to wait for, or None: ``_advance`` goes on from here."""
        try:
            data = self.sock.recv(wire.SMALL_RECV_BYTES)
        except BlockingIOError:
            if self.handler.should_stop():
                raise _Closed() from None
            return WAIT_READ
        except OSError:
            raise _Closed() from None
        if not data:                     # a clean close between requests
            self.close()
            return CLOSED
        self.last_activity = self.request_started = self._turn_started
        self.count_in(len(data))
        # nothing is buffered between requests: no decoder needed if it came whole
        command = wire.whole_request(data, self.handler.max_line_bytes)
        if command is None:
            self.decoder.receive_data(data)
            return None
        self._turn_requests = 1
        self._start_serving()
        self._COMMANDS[command.verb](self, command)
        if self.delivery is not None or self.handler.should_stop():
            return None                  # a reply still going out; or stopping (see _advance)
        self._request_finished()
        self._stop_serving()
        return WAIT_READ

    def _advance(self) -> None:
        decoder = self.decoder
        while True:
            if self.delivery is not None:
                self._start_serving()
                self._deliver()
                continue
            skipping = decoder.state == decoder.SKIP_BODY
            try:
                event, self._pushed_back = self._pushed_back or decoder.next_event(), None
            except ProtocolError as exc:
                if not (skipping and exc.fatal and self.answered):
                    self.reject(exc)      # else: an upload refused already broke a limit too
                else:
                    log.info("protocol error from %s: %s", self.peer, exc.message)
                if exc.fatal:
                    try:
                        self._flush_before_closing(patience=self.handler.LINGER_SECONDS)
                    except _Closed:
                        pass
                    self.linger()
                    raise _Closed() from None
                if not self.in_transfer:
                    self._request_finished()
                continue
            if event is NEED_DATA:
                if decoder.state == decoder.CLOSED:
                    raise _Closed()
                if self.answered and not self.in_transfer:
                    self._request_finished()  # a refused upload's body was skipped to its end
                if (self._turn_requests and not decoder.in_request
                        and not self.handler.should_stop()):
                    # answered, and nothing of another request is here: a client
                    # usually reads its reply before it sends more, so a receive
                    # now would find nothing (epoll wakes the worker when it comes).
                    # Not when stopping: it reads, so a peer already gone is closed now.
                    raise _Parked(WAIT_READ)
                self._receive()
                continue
            if self.answered and isinstance(event, (Command, UploadStart)):
                self._request_finished()  # a refused upload's body was skipped to its end
            if isinstance(event, (Command, UploadStart)):
                if (self._turn_requests and
                        time.monotonic() - self._turn_started >= self.handler.TURN_SECONDS):
                    self._pushed_back = event     # pipelined: the others first
                    raise _Parked(READY)
                self._turn_requests += 1
            self._start_serving()
            self._dispatch(event)
            if not self.in_transfer:
                self._request_finished()

    def _receive(self) -> None:
        """Read what has arrived into the decoder; parks when nothing has.  When
        the server is stopping, a connection with no request under way ends."""
        decoder = self.decoder
        while True:
            try:
                if decoder.state in decoder.BULK_STATES:
                    # a file arriving: straight into the decoder's buffer
                    count = decoder.receive_into(self.sock.recv_into)
                else:
                    data = self.sock.recv(wire.SMALL_RECV_BYTES)
                    count = len(data)
                    decoder.receive_data(data)
                break
            except BlockingIOError:
                if not self.in_request and self.handler.should_stop():
                    raise _Closed() from None
                self._wait_for_peer(WAIT_READ)
            except OSError:
                raise _Closed() from None
        self.last_activity = time.monotonic()
        self.count_in(count)
        if self.in_transfer:
            self.request_bytes += count
        if not count and not decoder.in_request:
            raise _Closed()              # a clean close between requests
        if self.request_started is None:
            self.request_started = self.last_activity

    def _wait_for_peer(self, wait: int) -> None:
        """In a transfer, wait briefly for the peer; otherwise (or if it stalls) park."""
        if not self.in_transfer:
            raise _Parked(wait)
        if time.monotonic() >= self._too_slow_at():
            raise _Parked(wait)          # expire() answers it
        patience = self.handler.PARK_AFTER_SECONDS - self._waited
        if patience <= 0:
            raise _Parked(wait)          # this turn has waited long enough for the peer
        self.long_turn()
        poller = select.poll()
        poller.register(self.sock, wait)
        started = time.monotonic()
        ready = poller.poll(patience * 1000)
        self._waited += time.monotonic() - started
        if not ready:
            raise _Parked(wait)

    def _note_long_turn(self) -> None:
        if time.monotonic() - self._turn_started >= self.handler.LONG_TURN_SECONDS:
            self.long_turn()

    def _too_slow_at(self) -> float:
        """When the current transfer will have been slower than min_rate for too long."""
        if not self.handler.min_rate or self.request_started is None:
            return float("inf")
        grace = self.handler.request_timeout
        return self.request_started + max(grace, self.request_bytes / self.handler.min_rate)

    def _start_serving(self) -> None:
        if not self._serving:
            self._serving = True
            self.slot.serving(self.address)

    def _stop_serving(self) -> None:
        if self._serving:
            self._serving = False
            self.slot.done_serving()

    def _request_finished(self) -> None:
        self.answered = False
        self.request_started = None
        self.request_bytes = 0
        if self._decoder is not None and self._decoder.in_request:  # a pipelined one began
            self.request_started = time.monotonic()

    def _dispatch(self, event) -> None:
        if isinstance(event, Command):
            self._COMMANDS[event.verb](self, event)
        elif isinstance(event, UploadData):
            self.write_upload(event.data)
        elif isinstance(event, UploadStart):
            self.start_upload(event.name)
        elif isinstance(event, UploadEnd):
            self.finish_upload()

    # -- commands ---------------------------------------------------------------
    def do_list(self, command: Command) -> None:
        try:
            names = self.storage.list_names()
        except StorageError as exc:
            self.reply("LIST", error_reply(str(exc)), ok=False)
            return
        self.reply("LIST", ok_reply(names))

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
        self.delivery = _Delivery(command.name, source)

    _COMMANDS = {"LIST": do_list, "DELETE": do_delete, "GET": do_get}

    def _deliver(self) -> None:
        """Send the GET reply under way, reading and encoding the file as it goes."""
        delivery = self.delivery
        while True:
            if delivery.pieces:
                self._send_some(delivery)
                continue
            if delivery.finished:
                delivery.close()
                self.delivery = None
                if not self.in_transfer:     # not a refused upload's body still arriving
                    self._request_finished()
                return
            self._note_long_turn()
            try:
                chunk_buffer = self.handler.chunk_buffer()
                with memoryview(chunk_buffer) as whole:
                    count = delivery.source.readinto(whole)
                    chunk = whole[:count]
                    batch = delivery.reply.encode_pieces(chunk) if count else []
                    chunk.release()
            except OSError as exc:
                # the reply has begun: the client can only see a short reply
                log.error("reading %r for %s failed: %s", delivery.name, self.peer,
                          exc.strerror or exc)
                raise _Closed() from None
            if count:
                delivery.queue(batch)
            else:
                delivery.queue(delivery.reply.finish_pieces())
                delivery.finished = True
                self.finish_request("GET", ok=True)

    def _send_some(self, delivery: "_Delivery") -> None:
        pieces = delivery.pieces
        try:
            # a GET's batch is several pieces (see wire.ENCODE_PIECE_BYTES): one gather write
            sent = self.sock.send(pieces[0]) if len(pieces) == 1 else self.sock.sendmsg(pieces)
        except BlockingIOError:
            self._wait_for_peer(WAIT_WRITE)
            return
        except OSError:
            raise _Closed() from None
        delivery.sent(sent)
        self._reply_bytes_sent(sent)

    def _reply_bytes_sent(self, count: int) -> None:
        self.last_activity = time.monotonic()
        self.request_bytes += count
        self.count_out(count)

    def start_upload(self, name: str) -> None:
        try:
            self.upload = self.storage.start_upload(name)
        except (StorageError, OSError) as exc:
            self.decoder.skip_upload()
            self.reply("UPLOAD", error_reply(_storage_message(exc, name)), ok=False)

    def write_upload(self, data: bytes) -> None:
        self._note_long_turn()
        if self.upload is None:
            return
        try:
            self.upload.write(data)
        except (StorageError, OSError) as exc:
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
        except BaseException:
            upload.abort()
            raise
        self.reply("UPLOAD", ok_reply(f"file {upload.name} uploaded ({upload.size} bytes)"))

    # -- replies ------------------------------------------------------------------
    def reject(self, error: ProtocolError) -> None:
        log.info("protocol error from %s: %s", self.peer, error.message)
        command = "UPLOAD" if self.upload is not None else "OTHER"
        if self.upload is not None:
            self.upload.abort()
            self.upload = None
        self._start_serving()
        self.reply(command, error_reply(error.message), ok=False)

    def _reject_quietly(self, error: ProtocolError) -> None:
        """An ERROR reply on the way out, if the socket takes it now."""
        try:
            self.reject(error)
            self._flush_before_closing(patience=0.0)
        except (_Closed, _Parked):
            pass
        self._stop_serving()

    def reply(self, command: str, payload: bytes, ok: bool = True) -> None:
        """Count the request and send its reply, as much as the socket takes
        now; ``_advance`` sends the rest (and parks the connection if the
        peer does not take it).  Called only with no reply under way."""
        self.finish_request(command, ok)
        try:
            sent = self.sock.send(payload)
        except BlockingIOError:
            sent = 0
        except OSError:
            raise _Closed() from None
        if sent:
            self._reply_bytes_sent(sent)
        if sent < len(payload):
            self.delivery = _Delivery(payload=memoryview(payload)[sent:])

    def _flush_before_closing(self, patience: float) -> None:
        """The queued reply, sent now (waiting up to ``patience`` s for the peer):
        the connection is about to end."""
        delivery, self.delivery = self.delivery, None
        if delivery is None:
            return
        delivery.close()
        self.send(delivery.unsent, patience)

    def finish_request(self, command: str, ok: bool) -> None:
        """Count the request; called before its last bytes go out, so a client
        holding a whole reply always finds it in /stats."""
        self.answered = True
        self.requests += 1
        self.slot.request_done(command, ok)

    def send(self, data, patience: float) -> None:
        """All of ``data`` now, waiting up to ``patience`` s in all for the peer."""
        view = memoryview(data)
        deadline = time.monotonic() + patience
        while view:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                poller = select.poll()
                poller.register(self.sock, select.POLLOUT)
                if not poller.poll(max(deadline - time.monotonic(), 0) * 1000):
                    raise _Closed() from None
                continue
            except OSError:
                raise _Closed() from None
            view = view[sent:]
            self.count_out(sent)
        self.last_activity = time.monotonic()

    def count_in(self, size: int) -> None:
        self.bytes_in += size
        self.slot.received(size)

    def count_out(self, size: int) -> None:
        self.bytes_out += size
        self.slot.sent(size)

    # -- closing ------------------------------------------------------------------
    def linger(self) -> None:
        """Half-close and drain briefly, so the peer reads our error reply
        instead of a reset caused by its unread bytes."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + self.handler.LINGER_SECONDS
            drained = 0
            poller = select.poll()
            poller.register(self.sock, select.POLLIN)
            while drained < self.handler.LINGER_BYTES and time.monotonic() < deadline:
                if not poller.poll(max(deadline - time.monotonic(), 0.01) * 1000):
                    break
                data = self.sock.recv(wire.RECV_BYTES)
                if not data:
                    break
                drained += len(data)
                self.count_in(len(data))
        except OSError:
            pass

    def log_summary(self) -> None:
        seconds = max(time.monotonic() - self.started, 1e-6)
        rate = (self.bytes_in + self.bytes_out) / 1024 / seconds
        access_log.info(f"client {self.peer} closed: {self.requests} requests, "
                        f"in {_size(self.bytes_in)}, out {_size(self.bytes_out)}, "
                        f"{seconds:.3f} s, {rate:.1f} KB/s")


class _Delivery:
    """A reply under way and the bytes of it not yet sent (``pieces``, none
    empty): the rest of a small reply the socket did not take at once
    (``payload``), or a GET's, read from its open file and encoded as it goes."""

    __slots__ = ("name", "source", "reply", "pieces", "finished")

    def __init__(self, name: str | None = None, source=None, payload=b""):
        self.name = name
        self.source = source
        self.reply = wire.get_reply_stream(name) if source is not None else None
        self.pieces = [payload] if payload else []
        self.finished = source is None

    @property
    def unsent(self) -> bytes:
        """What is left to send, as one buffer."""
        return b"".join(self.pieces)

    def close(self) -> None:
        if self.source is not None:
            self.source.close()

    def queue(self, pieces: list) -> None:
        self.pieces += pieces

    def sent(self, count: int) -> None:
        """The first ``count`` bytes of ``pieces`` went out."""
        pieces = self.pieces
        done = 0
        while done < len(pieces) and count >= len(pieces[done]):
            count -= len(pieces[done])
            done += 1
        del pieces[:done]
        if count:
            pieces[0] = memoryview(pieces[0])[count:]


def _storage_message(exc: Exception, name: str) -> str:
    if isinstance(exc, StorageError):
        return str(exc)
    return f"cannot store {name!r}: {getattr(exc, 'strerror', None) or exc}"


def _format_peer(address) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address) or "local"


_BYTES = tuple(f"{count} B" for count in range(1000))


def _size(count: int) -> str:
    if count < 1000:
        return _BYTES[count]
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"
