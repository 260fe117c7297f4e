import os
import threading

import pytest


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
