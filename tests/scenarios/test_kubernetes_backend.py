"""The k8s backend's kubectl calls and result collection, replayed from recorded output.

No cluster exists here (see recorded/k8s-run-ok.yaml for where the outputs come
from): a fake kubectl checks every call against the recording, in order, and
answers with the recorded output.
"""

import subprocess
from pathlib import Path

import pytest
import yaml

from scenarios import load
from scenarios.backends import BackendError, KubernetesBackend
from scenarios.backends.kubernetes import Kubectl
from scenarios.k8s import OVERLAYS_DIR, write_overlays
from scenarios.results import scenario_record, summarise, write_scenario_record

pytestmark = pytest.mark.unit

RECORDED = Path(__file__).parent / "recorded" / "k8s-run-ok.yaml"
SCENARIOS = load()
SCENARIO = SCENARIOS.get("thread-pool5")
NAMESPACE = "fslab-thread-pool5-0c9d2e"


class ReplayedKubectl:
    """Answers kubectl calls from a recording; fails on any call it did not expect."""

    def __init__(self, steps: list[dict], overlays: Path):
        self.steps = list(steps)
        self.overlays = overlays
        self.calls: list[list[str]] = []
        self.background: list[list[str]] = []

    def fill(self, text: str, target: str = "") -> str:
        return text.replace("{ns}", NAMESPACE).replace(
            "{overlay}", str(self.overlays / SCENARIO.name)).replace("{target}", target)

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


def backend_for(steps, tmp_path, sample_stats=False):
    replay = ReplayedKubectl(steps, OVERLAYS_DIR)
    clock = FakeClock()
    backend = KubernetesBackend(SCENARIOS, Kubectl(run=replay.run, popen=replay.popen),
                                sleep=clock.sleep, clock=clock, sample_stats=sample_stats)
    backend.namespace_for = lambda scenario: NAMESPACE
    return backend, replay


def recorded_steps() -> list[dict]:
    return yaml.safe_load(RECORDED.read_text())


def run_scenario(backend, tmp_path):
    folder = tmp_path / SCENARIO.name
    folder.mkdir()
    write_scenario_record(folder, scenario_record(SCENARIO, "k8s", True))
    progress = []
    outcome = backend.run(SCENARIO, folder, lambda elapsed, stats: progress.append(elapsed))
    return folder, outcome, progress


def test_a_recorded_run_collects_results_and_deletes_the_namespace(tmp_path):
    backend, replay = backend_for(recorded_steps(), tmp_path)
    folder, outcome, progress = run_scenario(backend, tmp_path)
    assert replay.steps == []                       # every recorded call was made, in order
    assert (outcome.status, outcome.note) == ("ok", "")
    assert progress == [0.0, 5.0]                   # one line per unfinished poll
    assert (folder / "namespace.txt").read_text() == NAMESPACE + "\n"
    assert not (folder / "job-results").exists()
    assert (folder / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert "thread pool of 5" in (folder / "server.log").read_text()
    assert "locust exited with status 0" in (folder / "locust.log").read_text()
    row = summarise(folder, outcome.status)
    assert (row["requests"], row["failures"], row["rps"], row["p95_ms"]) == (3000, 0, 50.0, 20.0)
    assert row["backend"] == "k8s" and row["limits_enforced"] == "yes"


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
    backend, replay = backend_for(steps[:6] + [never] + steps[-3:], tmp_path)
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
