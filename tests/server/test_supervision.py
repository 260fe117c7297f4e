"""The supervisor's duties in process mode (and both modes where it says so),
against a real ``python -m server``: a worker that cannot boot and a crash
loop stop the server, kills of running workers never do, no worker outlives
the supervisor, an unexpected error stops everything with one line, a lost
storage folder is not fatal, a grace period that cuts requests short exits
3, and as PID 1 it reaps orphans without touching its own workers."""

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

from server.config import MODES
from server.launcher import server_command, wait_until
from server.pools import PreforkPool
from server.supervisor import EXIT_CUT_SHORT, EXIT_ERROR
from tests.support import REPO_ROOT, ServerProcess, command, connect, free_port

pytestmark = pytest.mark.integration


def patched_server(patch: str) -> str:
    """``python -m server`` with ``patch`` run first in its own process."""
    return f"import sys\n{patch}\nfrom server.__main__ import main\nsys.exit(main(sys.argv[1:]))\n"


# every worker fails to claim its row of the table, as a worker that cannot boot would
BOOT_FAILING_SERVER = patched_server("""
from server.stats import WorkerSlot

def refuse(slot, pid, tid):
    raise RuntimeError("no slot for this worker")

WorkerSlot.claim = refuse
""")

# every worker boots, then ends at once: a crash loop
CRASH_LOOP_SERVER = patched_server("""
import os
from server.pools import PreforkWorker
PreforkWorker.run = lambda worker: os._exit(7)
""")


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


def is_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def listening_pids(port: int) -> set[int]:
    return {c.pid for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port}


def port_is_free_of(port: int, pids: list[int]) -> bool:
    """Whether a server could bind ``port`` now (as the server does: SO_REUSEADDR), or
    else whether none of ``pids`` holds it (another test on this machine may
    have taken the port once it was free)."""
    return can_listen_on(port) or not listening_pids(port) & set(pids)


