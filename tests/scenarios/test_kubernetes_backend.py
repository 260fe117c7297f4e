"""The k8s backend's kubectl calls and result collection, replayed from recorded output.

No cluster exists here (see recorded/k8s-run-ok.yaml for where the outputs come
from): a fake kubectl checks every call against the recording, in order, and
answers with the recorded output.  The same recording runs a fixed load and a
capacity search (whose step table comes out with Locust's CSV), and gives the
load-generator check from ``kubectl top pod``, or an empty check when the
cluster has no metrics.
"""

import copy
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from scenarios import load
from scenarios.backends import BackendError, KubernetesBackend
from scenarios.backends.kubernetes import Kubectl
from scenarios.generator import CPU_FILE, NOT_CHECKED_NOTE, parse_kubectl_top
from scenarios.k8s import OVERLAYS_DIR, write_overlays
from scenarios.results import (CAPACITY_OUTCOME_FILE, CAPACITY_STEPS_FILE, scenario_record,
                               summarise, write_scenario_record)

pytestmark = pytest.mark.unit

RECORDED = Path(__file__).parent / "recorded" / "k8s-run-ok.yaml"
SCENARIOS = load()
SCENARIO = SCENARIOS.get("thread-pool5")
SEARCH = SCENARIOS.get("capacity-thread-pool5")
NAMESPACE = "fslab-thread-pool5-0c9d2e"
TOP = ["-n", "{ns}", "top", "pod", "-l", "app.kubernetes.io/name=locust"]


class ReplayedKubectl:
    """Answers kubectl calls from a recording; fails on any call it did not expect."""

    def __init__(self, steps: list[dict], overlays: Path, scenario=SCENARIO):
        self.steps = list(steps)
        self.overlays = overlays
        self.scenario = scenario
        self.calls: list[list[str]] = []
        self.background: list[list[str]] = []

    def fill(self, text: str, target: str = "") -> str:
        return text.replace("{ns}", NAMESPACE).replace(
            "{overlay}", str(self.overlays / self.scenario.name)).replace("{target}", target)

    def run(self, argv, capture_output, text, timeout):
        assert argv[0] == "kubectl" and capture_output and text and timeout > 0
        args = argv[1:]
        self.calls.append(args)
        assert self.steps, f"unexpected kubectl call after the recording ended: {args}"
        target = args[-1] if args[2:3] == ["cp"] else ""
        step = self.steps[0]
        expected = [self.fill(str(arg), target) for arg in step["args"]]
        if step.get("repeat") and args != expected:     # a repeated call has ended
            self.steps.pop(0)
            step = self.steps[0]
            expected = [self.fill(str(arg), target) for arg in step["args"]]
        if not step.get("repeat"):
            self.steps.pop(0)
        assert args == expected, f"call {len(self.calls)}"
        for name, content in step.get("files", {}).items():
            Path(target).mkdir(parents=True, exist_ok=True)
            (Path(target) / name).write_text(content)
        return subprocess.CompletedProcess(argv, step.get("returncode", 0),
                                           self.fill(step.get("stdout", "")),
                                           self.fill(step.get("stderr", "")))

    def popen(self, argv, stdout, stderr):
        self.background.append(argv[1:])
        return FinishedProcess()


class FinishedProcess:
    terminated = False

    def terminate(self):
        FinishedProcess.terminated = True

    def wait(self, timeout=None):
        return 0


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def backend_for(steps, tmp_path, sample_stats=False, sample_cpu=True, scenario=SCENARIO):
    replay = ReplayedKubectl(steps, OVERLAYS_DIR, scenario)
    clock = FakeClock()
    backend = KubernetesBackend(SCENARIOS, Kubectl(run=replay.run, popen=replay.popen),
                                sleep=clock.sleep, clock=clock, sample_stats=sample_stats,
                                sample_cpu=sample_cpu)
    backend.namespace_for = lambda scenario: NAMESPACE
    return backend, replay


def recorded_steps() -> list[dict]:
    return yaml.safe_load(RECORDED.read_text())


def run_scenario(backend, tmp_path, scenario=SCENARIO):
    folder = tmp_path / scenario.name
    folder.mkdir()
    write_scenario_record(folder, scenario_record(scenario, "k8s", True))
    progress = []
    outcome = backend.run(scenario, folder, lambda elapsed, stats: progress.append(elapsed))
    return folder, outcome, progress


