"""A capacity search on the compose backend: compose/capacity.yml makes the Locust
master and workers load locust/capacity_shape.py, the search's LOCUST_CAPACITY_*
values reach the master, and the step table and outcome come back into the
scenario folder.

The unit tests read the compose file; the docker test runs one tiny search (three
steps of 5 s, each measured on its last 2-3 s; under a minute) through the
scenario runner, with each compose implementation (v2 and 1.29, as
tests/deploy/test_compose.py).  Needs a Docker engine and the images (built the
offline way, as tests/deploy/test_compose.py does); skips without an engine
unless FS_REQUIRE_DOCKER is set.
"""

import csv
import io
import json
import subprocess
import time

import pytest
import yaml

from scenarios import parse
from scenarios.backends import ComposeBackend
from scenarios.backends.compose import CAPACITY_FILES, COMPOSE_FILES, compose_files
from scenarios.k8s import IMAGE_CAPACITY_LOCUSTFILES, IMAGE_LOCUSTFILE
from scenarios.results import CAPACITY_OUTCOME_FILE, CAPACITY_STEPS_FILE, SUMMARY_FILE
from scenarios.runner import Runner
from tests.deploy.test_compose import built, images  # noqa: F401  (image and compose fixtures)
from tests.support import REPO_ROOT

SEARCH = """\
defaults:
  mode: thread
  pool: 5
  server_cpus: 1
  server_memory: 384Mi
  users: 10
  spawn_rate: 10
  duration: 10s
  locust_workers: 1
  file_sizes: ["1KB", "64KB"]
  upload_size: 16KB
  wait: "0.1-0.3"
scenarios:
  - name: fixed
  - name: compose-capacity
    capacity: {slo_p95_ms: 5000, start_users: 5, step_users: 5, step_seconds: 5,
               max_users: 15}
"""
FIXED, SEARCH_SCENARIO = parse(yaml.safe_load(SEARCH))


def capacity_compose() -> dict:
    _, path = CAPACITY_FILES
    return yaml.safe_load((REPO_ROOT / path).read_text())


@pytest.mark.unit
def test_only_a_capacity_search_adds_the_capacity_file():
    assert compose_files(FIXED) == COMPOSE_FILES
    assert compose_files(SEARCH_SCENARIO) == COMPOSE_FILES + CAPACITY_FILES


@pytest.mark.unit
def test_the_capacity_file_passes_every_search_setting_to_the_master():
    services = capacity_compose()["services"]
    master = services["locust-master"]["environment"]
    capacity_names = {name for name in master if name.startswith("LOCUST_CAPACITY_")}
    assert capacity_names == {name for name, _ in SEARCH_SCENARIO.capacity.locust_env()}
    # no value: compose passes the runner's value through, or leaves it unset
    assert all(master[name] is None for name in capacity_names)
    for service in ("locust-master", "locust-worker"):
        # the same files as a search's k8s overlay
        assert services[service]["environment"]["LOCUST_LOCUSTFILE"] == IMAGE_CAPACITY_LOCUSTFILES


@pytest.mark.unit
def test_the_locust_image_holds_the_shape_and_loads_locust_locustfile():
    dockerfile = (REPO_ROOT / "locust/Dockerfile").read_text()
    assert "COPY locust/ /app/locust/\n" in dockerfile       # capacity_shape.py with the users
    assert f"LOCUST_LOCUSTFILE={IMAGE_LOCUSTFILE}\n" in dockerfile
    # a -f in the entrypoint would override LOCUST_LOCUSTFILE
    assert 'ENTRYPOINT ["locust"]' in dockerfile


@pytest.mark.integration
@pytest.mark.docker
@pytest.mark.slow
def test_a_capacity_search_through_the_compose_backend(images, tmp_path):  # noqa: F811
    progress = io.StringIO()
    started = time.monotonic()
    folder, [row] = Runner(ComposeBackend(compose=images), tmp_path / "results",
                           out=progress).run([SEARCH_SCENARIO])
    seconds = time.monotonic() - started
    assert (row["status"], row["backend"]) == ("ok", "compose"), (row, progress.getvalue())
    scenario = folder / SEARCH_SCENARIO.name
    with open(scenario / CAPACITY_STEPS_FILE, newline="") as f:
        steps = list(csv.DictReader(f))
    assert [step["users"] for step in steps] == ["5", "10", "15"]
    assert all(step["met_objective"] == "yes" and int(step["requests"]) > 0 for step in steps)
    assert all(int(step["window_seconds"]) >= 2 for step in steps)      # 5 s less the ramp
    outcome = json.loads((scenario / CAPACITY_OUTCOME_FILE).read_text())
    assert outcome["settings"]["step_seconds"] == 5        # the scenario's, not the default 15
    assert outcome["capacity_rps"] == max(float(step["rps"]) for step in steps)

    with open(folder / SUMMARY_FILE, newline="") as f:
        [summary] = list(csv.DictReader(f))
    assert float(summary["capacity_rps"]) == outcome["capacity_rps"] > 0
    assert (summary["capacity_users"], summary["capacity_steps"],
            summary["capacity_stopped"]) == ("15", "3", "reached max_users (15)")
    # the generator check from the Locust containers, as for a fixed load
    assert float(summary["locust_cpu_max_pct"]) > 0
    assert summary["load_generator_saturated"] == "no", summary
    print(f"compose {' '.join(images)}: capacity search in {seconds:.0f} s, "
          f"{outcome['capacity_rps']} req/s at {outcome['capacity_users']} users; steps "
          + ", ".join(f"{s['users']} users {s['rps']} req/s p95 {s['p95_ms']} ms"
                      for s in steps))

    leftovers = subprocess.run(["docker", "ps", "-aq", "--filter",
                                f"name=fslab-{SEARCH_SCENARIO.name}-"],
                               capture_output=True, text=True).stdout.strip()
    assert leftovers == ""
