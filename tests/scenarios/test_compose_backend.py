"""The compose backend's Docker SDK side, without an engine: the stats arithmetic on
documents recorded from dockerd 20.10 (tests/scenarios/recorded/docker-stats/), the
container table and the load-generator columns from a recorded compose run's
``containers.jsonl``, the sampler against a stand-in client, the report's section,
and the one-line error when no engine answers.  tests/deploy/test_container_stats.py
runs the same against a real engine."""

import copy
import json
import threading
import time
from pathlib import Path

import docker
import pytest

from scenarios.backends.base import BackendError
from scenarios.backends.compose import ComposeBackend, DockerUnavailable
from scenarios.containers import (CONTAINERS_FILE, NUMBER_LABEL, PROJECT_LABEL, SERVICE_LABEL,
                                  ContainerSampler, container_name, container_table,
                                  cpu_percent, memory_in_use, memory_limit, missing_images,
                                  read_container_samples, role)
from scenarios.generator import SATURATED_NOTE, generator_check
from scenarios.report import container_rows, markdown_container_table, write_report
from scenarios.results import (SUMMARY_FILE, scenario_record, summarise, write_scenario_record,
                               write_summary)
from tests.scenarios.test_generator import LOCUST_CSV
from tests.scenarios.test_results import SCENARIO

pytestmark = pytest.mark.unit

RECORDED = Path(__file__).parent / "recorded"
# `python3 -c "x = bytearray(32 << 20); <write a 16 MiB file>; while True: pass"` in a
# container limited to 0.5 CPU and 64 MiB, on a 2-CPU machine
STREAMED = json.loads((RECORDED / "docker-stats/busy-half-cpu-streamed.json").read_text())
ONE_SHOT = json.loads((RECORDED / "docker-stats/busy-half-cpu-one-shot.json").read_text())
# a compose run (tests/deploy/test_container_stats.py): process pool of 5 with 1 CPU and
# 384 MiB, 40 users, two Locust workers, 20 s
COMPOSE_RUN = RECORDED / "containers-compose-run.jsonl"


@pytest.fixture(scope="module", autouse=True)
def _fonts(fonts_loaded):
    """see tests/scenarios/conftest.py"""


# --------------------------------------------------------------------------
# the arithmetic of one stats document

def test_cpu_of_a_container_capped_at_half_a_cpu_reads_50_percent():
    # (2540758899 - 2040462869) / (21882930000000 - 21880930000000) * 2 CPUs * 100
    assert cpu_percent(STREAMED) == 50.0


def test_cpu_needs_a_reference():
    assert cpu_percent(ONE_SHOT) is None          # a one-shot document has no precpu
    first = copy.deepcopy(STREAMED)
    first["precpu_stats"] = {"cpu_usage": {"total_usage": 0}, "throttling_data": {}}
    assert cpu_percent(first) is None             # a stream's first document
    still = copy.deepcopy(STREAMED)
    still["cpu_stats"]["system_cpu_usage"] = still["precpu_stats"]["system_cpu_usage"]
    assert cpu_percent(still) is None
    assert cpu_percent({}) is None


def test_cpu_counts_the_cpus_from_percpu_usage_when_online_cpus_is_missing():
    old_api = copy.deepcopy(STREAMED)
    del old_api["cpu_stats"]["online_cpus"]
    assert len(old_api["cpu_stats"]["cpu_usage"]["percpu_usage"]) == 2
    assert cpu_percent(old_api) == 50.0


def test_memory_is_usage_less_the_inactive_page_cache_cgroup_v1():
    stats = STREAMED["memory_stats"]
    assert (stats["usage"], stats["stats"]["total_inactive_file"]) == (53989376, 16777216)
    assert memory_in_use(STREAMED) == 53989376 - 16777216        # the 32 MiB bytearray and Python
    assert memory_limit(STREAMED) == 64 * 2 ** 20


def test_memory_cgroup_v2_names_the_cache_inactive_file():
    v2 = {"memory_stats": {"usage": 50_000_000, "limit": 10 ** 9,
                           "stats": {"inactive_file": 20_000_000, "anon": 30_000_000}}}
    assert memory_in_use(v2) == 30_000_000
    v2["memory_stats"]["stats"]["inactive_file"] = 60_000_000        # never below zero
    assert memory_in_use(v2) == 50_000_000
    assert memory_in_use({"memory_stats": {}}) is None
    assert memory_in_use(ONE_SHOT) == memory_in_use(STREAMED)


