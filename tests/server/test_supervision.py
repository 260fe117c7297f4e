"""The supervisor's duties in process mode, against a real ``python -m server``:
a worker that cannot boot stops the server, workers that keep dying make it
give up, and as PID 1 it reaps orphans without touching its own workers."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest

from server.launcher import server_command, wait_until
from server.pools import PreforkPool
from tests.support import REPO_ROOT, ServerProcess, command, free_port

pytestmark = pytest.mark.integration


# The server with one change made in its own process before it starts: every
# worker fails to claim its row of the table, as a worker that cannot boot would.
BOOT_FAILING_SERVER = """
import sys
from server.stats import WorkerSlot

def refuse(slot, pid, tid):
    raise RuntimeError("no slot for this worker")

WorkerSlot.claim = refuse
from server.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def live_members(pgid: int) -> list[int]:
    """Live processes of a process group (a server started in a session of its own
    leads its group; the id cannot be reused while any member lives)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except (OSError, psutil.Error):
            pass
    return found


def live_children(pid: int) -> list[int]:
    children = []
    for child in psutil.Process(pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                children.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return children


def test_a_worker_that_cannot_boot_stops_the_server(tmp_path):
    log_path = tmp_path / "server.log"
    flags = server_command(mode="process", pool=3, host="127.0.0.1", port=free_port(),
                           metrics_port=0, storage_dir=tmp_path / "files",
                           stats_interval=0)[3:]
    env = {key: value for key, value in os.environ.items() if not key.startswith("FS_")}
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-c", BOOT_FAILING_SERVER, *flags],
                                cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=30)
        finally:
            leftovers = live_members(proc.pid)
            if leftovers:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    log = log_path.read_text(errors="replace")
    assert code == 1, log
    assert re.search(r"^\S+ \S+ - MainProcess - ERROR - Worker-\d \(pid \d+\) failed to boot$",
                     log, re.M), log
    assert re.search(r"^\S+ \S+ - Worker-\d - ERROR - worker failed to start$", log, re.M), log
    assert "RuntimeError: no slot for this worker" in log
    # the only tracebacks are the workers' own: the supervisor stops cleanly
    assert log.count("Traceback") == log.count("worker failed to start"), log
    assert "replacing it" not in log
    assert leftovers == []


def kill_every_worker(srv: ServerProcess, timeout: float) -> None:
    """SIGKILL every live worker, then wait until all are replaced or the server
    exits."""
    victims = set(live_children(srv.proc.pid))
    for pid in victims:
        os.kill(pid, signal.SIGKILL)

    def replaced() -> bool:
        if srv.proc.poll() is not None:
            return True
        workers = set(live_children(srv.proc.pid))
        return len(workers) == srv.pool and not workers & victims

    assert wait_until(replaced, timeout), srv.log()[-3000:]


def test_workers_that_keep_dying_make_the_supervisor_give_up(tmp_path):
    cap = PreforkPool.MAX_RESTARTS_PER_MINUTE
    # two rounds of killing every worker make cap + 1 restarts
    srv = ServerProcess(tmp_path / "files", mode="process", pool=cap // 2 + 1)
    try:
        started = time.monotonic()
        for _ in range(4):
            if srv.proc.poll() is not None:
                break
            kill_every_worker(srv, timeout=20)
            srv.worker_pids()          # remember the replacements for the leftover check
        code = srv.proc.wait(timeout=20)
        elapsed = time.monotonic() - started
    finally:
        srv.stop()
    log = srv.log()
    assert code == 1, log[-3000:]
    assert f"workers died {cap + 1} times in a minute; giving up" in log
    assert "was killed by SIGKILL; replacing it" in log
    assert "Traceback" not in log
    assert elapsed < 30
    assert srv.leftover_processes() == []


class Pid1Server(ServerProcess):
    """The server as PID 1 of a new PID namespace, exec'd by a shell that first
    leaves an orphan behind: a ``sleep`` whose parent exits at once, so the
    kernel hands it to PID 1, the server.  ``proc`` is ``unshare``, which only
    waits for the server and returns its exit status."""

    SCRIPT = 'sh -c "sleep 120 </dev/null >/dev/null 2>&1 &"; exec "$@"'

    def __init__(self, storage, pool: int):
        super().__init__(storage, mode="process", pool=pool, wrapper=[
            "unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", self.SCRIPT, "sh"])

    @property
    def server_pid(self) -> int:
        return psutil.Process(self.proc.pid).children()[0].pid

    def children_named(self, name: str) -> list[int]:
        return [c.pid for c in psutil.Process(self.server_pid).children() if c.name() == name]

    def stop(self, sig=signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the server itself: ``unshare`` ignores SIGTERM while it waits.
        If the server outlives ``timeout``, the base class kills the group."""
        if self.proc.poll() is None and self.exit_code is None:
            try:
                os.kill(self.server_pid, sig)
                self.proc.wait(timeout)
            except (IndexError, psutil.Error, ProcessLookupError, subprocess.TimeoutExpired):
                pass
        return super().stop(sig, timeout=1.0)


def unshare_refusal() -> str | None:
    """Why a PID namespace cannot be made here, or None if it can."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                           capture_output=True, text=True, timeout=10)
    if probe.returncode != 0:
        return (f"unshare --pid is not permitted here (uid {os.geteuid()}): "
                f"{probe.stderr.strip()}")
    return None


def test_as_pid_1_the_server_reaps_orphans_and_keeps_its_workers(tmp_path):
    refusal = unshare_refusal()
    if refusal:
        pytest.skip(refusal)
    srv = Pid1Server(tmp_path / "files", pool=2)
    try:
        orphans = srv.children_named("sleep")
        assert len(orphans) == 1, psutil.Process(srv.server_pid).children()
        workers = sorted(set(live_children(srv.server_pid)) - set(orphans))
        assert len(workers) == 2
        assert command(srv.port, "LIST") == {"status": "OK", "data": []}
        os.kill(orphans[0], signal.SIGKILL)      # now a zombie only its parent can reap

        def reaped() -> bool:
            return not psutil.pid_exists(orphans[0])

        assert wait_until(reaped, 10), f"orphan left as {psutil.Process(orphans[0]).status()}"
        for _ in range(5):
            assert command(srv.port, "LIST") == {"status": "OK", "data": []}
        assert sorted(live_children(srv.server_pid)) == workers
        assert srv.http_json("/readyz")["workers_alive"] == 2
    finally:
        code = srv.stop()
    log = srv.log()
    assert code == 0, log[-3000:]
    assert "replacing it" not in log and "Traceback" not in log
    assert srv.leftover_processes() == []
