"""The two concurrency models, behind one small interface.

``Pool`` receives the bound listening socket, the ``ConnectionHandler``,
the shared ``WorkerTable``, the shared ``StopSignal`` and how many
connections the server may hold.  The supervisor calls ``start()``, then
``maintain()`` about twice a second, then ``stop(grace)``.  ``maintain()``
and ``stop()`` return the pids of worker processes that ended since the
last call, so that the supervisor can clean up after them (their unfinished
uploads); a pool of threads returns none.

In both models every worker runs the same ``WorkerLoop``
(``server/workerloop.py``): it accepts on the shared listener itself, keeps
the connections it accepted in its own epoll set while they wait for a
request, and serves one request at a time.  The models differ only in what
a worker is (in both, ``maintain()`` also sets how many accept tokens are
in play: ``adjust_acceptors``):

* ``ThreadPool`` (``FS_MODE=thread``): ``pool`` threads of one process, the
  workers of a ``ThreadPoolExecutor(max_workers=pool)``, each running one
  ``WorkerLoop`` for the life of the server.
* ``FS_MODE=process`` is split the way gunicorn keeps its arbiter apart
  from its workers.  ``PreforkPool`` is the parent's side only: it forks
  ``pool`` processes (``multiprocessing`` with the "fork" context, which
  keeps the inherited listener), reaps them, replaces a worker that dies and
  logs why, and stops them.  ``PreforkWorker`` is the child's side:
  ``init_process()`` sets up signals and claims the worker's row of the
  table, ``run()`` runs the ``WorkerLoop``.  A worker that fails in ``init_process()``
  exits with ``BOOT_ERROR_EXIT``, and the pool then stops the server
  (``WorkerBootError``) instead of restarting it forever; so does a crash
  loop: more than ``max(MIN_EARLY_EXITS_PER_MINUTE, pool)`` workers in a
  minute that end within ``EARLY_EXIT_SECONDS`` of their start.  A worker
  that ran longer is replaced however often it ends (an external kill, the
  OOM killer).  Each worker asks the kernel to SIGKILL it when the
  supervisor ends (``PR_SET_PDEATHSIG``), so none outlives it.  When
  the supervisor is PID 1 (in a container) the pool also reaps orphans
  that the kernel hands it.

Stopping is the same for both: the stop signal is set (workers stop
accepting and close the connections that are between requests),
``shutdown()`` on the listener wakes the workers (and a pipe full of
accept tokens those waiting for one), in-flight requests get
``grace`` seconds, then what is left is cut (sockets shut down, or
processes killed); ``cut_connections`` then says how many requests were
cut short.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import resource
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from .handler import ConnectionHandler
from .stats import WorkerTable
from .workerloop import ADJUST_SECONDS, AcceptTokens, ConnectionRoom, WorkerLoop

__all__ = ["Pool", "ThreadPool", "PreforkPool", "PreforkWorker", "MODES", "StopSignal",
           "WorkerBootError", "PoolStartError", "prepare_listener"]

log = logging.getLogger("server.pool")

DEFER_ACCEPT_SECONDS = 1     # TCP_DEFER_ACCEPT: wake a worker once the first bytes arrived


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def prepare_listener(listener: socket.socket) -> None:
    """The listener as ``WorkerLoop``s share it: non-blocking (workers race for
    each connection); on TCP woken only once a connection has sent something,
    and with TCP_NODELAY, which every accepted socket inherits (Linux): no
    setsockopt per connection."""
    listener.setblocking(False)
    if listener.family in (socket.AF_INET, socket.AF_INET6):
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_ACCEPT_SECONDS)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class WorkerBootError(RuntimeError):
    """A worker could not start; restarting it would fail the same way."""


class PoolStartError(RuntimeError):
    """The pool cannot start on this machine as configured (the message says why)."""


class StopSignal:
    """A stop flag in shared memory: set by the supervisor, seen by every worker.

    ``set_local()`` stops only the process that calls it (a worker that got
    SIGTERM on its own).
    """

    def __init__(self):
        self._shared = multiprocessing.RawValue("b", 0)
        self._local = False

    def is_set(self) -> bool:
        return self._local or bool(self._shared.value)

    def set(self) -> None:
        self._shared.value = 1

    def set_local(self) -> None:
        self._local = True


class Pool:
    """Interface of a concurrency model; subclasses are picked by name in MODES."""

    log_format = "%(asctime)s - %(levelname)s - %(message)s"

    def __init__(self, size: int, listener: socket.socket, handler: ConnectionHandler,
                 table: WorkerTable, stop_signal: StopSignal, max_connections: int = 1000,
                 acceptors: int = 0):
        self.size = size
        self.listener = listener
        self.handler = handler
        self.table = table
        self.stop_signal = stop_signal
        # the workers share the bound: room for a connection is taken as needed
        self.room = ConnectionRoom(max_connections, size)
        self.cut_connections = 0      # requests cut short by the last stop()
        # at most this many idle workers wait for new connections at a time, one
        # at first (workerloop's docstring); with as many as workers, every idle
        # one does: no tokens
        self.acceptors = min(acceptors or usable_cpus(), size)
        self.tokens = AcceptTokens(self.acceptors) if self.acceptors < size else None
        self._acceptors_checked: tuple[float, float] | None = None   # (clock, holders' CPU)

    def start(self) -> None:
        raise NotImplementedError

    def maintain(self) -> list[int]:
        """Supervise workers; called from the supervisor's loop.  Returns the
        pids of worker processes that ended since the last call."""
        self.adjust_acceptors()
        return []

    def adjust_acceptors(self) -> None:
        """Once every ``ADJUST_SECONDS``: how many accept tokens are in play,
        from the CPU their holders used meanwhile (``AcceptTokens.adjust``)."""
        if self.tokens is None:
            return
        now, cpu = time.monotonic(), self.table.accept_cpu_seconds()
        if self._acceptors_checked is None:
            self._acceptors_checked = (now, cpu)
            return
        then, cpu_then = self._acceptors_checked
        if now - then >= ADJUST_SECONDS:
            self.tokens.adjust((cpu - cpu_then) / (now - then))
            self._acceptors_checked = (now, cpu)

    def alive_workers(self) -> int:
        raise NotImplementedError

    def stop(self, grace: float, cut_short: Callable[[], bool] = lambda: False) -> list[int]:
        """Stop accepting, give in-flight requests ``grace`` seconds (less if
        ``cut_short()`` turns true), then end what is left.  Returns the pids
        of worker processes that ended and ``maintain()`` did not return."""
        raise NotImplementedError

    # descriptors a process needs beyond its workers' (logs, pipes, the metrics port)
    SPARE_FILES = 32

    def files_needed(self) -> tuple[int, int]:
        """(at least, ideally) open files one process of this pool needs: per
        worker an epoll set, a connection and an open file at the least, and
        ideally room for every connection it may hold."""
        raise NotImplementedError

    def _raise_file_limit(self) -> None:
        """Raise the soft RLIMIT_NOFILE toward what the pool needs; refuse to
        start when even the least cannot be had."""
        least, ideal = self.files_needed()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < ideal:
            target = ideal if hard == resource.RLIM_INFINITY else min(ideal, hard)
            if target > soft:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
        if soft < least:
            raise PoolStartError(
                f"a {self.mode_name} pool of {self.size} needs at least {least} open files, "
                f"but the limit is {soft} (ulimit -n); raise it or lower FS_POOL")
        if soft < ideal:
            log.warning("the open-file limit (%d) is below what FS_MAX_CONNECTIONS needs (%d): "
                        "workers stop accepting when it is reached", soft, ideal)

    def _prepare_listener(self) -> None:
        prepare_listener(self.listener)

    def _worker_loop(self, slot) -> WorkerLoop:
        return WorkerLoop(self.listener, self.handler, slot, self.stop_signal.is_set,
                          self.room, self.tokens)

    def _close_pipes(self) -> None:
        """Once no worker runs: the accept tokens and the connection room."""
        if self.tokens is not None:
            self.tokens.close()
            self.tokens = None
        if self.room is not None:
            self.room.close()
            self.room = None

    def _wake_acceptors(self) -> None:
        # shutdown() on a listening socket makes every blocked accept(), in any
        # thread or forked process sharing it, return EINVAL at once; the
        # workers waiting for an accept token wake up to tokens enough for all
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self.tokens is not None:
            self.tokens.wake(self.size)


class ThreadPool(Pool):
    """Threads of one process; log lines name the thread (Worker-N)."""

    log_format = "%(asctime)s - %(threadName)s - %(levelname)s - %(message)s"
    mode_name = "thread"

    def files_needed(self) -> tuple[int, int]:
        # every worker is in this one process
        least = 3 * self.size + self.SPARE_FILES
        return least, 2 * self.size + self.room.limit + self.SPARE_FILES

    def start(self) -> None:
        self._raise_file_limit()
        self._prepare_listener()
        # made here, before any thread runs, so that stop() sees every one
        self._loops = [self._worker_loop(self.table.slot(index)) for index in range(self.size)]
        self._executor = ThreadPoolExecutor(max_workers=self.size)
        self._workers = [self._executor.submit(self._run_worker, index, loop)
                         for index, loop in enumerate(self._loops)]

    def _run_worker(self, index: int, loop: WorkerLoop) -> None:
        threading.current_thread().name = f"Worker-{index + 1}"
        loop.slot.claim(os.getpid(), threading.get_native_id())
        while True:
            try:
                loop.run()
                return
            except Exception:
                log.exception("worker loop failed; restarting it")
                if self.stop_signal.is_set():
                    return
                time.sleep(0.1)

    def alive_workers(self) -> int:
        return sum(1 for worker in self._workers if not worker.done())

    def stop(self, grace: float, cut_short: Callable[[], bool] = lambda: False) -> list[int]:
        self._wake_acceptors()
        deadline = time.monotonic() + grace
        while (self.alive_workers() and any(loop.in_flight() for loop in self._loops)
               and time.monotonic() < deadline and not cut_short()):
            time.sleep(0.05)
        self.cut_connections = sum(loop.cut() for loop in self._loops)
        if self.cut_connections:
            log.warning("grace period over: cut %d requests still in flight",
                        self.cut_connections)
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._close_pipes()
        return []


class PreforkWorker:
    """The child's side of ``PreforkPool``: everything here runs in the worker.

    The supervisor's own descriptors (metrics socket, signal wakeup pair) are
    closed by the supervisor's fork hook before ``main()`` starts.
    """

    BOOT_ERROR_EXIT = 3          # the exit status of a worker that cannot start

    def __init__(self, index: int, pool: "PreforkPool"):
        self.index = index
        self.name = f"Worker-{index + 1}"
        self.pool = pool
        self.table = pool.table
        self.stop_signal = pool.stop_signal

    def main(self) -> None:
        """The target of the worker's ``multiprocessing.Process``."""
        self.init_process()
        self.run()

    def init_process(self) -> None:
        """Signals, then the worker's row of the table; on failure the process
        exits with ``BOOT_ERROR_EXIT`` (the pool then stops the server)."""
        try:
            _die_with_parent()
            self._init_signals()
            self.slot = self.table.slot(self.index)
            self.slot.claim(os.getpid(), threading.get_native_id())
        except Exception:
            log.exception("worker failed to start")
            os._exit(self.BOOT_ERROR_EXIT)

    def _init_signals(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # the supervisor decides
        signal.signal(signal.SIGTERM, lambda *_: self.stop_signal.set_local())
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)

    def run(self) -> None:
        """Accept and serve, one request at a time, until stopped."""
        self.pool._worker_loop(self.slot).run()


