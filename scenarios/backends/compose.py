"""The compose backend: compose/docker-compose.yml + compose/headless.yml per scenario.

The scenario becomes compose variables (FS_MODE, FS_POOL, SERVER_CPUS,
SERVER_MEMORY, LOCUST_WORKERS and the LOCUST_* load); Locust writes into the
scenario folder through RESULTS_DIR; the server's metrics port is published on
127.0.0.1 (FS_METRICS_HOST_PORT) for the /stats sampler.  Each scenario is its
own compose project, taken down with its volumes afterwards.  The images must
exist: ``make images`` (or ``make images-offline``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from scenarios.backends.base import (LOCUST_OVERHEAD_SECONDS, REPO_ROOT, Backend, BackendError,
                                     Outcome, Progress, stop_process, wait_for_exit,
                                     wait_until_ready)
from scenarios.results import STATS_FILE
from scenarios.sampler import StatsSampler
from scenarios.schema import Scenario
from server.launcher import free_port

COMPOSE_FILES = ["-f", "compose/docker-compose.yml", "-f", "compose/headless.yml"]
IMAGES = ("fileserver-lab/server", "fileserver-lab/locust")
READY_TIMEOUT = 120.0


def compose_command() -> list[str] | None:
    """``docker compose`` (v2) if present, else ``docker-compose`` (1.29), else None."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def compose_memory(byte_count: int) -> str:
    """A byte count as a compose memory limit: 1Gi -> "1024m"."""
    if byte_count % 2 ** 20 == 0:
        return f"{byte_count // 2 ** 20}m"
    return f"{byte_count}b"


def compose_variables(scenario: Scenario, results_dir: Path, metrics_port: int,
                      web_port: int, image_tag: str) -> dict[str, str]:
    return {
        "FS_MODE": scenario.mode,
        "FS_POOL": str(scenario.pool),
        "SERVER_CPUS": f"{scenario.server_cpus:g}",
        "SERVER_MEMORY": compose_memory(scenario.memory_bytes),
        "LOCUST_WORKERS": str(scenario.locust_workers),
        "RESULTS_DIR": str(results_dir),
        "FS_METRICS_HOST_PORT": str(metrics_port),
        "LOCUST_WEB_BIND": "127.0.0.1",
        "LOCUST_WEB_PORT": str(web_port),
        "IMAGE_TAG": image_tag,
        **dict(scenario.locust_env()),
    }


class ComposeBackend(Backend):
    name = "compose"

    def __init__(self, compose: list[str] | None = None, image_tag: str = "latest"):
        self.compose = compose
        self.image_tag = image_tag

    def check(self) -> None:
        if self.compose is None:
            self.compose = compose_command()
        if self.compose is None:
            raise BackendError("neither `docker compose` nor docker-compose is installed")
        if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
            raise BackendError("no Docker engine answers `docker info`")
        for image in IMAGES:
            reference = f"{image}:{self.image_tag}"
            if subprocess.run(["docker", "image", "inspect", reference],
                              capture_output=True).returncode != 0:
                raise BackendError(f"image {reference} is missing: run `make images` "
                                   "(or `make images-offline`)")

    def run(self, scenario: Scenario, folder: Path, progress: Progress) -> Outcome:
        results_dir = folder / "locust-output"
        results_dir.mkdir()
        results_dir.chmod(0o777)       # the Locust container runs as uid 10001
        metrics_port = free_port()
        env = dict(os.environ, **compose_variables(scenario, results_dir, metrics_port,
                                                   free_port(), self.image_tag))
        project = f"fslab-{scenario.name}-{os.getpid()}"
        base = [*self.compose, "-p", project, *COMPOSE_FILES]

        def compose(*args: str, timeout: float = 300, log=None) -> subprocess.CompletedProcess:
            return subprocess.run([*base, *args], cwd=REPO_ROOT, env=env, timeout=timeout,
                                  stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT)

        sampler = None
        with open(folder / "compose.log", "wb") as log:
            try:
                if compose("up", "-d", "server", log=log).returncode != 0:
                    return Outcome("error", "`compose up -d server` failed (see compose.log)")
                stats_url = f"http://127.0.0.1:{metrics_port}/stats"
                problem = wait_until_ready(f"http://127.0.0.1:{metrics_port}/readyz",
                                           READY_TIMEOUT)
                if problem:
                    return Outcome("error", problem)
                sampler = StatsSampler(stats_url, folder / STATS_FILE).start()
                # only the Locust services: the server outlives the run, so the
                # sampler's last /stats holds its final totals
                load = subprocess.Popen(
                    [*base, "up", "--no-deps", "--scale",
                     f"locust-worker={scenario.locust_workers}", "--exit-code-from",
                     "locust-master", "--abort-on-container-exit", "locust-master",
                     "locust-worker"],
                    cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
                code = wait_for_exit(load, scenario.duration + LOCUST_OVERHEAD_SECONDS,
                                     progress, lambda: sampler.latest)
                if code is None:
                    stop_process(load, timeout=60)
                return Outcome.from_exit_code(code)
            finally:
                if sampler is not None:
                    sampler.stop()
                with open(folder / "server.log", "wb") as server_log:
                    compose("logs", "--no-color", "server", log=server_log, timeout=120)
                compose("down", "-v", "--remove-orphans", log=log, timeout=300)
                self._collect(results_dir, folder)

    @staticmethod
    def _collect(results_dir: Path, folder: Path) -> None:
        for path in results_dir.iterdir():
            shutil.move(str(path), folder / path.name)
        results_dir.rmdir()
