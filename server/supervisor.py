"""The supervisor: binds the sockets, runs a pool, watches it, stops it.

It owns everything that is the same for both concurrency models: the
listening socket (bound before any fork), the shared stats table and stop
signal, the metrics endpoint, the periodic stats line and signal handling.
Signal handlers only record the signal; the loop acts on it.  The first
SIGTERM or SIGINT stops gracefully (``grace_seconds`` for in-flight
requests), a second one stops at once.

It knows no concurrency model: the pool reports the pids of worker
processes that ended (``maintain()``, ``stop()``), and the supervisor
removes their unfinished uploads.  A process forked from the supervisor
closes the supervisor's own sockets (metrics, signal wakeup) through an
``os.register_at_fork`` hook, which cannot be undone: run one
``Supervisor`` per process (``python -m server`` does).
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import sys
import time

from .config import ServerConfig
from .handler import ConnectionHandler
from .logbuffer import BatchingStreamHandler
from .metrics import MetricsServer
from .pools import MODES, StopSignal, WorkerBootError
from .stats import StatsCollector, WorkerTable
from .storage import Storage

__all__ = ["Supervisor", "create_listener"]

log = logging.getLogger("server")

TICK_SECONDS = 0.5


def create_listener(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=backlog)


class Supervisor:
    def __init__(self, config: ServerConfig):
        self.config = config
        self.pool_class = MODES[config.mode]
        self._signals: list[int] = []

    def run(self) -> int:
        config = self.config
        self._open()
        self.pool = self.pool_class(config.pool, self.listener, self.handler.handle,
                                    self.table, self.stop_signal)
        self._install_signal_handlers()
        os.register_at_fork(after_in_child=self._close_in_worker)
        self.pool.start()
        log.info("serving %s on %s with a %s pool of %d (storage %s, metrics %s)",
                 "files", self.collector.address, config.mode, config.pool, self.storage.root,
                 f"port {self.metrics.port}" if self.metrics else "off")
        try:
            status = self._loop()
        finally:
            self._shutdown()
        return status

    def _open(self) -> None:
        """Storage, sockets and the state shared with the workers."""
        config = self.config
        self.storage = Storage(config.storage_dir)
        stale = self.storage.remove_temp_files()
        if stale:
            log.info("removed %d unfinished uploads left by an earlier run", stale)
        self.listener = create_listener(config.host, config.port, config.backlog)
        address = "%s:%d" % self.listener.getsockname()[:2]
        self.table = WorkerTable(config.pool)
        self.stop_signal = StopSignal()
        self.handler = ConnectionHandler(self.storage, config, self.stop_signal.is_set)
        self.collector = StatsCollector(self.table, config.mode, config.pool, address)
        self.metrics = None
        if config.metrics_port:
            self.metrics = MetricsServer(config.host, config.metrics_port,
                                         self.snapshot, self.readiness)
        self._wakeup_r, self._wakeup_w = socket.socketpair()

    # -- the loop -----------------------------------------------------------------
    def _loop(self) -> int:
        selector = selectors.DefaultSelector()
        selector.register(self._wakeup_r, selectors.EVENT_READ, "wakeup")
        if self.metrics:
            selector.register(self.metrics, selectors.EVENT_READ, "metrics")
        next_tick = time.monotonic()
        next_stats = next_tick + self.config.stats_interval
        while True:
            self._handle_events(selector)
            if self._signals:
                return self._stop_on_signal()
            if not self._maintain_pool():
                return 1
            now = time.monotonic()
            if now >= next_tick:
                self.collector.tick()
                next_tick = now + 1.0
            if self.config.stats_interval and now >= next_stats:
                log.info("%s", self.collector.log_line(self.snapshot()))
                next_stats = now + self.config.stats_interval

    def _handle_events(self, selector) -> None:
        for key, _ in selector.select(TICK_SECONDS):
            if key.data == "metrics":
                self.metrics.handle_ready()
            else:
                self._drain_wakeup()

    def _maintain_pool(self) -> bool:
        """False when the pool cannot go on (the server then stops, exit 1)."""
        try:
            ended = self.pool.maintain()
        except WorkerBootError as exc:
            log.error("%s", exc)
            self._stop(grace=0)
            return False
        self._remove_uploads_of(ended)
        return True

    def _remove_uploads_of(self, pids: list[int]) -> None:
        """Unfinished uploads of worker processes that ended."""
        for pid in pids:
            self.storage.remove_temp_files(pid)

    def _stop_on_signal(self) -> int:
        name = signal.Signals(self._signals[0]).name
        log.info("%s received: no new connections; in-flight requests have %g s "
                 "(send it again to stop now)", name, self.config.grace_seconds)
        self._stop(self.config.grace_seconds)
        log.info("stopped")
        return 0

    def _stop(self, grace: float) -> None:
        self.stop_signal.set()
        self._signals.clear()      # a further signal during the grace period cuts it short
        self._remove_uploads_of(self.pool.stop(grace, cut_short=lambda: bool(self._signals)))

    # -- /stats and /readyz ---------------------------------------------------------
    def snapshot(self) -> dict:
        return self.collector.snapshot(self.pool.alive_workers(), self.is_ready())

    def is_ready(self) -> bool:
        return (not self.stop_signal.is_set()
                and self.pool.alive_workers() == self.config.pool)

    def readiness(self) -> dict:
        return {"ready": self.is_ready(), "mode": self.config.mode, "pool": self.config.pool,
                "workers_alive": self.pool.alive_workers(),
                "listening": self.collector.address}

    # -- signals and cleanup ----------------------------------------------------------
    def _install_signal_handlers(self) -> None:
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        signal.set_wakeup_fd(self._wakeup_w.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._record_signal)

    def _record_signal(self, signum, frame) -> None:
        self._signals.append(signum)

    def _drain_wakeup(self) -> None:
        try:
            while self._wakeup_r.recv(512):
                pass
        except (BlockingIOError, OSError):
            pass

    def _close_in_worker(self) -> None:
        """In a forked worker (an at-fork hook): drop what belongs to the supervisor.
        The wakeup fd is unset first, so that no signal writes to its number once
        it is closed and perhaps reused."""
        signal.set_wakeup_fd(-1)
        if self.metrics:
            self.metrics.close()
        self._wakeup_r.close()
        self._wakeup_w.close()

    def _shutdown(self) -> None:
        signal.set_wakeup_fd(-1)
        if self.metrics:
            self.metrics.close()
        self.listener.close()
        self._wakeup_r.close()
        self._wakeup_w.close()


def configure_logging(config: ServerConfig) -> None:
    handler = BatchingStreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(MODES[config.mode].log_format))
    logging.basicConfig(level=config.log_level, handlers=[handler])
