"""Locust users that speak the course file protocol through our own client.

Run from the repository root (the project installed, e.g. ``make install``):

    locust -f locust/locustfile.py --host tcp://127.0.0.1:6665

Each LIST, GET, UPLOAD or DELETE is one request event: request_type is the
command, the name groups by command and size (``GET 1MB``, ``UPLOAD 100KB``),
the response time is in ms and the length is the bytes received.  So Locust's
charts, CSV and HTML report show the commands as it shows HTTP endpoints.

Task weights, file sizes and the wait time are Locust options of our own
(``--get-weight``, ``--file-sizes``, ``--wait``, ...), so they appear in the
web UI's start form and can be set from the command line, ``LOCUST_*``
variables or a config file.  The "Server" tab of the web UI shows the
server's live ``/stats`` and, under the table, charts of the server over the
run (``server_history.py``).

This folder is deliberately not a package, and no module here is named
``locust``, ``client``, ``server`` or ``wire``.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import time
import urllib.error
import urllib.request
import uuid

import gevent
from locust import User, between, constant, events, task
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

from client import DEFAULT_METRICS_PORT, FileClient, FileClientError, parse_address
from client.workload import DEFAULT_WEIGHTS, parse_size, size_label
from server_history import ServerHistory, add_routes, inject_tab_script

log = logging.getLogger("locustfile")

COMMANDS = tuple(command.upper() for command in DEFAULT_WEIGHTS)
SEED_PREFIX = "seed-"
STATS_POLL_SECONDS = 2.0
# Upload names must not collide across Locust processes; a pid would (every
# worker container is PID 1).
PROCESS_TAG = uuid.uuid4().hex[:8]


# ---------------------------------------------------------------------------
# options

@events.init_command_line_parser.add_listener
def add_options(parser):
    def option(flag: str, **kwargs):
        # Locust maps a LOCUST_* variable only to options that name one
        env = "LOCUST_" + flag.lstrip("-").replace("-", "_").upper()
        parser.add_argument(flag, env_var=env, **kwargs)

    for command, weight in DEFAULT_WEIGHTS.items():
        option(f"--{command}-weight", type=int, default=weight,
               help=f"relative weight of {command.upper()} requests (0 disables)")
    option("--file-sizes", default="1KB,100KB,1MB",
           help="sizes of the files seeded for GET, comma-separated (B, KB, MB)")
    option("--upload-size", default="100KB",
           help="size of each UPLOAD")
    option("--wait", default="0.5-1.5",
           help="seconds between a user's requests: 'MIN-MAX' or a constant")
    option("--request-timeout", type=float, default=30.0,
           help="socket timeout of each request, in seconds")
    option("--server-stats-url", default="",
           help=f"the server's /stats URL (default: http://HOST:{DEFAULT_METRICS_PORT}/stats)")
    option("--max-fail-ratio", type=float, default=0.0,
           help="headless exit status is 1 when the failure ratio exceeds this")
    option("--worker-exit-delay", type=float, default=0.0,
           help="seconds a worker waits before exiting when the master quits, so "
                "the master exits first (compose --exit-code-from)")


def parse_wait(text: str):
    low, _, high = text.partition("-")
    try:
        if high:
            return between(float(low), float(high))
        return constant(float(low))
    except ValueError:
        raise ValueError(f"bad --wait {text!r}; use 'MIN-MAX' or a number of seconds") \
            from None


_payloads: dict[int, bytes] = {}


def payload(size: int) -> bytes:
    """Deterministic content of a size, generated once per process."""
    if size not in _payloads:
        _payloads[size] = random.Random(size).randbytes(size)
    return _payloads[size]


class _Discard:
    """A file object that drops what GET streams into it."""

    def write(self, data) -> int:
        return len(data)


# ---------------------------------------------------------------------------
# the users

class FileServerUser(User):
    """Base user: a FileClient whose every call fires one request event."""

    abstract = True
    _user_numbers = itertools.count(1)

    def __init__(self, environment):
        super().__init__(environment)
        try:
            self.address = parse_address(self.host or "")
        except ValueError as exc:
            raise ValueError(f"--host {self.host!r}: {exc}; use tcp://HOST:PORT") from None
        options = environment.parsed_options
        self.timeout = getattr(options, "request_timeout", 30.0)
        self.client = FileClient(*self.address, timeout=self.timeout)
        self.user_tag = f"u{PROCESS_TAG}-{next(self._user_numbers)}"
        self.uploads: list[str] = []
        self._upload_numbers = itertools.count(1)

    def call(self, request_type: str, name: str, operation):
        """Run one client call and report it to Locust as one request."""
        started = time.perf_counter()
        exception, result = None, None
        try:
            result = operation()
        except FileClientError as exc:
            exception = exc
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.environment.events.request.fire(
            request_type=request_type, name=name, response_time=elapsed_ms,
            response_length=self.client.last_reply_bytes, response=result,
            context={}, exception=exception, start_time=started)
        return exception is None


class FileServerClientUser(FileServerUser):
    """LIST, GET, UPLOAD and DELETE, mixed by the --*-weight options."""

    wait_time = between(0.5, 1.5)      # replaced by --wait in on_start

    def on_start(self):
        options = self.environment.parsed_options
        self.weights = [max(getattr(options, f"{c.lower()}_weight", 1), 0) for c in COMMANDS]
        if not any(self.weights):
            raise StopUser()
        self.file_sizes = [parse_size(s) for s in options.file_sizes.split(",") if s.strip()]
        self.upload_size = parse_size(options.upload_size)
        wait = parse_wait(options.wait)
        self.wait_time = lambda: wait(self)

    @task
    def one_request(self):
        command = random.choices(COMMANDS, weights=self.weights)[0]
        getattr(self, f"do_{command.lower()}")()

    def do_list(self):
        self.call("LIST", "LIST", self.client.list)

    def do_get(self):
        if not self.file_sizes:
            return self.do_list()
        size = random.choice(self.file_sizes)
        label = size_label(size)
        self.call("GET", f"GET {label}",
                  lambda: self.client.get(f"{SEED_PREFIX}{label}.bin", dest=_Discard()))

    def do_upload(self):
        name = f"{self.user_tag}-{next(self._upload_numbers)}.bin"
        content = payload(self.upload_size)
        if self.call("UPLOAD", f"UPLOAD {size_label(self.upload_size)}",
                     lambda: self.client.upload(name, content)):
            self.uploads.append(name)

    def do_delete(self):
        if not self.uploads:
            self.do_upload()
        if self.uploads:
            name = self.uploads.pop(0)
            self.call("DELETE", "DELETE", lambda: self.client.delete(name))

    def on_stop(self):
        self.client.close()


# ---------------------------------------------------------------------------
# seeding, exit status

@events.test_start.add_listener
def check_host_and_seed_files(environment, **_):
    """Refuse a bad --host plainly; upload the files GET reads (once per load process)."""
    runner = environment.runner
    options = environment.parsed_options
    try:
        host, port = parse_address(environment.host or "")
        sizes = [parse_size(s) for s in options.file_sizes.split(",") if s.strip()]
        parse_size(options.upload_size)
        parse_wait(options.wait)
    except ValueError as exc:
        log.error("cannot start the test: %s (--host takes tcp://HOST:PORT)", exc)
        environment.process_exit_code = 2
        if environment.web_ui:
            gevent.spawn(runner.stop)      # keep the UI up so the form can be fixed
        else:
            gevent.spawn(runner.quit)
        return
    if isinstance(runner, MasterRunner):
        return
    client = FileClient(host, port, timeout=options.request_timeout)
    for size in sizes:
        name = f"{SEED_PREFIX}{size_label(size)}.bin"
        try:
            client.upload(name, payload(size))
        except FileClientError as exc:
            log.error("seeding %s on %s:%d failed: %s", name, host, port, exc)


@events.init.add_listener
def remember_worker_exit_delay(environment, **_):
    # read now: the master's spawn messages later overwrite a worker's parsed_options
    environment.worker_exit_delay = getattr(environment.parsed_options, "worker_exit_delay", 0.0)


@events.quitting.add_listener
def exit_status_from_fail_ratio(environment, **_):
    if isinstance(environment.runner, WorkerRunner):
        delay = getattr(environment, "worker_exit_delay", 0.0)
        if delay > 0:
            gevent.sleep(delay)
        return
    threshold = getattr(environment.parsed_options, "max_fail_ratio", 0.0)
    ratio = environment.stats.total.fail_ratio
    if threshold and ratio > threshold:
        log.error("failure ratio %.3f is over --max-fail-ratio %.3f", ratio, threshold)
        environment.process_exit_code = 1
    elif threshold and environment.process_exit_code is None:
        environment.process_exit_code = 0


# ---------------------------------------------------------------------------
# the "Server" tab

class ServerStatsPoller:
    """Polls the server's /stats from the master and turns it into table rows."""

    COLUMNS = [
        {"key": "worker", "title": "Worker"},
        {"key": "state", "title": "State"},
        {"key": "requests", "title": "Requests"},
        {"key": "cpu", "title": "CPU %"},
        {"key": "rss", "title": "RSS MB"},
        {"key": "busy", "title": "Busy s"},
        {"key": "client", "title": "Client now"},
    ]

    def __init__(self, environment, history: ServerHistory | None = None):
        self.environment = environment
        self.history = history
        self.rows: list[dict] = [self._message_row("waiting for the first poll", "")]
        self.last: dict | None = None

    def url(self) -> str:
        options = self.environment.parsed_options
        explicit = getattr(options, "server_stats_url", "") if options else ""
        if explicit:
            return explicit
        host, _ = parse_address(self.environment.host or "")
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{DEFAULT_METRICS_PORT}/stats"

    def poll_forever(self):
        while True:
            self.poll_once()
            gevent.sleep(STATS_POLL_SECONDS)

    def poll_once(self):
        try:
            url = self.url()
        except ValueError as exc:
            self.rows = [self._message_row("server stats unavailable", f"bad host: {exc}")]
            self._history_failed(f"bad host: {exc}")
            return
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                self.last = json.loads(response.read())
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            self.last = None
            self.rows = [self._message_row("server stats unreachable", f"{url}: {reason}")]
            self._history_failed(f"server stats unreachable: {url}: {reason}")
            return
        self.rows = self.to_rows(self.last)
        if self.history is not None:
            try:
                self.history.add(self.last, time.time())
            except ValueError as exc:
                self.history.fail(f"{url}: {exc}")

    def _history_failed(self, reason: str):
        if self.history is not None:
            self.history.fail(reason)

    @staticmethod
    def _message_row(title: str, detail: str) -> dict:
        return {"worker": title, "state": detail, "requests": "", "cpu": "", "rss": "",
                "busy": "", "client": ""}

    @staticmethod
    def to_rows(stats: dict) -> list[dict]:
        workers = stats.get("workers", [])
        cpu = [w["cpu_percent"] for w in workers if w.get("cpu_percent") is not None]
        rss = stats.get("memory", {}).get("rss_bytes_total") or 0
        rows = [{
            "worker": f"server: {stats['mode']} pool of {stats['pool']}",
            "state": f"{stats['workers_busy']} busy / {stats['workers_idle']} idle",
            "requests": stats["totals"]["requests"],
            "cpu": round(sum(cpu), 1),
            "rss": round(rss / 1e6, 1),
            "busy": f"uptime {stats['uptime_seconds']:.0f} s",
            "client": f"{stats['requests_per_second']:.1f} req/s",
        }]
        for w in workers:
            client = w.get("client") or {}
            rows.append({
                "worker": w["worker"],
                "state": w["state"],
                "requests": w["requests"],
                "cpu": "" if w.get("cpu_percent") is None else w["cpu_percent"],
                "rss": "" if w.get("rss_bytes") is None else round(w["rss_bytes"] / 1e6, 1),
                "busy": w["busy_seconds"],
                "client": (f"{client['address']} {client['kb_per_second']:.0f} KB/s"
                           if client else ""),
            })
        return rows


@events.init.add_listener
def add_server_tab(environment, **_):
    if not environment.web_ui:
        return
    history = ServerHistory(STATS_POLL_SECONDS)
    poller = ServerStatsPoller(environment, history)
    environment.server_stats_poller = poller
    web_ui = environment.web_ui
    base_path = getattr(environment.parsed_options, "web_base_path", None) or ""
    add_routes(web_ui.app, history, url_prefix=base_path, protect=web_ui.auth_required_if_enabled)
    environment.events.test_start.add_listener(
        lambda **_: history.mark("test start", time.time()))
    environment.events.test_stop.add_listener(
        lambda **_: history.mark("test stop", time.time()))
    web_ui.template_args.update(
        extended_tabs=[{"title": "Server", "key": "server"}],
        extended_tables=[{"key": "server", "structure": ServerStatsPoller.COLUMNS}])

    @web_ui.app.after_request
    def add_server_stats(response):
        from flask import request
        if request.path == base_path + "/stats/requests" and response.is_json:
            body = response.get_json()
            body["extended_stats"] = [{"key": "server", "data": poller.rows}]
            response.set_data(json.dumps(body))
        elif request.path == base_path + "/":
            inject_tab_script(response)
        return response

    gevent.spawn(poller.poll_forever)
