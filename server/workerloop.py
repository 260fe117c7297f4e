"""What every worker runs, thread or process: accept, wait for requests, serve one at a time.

A worker owns an epoll set holding the shared listening socket (with
``EPOLLEXCLUSIVE``, so a new connection wakes one idle worker, not all of
them) and the connections it has accepted.  When a connection's socket is
ready the worker calls ``Connection.advance()``, which serves every request
that has fully arrived and hands the connection back when it must wait for
its peer (see ``server.handler``).  So a connection occupies its worker
only while a request is being served: idle connections, request lines
still trickling in and stalled transfers wait in the epoll set, and the
worker meanwhile accepts and serves others.

When the pool has more workers than CPUs, only a few of its idle workers
wait for new connections at a time: those holding one of the pool's
``AcceptTokens``; the others wait for a token.  Without them every idle
worker would wait on the listener, and under load each connection would
wake another of many processes or threads, to serve one request and sleep
again; with them one worker, or a few, serve the short requests back to back
(LIST at 50 clients, process mode: about 25 % less server CPU per request
with one token per CPU, 10-20 % less again with one).  One token is in play
at first; the pool brings in more, up to ``FS_ACCEPTORS`` (one per CPU by
default), while the holders keep a CPU busy per token, and asks for one to
retire when they do not (``AcceptTokens.adjust``): every holder counts the
CPU it used holding a token in its stats row, and the next holder of an
extra token to pass it on or reach its tick retires it.  A holder passes its
token on while a turn holds it long (a transfer has gone on for
``ConnectionHandler.LONG_TURN_SECONDS``, or it waits for a peer), after a
turn that took that long anyway, when it falls behind (a pass of its loop
took ``SPREAD_BEHIND_SECONDS``: a new connection waited about as long to be
accepted) or holds ``SPREAD_CONNECTIONS`` connections (then it leaves new
connections to the other idle workers for a moment), and when it stops
accepting.  A worker process that dies holding a token has it given back by
its pool.  And once a tick an idle worker without a token accepts a
connection if one is waiting, so that holders all stuck in long turns (a
slow disk, say) do not stop the server from accepting.  When the pool
stops, it fills the pipe so that the workers waiting for a token wake up.
The idea is nginx's ``accept_mutex``, with tokens instead of a lock so that
an idle worker can wait for one in its epoll set.

The server holds at most ``FS_MAX_CONNECTIONS`` connections, room the
workers share (``ConnectionRoom``): a worker takes room as it accepts and
gives back what it no longer needs, so one busy worker may hold most of it
while the others are idle.  A worker without room stops accepting (and
looks for room again at every pass of its loop, at least once a tick), and
new clients wait in the kernel's listen backlog.  Once a tick
(``TICK_SECONDS``) a worker closes the connections whose deadline passed.
When the stop signal is set it stops accepting, closes the connections that
are between requests and keeps serving those in the middle of one until
they end (the pool cuts them after its grace period).

Linux only (epoll, ``EPOLLEXCLUSIVE``), like the rest of the server.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import math
import os
import select
import socket
import struct
import termios
import threading
import time
from typing import Callable

from .handler import CLOSED, READY, Connection, ConnectionHandler

__all__ = ["WorkerLoop", "AcceptTokens", "ConnectionRoom", "TICK_SECONDS", "ADJUST_SECONDS"]

log = logging.getLogger("server.pool")

TICK_SECONDS = 0.5
ACCEPT_RETRY_SECONDS = 0.1          # pause after an accept error such as EMFILE
ACCEPT_ERROR_LOG_SECONDS = 1.0      # one log line per this many seconds at most

# accept() errors that mean "try again" rather than "the listener is gone"
_TRANSIENT_ACCEPT_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM,
                            errno.ECONNABORTED, errno.EPROTO, errno.EPERM}


# a token holder passes it on after a pass of its loop (serving the connections
# that were ready) took this long, or once it holds this many connections, and
# then waits SPREAD_PAUSE_SECONDS before it waits for a token again
SPREAD_BEHIND_SECONDS = 0.01
SPREAD_CONNECTIONS = 128
SPREAD_PAUSE_SECONDS = 0.01
# the pool brings one more token into play when, over ADJUST_SECONDS, the holders
# used this share of a CPU per token in play, and asks one to retire when they
# could have done their work with one token fewer at that share
BUSY_TOKEN_CPU_SHARE = 0.75
# (the holders count their CPU at their ticks: a look spans several)
ADJUST_SECONDS = 4 * TICK_SECONDS
# a worker takes room for at most this many connections at a time (ConnectionRoom)
ROOM_CHUNK = 8


class AcceptTokens:
    """Accept tokens shared by the workers of a pool (threads, or processes
    forked after it was made): bytes in a pipe.  A worker takes one with a
    non-blocking read and gives it back with a write; an idle worker without
    one waits for the pipe to be readable in its epoll set.

    Of ``limit`` tokens only one is in play at first, the ``PRIMARY``; the
    others, ``SECONDARY``, wait in a reserve pipe.  The pool decides how many
    are in play (``adjust``): it moves one from the reserve into play, or asks
    for one to retire with a byte in a third pipe, and the next holder of a
    secondary token to pass it on or reach its tick puts it in the reserve
    (``pass_on``, ``retire_if_asked``).  The primary never retires.  A byte
    moves from one pipe to another whole, so tokens are never lost or doubled
    by workers acting at once."""

    PRIMARY, SECONDARY = 0, 1
    TAKING = 3      # a stats row's mark (``mark``) while its worker reads a token

    def __init__(self, limit: int):
        self.limit = limit
        self.fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._reserve_fd, self._reserve_write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._retire_fd, self._retire_write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        os.write(self._write_fd, bytes([self.PRIMARY]))
        if limit > 1:
            os.write(self._reserve_write_fd, bytes([self.SECONDARY]) * (limit - 1))

    # -- the workers ----------------------------------------------------------------
    def take(self) -> int | None:
        """A token (``PRIMARY`` or ``SECONDARY``), or None if another worker was quicker."""
        return _read_byte(self.fd)

    def give(self, token: int) -> None:
        os.write(self._write_fd, bytes([token]))

    def pass_on(self, token: int) -> None:
        """A token back into play, or into the reserve if the pool asked for one."""
        if not self.retire_if_asked(token):
            self.give(token)

    def retire_if_asked(self, token: int) -> bool:
        """True if ``token`` went into the reserve: it is a secondary one and
        the pool asked for one to retire."""
        if token != self.SECONDARY or _read_byte(self._retire_fd) is None:
            return False
        os.write(self._reserve_write_fd, bytes([token]))
        return True

    def wake(self, count: int) -> None:
        """``count`` more tokens, for good: the pool stops, and its workers
        waiting for one must wake up."""
        os.write(self._write_fd, bytes([self.PRIMARY]) * count)

    @classmethod
    def mark(cls, token: int | None) -> int:
        """What a worker's stats row holds: 0 (no token), the token plus one, or ``TAKING``."""
        return 0 if token is None else token + 1

    # -- the pool -----------------------------------------------------------------------
    def adjust(self, holders_cpu: float) -> None:
        """From the CPUs the holders used lately (``holders_cpu``, 1.0 for one
        CPU's worth): one more token in play while every one in play kept its
        holders busy, one fewer when the others could have done their work.
        A holder that cannot get a CPU to itself (other processes share them)
        does not count as busy, and one worker accepts, as an event loop would."""
        surplus = self.in_reserve() - (self.limit - 1)
        if surplus > 0:                  # doubled by a worker that died retiring one
            os.read(self._reserve_fd, surplus)
        # at least the primary; a retirement may be asked for twice if a holder
        # is between reading the request and writing the reserve
        in_play = max(1, self.in_play())
        if holders_cpu >= BUSY_TOKEN_CPU_SHARE * in_play:
            self.bring_in()
        elif in_play > 1 and holders_cpu < BUSY_TOKEN_CPU_SHARE * (in_play - 1):
            os.write(self._retire_write_fd, b"\0")

    def bring_in(self) -> None:
        """One more token in play: a retirement asked for is called off (and
        the token stays), or one moves from the reserve, if it has one."""
        if _read_byte(self._retire_fd) is not None:
            return
        token = _read_byte(self._reserve_fd)
        if token is not None:
            self.give(token)

    def in_play(self) -> int:
        """Tokens in play, held or not, less those asked to retire (and not yet retired)."""
        return self.limit - _pipe_bytes(self._reserve_fd) - _pipe_bytes(self._retire_fd)

    def give_back(self, mark: int) -> None:
        """The token of a worker that died with ``mark`` in its row.  Where it
        may have had one or not, it is given back: a token may be doubled,
        never lost.  A ``SECONDARY`` goes into the reserve, from where the
        pool brings it back if the holders need it (one doubled there is
        dropped, ``adjust``).  One that died taking a token gives back a
        ``PRIMARY`` (a primary lost would leave none in play once the others
        retire; a primary doubled stays in play until the server restarts)."""
        if mark == self.mark(self.SECONDARY):
            os.write(self._reserve_write_fd, bytes([self.SECONDARY]))
        elif mark:
            self.give(self.PRIMARY)

    def available(self) -> int:
        """Tokens in the pipe now (in play, held by no worker)."""
        return _pipe_bytes(self.fd)

    def in_reserve(self) -> int:
        return _pipe_bytes(self._reserve_fd)

    def close(self) -> None:
        for fd in (self.fd, self._write_fd, self._reserve_fd, self._reserve_write_fd,
                   self._retire_fd, self._retire_write_fd):
            os.close(fd)


