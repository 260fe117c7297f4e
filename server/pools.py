"""The two concurrency models, behind one small interface.

``Pool`` receives the bound listening socket, a ``serve(sock, address,
slot)`` callable (the connection handler), the shared ``WorkerTable`` and
the shared ``StopSignal``.  The supervisor calls ``start()``, then
``maintain()`` about twice a second, then ``stop(grace)``.  ``maintain()``
and ``stop()`` return the pids of worker processes that ended since the
last call, so that the supervisor can clean up after them (their unfinished
uploads); a pool of threads returns none.

* ``ThreadPool`` (``FS_MODE=thread``): one acceptor thread feeding a
  ``ThreadPoolExecutor(max_workers=pool)``.  The acceptor takes a connection
  only when a worker is free: it first takes a token from a
  ``queue.SimpleQueue`` holding one token per free worker, and a worker puts
  its token back when its connection ends.  So waiting clients queue in the
  kernel's listen backlog exactly as they do in process mode, and "busy
  workers" means the same thing in both modes.
* ``FS_MODE=process`` is split the way gunicorn keeps its arbiter apart
  from its workers.  ``PreforkPool`` is the parent's side only: it forks
  ``pool`` processes (``multiprocessing`` with the "fork" context, which
  keeps the inherited listener), reaps them, replaces a worker that dies and
  logs why, and stops them.  ``PreforkWorker`` is the child's side:
  ``init_process()`` sets up signals and claims the worker's row of the
  table, ``run()`` blocks in ``accept()`` on the shared socket and serves
  one connection at a time.  A worker that fails in ``init_process()``
  exits with ``BOOT_ERROR_EXIT``, and the pool then stops the server
  (``WorkerBootError``) instead of restarting it forever; so do workers
  that die more than ``MAX_RESTARTS_PER_MINUTE`` times in a minute.  When
  the supervisor is PID 1 (in a container) the pool also reaps orphans
  that the kernel hands it.

Stopping is the same for both: the stop signal is set (handlers end each
connection at its next request boundary), ``shutdown()`` on the listener
wakes every blocked ``accept()``, in-flight requests get ``grace`` seconds,
then what is left is cut (sockets shut down, or processes killed).
"""

from __future__ import annotations

import errno
import itertools
import logging
import multiprocessing
import os
import queue
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from .stats import WorkerTable

__all__ = ["Pool", "ThreadPool", "PreforkPool", "PreforkWorker", "MODES", "StopSignal",
           "WorkerBootError"]

log = logging.getLogger("server.pool")

ServeFn = Callable[[socket.socket, object, object], None]

# accept() errors that mean "try again" rather than "the listener is gone"
_TRANSIENT_ACCEPT_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM,
                            errno.ECONNABORTED, errno.EPROTO, errno.EPERM}


