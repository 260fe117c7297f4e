"""The real server as a process, every test run against both concurrency models."""

import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import wire
from server.config import MODES
from server.supervisor import EXIT_CUT_SHORT
from tests.support import REPO_ROOT, ServerProcess, command, connect, read_reply, temp_files

pytestmark = pytest.mark.integration


def test_every_command(fresh_server):
    assert command(fresh_server.port, "LIST") == {"status": "OK", "data": []}
    assert command(fresh_server.port, "UPLOAD", "a.txt", b"hello")["status"] == "OK"
    assert command(fresh_server.port, "UPLOAD", "b.bin", b"")["status"] == "OK"
    assert command(fresh_server.port, "LIST") == {"status": "OK", "data": ["a.txt", "b.bin"]}
    reply = command(fresh_server.port, "GET", "a.txt")
    assert reply["data_namafile"] == "a.txt" and reply["data_file_bytes"] == b"hello"
    assert command(fresh_server.port, "GET", "b.bin")["data_file_bytes"] == b""
    assert command(fresh_server.port, "DELETE", "a.txt") == {"status": "OK",
                                                             "data": "file a.txt deleted"}
    assert command(fresh_server.port, "GET", "a.txt") == {"status": "ERROR",
                                                          "data": "file 'a.txt' not found"}
    assert command(fresh_server.port, "DELETE", "a.txt")["status"] == "ERROR"


