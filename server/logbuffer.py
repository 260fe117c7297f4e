"""A logging handler that batches the per-connection lines.

Every connection logs a line when it closes; at thousands of connections a
second, one locked ``write()`` per line costs the workers more than serving
LIST does (in thread mode each write also hands the GIL to another thread).
``BatchingStreamHandler`` writes ordinary records at once (they are rare:
startup, warnings, errors), but keeps the lines of ``AccessLog`` and writes
them from a small flusher thread every ``FLUSH_SECONDS``, before any
ordinary record, and when a worker process exits.  Lines stay in order
within a process; a process killed with SIGKILL loses at most its last
``FLUSH_SECONDS`` of access lines.

Thread safety does not lean on the GIL: the pending lines are a deque
(its appends and pops are atomic, also in a free-threaded build), the
flusher's start and the write are under the handler's lock, and
``AccessLog`` keeps its per-second timestamp text in one tuple, replaced
whole, and each thread's layout in a thread-local.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import os
import re
import sys
import threading
import time
from multiprocessing import util

__all__ = ["BatchingStreamHandler", "AccessLog"]


class BatchingStreamHandler(logging.StreamHandler):
    FLUSH_SECONDS = 1.0       # each wake-up costs every worker process a little
    MAX_PENDING = 1000       # a burst larger than this is written at once

    def __init__(self, stream=None):
        super().__init__(stream or sys.stderr)
        self._pending: collections.deque[str] = collections.deque()
        self._flusher_pid = None
        self._wakeup = threading.Event()
        # a forked child must not write the lines its parent had not flushed yet
        os.register_at_fork(after_in_child=self._forget_parent_lines)

    def _forget_parent_lines(self) -> None:
        self._pending = collections.deque()
        self._flusher_pid = None
        # the parent's flusher may have held this Event's lock at the fork
        self._wakeup = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self.append_line(line)
        self.flush()

    def append_line(self, line: str) -> None:
        if self._flusher_pid is None:
            self._start_flusher()           # first line in this process (or after fork)
        pending = self._pending
        pending.append(line)
        if len(pending) >= self.MAX_PENDING:
            self.flush()

    def _start_flusher(self) -> None:
        """One flusher per process however many threads log their first line at once."""
        with self.lock:
            if self._flusher_pid is not None:
                return                      # another thread started it meanwhile
            self._flusher_pid = os.getpid()
            thread = threading.Thread(target=self._flush_periodically, name="LogFlusher",
                                      daemon=True)
            thread.start()
            # multiprocessing children leave through os._exit(): flush there too
            util.Finalize(self, self.flush, exitpriority=1)

    def _flush_periodically(self) -> None:
        while not self._wakeup.wait(self.FLUSH_SECONDS):
            self.flush()

    def flush(self) -> None:
        with self.lock:
            pending = self._pending
            # what was appended by now; a line appended meanwhile waits for the next flush
            lines = [pending.popleft() for _ in range(len(pending))]
            if lines:
                try:
                    self.stream.write("".join(lines))
                    self.stream.flush()
                except (OSError, ValueError):
                    pass

    def close(self) -> None:
        self.flush()
        self._wakeup.set()
        super().close()


_MILLISECONDS = tuple(f",{n:03d}" for n in range(1000))     # asctime's last part


class AccessLog:
    """The per-connection line, formatted without a LogRecord.

    It produces exactly what ``logger.info(message)`` would through a
    ``BatchingStreamHandler`` whose format uses only asctime, threadName,
    processName, levelname, name and message (the course formats do); with
    any other handler or format it simply calls ``logger.info``.  A thread's
    (and process's) name is read when it writes its first line.
    """

    _FAST_KEYS = {"asctime", "threadName", "processName", "levelname", "name", "message"}

    def __init__(self, logger: logging.Logger):
        self.logger = logger
        # (first millisecond of a second, its text): one object, so a thread
        # never pairs one thread's second with another's text
        self._second_text: tuple[int, str] = (-1000, "")
        self._fast = False          # not looked up yet (logging is configured later)
        # this thread's layout: the format with all but asctime and message filled in
        self._local = threading.local()
        os.register_at_fork(after_in_child=self._forget_layouts)

    def _forget_layouts(self) -> None:
        self._local = threading.local()     # a forked child has another process name

    def _fast_path(self):
        logger = self.logger
        while logger:
            for handler in logger.handlers:
                formatter = handler.formatter
                fmt = getattr(formatter, "_fmt", None) or ""
                keys = set(re.findall(r"%\((\w+)\)s", fmt))
                if (isinstance(handler, BatchingStreamHandler) and keys <= self._FAST_KEYS
                        and type(formatter) is logging.Formatter
                        and type(formatter._style) is logging.PercentStyle
                        and not re.search(r"%\(\w*\)[^s]", fmt)   # only plain %(key)s
                        and formatter.datefmt is None):
                    return handler, fmt
                return None
            logger = logger.parent if logger.propagate else None
        return None

    def info(self, message: str) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        if self._fast is False:
            self._fast = self._fast_path()
        fast = self._fast
        if fast is None:
            self.logger.info("%s", message)
            return
        handler, fmt = fast
        now = time.time_ns() // 1_000_000       # milliseconds
        second_starts, second_text = self._second_text
        if not 0 <= now - second_starts < 1000:
            second = now // 1000
            second_starts = second * 1000
            second_text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._second_text = (second_starts, second_text)
        asctime = second_text + _MILLISECONDS[now - second_starts]
        try:
            head, middle, tail = self._local.layout
        except AttributeError:
            head, middle, tail = self._local.layout = self._layout(
                fmt, threading.current_thread().name, multiprocessing.current_process().name,
                handler.terminator)
        if middle is None:
            handler.append_line(head % {"asctime": asctime, "message": message})
        else:
            handler.append_line(f"{head}{asctime}{middle}{message}{tail}")

    def _layout(self, fmt: str, thread_name: str, process_name: str, terminator: str):
        """``fmt`` with the fields that are the same on every line of this thread
        filled in: ``(head, middle, tail)`` to put around asctime and message
        when the format has each once, in that order (the course formats do);
        otherwise ``(layout, None, None)`` for ``layout % {"asctime": ..., "message": ...}``."""
        fixed = {"threadName": thread_name, "processName": process_name,
                 "levelname": "INFO", "name": self.logger.name}
        mark = "\0"
        if mark not in fmt + "".join(fixed.values()):
            pieces = (fmt % {**fixed, "asctime": f"{mark}asctime{mark}",
                             "message": f"{mark}message{mark}"}).split(mark)
            if len(pieces) == 5 and pieces[1::2] == ["asctime", "message"]:
                return pieces[0], pieces[2], pieces[4] + terminator
        layout = fmt.replace("%%", "%%%%") % {
            **{key: value.replace("%", "%%") for key, value in fixed.items()},
            "asctime": "%(asctime)s", "message": "%(message)s"}
        return layout + terminator, None, None