def test_container_names_and_roles_from_the_compose_labels():
    labels = {PROJECT_LABEL: "fslab-x", SERVICE_LABEL: "locust-worker", NUMBER_LABEL: "3"}
    assert container_name(labels) == "locust-worker-3"
    assert [role(s) for s in ("server", "locust-master", "locust-worker", "prometheus")] == \
        ["server", "Locust master", "Locust worker", "prometheus"]


# --------------------------------------------------------------------------
# the recorded compose run

def test_the_container_table_of_a_recorded_compose_run():
    samples = read_container_samples(COMPOSE_RUN)
    assert len(samples) == 130
    table = container_table(samples, 3)
    assert [(r["container"], r["role"], r["cpu_pct_peak"], r["cpu_pct_mean"],
             r["memory_bytes_max"], r["memory_limit_bytes"], r["samples"]) for r in table] == [
        ("server-1", "server", 22.2, 13.0, 55242752, 384 * 2 ** 20, 36),
        ("locust-master-1", "Locust master", 13.9, 2.3, 47501312, 25276063744, 24),
        ("locust-worker-1", "Locust worker", 20.2, 8.1, 41263104, 25276063744, 33),
        ("locust-worker-2", "Locust worker", 17.3, 7.8, 41558016, 25276063744, 33)]


def test_workers_sort_by_number_and_unknown_services_come_last():
    line = {"t": 1.0, "containers": {name: {"service": name.rpartition("-")[0], "cpu_pct": 1.0,
                                            "memory_bytes": 1, "memory_limit_bytes": 2}
                                     for name in ("prometheus-1", "locust-worker-10",
                                                  "locust-worker-2", "server-1")}}
    assert [r["container"] for r in container_table([line], 3)] == \
        ["server-1", "locust-worker-2", "locust-worker-10", "prometheus-1"]


def compose_folder(tmp_path, containers: Path | str = COMPOSE_RUN):
    folder = tmp_path / "thread-pool5"
    folder.mkdir()
    write_scenario_record(folder, scenario_record(SCENARIO, "compose", True))
    (folder / "locust_stats.csv").write_text(LOCUST_CSV)
    text = containers.read_text() if isinstance(containers, Path) else containers
    (folder / CONTAINERS_FILE).write_text(text)
    return folder


def test_the_locust_containers_fill_the_generator_columns(tmp_path):
    row = summarise(compose_folder(tmp_path), "ok")
    # the busier worker's highest 3-sample mean; the master and the server do not count
    assert (row["locust_cpu_max_pct"], row["load_generator_saturated"]) == (20.2, "no")
    assert row["note"] == ""


def test_a_hot_locust_container_sets_the_flag(tmp_path):
    lines = [{"t": float(t), "containers": {
        "server-1": {"service": "server", "cpu_pct": 99.0},
        "locust-master-1": {"service": "locust-master", "cpu_pct": 99.0},
        "locust-worker-1": {"service": "locust-worker", "cpu_pct": pct}}}
        for t, pct in enumerate([None, 40.0, 85.0, 90.0, 88.0, 30.0])]
    folder = compose_folder(tmp_path, "".join(json.dumps(line) + "\n" for line in lines))
    columns, note = generator_check(folder)
    assert columns == {"locust_cpu_max_pct": 87.7, "load_generator_saturated": "yes"}
    assert note.startswith(SATURATED_NOTE)


