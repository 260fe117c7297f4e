"""Locust driving the real server through locust/locustfile.py, headless and distributed.

Locust runs as a subprocess: importing it here would gevent-patch the test process.
"""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, ServerProcess, free_port

pytestmark = pytest.mark.integration

LOCUSTFILE = REPO_ROOT / "locust" / "locustfile.py"
LOCUST = str(Path(sys.executable).parent / "locust")
COMMANDS = {"LIST", "GET", "UPLOAD", "DELETE"}


def locust_command(server: ServerProcess, *args: str) -> list[str]:
    return [LOCUST, "-f", str(LOCUSTFILE), "--host", f"tcp://127.0.0.1:{server.port}",
            "--server-stats-url", f"http://127.0.0.1:{server.metrics_port}/stats",
            "--wait", "0.2-0.6", "--file-sizes", "1KB,64KB", "--upload-size", "16KB",
            *args]


def read_stats_csv(prefix: Path) -> dict[tuple[str, str], dict]:
    with open(f"{prefix}_stats.csv", newline="") as f:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}


def assert_clean_run(result: subprocess.CompletedProcess, prefix: Path):
    assert result.returncode == 0, result.stdout[-3000:]
    rows = read_stats_csv(prefix)
    aggregated = rows.pop(("", "Aggregated"))
    assert int(aggregated["Request Count"]) > 100
    assert aggregated["Failure Count"] == "0"
    assert {request_type for request_type, _ in rows} == COMMANDS
    assert ("GET", "GET 64KB") in rows and ("UPLOAD", "UPLOAD 16KB") in rows


@pytest.mark.slow
def test_headless_200_users(pool50_server, tmp_path):
    prefix = tmp_path / "run"
    result = subprocess.run(
        locust_command(pool50_server, "--headless", "-u", "200", "-r", "100", "-t", "15s",
                       "--csv", str(prefix), "--html", str(tmp_path / "report.html"),
                       "--only-summary"),
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert_clean_run(result, prefix)
    assert "<html" in (tmp_path / "report.html").read_text()[:2000].lower()
    stats = pool50_server.stats()
    assert stats["totals"]["errors"] == 0
    leftovers = [p.name for p in pool50_server.storage.iterdir() if not p.name.startswith("seed-")]
    assert len(leftovers) < stats["totals"]["by_command"]["UPLOAD"]["OK"]


@pytest.mark.slow
def test_distributed_master_and_two_workers(tmp_path):
    srv = ServerProcess(tmp_path / "files", mode="process", pool=20, log_level="WARNING")
    master_port = free_port()
    prefix = tmp_path / "dist"
    workers = []
    try:
        master = subprocess.Popen(
            locust_command(srv, "--master", "--master-bind-host", "127.0.0.1",
                           "--master-bind-port", str(master_port), "--expect-workers", "2",
                           "--headless", "-u", "60", "-r", "30", "-t", "10s",
                           "--csv", str(prefix), "--only-summary"),
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        workers = [subprocess.Popen(
            locust_command(srv, "--worker", "--master-host", "127.0.0.1",
                           "--master-port", str(master_port)),
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(2)]
        output, _ = master.communicate(timeout=120)
        result = subprocess.CompletedProcess(master.args, master.returncode, output, "")
        assert_clean_run(result, prefix)
        connected = [int(n) for n in re.findall(r"\b(\d+) workers connected", output)]
        assert connected and max(connected) == 2, output[-3000:]
        for worker in workers:
            assert worker.wait(30) == 0
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert srv.stop() == 0


@pytest.mark.slow
def test_failures_make_a_headless_run_exit_non_zero(tmp_path):
    unused = free_port()
    result = subprocess.run(
        [LOCUST, "-f", str(LOCUSTFILE), "--host", f"tcp://127.0.0.1:{unused}",
         "--headless", "-u", "5", "-r", "5", "-t", "3s", "--wait", "0.1",
         "--server-stats-url", f"http://127.0.0.1:{unused}/stats", "--only-summary"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "connection refused" in (result.stdout + result.stderr).lower()


def test_bad_host_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [LOCUST, "-f", str(LOCUSTFILE), "--host", "tcp://nohost:notaport",
         "--headless", "-u", "1", "-r", "1", "-t", "2s", "--only-summary"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "tcp://HOST:PORT" in output


@pytest.mark.slow
def test_options_come_from_locust_environment_variables(tmp_path):
    srv = ServerProcess(tmp_path / "files", mode="thread", pool=5, log_level="WARNING")
    env = dict(os.environ, LOCUST_FILE_SIZES="2KB", LOCUST_UPLOAD_SIZE="3KB",
               LOCUST_WAIT="0.1-0.2", LOCUST_LIST_WEIGHT="0", LOCUST_DELETE_WEIGHT="0")
    try:
        result = subprocess.run(
            [LOCUST, "-f", str(LOCUSTFILE), "--host", f"tcp://127.0.0.1:{srv.port}",
             "--headless", "-u", "5", "-r", "5", "-t", "3s", "--only-summary",
             "--csv", str(tmp_path / "env")],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout[-2000:]
        names = {name for _, name in read_stats_csv(tmp_path / "env")} - {"Aggregated"}
        assert names == {"GET 2KB", "UPLOAD 3KB"}
    finally:
        assert srv.stop() == 0
