"""client.capacity: the capacity search's rules, without Locust."""

import json

import pytest

from client.capacity import (CAPACITY_DEFAULTS, Search, Seconds, bucket_ms,
                             capacity_ramp_seconds, percentile)

pytestmark = pytest.mark.unit

SETTINGS = {**CAPACITY_DEFAULTS, "slo_p95_ms": 100.0, "max_failure_ratio": 0.01,
            "start_users": 10, "step_users": 10, "step_seconds": 10, "max_users": 50}


def step(rps, p95=20.0, failures=0, requests=None):
    requests = int(rps * 8) if requests is None else requests
    return {"requests": requests, "failures": failures,
            "failure_ratio": failures / requests if requests else None, "rps": rps,
            "p50_ms": p95 / 2 if requests else None, "p95_ms": p95 if requests else None,
            "p99_ms": p95 if requests else None}


def run(search, results):
    going = []
    for index, result in enumerate(results):
        going.append(search.judge(index, 1000 + 10 * index, 8, result))
        if not going[-1]:
            break
    return going


def test_rounding_and_percentiles_follow_locust():
    assert [bucket_ms(t) for t in (0.4, 57.4, 123, 1234, 98765)] == [0, 57, 120, 1200, 99000]
    times = {1: 90, 5: 5, 40: 4, 200: 1}             # 100 requests
    assert percentile(times, 0.50) == 1 and percentile(times, 0.95) == 5
    assert percentile(times, 0.99) == 40 and percentile(times, 1.0) == 200
    assert percentile({}, 0.95) is None


def test_a_window_counts_whole_seconds_of_finished_requests():
    seconds = Seconds()
    for second, ms, failed in [(99, 500, False), (100, 10, False), (100, 30, True),
                               (101, 20, False), (102, 40, False), (103, 900, False)]:
        seconds.add(second, ms, failed)
    window = seconds.window(100, 103)
    assert window["requests"] == 4 and window["failures"] == 1
    assert window["rps"] == round(4 / 3, 2) and window["failure_ratio"] == 0.25
    assert window["p50_ms"] == 20 and window["p95_ms"] == 40


def test_worker_reports_merge_into_the_same_windows():
    master, worker_a, worker_b = Seconds(), Seconds(), Seconds()
    worker_a.add(100, 10, False)
    worker_b.add(100, 30, True)
    worker_b.add(101, 50, False)
    for worker in (worker_a, worker_b):
        master.merge(json.loads(json.dumps(worker.take())))   # as sent: string keys
    assert worker_a.by_second == {}
    window = master.window(100, 102)
    assert (window["requests"], window["failures"], window["p95_ms"]) == (3, 1, 50)


def test_the_search_stops_at_the_first_step_that_breaks_the_objective():
    search = Search(dict(SETTINGS), spawn_rate=10)
    assert run(search, [step(80), step(160), step(200, p95=250), step(300)]) == \
        [True, True, False]
    assert search.stopped_because == "objective broken at 30 users: p95 250 ms > 100 ms"
    outcome = search.outcome()
    assert (outcome["capacity_rps"], outcome["capacity_users"]) == (160, 20)
    assert [row["met_objective"] for row in search.steps] == ["yes", "yes", "no"]


def test_failures_over_the_ratio_break_the_objective_too():
    search = Search(dict(SETTINGS), spawn_rate=10)
    # exactly the ratio still meets the objective; above it breaks it
    assert run(search, [step(80, failures=1, requests=100), step(90, failures=2, requests=100)]) \
        == [True, False]
    assert search.stopped_because == "objective broken at 20 users: failure ratio 0.02 > 0.01"
    assert search.outcome()["capacity_rps"] == 80


def test_a_step_with_no_finished_request_breaks_the_objective():
    search = Search(dict(SETTINGS), spawn_rate=10)
    assert run(search, [step(80), step(0, requests=0)]) == [True, False]
    assert search.stopped_because == "objective broken at 20 users: no request finished"
    assert search.outcome()["capacity_rps"] == 80


def test_the_search_stops_when_throughput_stops_growing_twice():
    search = Search({**SETTINGS, "max_users": 100}, spawn_rate=10)
    # +100 %, +2 % (flat once), +50 % (no longer flat), +1 %, +3 % (flat twice in a row)
    assert run(search, [step(100), step(200), step(204), step(306), step(309), step(318)]) \
        == [True] * 5 + [False]
    assert search.stopped_because == "throughput stopped growing at 60 users (2 steps under +5%)"
    assert search.outcome()["capacity_rps"] == 318


def test_the_search_ends_after_the_max_users_step():
    search = Search(dict(SETTINGS), spawn_rate=10)
    assert run(search, [step(100 * (k + 1)) for k in range(6)]) == [True] * 4 + [False]
    assert search.stopped_because == "reached max_users (50)"
    assert search.users(4) == 50 and search.users(9) == 50
    assert search.outcome()["capacity_users"] == 50


def test_the_last_step_may_be_cut_at_max_users():
    search = Search({**SETTINGS, "max_users": 45}, spawn_rate=10)
    assert search.last_step == 4 and search.users(4) == 45


def test_ramp_seconds_leave_the_spawning_out():
    assert capacity_ramp_seconds(30, 30) == 2
    assert capacity_ramp_seconds(31, 30) == 3
    assert Search(dict(SETTINGS), spawn_rate=5).ramp_seconds == 3
