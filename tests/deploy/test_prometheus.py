"""A real Prometheus (Debian's, .ci/prometheus.sh) scraping a real server in each mode.

Per mode: a server (pool 5) and a Prometheus on 127.0.0.1 scraping its metrics port
every second; a short bounded load through client.FileClient (4 threads, 400 requests
over about 3 s, one of them a GET of a missing file); then Prometheus's HTTP API must
show the request totals rising during the load to exactly what was sent, the workers
by state, the per-worker CPU adding up to the server's, and every query of the Grafana
dashboard answering.  `promtool check metrics` must accept /metrics.  Skips without
the binaries, fails without them when FS_REQUIRE_PROMETHEUS is set (.ci/run).
"""

import collections
import re
import subprocess
import threading
import time
from types import SimpleNamespace

import psutil
import pytest

from client import FileClient, ServerError
from server.config import MODES
from tests.deploy.prometheus_support import (PrometheusProcess, api, instant, require, scalar,
                                             wait_for)
from tests.deploy.test_monitoring import DASHBOARD, dashboard_queries
from tests.support import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POOL = 5
THREADS = 4
ROUNDS = 25                  # x 4 requests x 4 threads = 400 requests
ROUND_PAUSE = 0.12           # so the load spans about 3 s: several 1-s scrapes
UPLOAD = bytes(range(256)) * 128          # 32 KiB
SHARED = "shared.bin"


