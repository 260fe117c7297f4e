"""Availability under idle, slow and stalled clients (issue 13, target 1), both modes.

A worker is given a connection only once a request has arrived, and gives
it back when its peer stalls; so idle sockets, request lines trickling in
and readers that stopped reading hold connections, not workers.
"""

import os
import signal
import socket
import threading
import time

import psutil
import pytest

import wire
from server.config import MODES
from server import launcher
from server.launcher import wait_until
from tests.support import ServerProcess, command, connect, read_reply

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIG_FILE_BYTES = 20 * 1024 * 1024


class Attackers:
    """Hostile clients against one server, every loop bounded by ``stop``."""

    def __init__(self, port: int):
        self.port = port
        self.idle: list[socket.socket] = []
        self.slowloris: list[socket.socket] = []
        self.slow_readers: list[socket.socket] = []
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def open_idle(self, count: int) -> None:
        self.idle += [connect(self.port) for _ in range(count)]

    def open_slowloris(self, count: int, every: float = 3.0) -> None:
        """Clients sending a request line one byte every ``every`` seconds."""
        self.slowloris += [connect(self.port) for _ in range(count)]
        line = b"GET " + b"s" * 200

        def trickle():
            position = 0
            while not self.stop.wait(0 if position == 0 else every):
                for sock in self.slowloris:
                    try:
                        sock.send(line[position:position + 1])
                    except OSError:
                        pass
                position += 1
        self._run(trickle)

    def open_slow_readers(self, count: int, name: str) -> None:
        """Clients that ask for a big file and then read 4 KB a second."""
        for _ in range(count):
            sock = connect(self.port)
            sock.sendall(wire.encode_request("GET", name))
            sock.setblocking(False)
            self.slow_readers.append(sock)

        def sip():
            while not self.stop.wait(1.0):
                for sock in self.slow_readers:
                    try:
                        sock.recv(4096)
                    except OSError:
                        pass
        self._run(sip)

    def _run(self, target) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self.threads.append(thread)

    def still_open(self, sockets) -> int:
        """How many of ``sockets`` the server has not closed."""
        count = 0
        for sock in sockets:
            sock.setblocking(False)
            try:
                data = sock.recv(1, socket.MSG_PEEK)
                count += bool(data)          # unread reply bytes: still open
            except BlockingIOError:
                count += 1
            except OSError:
                pass
        return count

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5)
        for sock in self.idle + self.slowloris + self.slow_readers:
            sock.close()


def probe_list(port: int, seconds: float, every: float) -> list[float]:
    """A fresh client's LIST every ``every`` seconds; the time of each answer."""
    timings = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        reply = command(port, "LIST")
        timings.append(time.monotonic() - started)
        assert reply["status"] == "OK", reply
        time.sleep(max(every - timings[-1], 0))
    return timings


@pytest.mark.parametrize("mode", MODES)
def test_pool_of_5_stays_available_to_a_fresh_client(mode, tmp_path):
    storage = tmp_path / "files"
    storage.mkdir()
    (storage / "big.bin").write_bytes(os.urandom(BIG_FILE_BYTES))
    # long request timeout: availability must not depend on cutting the attackers
    server = ServerProcess(storage, mode=mode, pool=5, request_timeout=60, timeout=60,
                           log_level="WARNING")
    attackers = Attackers(server.port)
    try:
        attackers.open_slow_readers(5, "big.bin")
        attackers.open_idle(200)
        attackers.open_slowloris(20)
        time.sleep(2)                   # every attacker connected and stalled
        stats = server.stats()
        assert stats["open_connections"] >= 200, stats["open_connections"]

        timings = probe_list(server.port, seconds=15, every=0.5)

        assert len(timings) >= 25
        assert max(timings) <= 1.0, sorted(timings)[-5:]
        # the attackers were there the whole time
        assert attackers.still_open(attackers.idle) == 200
        assert attackers.still_open(attackers.slowloris) == 20
        assert attackers.still_open(attackers.slow_readers) == 5
        assert server.stats()["workers_busy"] <= 1
    finally:
        attackers.close()
        assert server.stop() == 0, server.log()
        assert server.leftover_processes() == []


@pytest.mark.parametrize("mode", MODES)
def test_request_timeout_answers_a_slowloris_and_closes_it(mode, tmp_path):
    server = ServerProcess(tmp_path / "files", mode=mode, pool=1, request_timeout=1)
    try:
        with connect(server.port) as slow:
            slow.sendall(b"LIS")
            started = time.monotonic()
            reply = read_reply(slow)
            assert reply["status"] == "ERROR"
            assert "not complete after 1 s" in reply["data"]
            assert 0.9 <= time.monotonic() - started <= 3.0
            assert slow.recv(1) == b""
        assert command(server.port, "LIST")["status"] == "OK"
    finally:
        assert server.stop() == 0, server.log()


