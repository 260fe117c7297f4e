"""Is the load generator the bottleneck?  Locust's own CPU during a run.

The local backend samples the CPU of every Locust process it started (the
master and each worker, by pid, with psutil) about once a second into
``locust-cpu.jsonl`` in the scenario folder.  The first line names the
processes, every further line is one sample in % of one core::

    {"t": 0.0, "pids": {"master": 4242, "worker-1": 4243}}
    {"t": 1.001, "cpu_pct": {"master": 2.0, "worker-1": 93.0}}
    {"t": 2.002, "cpu_pct": {"master": 1.0, "worker-1": 41.5}}

``t`` is seconds since sampling started; a process that has exited is left
out of the samples that follow.

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
    ``locust.log``; ``no`` otherwise.  Empty when the CPU was not sampled
    (the compose and k8s backends, for now) and Locust logged no warning: the
    note then says the generator was not checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil

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


def read_cpu_samples(path: Path) -> list[dict] | None:
    """The samples of a ``locust-cpu.jsonl`` (``{"t", "cpu_pct"}``), None without the file."""
    return read_records(path, "cpu_pct")


def worker_peak(samples: list[dict], window: int = SMOOTHING_SAMPLES) -> float | None:
    """The highest rolling mean (over ``window`` consecutive samples, or all of them when
    there are fewer) of any one worker's CPU; None when no worker was sampled."""
    series: dict[str, list[float]] = {}
    for sample in samples:
        for name, pct in sample["cpu_pct"].items():
            if name.startswith(WORKER_PREFIX) and isinstance(pct, (int, float)):
                series.setdefault(name, []).append(float(pct))
    peaks = []
    for values in series.values():
        width = min(window, len(values))
        peaks += [sum(values[i:i + width]) / width for i in range(len(values) - width + 1)]
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
        return columns, NOT_CHECKED_NOTE
    return columns, ""