def can_listen_on(port: int) -> bool:
    """Whether a server could bind ``port`` now (as the server does: SO_REUSEADDR)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            probe.listen()
            return True
        except OSError:
            return False


def run_to_exit(tmp_path, command_prefix: list[str], timeout: float = 30,
                **settings) -> tuple[int, str, list[int]]:
    """Run a server that is expected to exit on its own: (status, log, processes of
    its group still alive when it exited, which are then killed)."""
    log_path = tmp_path / "server.log"
    settings = {"mode": "process", "pool": 3, "host": "127.0.0.1", "port": free_port(),
                "metrics_port": 0, "storage_dir": tmp_path / "files", "stats_interval": 0,
                **settings}
    flags = server_command(**settings)[3:]
    env = {key: value for key, value in os.environ.items() if not key.startswith("FS_")}
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([*command_prefix, *flags],
                                cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        finally:
            leftovers = live_members(proc.pid)
            if leftovers or proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return code, log_path.read_text(errors="replace"), leftovers


# -- boot failures and crash loops stop the server; kills do not -------------------------------

def test_a_worker_that_cannot_boot_stops_the_server(tmp_path):
    code, log, leftovers = run_to_exit(tmp_path, [sys.executable, "-c", BOOT_FAILING_SERVER])
    assert code == EXIT_ERROR, log
    assert re.search(r"^\S+ \S+ - MainProcess - ERROR - Worker-\d \(pid \d+\) failed to boot$",
                     log, re.M), log
    assert re.search(r"^\S+ \S+ - Worker-\d - ERROR - worker failed to start$", log, re.M), log
    assert "RuntimeError: no slot for this worker" in log
    # the only tracebacks are the workers' own: the supervisor stops cleanly
    assert log.count("Traceback") == log.count("worker failed to start"), log
    assert "replacing it" not in log
    assert leftovers == []


@pytest.mark.slow
def test_a_crash_loop_right_after_boot_stops_the_server(tmp_path):
    pool = 2
    cap = max(PreforkPool.MIN_EARLY_EXITS_PER_MINUTE, pool)
    started = time.monotonic()
    code, log, leftovers = run_to_exit(tmp_path, [sys.executable, "-c", CRASH_LOOP_SERVER],
                                       pool=pool)
    elapsed = time.monotonic() - started
    assert code == EXIT_ERROR, log[-3000:]
    assert "exited with status 7; replacing it" in log
    assert re.search(rf"- ERROR - {cap + 1} workers in a minute ended within "
                     rf"{PreforkPool.EARLY_EXIT_SECONDS:g} s of their start \(a crash loop; "
                     rf"the cap is {cap}\); giving up$", log, re.M), log[-3000:]
    assert "Traceback" not in log
    assert elapsed < 20          # about cap / pool ticks of 0.5 s
    assert leftovers == []


def kill_every_worker(srv: ServerProcess, timeout: float) -> int:
    """SIGKILL every live worker, then wait until all are replaced or the server
    exits; returns how many were killed."""
    victims = set(live_children(srv.proc.pid))
    for pid in victims:
        os.kill(pid, signal.SIGKILL)

    def replaced() -> bool:
        if srv.proc.poll() is not None:
            return True
        workers = set(live_children(srv.proc.pid))
        return len(workers) == srv.pool and not workers & victims

    assert wait_until(replaced, timeout), srv.log()[-3000:]
    return len(victims)


@pytest.mark.slow
def test_kills_of_workers_that_ran_a_while_never_stop_the_server(tmp_path):
    pool = 8
    cap = max(PreforkPool.MIN_EARLY_EXITS_PER_MINUTE, pool)
    srv = ServerProcess(tmp_path / "files", mode="process", pool=pool)
    try:
        kills, started = 0, time.monotonic()
        while kills <= cap:
            # each worker older than EARLY_EXIT_SECONDS: killed, not crash-looping
            youngest = max(psutil.Process(pid).create_time()
                           for pid in live_children(srv.proc.pid))
            time.sleep(max(0.0, youngest + PreforkPool.EARLY_EXIT_SECONDS + 0.3 - time.time()))
            kills += kill_every_worker(srv, timeout=10)
            assert srv.proc.poll() is None, srv.log()[-3000:]
        elapsed = time.monotonic() - started
        assert srv.http_json("/readyz")["ready"] is True
        assert command(srv.port, "LIST") == {"status": "OK", "data": []}
        srv.worker_pids()            # remember the replacements for the leftover check
    finally:
        code = srv.stop()
    log = srv.log()
    assert code == 0, log[-3000:]
    assert kills > cap and elapsed < 20
    assert log.count("was killed by SIGKILL; replacing it") == kills
    assert "giving up" not in log and "Traceback" not in log
    assert srv.leftover_processes() == []


# -- no orphans ----------------------------------------------------------------------------------

def test_workers_end_within_2_s_of_the_supervisor_and_the_ports_are_free(tmp_path):
    srv = ServerProcess(tmp_path / "files", mode="process", pool=4)
    try:
        workers = live_children(srv.proc.pid)
        assert len(workers) == 4
        with connect(srv.port) as client:      # a connection open at that moment
            client.sendall(b"LIST\r\n\r\n")
            client.recv(100)
            os.kill(srv.proc.pid, signal.SIGKILL)
            started = time.monotonic()
            assert wait_until(lambda: not any(is_alive(pid) for pid in workers), 5), \
                [pid for pid in workers if is_alive(pid)]
            elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"the workers took {elapsed:.2f} s to end"
        ours = [srv.proc.pid, *workers]
        assert port_is_free_of(srv.port, ours) and port_is_free_of(srv.metrics_port, ours)
    finally:
        srv.stop()
    assert srv.leftover_processes() == []


def test_an_unexpected_error_stops_every_worker_with_one_line(tmp_path):
    """A real cause: the supervisor runs out of file descriptors, so the
    replacement of a killed worker fails (os.pipe: EMFILE) in its loop."""
    srv = ServerProcess(tmp_path / "files", mode="process", pool=3)
    try:
        workers = live_children(srv.proc.pid)
        hard = resource.prlimit(srv.proc.pid, resource.RLIMIT_NOFILE)[1]
        # 0, 1 and 2 are taken: from now on every new descriptor fails
        resource.prlimit(srv.proc.pid, resource.RLIMIT_NOFILE, (3, hard))
        os.kill(workers[0], signal.SIGKILL)
        code = srv.proc.wait(timeout=15)
        workers_gone = wait_until(lambda: not any(is_alive(pid) for pid in workers), 2)
    finally:
        srv.stop()
    log = srv.log()
    assert code == EXIT_ERROR, log[-3000:]
    lines = [line for line in log.splitlines() if " failed: " in line]
    assert len(lines) == 1, log[-3000:]
    assert re.search(r" - MainProcess - ERROR - supervising the workers failed: OSError: "
                     r"\[Errno 24\] Too many open files \(at \S+\.py:\d+ in \w+, from "
                     r"\S+\.py:\d+ in \w+\); stopping the workers \(exit status 1\)$",
                     lines[0]), lines[0]
    assert "Traceback" not in log and "cannot start" not in log
    assert workers_gone
    assert srv.leftover_processes() == []


def test_too_many_open_files_at_start_stops_the_started_workers(tmp_path):
    limited = ["sh", "-c", 'ulimit -n 64 && exec "$@"', "sh", sys.executable, "-m", "server"]
    code, log, leftovers = run_to_exit(tmp_path, limited, pool=100)
    assert code == EXIT_ERROR, log[-3000:]
    lines = [line for line in log.splitlines() if "starting the workers failed" in line]
    assert len(lines) == 1, log[-3000:]
    assert re.search(r" - MainProcess - ERROR - starting the workers failed: OSError: "
                     r"\[Errno 24\] Too many open files \(.*\); stopping the workers "
                     r"\(exit status 1\)$", lines[0]), lines[0]
    assert "cannot start" not in log
    assert leftovers == []


@pytest.mark.parametrize("loss", ["deleted", "replaced by a file"])
def test_a_lost_storage_folder_does_not_stop_the_server(tmp_path, loss):
    """The supervisor removes a dead worker's unfinished uploads; when it cannot,
    it says so and goes on."""
    srv = ServerProcess(tmp_path / "files", mode="process", pool=2)
    try:
        shutil.rmtree(srv.storage)
        if loss == "replaced by a file":
            srv.storage.write_bytes(b"not a folder")
        kill_every_worker(srv, timeout=10)
        assert srv.proc.poll() is None, srv.log()[-3000:]
        assert srv.http_json("/readyz")["ready"] is True
        srv.worker_pids()
    finally:
        code = srv.stop()
    log = srv.log()
    assert code == 0, log[-3000:]
    assert log.count("was killed by SIGKILL; replacing it") == 2
    if loss == "replaced by a file":
        assert re.search(r"- WARNING - unfinished uploads of pid \d+ not removed: .*"
                         r"Not a directory$", log, re.M), log[-3000:]
    assert "Traceback" not in log
    assert srv.leftover_processes() == []


# -- a shutdown that cuts requests short ------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_a_grace_period_that_cuts_a_transfer_short_exits_3(tmp_path, mode):
    srv = ServerProcess(tmp_path / "files", mode=mode, pool=2, grace_seconds=0.5)
    size = 20 * 2 ** 20
    (srv.storage / "big.bin").write_bytes(b"x" * size)
    received = []
    try:
        with connect(srv.port) as client:
            client.sendall(b"GET big.bin\r\n\r\n")
            received.append(len(client.recv(65536)))        # the transfer has begun

            def read_slowly() -> None:                  # about 3 MB/s: 9 s for all of it
                while True:
                    try:
                        chunk = client.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    received.append(len(chunk))
                    time.sleep(0.02)

            reader = threading.Thread(target=read_slowly)
            reader.start()
            time.sleep(0.3)
            started = time.monotonic()
            code = srv.stop()
            elapsed = time.monotonic() - started
            reader.join(10)
    finally:
        srv.stop()
    log = srv.log()
    assert code == EXIT_CUT_SHORT, log[-3000:]
    assert elapsed < 5
    assert sum(received) < size            # base64 makes the whole reply larger still
    assert re.search(r"- WARNING - stopped; the grace period cut 1 request short "
                     rf"\(exit status {EXIT_CUT_SHORT}\)$", log, re.M), log[-3000:]
    assert srv.leftover_processes() == []


# -- PID 1 ------------------------------------------------------------------------------

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
