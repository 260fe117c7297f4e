"""HTTP endpoint on the metrics port: /metrics, /stats, /healthz, /readyz.

It is served from the supervisor's own loop (``handle_ready()`` when the
socket is readable), not from a thread: in process mode the supervisor
forks replacement workers, and forking a process that runs other threads
can hand a child a lock held forever.

The price: while it reads a request or writes a reply, the supervisor's
loop does nothing else (no worker is replaced, no signal is acted on, no
stats are taken).  Each socket read or write gives up after the
handler's ``timeout`` (2 s), but a client that keeps sending slowly (a
byte now and then) holds the loop for as long as it keeps doing so.
"""

from __future__ import annotations

import json
import logging
import socket
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

__all__ = ["MetricsServer"]

log = logging.getLogger("server.metrics")


class _SnapshotCollector:
    """Prometheus metrics built from one /stats snapshot per scrape."""

    def __init__(self, snapshot: Callable[[], dict]):
        self.snapshot = snapshot

    def collect(self):
        snap = self.snapshot()
        totals = snap["totals"]
        info = GaugeMetricFamily("fileserver_info", "Concurrency model and pool size",
                                 labels=["mode", "pool"])
        info.add_metric([snap["mode"], str(snap["pool"])], 1)
        yield info
        requests = CounterMetricFamily("fileserver_requests", "Requests answered",
                                       labels=["command", "status"])
        for command, by_status in totals["by_command"].items():
            for status, count in by_status.items():
                requests.add_metric([command, status], count)
        yield requests
        yield CounterMetricFamily("fileserver_connections", "Connections accepted",
                                  value=totals["connections"])
        yield CounterMetricFamily("fileserver_received_bytes", "Bytes received",
                                  value=totals["bytes_in"])
        yield CounterMetricFamily("fileserver_sent_bytes", "Bytes sent",
                                  value=totals["bytes_out"])
        workers = GaugeMetricFamily("fileserver_workers", "Workers by state",
                                    labels=["state"])
        workers.add_metric(["busy"], snap["workers_busy"])
        workers.add_metric(["idle"], snap["workers_idle"])
        yield workers
        yield GaugeMetricFamily("fileserver_requests_per_second",
                                f"Requests/s over the last {snap['rate_window_seconds']:g} s",
                                value=snap["requests_per_second"])
        yield GaugeMetricFamily("fileserver_uptime_seconds", "Seconds since start",
                                value=snap["uptime_seconds"])
        yield CounterMetricFamily("fileserver_cpu_seconds",
                                  "CPU seconds of all live server processes",
                                  value=snap["cpu"]["seconds_total"])
        if snap["memory"]["pss_bytes_total"] is not None:
            yield GaugeMetricFamily("fileserver_proportional_memory_bytes",
                                    "PSS of all server processes (shared pages counted once)",
                                    value=snap["memory"]["pss_bytes_total"])
        yield GaugeMetricFamily("fileserver_resident_memory_bytes",
                                "RSS of all server processes",
                                value=snap["memory"]["rss_bytes_total"] or 0)
        yield from self._per_worker(snap["workers"])

    @staticmethod
    def _per_worker(rows: list[dict]):
        families = {
            "requests": CounterMetricFamily("fileserver_worker_requests",
                                            "Requests per worker", labels=["worker"]),
            "busy_seconds": CounterMetricFamily("fileserver_worker_busy_seconds",
                                                "Seconds spent serving", labels=["worker"]),
            "cpu_seconds": CounterMetricFamily("fileserver_worker_cpu_seconds",
                                               "CPU seconds per worker", labels=["worker"]),
            "rss_bytes": GaugeMetricFamily("fileserver_worker_resident_memory_bytes",
                                           "RSS per worker process", labels=["worker"]),
        }
        for row in rows:
            for key, family in families.items():
                if row.get(key) is not None:
                    family.add_metric([row["worker"]], row[key])
        yield from families.values()


class MetricsServer:
    def __init__(self, host: str, port: int, snapshot: Callable[[], dict],
                 readiness: Callable[[], dict]):
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_SnapshotCollector(snapshot))
        routes = {
            "/metrics": lambda: (200, "text/plain; version=0.0.4; charset=utf-8",
                                 generate_latest(registry)),
            "/stats": lambda: (200, "application/json", _json(snapshot())),
            "/healthz": lambda: (200, "application/json", _json({"status": "alive"})),
            "/readyz": lambda: _readiness_response(readiness()),
        }
        self.httpd = _HTTPServer((host, port), _make_handler(routes))
        self.port = self.httpd.server_address[1]

    def fileno(self) -> int:
        return self.httpd.fileno()

    def handle_ready(self) -> None:
        self.httpd.handle_request()

    def close(self) -> None:
        self.httpd.server_close()


class _HTTPServer(HTTPServer):
    timeout = 0   # handle_request() is called only when a connection is waiting

    def server_bind(self):
        if ":" in self.server_address[0]:
            self.address_family = socket.AF_INET6
            self.socket = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        HTTPServer.server_bind(self)

    def handle_error(self, request, client_address):
        log.exception("metrics request from %s failed", client_address)


def _json(document: dict) -> bytes:
    return json.dumps(document, indent=1).encode()


def _readiness_response(state: dict):
    return (200 if state["ready"] else 503), "application/json", _json(state)


def _make_handler(routes: dict):
    class Handler(BaseHTTPRequestHandler):
        # each socket read or write waits at most 2 s; a client that sends
        # slowly can still hold the supervisor's loop (see the module docstring)
        timeout = 2.0
        server_version = "fileserver-metrics"

        def do_GET(self):
            route = routes.get(self.path.split("?", 1)[0])
            if route is None:
                status, ctype, body = 404, "application/json", _json(
                    {"error": f"no such path; try {', '.join(routes)}"})
            else:
                status, ctype, body = route()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
