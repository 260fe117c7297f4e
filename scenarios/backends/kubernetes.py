"""The k8s backend: one namespace per scenario, the scenario's overlay applied in it.

For each scenario::

    kubectl create namespace fslab-<scenario>-<id>
    kubectl -n NS apply -k k8s/overlays/<scenario>
    kubectl -n NS rollout status deployment/fileserver      (and locust-worker)
    kubectl -n NS port-forward service/fileserver PORT:9665 (for the /stats sampler)
    kubectl -n NS exec POD -c locust -- cat /results/exit-status   (polled)
    kubectl -n NS top pod -l app.kubernetes.io/name=locust          (at each poll)
    kubectl -n NS cp -c locust POD:/results <scenario folder>/job-results
    kubectl -n NS logs ...                                  (server.log, locust.log)
    kubectl delete namespace NS

The Job keeps /results for RESULTS_KEEP_SECONDS after Locust exits (see
k8s/base/locust-run.yaml), which is what makes the copy possible; a capacity
search's step table and outcome come out with Locust's CSV.  ``kubectl top
pod`` (metrics-server) gives the Locust pods' CPU for the load-generator
check, written to ``locust-cpu.jsonl`` (see ``scenarios.generator``); without
metrics-server the check stays empty.  Every kubectl call goes through
``Kubectl``, so tests replay recorded output instead of needing a cluster.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable

import wire
from scenarios import k8s
from scenarios.backends.base import (LOCUST_OVERHEAD_SECONDS, Backend, BackendError, Outcome,
                                     Progress, refuse_interpreter_paths)
from scenarios.generator import CPU_FILE, KubectlTopSamples
from scenarios.results import LOCUST_PREFIX, STATS_FILE
from scenarios.sampler import StatsSampler
from scenarios.schema import Scenario, ScenarioFile
from server.launcher import free_port

ROLLOUT_TIMEOUT = "300s"
POLL_SECONDS = 5.0
DEPLOYMENTS = ("fileserver", "locust-worker")
JOB_SELECTOR = "job-name=locust-run"
LOCUST_SELECTOR = "app.kubernetes.io/name=locust"     # the Job's pod and the workers


class Kubectl:
    """Runs kubectl; tests replace ``run`` and ``popen`` with recordings."""

    def __init__(self, binary: str = "kubectl", context: str | None = None,
                 run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
                 popen: Callable[..., subprocess.Popen] = subprocess.Popen):
        self.prefix = [binary] + (["--context", context] if context else [])
        self._run = run
        self._popen = popen

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self._run([*self.prefix, *args], capture_output=True, text=True, timeout=timeout)

    def background(self, *args: str, log) -> subprocess.Popen:
        return self._popen([*self.prefix, *args], stdout=log, stderr=subprocess.STDOUT)


def _failure(step: str, result: subprocess.CompletedProcess) -> str:
    detail = (result.stderr or result.stdout or "").strip().splitlines()
    return f"{step} failed: {detail[-1] if detail else f'exit status {result.returncode}'}"


class KubernetesBackend(Backend):
    name = "k8s"
    runs_capacity_searches = True

    def __init__(self, scenario_file: ScenarioFile | None = None,
                 kubectl: Kubectl | None = None, overlays: Path = k8s.OVERLAYS_DIR,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 sample_stats: bool = True, sample_cpu: bool = True):
        self.scenario_file = scenario_file
        self.kubectl = kubectl or Kubectl()
        self.overlays = overlays
        self.sleep = sleep
        self.clock = clock
        self.sample_stats = sample_stats
        self.sample_cpu = sample_cpu

    def check(self) -> None:
        if self.kubectl.prefix[0] == "kubectl" and not shutil.which("kubectl"):
            raise BackendError("kubectl is not installed")
        if self.scenario_file is not None:
            stale = k8s.stale_overlays(self.scenario_file, self.overlays)
            if stale:
                raise BackendError(f"{stale[0]} is missing or out of date with the "
                                   "scenario file: run `make k8s`")
        result = self.kubectl("version", "--request-timeout=10s", "-o", "json", timeout=30)
        if result.returncode != 0:
            raise BackendError(_failure("`kubectl version` (is a cluster reachable?)", result))

    def check_scenarios(self, scenarios: list[Scenario]) -> None:
        refuse_interpreter_paths(self.name, scenarios)

    def namespace_for(self, scenario: Scenario) -> str:
        return f"fslab-{scenario.name}-{uuid.uuid4().hex[:6]}"

    def run(self, scenario: Scenario, folder: Path, progress: Progress) -> Outcome:
        namespace = self.namespace_for(scenario)
        kubectl = self.kubectl
        (folder / "namespace.txt").write_text(namespace + "\n")
        created = kubectl("create", "namespace", namespace)
        if created.returncode != 0:
            return Outcome("error", _failure("creating the namespace", created))
        forward = sampler = None
        pod = ""
        try:
            applied = kubectl("-n", namespace, "apply", "-k",
                              str(self.overlays / scenario.name), timeout=180)
            if applied.returncode != 0:
                return Outcome("error", _failure("kubectl apply -k", applied))
            for deployment in DEPLOYMENTS:
                rollout = kubectl("-n", namespace, "rollout", "status",
                                  f"deployment/{deployment}", f"--timeout={ROLLOUT_TIMEOUT}",
                                  timeout=360)
                if rollout.returncode != 0:
                    return Outcome("error", _failure(f"rollout of {deployment}", rollout))
            if self.sample_stats:
                forward, sampler = self._start_sampler(namespace, folder)
            deadline = self.clock() + k8s.STARTUP_SECONDS + scenario.duration \
                + LOCUST_OVERHEAD_SECONDS
            pod = self._job_pod(namespace, deadline)
            if not pod:
                return Outcome("error", "the locust-run Job started no pod")
            cpu = KubectlTopSamples(folder / CPU_FILE, pod) if self.sample_cpu else None
            code = self._wait_for_locust(namespace, pod, deadline, progress, sampler, cpu)
            if code is None:
                return Outcome("error", "Locust did not finish in time")
            copied = self._copy_results(namespace, pod, folder)
            return Outcome.from_exit_code(code, "" if copied else "kubectl cp of /results failed")
        finally:
            if sampler is not None:
                sampler.stop()
            if forward is not None:
                forward.terminate()
                forward.wait(10)
            self._save_logs(namespace, pod, folder)
            kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=180s",
                    timeout=240)

    def _start_sampler(self, namespace: str, folder: Path):
        port = free_port()
        log = open(folder / "port-forward.log", "wb")
        target = f"{port}:{wire.DEFAULT_METRICS_PORT}"
        forward = self.kubectl.background("-n", namespace, "port-forward",
                                          "service/fileserver", target, log=log)
        log.close()                   # the child holds its own copy of the descriptor
        sampler = StatsSampler(f"http://127.0.0.1:{port}/stats", folder / STATS_FILE).start()
        return forward, sampler

    def _job_pod(self, namespace: str, deadline: float) -> str:
        while self.clock() < deadline:
            result = self.kubectl("-n", namespace, "get", "pods", "-l", JOB_SELECTOR, "-o",
                                  "jsonpath={.items[0].metadata.name}")
            if result.returncode == 0 and result.stdout.strip():
                return result.stdout.strip()
            self.sleep(POLL_SECONDS)
        return ""

    def _wait_for_locust(self, namespace: str, pod: str, deadline: float, progress: Progress,
                         sampler: StatsSampler | None,
                         cpu: KubectlTopSamples | None = None) -> int | None:
        """Locust's exit status, read from /results/exit-status once it exists; until
        then the Locust pods' CPU at each poll."""
        started = self.clock()
        while self.clock() < deadline:
            result = self.kubectl("-n", namespace, "exec", pod, "-c", "locust", "--",
                                  "cat", "/results/exit-status")
            text = result.stdout.strip()
            if result.returncode == 0 and text.isdigit():
                return int(text)
            if cpu is not None and not cpu.no_metrics_api:
                top = self.kubectl("-n", namespace, "top", "pod", "-l", LOCUST_SELECTOR,
                                   timeout=30)
                cpu.add(round(self.clock() - started, 3), top.returncode, top.stdout, top.stderr)
            progress(self.clock() - started, sampler.latest if sampler else None)
            self.sleep(POLL_SECONDS)
        return None

    def _copy_results(self, namespace: str, pod: str, folder: Path) -> bool:
        target = folder / "job-results"
        result = self.kubectl("-n", namespace, "cp", "-c", "locust", f"{pod}:/results",
                              str(target), timeout=300)
        if result.returncode != 0:
            return False
        # kubectl cp puts the folder's files in target (older kubectl: target/results)
        stats = next(target.rglob(f"{LOCUST_PREFIX}_stats.csv"), None)
        if stats is None:
            return False
        for path in stats.parent.iterdir():
            shutil.move(str(path), folder / path.name)
        shutil.rmtree(target, ignore_errors=True)
        return True

    def _save_logs(self, namespace: str, pod: str, folder: Path) -> None:
        logs = {"server.log": ("deployment/fileserver", "--all-containers")}
        if pod:
            logs["locust.log"] = (pod, "-c", "locust")
        for file_name, args in logs.items():
            result = self.kubectl("-n", namespace, "logs", *args, timeout=60)
            (folder / file_name).write_text(result.stdout if result.returncode == 0
                                            else _failure("kubectl logs", result) + "\n")
