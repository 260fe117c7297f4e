"""A real Prometheus for the tests: Debian's binaries (.ci/prometheus.sh), a process of
ours on 127.0.0.1 (server.launcher.ChildServer), and its HTTP API.

Where the binaries are: FS_PROMETHEUS and FS_PROMTOOL (.ci/run exports them), else the
folder .ci/prometheus.sh unpacks into, else PATH.  Without them the tests skip, or fail
when FS_REQUIRE_PROMETHEUS is set (as in CI).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from server.launcher import HOST, ChildServer, http_status
from tests.support import REPO_ROOT

CACHE_BIN = REPO_ROOT / ".cache/prometheus/root/usr/bin"
HOW = "run .ci/prometheus.sh (Debian's package, unpacked into .cache/prometheus)"


def binary(name: str, variable: str) -> Path | None:
    """A Prometheus binary: ``$variable``, the cache of .ci/prometheus.sh, or PATH."""
    for candidate in (os.environ.get(variable), CACHE_BIN / name, shutil.which(name)):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def require(name: str, variable: str) -> Path:
    """The binary, or a skip (a failure with FS_REQUIRE_PROMETHEUS set)."""
    path = binary(name, variable)
    if path is None:
        if os.environ.get("FS_REQUIRE_PROMETHEUS"):
            pytest.fail(f"FS_REQUIRE_PROMETHEUS is set but there is no {name} ({variable}); {HOW}")
        pytest.skip(f"no {name} here ({HOW}, or set {variable})")
    return path


def scrape_config(targets: list[str], interval: str = "1s") -> str:
    return json.dumps({            # JSON is YAML
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [{"job_name": "fileserver",
                            "static_configs": [{"targets": targets}]}],
    }, indent=1)


class PrometheusProcess(ChildServer):
    """``prometheus`` scraping ``targets`` every ``interval``, its API on a free port of
    127.0.0.1 and its storage in ``folder``."""

    label = "prometheus"

    def __init__(self, executable: Path, folder: Path, targets: list[str],
                 interval: str = "1s"):
        self.executable = executable
        self.folder = folder
        self.config = folder / "prometheus.yml"
        self.config.write_text(scrape_config(targets, interval))
        super().__init__(folder / "prometheus.log", ready_timeout=30.0)

    def command(self) -> list[str]:
        return [str(self.executable), f"--config.file={self.config}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                f"--web.listen-address={HOST}:{self.port}", "--log.level=warn"]

    def is_ready(self) -> bool:
        return http_status(self.url("/-/ready"), timeout=2) == 200

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def api(self, path: str, **params) -> list | dict:
        return api(self.url(path), **params)


def api(url: str, **params) -> list | dict:
    """The ``data`` of a Prometheus API answer; AssertionError on an error answer."""
    with urllib.request.urlopen(f"{url}?{urllib.parse.urlencode(params)}", timeout=10) as reply:
        body = json.loads(reply.read())
    assert body["status"] == "success", body
    return body["data"]


def instant(base: str, query: str, at: float | None = None) -> list[dict]:
    """The vector of an instant query: ``[{"metric": {...}, "value": [t, "v"]}, ...]``."""
    params = {"query": query} | ({"time": f"{at:.3f}"} if at is not None else {})
    data = api(f"{base}/api/v1/query", **params)
    assert data["resultType"] == "vector", data
    return data["result"]


def scalar(base: str, query: str, at: float | None = None) -> float | None:
    """The single value of an instant query (None when it returns nothing)."""
    result = instant(base, query, at)
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def wait_for(base: str, query: str, condition, timeout: float = 20.0):
    """Poll an instant query until ``condition(result)``; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = instant(base, query)
        if condition(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.2)
