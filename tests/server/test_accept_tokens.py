"""Accept tokens: only the workers holding one wait for new connections, a
holder passes its token on before it may be busy for long, and tokens come
into play while their holders keep a CPU busy."""

import contextlib
import os
import signal
import socket
import threading
import time

import pytest

import wire
from server.config import ServerConfig
from server.handler import ConnectionHandler
from server.launcher import wait_until
from server.pools import MODES, Pool, StopSignal
from server.stats import WorkerTable
from server.storage import Storage
from server import workerloop
from server.workerloop import (ADJUST_SECONDS, TICK_SECONDS, AcceptTokens, ConnectionRoom,
                               WorkerLoop)
from tests.support import ServerProcess, command, connect, read_reply

pytestmark = pytest.mark.unit


class CountedTokens(AcceptTokens):
    def __init__(self, count):
        super().__init__(count)
        self.given = 0

    def give(self, token):
        self.given += 1
        super().give(token)


@contextlib.contextmanager
def loops_in_threads(handler, count: int, tokens: AcceptTokens, adjusted: bool = False):
    """``count`` WorkerLoops sharing one listener and ``tokens``, each in a thread;
    yields (port, table).  ``adjusted``: a pool's ``adjust_acceptors`` runs once a tick."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    stop = threading.Event()
    table = WorkerTable(count)
    room = ConnectionRoom(100 * count, count)
    loops = [WorkerLoop(listener, handler, table.slot(i), stop.is_set, room, tokens)
             for i in range(count)]
    threads = [threading.Thread(target=loop.run) for loop in loops]
    if adjusted:
        pool = Pool(count, listener, handler, table, StopSignal(), acceptors=tokens.limit)
        pool.tokens.close()
        pool.room.close()
        pool.tokens, pool.room = tokens, room

        def adjust():
            while not stop.wait(TICK_SECONDS):
                pool.adjust_acceptors()
        threads.append(threading.Thread(target=adjust))
    in_play = tokens.available()
    for thread in threads:
        thread.start()
    try:
        assert wait_until(lambda: holders(table) == in_play, 5)
        yield listener.getsockname()[1], table
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        listener.close()
        returned = tokens.available() + tokens.in_reserve()
        room_returned = room.available()
        tokens.close()
        room.close()
    assert not any(thread.is_alive() for thread in threads)
    assert returned == tokens.limit         # every token came back
    assert room_returned == room.limit      # and all the room


def holders(table: WorkerTable) -> int:
    return sum(1 for row in table.rows() if row["accept_token"])


def list_reply(port: int) -> dict:
    with connect(port, timeout=5) as sock:
        sock.sendall(b"LIST\r\n\r\n")
        return read_reply(sock)


def test_only_the_token_holders_wait_for_connections(tmp_path):
    tokens = AcceptTokens(1)
    handler = ConnectionHandler(Storage(tmp_path), ServerConfig(timeout=5.0))
    with loops_in_threads(handler, 3, tokens) as (port, table):
        assert tokens.available() == 0
        for _ in range(20):
            assert list_reply(port) == {"status": "OK", "data": []}
        assert wait_until(lambda: holders(table) == 1, 5)   # not between two holders
        served = [row["requests"] for row in table.rows()]
    assert sum(served) == 20


class Slow(Storage):
    """Opening a file or starting an upload takes a long turn's time; then
    reading the file or writing the upload blocks until ``release`` is set."""

    def __init__(self, root):
        super().__init__(root)
        self.release = threading.Event()
        self.blocked = threading.Event()

    def _slow(self):
        time.sleep(ConnectionHandler.LONG_TURN_SECONDS * 2)

    def _block(self):
        self.blocked.set()
        assert self.release.wait(10)

    def open_read(self, name):
        self._slow()
        return Blocked(super().open_read(name), "readinto", self._block)

    def start_upload(self, name):
        self._slow()
        return Blocked(super().start_upload(name), "write", self._block)


class Blocked:
    """``inner`` whose method ``name`` first calls ``block()``."""

    def __init__(self, inner, name, block):
        self._inner, self._name, self._block = inner, name, block

    def __getattr__(self, attribute):
        value = getattr(self._inner, attribute)
        if attribute != self._name:
            return value

        def blocked(*args):
            self._block()
            return value(*args)
        return blocked


@pytest.mark.parametrize("request_bytes", [b"GET big.bin\r\n\r\n", b"UPLOAD new.bin aGVsbG8="])
def test_a_long_transfer_lets_another_worker_accept(tmp_path, request_bytes):
    """The only token's holder is stuck in a transfer that has gone on for a long
    turn: another worker took the token, and answers a new client's LIST meanwhile."""
    storage = Slow(tmp_path)
    (tmp_path / "big.bin").write_bytes(b"x" * 1000)
    tokens = AcceptTokens(1)
    handler = ConnectionHandler(storage, ServerConfig(timeout=5.0))
    with loops_in_threads(handler, 2, tokens) as (port, table):
        with connect(port, timeout=5) as transfer:
            transfer.sendall(request_bytes)
            assert storage.blocked.wait(5)
            try:
                # the idle worker holds the token (not only its once-a-tick rescue)
                assert wait_until(lambda: [(row["busy"], row["accept_token"])
                                           for row in table.rows()].count((0, 1)) == 1, 5)
                assert list_reply(port) == {"status": "OK", "data": ["big.bin"]}
            finally:
                storage.release.set()
            if request_bytes.startswith(b"UPLOAD"):
                transfer.sendall(b"\r\n\r\n")
            assert read_reply(transfer)["status"] == "OK"


