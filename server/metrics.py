"""HTTP endpoint on the metrics port: /metrics, /stats, /healthz, /readyz.

``MetricsServer`` runs in a thread of its own ("Metrics"), never in the
supervisor's loop, so no client of this port can delay signal handling,
worker replacement or the stats line.  One thread with non-blocking sockets
in a selector serves every client, and none can hold it: a request must
arrive whole within ``REQUEST_SECONDS`` of the connection (however it
trickles in), its reply must be taken within ``REPLY_SECONDS``, at most
``MAX_CONNECTIONS`` are held (a new one closes the oldest), and the listen
backlog is ``BACKLOG``.  Replies are HTTP/1.0 with ``Connection: close``.

The supervisor forks workers (process mode) while this thread runs.  A
child must not start with a lock this thread held (a logging or stream
lock, the supervisor's stats lock), so the thread does each step of work
under ``_step_lock``, and an at-fork hook takes that lock before every
fork: a fork happens only while the thread waits in ``select()``.  The
child never runs the thread; it only closes the descriptors
(``close_in_child()``, from the supervisor's at-fork hook).
"""

from __future__ import annotations

import email.utils
import errno
import json
import logging
import os
import selectors
import socket
import threading
import time
import weakref
from http import HTTPStatus
from typing import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

__all__ = ["MetricsServer", "REQUEST_SECONDS", "REPLY_SECONDS", "MAX_CONNECTIONS", "BACKLOG"]

log = logging.getLogger("server.metrics")

REQUEST_SECONDS = 2.0       # from connect to the end of the request's headers
REPLY_SECONDS = 5.0         # for the client to take the whole reply
MAX_REQUEST_BYTES = 8192    # request line and headers
MAX_CONNECTIONS = 32        # held at once; few fds, as the supervisor needs its own
BACKLOG = 128
ACCEPT_PAUSE_SECONDS = 1.0  # after an accept error such as EMFILE (one log line each)
_ACCEPT_RETRY_ERRNOS = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM}
_ACCEPT_PAUSE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

_LISTENER, _WAKEUP = "listener", "wakeup"      # selector keys that are not connections


class _SnapshotCollector:
    """Prometheus metrics built from one /stats snapshot per scrape."""

    def __init__(self, snapshot: Callable[[], dict]):
        self.snapshot = snapshot

    def collect(self):
        snap = self.snapshot()
        totals = snap["totals"]
        info = GaugeMetricFamily("fileserver_info", "Concurrency model and pool size",
                                 labels=["mode", "pool"])
        info.add_metric([snap["mode"], str(snap["pool"])], 1)
        yield info
        python = snap["interpreter"]
        python_info = GaugeMetricFamily(
            "fileserver_python_info", "The Python running the server; gil_enabled is read now",
            labels=["implementation", "version", "free_threaded", "gil_enabled"])
        python_info.add_metric([python["implementation"], python["version"],
                                str(python["free_threaded"]).lower(),
                                str(python["gil_enabled"]).lower()], 1)
        yield python_info
        requests = CounterMetricFamily("fileserver_requests", "Requests answered",
                                       labels=["command", "status"])
        for command, by_status in totals["by_command"].items():
            for status, count in by_status.items():
                requests.add_metric([command, status], count)
        yield requests
        yield CounterMetricFamily("fileserver_connections", "Connections accepted",
                                  value=totals["connections"])
        yield CounterMetricFamily("fileserver_received_bytes", "Bytes received",
                                  value=totals["bytes_in"])
        yield CounterMetricFamily("fileserver_sent_bytes", "Bytes sent",
                                  value=totals["bytes_out"])
        workers = GaugeMetricFamily("fileserver_workers", "Workers by state",
                                    labels=["state"])
        workers.add_metric(["busy"], snap["workers_busy"])
        workers.add_metric(["idle"], snap["workers_idle"])
        yield workers
        yield GaugeMetricFamily("fileserver_requests_per_second",
                                f"Requests/s over the last {snap['rate_window_seconds']:g} s",
                                value=snap["requests_per_second"])
        yield GaugeMetricFamily("fileserver_uptime_seconds", "Seconds since start",
                                value=snap["uptime_seconds"])
        yield CounterMetricFamily("fileserver_cpu_seconds",
                                  "CPU seconds of all live server processes",
                                  value=snap["cpu"]["seconds_total"])
        if snap["memory"]["pss_bytes_total"] is not None:
            yield GaugeMetricFamily("fileserver_proportional_memory_bytes",
                                    "PSS of all server processes (shared pages counted once)",
                                    value=snap["memory"]["pss_bytes_total"])
        yield GaugeMetricFamily("fileserver_resident_memory_bytes",
                                "RSS of all server processes",
                                value=snap["memory"]["rss_bytes_total"] or 0)
        yield from self._per_worker(snap["workers"])

    @staticmethod
    def _per_worker(rows: list[dict]):
        families = {
            "requests": CounterMetricFamily("fileserver_worker_requests",
                                            "Requests per worker", labels=["worker"]),
            "busy_seconds": CounterMetricFamily("fileserver_worker_busy_seconds",
                                                "Seconds spent serving", labels=["worker"]),
            "cpu_seconds": CounterMetricFamily("fileserver_worker_cpu_seconds",
                                               "CPU seconds per worker", labels=["worker"]),
            "rss_bytes": GaugeMetricFamily("fileserver_worker_resident_memory_bytes",
                                           "RSS per worker process", labels=["worker"]),
        }
        for row in rows:
            for key, family in families.items():
                if row.get(key) is not None:
                    family.add_metric([row["worker"]], row[key])
        yield from families.values()


