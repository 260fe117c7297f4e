import io
import logging
import multiprocessing
import re
import threading
import time
import types

import pytest

from server import logbuffer
from server.logbuffer import AccessLog, BatchingStreamHandler
from server.pools import PreforkPool, ThreadPool

pytestmark = pytest.mark.unit

LINE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - %s - INFO - %s\n"


@pytest.fixture
def logger():
    log = logging.Logger("test.logbuffer")     # outside the hierarchy pytest hooks into
    log.setLevel(logging.INFO)
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


@pytest.mark.parametrize("pool", [ThreadPool, PreforkPool])
def test_access_line_is_what_logging_itself_writes(logger, pool):
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(logging.Formatter(pool.log_format))
    logger.addHandler(handler)
    AccessLog(logger).info("via the access log")
    assert stream.getvalue() == ""            # batched, not written yet
    logger.info("via logging")                # written at once, after what was batched
    name = "MainThread" if pool is ThreadPool else "MainProcess"
    first, second = stream.getvalue().splitlines(keepends=True)
    assert re.fullmatch(LINE % (name, "via the access log"), first)
    assert re.fullmatch(LINE % (name, "via logging"), second)


@pytest.mark.parametrize("formatter", [
    logging.Formatter("%(message).5s|%(name)-16s|%(levelno)d|%(threadName)s"),
    logging.Formatter("{levelname} {message}!", style="{"),
])
def test_access_line_in_formats_beyond_plain_keys_is_what_logging_writes(logger, formatter):
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    AccessLog(logger).info("via the access log")
    logger.info("via the access log")
    handler.flush()
    first, second = stream.getvalue().splitlines()
    assert first == second


def test_access_log_respects_the_level_and_other_handlers(logger):
    stream = io.StringIO()
    plain = logging.StreamHandler(stream)
    plain.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logger.addHandler(plain)
    AccessLog(logger).info("hello")
    assert stream.getvalue() == "test.logbuffer INFO hello\n"
    quiet = logging.Logger("test.quiet", level=logging.WARNING)
    quiet.addHandler(plain)
    AccessLog(quiet).info("hidden")
    assert stream.getvalue() == "test.logbuffer INFO hello\n"


def _child_logs(path: str) -> None:
    log = logging.getLogger("test.logbuffer.child")
    log.propagate = False
    handler = BatchingStreamHandler(open(path, "a"))
    handler.setFormatter(logging.Formatter("%(processName)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    AccessLog(log).info("last words")   # the process exits before the flusher runs


def test_a_worker_process_flushes_its_lines_when_it_exits(tmp_path):
    path = tmp_path / "child.log"
    child = multiprocessing.get_context("fork").Process(
        target=_child_logs, args=(str(path),), name="Worker-9")
    child.start()
    child.join(10)
    assert child.exitcode == 0
    assert path.read_text() == "Worker-9 last words\n"


def test_threads_logging_their_first_lines_at_once_start_one_flusher_and_lose_nothing():
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream)
    flushers = []
    flush_periodically = handler._flush_periodically

    def counted():
        flushers.append(threading.current_thread().name)
        flush_periodically()

    handler._flush_periodically = counted       # what the flusher thread runs
    workers, lines = 8, 500
    start = threading.Barrier(workers)

    def work(index):
        start.wait()
        for number in range(lines):
            handler.append_line(f"{index} {number}\n")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    handler.close()
    written = stream.getvalue().splitlines()
    assert sorted(written) == sorted(f"{i} {n}" for i in range(workers) for n in range(lines))
    for index in range(workers):               # in order within each thread
        assert [w for w in written if w.startswith(f"{index} ")] == [
            f"{index} {n}" for n in range(lines)]
    assert len(flushers) == 1


def test_access_lines_of_threads_in_different_seconds_keep_their_own_second(logger,
                                                                            monkeypatch):
    """The cached text of the current second is never paired with another thread's second."""
    clock = threading.local()
    monkeypatch.setattr(logbuffer, "time", types.SimpleNamespace(
        time_ns=lambda: clock.now_ns, strftime=time.strftime, localtime=time.localtime))
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s|%(message)s"))
    logger.addHandler(handler)
    access_log = AccessLog(logger)
    workers, lines, base = 4, 10000, 1_700_000_000
    start = threading.Barrier(workers)

    def work(index):
        # each thread lives in its own second
        clock.now_ns = (base + 3600 * index) * 10**9 + 250_000_000
        start.wait()
        for _ in range(lines):
            access_log.info(str(index))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    handler.flush()
    expected = {str(i): time.strftime("%Y-%m-%d %H:%M:%S,250", time.localtime(base + 3600 * i))
                for i in range(workers)}
    written = stream.getvalue().splitlines()
    assert len(written) == workers * lines
    wrong = [line for line in written if line.split("|")[0] != expected[line.split("|")[1]]]
    assert wrong == []