def test_a_holder_passes_its_token_after_a_long_turn_only(tmp_path, monkeypatch):
    monkeypatch.setattr(workerloop, "SPREAD_BEHIND_SECONDS", 1.0)    # a pass preempted
    slow = threading.Event()

    class SlowList(Storage):
        def list_names(self):
            if slow.is_set():
                time.sleep(0.3)
            return super().list_names()
    tokens = CountedTokens(1)
    handler = ConnectionHandler(SlowList(tmp_path), ServerConfig(timeout=5.0))
    handler.LONG_TURN_SECONDS = 0.2           # no fast LIST takes that long, even preempted
    with loops_in_threads(handler, 1, tokens) as (port, table):
        for _ in range(5):
            list_reply(port)
        assert tokens.given == 0
        slow.set()
        list_reply(port)
        assert wait_until(lambda: tokens.given == 1 and holders(table) == 1, 5)


def _held_open(stack, port, opened):
    """One more connection, answered a LIST and held open."""
    sock = stack.enter_context(connect(port, timeout=5))
    sock.sendall(b"LIST\r\n\r\n")
    read_reply(sock)
    opened.append(sock)


def _held(table) -> list[int]:
    return [row["open_connections"] for row in table.rows()]


def test_a_holder_of_many_connections_passes_its_token(tmp_path, monkeypatch):
    """Connections spread over the pool: a worker holding SPREAD_CONNECTIONS
    passes its token on, and the next one goes to another."""
    monkeypatch.setattr(workerloop, "SPREAD_CONNECTIONS", 8)
    monkeypatch.setattr(workerloop, "SPREAD_BEHIND_SECONDS", 5.0)
    spread_at = workerloop.SPREAD_CONNECTIONS
    tokens = CountedTokens(1)
    handler = ConnectionHandler(Storage(tmp_path), ServerConfig(timeout=10.0))
    handler.LONG_TURN_SECONDS = 1.0           # only the spread passes the token here
    with loops_in_threads(handler, 2, tokens) as (port, table), \
            contextlib.ExitStack() as stack:
        opened = []
        for _ in range(2 * spread_at):
            _held_open(stack, port, opened)
            if tokens.given:
                break
        held = _held(table)
        assert tokens.given == 1 and max(held) == spread_at, held
        spreader = held.index(spread_at)
        assert wait_until(lambda: table.rows()[1 - spreader]["accept_token"], 5)
        _held_open(stack, port, opened)
        held = _held(table)
        assert held[spreader] == spread_at and sum(held) == len(opened), held


