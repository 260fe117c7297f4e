"""docker compose end to end: images built the offline way, a headless run per mode.

Needs a Docker engine.  Without one the tests skip on a developer machine and
fail in CI, where .ci/run starts an engine and sets FS_REQUIRE_DOCKER=1.
All traffic stays on the compose network, plus the UI port bound to 127.0.0.1.
"""

import csv
import io
import json
import os
import shutil
import subprocess
import uuid

import pytest
import yaml

from scenarios import parse
from scenarios.backends import ComposeBackend
from scenarios.backends.compose import COMPOSE_FILES, compose_command, compose_memory
from scenarios.runner import Runner
from server.config import MODES
from server.launcher import wait_until
from tests.scenarios.test_run_local import TWO_SCENARIOS
from tests.support import REPO_ROOT, free_port

SERVER_CPUS = "1.5"
SERVER_MEMORY = "384m"


def docker_engine_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


# Both compose implementations users run: the v2 CLI plugin (today's Docker) and Debian's 1.29.
COMPOSE_IMPLEMENTATIONS = {
    "v2": (["docker", "compose"], "FS_REQUIRE_COMPOSE_V2", ".ci/compose-v2.sh installs it"),
    "1.29": (["docker-compose"], "FS_REQUIRE_DOCKER", "apt-get install docker-compose"),
}


def compose_works(command: list[str]) -> bool:
    if not shutil.which(command[0]):
        return False
    probe = subprocess.run([*command, "version"], capture_output=True, timeout=60)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def built():
    """The images, built the offline way once per module."""
    if not docker_engine_available():
        if os.environ.get("FS_REQUIRE_DOCKER"):
            pytest.fail("FS_REQUIRE_DOCKER is set but no Docker engine answers `docker info`")
        pytest.skip("no Docker engine here (CI starts one: .ci/docker-engine.sh start)")
    result = subprocess.run(["compose/build-offline.sh"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert compose_command() is not None, "a Docker engine runs but no compose CLI exists"


@pytest.fixture(scope="module", params=list(COMPOSE_IMPLEMENTATIONS))
def images(request, built):
    """The compose command to run the built images with: each implementation in turn."""
    command, required_by, how = COMPOSE_IMPLEMENTATIONS[request.param]
    if not compose_works(command):
        if os.environ.get(required_by):
            pytest.fail(f"{required_by} is set but `{' '.join(command)} version` fails ({how})")
        pytest.skip(f"compose {request.param} is not installed here ({how})")
    return command


class ComposeProject:
    def __init__(self, compose: list[str], tmp_path, **variables):
        self.name = f"fslabtest{uuid.uuid4().hex[:8]}"
        self.results = tmp_path / "results"
        self.results.mkdir()
        self.results.chmod(0o777)           # the Locust container runs as uid 10001
        self.env = dict(os.environ, RESULTS_DIR=str(self.results), LOCUST_WEB_BIND="127.0.0.1",
                        FS_METRICS_HOST_PORT=str(free_port()),
                        LOCUST_WEB_PORT=str(free_port()),
                        **{k: str(v) for k, v in variables.items()})
        self.base = [*compose, "-p", self.name, *COMPOSE_FILES]

    def run(self, *args: str, timeout: float = 300, check: bool = True):
        result = subprocess.run([*self.base, *args], cwd=REPO_ROOT, env=self.env,
                                capture_output=True, text=True, timeout=timeout)
        if check:
            assert result.returncode == 0, (args, result.stdout[-4000:], result.stderr[-4000:])
        return result

    def readiness(self, timeout: float = 90.0) -> dict:
        """The server's /readyz once it says ready: `up -d` returns when the container
        has started, before the server listens."""
        answers = []

        def ready() -> bool:
            result = self.run("exec", "-T", "server", "python", "-m", "server.healthcheck",
                              "readyz", timeout=60, check=False)
            if result.returncode == 0:
                answers.append(json.loads(result.stdout))
            return bool(answers)
        assert wait_until(ready, timeout, interval=0.5), \
            f"the server did not say ready within {timeout:g} s"
        return answers[0]

    def down(self):
        self.run("down", "-v", "--remove-orphans", timeout=180, check=False)


# hardened as the k8s pods (compose/docker-compose.yml): what `docker inspect` shows
HARDENED = {"ReadonlyRootfs": True, "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges:true"]}


def hardening(project: "ComposeProject") -> dict[str, list[dict]]:
    """Service -> the hardening settings of each of its containers, running or exited."""
    ids = subprocess.run(["docker", "ps", "-aq", "--filter",
                          f"label=com.docker.compose.project={project.name}"],
                         capture_output=True, text=True, check=True).stdout.split()
    found: dict[str, list[dict]] = {}
    for state in json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True,
                                           text=True, check=True).stdout):
        service = state["Config"]["Labels"]["com.docker.compose.service"]
        found.setdefault(service, []).append(
            {key: state["HostConfig"][key] for key in HARDENED})
    return found


