"""End to end with the local backend: two scenarios run, summarised and reported.

The same ``python -m scenarios`` commands a user types: a thread pool and a
process pool of 5, 50 Locust users each for 10 s, then ``report`` on the folder.
The servers run on the interpreter the file names by its path (``python:``, here
this one), which the summary records as the servers reported it.
Where this process may use two CPUs or more, the run pins the server to the
first and Locust to the second (``--server-cpuset``, ``--locust-cpuset``), and
the CPU affinity of the live server and Locust processes is read during the run.
"""

import csv
import json
import os
import platform
import sysconfig
import subprocess
import sys
import time
from types import SimpleNamespace

import psutil
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
  python: {python}
matrix:
  - name: "{mode}-pool5"
    mode: [thread, process]
"""
CHARTS = {"thread-vs-process.png", "failures.png", "server-cpu.png", "server-memory.png"}
LOCUST_FILES = {"locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv",
                "report.html", "server-stats.jsonl", "server.log", "locust.log",
                "scenario.json", "result.json", "locust-cpu.jsonl"}
USABLE_CPUS = sorted(os.sched_getaffinity(0))
PINNED = len(USABLE_CPUS) >= 2
SERVER_CPU, LOCUST_CPU = (USABLE_CPUS[0], USABLE_CPUS[1]) if PINNED else (None, None)


def scenarios_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scenarios", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def cgroups_available() -> bool:
    limits, _ = CgroupLimits.create("fileserver-lab-probe", 1, 2 ** 30)
    if limits is None:
        return False
    limits.remove()
    return True


def role(command: list[str]) -> str:
    """"server", "locust-master", "locust-worker" or "" from a command line
    (the taskset and cgroup wrappers exec these, so they are seen only briefly)."""
    for flag, module in zip(command, command[1:]):
        if flag == "-m" and module == "server":
            return "server"
        if flag == "-m" and module == "locust":
            return "locust-worker" if "--worker" in command else "locust-master"
    return ""


def run_watching_affinity(args: list[str], base, timeout: float = 300):
    """Run ``python -m scenarios`` and read, every 0.3 s, the CPU affinity of each
    server and Locust process under it: {pid: (role, affinity)}, the latest reading."""
    out, err = open(base / "stdout.txt", "w"), open(base / "stderr.txt", "w")
    with out, err:
        cli = subprocess.Popen([sys.executable, "-m", "scenarios", *args], cwd=REPO_ROOT,
                               stdout=out, stderr=err, text=True)
        seen: dict[int, tuple[str, frozenset]] = {}
        deadline = time.monotonic() + timeout
        try:
            while cli.poll() is None and time.monotonic() < deadline:
                try:
                    children = psutil.Process(cli.pid).children(recursive=True)
                except psutil.Error:
                    children = []
                for child in children:
                    try:
                        name = role(child.cmdline())
                        if name:
                            seen[child.pid] = (name, frozenset(os.sched_getaffinity(child.pid)))
                    except (psutil.Error, OSError):
                        pass            # gone between listing and reading
                time.sleep(0.3)
        finally:
            if cli.poll() is None:
                cli.terminate()
            cli.wait(60)
    return cli.returncode, (base / "stdout.txt").read_text(), \
        (base / "stderr.txt").read_text(), seen


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("lab")
    (base / "two.yaml").write_text(TWO_SCENARIOS.replace("{python}", sys.executable))
    placement = (["--server-cpuset", str(SERVER_CPU), "--locust-cpuset", str(LOCUST_CPU)]
                 if PINNED else [])
    code, stdout, stderr, affinity = run_watching_affinity(
        ["run", "--all", "--file", str(base / "two.yaml"), "--results", str(base / "results"),
         *placement], base)
    assert code == 0, stdout[-3000:] + stderr[-3000:]
    [folder] = (base / "results").iterdir()
    assert f"make report RESULTS={folder}" in stdout
    assert "[1/2] thread-pool5: ok" in stdout
    assert "[2/2] process-pool5: ok" in stdout
    assert "SATURATED" not in stdout
    return SimpleNamespace(folder=folder, affinity=affinity)


@pytest.fixture(scope="module")
def run_folder(lab_run):
    return lab_run.folder


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
        free_threaded = sysconfig.get_config_var("Py_GIL_DISABLED") == 1
        assert (row["python"], row["free_threaded"]) == \
            (platform.python_version(), "yes" if free_threaded else "no")
    assert json.loads((run_folder / "run.json").read_text())["completed"] == \
        ["thread-pool5", "process-pool5"]


def test_locust_cpu_was_sampled_and_the_generator_not_saturated(run_folder):
    with open(run_folder / "summary.csv", newline="") as f:
        rows = {row["scenario"]: row for row in csv.DictReader(f)}
    for name, row in rows.items():
        assert row["load_generator_saturated"] == "no", (name, row["note"])
        assert 0 < float(row["locust_cpu_max_pct"]) < 80, name
        assert "load generator" not in row["note"], name
        lines = (run_folder / name / "locust-cpu.jsonl").read_text().splitlines()
        assert set(json.loads(lines[0])["pids"]) == {"master", "worker-1"}
        samples = [json.loads(line)["cpu_pct"] for line in lines[1:]]
        assert len(samples) >= 10                     # about one a second for 10 s and more
        assert any(sample.get("worker-1", 0) > 0 for sample in samples)


@pytest.mark.skipif(not PINNED, reason="CPU placement needs two usable CPUs")
def test_placement_pins_the_live_server_and_locust_processes(lab_run):
    placement = json.loads((lab_run.folder / "run.json").read_text())["placement"]
    assert (placement["server"], placement["locust"]) == (str(SERVER_CPU), str(LOCUST_CPU))
    roles: dict[str, list[frozenset]] = {}
    for name, cpus in lab_run.affinity.values():
        roles.setdefault(name, []).append(cpus)
    assert set(roles) == {"server", "locust-master", "locust-worker"}, lab_run.affinity
    # thread-pool5: the server; process-pool5: the supervisor and its 5 forked workers
    assert len(roles["server"]) >= 1 + 1 + 5
    assert set(roles["server"]) == {frozenset({SERVER_CPU})}
    assert len(roles["locust-master"]) == 2 and len(roles["locust-worker"]) == 2
    assert set(roles["locust-master"] + roles["locust-worker"]) == {frozenset({LOCUST_CPU})}


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
    assert f"| thread-pool5 | ok | thread | 5 | {platform.python_version()} |" in summary
    assert "No request failed in any scenario." in summary
    assert "NOT TRUSTWORTHY" not in summary and "not checked" not in summary
    if PINNED:
        assert f"CPU placement: the server pinned to CPU {SERVER_CPU}, every Locust process " \
               f"to CPU {LOCUST_CPU}" in summary