def test_a_holder_that_falls_behind_passes_its_token(tmp_path, monkeypatch):
    """Two LISTs ready at once take a pass of SPREAD_BEHIND_SECONDS, though
    each turn is short of a long one: the holder passes its token on, and
    the next connection goes to the other worker.  One such LIST alone does not."""
    monkeypatch.setattr(workerloop, "SPREAD_BEHIND_SECONDS", 0.35)
    listing = threading.Event()

    class SlowList(Storage):
        def list_names(self):
            listing.set()
            time.sleep(0.2)
            return super().list_names()
    tokens = CountedTokens(1)
    handler = ConnectionHandler(SlowList(tmp_path), ServerConfig(timeout=10.0))
    handler.LONG_TURN_SECONDS = 1.0
    with loops_in_threads(handler, 2, tokens) as (port, table):
        with contextlib.ExitStack() as stack:
            first, second, third = (stack.enter_context(connect(port, timeout=5))
                                    for _ in range(3))
            assert wait_until(lambda: sorted(_held(table)) == [0, 3], 5)
            first.sendall(b"LIST\r\n\r\n")
            assert read_reply(first)["status"] == "OK"
            listing.clear()
            first.sendall(b"LIST\r\n\r\n")
            assert listing.wait(5)            # the holder is busy: the next two wait
            assert tokens.given == 0          # the pass of one LIST did not pass it on
            second.sendall(b"LIST\r\n\r\n")
            third.sendall(b"LIST\r\n\r\n")
            for sock in (first, second, third):
                assert read_reply(sock)["status"] == "OK"
            assert wait_until(lambda: tokens.given == 1, 5)
            holder = _held(table).index(3)
            assert wait_until(lambda: table.rows()[1 - holder]["accept_token"], 5)
            stack.enter_context(connect(port, timeout=5))
            assert wait_until(lambda: _held(table)[1 - holder] == 1, 5)
            assert _held(table)[holder] == 3


def accepting(srv) -> list[int]:
    return [w["pid"] for w in srv.stats()["workers"] if w["accepting"]]


def test_a_worker_killed_holding_the_token_gives_it_back(tmp_path):
    srv = ServerProcess(tmp_path / "files", mode="process", pool=3, acceptors=1)
    try:
        assert wait_until(lambda: len(accepting(srv)) == 1, 10)
        holder, = accepting(srv)
        os.kill(holder, signal.SIGKILL)
        assert wait_until(lambda: len(accepting(srv)) == 1 and accepting(srv) != [holder], 10), \
            srv.log()[-3000:]
        for _ in range(5):
            assert command(srv.port, "LIST") == {"status": "OK", "data": []}
    finally:
        assert srv.stop() == 0


@pytest.mark.parametrize("mode", ["thread", "process"])
@pytest.mark.parametrize("acceptors, expected", [(2, 1), (0, None), (9, 4)])
def test_stats_show_how_many_workers_accept(tmp_path, mode, acceptors, expected):
    """One token in play at first; as many acceptors as workers: no tokens."""
    srv = ServerProcess(tmp_path / "files", mode=mode, pool=4, acceptors=acceptors)
    try:
        expected = expected or (1 if len(os.sched_getaffinity(0)) < 4 else 4)
        assert wait_until(lambda: len(accepting(srv)) == expected, 10), srv.stats()["workers"]
        assert command(srv.port, "LIST") == {"status": "OK", "data": []}
    finally:
        assert srv.stop() == 0


def test_holders_stuck_in_a_long_turn_do_not_keep_new_clients_waiting(tmp_path):
    """The only holder is stuck in a LIST that is no transfer: at its next tick an
    idle worker without the token takes the waiting connection."""
    release, stuck = threading.Event(), threading.Event()

    class StuckOnce(Storage):
        def list_names(self):
            if not stuck.is_set():
                stuck.set()
                assert release.wait(10)
            return super().list_names()
    tokens = AcceptTokens(1)
    handler = ConnectionHandler(StuckOnce(tmp_path), ServerConfig(timeout=5.0))
    with loops_in_threads(handler, 2, tokens) as (port, table):
        with connect(port, timeout=5) as first:
            first.sendall(b"LIST\r\n\r\n")
            assert stuck.wait(5)
            try:
                started = time.monotonic()
                assert list_reply(port) == {"status": "OK", "data": []}
                assert time.monotonic() - started < 3 * TICK_SECONDS
            finally:
                release.set()
            assert read_reply(first) == {"status": "OK", "data": []}


