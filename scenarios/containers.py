"""Per-container CPU and memory of a compose project, from the Docker engine's stats API.

The compose backend finds a scenario's containers by the compose project label
and follows each one's stats stream (the Docker SDK, ``docker`` on PyPI: about
one document a second) into ``containers.jsonl`` in the scenario folder, one
line per document::

    {"t": 3.05, "containers": {"server-1": {"service": "server", "cpu_pct": 48.2,
        "memory_bytes": 52428800, "memory_limit_bytes": 402653184}}}

``t`` is seconds since sampling started.  Containers are named
``<service>-<number>`` (compose's container number), so both compose versions
give the same names.  ``cpu_pct`` is % of one core over the second before the
document (None in a stream's first document); ``memory_bytes`` is what
``docker stats`` shows: usage less the inactive page cache.  The Locust
containers' CPU feeds the load-generator check (``scenarios.generator``), and
``container_table`` the report.

The SDK is imported only when an engine is needed: reading and reporting
samples works without it.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from pathlib import Path

from scenarios.sampler import read_records

CONTAINERS_FILE = "containers.jsonl"
FIND_SECONDS = 1.0                    # how often to look for the project's new containers
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
ROLES = {"server": "server", "locust-master": "Locust master", "locust-worker": "Locust worker"}
ENGINE_TIMEOUT = 10.0                 # seconds; also the longest wait for a stream's next document
MAX_STREAMS = 64                      # HTTP connections to the engine: one per followed container


class EngineError(RuntimeError):
    """No Docker engine answers, or the SDK is missing; one line."""


# --------------------------------------------------------------------------
# the arithmetic of one stats document (GET /containers/ID/stats)

def cpu_percent(stats: dict) -> float | None:
    """CPU in % of one core between the document's ``precpu_stats`` and ``cpu_stats``,
    as ``docker stats`` computes it: container CPU time over system CPU time (all
    CPUs), times the CPUs online.  None without a reference (the first document of
    a stream, or a one-shot document)."""
    before, now = stats.get("precpu_stats"), stats.get("cpu_stats")
    try:
        used = now["cpu_usage"]["total_usage"] - before["cpu_usage"]["total_usage"]
        system = now["system_cpu_usage"] - before["system_cpu_usage"]
        if system <= 0 or used < 0 or not before["cpu_usage"]["total_usage"]:
            return None
    except (KeyError, TypeError):
        return None
    cpus = now.get("online_cpus") or len(now["cpu_usage"].get("percpu_usage") or ()) or 1
    return round(100.0 * used / system * cpus, 1)


def memory_in_use(stats: dict) -> int | None:
    """Memory usage less the inactive page cache (cgroup v1 ``total_inactive_file``,
    v2 ``inactive_file``), as ``docker stats`` shows it; None without a usage figure."""
    memory = stats.get("memory_stats") or {}
    usage = memory.get("usage")
    if usage is None:
        return None
    detail = memory.get("stats") or {}
    inactive = detail.get("total_inactive_file", detail.get("inactive_file"))
    if inactive is not None and inactive < usage:
        return usage - inactive
    return usage


def memory_limit(stats: dict) -> int | None:
    return (stats.get("memory_stats") or {}).get("limit")


def container_name(labels: dict) -> str:
    """``<service>-<number>`` from the compose labels."""
    return f"{labels.get(SERVICE_LABEL, '?')}-{labels.get(NUMBER_LABEL, '1')}"


def role(service: str) -> str:
    return ROLES.get(service, service)


# --------------------------------------------------------------------------
# the engine

def engine(timeout: float = ENGINE_TIMEOUT):
    """A ``docker.DockerClient`` that answered a ping; EngineError (one line) if the
    SDK is missing or no engine answers.  The caller closes it."""
    try:
        import docker
    except ImportError:
        raise EngineError("the Docker SDK is not installed (`make install`, or "
                          "pip install docker)") from None
    client = problem = None
    try:
        # asks the engine for its API version; a pool large enough for a stream per container
        client = docker.from_env(timeout=timeout, max_pool_size=MAX_STREAMS)
        client.ping()
    except Exception as error:
        problem = _one_line(error)
    if problem is None:
        return client
    if client is not None:
        client.close()
    gc.collect()            # the failed connection's socket, held by the traceback's frames
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    raise EngineError(f"no Docker engine answers at {where} (start one, or set DOCKER_HOST): "
                      f"{problem}")


def missing_images(client, references: list[str]) -> list[str]:
    """The references the engine does not hold."""
    import docker
    missing = []
    for reference in references:
        try:
            client.images.get(reference)
        except docker.errors.ImageNotFound:
            missing.append(reference)
    return missing


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:300] or type(error).__name__


class ContainerSampler:
    """Follows every running container of compose ``project`` until stopped: a thread
    looks for containers every ``interval`` s (those that start later are picked up
    as they appear) and one thread per container reads the engine's stats stream
    (about one document a second, each with its own CPU reference) into ``path``,
    one line per document."""

    def __init__(self, client, project: str, path: Path, interval: float = FIND_SECONDS):
        self.client = client
        self.project = project
        self.path = path
        self.interval = interval
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._followers: dict[str, threading.Thread] = {}
        self._finder = threading.Thread(target=self._find, name="container-finder", daemon=True)
        self._out = None
        self._started = time.monotonic()

    def start(self) -> ContainerSampler:
        self._out = open(self.path, "a", encoding="utf-8")
        self._started = time.monotonic()
        self._finder.start()
        return self

    def stop(self) -> None:
        """Stop following; each stream ends at its next document (about 1 s)."""
        self._stop.set()
        if self._finder.is_alive():
            self._finder.join(timeout=ENGINE_TIMEOUT + 5)
        for thread in list(self._followers.values()):
            thread.join(timeout=ENGINE_TIMEOUT + 5)
        with self._lock:
            if self._out is not None:
                self._out.close()
                self._out = None

    def __enter__(self) -> ContainerSampler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def elapsed(self) -> float:
        return round(time.monotonic() - self._started, 3)

    def _write(self, record: dict) -> None:
        with self._lock:
            if self._out is not None:
                self._out.write(json.dumps(record, separators=(",", ":")) + "\n")
                self._out.flush()

    def _find(self) -> None:
        while True:
            try:
                found = self.client.containers.list(
                    filters={"label": f"{PROJECT_LABEL}={self.project}"})
            except Exception as error:      # the engine went away: say so, keep looking
                self.errors += 1
                self._write({"t": self.elapsed(), "error": _one_line(error)})
                found = []
            for container in found:
                if container.id not in self._followers and not self._stop.is_set():
                    follower = threading.Thread(
                        target=self._follow, args=(container,), daemon=True,
                        name=f"container-stats-{container_name(container.labels)}")
                    self._followers[container.id] = follower
                    follower.start()
            if self._stop.wait(self.interval):
                return

    def _follow(self, container) -> None:
        name = container_name(container.labels)
        service = container.labels.get(SERVICE_LABEL, "?")
        stream = None
        try:
            stream = container.stats(stream=True, decode=True)
            for stats in stream:
                if self._stop.is_set():
                    break
                if not (stats.get("cpu_stats") or {}).get("cpu_usage", {}).get("total_usage"):
                    continue                # not running (any more): nothing to say
                self._write({"t": self.elapsed(), "containers": {name: {
                    "service": service,
                    "cpu_pct": cpu_percent(stats),
                    "memory_bytes": memory_in_use(stats),
                    "memory_limit_bytes": memory_limit(stats),
                }}})
        except Exception:                   # the container was removed, or the engine left
            pass
        finally:
            if stream is not None:
                stream.close()


# --------------------------------------------------------------------------
# reading samples back

def read_container_samples(path: Path) -> list[dict] | None:
    """The samples of a ``containers.jsonl`` (``{"t", "containers"}``), None without it."""
    return read_records(path, "containers")


def rolling_peak(values: list[float], window: int) -> float | None:
    """The highest mean of ``window`` consecutive values (of all, when fewer)."""
    if not values:
        return None
    width = min(window, len(values))
    return max(sum(values[i:i + width]) / width for i in range(len(values) - width + 1))


def container_table(samples: list[dict], window: int) -> list[dict]:
    """One row per container: name, service, role, CPU % peak (highest mean of ``window``
    consecutive samples, as the load-generator check takes it), CPU % mean, memory
    peak and limit in bytes.  Server first, then the Locust master, then the rest."""
    series: dict[str, dict] = {}
    for sample in samples:
        for name, values in sample["containers"].items():
            entry = series.setdefault(name, {"service": values.get("service", "?"),
                                             "cpu": [], "memory": [], "limit": None})
            if isinstance(values.get("cpu_pct"), (int, float)):
                entry["cpu"].append(float(values["cpu_pct"]))
            if isinstance(values.get("memory_bytes"), int):
                entry["memory"].append(values["memory_bytes"])
            entry["limit"] = values.get("memory_limit_bytes") or entry["limit"]
    order = list(ROLES)
    rows = []
    for name, entry in series.items():
        peak = rolling_peak(entry["cpu"], window)
        rows.append({
            "container": name, "service": entry["service"], "role": role(entry["service"]),
            "cpu_pct_peak": None if peak is None else round(peak, 1),
            "cpu_pct_mean": round(sum(entry["cpu"]) / len(entry["cpu"]), 1)
            if entry["cpu"] else None,
            "memory_bytes_max": max(entry["memory"]) if entry["memory"] else None,
            "memory_limit_bytes": entry["limit"],
            "samples": len(entry["cpu"]),
        })
    rows.sort(key=lambda r: (order.index(r["service"]) if r["service"] in order else len(order),
                             _natural(r["container"])))
    return rows


def _natural(name: str) -> tuple:
    """locust-worker-2 before locust-worker-10."""
    head, _, number = name.rpartition("-")
    return (head, int(number)) if number.isdigit() else (name, 0)
