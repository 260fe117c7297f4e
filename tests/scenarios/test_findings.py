"""scenarios.findings: repeated runs aggregated, and the report's answer in words."""

import pytest

from scenarios.findings import aggregate, answer, no_measurable_difference

pytestmark = pytest.mark.unit


def row(scenario, mode, pool, run_index=1, capacity=None, p95=20.0, users=None,
        saturated="no", stopped="reached max_users (620)"):
    return {"scenario": scenario, "run_index": run_index, "status": "ok", "mode": mode,
            "pool": pool, "users": users or 100, "spawn_rate": 20.0, "duration_s": 60,
            "server_cpus": 2.0, "server_memory": "1Gi", "rps": 300.0, "p95_ms": p95,
            "capacity_rps": capacity, "capacity_users": 200 if capacity else None,
            "capacity_stopped": stopped if capacity is not None else None,
            "load_generator_saturated": saturated}


def test_aggregate_gives_the_median_and_the_range_of_each_scenario():
    rows = [row("a", "thread", 5, 1, capacity=400.0), row("b", "process", 5, 1, capacity=500.0),
            row("a", "thread", 5, 2, capacity=420.0), row("b", "process", 5, 2, capacity=560.0),
            row("a", "thread", 5, 3, capacity=380.0), row("b", "process", 5, 3, capacity=540.0)]
    a, b = aggregate(rows)
    assert (a["scenario"], a["runs"], b["scenario"], b["runs"]) == ("a", 3, "b", 3)
    assert (a["capacity_rps"], a["capacity_rps_min"], a["capacity_rps_max"]) == (400, 380, 420)
    assert (b["capacity_rps"], b["capacity_rps_min"], b["capacity_rps_max"]) == (540, 500, 560)
    assert not no_measurable_difference(a, b, "capacity_rps")


def test_overlapping_runs_are_no_measurable_difference():
    a, b = aggregate([row("a", "thread", 5, 1, capacity=400.0), row("a", "thread", 5, 2,
                                                                   capacity=520.0),
                      row("b", "process", 5, 1, capacity=500.0),
                      row("b", "process", 5, 2, capacity=560.0)])
    assert no_measurable_difference(a, b, "capacity_rps")
    text = " ".join(answer([a, b]))
    assert "no measurable difference between the process and the thread pool" in text


def test_the_answer_names_the_winner_the_ratio_and_where_each_broke():
    rows = aggregate([
        row("capacity-thread-pool5", "thread", 5, 1, capacity=300.0,
            stopped="objective broken at 140 users: p95 180 ms > 100 ms"),
        row("capacity-thread-pool5", "thread", 5, 2, capacity=320.0),
        row("capacity-process-pool50", "process", 50, 1, capacity=600.0),
        row("capacity-process-pool50", "process", 50, 2, capacity=640.0),
    ])
    lines = answer(rows)
    assert lines[0] == ("process pool: capacity 620 req/s (runs 600–640) at pool 50 "
                        "(capacity-process-pool50, 200 users).")
    assert "The process pool served more: 2.00× the thread pool's best" in " ".join(lines)
    assert ("capacity-thread-pool5 (first run): stopped because objective broken at 140 users: "
            "p95 180 ms > 100 ms.") in lines
    assert lines[-1].startswith("How sure: 2 run(s) per configuration")


def test_a_saturated_search_is_never_the_capacity():
    rows = aggregate([row("t", "thread", 5, capacity=900.0, saturated="yes"),
                      row("t", "thread", 5, 2, capacity=300.0),
                      row("p", "process", 5, capacity=500.0)])
    assert rows[0]["load_generator_saturated"] == "yes" and rows[0]["saturated_runs"] == 1
    text = " ".join(answer(rows))
    assert "thread pool: capacity" not in text and "process pool: capacity 500" in text


def test_one_run_says_it_has_no_spread():
    text = " ".join(answer(aggregate([row("t", "thread", 5, capacity=300.0)])))
    assert "one run gives no spread" in text


def test_fixed_load_rows_compare_latency_at_the_same_load():
    rows = aggregate([row("thread-pool5", "thread", 5, 1, p95=60.0),
                      row("thread-pool5", "thread", 5, 2, p95=64.0),
                      row("process-pool5", "process", 5, 1, p95=30.0),
                      row("process-pool5", "process", 5, 2, p95=33.0)])
    text = " ".join(answer(rows))
    assert "No capacity search in this folder." in text
    assert "process has the lower p95" in text


def test_three_models_are_each_compared():
    rows = aggregate([
        row("capacity-thread-pool50", "thread", 50, 1, capacity=300.0),
        row("capacity-thread-pool50", "thread", 50, 2, capacity=310.0),
        row("capacity-thread-ft-pool50", "free-threaded thread", 50, 1, capacity=450.0),
        row("capacity-thread-ft-pool50", "free-threaded thread", 50, 2, capacity=470.0),
        row("capacity-process-pool5", "process", 5, 1, capacity=440.0),
        row("capacity-process-pool5", "process", 5, 2, capacity=480.0),
        row("thread-pool5", "thread", 5, p95=60.0),
        row("thread-ft-pool5", "free-threaded thread", 5, p95=40.0),
        row("process-pool5", "process", 5, p95=30.0),
    ])
    text = " ".join(answer(rows))
    assert ("no measurable difference between the free-threaded thread and the process pool"
            in text)
    assert "The free-threaded thread pool served more: 1.51× the thread pool's best" in text
    for pair in ("free-threaded thread p95 40 ms, process p95 30 ms",
                 "free-threaded thread p95 40 ms, thread p95 60 ms",
                 "process p95 30 ms, thread p95 60 ms"):
        assert pair in text
