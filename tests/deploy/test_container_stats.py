"""The compose backend's per-container CPU and memory (Docker SDK) against a real engine.

One short compose scenario (about 20 s of load) with two Locust workers: every
container of the project is sampled, the Locust containers feed the load-generator
columns, the server container's CPU agrees with the server's own /stats, and the
report gets its per-container table.  Needs a Docker engine and the images (built
the offline way, as tests/deploy/test_compose.py does); skips without an engine
unless FS_REQUIRE_DOCKER is set.
"""

import io
import subprocess

import pytest
import yaml

from scenarios import parse
from scenarios.backends import ComposeBackend
from scenarios.containers import CONTAINERS_FILE, container_table, read_container_samples
from scenarios.generator import NOT_CHECKED_NOTE, SMOOTHING_SAMPLES, generator_check
from scenarios.report import write_report
from scenarios.runner import Runner
from scenarios.sampler import read_samples
from tests.deploy.test_compose import built  # noqa: F401  (the module's image fixture)
from tests.scenarios.conftest import fonts_loaded  # noqa: F401  (matplotlib's open fonts)
from tests.support import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]

SCENARIO = """\
defaults:
  pool: 5
  server_cpus: 1
  server_memory: 384Mi
  users: 40
  spawn_rate: 40
  duration: 20s
  locust_workers: 2
  file_sizes: ["1KB", "64KB"]
  upload_size: 16KB
  wait: "0.1-0.3"
scenarios:
  - name: compose-stats
    mode: process
"""
CONTAINERS = ["server-1", "locust-master-1", "locust-worker-1", "locust-worker-2"]


def cpu_seconds(samples: list[dict], name: str) -> float:
    """CPU seconds a container used over its samples (each cpu_pct covers the second or
    so since that container's previous document)."""
    total, previous_t = 0.0, None
    for sample in samples:
        entry = sample["containers"].get(name)
        if entry is None:
            continue
        if entry["cpu_pct"] is not None and previous_t is not None:
            total += entry["cpu_pct"] / 100 * (sample["t"] - previous_t)
        previous_t = sample["t"]
    return total


def healthcheck_interval() -> float:
    compose = yaml.safe_load((REPO_ROOT / "compose/docker-compose.yml").read_text())
    interval = compose["services"]["server"]["healthcheck"]["interval"]
    assert interval.endswith("s") and interval[:-1].isdigit(), interval
    return float(interval[:-1])


def test_a_compose_run_samples_every_container(built, fonts_loaded, tmp_path):  # noqa: F811
    progress = io.StringIO()
    folder, [row] = Runner(ComposeBackend(), tmp_path / "results", out=progress).run(
        list(parse(yaml.safe_load(SCENARIO))))
    assert (row["status"], row["backend"]) == ("ok", "compose"), (row, progress.getvalue())
    scenario = folder / "compose-stats"
    samples = read_container_samples(scenario / CONTAINERS_FILE)
    table = {entry["container"]: entry for entry in container_table(samples, SMOOTHING_SAMPLES)}
    assert list(table) == CONTAINERS              # server first, then the Locust containers
    assert [table[name]["role"] for name in CONTAINERS] == \
        ["server", "Locust master", "Locust worker", "Locust worker"]
    for name, entry in table.items():
        assert entry["samples"] >= 15, (name, entry)          # about one a second
        assert entry["cpu_pct_mean"] > 0 and entry["cpu_pct_peak"] >= entry["cpu_pct_mean"]
        assert 10 * 2 ** 20 < entry["memory_bytes_max"] < entry["memory_limit_bytes"]
    assert table["server-1"]["memory_limit_bytes"] == 384 * 2 ** 20      # the scenario's limit

    # the load-generator columns come from the Locust containers
    columns, _ = generator_check(scenario)
    assert row["locust_cpu_max_pct"] == columns["locust_cpu_max_pct"] > 0
    assert row["locust_cpu_max_pct"] == max(table["locust-worker-1"]["cpu_pct_peak"],
                                            table["locust-worker-2"]["cpu_pct_peak"])
    assert row["load_generator_saturated"] == \
        ("yes" if row["locust_cpu_max_pct"] > 80 else "no")
    assert NOT_CHECKED_NOTE not in (row["note"] or "")

    # the server container's CPU is the server's own (its /stats counts every process of
    # it) plus its health checks: each a `python -m server.healthcheck`, about 0.1 s of CPU
    stats = read_samples(scenario / "server-stats.jsonl")
    stats_seconds = stats[-1]["stats"]["cpu"]["seconds_total"] - \
        stats[0]["stats"]["cpu"]["seconds_total"]
    container_seconds = cpu_seconds(samples, "server-1")
    window = stats[-1]["t"] - stats[0]["t"]
    health_checks = window / healthcheck_interval()
    assert stats_seconds > 1.0
    assert stats_seconds * 0.95 - 0.1 <= container_seconds <= \
        stats_seconds + 0.2 * health_checks, (container_seconds, stats_seconds, health_checks)

    report = write_report(folder)
    markdown = next(path for path in report if path.name == "report.md").read_text()
    assert "## Containers" in markdown
    for name in CONTAINERS:
        assert f"| compose-stats | {name} |" in markdown
    assert "<h2>Containers</h2>" in (folder / "report.html").read_text()

    leftovers = subprocess.run(["docker", "ps", "-aq", "--filter", "name=fslab-compose-stats"],
                               capture_output=True, text=True).stdout.strip()
    assert leftovers == ""
