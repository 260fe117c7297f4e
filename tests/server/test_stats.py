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
            slot.add_bytes(received=3, sent=5)

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