def test_the_holders_cpu_decides_how_many_tokens_are_in_play():
    P, S = AcceptTokens.PRIMARY, AcceptTokens.SECONDARY
    tokens = AcceptTokens(3)
    try:
        assert (tokens.in_play(), tokens.available(), tokens.in_reserve()) == (1, 1, 2)
        tokens.adjust(0.7)                       # under 0.75 of a CPU per token: as it was
        assert tokens.in_play() == 1
        tokens.adjust(0.8)
        tokens.adjust(1.5)
        assert (tokens.in_play(), tokens.available(), tokens.in_reserve()) == (3, 3, 0)
        tokens.adjust(3.0)                       # no more than the limit
        assert tokens.in_play() == 3
        held = sorted([tokens.take(), tokens.take(), tokens.take()])
        assert held == [P, S, S] and tokens.take() is None
        tokens.adjust(1.4)                       # two could have done it: one is asked to go
        assert tokens.in_play() == 2 and tokens.in_reserve() == 0
        assert not tokens.retire_if_asked(P)     # the primary never retires
        tokens.pass_on(P)
        assert tokens.available() == 1
        tokens.pass_on(S)                        # the next secondary passed on retires
        assert (tokens.available(), tokens.in_reserve(), tokens.in_play()) == (1, 1, 2)
        assert not tokens.retire_if_asked(S)     # only as many as asked
        tokens.adjust(0.7)
        tokens.adjust(0.8)                       # busy again before a holder retired one:
        assert tokens.in_play() == 2 and tokens.in_reserve() == 1    # called off
        assert not tokens.retire_if_asked(S)
        tokens.adjust(0.1)
        tokens.adjust(0.1)                       # one at a time, never the last one
        assert tokens.in_play() == 1
        tokens.pass_on(S)                        # the one still held
        assert tokens.take() == P and tokens.take() is None and tokens.in_reserve() == 2
        assert not tokens.retire_if_asked(S)
    finally:
        tokens.close()


def test_a_dead_workers_token_comes_back_as_it_was():
    P, S = AcceptTokens.PRIMARY, AcceptTokens.SECONDARY
    tokens = AcceptTokens(3)
    try:
        tokens.adjust(1.0)
        assert sorted([tokens.take(), tokens.take()]) == [P, S]
        # a secondary goes into the reserve, for the pool to bring in if needed
        tokens.give_back(AcceptTokens.mark(S))
        assert (tokens.in_play(), tokens.available(), tokens.in_reserve()) == (1, 0, 2)
        # one that died taking one gives back a primary, so that none in play
        # cannot follow
        tokens.give_back(AcceptTokens.TAKING)
        tokens.give_back(AcceptTokens.mark(None))
        assert tokens.take() == P and tokens.take() is None
        # one that died retiring a secondary, after it wrote the reserve and
        # before it cleared its mark: the double is dropped at the next look
        tokens.adjust(1.0)
        assert tokens.take() == S and tokens.in_reserve() == 1
        tokens.adjust(0.0)
        assert tokens.retire_if_asked(S) and tokens.in_reserve() == 2
        tokens.give_back(AcceptTokens.mark(S))
        assert tokens.in_reserve() == 3
        tokens.adjust(0.0)
        assert (tokens.in_play(), tokens.in_reserve()) == (1, 2)
    finally:
        tokens.close()


@pytest.mark.slow
def test_holders_that_keep_a_cpu_busy_get_another_acceptor(tmp_path, monkeypatch):
    """Idle, one token is in play.  While the holder serves short CPU-bound
    requests back to back the pool brings a second into play, which an idle
    worker takes; when the load stops, that one is retired, the primary never."""
    busy = threading.Event()

    class BusyList(Storage):
        def list_names(self):
            if busy.is_set():
                spin_until = time.thread_time() + 0.002
                while time.thread_time() < spin_until:
                    pass
            return super().list_names()
    monkeypatch.setattr(workerloop, "BUSY_TOKEN_CPU_SHARE", 0.5)     # a margin for a busy VM
    # as LONG_TURN_SECONDS below: this test is about adjust, not when a token is passed
    monkeypatch.setattr(workerloop, "SPREAD_BEHIND_SECONDS", 5.0)
    tokens = AcceptTokens(2)
    handler = ConnectionHandler(BusyList(tmp_path), ServerConfig(timeout=10.0))
    handler.LONG_TURN_SECONDS = 1.0           # short turns: the holder keeps its token
    primary_only = [AcceptTokens.mark(AcceptTokens.PRIMARY)]
    with loops_in_threads(handler, 3, tokens, adjusted=True) as (port, table):
        time.sleep(3 * ADJUST_SECONDS)
        assert holders(table) == 1 and tokens.in_reserve() == 1     # idle: nothing came in
        busy.set()
        decoder = wire.ReplyDecoder()
        with connect(port, timeout=5) as sock:
            deadline = time.monotonic() + 10 * ADJUST_SECONDS
            while holders(table) < 2 and time.monotonic() < deadline:
                # pipelined: the worker serves them in one go, never waiting for the client
                sock.sendall(b"LIST\r\n\r\n" * 20)
                for _ in range(20):
                    assert read_reply(sock, decoder) == {"status": "OK", "data": []}
        assert holders(table) == 2 and tokens.in_reserve() == 0, table.rows()
        busy.clear()
        # the pool's next look may still count busy time and bring the other
        # in again, to be retired a look later
        assert wait_until(lambda: marks(table) == primary_only and tokens.in_reserve() == 1,
                          10 * ADJUST_SECONDS), table.rows()


