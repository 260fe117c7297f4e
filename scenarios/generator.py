"""Is the load generator the bottleneck?  Locust's own CPU during a run.

The local backend samples the CPU of every Locust process it started (the
master and each worker, by pid, with psutil) about once a second into
``locust-cpu.jsonl`` in the scenario folder; the compose backend samples every
container of its project with the Docker stats API into ``containers.jsonl``
(see ``scenarios.containers``), whose Locust containers count the same way
(``locust-master-1`` as the master, ``locust-worker-N`` as ``worker-N``).  The
first line of ``locust-cpu.jsonl`` names the processes, every further line is
one sample in % of one core::

    {"t": 0.0, "pids": {"master": 4242, "worker-1": 4243}}
    {"t": 1.001, "cpu_pct": {"master": 2.0, "worker-1": 93.0}}
    {"t": 2.002, "cpu_pct": {"master": 1.0, "worker-1": 41.5}}

``t`` is seconds since sampling started; a process that has exited is left
out of the samples that follow.

The k8s backend writes the same file from ``kubectl top pod`` (metrics-server)
each time it polls the Job, about every 5 s (``KubectlTopSamples``): the Job's
pod is the master, the locust-worker pods are ``worker-1``, ``worker-2`` ... in
the order they first appear; a ``pods`` line names them.  metrics-server's
figures are already means over its own window (15 s by default).  When kubectl
cannot give them (no metrics-server: ``Metrics API not available``; pods too
new: ``metrics not available yet``) the line records the ``error`` and holds no
sample, so a cluster without metrics gives an empty check, not a failure.

Two summary columns come from it (``generator_check``):

``locust_cpu_max_pct``
    the busiest Locust *worker*'s peak, % of one core, taken on a rolling
    mean of ``SMOOTHING_SAMPLES`` consecutive samples (about 3 s): a single
    1-s sample does not count on its own, because every worker spends about a
    second of one core importing Locust as it starts.
``load_generator_saturated``
    ``yes`` when that peak passed ``SATURATION_THRESHOLD_PCT`` (80 % of a
    core), or when Locust logged its own CPU warning (``CPU usage above`` in a
    process's log, ``exceeded cpu threshold`` in the master's) in
    ``locust.log`` or ``compose.log``; ``no`` otherwise.  Empty when the CPU
    was not sampled (e.g. a cluster without metrics-server) and Locust logged
    no warning: the note then says the generator was not checked, and why
    when kubectl said so.
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil

from scenarios.containers import CONTAINERS_FILE, read_container_samples, rolling_peak
from scenarios.sampler import PeriodicSampler, read_records

CPU_FILE = "locust-cpu.jsonl"
SAMPLE_SECONDS = 1.0
SATURATION_THRESHOLD_PCT = 80.0       # a Locust worker above this share of one core
SMOOTHING_SAMPLES = 3                 # rolling mean over this many samples (~3 s)
# Locust's own warnings: every runner logs the first, the master the second for a worker
LOCUST_CPU_WARNINGS = ("CPU usage above", "exceeded cpu threshold")
LOCUST_LOGS = ("locust.log", "compose.log")
WORKER_PREFIX = "worker"
SATURATED_NOTE = "the load generator was saturated: the numbers measure Locust, not the server"
NOT_CHECKED_NOTE = "load generator not checked (Locust's CPU was not sampled)"
KUBECTL_TOP_CPU = "CPU(cores)"         # kubectl top's CPU column, in millicores ("930m")
NO_METRICS_API = "Metrics API not available"     # kubectl top without metrics-server


class LocustCpuSampler(PeriodicSampler):
    """Samples the CPU of named processes every ``interval`` s in a thread until stopped
    (the first sample one interval in: psutil measures CPU between two calls)."""

    def __init__(self, pids: dict[str, int], path: Path, interval: float = SAMPLE_SECONDS):
        super().__init__(path, interval, "locust-cpu-sampler")
        self.pids = dict(pids)
        self._processes: dict[str, psutil.Process] = {}

    def begin(self) -> None:
        for name, pid in self.pids.items():
            try:
                process = psutil.Process(pid)
                process.cpu_percent(None)          # the reference point of the first sample
                self._processes[name] = process
            except psutil.Error:
                pass
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"t": 0.0, "pids": self.pids}) + "\n")

    def sample_once(self, out) -> None:
        elapsed = self.elapsed()
        cpu = {}
        for name, process in list(self._processes.items()):
            try:
                cpu[name] = round(process.cpu_percent(None), 1)
            except psutil.Error:
                del self._processes[name]           # exited: left out from now on
        out.write(json.dumps({"t": elapsed, "cpu_pct": cpu}, separators=(",", ":")) + "\n")


def parse_kubectl_top(text: str) -> dict[str, float]:
    """Pod name -> CPU in % of one core, from ``kubectl top pod`` output with its header
    (NAME, CPU(cores), MEMORY(bytes), found by name); {} when there is no table."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if not rows or "NAME" not in rows[0] or KUBECTL_TOP_CPU not in rows[0]:
        return {}
    header = rows[0]
    name_at, cpu_at = header.index("NAME"), header.index(KUBECTL_TOP_CPU)
    cpu = {}
    for row in rows[1:]:
        if len(row) == len(header):
            pct = cpu_quantity_pct(row[cpu_at])
            if pct is not None:
                cpu[row[name_at]] = pct
    return cpu


def cpu_quantity_pct(quantity: str) -> float | None:
    """A Kubernetes CPU quantity as % of one core: "930m" -> 93.0, "2" -> 200.0."""
    try:
        cores = float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)
    except ValueError:
        return None
    return round(cores * 100, 1)


