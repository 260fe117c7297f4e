"""The server over the run: a bounded history of its /stats, and the page that charts it.

The master's Server-tab poller (``locustfile.py``) adds one sample per poll.
``add_routes`` serves on the Locust web app:

- ``/server-history/``: the chart page (``static/server-history.html``), plain
  SVG drawn by our own script, no library and nothing fetched from elsewhere;
- ``/server-history/data?after=N``: the samples numbered above N as JSON, so the
  page fetches only what is new;
- ``/server-history/server-tab.js``: a script the Locust UI's index page loads
  (``inject_tab_script``) that shows the page in a frame under the Server table.

No locust or gevent import here, so tests load this module in-process.
"""

from __future__ import annotations

import collections
from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
HISTORY_SAMPLES = 600          # samples kept; older ones are dropped
PREFIX = "/server-history"
TAB_SCRIPT = "server-tab.js"
STATIC_FILES = ("server-history.js", TAB_SCRIPT)


class ServerHistory:
    """The last ``capacity`` samples of the server's /stats, numbered from 1.

    A sample holds what the charts draw: requests/s and errors/s between this
    poll and the previous one (None for the first poll and after a server
    restart), busy workers, open connections, CPU %, memory and CPU % per worker.
    """

    def __init__(self, interval_seconds: float, capacity: int = HISTORY_SAMPLES):
        if capacity < 1:
            raise ValueError(f"history capacity must be at least 1, got {capacity}")
        if interval_seconds <= 0:
            raise ValueError(f"poll interval must be positive, got {interval_seconds}")
        self.interval_seconds = interval_seconds
        self.capacity = capacity
        self.samples: collections.deque[dict] = collections.deque(maxlen=capacity)
        self.markers: collections.deque[dict] = collections.deque(maxlen=capacity)
        self.count = 0                     # samples ever added: the newest one's number
        self.server: dict = {}             # mode, pool, interpreter of the latest poll
        self.error: str | None = None      # why the latest poll failed, if it did
        self._previous: tuple[float, int, int] | None = None   # time, requests, errors

    def add(self, stats: dict, now: float) -> dict:
        """Add a sample from one /stats reply taken at ``now`` (seconds since the epoch)."""
        try:
            requests = int(stats["totals"]["requests"])
            errors = int(stats["totals"].get("errors", 0))
            busy = stats["workers_busy"]
            workers = stats["workers"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"/stats reply lacks a field the charts need: {exc!r}") from None
        rps = eps = None
        if self._previous is not None:
            then, requests_before, errors_before = self._previous
            if now > then and requests >= requests_before and errors >= errors_before:
                rps = round((requests - requests_before) / (now - then), 2)
                eps = round((errors - errors_before) / (now - then), 2)
        self._previous = (now, requests, errors)
        memory = stats.get("memory") or {}
        self.count += 1
        sample = {
            "n": self.count,
            "t": round(now, 3),
            "rps": rps,
            "eps": eps,
            "busy": busy,
            "pool": stats.get("pool"),
            "open": stats.get("open_connections"),
            "cpu": (stats.get("cpu") or {}).get("percent"),
            "rss_mb": _megabytes(memory.get("rss_bytes_total")),
            "pss_mb": _megabytes(memory.get("pss_bytes_total")),
            "workers": {w["worker"]: w.get("cpu_percent") for w in workers},
        }
        self.samples.append(sample)
        self.server = {key: stats.get(key) for key in ("mode", "pool", "address", "interpreter")}
        self.error = None
        return sample

    def fail(self, reason: str) -> None:
        """Record that a poll failed; the next sample starts a new rate."""
        self.error = reason
        self._previous = None

    def mark(self, label: str, now: float) -> None:
        """A moment drawn across the charts, e.g. a test start or stop."""
        self.markers.append({"t": round(now, 3), "label": label})

    def since(self, after: int) -> dict:
        """The samples numbered above ``after`` (all kept samples if ``after`` is
        ahead of ``count``, e.g. a page that outlived a restarted master)."""
        if after < 0:
            raise ValueError(f"after must be 0 or more, got {after}")
        if after > self.count:
            after = 0
        first_kept = self.samples[0]["t"] if self.samples else None
        return {
            "count": self.count,
            "capacity": self.capacity,
            "interval_seconds": self.interval_seconds,
            "server": self.server,
            "error": self.error,
            "markers": [m for m in self.markers if first_kept is not None and m["t"] >= first_kept],
            "samples": [s for s in self.samples if s["n"] > after],
        }


def _megabytes(value) -> float | None:
    return None if value is None else round(value / 1e6, 1)


def add_routes(app, history: ServerHistory, url_prefix: str | None = None,
               protect=lambda view: view) -> None:
    """Serve the chart page, its scripts and the history on a Flask ``app``.

    ``protect`` wraps each view (the Locust UI's ``auth_required_if_enabled``)."""
    from flask import Blueprint, jsonify, request, send_from_directory

    blueprint = Blueprint("server_history", __name__, url_prefix=(url_prefix or "") + PREFIX)

    @blueprint.route("/")
    @protect
    def page():
        return send_from_directory(STATIC_DIR, "server-history.html")

    @blueprint.route("/<any(" + ", ".join(f'"{f}"' for f in STATIC_FILES) + "):name>")
    @protect
    def script(name):
        return send_from_directory(STATIC_DIR, name)

    @blueprint.route("/data")
    @protect
    def data():
        text = request.args.get("after", "0")
        try:
            after = int(text)
            if after < 0:
                raise ValueError
        except ValueError:
            return jsonify(error=f"after must be a whole number, 0 or more; got {text!r}"), 400
        response = jsonify(history.since(after))
        response.headers["Cache-Control"] = "no-store"
        return response

    app.register_blueprint(blueprint)


def inject_tab_script(response):
    """Make the Locust UI's index page load ``server-tab.js`` (for an after_request hook
    on the index; the script's address is relative to the page's)."""
    marker = b"</body>"
    if response.mimetype != "text/html" or response.direct_passthrough:
        return response
    body = response.get_data()
    if marker not in body or TAB_SCRIPT.encode() in body:
        return response
    src = f".{PREFIX}/{TAB_SCRIPT}"
    tag = f'<script src="{src}" defer></script>\n'.encode()
    response.set_data(body.replace(marker, tag + marker, 1))
    return response