def test_the_report_gets_a_table_per_container(tmp_path):
    folder = compose_folder(tmp_path)
    row = summarise(folder, "ok")
    write_summary(tmp_path / SUMMARY_FILE, [row])
    (tmp_path / "run.json").write_text(json.dumps({"backend": "compose",
                                                   "machine": {"cpus": 2}}))
    table = markdown_container_table(container_rows(tmp_path, [row]))
    assert table.splitlines()[:4] == [
        "| scenario | container | role | CPU % max | CPU % mean | memory MiB max | limit MiB |",
        "|---|---|---|---:|---:|---:|---:|",
        "| thread-pool5 | server-1 | server | 22.2 | 13.0 | 52.7 | 384.0 |",
        "| thread-pool5 | locust-master-1 | Locust master | 13.9 | 2.3 | 45.3 | 24,105.1 |"]
    write_report(tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "## Containers" in markdown and table in markdown
    assert "not checked" not in markdown
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Containers</h2>" in page
    assert '<td>locust-worker-2</td><td>Locust worker</td><td class="n">17.3</td>' in page


def test_repeated_runs_name_their_run_and_local_runs_have_no_container_table(tmp_path):
    scenario = tmp_path / "thread-pool5"
    for run in ("run-1", "run-2"):
        (scenario / run).mkdir(parents=True)
        (scenario / run / CONTAINERS_FILE).write_text(COMPOSE_RUN.read_text())
    rows = container_rows(tmp_path, [{"scenario": "thread-pool5"}])
    assert [r["scenario"] for r in rows] == ["thread-pool5 run-1"] * 4 + ["thread-pool5 run-2"] * 4
    assert container_rows(tmp_path, [{"scenario": "elsewhere"}]) == []


# --------------------------------------------------------------------------
# the sampler, against a stand-in for the SDK's client

class FakeContainer:
    def __init__(self, service: str, number: int, documents: list[dict]):
        self.id = f"{service}-{number}-id"
        self.labels = {PROJECT_LABEL: "fslab-test", SERVICE_LABEL: service,
                       NUMBER_LABEL: str(number)}
        self.documents = documents
        self.closed = threading.Event()

    def stats(self, stream, decode):
        assert stream and decode
        return self._stream()

    def _stream(self):
        try:
            for document in self.documents:
                yield document
                time.sleep(0.01)
            while True:                    # a running container's stream never ends
                yield self.documents[-1]
                time.sleep(0.01)
        finally:
            self.closed.set()


class FakeContainers:
    def __init__(self, client):
        self.client = client

    def list(self, filters):
        self.client.filters.append(filters)
        self.client.lists += 1
        # the Locust worker starts after the first look, as in a real run
        return self.client.running[:1] if self.client.lists == 1 else self.client.running


class FakeClient:
    def __init__(self, running):
        self.running = running
        self.filters = []
        self.lists = 0
        self.containers = FakeContainers(self)


def test_the_sampler_follows_every_container_of_the_project(tmp_path):
    not_running = copy.deepcopy(STREAMED)
    not_running["cpu_stats"] = {"cpu_usage": {"total_usage": 0}}
    server = FakeContainer("server", 1, [ONE_SHOT, STREAMED])
    worker = FakeContainer("locust-worker", 1, [not_running, STREAMED])
    client = FakeClient([server, worker])
    path = tmp_path / CONTAINERS_FILE
    sampler = ContainerSampler(client, "fslab-test", path, interval=0.05).start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (client.lists < 3 or "locust-worker-1" not in
                                           path.read_text()):
        time.sleep(0.02)
    sampler.stop()
    assert server.closed.is_set() and worker.closed.is_set()      # both streams closed
    assert client.filters[0] == {"label": f"{PROJECT_LABEL}=fslab-test"}
    samples = read_container_samples(path)
    server_lines = [s["containers"]["server-1"] for s in samples if "server-1" in s["containers"]]
    assert server_lines[0] == {"service": "server", "cpu_pct": None,
                               "memory_bytes": 53989376 - 16777216,
                               "memory_limit_bytes": 64 * 2 ** 20}
    assert {line["cpu_pct"] for line in server_lines[1:]} == {50.0}
    worker_lines = [s["containers"]["locust-worker-1"] for s in samples
                    if "locust-worker-1" in s["containers"]]
    assert worker_lines and {line["cpu_pct"] for line in worker_lines} == {50.0}
    assert all(len(s["containers"]) == 1 for s in samples)         # one line per document
    assert [s["t"] for s in samples] == sorted(s["t"] for s in samples)
    written = path.read_text()
    time.sleep(0.1)
    assert path.read_text() == written                             # nothing after stop()


# --------------------------------------------------------------------------
# no engine, no image

def test_no_engine_is_a_one_line_error_with_exit_status_2(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(DockerUnavailable) as caught:
        ComposeBackend(compose=["docker", "compose"]).check()
    message = str(caught.value)
    assert "\n" not in message and isinstance(caught.value, BackendError)
    assert message.startswith("no Docker engine answers at unix:///nonexistent/docker.sock")
    assert caught.value.exit_status == 2


class ImageStore:
    def __init__(self, present):
        self.present = present

    def get(self, reference):
        if reference not in self.present:
            raise docker.errors.ImageNotFound(f"No such image: {reference}")
        return reference


def test_missing_images_are_named():
    client = type("Client", (), {"images": ImageStore({"fileserver-lab/server:latest"})})()
    assert missing_images(client, ["fileserver-lab/server:latest",
                                   "fileserver-lab/locust:latest"]) == \
        ["fileserver-lab/locust:latest"]