def load(port: int) -> collections.Counter:
    """The bounded load; returns how many requests it sent by (command, status)."""
    sent = collections.Counter()
    lock = threading.Lock()

    def user(index: int) -> None:
        client = FileClient("127.0.0.1", port, timeout=30)
        mine = collections.Counter()
        for _ in range(ROUNDS):
            client.list()
            client.upload(f"user-{index}.bin", UPLOAD)
            client.get(f"user-{index}.bin")
            client.get(SHARED)
            mine.update({("LIST", "OK"): 1, ("UPLOAD", "OK"): 1, ("GET", "OK"): 2})
            time.sleep(ROUND_PAUSE)
        with lock:
            sent.update(mine)

    FileClient("127.0.0.1", port).upload(SHARED, UPLOAD)
    sent[("UPLOAD", "OK")] += 1
    threads = [threading.Thread(target=user, args=(i,), name=f"load-{i}") for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    with pytest.raises(ServerError):
        FileClient("127.0.0.1", port).get("missing.bin")
    sent[("GET", "ERROR")] += 1
    return sent


def total_is(value: float):
    return lambda result: bool(result) and float(result[0]["value"][1]) == value


@pytest.fixture(scope="module", params=MODES)
def scraped(request, tmp_path_factory):
    """A server of ``mode`` scraped by Prometheus through a load: what was sent, when."""
    executable = require("prometheus", "FS_PROMETHEUS")
    mode = request.param
    folder = tmp_path_factory.mktemp(f"prometheus-{mode}")
    server = ServerProcess(folder / "files", mode=mode, pool=POOL, log_level="WARNING")
    prometheus = None
    try:
        prometheus = PrometheusProcess(executable, folder,
                                       [f"127.0.0.1:{server.metrics_port}"]).start()
        base = prometheus.url("")
        up = wait_for(base, 'up{job="fileserver"}', total_is(1.0))
        assert total_is(1.0)(up), (up, prometheus.log())
        assert wait_for(base, "sum(fileserver_requests_total)", total_is(0.0))
        before_cpu = {"total": scalar(base, "fileserver_cpu_seconds_total"),
                      "workers": scalar(base, "sum(fileserver_worker_cpu_seconds_total)")}
        started = time.time()
        sent = load(server.port)
        finished = time.time()
        total = sum(sent.values())
        last = wait_for(base, "sum(fileserver_requests_total)", total_is(total))
        assert total_is(total)(last), (last, total)
        time.sleep(1.5)                       # one more scrape, with the workers idle
        yield SimpleNamespace(mode=mode, server=server, prometheus=prometheus, base=base,
                              sent=sent, total=total, started=started, finished=finished,
                              before_cpu=before_cpu)
    finally:
        if prometheus is not None:
            assert prometheus.stop() == 0, prometheus.log()
        assert server.stop() == 0, server.log()
        assert server.leftover_processes() == []


def series(result: list[dict], label: str) -> dict[str, float]:
    return {item["metric"][label]: float(item["value"][1]) for item in result}


def test_request_totals_rise_during_the_load_to_what_was_sent(scraped):
    base = scraped.base
    window = {"start": f"{scraped.started:.3f}", "end": f"{scraped.finished:.3f}", "step": "0.5"}
    [during] = api(f"{base}/api/v1/query_range", query="sum(fileserver_requests_total)",
                   **window)["result"]
    values = [float(value) for _, value in during["values"]]
    assert values == sorted(values)
    rising = sorted(set(v for v in values if 0 < v < scraped.total))
    assert len(rising) >= 2, values               # seen part-way, more than once
    by_kind = {(item["metric"]["command"], item["metric"]["status"]): float(item["value"][1])
               for item in instant(base, "fileserver_requests_total")}
    assert {kind: count for kind, count in by_kind.items() if count} == \
        {kind: float(count) for kind, count in scraped.sent.items()}
    # one connection per request (FileClient's default), the uploads' base64 in
    assert scalar(base, "fileserver_connections_total") == scraped.total
    uploads = scraped.sent[("UPLOAD", "OK")]
    assert scalar(base, "fileserver_received_bytes_total") > uploads * len(UPLOAD) * 4 / 3
    assert scalar(base, "fileserver_sent_bytes_total") > \
        scraped.sent[("GET", "OK")] * len(UPLOAD) * 4 / 3
    rate = instant(base, "sum(rate(fileserver_requests_total[2s]))", at=scraped.finished - 0.5)
    assert float(rate[0]["value"][1]) > 20


def test_workers_by_state_add_up_to_the_pool(scraped):
    base = scraped.base
    assert set(series(instant(base, "fileserver_workers"), "state")) == {"busy", "idle"}
    [pool] = api(f"{base}/api/v1/query_range", query="sum(fileserver_workers)",
                 start=f"{scraped.started:.3f}", end=f"{scraped.finished:.3f}",
                 step="0.5")["result"]
    assert {float(value) for _, value in pool["values"]} == {POOL}
    assert scalar(base, "max_over_time(fileserver_workers{state=\"busy\"}[1m])") <= POOL
    info = instant(base, "fileserver_info")
    assert [(i["metric"]["mode"], i["metric"]["pool"], i["value"][1]) for i in info] == \
        [(scraped.mode, str(POOL), "1")]


def test_per_worker_cpu_adds_up_to_the_server_cpu(scraped):
    base = scraped.base
    workers = series(instant(base, "fileserver_worker_cpu_seconds_total"), "worker")
    assert sorted(workers) == [f"Worker-{i}" for i in range(1, POOL + 1)]
    total = scalar(base, "fileserver_cpu_seconds_total")
    summed = scalar(base, "sum(fileserver_worker_cpu_seconds_total)")
    assert summed == pytest.approx(sum(workers.values()))
    assert summed <= total                  # the rest is the supervisor (and acceptor thread)
    spent_total = total - scraped.before_cpu["total"]
    spent_workers = summed - scraped.before_cpu["workers"]
    assert 0 < spent_workers <= spent_total + 0.02, (spent_workers, spent_total)
    if scraped.mode == "process":
        # the workers are processes of their own: they did the work, and the supervisor
        # (accepting nothing, answering one scrape a second) little of it
        assert spent_workers == pytest.approx(spent_total, rel=0.25), (spent_workers,
                                                                       spent_total)
        # and each worker's series is that process's CPU time, idle since the last scrape
        measured = 0.0
        for pid in scraped.server.worker_pids():
            times = psutil.Process(pid).cpu_times()
            measured += times.user + times.system
        assert summed == pytest.approx(measured, abs=0.05)


def test_promtool_accepts_the_metrics(scraped):
    promtool = require("promtool", "FS_PROMTOOL")
    text = scraped.server.http_text("/metrics")
    check = subprocess.run([str(promtool), "check", "metrics"], input=text, text=True,
                           capture_output=True, timeout=60)
    assert (check.returncode, check.stdout + check.stderr) == (0, ""), text


# The dashboard's variables as Grafana would fill them in
GRAFANA_VARIABLES = {"$__rate_interval": "2s", "$instance": ".*"}
# series a server of that mode does not export (threads share their process's memory)
NOT_IN_MODE = {"thread": {"fileserver_worker_resident_memory_bytes"}, "process": set()}


def test_every_dashboard_query_answers(scraped):
    checked = 0
    for title, expr in dashboard_queries(DASHBOARD):
        query = expr
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        assert "$" not in query, (title, query)
        result = instant(scraped.base, query, at=scraped.finished - 0.5)
        names = set(re.findall(r"fileserver_\w+", expr))
        if names & NOT_IN_MODE[scraped.mode]:
            assert result == [], (title, query)
        else:
            assert result, (title, query)
            checked += 1
    assert checked >= 12
    by_command = series(instant(scraped.base, "sum by (command) (rate(fileserver_requests_total"
                                "[2s]))", at=scraped.finished - 0.5), "command")
    assert by_command["GET"] > by_command["LIST"] > 0
