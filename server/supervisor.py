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

The metrics endpoint runs in a thread of its own (``server.metrics``); what
it reads (``snapshot()``, ``readiness()``) is the collector, under
``_stats_lock``, and the count of live workers the loop last saw.  The loop
never forks while holding ``_stats_lock``.

Any unexpected exception, at start or in the loop, stops the workers at
once and makes ``run()`` return ``EXIT_ERROR`` after one log line naming the
error and where it was raised.  (A worker process also dies with the
supervisor however that ends: ``PreforkWorker`` asks the kernel for it.)
"""

from __future__ import annotations

import ctypes
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
import traceback

from .config import ServerConfig
from .handler import ConnectionHandler
from .logbuffer import BatchingStreamHandler
from .metrics import MetricsServer
from .pools import MODES, StopSignal, WorkerBootError
from .stats import StatsCollector, WorkerTable, describe_interpreter, interpreter_info
from .storage import Storage, StorageError

__all__ = ["Supervisor", "create_listener"]

log = logging.getLogger("server")

TICK_SECONDS = 0.5

# the exit statuses of ``python -m server`` (the README lists them)
EXIT_OK = 0
EXIT_ERROR = 1          # cannot start, a worker cannot boot, crash loop, unexpected error
EXIT_USAGE = 2          # a bad setting, or the storage folder in use by another server
EXIT_CUT_SHORT = 3      # stopped on a signal, but the grace period cut requests short


def create_listener(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=backlog)


class Supervisor:
    def __init__(self, config: ServerConfig):
        self.config = config
        self.pool_class = MODES[config.mode]
        self._signals: list[int] = []
        self._stats_lock = threading.Lock()     # the collector, used by two threads
        self._alive_workers = 0                 # as the loop last saw it

    def run(self) -> int:
        config = self.config
        _load_thread_exit_support()
        self._open()
        self.pool = self.pool_class(config.pool, self.listener, self.handler,
                                    self.table, self.stop_signal,
                                    max_connections=config.max_connections,
                                    acceptors=config.acceptors)
        self._install_signal_handlers()
        os.register_at_fork(after_in_child=self._close_in_worker)
        try:
            return self._supervise()
        finally:
            self._shutdown()

    def _supervise(self) -> int:
        config = self.config
        doing = "starting the workers"
        try:
            self.pool.start()
            self._alive_workers = self.pool.alive_workers()
            if self.metrics:
                self.metrics.start()
            log.info("serving %s on %s with a %s pool of %d (storage %s, metrics %s, %s)",
                     "files", self.collector.address, config.mode, config.pool,
                     self.storage.root,
                     f"{config.metrics_host} port {self.metrics.port}" if self.metrics
                     else "off",
                     describe_interpreter(interpreter_info()))
            doing = "supervising the workers"
            return self._loop()
        except Exception as exc:
            return self._fail(f"{doing} failed", exc)

    def _fail(self, what: str, exc: Exception) -> int:
        """The one line for an unexpected error, then stop every worker now."""
        log.error("%s: %s; stopping the workers (exit status %d)",
                  what, describe_error(exc), EXIT_ERROR)
        try:
            self._stop(grace=0)
        except Exception as again:
            log.error("stopping the workers failed too: %s", describe_error(again))
        return EXIT_ERROR

    def _open(self) -> None:
        """Storage, sockets and the state shared with the workers."""
        config = self.config
        self.storage = Storage(config.storage_dir)
        # held for the supervisor's life (workers inherit it); taken before the
        # cleanup, so that no other server's uploads are in flight
        self.storage_lock = self.storage.acquire_lock()
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
            self.metrics = MetricsServer(config.metrics_host, config.metrics_port,
                                         self.snapshot, self.readiness)
        self._wakeup_r, self._wakeup_w = socket.socketpair()

    # -- the loop -----------------------------------------------------------------
    def _loop(self) -> int:
        with selectors.DefaultSelector() as selector:
            selector.register(self._wakeup_r, selectors.EVENT_READ)
            next_tick = time.monotonic()
            next_stats = next_tick + self.config.stats_interval
            while True:
                if selector.select(TICK_SECONDS):
                    self._drain_wakeup()
                if self._signals:
                    return self._stop_on_signal()
                if not self._maintain_pool():
                    return EXIT_ERROR
                if self.metrics and self.metrics.failure:
                    return self._fail("the metrics endpoint failed", self.metrics.failure)
                now = time.monotonic()
                if now >= next_tick:
                    with self._stats_lock:
                        self.collector.tick()
                    next_tick = now + 1.0
                if self.config.stats_interval and now >= next_stats:
                    log.info("%s", self.collector.log_line(self.snapshot()))
                    next_stats = now + self.config.stats_interval

    def _maintain_pool(self) -> bool:
        """False when the pool cannot go on (the server then stops, exit 1)."""
        try:
            ended = self.pool.maintain()
        except WorkerBootError as exc:
            log.error("%s", exc)
            self._stop(grace=0)
            return False
        finally:
            self._alive_workers = self.pool.alive_workers()
        self._remove_uploads_of(ended)
        return True

    def _remove_uploads_of(self, pids: list[int]) -> None:
        """Unfinished uploads of worker processes that ended.  A failure is logged,
        not fatal: the next start removes what is left."""
        for pid in pids:
            try:
                self.storage.remove_temp_files(pid)
            except (StorageError, OSError) as exc:
                log.warning("unfinished uploads of pid %d not removed: %s", pid, exc)

    def _stop_on_signal(self) -> int:
        name = signal.Signals(self._signals[0]).name
        log.info("%s received: no new connections; in-flight requests have %g s "
                 "(send it again to stop now)", name, self.config.grace_seconds)
        self._stop(self.config.grace_seconds)
        cut = getattr(self.pool, "cut_connections", 0)
        if cut:
            log.warning("stopped; the grace period cut %d request%s short (exit status %d)",
                        cut, "" if cut == 1 else "s", EXIT_CUT_SHORT)
            return EXIT_CUT_SHORT
        log.info("stopped")
        return EXIT_OK

    def _stop(self, grace: float) -> None:
        self.stop_signal.set()
        self._signals.clear()      # a further signal during the grace period cuts it short
        try:
            self._remove_uploads_of(self.pool.stop(grace, cut_short=lambda: bool(self._signals)))
        finally:
            self._alive_workers = self.pool.alive_workers()

    # -- /stats and /readyz ---------------------------------------------------------
    # (called from the metrics thread too)
    def snapshot(self) -> dict:
        with self._stats_lock:
            return self.collector.snapshot(self._alive_workers, self.is_ready())

    def is_ready(self) -> bool:
        return not self.stop_signal.is_set() and self._alive_workers == self.config.pool

    def readiness(self) -> dict:
        return {"ready": self.is_ready(), "mode": self.config.mode, "pool": self.config.pool,
                "workers_alive": self._alive_workers,
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
            self.metrics.close_in_child()
        self._wakeup_r.close()
        self._wakeup_w.close()

    def _shutdown(self) -> None:
        signal.set_wakeup_fd(-1)
        if self.metrics:
            self.metrics.close()
        self.listener.close()
        self._wakeup_r.close()
        self._wakeup_w.close()


def _load_thread_exit_support() -> None:
    """glibc loads libgcc_s the first time a thread exits; if that fails (out of
    file descriptors, say) it aborts the process.  The metrics thread and the log
    flusher exit at shutdown, perhaps after exactly such an error: load it now."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libgcc_s.so.1")
        except OSError:
            pass                # not glibc, or not needed


def describe_error(exc: BaseException) -> str:
    """The error and where it was raised, on one line: ``OSError: [Errno 24] Too
    many open files (at popen_fork.py:66 in _launch, from pools.py:259 in _spawn)``."""
    frames = traceback.extract_tb(exc.__traceback__)
    text = f"{type(exc).__name__}: {exc}"
    if not frames:
        return text
    places = [frames[-1]]
    ours = [f for f in frames if os.path.dirname(f.filename) == os.path.dirname(__file__)]
    if ours and ours[-1] is not frames[-1]:
        places.append(ours[-1])
    return text + " (" + ", from ".join(
        f"{'at ' if i == 0 else ''}{os.path.basename(f.filename)}:{f.lineno} in {f.name}"
        for i, f in enumerate(places)) + ")"


def configure_logging(config: ServerConfig) -> None:
    handler = BatchingStreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(MODES[config.mode].log_format))
    logging.basicConfig(level=config.log_level, handlers=[handler])