def course_client_send(port: int, command_str: str) -> dict:
    """The course's client, byte for byte: sendall, then recv(16) until the terminator."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.connect(("127.0.0.1", port))
    try:
        sock.sendall((command_str + "\r\n\r\n").encode())
        data_received = ""
        while True:
            data = sock.recv(16)
            if data:
                data_received += data.decode()
                if "\r\n\r\n" in data_received:
                    break
            else:
                break
        return json.loads(data_received)
    finally:
        sock.close()


def test_course_client_works_unchanged(fresh_server):
    content = os.urandom(70_000)
    encoded = base64.b64encode(content).decode()
    assert course_client_send(fresh_server.port,
                              f"UPLOAD donalbebek.jpg {encoded}")["status"] == "OK"
    assert course_client_send(fresh_server.port, "LIST") == {"status": "OK",
                                                             "data": ["donalbebek.jpg"]}
    hasil = course_client_send(fresh_server.port, "GET donalbebek.jpg")
    assert hasil["status"] == "OK" and hasil["data_namafile"] == "donalbebek.jpg"
    assert base64.b64decode(hasil["data_file"]) == content
    assert course_client_send(fresh_server.port, "DELETE donalbebek.jpg")["status"] == "OK"
    hasil = course_client_send(fresh_server.port, "SALAH")
    assert hasil["status"] == "ERROR" and "unknown command" in hasil["data"]


def test_50_mb_round_trip(fresh_server):
    content = os.urandom(50 * 1024 * 1024)
    with connect(fresh_server.port, timeout=60) as sock:
        sock.sendall(wire.upload_request_head("big.bin"))
        for start in range(0, len(content), 3 * 1024 * 1024):
            sock.sendall(base64.b64encode(content[start:start + 3 * 1024 * 1024]))
        sock.sendall(wire.TERMINATOR)
        assert read_reply(sock)["status"] == "OK"
    reply = command(fresh_server.port, "GET", "big.bin")
    assert hashlib.sha256(reply["data_file_bytes"]).hexdigest() == \
        hashlib.sha256(content).hexdigest()
    assert (fresh_server.storage / "big.bin").stat().st_size == len(content)


def test_50_concurrent_clients(fresh_server):
    errors, replies = [], []

    def client(number: int):
        try:
            name = f"c{number}.bin"
            content = os.urandom(1000 + number)
            for _ in range(3):
                replies.append(command(fresh_server.port, "UPLOAD", name, content)["status"])
                got = command(fresh_server.port, "GET", name)
                replies.append("OK" if got["data_file_bytes"] == content else "MISMATCH")
                replies.append(command(fresh_server.port, "LIST")["status"])
            replies.append(command(fresh_server.port, "DELETE", name)["status"])
        except Exception as exc:          # reported below, with the client's number
            errors.append(f"client {number}: {exc!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert replies == ["OK"] * (50 * 10)
    stats = fresh_server.stats()
    assert stats["totals"]["requests"] == 500
    assert stats["totals"]["by_command"]["UPLOAD"]["OK"] == 150
    assert command(fresh_server.port, "LIST") == {"status": "OK", "data": []}


def test_stats_metrics_and_probes(fresh_server):
    command(fresh_server.port, "UPLOAD", "s.txt", b"x" * 3000)
    command(fresh_server.port, "GET", "s.txt")
    command(fresh_server.port, "GET", "missing")
    ready = fresh_server.http_json("/readyz")
    assert ready["ready"] is True
    assert (ready["mode"], ready["pool"], ready["workers_alive"]) == (fresh_server.mode, 5, 5)
    assert fresh_server.http_json("/healthz") == {"status": "alive"}
    # a worker is busy until it has seen the client close, just after the reply
    deadline = time.monotonic() + 5
    stats = fresh_server.stats()
    while stats["workers_busy"] and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = fresh_server.stats()
    assert (stats["mode"], stats["pool"]) == (fresh_server.mode, 5)
    assert stats["totals"]["by_command"]["GET"] == {"OK": 1, "ERROR": 1}
    assert stats["totals"]["bytes_in"] > 4000 and stats["totals"]["bytes_out"] > 4000
    assert stats["workers_busy"] == 0 and stats["workers_idle"] == 5
    assert len(stats["workers"]) == 5
    served = [w for w in stats["workers"] if w["requests"]]
    assert sum(w["requests"] for w in served) == 3
    assert all(w["cpu_seconds"] is not None and w["pid"] for w in served)
    # the server-wide total covers the supervisor too, so it is at least the workers' sum
    worker_cpu = sum(w["cpu_seconds"] for w in stats["workers"] if w["cpu_seconds"])
    assert stats["cpu"]["seconds_total"] >= worker_cpu - 0.01
    assert stats["cpu"]["seconds_total"] > 0 and stats["cpu"]["percent"] >= 0
    # shared pages count once in PSS, once per process in the RSS sum
    assert 0 < stats["memory"]["pss_bytes_total"] <= stats["memory"]["rss_bytes_total"]
    metrics = fresh_server.http_text("/metrics")
    assert "fileserver_cpu_seconds_total" in metrics
    assert 'fileserver_requests_total{command="GET",status="ERROR"} 1.0' in metrics
    assert f'fileserver_info{{mode="{fresh_server.mode}",pool="5"}} 1.0' in metrics
    assert "fileserver_worker_cpu_seconds_total" in metrics


def test_a_stalled_upload_holds_a_connection_but_no_worker(fresh_server):
    with connect(fresh_server.port) as sock:
        sock.sendall(b"UPLOAD slow.bin " + base64.b64encode(b"x" * 3000))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stats = fresh_server.stats()
            # its worker waits briefly for more (PARK_AFTER_SECONDS), then parks it
            if (stats["totals"]["bytes_in"] >= 4000 and stats["open_connections"] == 1
                    and stats["workers_busy"] == 0):
                break
            time.sleep(0.05)
        assert stats["open_connections"] == 1
        assert stats["workers_busy"] == 0           # parked: its worker serves others
        assert command(fresh_server.port, "LIST")["status"] == "OK"
        sock.sendall(wire.TERMINATOR)
        assert read_reply(sock) == {"status": "OK", "data": "file slow.bin uploaded (3000 bytes)"}


def test_log_lines_follow_the_course_format(fresh_server):
    command(fresh_server.port, "LIST")
    deadline = time.monotonic() + 5
    while "closed:" not in fresh_server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(line for line in fresh_server.log().splitlines() if "closed:" in line)
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - Worker-\d+ - INFO - client "
                    r"127\.0\.0\.1:\d+ closed: 1 requests, in 8 B, out \d+ B, [\d.]+ s, "
                    r"[\d.]+ KB/s$", line), line


def test_sigterm_lets_an_upload_in_flight_finish(fresh_server):
    (fresh_server.storage / "f.bin").write_bytes(b"old")
    content = os.urandom(3 * 200_000)
    encoded = base64.b64encode(content)
    with connect(fresh_server.port) as sock:
        sock.sendall(b"UPLOAD f.bin " + encoded[:len(encoded) // 2])
        time.sleep(0.3)
        fresh_server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        sock.sendall(encoded[len(encoded) // 2:] + wire.TERMINATOR)
        assert read_reply(sock)["status"] == "OK"
    assert fresh_server.proc.wait(15) == 0
    assert (fresh_server.storage / "f.bin").read_bytes() == content
    assert temp_files(fresh_server.storage) == []
    with pytest.raises(OSError):
        command(fresh_server.port, "LIST")


@pytest.mark.parametrize("mode", MODES)
def test_grace_period_over_cuts_a_stalled_upload_and_keeps_the_old_file(tmp_path, mode):
    srv = ServerProcess(tmp_path / "files", mode=mode, pool=2, grace_seconds=1)
    (srv.storage / "f.bin").write_bytes(b"old")
    with connect(srv.port) as sock:
        sock.sendall(b"UPLOAD f.bin " + base64.b64encode(b"n" * 30_000))
        time.sleep(0.3)
        started = time.monotonic()
        assert srv.stop() == EXIT_CUT_SHORT
        assert time.monotonic() - started < 8
    assert (srv.storage / "f.bin").read_bytes() == b"old"
    assert temp_files(srv.storage) == []
    assert srv.leftover_processes() == []


def test_killed_worker_is_replaced_and_others_are_unaffected(tmp_path):
    srv = ServerProcess(tmp_path / "files", mode="process", pool=3)
    try:
        (srv.storage / "f.bin").write_bytes(b"old")
        with connect(srv.port) as victim_sock:
            victim_sock.sendall(b"UPLOAD f.bin " + base64.b64encode(b"v" * 30_000))
            deadline = time.monotonic() + 10
            busy = []
            while not busy and time.monotonic() < deadline:
                busy = [w["pid"] for w in srv.stats()["workers"] if w["state"] == "busy"]
            assert temp_files(srv.storage), "the upload should be in progress"
            with connect(srv.port) as other:      # a second client, mid-conversation
                other.sendall(b"LIST\r\n\r\n")
                assert read_reply(other)["status"] == "OK"
                os.kill(busy[0], signal.SIGKILL)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    ready = srv.http_json("/readyz")
                    pids = srv.worker_pids()
                    if ready["workers_alive"] == 3 and busy[0] not in pids and len(pids) == 3:
                        break
                    time.sleep(0.05)
                assert busy[0] not in srv.worker_pids() and len(srv.worker_pids()) == 3
                other.sendall(b"LIST\r\n\r\n")
                assert read_reply(other)["status"] == "OK"
            assert victim_sock.recv(100) == b""
        assert (srv.storage / "f.bin").read_bytes() == b"old"
        assert temp_files(srv.storage) == []
        assert "was killed by SIGKILL; replacing it" in srv.wait_for_log("was killed")
        for _ in range(10):
            assert command(srv.port, "LIST") == {"status": "OK", "data": ["f.bin"]}
        srv.worker_pids()       # remember the replacement workers for the leftover check
    finally:
        assert srv.stop() == 0
    assert srv.leftover_processes() == []


@pytest.mark.parametrize("pool", [1, 5, 50, 100, 200])
@pytest.mark.parametrize("mode", MODES)
def test_course_pool_sizes_work(tmp_path, mode, pool):
    srv = ServerProcess(tmp_path / "files", mode=mode, pool=pool)
    try:
        assert srv.http_json("/readyz")["workers_alive"] == pool
        if mode == "process":
            assert len(srv.worker_pids()) == pool
        results = []
        threads = [threading.Thread(target=lambda: results.append(
            command(srv.port, "LIST")["status"])) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert results == ["OK"] * 20
    finally:
        assert srv.stop() == 0
    assert srv.leftover_processes() == []


def test_port_in_use_is_a_clear_startup_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "server", "--ip", "127.0.0.1", "--port", str(port),
             "--metrics-port", "0", "--storage", str(tmp_path)],
            cwd=REPO_ROOT,
            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"cannot start on 127.0.0.1:{port}" in result.stderr
    assert "Address already in use" in result.stderr