@pytest.mark.parametrize("mode", MODES)
def test_an_upload_slower_than_min_rate_is_refused(mode, tmp_path):
    server = ServerProcess(tmp_path / "files", mode=mode, pool=1, request_timeout=1,
                           min_rate=100_000)
    try:
        with connect(server.port) as slow:
            slow.sendall(b"UPLOAD crawl.bin " + b"QUJD" * 10)
            reply = read_reply(slow)
            assert reply["status"] == "ERROR"
            assert "slower than 100000 bytes/s" in reply["data"]
        assert command(server.port, "LIST") == {"status": "OK", "data": []}
    finally:
        assert server.stop() == 0, server.log()


@pytest.mark.parametrize("mode", MODES)
def test_connections_beyond_max_connections_wait_in_the_backlog(mode, tmp_path):
    server = ServerProcess(tmp_path / "files", mode=mode, pool=2, max_connections=4)
    clients = []
    try:
        clients = [connect(server.port) for _ in range(6)]
        for sock in clients:
            sock.sendall(b"L")             # past TCP_DEFER_ACCEPT: accepted when possible
        time.sleep(1.5)
        assert server.stats()["open_connections"] == 4
        replies = []

        def finish(sock):
            sock.sendall(b"IST\r\n\r\n")
            replies.append(read_reply(sock)["status"])
            sock.close()                   # makes room for one from the backlog
        threads = [threading.Thread(target=finish, args=(sock,)) for sock in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        assert replies == ["OK"] * 6
    finally:
        for sock in clients:
            sock.close()
        assert server.stop() == 0, server.log()


@pytest.mark.parametrize("mode", MODES)
def test_one_worker_may_hold_more_than_its_share_of_max_connections(mode, tmp_path):
    """The workers share FS_MAX_CONNECTIONS: with the others idle, one worker
    holds more than max/pool (here 2), and the server never more than the bound.
    One acceptor: the one holding its token takes the burst, whatever the CPUs."""
    server = ServerProcess(tmp_path / "files", mode=mode, pool=4, max_connections=8,
                           acceptors=1)
    clients = []
    try:
        clients = [connect(server.port) for _ in range(12)]
        for sock in clients:
            sock.sendall(b"L")             # past TCP_DEFER_ACCEPT: accepted when possible
        assert wait_until(lambda: server.stats()["open_connections"] == 8, 10)
        time.sleep(1.0)                    # a tick or two: still 8
        stats = server.stats()
        assert stats["open_connections"] == 8
        assert max(worker["open_connections"] for worker in stats["workers"]) > 2, stats
    finally:
        for sock in clients:
            sock.close()
        assert server.stop() == 0, server.log()


def test_the_room_of_a_worker_that_died_is_given_back(tmp_path):
    """A worker killed while it holds connections: the pool gives its room back,
    and the server holds FS_MAX_CONNECTIONS connections again."""
    server = ServerProcess(tmp_path / "files", mode="process", pool=2, max_connections=4)
    clients = []
    try:
        clients = [connect(server.port) for _ in range(4)]
        for sock in clients:
            sock.sendall(b"L")
        assert wait_until(lambda: server.stats()["open_connections"] == 4, 10)
        holder = max(server.stats()["workers"], key=lambda worker: worker["open_connections"])
        os.kill(holder["pid"], signal.SIGKILL)
        assert wait_until(lambda: holder["pid"] not in server.worker_pids()
                          and len(server.worker_pids()) == 2, 10)
        clients += [connect(server.port) for _ in range(4)]
        for sock in clients[4:]:
            sock.sendall(b"L")
        assert wait_until(lambda: server.stats()["open_connections"] == 4, 10), server.stats()
        time.sleep(1.0)
        assert server.stats()["open_connections"] == 4
    finally:
        for sock in clients:
            sock.close()
        assert server.stop() == 0, server.log()


def server_with_64_open_files(storage, mode: str, pool: int, log_path,
                              **settings) -> launcher.ServerProcess:
    """A server (not started yet) whose open-file limit is 64, soft and hard."""
    return launcher.ServerProcess(storage, mode, pool, log_path=log_path,
                                  wrapper=["prlimit", "--nofile=64:64", "--"], **settings)


def test_a_pool_that_cannot_have_its_open_files_refuses_to_start(tmp_path):
    server = server_with_64_open_files(tmp_path / "files", "thread", 100,
                                       tmp_path / "server.log")
    with pytest.raises(RuntimeError):
        server.start()
    log = (tmp_path / "server.log").read_text()
    assert "a thread pool of 100 needs at least 332 open files, but the limit is 64" in log
    assert server.proc.wait(10) == 1


def accepted_connections(server) -> int:
    """Connections the server's worker has accepted (pool 1), from the kernel's view."""
    pid = server.worker_pids()[0] if server.worker_pids() else server.proc.pid
    return sum(1 for c in psutil.Process(pid).net_connections(kind="tcp")
               if c.laddr and c.laddr.port == server.port and c.raddr)


@pytest.mark.parametrize("mode", MODES)
def test_out_of_file_descriptors_requests_are_answered(mode, tmp_path):
    """At 64 open files, idle connections use up the worker's descriptors; with
    one descriptor free a LIST is accepted, and its failing scandir is answered."""
    storage = tmp_path / "files"
    storage.mkdir()
    (storage / "a.txt").write_bytes(b"hello")
    server = server_with_64_open_files(storage, mode, 1, tmp_path / "server.log",
                                       stats_interval=0, ready_timeout=20)
    server.start()
    idle = []
    try:
        held = -1
        while accepted_connections(server) > held and len(idle) < 100:
            held = accepted_connections(server)
            for _ in range(10):
                sock = connect(server.port)
                sock.sendall(b"L")             # accepted as soon as a descriptor is free
                idle.append(sock)
            time.sleep(0.5)
        assert 0 < held < len(idle)             # the descriptors ran out
        # the backlog (accepted in order after the first `held`) drains once a
        # descriptor is free: each is accepted, found closed and closed again
        for sock in idle[held:]:
            sock.close()
        del idle[held:]
        time.sleep(2.5)                        # accept keeps failing meanwhile
        idle.pop(0).close()
        time.sleep(0.5)
        assert command(server.port, "LIST") == {
            "status": "ERROR", "data": "cannot list files: Too many open files"}
        for sock in idle[:20]:
            sock.close()
        del idle[:20]
        time.sleep(0.5)
        assert command(server.port, "GET", "a.txt")["data_file_bytes"] == b"hello"
        accept_lines = [line for line in server.log().splitlines() if "accept failed" in line]
        assert 1 <= len(accept_lines) <= 5, accept_lines
    finally:
        for sock in idle:
            sock.close()
        assert server.stop() == 0, server.log()


def list_time(port: int) -> float:
    started = time.monotonic()
    assert command(port, "LIST")["status"] == "OK"
    return time.monotonic() - started


@pytest.mark.parametrize("mode", MODES)
def test_a_trickling_upload_does_not_keep_its_worker(mode, tmp_path):
    """Bytes every 0.1 s: never silent long enough to be parked for silence, so
    each turn of the worker ends after 0.2 s of waiting in all."""
    server = ServerProcess(tmp_path / "files", mode=mode, pool=1)
    stop = threading.Event()
    try:
        with connect(server.port) as slow:
            slow.sendall(b"UPLOAD t.bin ")

            def trickle():
                while not stop.wait(0.1):
                    slow.sendall(b"QUJD" * 100)
            thread = threading.Thread(target=trickle)
            thread.start()
            time.sleep(0.5)
            timings = [list_time(server.port) for _ in range(5)]
            stop.set()
            thread.join(5)
        assert max(timings) < 1.0, timings
    finally:
        stop.set()
        server.stop()


@pytest.mark.parametrize("mode", MODES)
def test_pipelined_requests_whose_replies_are_not_read_do_not_keep_the_worker(mode, tmp_path):
    storage = tmp_path / "files"
    storage.mkdir()
    for i in range(300):
        (storage / f"file-with-a-long-name-{i:04}.txt").write_bytes(b"x")
    server = ServerProcess(storage, mode=mode, pool=1)
    try:
        with connect(server.port) as greedy:
            greedy.sendall(b"LIST\r\n\r\n" * 2000)       # and never reads a reply
            time.sleep(0.5)
            timings = [list_time(server.port) for _ in range(5)]
        assert max(timings) < 1.0, timings
    finally:
        server.stop()


@pytest.mark.parametrize("mode", MODES)
def test_after_a_refused_upload_the_connection_waits_like_any_other(mode, tmp_path):
    server = ServerProcess(tmp_path / "files", mode=mode, pool=1, request_timeout=1)
    try:
        with connect(server.port) as sock:
            body = wire.encode_request("UPLOAD", "t", b"x" * 300_000).replace(b"UPLOAD t",
                                                                            b"UPLOAD .hidden")
            sock.sendall(body)
            assert read_reply(sock)["status"] == "ERROR"
            time.sleep(1.6)                  # past FS_REQUEST_TIMEOUT: only silence counts now
            sock.sendall(b"LIST\r\n\r\n")
            assert read_reply(sock) == {"status": "OK", "data": []}
        stats = server.stats()["totals"]
        assert stats["requests"] == 2 and stats["errors"] == 1
    finally:
        assert server.stop() == 0, server.log()


@pytest.mark.parametrize("mode", MODES)
def test_a_fast_refused_upload_is_not_cut_as_too_slow(mode, tmp_path):
    """The skipped body counts toward the transfer's rate like any other."""
    server = ServerProcess(tmp_path / "files", mode=mode, pool=1, request_timeout=1,
                           min_rate=100_000)
    try:
        with connect(server.port) as sock:
            sock.sendall(b"UPLOAD .hidden ")
            assert read_reply(sock)["status"] == "ERROR"
            for _ in range(30):              # 3 s at about 400 KB/s
                sock.sendall(b"QUJD" * 10_000)
                time.sleep(0.1)
            sock.sendall(wire.TERMINATOR + b"LIST\r\n\r\n")
            assert read_reply(sock) == {"status": "OK", "data": []}
        assert server.stats()["totals"]["requests"] == 2
    finally:
        assert server.stop() == 0, server.log()
