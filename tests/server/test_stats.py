"""The stats table and collector used from several threads at once (with or without a GIL)."""

import threading
import time

import pytest

from server.stats import StatsCollector, WorkerTable

pytestmark = pytest.mark.unit


def test_rows_written_by_their_own_threads_at_once_stay_exact():
    """One writer per row: counters stay exact while others write theirs and a reader
    reads them all."""
    workers, rounds = 4, 20_000
    table = WorkerTable(workers)
    start = threading.Barrier(workers + 1)

    def work(index):
        slot = table.slot(index)
        start.wait()
        for _ in range(rounds):
            slot.request_done("LIST", ok=True)
            slot.received(3)
            slot.sent(5)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    start.wait()
    seen = 0
    while any(thread.is_alive() for thread in threads):
        total = sum(row["requests"] for row in table.rows())
        assert total >= seen                 # a reader never sees a counter go back
        seen = total
    for thread in threads:
        thread.join()
    for row in table.rows():
        assert (row["requests"], row["LIST_OK"], row["client_requests"]) == (rounds,) * 3
        assert (row["bytes_in"], row["bytes_out"]) == (3 * rounds, 5 * rounds)


def test_the_collector_serializes_its_callers(monkeypatch):
    """A tick() from the supervisor's loop waits while a metrics thread takes a snapshot."""
    collector = StatsCollector(WorkerTable(2), "thread", 2, "127.0.0.1:1")
    inside, release = threading.Event(), threading.Event()
    resources = collector._resources

    def slow_resources(rows, now):
        inside.set()
        release.wait(10)
        return resources(rows, now)

    monkeypatch.setattr(collector, "_resources", slow_resources)
    snapshots = []
    scrape = threading.Thread(target=lambda: snapshots.append(collector.snapshot(2, True)))
    scrape.start()
    assert inside.wait(10)
    tick = threading.Thread(target=collector.tick)
    tick.start()
    tick.join(0.2)
    assert tick.is_alive()                   # waits for the snapshot to finish
    release.set()
    scrape.join(10)
    tick.join(10)
    assert len(snapshots) == 1 and len(collector._history) == 1


def test_snapshots_and_ticks_from_several_threads_at_once():
    table = WorkerTable(3)
    for index in range(3):
        table.slot(index).claim(0, 0)
    collector = StatsCollector(table, "thread", 3, "127.0.0.1:1")
    errors = []
    deadline = time.monotonic() + 0.5

    def call(method):
        try:
            while time.monotonic() < deadline:
                method()
        except Exception as exc:             # reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=call, args=(m,)) for m in
               (collector.tick, collector.tick, lambda: collector.snapshot(3, True),
                lambda: collector.snapshot(3, True), collector.requests_per_second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    times = [t for t, _ in collector._history]
    assert times == sorted(times)            # ticks appended in order, none interleaved


def test_a_slot_writes_only_its_own_row_and_every_field_where_rows_read_it():
    """The slot methods write at positions computed once: each value must land in the
    field ``rows()`` names, in its own row and no other."""
    table = WorkerTable(3)
    slot = table.slot(1)
    slot.claim(pid=4321, tid=99)
    slot.connection_opened()
    slot.holding(2)
    slot.serving(("10.1.2.3", 4567))
    slot.received(11)
    slot.sent(22)
    slot.request_done("GET", ok=False)
    slot.request_done("NOSUCH", ok=True)          # counted as OTHER
    busy_row = table.rows()[1]
    slot.done_serving()
    before, row, after = table.rows()
    assert before == after == dict.fromkeys(row, 0)
    assert busy_row["busy"] == 1 and row["busy"] == 0
    assert row["busy_ns"] > 0 and row["busy_since_ns"] == row["client_since_ns"] > 0
    assert {key: row[key] for key in (
        "pid", "tid", "connections", "open_connections", "client_port", "requests",
        "client_requests", "bytes_in", "client_bytes_in", "bytes_out", "client_bytes_out",
        "GET_ERROR", "OTHER_OK", "GET_OK", "LIST_OK")} == {
        "pid": 4321, "tid": 99, "connections": 1, "open_connections": 2, "client_port": 4567,
        "requests": 2, "client_requests": 2, "bytes_in": 11, "client_bytes_in": 11,
        "bytes_out": 22, "client_bytes_out": 22, "GET_ERROR": 1, "OTHER_OK": 1, "GET_OK": 0,
        "LIST_OK": 0}
    assert (row["client_ip_hi"], row["client_ip_lo"]) == (0, (0xFFFF << 32) | 0x0A010203)
    # serving another client starts its per-client counters afresh
    slot.serving(("::1", 80))
    row = table.rows()[1]
    assert (row["client_port"], row["client_requests"], row["client_bytes_in"],
            row["client_ip_hi"], row["client_ip_lo"]) == (80, 0, 0, 0, 1)
    assert row["requests"] == 2
