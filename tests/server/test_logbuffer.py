import io
import logging
import multiprocessing
import re

import pytest

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
