"""server.launcher: the one way tests, bench and the local backend start a server."""

import os
import signal
import sys
import time

import psutil
import pytest

from server.launcher import ServerProcess, server_command
from tests.support import command


@pytest.mark.unit
def test_server_command_passes_each_setting_as_its_flag():
    argv = server_command("py", mode="process", pool=3, host="127.0.0.1", storage_dir="/s",
                          metrics_port=0, log_level="WARNING")
    assert argv == ["py", "-m", "server", "--mode", "process", "--pool", "3",
                    "--ip", "127.0.0.1", "--storage", "/s", "--metrics-port", "0",
                    "--log-level", "WARNING"]


@pytest.mark.unit
def test_server_command_refuses_an_unknown_setting():
    with pytest.raises(ValueError, match="unknown server setting 'poool'"):
        server_command(poool=3)


@pytest.mark.integration
def test_the_callers_fs_variables_do_not_reach_the_server(tmp_path, monkeypatch):
    # inherited, this would stop the server at start (exit 2: a bad setting)
    monkeypatch.setenv("FS_TIMEOUT", "not-a-number")
    server = ServerProcess(tmp_path / "files", "thread", 2, log_path=tmp_path / "server.log",
                           stats_interval=0).start()
    try:
        assert command(server.port, "LIST") == {"status": "OK", "data": []}
        assert server.http_json("/readyz")["pool"] == 2
    finally:
        assert server.stop() == 0
    assert server.leftovers == []


@pytest.mark.integration
def test_a_server_that_cannot_start_is_reported_with_its_log(tmp_path):
    server = ServerProcess(tmp_path / "files", "thread", 2, log_path=tmp_path / "server.log",
                           max_line_bytes=1)        # below the allowed minimum
    with pytest.raises(RuntimeError, match="exited at start .status 2.") as raised:
        server.start()
    assert "invalid --max-line-bytes='1': must be between 64" in str(raised.value)


IMMORTAL_WORKERS = """
import runpy, sys
import server.pools
server.pools._die_with_parent = lambda: None     # workers that outlive their supervisor
sys.argv = [sys.argv[0]] + sys.argv[4:]          # drop the "python -m server" that follows
runpy.run_module("server", run_name="__main__")
"""


@pytest.mark.integration
def test_workers_that_outlive_their_supervisor_are_reported_then_killed(tmp_path):
    """The server's workers die with it; the launcher must still report (and
    kill) the processes of a server that does not do that."""
    script = tmp_path / "immortal_workers.py"
    script.write_text(IMMORTAL_WORKERS)
    server = ServerProcess(tmp_path / "files", "process", 2, log_path=tmp_path / "server.log",
                           stats_interval=0, wrapper=[sys.executable, str(script)]).start()
    workers = server.worker_pids()
    assert len(workers) == 2
    os.kill(server.proc.pid, signal.SIGKILL)        # the supervisor only
    assert server.stop() == -signal.SIGKILL
    assert sorted(server.leftovers) == sorted(workers)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