class WorkerBootError(RuntimeError):
    """A worker could not start; restarting it would fail the same way."""


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

    def __init__(self, size: int, listener: socket.socket, serve: ServeFn,
                 table: WorkerTable, stop_signal: StopSignal):
        self.size = size
        self.listener = listener
        self.serve = serve
        self.table = table
        self.stop_signal = stop_signal

    def start(self) -> None:
        raise NotImplementedError

    def maintain(self) -> list[int]:
        """Supervise workers; called from the supervisor's loop.  Returns the
        pids of worker processes that ended since the last call."""
        return []

    def alive_workers(self) -> int:
        raise NotImplementedError

    def stop(self, grace: float, cut_short: Callable[[], bool] = lambda: False) -> list[int]:
        """Stop accepting, give in-flight requests ``grace`` seconds (less if
        ``cut_short()`` turns true), then end what is left.  Returns the pids
        of worker processes that ended and ``maintain()`` did not return."""
        raise NotImplementedError

    def _wake_acceptors(self) -> None:
        # shutdown() on a listening socket makes every blocked accept(), in any
        # thread or forked process sharing it, return EINVAL at once.
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class ThreadPool(Pool):
    """Threads of one process; log lines name the thread (Worker-N)."""

    log_format = "%(asctime)s - %(threadName)s - %(levelname)s - %(message)s"

    def start(self) -> None:
        self._slot_numbers = itertools.count()
        self._local = threading.local()
        # one token per free worker; SimpleQueue is C code, where a
        # threading.Semaphore would run a Python-level Condition per connection
        self._free_workers: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(self.size):
            self._free_workers.put(None)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=self.size,
                                            initializer=self._claim_slot)
        self._acceptor = threading.Thread(target=self._accept_loop, name="Acceptor",
                                          daemon=True)
        self._acceptor.start()

    def _claim_slot(self) -> None:
        index = next(self._slot_numbers)
        threading.current_thread().name = f"Worker-{index + 1}"
        self._local.slot = self.table.slot(index)
        self._local.slot.claim(os.getpid(), threading.get_native_id())

    def _accept_loop(self) -> None:
        while not self.stop_signal.is_set():
            try:
                self._free_workers.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                sock, address = self.listener.accept()
            except OSError as exc:
                self._free_workers.put(None)
                if not _accept_error_is_transient(exc, self.stop_signal):
                    return
                continue
            with self._open_lock:
                self._open.add(sock)
            self._executor.submit(self._serve_one, sock, address)

    def _serve_one(self, sock: socket.socket, address) -> None:
        try:
            self.serve(sock, address, self._local.slot)
        finally:
            with self._open_lock:
                self._open.discard(sock)
            self._free_workers.put(None)

    def alive_workers(self) -> int:
        # the executor starts threads on demand; all `size` are available
        return self.size if self._acceptor.is_alive() else 0

    def stop(self, grace: float, cut_short: Callable[[], bool] = lambda: False) -> list[int]:
        self._wake_acceptors()
        self._acceptor.join()
        deadline = time.monotonic() + grace
        while self._open and time.monotonic() < deadline and not cut_short():
            time.sleep(0.05)
        self._cut_open_connections()
        self._executor.shutdown(wait=True, cancel_futures=True)
        return []

    def _cut_open_connections(self) -> None:
        with self._open_lock:
            if self._open:
                log.warning("grace period over: closing %d connections still open",
                            len(self._open))
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class PreforkWorker:
    """The child's side of ``PreforkPool``: everything here runs in the worker.

    The supervisor's own descriptors (metrics socket, signal wakeup pair) are
    closed by the supervisor's fork hook before ``main()`` starts.
    """

    BOOT_ERROR_EXIT = 3          # the exit status of a worker that cannot start

    def __init__(self, index: int, listener: socket.socket, serve: ServeFn,
                 table: WorkerTable, stop_signal: StopSignal):
        self.index = index
        self.name = f"Worker-{index + 1}"
        self.listener = listener
        self.serve = serve
        self.table = table
        self.stop_signal = stop_signal

    def main(self) -> None:
        """The target of the worker's ``multiprocessing.Process``."""
        self.init_process()
        self.run()

    def init_process(self) -> None:
        """Signals, then the worker's row of the table; on failure the process
        exits with ``BOOT_ERROR_EXIT`` (the pool then stops the server)."""
        try:
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
        """Accept and serve, one connection at a time, until stopped."""
        while not self.stop_signal.is_set():
            try:
                sock, address = self.listener.accept()
            except OSError as exc:
                if not _accept_error_is_transient(exc, self.stop_signal):
                    return
                continue
            self.serve(sock, address, self.slot)


class PreforkPool(Pool):
    """The supervisor's side of pre-forked worker processes (Worker-N, one
    ``PreforkWorker`` each) sharing one listening socket."""

    log_format = "%(asctime)s - %(processName)s - %(levelname)s - %(message)s"

    MAX_RESTARTS_PER_MINUTE = 100

    def start(self) -> None:
        # "fork" explicitly: the children must inherit the listening socket,
        # and Python 3.14 changed the POSIX default to forkserver.
        self._context = multiprocessing.get_context("fork")
        self._workers: dict[int, multiprocessing.Process] = {}
        self._restarts: list[float] = []
        self._ended: list[int] = []      # pids not yet returned by maintain()/stop()
        self._stopping = False
        for index in range(self.size):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        worker = PreforkWorker(index, self.listener, self.serve, self.table,
                               self.stop_signal)
        process = self._context.Process(target=worker.main, name=worker.name)
        process.start()
        self._workers[index] = process

    def maintain(self) -> list[int]:
        self._reap_and_replace()
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
        self.table.reset_row(index)
        self._ended.append(pid)
        self._report_exit(name, pid, code)

    def _report_exit(self, name: str, pid: int, code: int) -> None:
        if self._stopping:
            if code != 0:
                log.warning("%s (pid %d) %s; not replaced, stopping",
                            name, pid, _describe_exit(code))
            return
        if code == PreforkWorker.BOOT_ERROR_EXIT:
            raise WorkerBootError(f"{name} (pid {pid}) failed to boot")
        log.warning("%s (pid %d) %s; replacing it", name, pid, _describe_exit(code))

    def _respawn(self, index: int) -> None:
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < 60] + [now]
        if len(self._restarts) > self.MAX_RESTARTS_PER_MINUTE:
            raise WorkerBootError(
                f"workers died {len(self._restarts)} times in a minute; giving up")
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
        if self._workers:
            self._kill_the_rest()
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


def _accept_error_is_transient(exc: OSError, stop_signal: StopSignal) -> bool:
    if stop_signal.is_set():
        return False
    if exc.errno in _TRANSIENT_ACCEPT_ERRORS:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            log.error("accept failed: %s; retrying shortly", exc.strerror)
            time.sleep(0.1)
        return True
    if exc.errno not in (errno.EINVAL, errno.EBADF):
        log.error("listener failed: %s", exc)
    return False


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
