"""Shared by every test: the tier check, the Hypothesis profiles, the leak check, and
the real-server fixtures run once per concurrency model.

Tiers (markers registered in pyproject.toml; see README "Tests"): every test is
``unit`` or ``integration``, and may also be ``slow``, ``docker`` or ``browser``.
"""

import os
import threading

import pytest
from hypothesis import HealthCheck, settings

from server.config import MODES
from tests.support import ServerProcess

# --------------------------------------------------------------------------
# tiers

TIERS = ("unit", "integration")
NEEDS_PROCESSES = ("docker", "browser")


def pytest_collection_modifyitems(config, items):
    """Every test is in exactly one tier, so ``-m unit`` and ``-m integration`` split
    the suite; tests that need Docker or a browser are integration tests."""
    problems = []
    for item in items:
        tiers = [tier for tier in TIERS if item.get_closest_marker(tier)]
        if len(tiers) != 1:
            problems.append(f"{item.nodeid}: marked {' and '.join(tiers) or 'with no tier'}")
        elif tiers == ["unit"] and any(item.get_closest_marker(m) for m in NEEDS_PROCESSES):
            problems.append(f"{item.nodeid}: docker and browser tests are integration tests")
    if problems:
        raise pytest.UsageError(
            "mark each test unit or integration (pytestmark or a decorator):\n  "
            + "\n  ".join(problems))


# --------------------------------------------------------------------------
# Hypothesis: one place for the settings the property tests share.  A test sets
# only what differs (its max_examples).  "default" is for developers; "ci" is
# what Hypothesis picks when it sees a CI variable, or with HYPOTHESIS_PROFILE=ci
# or --hypothesis-profile=ci: the same examples per test, derandomized, no
# example database, and a reproduction blob printed on failure.

settings.register_profile(
    "default",
    settings.get_profile("default"),    # Hypothesis's own, not whatever is loaded now
    max_examples=150,
    deadline=None,      # these tests stream large inputs; timing varies with the machine
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("ci", settings.get_profile("default"),
                          derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                      or settings.get_current_profile_name())


# --------------------------------------------------------------------------
# no leaks

def open_fds() -> set[str]:
    """This process's fds, without multiprocessing's shared-memory arenas
    (its global heap keeps those open for the life of the process)."""
    fds = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue            # the fd listdir itself used
        if "/pym-" not in target:
            fds.add(f"{fd} -> {target}")
    return fds


@pytest.fixture(autouse=True)
def no_leaked_threads_or_fds():
    """Every test gives back the threads and file descriptors it took."""
    threads_before = set(threading.enumerate())
    fds_before = open_fds()
    yield
    new_threads = [t for t in threading.enumerate() if t not in threads_before]
    for thread in new_threads:
        thread.join(timeout=5)
    leaked_threads = [t.name for t in new_threads if t.is_alive()]
    assert not leaked_threads, f"threads left running: {leaked_threads}"
    leaked_fds = open_fds() - fds_before
    assert not leaked_fds, f"file descriptors left open: {sorted(leaked_fds)}"


# --------------------------------------------------------------------------
# real servers (tests.support.ServerProcess), each fixture run once per mode
# (server.config.MODES).  Every server is stopped with SIGTERM and must exit 0.

@pytest.fixture(params=MODES)
def fresh_server(request, tmp_path):
    """A server of its own for this test: pool 5, FS_TIMEOUT 10 s.  Afterwards no
    process of it (supervisor or worker) may be left."""
    srv = ServerProcess(tmp_path / "files", mode=request.param, pool=5, timeout=10)
    yield srv
    code = srv.stop()
    assert code == 0, srv.log()
    assert srv.leftover_processes() == []


@pytest.fixture(params=MODES)
def pool50_server(request, tmp_path):
    """A server of its own for a Locust run: pool 50, WARNING logs (no line per
    connection).  Afterwards no process of it may be left."""
    srv = ServerProcess(tmp_path / "files", mode=request.param, pool=50, log_level="WARNING")
    yield srv
    assert srv.stop() == 0
    assert srv.leftover_processes() == []


def start_server(storage, mode: str, pool: int = 5, **settings) -> ServerProcess:
    storage.mkdir(parents=True, exist_ok=True)
    return ServerProcess(storage, mode=mode, pool=pool, **settings)


def stop_server(server: ServerProcess) -> None:
    """SIGTERM by pid, bounded wait; the exit status must be 0."""
    code = server.stop()
    assert code == 0, f"server exit status {code}:\n{server.log()}"


@pytest.fixture(scope="module", params=MODES)
def module_server(request, tmp_path_factory):
    """One server (pool 5) per test module and mode, shared by its tests; use
    ``shared_server``, which empties its storage before each test."""
    server = start_server(tmp_path_factory.mktemp(f"server-{request.param}") / "files",
                          request.param)
    yield server
    stop_server(server)


@pytest.fixture
def shared_server(module_server):
    """The module's server, still running, with an empty storage folder."""
    assert module_server.proc.poll() is None, module_server.log()
    for entry in module_server.storage.iterdir():
        if entry.is_file() and not entry.name.startswith("."):   # the server's lock file stays
            entry.unlink()
    return module_server


@pytest.fixture
def server_factory(tmp_path):
    """Start extra servers (with FS_* settings, e.g. timeout=0.3) stopped at teardown:
    ``server_factory("thread", pool=5, **settings)``."""
    started = []

    def factory(mode="thread", pool=5, **settings):
        server = start_server(tmp_path / f"files-{len(started)}", mode, pool, **settings)
        started.append(server)
        return server

    yield factory
    for server in started:
        stop_server(server)


@pytest.fixture
def no_venv_ft(tmp_path, monkeypatch):
    """No free-threaded interpreter where ``make venv-ft`` puts it; returns that path."""
    from scenarios.backends import local
    missing = tmp_path / ".venv-ft" / "bin" / "python"
    monkeypatch.setattr(local, "FREETHREADED_PYTHON", missing)
    return missing