class ConnectionRoom:
    """``FS_MAX_CONNECTIONS`` shared by the workers of a pool (threads, or
    processes forked after it was made): room for one connection is a byte
    in a pipe.  A worker takes room ``chunk`` bytes at a time as it needs it
    and gives a chunk back once it holds two chunks fewer connections than it
    has room for; so a busy worker may hold most of the bound while the
    others are idle, each keeping under two chunks it does not use, and the
    server as a whole never holds more.  A bound larger than half of what a
    pipe may hold is partly split among the workers beforehand
    (``kept_each``).  A worker's stats row counts the room it took, so that
    the pool gives back the room of a worker that died; one that dies while
    taking or giving back room may have it given back twice (the bound is
    then exceeded by that much until the server restarts), never lost."""

    def __init__(self, limit: int, workers: int = 1):
        self.limit = limit
        self._fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # half: a pipe holds fewer bytes than its capacity once reads and
        # writes have left its pages part-filled
        shared_at_most = _pipe_capacity(self._write_fd, 2 * limit) // 2
        self.kept_each = max(0, math.ceil((limit - shared_at_most) / workers))
        shared = max(0, limit - self.kept_each * workers)
        # idle workers keep under two chunks each: under half the shared room in all
        self.chunk = max(1, min(ROOM_CHUNK, shared // (4 * workers)))
        self.give(shared)

    def take(self, count: int) -> int:
        """Room for up to ``count`` more connections: how much it got."""
        try:
            return len(os.read(self._fd, count))
        except BlockingIOError:
            return 0

    def give(self, count: int) -> None:
        while count > 0:
            try:
                count -= os.write(self._write_fd, b"\0" * count)
            except BlockingIOError:
                return                  # room given back twice, beyond the bound: dropped

    def available(self) -> int:
        """Room no worker has taken."""
        return _pipe_bytes(self._fd)

    def close(self) -> None:
        os.close(self._fd)
        os.close(self._write_fd)

    def __enter__(self) -> "ConnectionRoom":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pipe_capacity(fd: int, wanted: int) -> int:
    """The bytes the pipe of ``fd`` can hold, grown toward ``wanted`` if it may be."""
    capacity = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
    if capacity < wanted:
        try:
            with open("/proc/sys/fs/pipe-max-size") as f:
                most = int(f.read())
            capacity = fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, min(wanted, most))
        except (OSError, ValueError):
            pass
    return capacity


def _read_byte(fd: int) -> int | None:
    try:
        data = os.read(fd, 1)
    except BlockingIOError:
        return None
    return data[0] if data else None


def _pipe_bytes(fd: int) -> int:
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]