class KubectlTopSamples:
    """Appends ``kubectl top pod`` readings of the Locust pods to a ``locust-cpu.jsonl``
    (see the module docstring): ``master_pod`` is the master, pods whose name starts
    with ``worker_pods`` are the workers, any other pod is left out."""

    def __init__(self, path: Path, master_pod: str, worker_pods: str = "locust-worker-"):
        self.path = path
        self.master_pod = master_pod
        self.worker_pods = worker_pods
        self.names: dict[str, str] = {}             # pod -> master | worker-N
        self.named = 0                              # how many the file has named so far
        self.no_metrics_api = False                 # asking again will not help

    def add(self, t: float, returncode: int, stdout: str, stderr: str) -> None:
        """Record one ``kubectl top pod`` call made ``t`` s into the run."""
        records = []
        if returncode != 0:
            lines = (stderr or stdout).strip().splitlines() or [f"exit status {returncode}"]
            records.append({"t": t, "error": lines[-1]})
            self.no_metrics_api = NO_METRICS_API in lines[-1]
        else:
            cpu = {}
            for pod, pct in sorted(parse_kubectl_top(stdout).items()):
                name = self._name(pod)
                if name is not None:
                    cpu[name] = pct
            if len(self.names) > self.named:
                records.append({"t": t, "pods": {name: pod for pod, name in self.names.items()}})
                self.named = len(self.names)
            records.append({"t": t, "cpu_pct": cpu})
        with open(self.path, "a", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, separators=(",", ":")) + "\n")

    def _name(self, pod: str) -> str | None:
        if pod not in self.names:
            if pod == self.master_pod:
                self.names[pod] = "master"
            elif pod.startswith(self.worker_pods):
                workers = sum(name.startswith(WORKER_PREFIX) for name in self.names.values())
                self.names[pod] = f"{WORKER_PREFIX}-{workers + 1}"
            else:
                return None
        return self.names[pod]


def sampling_error(path: Path) -> str:
    """The first error a ``locust-cpu.jsonl`` records (kubectl top's), or ""."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return ""
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("error"), str):
            return record["error"]
    return ""


def read_cpu_samples(path: Path) -> list[dict] | None:
    """The samples of a ``locust-cpu.jsonl`` (``{"t", "cpu_pct"}``), None without the file."""
    return read_records(path, "cpu_pct")


def locust_container_samples(path: Path) -> list[dict] | None:
    """The Locust containers' CPU from a ``containers.jsonl``, as ``locust-cpu.jsonl``
    samples (``{"t", "cpu_pct": {"master": .., "worker-1": ..}}``); None without the file."""
    records = read_container_samples(path)
    if records is None:
        return None
    names = {"locust-master": "master", "locust-worker": WORKER_PREFIX}
    samples = []
    for record in records:
        cpu = {}
        for container, values in record["containers"].items():
            service = values.get("service")
            if service in names and values.get("cpu_pct") is not None:
                number = container.rpartition("-")[2]
                cpu["master" if service == "locust-master" else f"{WORKER_PREFIX}-{number}"] = \
                    values["cpu_pct"]
        samples.append({"t": record["t"], "cpu_pct": cpu})
    return samples


def worker_peak(samples: list[dict], window: int = SMOOTHING_SAMPLES) -> float | None:
    """The highest rolling mean (over ``window`` consecutive samples, or all of them when
    there are fewer) of any one worker's CPU; None when no worker was sampled."""
    series: dict[str, list[float]] = {}
    for sample in samples:
        for name, pct in sample["cpu_pct"].items():
            if name.startswith(WORKER_PREFIX) and isinstance(pct, (int, float)):
                series.setdefault(name, []).append(float(pct))
    peaks = [rolling_peak(values, window) for values in series.values()]
    return round(max(peaks), 1) if peaks else None


def locust_warning(folder: Path) -> str:
    """The first line where Locust warned about its own CPU, or ""."""
    for name in LOCUST_LOGS:
        try:
            text = (folder / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if any(warning in line for warning in LOCUST_CPU_WARNINGS):
                return line.strip()
    return ""


def saturated(peak: float | None, warning: str,
              threshold: float = SATURATION_THRESHOLD_PCT) -> bool | None:
    """The saturation rule: a worker's smoothed peak over ``threshold`` or Locust's own
    warning; None when neither is known (nothing sampled, no warning)."""
    if warning or (peak is not None and peak > threshold):
        return True
    return None if peak is None else False


def generator_check(folder: Path, has_statistics: bool = True) -> tuple[dict, str]:
    """The two summary columns of one scenario folder and a note ("" when there is
    nothing to say).  Without Locust statistics there is nothing to distrust, so no
    "not checked" note."""
    samples = read_cpu_samples(folder / CPU_FILE)
    if samples is None:
        samples = locust_container_samples(folder / CONTAINERS_FILE)
    peak = worker_peak(samples) if samples else None
    warning = locust_warning(folder)
    verdict = saturated(peak, warning)
    columns = {"locust_cpu_max_pct": peak,
               "load_generator_saturated": None if verdict is None else
               "yes" if verdict else "no"}
    if verdict:
        why = []
        if peak is not None and peak > SATURATION_THRESHOLD_PCT:
            why.append(f"busiest Locust worker at {peak:g} % of a core, over "
                       f"{SATURATION_THRESHOLD_PCT:g} %")
        if warning:
            why.append("Locust logged its CPU warning")
        return columns, f"{SATURATED_NOTE} ({'; '.join(why)})"
    if verdict is None and has_statistics:
        error = sampling_error(folder / CPU_FILE)
        return columns, f"{NOT_CHECKED_NOTE}; kubectl top pod said: {error}" if error \
            else NOT_CHECKED_NOTE
    return columns, ""
