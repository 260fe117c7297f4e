"""End to end with the local backend: two scenarios run, summarised and reported.

The same ``python -m scenarios`` commands a user types: a thread pool and a
process pool of 5, 50 Locust users each for 10 s, then ``report`` on the folder.
"""

import csv
import json
import subprocess
import sys

import pytest

from scenarios.limits import CgroupLimits
from scenarios.report import CHART_PIXELS, png_size
from tests.support import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TWO_SCENARIOS = """\
defaults:
  pool: 5
  server_cpus: 1
  server_memory: 512Mi
  users: 50
  spawn_rate: 25
  duration: 10s
  locust_workers: 1
  file_sizes: ["1KB", "64KB"]
  upload_size: 16KB
  wait: "0.2-0.6"
matrix:
  - name: "{mode}-pool5"
    mode: [thread, process]
"""
CHARTS = {"thread-vs-process.png", "failures.png", "server-cpu.png", "server-memory.png"}
LOCUST_FILES = {"locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv",
                "report.html", "server-stats.jsonl", "server.log", "locust.log",
                "scenario.json", "result.json"}


def scenarios_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scenarios", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def cgroups_available() -> bool:
    limits, _ = CgroupLimits.create("fileserver-lab-probe", 1, 2 ** 30)
    if limits is None:
        return False
    limits.remove()
    return True


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    base = tmp_path_factory.mktemp("lab")
    (base / "two.yaml").write_text(TWO_SCENARIOS)
    result = scenarios_cli("run", "--all", "--file", str(base / "two.yaml"),
                           "--results", str(base / "results"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [folder] = (base / "results").iterdir()
    assert f"make report RESULTS={folder}" in result.stdout
    assert "[1/2] thread-pool5: ok" in result.stdout
    assert "[2/2] process-pool5: ok" in result.stdout
    return folder


def test_summary_has_both_scenarios_with_traffic_and_no_failures(run_folder):
    with open(run_folder / "summary.csv", newline="") as f:
        rows = {row["scenario"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"thread-pool5", "process-pool5"}
    for name, row in rows.items():
        assert (row["status"], row["backend"], row["pool"]) == ("ok", "local", "5"), name
        assert row["mode"] == name.split("-")[0]
        assert float(row["rps"]) > 20 and int(row["requests"]) > 200
        assert row["failures"] == "0" and row["server_errors"] == "0"
        assert float(row["p95_ms"]) > 0
        assert int(row["samples"]) >= 4 and float(row["server_cpu_pct_mean"]) > 0
        # the server counted what Locust sent (Locust also seeded the GET files)
        assert int(row["server_requests"]) >= int(row["requests"])
        assert row["limits_enforced"] == ("yes" if cgroups_available() else "no")
    assert json.loads((run_folder / "run.json").read_text())["completed"] == \
        ["thread-pool5", "process-pool5"]


def test_each_scenario_folder_keeps_locust_and_server_output(run_folder):
    for name in ("thread-pool5", "process-pool5"):
        folder = run_folder / name
        assert LOCUST_FILES <= {path.name for path in folder.iterdir()}
        record = json.loads((folder / "scenario.json").read_text())
        assert (record["name"], record["pool"], record["users"]) == (name, 5, 50)
        sample = json.loads((folder / "server-stats.jsonl").read_text().splitlines()[-1])
        assert sample["stats"]["mode"] == record["mode"] and sample["stats"]["pool"] == 5
        assert "stopped" in (folder / "server.log").read_text()


def test_report_writes_html_markdown_and_real_charts(run_folder):
    result = scenarios_cli("report", str(run_folder), timeout=120)
    assert result.returncode == 0, result.stderr
    charts = {path.name for path in (run_folder / "charts").iterdir()}
    assert charts == CHARTS
    for chart in charts:
        assert png_size(run_folder / "charts" / chart) == CHART_PIXELS
    page = (run_folder / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(CHARTS)
    assert "http://" not in page and "https://" not in page     # self-contained
    assert "thread-pool5" in page and "process-pool5" in page
    summary = (run_folder / "report.md").read_text()
    assert "| thread-pool5 | ok | thread | 5 |" in summary
    assert "No request failed in any scenario." in summary