class WorkerLoop:
    def __init__(self, listener: socket.socket, handler: ConnectionHandler, slot,
                 should_stop: Callable[[], bool], room: ConnectionRoom,
                 tokens: AcceptTokens | None = None):
        self.listener = listener
        self._listener_fd = listener.fileno()
        self.handler = handler
        self.slot = slot
        self.should_stop = should_stop
        self.room = room
        self._room_taken = 0                 # room taken from the shared room, beyond
                                             # room.kept_each: it may hold their sum
        self.tokens = tokens
        self._long_turn_seconds = handler.LONG_TURN_SECONDS
        self._listening = False              # the listener is in the epoll set
        self._awaiting_token = False         # the token pipe is
        self._holds_token = tokens is None   # without tokens, every worker may accept
        self._token: int | None = None       # the kind held (AcceptTokens.PRIMARY, ...)
        # the running thread's CPU time when the CPU used holding a token was last
        # counted in its stats row (when it took the token, or at a tick since)
        self._counted_cpu = 0.0
        self.connections: dict[int, Connection] = {}
        self._waiting_for: dict[int, int] = {}
        self._lock = threading.Lock()        # connections is read by the pool's cut()
        self._cut = False
        self._ready: list[Connection] = []   # their turn ended with more to do at once
        self._accepting = False
        self._accept_paused_until = 0.0
        self._last_accept_error_log = float("-inf")
        self._suppressed_accept_errors = 0
        self._listener_gone = False

    # -- the loop -------------------------------------------------------------------
    def run(self) -> None:
        self._epoll = select.epoll()
        self._accepting = self._listening = self._awaiting_token = False   # nothing in it yet
        listener = self.listener
        self._listener_kind = (int(listener.family), int(listener.type), listener.proto)
        listener_fd = self._listener_fd
        token_fd = self.tokens.fd if self.tokens is not None else -1
        self._waiting_for.clear()
        connections = self.connections
        try:
            self._set_accepting(True)
            next_tick = time.monotonic() + TICK_SECONDS
            while True:
                stopping = self.should_stop()
                if stopping:
                    self._wind_down()
                if (stopping or self._listener_gone) and not connections:
                    return
                if not self._accepting:
                    self._set_accepting(True)        # after a pause, or room again
                self._sync_epoll()
                ready = self._ready
                if ready:
                    self._ready = []
                    timeout = 0
                else:
                    ready = ()               # self._ready fills for the next pass
                    timeout = TICK_SECONDS if self._accepting else self._poll_seconds()
                events = self._epoll.poll(timeout)
                served_from = time.monotonic()
                for fd, _events in events:
                    if fd == listener_fd:
                        self._accept()
                    elif fd == token_fd:
                        self._take_token()
                    else:
                        connection = connections.get(fd)
                        if connection is not None and connection not in ready:
                            self._advance(connection)
                for connection in ready:
                    if not connection.closed:
                        self._advance(connection)
                now = time.monotonic()
                if now - served_from >= SPREAD_BEHIND_SECONDS:
                    self._spread(now)
                if now >= next_tick:
                    self._tick(now)
                    next_tick = now + TICK_SECONDS
        finally:
            try:
                self._accepting = False
                self._pass_token()
                self.slot.holds_accept_token(0)
            finally:
                try:
                    self.close_all()
                finally:
                    self._give_room(self._room_taken)
                    self._epoll.close()

    def _poll_seconds(self) -> float:
        pause_left = self._accept_paused_until - time.monotonic()
        if not self._accepting and pause_left > 0:
            return min(TICK_SECONDS, pause_left)     # accept again as soon as it ends
        return TICK_SECONDS

    def _tick(self, now: float) -> None:
        for connection in [c for c in self.connections.values() if c.deadline() <= now]:
            connection.expire()
            self._forget(connection)
        if self._holds_token and self.tokens is not None:
            self._count_accept_cpu()
            if self.tokens.retire_if_asked(self._token):
                self._token, self._holds_token = None, False
                self.slot.holds_accept_token(0)
        if self._accepting and not self._holds_token:
            # every holder may be stuck in a long turn (a slow disk, say): a
            # connection waiting now is taken by this idle worker
            self._accept()

    # -- accepting ------------------------------------------------------------------
    def _set_accepting(self, accepting: bool) -> None:
        """Wait for new connections or not (then a token held goes back); to
        wait, the worker needs room for one more (``_has_room``, which may read
        the shared room's pipe).  The epoll set follows at the next pass
        (``_sync_epoll``)."""
        if self.should_stop() or self._listener_gone:
            accepting = False
        elif accepting and (time.monotonic() < self._accept_paused_until
                            or not self._has_room()):
            accepting = False
        self._accepting = accepting
        if not accepting:
            self._pass_token()

    def _sync_epoll(self) -> None:
        """The epoll set as the state says: the listener while accepting with a
        token (always, without tokens), the token pipe while accepting without."""
        listening = self._accepting and self._holds_token
        if listening != self._listening:
            # EPOLLEXCLUSIVE (a new connection wakes one waiting worker) cannot be
            # modified, only added and removed
            if listening:
                self._epoll.register(self._listener_fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
            else:
                self._epoll.unregister(self._listener_fd)
            self._listening = listening
            if self.tokens is None:
                self.slot.holds_accept_token(listening)
        awaiting = self._accepting and not self._holds_token
        if awaiting != self._awaiting_token:
            if awaiting:
                self._epoll.register(self.tokens.fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
            else:
                self._epoll.unregister(self.tokens.fd)
            self._awaiting_token = awaiting

    def _take_token(self) -> None:
        if self._holds_token or not self._accepting:
            return
        # marked first: if this process dies after the read, the pool gives the token back
        self.slot.holds_accept_token(AcceptTokens.TAKING)
        token = self.tokens.take()
        if token is None:
            self.slot.holds_accept_token(0)
            return                          # another worker took it
        self._token, self._holds_token = token, True
        self.slot.holds_accept_token(AcceptTokens.mark(token))
        self._counted_cpu = time.thread_time()

    def _count_accept_cpu(self) -> None:
        cpu = time.thread_time()
        self.slot.add_accept_cpu(cpu - self._counted_cpu)
        self._counted_cpu = cpu

    def _pass_token(self) -> None:
        """Give this worker's token back, so that another idle worker accepts
        while this one is busy.  No epoll change: it may be called in the
        middle of a connection's turn (``Connection.long_turn``)."""
        if self.tokens is None or not self._holds_token:
            return
        self._count_accept_cpu()
        token, self._token, self._holds_token = self._token, None, False
        self.tokens.pass_on(token)
        self.slot.holds_accept_token(0)    # last: a token may be given back twice, never lost

    def _accept(self) -> None:
        try:
            # socket.accept() without its three enum conversions per call
            fd, address = self.listener._accept()
        except BlockingIOError:
            return                          # another worker took it
        except OSError as exc:
            self._accept_failed(exc)
            return
        try:
            # the C socket type: its methods are all the handler needs, and it has
            # no Python-level __init__ and close() to run for every connection
            sock = socket.SocketType(*self._listener_kind, fd)
        except BaseException:
            os.close(fd)
            raise
        self.slot.connection_opened()
        try:
            connection = self.handler.open(sock, address, self.slot)
        except BaseException:
            sock.close()
            raise
        connection.close_lock = self._lock
        connection.long_turn = self._pass_token
        with self._lock:
            self.connections[fd] = connection
            if self._cut:                   # the pool cut while this one was accepted
                sock.shutdown(socket.SHUT_RDWR)
        self.slot.holding(len(self.connections))
        self._advance(connection)
        if len(self.connections) >= SPREAD_CONNECTIONS:
            self._spread(time.monotonic())
        if self._accepting and not self._has_room():
            self._set_accepting(False)

    def _spread(self, now: float) -> None:
        """A holder that falls behind or holds many connections: the next ones
        are for other idle workers, if there are any.  (A worker whose token
        went in that pass, for a long turn, waits for one again at once.)"""
        if self.tokens is not None and self._holds_token and self._accepting:
            self._accept_paused_until = now + SPREAD_PAUSE_SECONDS
            self._set_accepting(False)

    def _has_room(self) -> bool:
        """Room for one more connection, taken from the shared room if need be."""
        held = len(self.connections)
        if held < self._may_hold():
            return True
        # counted first: if this process dies after the read, the pool gives it back
        chunk = self.room.chunk
        self.slot.took_room(self._room_taken + chunk)
        self._room_taken += self.room.take(chunk)
        self.slot.took_room(self._room_taken)
        return held < self._may_hold()

    def _may_hold(self) -> int:
        """Connections this worker has room for: its share kept beforehand and what it took."""
        return self.room.kept_each + self._room_taken

    def _give_room(self, count: int) -> None:
        self.room.give(count)
        self._room_taken -= count
        self.slot.took_room(self._room_taken)

    def _accept_failed(self, exc: OSError) -> None:
        if self.should_stop() or exc.errno in (errno.EINVAL, errno.EBADF):
            self._listener_gone = True      # shut down by the pool: stopping
            self._set_accepting(False)
            return
        if exc.errno not in _TRANSIENT_ACCEPT_ERRORS:
            log.error("listener failed: %s", exc)
            self._listener_gone = True
            self._set_accepting(False)
            return
        if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
            # the connection stays in the backlog: wait instead of spinning on it
            self._accept_paused_until = time.monotonic() + ACCEPT_RETRY_SECONDS
            self._set_accepting(False)
        now = time.monotonic()
        if now - self._last_accept_error_log >= ACCEPT_ERROR_LOG_SECONDS:
            more = (f" ({self._suppressed_accept_errors} more since the last line)"
                    if self._suppressed_accept_errors else "")
            log.error("accept failed: %s; retrying%s", exc.strerror or exc, more)
            self._last_accept_error_log = now
            self._suppressed_accept_errors = 0
        else:
            self._suppressed_accept_errors += 1

    # -- connections ------------------------------------------------------------------
    def _advance(self, connection: Connection) -> None:
        started = time.monotonic()
        wait = connection.advance()
        if self._holds_token and time.monotonic() - started >= self._long_turn_seconds:
            self._pass_token()
        fd = connection.fd
        if wait == CLOSED:
            self._forget(connection)
            return
        if wait == READY:
            self._ready.append(connection)
            return
        registered = self._waiting_for.get(fd)
        try:
            if registered is None:
                self._epoll.register(fd, wait)
            elif registered != wait:
                self._epoll.modify(fd, wait)
        except OSError as exc:              # e.g. ENOSPC: this connection only
            log.error("cannot wait for %s: %s; closing it", connection.peer,
                      exc.strerror or exc)
            connection.close()
            self._forget(connection)
            return
        self._waiting_for[fd] = wait

    def _forget(self, connection: Connection) -> None:
        """Drop a closed connection (closing a socket removes it from epoll)."""
        with self._lock:
            if self.connections.get(connection.fd) is connection:
                del self.connections[connection.fd]
            self._waiting_for.pop(connection.fd, None)
        held = len(self.connections)
        self.slot.holding(held)
        chunk = self.room.chunk
        if self._room_taken >= chunk and held + 2 * chunk <= self._may_hold():
            self._give_room(chunk)
        if not self._accepting:
            self._set_accepting(True)

    def _wind_down(self) -> None:
        """Stopping: no new connections.  Those between requests serve what has
        already arrived and then close (``advance()`` closes them once nothing has)."""
        self._set_accepting(False)
        for connection in [c for c in self.connections.values() if not c.in_request]:
            self._advance(connection)

    # -- for the pool ---------------------------------------------------------------------
    def in_flight(self) -> int:
        """Connections in the middle of a request (read from another thread)."""
        with self._lock:
            return sum(1 for c in self.connections.values() if c.in_request)

    def cut(self) -> int:
        """From another thread: end every connection now; returns how many were
        in the middle of a request.  Shutting the sockets down wakes the worker."""
        cut = 0
        with self._lock:            # no socket is closed meanwhile (Connection.close_lock)
            self._cut = True
            for connection in self.connections.values():
                if connection.closed:
                    continue
                cut += connection.in_request
                try:
                    connection.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        return cut

    def close_all(self) -> None:
        with self._lock:
            connections = list(self.connections.values())
            self.connections.clear()
            self._waiting_for.clear()
        for connection in connections:
            connection.close()
        self.slot.holding(0)
