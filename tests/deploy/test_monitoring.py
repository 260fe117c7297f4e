"""Monitoring as shipped: compose/monitoring.yml (Prometheus beside the stack),
compose/prometheus.yml (its scrape configuration) and the Grafana dashboard
(compose/grafana/fileserver-dashboard.json).

The dashboard is parsed and its queries checked against the series a real server
exports (tests/deploy/test_prometheus.py also runs every query on a real
Prometheus); the override is validated by both compose versions, and run for real
with a Prometheus image built offline from Debian's binary (the registry's image
cannot be pulled here).  Grafana itself does not run here: nothing packages it.
"""

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import wire
from server.launcher import http_status, wait_until
from tests.deploy.prometheus_support import binary, instant, wait_for
from tests.deploy.test_compose import COMPOSE_IMPLEMENTATIONS, built, compose_works  # noqa: F401
from tests.support import REPO_ROOT, free_port

DASHBOARD = REPO_ROOT / "compose/grafana/fileserver-dashboard.json"
MONITORING = ["-f", "compose/docker-compose.yml", "-f", "compose/monitoring.yml"]
PROMETHEUS_CONFIG = REPO_ROOT / "compose/prometheus.yml"
# what a user watches (issue 14): a panel for each, by the series it draws
WANTED = {
    "requests/s by command": "fileserver_requests_total",
    "busy workers": "fileserver_workers",
    "cpu": "fileserver_cpu_seconds_total",
    "memory": "fileserver_proportional_memory_bytes",
    "bytes/s": "fileserver_sent_bytes_total",
}