def read_stats(results) -> dict:
    with open(results / "locust_stats.csv", newline="") as f:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}


@pytest.mark.integration
@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_headless_compose_run(images, tmp_path, mode):
    project = ComposeProject(images, tmp_path, FS_MODE=mode, FS_POOL=7, SERVER_CPUS=SERVER_CPUS,
                             SERVER_MEMORY=SERVER_MEMORY, LOCUST_USERS=100,
                             LOCUST_SPAWN_RATE=50, LOCUST_RUN_TIME="20s", LOCUST_WORKERS=2,
                             LOCUST_FILE_SIZES="1KB,64KB", LOCUST_UPLOAD_SIZE="16KB")
    try:
        project.run("up", "-d", "server", timeout=180)
        readiness = project.readiness()
        assert (readiness["mode"], readiness["pool"], readiness["ready"]) == (mode, 7, True)

        container = project.run("ps", "-q", "server").stdout.strip()
        host_config = json.loads(subprocess.run(
            ["docker", "inspect", container], capture_output=True, text=True,
            check=True).stdout)[0]["HostConfig"]
        assert host_config["NanoCpus"] == int(float(SERVER_CPUS) * 1e9)
        assert host_config["Memory"] == 384 * 1024 * 1024
        status = project.run("exec", "-T", "server", "cat", "/proc/1/status").stdout
        # no capability left, no privilege escalation: as the kernel applied them
        assert "CapEff:\t0000000000000000" in status and "NoNewPrivs:\t1" in status

        run = project.run("up", "--scale", "locust-worker=2", "--exit-code-from",
                          "locust-master", "--abort-on-container-exit", check=False,
                          timeout=300)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
        assert hardening(project) == {"server": [HARDENED], "locust-master": [HARDENED],
                                      "locust-worker": [HARDENED, HARDENED]}
        stats = read_stats(project.results)
        total = stats.pop(("", "Aggregated"))
        assert int(total["Request Count"]) > 200
        assert total["Failure Count"] == "0"
        assert {request_type for request_type, _ in stats} == {"LIST", "GET", "UPLOAD", "DELETE"}
        assert (project.results / "report.html").stat().st_size > 10_000
    finally:
        project.down()
    leftovers = subprocess.run(["docker", "ps", "-aq", "--filter",
                                f"label=com.docker.compose.project={project.name}"],
                               capture_output=True, text=True).stdout.strip()
    assert leftovers == ""


@pytest.mark.unit
def test_compose_memory_limits_keep_the_exact_byte_count():
    assert compose_memory(2 ** 30) == "1024m"
    assert compose_memory(256 * 2 ** 20) == "256m"
    assert compose_memory(10 ** 9) == "1000000000b"       # "1G" in Kubernetes units


@pytest.mark.integration
@pytest.mark.docker
@pytest.mark.slow
def test_two_scenarios_through_the_compose_backend(images, tmp_path):
    # the compose backend runs the image's interpreter: `python: default`
    scenarios = list(parse(yaml.safe_load(TWO_SCENARIOS.replace("{python}", "default"))))
    progress = io.StringIO()
    folder, rows = Runner(ComposeBackend(compose=images), tmp_path / "results",
                          out=progress).run(scenarios)
    assert [row["scenario"] for row in rows] == ["thread-pool5", "process-pool5"]
    for row in rows:
        assert (row["status"], row["backend"], row["limits_enforced"]) == \
            ("ok", "compose", "yes"), (row, progress.getvalue())
        assert row["rps"] > 20 and row["failures"] == 0 and row["requests"] > 200
        assert row["samples"] >= 3 and row["server_cpu_pct_mean"] > 0
        assert row["server_requests"] >= row["requests"]
        scenario_folder = folder / row["scenario"]
        assert {"locust_stats.csv", "report.html", "server-stats.jsonl", "server.log",
                "compose.log"} <= {p.name for p in scenario_folder.iterdir()}
        assert f"with a {row['mode']} pool of 5" in (scenario_folder / "server.log").read_text()
    leftovers = subprocess.run(["docker", "ps", "-aq", "--filter", "name=fslab-"],
                               capture_output=True, text=True).stdout.strip()
    assert leftovers == ""
