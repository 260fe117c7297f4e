"""Result files to summary rows, the /stats sampler, and summary.csv round trips."""

import io
import json
import time
from pathlib import Path

import pytest

from scenarios import parse
from scenarios.results import (SUMMARY_COLUMNS, per_command, read_summary, scenario_record,
                               server_usage, summarise, write_scenario_record, write_summary)
from scenarios.sampler import StatsSampler, read_samples

pytestmark = pytest.mark.unit

SCENARIO = parse({"scenarios": [{
    "name": "thread-pool5", "mode": "thread", "pool": 5, "server_cpus": 0.5,
    "server_memory": "256Mi", "users": 40, "spawn_rate": 10, "duration": "30s",
    "locust_workers": 2, "file_sizes": ["1KB"], "upload_size": "1KB", "wait": "1"}]}).get(
        "thread-pool5")

LOCUST_CSV = """\
Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,\
Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,\
80%,90%,95%,98%,99%,99.9%,99.99%,100%
GET,GET 1KB,300,3,12,14.25,1.0,250.55,1000,10.0,0.1,12,14,15,16,20,40,60,80,250,250,250
GET,GET 1MB,100,0,50,55.5,9.0,300.0,1048576,3.33,0.0,50,55,60,62,70,90,120,150,300,300,300
LIST,LIST,200,1,3,4.0,0.5,99.9,80,6.67,0.03,3,4,4,5,6,8,9,10,99,99,99
DELETE,DELETE,0,0,0,0,0,0,0,0.0,0.0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A
,Aggregated,600,4,10,19.123,0.5,300.0,175000,20.004,0.13,10,13,15,16,30,60,90,120,300,300,300
"""