def test_a_recorded_run_collects_results_and_deletes_the_namespace(tmp_path):
    backend, replay = backend_for(recorded_steps(), tmp_path)
    folder, outcome, progress = run_scenario(backend, tmp_path)
    assert replay.steps == []                       # every recorded call was made, in order
    assert (outcome.status, outcome.note) == ("ok", "")
    assert progress == [0.0, 5.0, 10.0]             # one line per unfinished poll
    assert (folder / "namespace.txt").read_text() == NAMESPACE + "\n"
    assert not (folder / "job-results").exists()
    assert (folder / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert "thread pool of 5" in (folder / "server.log").read_text()
    assert "locust exited with status 0" in (folder / "locust.log").read_text()
    row = summarise(folder, outcome.status)
    assert (row["requests"], row["failures"], row["rps"], row["p95_ms"]) == (3000, 0, 50.0, 20.0)
    assert row["backend"] == "k8s" and row["limits_enforced"] == "yes"
    assert row["capacity_rps"] is None                  # a fixed load
    # kubectl top at each unfinished poll: the busiest worker, 410m then 450m -> 43 %
    assert (row["locust_cpu_max_pct"], row["load_generator_saturated"]) == (43.0, "no")
    assert NOT_CHECKED_NOTE not in row["note"]


def test_exit_status_one_means_failed_requests(tmp_path):
    steps = recorded_steps()
    exit_poll = next(s for s in steps if s.get("stdout") == "0\n")
    exit_poll["stdout"] = "1\n"
    backend, replay = backend_for(steps, tmp_path)
    _, outcome, _ = run_scenario(backend, tmp_path)
    assert outcome.status == "failures" and replay.steps == []


def test_failed_rollout_stops_early_but_still_deletes_the_namespace(tmp_path):
    steps = recorded_steps()
    rollout = steps[2]
    rollout.update(returncode=1, stdout="", stderr="error: timed out waiting for the condition\n")
    deleting = steps[-1]
    server_logs = steps[-3]
    backend, replay = backend_for(steps[:3] + [server_logs, deleting], tmp_path)
    _, outcome, _ = run_scenario(backend, tmp_path)
    assert outcome.status == "error"
    assert outcome.note == \
        "rollout of fileserver failed: error: timed out waiting for the condition"
    assert replay.steps == []
    assert replay.calls[-1][:2] == ["delete", "namespace"]


def test_locust_that_never_finishes_times_out(tmp_path):
    steps = recorded_steps()
    never = {"args": steps[6]["args"], "returncode": 1, "stderr": "cat: can't open\n",
             "repeat": True}
    backend, replay = backend_for(steps[:6] + [never] + steps[-3:], tmp_path, sample_cpu=False)
    _, outcome, progress = run_scenario(backend, tmp_path)
    assert (outcome.status, outcome.note) == ("error", "Locust did not finish in time")
    assert replay.steps == []
    assert replay.calls[-1][:2] == ["delete", "namespace"]
    assert not any(call[2:3] == ["cp"] for call in replay.calls)
    # polled every 5 s until start-up + run time + Locust's overhead had passed
    assert len(progress) == (300 + SCENARIO.duration + 180) // 5 - 1


def test_the_stats_port_forward_is_started_and_stopped(tmp_path):
    backend, replay = backend_for(recorded_steps(), tmp_path, sample_stats=True)
    FinishedProcess.terminated = False
    folder, outcome, _ = run_scenario(backend, tmp_path)
    assert outcome.status == "ok"
    [forward] = replay.background
    assert forward[:4] == ["-n", NAMESPACE, "port-forward", "service/fileserver"]
    assert forward[4].endswith(":9665")
    assert FinishedProcess.terminated
    assert (folder / "server-stats.jsonl").exists()


def test_check_refuses_stale_overlays(tmp_path):
    write_overlays(SCENARIOS, tmp_path)
    (tmp_path / "thread-pool5" / "server.yaml").write_text("edited by hand\n")
    backend = KubernetesBackend(SCENARIOS, Kubectl(run=pytest.fail), overlays=tmp_path)
    with pytest.raises(BackendError, match="thread-pool5/server.yaml .* run `make k8s`"):
        backend.check()


def test_check_reports_an_unreachable_cluster(tmp_path):
    def no_cluster(argv, **kwargs):
        assert argv[1:3] == ["version", "--request-timeout=10s"]
        return subprocess.CompletedProcess(argv, 1, "", "error: couldn't get current server "
                                           "API group list: connection refused\n")

    backend = KubernetesBackend(SCENARIOS, Kubectl(run=no_cluster, binary="kubectl"))
    with pytest.raises(BackendError, match="is a cluster reachable.*connection refused"):
        backend.check()


def test_the_locust_pods_cpu_comes_from_kubectl_top(tmp_path):
    backend, _ = backend_for(recorded_steps(), tmp_path)
    folder, _, _ = run_scenario(backend, tmp_path)
    lines = [json.loads(line) for line in (folder / CPU_FILE).read_text().splitlines()]
    assert lines == [
        {"t": 0.0, "error": "error: metrics not available yet"},
        {"t": 5.0, "pods": {"master": "locust-run-7xk2p",
                            "worker-1": "locust-worker-6d4b9c7f5c-8qj2w",
                            "worker-2": "locust-worker-6d4b9c7f5c-tx5mn"}},
        {"t": 5.0, "cpu_pct": {"master": 2.1, "worker-1": 41.0, "worker-2": 39.0}},
        {"t": 10.0, "cpu_pct": {"master": 1.8, "worker-1": 45.0, "worker-2": 43.0}},
    ]


def test_kubectl_top_is_read_by_its_header():
    # `kubectl top pod -A`: a NAMESPACE column first; the cells are tab-padded
    table = ("NAMESPACE   NAME                 CPU(cores)   MEMORY(bytes)   \n"
             "lab         locust-run-7xk2p     1250m        97Mi            \n"
             "lab         locust-worker-a-b    2            88Mi            \n"
             "lab         broken-row           12m\n"
             "lab         odd-quantity         lots         1Mi             \n")
    assert parse_kubectl_top(table) == {"locust-run-7xk2p": 125.0, "locust-worker-a-b": 200.0}
    assert parse_kubectl_top("") == {}           # "No resources found ..." goes to stderr
    assert parse_kubectl_top("error: Metrics API not available\n") == {}


def without_metrics_server(steps: list[dict]) -> list[dict]:
    """The recording on a cluster without metrics-server: the first kubectl top fails,
    and the backend asks no more."""
    tops = [step for step in steps if step["args"] == TOP]
    tops[0].update(returncode=1, stderr="error: Metrics API not available\n")
    return [step for step in steps if step not in tops[1:]]


def test_without_metrics_server_the_check_is_empty_not_a_failure(tmp_path):
    backend, replay = backend_for(without_metrics_server(recorded_steps()), tmp_path)
    folder, outcome, progress = run_scenario(backend, tmp_path)
    assert replay.steps == [] and [call[2:4] for call in replay.calls].count(["top", "pod"]) == 1
    assert (outcome.status, outcome.note) == ("ok", "")
    assert progress == [0.0, 5.0, 10.0]
    row = summarise(folder, outcome.status)
    assert row["status"] == "ok" and row["requests"] == 3000
    assert (row["locust_cpu_max_pct"], row["load_generator_saturated"]) == (None, None)
    assert row["note"] == (f"{NOT_CHECKED_NOTE}; kubectl top pod said: "
                           "error: Metrics API not available")


STEPS_CSV = """\
step,users,window_start,window_seconds,requests,failures,failure_ratio,rps,p50_ms,p95_ms,p99_ms,met_objective
0,20,1764064801,7,420,0,0.0,60.0,9,31,48,yes
1,50,1764064811,7,1050,0,0.0,150.0,12,64,90,yes
2,80,1764064821,7,1330,0,0.0,190.0,40,130,210,no
"""


def test_a_capacity_search_runs_its_overlay_and_brings_back_its_steps(tmp_path):
    assert (OVERLAYS_DIR / SEARCH.name / "locust-worker.yaml").is_file()
    steps = recorded_steps()
    copy_step = next(step for step in steps if step["args"][2:3] == ["cp"])
    copy_step["files"] = dict(copy.deepcopy(copy_step["files"]), **{
        CAPACITY_STEPS_FILE: STEPS_CSV,
        CAPACITY_OUTCOME_FILE: json.dumps({
            "capacity_rps": 150.0, "capacity_users": 50, "steps_judged": 3,
            "stopped_because": "objective broken at 80 users: p95 130 ms > 100 ms"}),
    })
    backend, replay = backend_for(steps, tmp_path, scenario=SEARCH)
    folder, outcome, _ = run_scenario(backend, tmp_path, SEARCH)
    assert replay.steps == [] and outcome.status == "ok"
    assert replay.calls[1] == ["-n", NAMESPACE, "apply", "-k", str(OVERLAYS_DIR / SEARCH.name)]
    row = summarise(folder, outcome.status)
    assert (row["capacity_rps"], row["capacity_users"], row["capacity_steps"]) == (150.0, 50, 3)
    assert row["capacity_stopped"] == "objective broken at 80 users: p95 130 ms > 100 ms"
    assert (folder / CAPACITY_STEPS_FILE).read_text() == STEPS_CSV