class MetricsServer:
    """Binds at construction (an error is a start-up error); ``start()`` runs the
    thread, ``close()`` stops it and closes every socket."""

    def __init__(self, host: str, port: int, snapshot: Callable[[], dict],
                 readiness: Callable[[], dict]):
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_SnapshotCollector(snapshot))
        self.routes = {
            "/metrics": lambda: (200, "text/plain; version=0.0.4; charset=utf-8",
                                 generate_latest(registry)),
            "/stats": lambda: (200, "application/json", _json(snapshot())),
            "/healthz": lambda: (200, "application/json", _json({"status": "alive"})),
            "/readyz": lambda: _readiness_response(readiness()),
        }
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=BACKLOG)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)
        self._selector.register(self._wakeup_r, selectors.EVENT_READ, _WAKEUP)
        self._connections: dict[int, _Connection] = {}    # by fd, oldest first
        self._accept_paused_until: float | None = None
        self._step_lock = threading.Lock()
        self._closing = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self.failure: Exception | None = None   # what ended the thread, if anything did

    # -- the thread -------------------------------------------------------------------
    def start(self) -> None:
        _running.add(self)
        self._thread = threading.Thread(target=self._serve, name="Metrics", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            while True:
                events = self._selector.select(self._select_timeout())
                with self._step_lock:
                    if self._closing:
                        return
                    now = time.monotonic()
                    for key, mask in events:
                        if key.data is _LISTENER:
                            self._accept(now)
                        elif key.data is _WAKEUP:
                            _drain(self._wakeup_r)
                        elif self._connections.get(key.fd) is key.data:   # still open
                            self._advance(key.data, mask, now)
                    self._expire(now)
                    self._resume_accepting(now)
        except Exception as exc:        # the supervisor stops the server on it
            self.failure = exc

    def _select_timeout(self) -> float:
        now = time.monotonic()
        times = [c.deadline for c in self._connections.values()]
        if self._accept_paused_until is not None:
            times.append(self._accept_paused_until)
        return max(0.0, min([now + 1.0, *times]) - now)

    # -- accepting ----------------------------------------------------------------------
    def _accept(self, now: float) -> None:
        for _ in range(MAX_CONNECTIONS):
            try:
                sock, peer = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _ACCEPT_RETRY_ERRNOS:
                    continue
                if exc.errno not in _ACCEPT_PAUSE_ERRNOS:
                    raise
                log.warning("metrics port: accept failed: %s; pausing %g s",
                            exc.strerror, ACCEPT_PAUSE_SECONDS)
                self._selector.unregister(self._listener)
                self._accept_paused_until = now + ACCEPT_PAUSE_SECONDS
                return
            if len(self._connections) >= MAX_CONNECTIONS:
                oldest = next(iter(self._connections.values()))
                self._close(oldest, "too many connections; this was the oldest")
            sock.setblocking(False)
            connection = _Connection(sock, _peer_text(peer), now + REQUEST_SECONDS)
            self._connections[sock.fileno()] = connection
            self._selector.register(sock, selectors.EVENT_READ, connection)

    def _resume_accepting(self, now: float) -> None:
        if self._accept_paused_until is not None and now >= self._accept_paused_until:
            self._accept_paused_until = None
            self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)

    # -- one connection ---------------------------------------------------------------------
    def _advance(self, connection: _Connection, mask: int, now: float) -> None:
        try:
            if connection.reply is None:
                self._receive(connection, now)
            else:
                self._send(connection)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:          # reset by the peer and the like
            self._close(connection, exc.strerror or str(exc))

    def _receive(self, connection: _Connection, now: float) -> None:
        data = connection.sock.recv(4096)
        if not data:
            self._close(connection, "closed by the client before a whole request")
            return
        connection.received += data
        head, found, _ = connection.received.partition(b"\r\n\r\n")
        if not found:
            head, found, _ = connection.received.partition(b"\n\n")
        if found:
            self._answer(connection, head, now)
        elif len(connection.received) > MAX_REQUEST_BYTES:
            self._reply(connection, 431, _json({"error": "request headers too large"}), now)

    def _answer(self, connection: _Connection, head: bytes, now: float) -> None:
        words = head.split(b"\n", 1)[0].decode("latin-1").split()
        if len(words) not in (2, 3) or not words[1].startswith("/"):
            self._reply(connection, 400, _json({"error": "bad request line"}), now)
            return
        method, target = words[0], words[1]
        if method not in ("GET", "HEAD"):
            self._reply(connection, 405, _json({"error": "only GET and HEAD"}), now,
                        extra=("Allow: GET, HEAD",))
            return
        route = self.routes.get(target.split("?", 1)[0])
        if route is None:
            status, ctype, body = 404, "application/json", _json(
                {"error": f"no such path; try {', '.join(self.routes)}"})
        else:
            try:
                status, ctype, body = route()
            except Exception:
                log.exception("metrics port: %s failed", target)
                status, ctype, body = 500, "application/json", _json(
                    {"error": "internal error; see the server log"})
        log.debug("metrics port: %s %s %s %d", connection.peer, method, target, status)
        self._reply(connection, status, body, now, ctype, head_only=method == "HEAD")

    def _reply(self, connection: _Connection, status: int, body: bytes, now: float,
               ctype: str = "application/json", extra: tuple[str, ...] = (),
               head_only: bool = False) -> None:
        lines = [f"HTTP/1.0 {status} {HTTPStatus(status).phrase}",
                 "Server: fileserver-metrics",
                 f"Date: {email.utils.formatdate(usegmt=True)}",
                 f"Content-Type: {ctype}",
                 f"Content-Length: {len(body)}",
                 "Connection: close", *extra, "", ""]
        connection.reply = memoryview("\r\n".join(lines).encode("latin-1")
                                      + (b"" if head_only else body))
        connection.deadline = now + REPLY_SECONDS
        self._selector.modify(connection.sock, selectors.EVENT_WRITE, connection)
        self._send(connection)          # most replies fit in the socket buffer at once

    def _send(self, connection: _Connection) -> None:
        connection.sent += connection.sock.send(connection.reply[connection.sent:])
        if connection.sent == len(connection.reply):
            self._close(connection, None)

    def _expire(self, now: float) -> None:
        for connection in [c for c in self._connections.values() if now >= c.deadline]:
            self._close(connection, (
                f"request not complete within {REQUEST_SECONDS:g} s"
                if connection.reply is None else
                f"reply not taken within {REPLY_SECONDS:g} s"))

    def _close(self, connection: _Connection, problem: str | None) -> None:
        """Close one connection; ``problem`` is None after a complete reply."""
        if problem:
            log.debug("metrics port: closed %s: %s", connection.peer, problem)
        self._connections.pop(connection.sock.fileno(), None)
        try:
            self._selector.unregister(connection.sock)
        except (KeyError, ValueError):
            pass
        try:
            # a FIN (or a reset) now, whoever else holds a copy of the socket
            connection.sock.shutdown(socket.SHUT_WR if problem is None else socket.SHUT_RDWR)
        except OSError:
            pass
        connection.sock.close()

    # -- stopping ----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the thread (after its current step) and close every socket."""
        _running.discard(self)
        with self._step_lock:
            self._closing = True
        try:
            self._wakeup_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        for connection in list(self._connections.values()):
            self._close(connection, "the server is stopping")
        self._close_descriptors()

    def close_in_child(self) -> None:
        """In a forked child: close the descriptors, taking no lock (the thread
        does not exist here)."""
        _running.discard(self)
        for connection in self._connections.values():
            connection.sock.close()
        self._connections = {}
        self._close_descriptors()

    def _close_descriptors(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._selector.close()
        for sock in (self._listener, self._wakeup_r, self._wakeup_w):
            sock.close()


class _Connection:
    __slots__ = ("sock", "peer", "deadline", "received", "reply", "sent")

    def __init__(self, sock: socket.socket, peer: str, deadline: float):
        self.sock = sock
        self.peer = peer
        self.deadline = deadline
        self.received = b""
        self.reply: memoryview | None = None
        self.sent = 0


# -- fork: only while every metrics thread is idle ---------------------------------------
_running: "weakref.WeakSet[MetricsServer]" = weakref.WeakSet()
_held_for_fork: list[MetricsServer] = []


def _before_fork() -> None:
    _held_for_fork[:] = list(_running)
    for server in _held_for_fork:
        server._step_lock.acquire()


def _after_fork_in_parent() -> None:
    for server in _held_for_fork:
        server._step_lock.release()
    _held_for_fork.clear()


def _after_fork_in_child() -> None:
    for server in _held_for_fork:
        server._step_lock = threading.Lock()
    _held_for_fork.clear()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(512):
            pass
    except OSError:
        pass


def _peer_text(peer) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"
    return str(peer)


def _json(document: dict) -> bytes:
    return json.dumps(document, indent=1).encode()


def _readiness_response(state: dict):
    return (200 if state["ready"] else 503), "application/json", _json(state)