def marks(table: WorkerTable) -> list[int]:
    return [row["accept_token"] for row in table.rows() if row["accept_token"]]


def spin(seconds: float) -> None:
    spin_until = time.thread_time() + seconds
    while time.thread_time() < spin_until:
        pass


@contextlib.contextmanager
def lone_loop(tmp_path, tokens: AcceptTokens):
    """A WorkerLoop that accepts (not run: the test drives it); yields (loop, table)."""
    table = WorkerTable(1)
    with socket.create_server(("127.0.0.1", 0)) as listener, ConnectionRoom(100) as room:
        listener.setblocking(False)
        loop = WorkerLoop(listener, ConnectionHandler(Storage(tmp_path), ServerConfig()),
                          table.slot(0), lambda: False, room, tokens)
        loop._accepting = True
        yield loop, table


def test_a_holder_counts_the_cpu_it_used_holding_a_token_only(tmp_path):
    tokens = AcceptTokens(2)
    with lone_loop(tmp_path, tokens) as (loop, table):
        spin(0.2)                                 # busy before it holds a token
        loop._take_token()
        assert marks(table) == [AcceptTokens.mark(AcceptTokens.PRIMARY)]
        spin(0.1)
        loop._tick(time.monotonic())              # counted at a tick, still held
        assert marks(table) and 0.1 <= table.accept_cpu_seconds() < 0.2
        spin(0.1)
        loop._pass_token()                        # and as it passes it on
        counted = table.accept_cpu_seconds()
        assert not marks(table) and 0.2 <= counted < 0.3
        spin(0.1)
        loop._tick(time.monotonic())
        assert table.accept_cpu_seconds() == counted
    tokens.close()


def test_a_holder_of_a_secondary_token_retires_it_at_its_tick_when_asked(tmp_path):
    tokens = AcceptTokens(2)
    tokens.adjust(1.0)
    assert tokens.take() == AcceptTokens.PRIMARY          # held elsewhere
    with lone_loop(tmp_path, tokens) as (loop, table):
        loop._take_token()
        assert marks(table) == [AcceptTokens.mark(AcceptTokens.SECONDARY)]
        loop._tick(time.monotonic())                      # nothing asked: it stays
        assert marks(table) and tokens.in_reserve() == 0
        tokens.adjust(0.0)
        loop._tick(time.monotonic())
        assert not marks(table) and tokens.in_reserve() == 1 and tokens.in_play() == 1
    tokens.close()


@pytest.mark.parametrize("mode", sorted(MODES))
def test_the_pool_of_either_mode_adjusts_the_tokens_as_it_maintains_its_workers(tmp_path, mode):
    table = WorkerTable(4)              # the last row is no worker's: the test writes it
    with socket.create_server(("127.0.0.1", 0)) as listener:
        pool = MODES[mode](3, listener, ConnectionHandler(Storage(tmp_path), ServerConfig()),
                           table, StopSignal(), acceptors=2)
        pool.start()
        try:
            assert pool.maintain() == [] and pool.tokens.in_play() == 1
            table.slot(3).add_accept_cpu(2 * ADJUST_SECONDS)    # a CPU's worth, and more
            pool.maintain()
            assert pool.tokens.in_play() == 1                      # too soon to judge
            time.sleep(ADJUST_SECONDS)
            pool.maintain()
            assert pool.tokens.in_play() == 2
            time.sleep(ADJUST_SECONDS)
            pool.maintain()                                        # idle since: one retires
            assert pool.tokens.in_play() == 1
            # at the next tick of the worker that took it
            assert wait_until(lambda: pool.tokens.in_reserve() == 1, 5 * TICK_SECONDS)
        finally:
            pool.stop(grace=1.0)
