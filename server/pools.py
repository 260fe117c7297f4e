"""The two concurrency models, behind one small interface.

``Pool`` receives the bound listening socket, a ``serve(sock, address,
slot)`` callable (the connection handler), the shared ``WorkerTable`` and
the shared ``StopSignal``.  The supervisor calls ``start()``, then
``maintain()`` about twice a second, then ``stop(grace)``.

* ``ThreadPool`` (``FS_MODE=thread``): one acceptor thread feeding a
  ``ThreadPoolExecutor(max_workers=pool)``.  The acceptor takes a connection
  only when a worker is free (a semaphore), so waiting clients queue in the
  kernel's listen backlog exactly as they do in process mode, and "busy
  workers" means the same thing in both modes.
* ``PreforkPool`` (``FS_MODE=process``): ``pool`` processes forked from
  the supervisor (``multiprocessing`` with the "fork" context, which keeps
  the inherited listener), each blocking in ``accept()`` on the shared
  socket and serving one connection at a time.  The supervisor replaces a
  worker that dies and logs why; a worker that fails while booting stops
  the server instead of being restarted forever.

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

__all__ = ["Pool", "ThreadPool", "PreforkPool", "MODES", "StopSignal", "WorkerBootError"]

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

    mode = ""
    log_format = "%(asctime)s - %(levelname)s - %(message)s"

    def __init__(self, size: int, listener: socket.socket, serve: ServeFn,
                 table: WorkerTable, stop_signal: StopSignal,
                 on_worker_exit: Callable[[int], None] = lambda pid: None,
                 close_in_worker: Callable[[], None] = lambda: None):
        self.size = size
        self.listener = listener
        self.serve = serve
        self.table = table
        self.stop_signal = stop_signal
        self.on_worker_exit = on_worker_exit
        self.close_in_worker = close_in_worker

    def start(self) -> None:
        raise NotImplementedError

    def maintain(self) -> None:
        """Supervise workers; called from the supervisor's loop."""

    def alive_workers(self) -> int:
        raise NotImplementedError

    def stop(self, grace: float, cut_short: Callable[[], bool] = lambda: False) -> None:
        """Stop accepting, give in-flight requests ``grace`` seconds (less if
        ``cut_short()`` turns true), then end what is left."""
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

    mode = "thread"
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

    def stop(self, grace: float, cut_short: Callable[[], bool] = lambda: False) -> None:
        self._wake_acceptors()
        self._acceptor.join()
        deadline = time.monotonic() + grace
        while self._open and time.monotonic() < deadline and not cut_short():
            time.sleep(0.05)
        with self._open_lock:
            if self._open:
                log.warning("grace period over: closing %d connections still open",
                            len(self._open))
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._executor.shutdown(wait=True, cancel_futures=True)


class PreforkPool(Pool):
    """Pre-forked worker processes (Worker-N) sharing one listening socket."""

    mode = "process"
    log_format = "%(asctime)s - %(processName)s - %(levelname)s - %(message)s"

    BOOT_ERROR_EXIT = 3          # a worker exits with this when it cannot start
    MAX_RESTARTS_PER_MINUTE = 100

    def start(self) -> None:
        # "fork" explicitly: the children must inherit the listening socket,
        # and Python 3.14 changed the POSIX default to forkserver.
        self._context = multiprocessing.get_context("fork")
        self._workers: dict[int, multiprocessing.Process] = {}
        self._restarts: list[float] = []
        self._stopping = False
        for index in range(self.size):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        process = self._context.Process(target=self._worker_main, args=(index,),
                                        name=f"Worker-{index + 1}")
        process.start()
        self._workers[index] = process

    def _worker_main(self, index: int) -> None:
        """Runs in the child."""
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)     # the supervisor decides
            signal.signal(signal.SIGTERM, lambda *_: self.stop_signal.set_local())
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            self.close_in_worker()
            slot = self.table.slot(index)
            slot.claim(os.getpid(), threading.get_native_id())
        except Exception:
            log.exception("worker failed to start")
            os._exit(self.BOOT_ERROR_EXIT)
        while not self.stop_signal.is_set():
            try:
                sock, address = self.listener.accept()
            except OSError as exc:
                if not _accept_error_is_transient(exc, self.stop_signal):
                    break
                continue
            self.serve(sock, address, slot)

    def maintain(self) -> None:
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
        self.on_worker_exit(pid)
        if self._stopping and code == 0:
            return
        if code == self.BOOT_ERROR_EXIT:
            raise WorkerBootError(f"{name} (pid {pid}) failed to boot")
        log.warning("%s (pid %d) %s; %s", name, pid, _describe_exit(code),
                    "not replaced, stopping" if self._stopping else "replacing it")

    def _respawn(self, index: int) -> None:
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < 60] + [now]
        if len(self._restarts) > self.MAX_RESTARTS_PER_MINUTE:
            raise WorkerBootError(
                f"workers died {len(self._restarts)} times in a minute; giving up")
        self._spawn(index)

    def alive_workers(self) -> int:
        return sum(1 for p in self._workers.values() if p.exitcode is None)

    def stop(self, grace: float, cut_short: Callable[[], bool] = lambda: False) -> None:
        self._stopping = True
        self._wake_acceptors()
        for process in self._workers.values():
            _signal(process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self._workers and time.monotonic() < deadline and not cut_short():
            self.maintain()
            time.sleep(0.05)
        if self._workers:
            log.warning("grace period over: killing %d workers", len(self._workers))
            for process in self._workers.values():
                _signal(process, signal.SIGKILL)
            for process in self._workers.values():
                process.join()
            self.maintain()


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


def _signal(process, signum: int) -> None:
    try:
        os.kill(process.pid, signum)
    except (ProcessLookupError, TypeError):
        pass


def _describe_exit(code: int) -> str:
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
