"""The compose backend: compose/docker-compose.yml + compose/headless.yml per scenario.

The scenario becomes compose variables (FS_MODE, FS_POOL, SERVER_CPUS,
SERVER_MEMORY, LOCUST_WORKERS and the LOCUST_* load); Locust writes into the
scenario folder through RESULTS_DIR; the server's metrics port is published on
127.0.0.1 (FS_METRICS_HOST_PORT) for the /stats sampler.  Each scenario is its
own compose project, taken down with its volumes afterwards.  The images must
exist: ``make images`` (or ``make images-offline``).  A capacity search adds
compose/capacity.yml: master and workers load locust/capacity_shape.py, the
master gets the search's LOCUST_CAPACITY_* values, and its step table and
outcome land next to Locust's CSV in RESULTS_DIR.

The compose CLI brings the project up and down (the Docker SDK has no compose);
the SDK checks the engine and the images, and samples every container of the
project (server, Locust master and workers) once a second into
``containers.jsonl`` (see ``scenarios.containers``): the Locust containers' CPU
is the load-generator check, as the local backend's psutil samples are.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from scenarios import containers
from scenarios.backends.base import (LOCUST_OVERHEAD_SECONDS, REPO_ROOT, Backend, BackendError,
                                     Outcome, Progress, refuse_interpreter_paths,
                                     stop_process, wait_for_exit, wait_until_ready)
from scenarios.results import STATS_FILE
from scenarios.sampler import StatsSampler
from scenarios.schema import PYTHON_DEFAULT, SERVER_IMAGES, Scenario
from server.launcher import free_port

COMPOSE_FILES = ["-f", "compose/docker-compose.yml", "-f", "compose/headless.yml"]
CAPACITY_FILES = ["-f", "compose/capacity.yml"]
IMAGES = ("fileserver-lab/server", "fileserver-lab/locust")
READY_TIMEOUT = 120.0


class DockerUnavailable(BackendError):
    """No Docker engine answers, or the Docker SDK is missing: exit status 2."""

    exit_status = 2


def docker_engine():
    """A Docker SDK client that answered a ping (the caller closes it)."""
    try:
        return containers.engine()
    except containers.EngineError as error:
        raise DockerUnavailable(str(error)) from None


def compose_command() -> list[str] | None:
    """``docker compose`` (v2) if present, else ``docker-compose`` (1.29), else None."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def compose_files(scenario: Scenario) -> list[str]:
    """The compose files of one scenario's project (as ``-f`` arguments)."""
    return COMPOSE_FILES + (CAPACITY_FILES if scenario.capacity is not None else [])


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
        "SERVER_IMAGE": scenario.server_image or SERVER_IMAGES[PYTHON_DEFAULT],
        **dict(scenario.locust_env()),
    }


class ComposeBackend(Backend):
    name = "compose"
    runs_capacity_searches = True

    def __init__(self, compose: list[str] | None = None, image_tag: str = "latest"):
        self.compose = compose
        self.image_tag = image_tag

    def check(self) -> None:
        if self.compose is None:
            self.compose = compose_command()
        if self.compose is None:
            raise BackendError("neither `docker compose` nor docker-compose is installed")
        client = docker_engine()
        try:
            missing = containers.missing_images(
                client, [f"{image}:{self.image_tag}" for image in IMAGES])
        finally:
            client.close()
        if missing:
            raise BackendError(f"image {', '.join(missing)} is missing: run `make images` "
                               "(or `make images-offline`)")

    def check_scenarios(self, scenarios: list[Scenario]) -> None:
        """A ``python`` path runs with the local backend only; the free-threaded
        server image must exist when a scenario asks for it."""
        refuse_interpreter_paths(self.name, scenarios)
        wanted = sorted({f"{scenario.server_image}:{self.image_tag}" for scenario in scenarios
                         if scenario.python != PYTHON_DEFAULT})
        if wanted:
            client = docker_engine()
            try:
                missing = containers.missing_images(client, wanted)
            finally:
                client.close()
            if missing:
                raise BackendError(f"image {', '.join(missing)} is missing: run `make image-ft`")

    def run(self, scenario: Scenario, folder: Path, progress: Progress) -> Outcome:
        results_dir = folder / "locust-output"
        results_dir.mkdir()
        results_dir.chmod(0o777)       # the Locust container runs as uid 10001
        metrics_port = free_port()
        env = dict(os.environ, **compose_variables(scenario, results_dir, metrics_port,
                                                   free_port(), self.image_tag))
        project = f"fslab-{scenario.name}-{os.getpid()}"
        base = [*self.compose, "-p", project, *compose_files(scenario)]

        def compose(*args: str, timeout: float = 300, log=None) -> subprocess.CompletedProcess:
            return subprocess.run([*base, *args], cwd=REPO_ROOT, env=env, timeout=timeout,
                                  stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT)

        sampler = container_sampler = client = None
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
                client = docker_engine()
                container_sampler = containers.ContainerSampler(
                    client, project, folder / containers.CONTAINERS_FILE).start()
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
                if container_sampler is not None:
                    container_sampler.stop()
                if client is not None:
                    client.close()
                with open(folder / "server.log", "wb") as server_log:
                    compose("logs", "--no-color", "server", log=server_log, timeout=120)
                compose("down", "-v", "--remove-orphans", log=log, timeout=300)
                self._collect(results_dir, folder)

    @staticmethod
    def _collect(results_dir: Path, folder: Path) -> None:
        for path in results_dir.iterdir():
            shutil.move(str(path), folder / path.name)
        results_dir.rmdir()