class PreforkPool(Pool):
    """The supervisor's side of pre-forked worker processes (Worker-N, one
    ``PreforkWorker`` each) sharing one listening socket."""

    log_format = "%(asctime)s - %(processName)s - %(levelname)s - %(message)s"
    mode_name = "process"

    # the crash-loop cap (module docstring); boot failures stop the server at once
    EARLY_EXIT_SECONDS = 2.0
    MIN_EARLY_EXITS_PER_MINUTE = 20

    def files_needed(self) -> tuple[int, int]:
        # per process: each worker has its own descriptor table, and one
        # worker may hold most of the connections (ConnectionRoom)
        return 3 + self.SPARE_FILES, self.room.limit + 2 + self.SPARE_FILES

    def start(self) -> None:
        self._raise_file_limit()
        self._prepare_listener()
        # "fork" explicitly: the children must inherit the listening socket,
        # and Python 3.14 changed the POSIX default to forkserver.
        self._context = multiprocessing.get_context("fork")
        self._workers: dict[int, multiprocessing.Process] = {}
        self._early_exits: list[float] = []     # when workers that ended early were reaped
        self._started_at: dict[int, float] = {}  # by worker index
        self._ended: list[int] = []      # pids not yet returned by maintain()/stop()
        self._stopping = False
        for index in range(self.size):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        worker = PreforkWorker(index, self)
        process = self._context.Process(target=worker.main, name=worker.name)
        process.start()
        self._started_at[index] = time.monotonic()
        self._workers[index] = process

    def maintain(self) -> list[int]:
        self._reap_and_replace()
        super().maintain()
        return self._take_ended()

    def _take_ended(self) -> list[int]:
        ended, self._ended = self._ended, []
        return ended

    def _reap_and_replace(self) -> None:
        """Reap the workers that ended and, unless stopping, start new ones."""
        for index, process in list(self._workers.items()):
            if process.exitcode is None:
                continue
            self._reap(index, process)
            if not self._stopping:
                self._respawn(index)
        if os.getpid() == 1:
            _reap_orphans(self._workers.values())

    def _reap(self, index: int, process) -> None:
        code, pid, name = process.exitcode, process.pid, process.name
        process.close()
        del self._workers[index]
        row = self.table.slot(index)
        if self.tokens is not None:
            self.tokens.give_back(row["accept_token"])      # it died holding one
        if self.room is not None:
            self.room.give(row["room_taken"])               # and the room it took
        self.table.reset_row(index)
        self._ended.append(pid)
        self._report_exit(name, pid, code)

    def _report_exit(self, name: str, pid: int, code: int) -> None:
        if self._stopping:
            # SIGKILL is ours once the grace period is over ("killing N workers")
            if code not in (0, -signal.SIGKILL):
                log.warning("%s (pid %d) %s; not replaced, stopping",
                            name, pid, _describe_exit(code))
            return
        if code == PreforkWorker.BOOT_ERROR_EXIT:
            raise WorkerBootError(f"{name} (pid {pid}) failed to boot")
        log.warning("%s (pid %d) %s; replacing it", name, pid, _describe_exit(code))

    def early_exit_cap(self) -> int:
        return max(self.MIN_EARLY_EXITS_PER_MINUTE, self.size)

    def _respawn(self, index: int) -> None:
        """Replace the worker at ``index``, unless workers crash-loop."""
        now = time.monotonic()
        if now - self._started_at[index] < self.EARLY_EXIT_SECONDS:
            self._early_exits = [t for t in self._early_exits if now - t < 60] + [now]
            if len(self._early_exits) > self.early_exit_cap():
                raise WorkerBootError(
                    f"{len(self._early_exits)} workers in a minute ended within "
                    f"{self.EARLY_EXIT_SECONDS:g} s of their start (a crash loop; the cap "
                    f"is {self.early_exit_cap()}); giving up")
        self._spawn(index)

    def alive_workers(self) -> int:
        return sum(1 for p in self._workers.values() if p.exitcode is None)

    def stop(self, grace: float, cut_short: Callable[[], bool] = lambda: False) -> list[int]:
        self._stopping = True
        self._wake_acceptors()
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + grace
        self._reap_and_replace()
        while self._workers and time.monotonic() < deadline and not cut_short():
            time.sleep(0.05)
            self._reap_and_replace()
        # after the stop signal a worker holds only connections in mid-request
        self.cut_connections = sum(self.table.slot(index)["open_connections"]
                                   for index in self._workers)
        if self._workers:
            self._kill_the_rest()
        self._close_pipes()
        return self._take_ended()

    def _kill_the_rest(self) -> None:
        log.warning("grace period over: killing %d workers", len(self._workers))
        self._signal_all(signal.SIGKILL)
        for process in self._workers.values():
            process.join()
        self._reap_and_replace()

    def _signal_all(self, signum: int) -> None:
        for process in self._workers.values():
            try:
                os.kill(process.pid, signum)
            except (ProcessLookupError, TypeError):
                pass


PR_SET_PDEATHSIG = 1        # from <linux/prctl.h>


def _die_with_parent() -> None:
    """In a worker: have the kernel SIGKILL this process when the supervisor ends,
    however it ends, so that no worker keeps the port (or the storage lock)
    without a supervisor.  SIGKILL, not SIGTERM: nobody is left to wait for, so
    in-flight requests are cut and the last access lines (under a second) lost.
    The signal comes when the *thread* that forked ends: the supervisor forks
    from its main thread only.  Then, in case the supervisor ended before the
    request: compare the parent with the one that forked us."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        log.warning("the supervisor (pid %d) is gone; exiting", parent.pid)
        os._exit(1)


def _describe_exit(code: int) -> str:
    if code == PreforkWorker.BOOT_ERROR_EXIT:
        return "failed to boot"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _reap_orphans(workers) -> None:
    """As PID 1 (in a container) also reap children that are not ours."""
    ours = {p.pid for p in workers}
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid in ours:
            return
        os.waitpid(info.si_pid, 0)


MODES: dict[str, type[Pool]] = {"thread": ThreadPool, "process": PreforkPool}