def stats_at(cpu_seconds: float, busy: int, rss: int, requests: int, errors: int = 0) -> dict:
    return {"requests_per_second": 1.0, "workers_busy": busy, "cpu": {"seconds_total": cpu_seconds},
            "memory": {"rss_bytes_total": rss, "pss_bytes_total": rss // 2},
            "totals": {"requests": requests, "errors": errors}}


def write_samples(path: Path, points) -> None:
    with open(path, "w") as f:
        for t, stats in points:
            f.write(json.dumps({"t": t, "stats": stats}) + "\n")


@pytest.fixture
def scenario_folder(tmp_path):
    write_scenario_record(tmp_path, scenario_record(SCENARIO, "local", True))
    (tmp_path / "locust_stats.csv").write_text(LOCUST_CSV)
    write_samples(tmp_path / "server-stats.jsonl", [
        (0.0, stats_at(1.0, 0, 50 * 2 ** 20, 0)),
        (2.0, stats_at(2.0, 3, 60 * 2 ** 20, 40)),          # 50 % of a core
        (4.0, stats_at(4.0, 5, 80 * 2 ** 20, 90)),          # 100 %
        (6.0, stats_at(4.5, 1, 70 * 2 ** 20, 120, errors=2)),  # 25 %
    ])
    return tmp_path


def test_summary_row_from_locust_csv_and_samples(scenario_folder):
    row = summarise(scenario_folder, "ok")
    assert set(row) == set(SUMMARY_COLUMNS)
    assert (row["scenario"], row["backend"], row["mode"], row["pool"]) == \
        ("thread-pool5", "local", "thread", 5)
    assert (row["server_cpus"], row["server_memory"], row["limits_enforced"]) == \
        (0.5, "256Mi", "yes")
    assert (row["requests"], row["failures"], row["failure_pct"]) == (600, 4, 0.67)
    assert (row["rps"], row["p50_ms"], row["p95_ms"], row["p99_ms"]) == (20.0, 10.0, 60.0, 120.0)
    assert (row["avg_ms"], row["max_ms"]) == (19.1, 300.0)
    # CPU: 3.5 s over 6 s is 58.3 % mean; the steepest interval is 100 %
    assert (row["server_cpu_pct_mean"], row["server_cpu_pct_max"]) == (58.3, 100.0)
    assert (row["server_rss_mb_max"], row["server_pss_mb_max"]) == (80.0, 40.0)
    assert (row["busy_workers_mean"], row["busy_workers_max"]) == (2.25, 5)
    assert (row["server_requests"], row["server_errors"], row["samples"]) == (120, 2, 4)
    assert json.loads((scenario_folder / "result.json").read_text()) == row


def test_per_command_sums_names_of_one_type(scenario_folder):
    assert per_command(scenario_folder) == {
        "GET": {"requests": 400, "failures": 3, "p95_ms": 90.0},
        "LIST": {"requests": 200, "failures": 1, "p95_ms": 8.0},
        "DELETE": {"requests": 0, "failures": 0, "p95_ms": 0.0},
    }


def test_missing_locust_output_is_noted_not_fatal(tmp_path):
    write_scenario_record(tmp_path, scenario_record(SCENARIO, "k8s", False))
    row = summarise(tmp_path, "error", "rollout of fileserver failed")
    assert row["requests"] is None and row["samples"] == 0
    assert row["note"] == "rollout of fileserver failed; no Locust statistics"
    assert row["limits_enforced"] == "no"


def test_server_usage_without_samples_or_cpu_field():
    assert server_usage([])["server_cpu_pct_mean"] is None
    old_server = [{"t": t, "stats": {k: v for k, v in stats_at(t, 1, 2 ** 20, 5).items()
                                     if k != "cpu"}} for t in (0.0, 2.0)]
    usage = server_usage(old_server)
    assert usage["server_cpu_pct_mean"] is None and usage["server_rss_mb_max"] == 1.0
    assert usage["server_pss_mb_max"] == 0.5


def test_summary_csv_round_trip(tmp_path, scenario_folder):
    row = summarise(scenario_folder, "failures", "a note, with a comma")
    write_summary(tmp_path / "summary.csv", [row, dict(row, scenario="other", rps=None)])
    back = read_summary(tmp_path / "summary.csv")
    assert back[0] == row
    assert back[1]["scenario"] == "other" and back[1]["rps"] is None
    assert isinstance(back[0]["pool"], int) and isinstance(back[0]["rps"], float)


def test_sampler_writes_samples_and_errors(tmp_path):
    replies = iter([{"n": 1}, OSError("connection refused"), {"n": 2}])

    def fetch(url):
        reply = next(replies)
        if isinstance(reply, Exception):
            raise reply
        return reply

    sampler = StatsSampler("http://127.0.0.1:1/stats", tmp_path / "s.jsonl", fetch=fetch)
    out = io.StringIO()
    for _ in range(3):
        sampler.sample_once(out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line.get("stats") for line in lines] == [{"n": 1}, None, {"n": 2}]
    assert lines[1]["error"] == "connection refused"
    assert (sampler.samples, sampler.errors, sampler.latest) == (2, 1, {"n": 2})


def test_sampler_thread_polls_until_stopped_and_samples_once_more(tmp_path):
    calls = []

    def fetch(url):
        calls.append(url)
        return {"call": len(calls)}

    path = tmp_path / "s.jsonl"
    deadline = time.monotonic() + 10
    with StatsSampler("http://x/stats", path, interval=0.05, fetch=fetch):
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    count = len(calls)
    samples = read_samples(path)
    assert len(samples) == count >= 4      # three or more polls, plus the final one
    assert [s["stats"]["call"] for s in samples] == list(range(1, count + 1))
    assert all(a["t"] <= b["t"] for a, b in zip(samples, samples[1:]))


def test_read_samples_skips_errors_and_a_truncated_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"t": 0, "stats": {"a": 1}}\n{"t": 1, "error": "refused"}\n{"t": 2, "sta')
    assert read_samples(path) == [{"t": 0, "stats": {"a": 1}}]
    assert read_samples(tmp_path / "missing.jsonl") == []
