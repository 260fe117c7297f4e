"""The supervisor: binds the sockets, runs a pool, watches it, stops it.

It owns everything that is the same for both concurrency models: the
listening socket (bound before any fork), the shared stats table and stop
signal, the metrics endpoint, the periodic stats line and signal handling.
Signal handlers only record the signal; the loop acts on it.  The first
SIGTERM or SIGINT stops gracefully (``grace_seconds`` for in-flight
requests), a second one stops at once.
"""

from __future__ import annotations

import logging
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
        storage = Storage(config.storage_dir)
        stale = storage.remove_temp_files()
        if stale:
            log.info("removed %d unfinished uploads left by an earlier run", stale)
        self.listener = create_listener(config.host, config.port, config.backlog)
        address = "%s:%d" % self.listener.getsockname()[:2]
        table = WorkerTable(config.pool)
        self.stop_signal = StopSignal()
        handler = ConnectionHandler(storage, config, self.stop_signal.is_set)
        self.collector = StatsCollector(table, config.mode, config.pool, address)
        self.metrics = None
        if config.metrics_port:
            self.metrics = MetricsServer(config.host, config.metrics_port,
                                         self.snapshot, self.readiness)
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self.pool = self.pool_class(
            config.pool, self.listener, handler.handle, table, self.stop_signal,
            on_worker_exit=storage.remove_temp_files, close_in_worker=self._close_in_worker)
        self._install_signal_handlers()
        self.pool.start()
        log.info("serving %s on %s with a %s pool of %d (storage %s, metrics %s)",
                 "files", address, config.mode, config.pool, storage.root,
                 f"port {self.metrics.port}" if self.metrics else "off")
        try:
            status = self._loop()
        finally:
            self._shutdown()
        return status

    # -- the loop -----------------------------------------------------------------
    def _loop(self) -> int:
        selector = selectors.DefaultSelector()
        selector.register(self._wakeup_r, selectors.EVENT_READ, "wakeup")
        if self.metrics:
            selector.register(self.metrics, selectors.EVENT_READ, "metrics")
        next_tick = time.monotonic()
        next_stats = next_tick + self.config.stats_interval
        while True:
            for key, _ in selector.select(TICK_SECONDS):
                if key.data == "metrics":
                    self.metrics.handle_ready()
                else:
                    self._drain_wakeup()
            if self._signals:
                return self._stop_on_signal()
            try:
                self.pool.maintain()
            except WorkerBootError as exc:
                log.error("%s", exc)
                self._stop(grace=0)
                return 1
            now = time.monotonic()
            if now >= next_tick:
                self.collector.tick()
                next_tick = now + 1.0
            if self.config.stats_interval and now >= next_stats:
                log.info("%s", self.collector.log_line(self.snapshot()))
                next_stats = now + self.config.stats_interval

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
        self.pool.stop(grace, cut_short=lambda: bool(self._signals))

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
        """In a forked worker: drop what belongs to the supervisor."""
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
