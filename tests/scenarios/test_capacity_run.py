"""A capacity search end to end with the local backend, repeated and interleaved.

Two tiny searches, each run twice (``--repeat 2``): one that climbs to its
``max_users`` step, and one whose objective (p95 under 1 ms with 4 MB GETs:
5.3 MB of base64 each) is deliberately impossible, so that it stops after its
first step.  (With 256 KB GETs a quiet machine once met it: p95 1 ms.)  The load
is small enough for two Locust workers: a saturated generator would make the
capacity untrustworthy, and the report would say so instead of answering.
"""

import csv
import json
import subprocess
import sys

import pytest

from scenarios.report import CHART_PIXELS, png_size
from tests.support import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEARCHES = """\
defaults:
  mode: thread
  pool: 5
  server_cpus: 1
  server_memory: 512Mi
  users: 10
  spawn_rate: 50
  duration: 10s
  locust_workers: 2
  file_sizes: ["256KB"]
  upload_size: 16KB
  wait: "0.1-0.3"
  weights: {list: 1, get: 4, upload: 1, delete: 1}
scenarios:
  - name: climb
    capacity: {slo_p95_ms: 5000, start_users: 10, step_users: 20, step_seconds: 5,
               max_users: 50}
  - name: impossible
    file_sizes: ["4MB"]
    capacity: {slo_p95_ms: 1, start_users: 10, step_users: 20, step_seconds: 5,
               max_users: 50}
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    base = tmp_path_factory.mktemp("capacity")
    (base / "scenarios.yaml").write_text(SEARCHES)
    run = subprocess.run([sys.executable, "-m", "scenarios", "run", "--file",
                          str(base / "scenarios.yaml"), "--results", str(base / "results"),
                          "--no-limits", "--repeat", "2", "climb", "impossible"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (folder,) = (base / "results").iterdir()
    report = subprocess.run([sys.executable, "-m", "scenarios", "report", str(folder)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    with open(folder / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return folder, rows


def test_runs_are_interleaved_one_row_each(results):
    folder, rows = results
    assert [(row["scenario"], row["run_index"]) for row in rows] == \
        [("climb", "1"), ("impossible", "1"), ("climb", "2"), ("impossible", "2")]
    assert all(row["status"] == "ok" for row in rows), rows
    for name in ("climb", "impossible"):
        assert sorted(p.name for p in (folder / name).iterdir()) == ["run-1", "run-2"]


def test_the_search_climbs_to_its_last_step(results):
    folder, rows = results
    for row in (r for r in rows if r["scenario"] == "climb"):
        assert float(row["capacity_rps"]) > 0
        assert row["capacity_users"] == "50" and row["capacity_steps"] == "3"
        assert row["capacity_stopped"] == "reached max_users (50)"
    with open(folder / "climb" / "run-1" / "locust_capacity_steps.csv", newline="") as f:
        steps = list(csv.DictReader(f))
    assert [step["users"] for step in steps] == ["10", "30", "50"]
    assert all(step["met_objective"] == "yes" and int(step["requests"]) > 0 for step in steps)
    # more users, more requests per second (each user waits 0.1-0.3 s between requests)
    assert float(steps[0]["rps"]) < float(steps[2]["rps"])
    outcome = json.loads((folder / "climb" / "run-1" / "locust_capacity.json").read_text())
    assert outcome["capacity_rps"] == max(float(step["rps"]) for step in steps)


def test_an_impossible_objective_stops_the_search_at_its_first_step(results):
    folder, rows = results
    for row in (r for r in rows if r["scenario"] == "impossible"):
        assert row["capacity_steps"] == "1" and float(row["capacity_rps"]) == 0
        assert row["capacity_stopped"].startswith("objective broken at 10 users: p95 ")
        assert row["capacity_stopped"].endswith(" > 1 ms")


def test_the_report_aggregates_the_runs_and_draws_the_capacity(results):
    folder, _ = results
    for chart in ("capacity.png", "latency-vs-throughput.png"):
        assert png_size(folder / "charts" / chart) == CHART_PIXELS
    report = (folder / "report.md").read_text()
    answer = report.split("\n\n")[1]
    assert answer.startswith("thread pool: capacity ") and " at pool 5 (climb, 50 users" in answer
    assert "climb (first run): stopped because reached max_users (50)." in answer
    assert "How sure: 2 run(s) per configuration" in answer
    assert "NOT TRUSTWORTHY" not in report
    assert "| climb | ok | thread | 5 |" in report and " | 2 | " in report   # two runs