def dashboard_queries(path: Path) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of the dashboard."""
    dashboard = json.loads(path.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"]
            for target in panel.get("targets", [])]


def series_names(expr: str) -> set[str]:
    return set(re.findall(r"\bfileserver_\w+", expr))


@pytest.mark.unit
def test_the_dashboard_is_a_grafana_dashboard_of_the_wanted_panels():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "fileserver-lab" and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["definition"] == "label_values(fileserver_info, instance)"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            # every query follows the server picker, and rates use Grafana's interval
            assert 'instance=~"$instance"' in target["expr"], (panel["title"], target)
            assert "rate(" not in target["expr"] or "[$__rate_interval]" in target["expr"]
    titles: dict[str, set[str]] = {}
    for title, expr in dashboard_queries(DASHBOARD):
        titles.setdefault(title.lower(), set()).update(series_names(expr))
    for wanted, name in WANTED.items():
        assert any(wanted in title and name in names for title, names in titles.items()), wanted


@pytest.mark.integration
def test_the_dashboard_queries_only_series_the_server_exports(server_factory):
    server = server_factory("process", pool=2)       # process mode: every series, per worker too
    text = server.http_text("/metrics")
    exported = {sample.name for family in text_string_to_metric_families(text)
                for sample in family.samples}
    used = set().union(*(series_names(expr) for _, expr in dashboard_queries(DASHBOARD)))
    assert used - exported == set()
    assert set(WANTED.values()) <= used


@pytest.mark.unit
def test_prometheus_scrapes_the_servers_metrics_port():
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    [job] = config["scrape_configs"]
    assert job["job_name"] == "fileserver"
    assert job["static_configs"] == [{"targets": [f"server:{wire.DEFAULT_METRICS_PORT}"]}]
    override = yaml.safe_load((REPO_ROOT / "compose/monitoring.yml").read_text())
    prometheus = override["services"]["prometheus"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]


@pytest.mark.integration
def test_promtool_accepts_the_prometheus_config():
    promtool = binary("promtool", "FS_PROMTOOL")
    if promtool is None:
        if os.environ.get("FS_REQUIRE_PROMETHEUS"):
            pytest.fail("FS_REQUIRE_PROMETHEUS is set but there is no promtool")
        pytest.skip("no promtool here (run .ci/prometheus.sh)")
    check = subprocess.run([str(promtool), "check", "config", str(PROMETHEUS_CONFIG)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def compose_or_skip(version: str) -> list[str]:
    command, required_by, how = COMPOSE_IMPLEMENTATIONS[version]
    if not compose_works(command):
        if os.environ.get(required_by):
            pytest.fail(f"{required_by} is set but `{' '.join(command)} version` fails ({how})")
        pytest.skip(f"compose {version} is not installed here ({how})")
    return command


@pytest.mark.integration
@pytest.mark.parametrize("version", list(COMPOSE_IMPLEMENTATIONS))
def test_both_compose_versions_accept_the_monitoring_override(version):
    command = compose_or_skip(version)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PROMETHEUS_", "COMPOSE_"))}
    result = subprocess.run([*command, *MONITORING, "config"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    merged = yaml.safe_load(result.stdout)
    prometheus = merged["services"]["prometheus"]
    assert set(merged["services"]) == {"server", "locust-master", "locust-worker", "prometheus"}
    [port] = prometheus["ports"]
    published = port if isinstance(port, str) else \
        f"{port['host_ip']}:{port['published']}:{port['target']}"
    assert published.split("/")[0] == "127.0.0.1:9090:9090"      # not on every interface
    sources = [v if isinstance(v, str) else f"{v['source']}:{v['target']}"
               for v in prometheus["volumes"]]
    assert any(source.startswith(f"{PROMETHEUS_CONFIG}:/etc/prometheus/prometheus.yml")
               for source in sources), sources


# --------------------------------------------------------------------------
# the override run for real, with Prometheus built offline from Debian's binary

PROMETHEUS_IMAGE = "fileserver-lab/prometheus:offline-test"
OFFLINE_DOCKERFILE = """\
# Debian's prometheus in the server image (a Debian base with glibc), laid out as the
# registry's prom/prometheus image is: /prometheus for data, uid 65534
FROM fileserver-lab/server:latest
USER root
COPY prometheus /bin/prometheus
RUN install -d -o 65534 -g 65534 /prometheus /etc/prometheus
USER 65534:65534
HEALTHCHECK NONE
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
"""


@pytest.fixture(scope="module")
def prometheus_image(built, tmp_path_factory):  # noqa: F811
    executable = binary("prometheus", "FS_PROMETHEUS")
    if executable is None:
        if os.environ.get("FS_REQUIRE_PROMETHEUS"):
            pytest.fail("FS_REQUIRE_PROMETHEUS is set but there is no prometheus")
        pytest.skip("no prometheus binary to build the image from (run .ci/prometheus.sh)")
    context = tmp_path_factory.mktemp("prometheus-image")
    shutil.copy2(executable, context / "prometheus")
    (context / "Dockerfile").write_text(OFFLINE_DOCKERFILE)
    build = subprocess.run(["docker", "build", "-q", "-t", PROMETHEUS_IMAGE, str(context)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    return PROMETHEUS_IMAGE


@pytest.mark.integration
@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("version", list(COMPOSE_IMPLEMENTATIONS))
def test_the_monitoring_override_scrapes_the_server(prometheus_image, version):
    command = compose_or_skip(version)
    project = f"fslabmon{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = dict(os.environ, PROMETHEUS_IMAGE=prometheus_image, PROMETHEUS_PORT=str(port),
               FS_MODE="process", FS_POOL="3")
    base = [*command, "-p", project, *MONITORING]

    def compose(*args, timeout=300, check=True):
        result = subprocess.run([*base, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                                text=True, timeout=timeout)
        assert not check or result.returncode == 0, (args, result.stdout[-3000:],
                                                     result.stderr[-3000:])
        return result

    try:
        compose("up", "-d", "server", "prometheus")
        url = f"http://127.0.0.1:{port}"
        ready = wait_for_http(url + "/-/ready")
        assert ready, compose("logs", "--no-color", "prometheus", check=False).stdout[-3000:]
        # the scrape interval is 5 s: the first scrape comes within that
        up = wait_for(url, 'up{job="fileserver"}', lambda r: bool(r) and r[0]["value"][1] == "1",
                      timeout=60)
        assert up and up[0]["metric"]["instance"] == f"server:{wire.DEFAULT_METRICS_PORT}", up
        info = instant(url, "fileserver_info")
        assert [(i["metric"]["mode"], i["metric"]["pool"]) for i in info] == [("process", "3")]
        workers = instant(url, "fileserver_worker_cpu_seconds_total")
        assert len(workers) == 3
    finally:
        compose("down", "-v", "--remove-orphans", timeout=180, check=False)
    leftovers = subprocess.run(["docker", "ps", "-aq", "--filter",
                                f"label=com.docker.compose.project={project}"],
                               capture_output=True, text=True).stdout.strip()
    assert leftovers == ""


def wait_for_http(url: str, timeout: float = 60.0) -> bool:
    return wait_until(lambda: http_status(url, timeout=2) == 200, timeout, interval=0.5)
