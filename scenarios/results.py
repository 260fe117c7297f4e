"""One scenario's result files turned into one summary row, and ``summary.csv``.

A scenario folder holds what its backend collected:

``locust_stats.csv`` (and ``_stats_history``, ``_failures``, ``_exceptions``)
    Locust's own CSV; the ``Aggregated`` row gives requests, failures, rps and
    latency percentiles.
``server-stats.jsonl``
    the server's ``/stats`` sampled during the run (see ``sampler``): CPU,
    memory, busy workers and the interpreter it ran on (version, free-threaded
    build, GIL enabled).
``locust-cpu.jsonl``, ``locust.log``
    the Locust processes' CPU (local backend; compose: ``containers.jsonl``, every
    container's CPU and memory from the Docker engine) and Locust's own CPU warning:
    whether the load generator was saturated (see ``generator``).
``locust_capacity_steps.csv``, ``locust_capacity.json``
    a capacity search's judged steps and its outcome (``locust/capacity_shape.py``).
``scenario.json``
    the scenario as run, the backend and whether its limits were enforced.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

from client.capacity import best_step
from scenarios.generator import generator_check
from scenarios.sampler import read_samples
from scenarios.schema import Scenario

LOCUST_PREFIX = "locust"                 # Locust's --csv prefix inside a scenario folder
STATS_FILE = "server-stats.jsonl"
SCENARIO_FILE = "scenario.json"
SUMMARY_FILE = "summary.csv"
CAPACITY_STEPS_FILE = f"{LOCUST_PREFIX}_capacity_steps.csv"    # written by capacity_shape.py
CAPACITY_OUTCOME_FILE = f"{LOCUST_PREFIX}_capacity.json"

SUMMARY_COLUMNS = (
    "scenario", "run_index", "backend", "status", "mode", "pool", "python", "free_threaded",
    "gil_enabled", "server_cpus", "server_memory",
    "limits_enforced", "users", "spawn_rate", "duration_s", "locust_workers",
    "requests", "failures", "failure_pct", "rps", "avg_ms", "p50_ms", "p95_ms", "p99_ms",
    "max_ms", "capacity_rps", "capacity_users", "capacity_steps", "capacity_stopped",
    "server_cpu_pct_mean", "server_cpu_pct_max", "server_pss_mb_max",
    "server_rss_mb_max",
    "busy_workers_mean", "busy_workers_max", "server_requests", "server_errors",
    "samples", "locust_cpu_max_pct", "load_generator_saturated", "note",
)
NUMERIC_COLUMNS = frozenset(SUMMARY_COLUMNS) - {
    "scenario", "backend", "status", "mode", "python", "free_threaded", "gil_enabled",
    "server_memory", "limits_enforced",
    "capacity_stopped", "load_generator_saturated", "note"}
INTEGER_COLUMNS = frozenset({"run_index", "capacity_users", "capacity_steps",
                             "pool", "users", "requests", "failures", "locust_workers",
                             "duration_s", "busy_workers_max", "server_requests",
                             "server_errors", "samples"})


def scenario_record(scenario: Scenario, backend: str, limits_enforced: bool) -> dict:
    record = asdict(scenario)
    record["weights"] = dict(scenario.weights.items())
    record["file_sizes"] = list(scenario.file_sizes)
    record.update(backend=backend, limits_enforced=limits_enforced)
    return record


def write_scenario_record(folder: Path, record: dict) -> None:
    (folder / SCENARIO_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _number(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None             # Locust writes "N/A" for percentiles of nothing


def read_locust_stats(folder: Path) -> dict[str, dict]:
    """Name -> row of ``locust_stats.csv``; the total is under ``Aggregated``."""
    path = folder / f"{LOCUST_PREFIX}_stats.csv"
    with open(path, newline="", encoding="utf-8") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def per_command(folder: Path) -> dict[str, dict]:
    """Request type -> requests, failures, p95 (summed over names like GET 1KB)."""
    path = folder / f"{LOCUST_PREFIX}_stats.csv"
    totals: dict[str, dict] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["Name"] == "Aggregated":
                continue
            entry = totals.setdefault(row["Type"], {"requests": 0, "failures": 0, "p95_ms": 0.0})
            entry["requests"] += int(row["Request Count"])
            entry["failures"] += int(row["Failure Count"])
            entry["p95_ms"] = max(entry["p95_ms"], _number(row["95%"]) or 0.0)
    return totals


def server_usage(samples: list[dict]) -> dict:
    """CPU, memory and busy workers over the samples of one run."""
    usage = {"server_cpu_pct_mean": None, "server_cpu_pct_max": None,
             "server_pss_mb_max": None, "server_rss_mb_max": None,
             "busy_workers_mean": None, "busy_workers_max": None,
             "server_requests": None, "server_errors": None, "samples": len(samples)}
    if not samples:
        return usage
    stats = [sample["stats"] for sample in samples]
    rss = [s.get("memory", {}).get("rss_bytes_total") or 0 for s in stats]
    pss = [s["memory"]["pss_bytes_total"] for s in stats
           if s.get("memory", {}).get("pss_bytes_total") is not None]
    if pss:
        usage["server_pss_mb_max"] = round(max(pss) / 2 ** 20, 1)
    busy = [s.get("workers_busy", 0) for s in stats]
    usage.update(server_rss_mb_max=round(max(rss) / 2 ** 20, 1),
                 busy_workers_mean=round(sum(busy) / len(busy), 2),
                 busy_workers_max=max(busy),
                 server_requests=stats[-1]["totals"]["requests"],
                 server_errors=stats[-1]["totals"]["errors"])
    cpu_points = [(sample["t"], sample["stats"]["cpu"]["seconds_total"])
                  for sample in samples if "cpu" in sample["stats"]]
    rates = [100 * (c1 - c0) / (t1 - t0)
             for (t0, c0), (t1, c1) in zip(cpu_points, cpu_points[1:]) if t1 > t0 and c1 >= c0]
    if rates:
        (t_first, c_first), (t_last, c_last) = cpu_points[0], cpu_points[-1]
        usage.update(server_cpu_pct_mean=round(100 * (c_last - c_first) / (t_last - t_first), 1),
                     server_cpu_pct_max=round(max(rates), 1))
    return usage


def server_interpreter(samples: list[dict]) -> dict:
    """python, free_threaded, gil_enabled: what the server said it ran on (its /stats
    ``interpreter``; the GIL as it was at the last sample)."""
    infos = [sample["stats"]["interpreter"] for sample in samples
             if "interpreter" in sample.get("stats", {})]
    if not infos:
        return {"python": None, "free_threaded": None, "gil_enabled": None}
    info = infos[-1]
    return {"python": info.get("version"),
            "free_threaded": "yes" if info.get("free_threaded") else "no",
            "gil_enabled": "yes" if info.get("gil_enabled", True) else "no"}


def read_capacity_steps(folder: Path) -> list[dict]:
    """A capacity search's judged steps (none for a fixed-load scenario)."""
    path = folder / CAPACITY_STEPS_FILE
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{key: value if key == "met_objective" else _number(value)
                 for key, value in row.items()} for row in csv.DictReader(f)]


def capacity_result(folder: Path) -> dict:
    """capacity_* columns: the search's outcome, or what its steps say if it was cut short."""
    steps = read_capacity_steps(folder)
    outcome_path = folder / CAPACITY_OUTCOME_FILE
    if not steps and not outcome_path.exists():
        return {}
    best = best_step(steps)
    result = {"capacity_rps": best["rps"] if best else 0.0,
              "capacity_users": int(best["users"]) if best else 0,
              "capacity_steps": len(steps),
              "capacity_stopped": f"interrupted after {len(steps)} judged steps"}
    if outcome_path.exists():
        outcome = json.loads(outcome_path.read_text(encoding="utf-8"))
        result.update(capacity_rps=outcome["capacity_rps"],
                      capacity_users=outcome["capacity_users"],
                      capacity_stopped=outcome["stopped_because"])
    return result


def summarise(folder: Path, status: str, note: str = "", run_index: int = 1) -> dict:
    """The summary row of one scenario folder (also written as ``result.json``)."""
    record = json.loads((folder / SCENARIO_FILE).read_text(encoding="utf-8"))
    row = {key: None for key in SUMMARY_COLUMNS}
    row.update(scenario=record["name"], run_index=run_index, backend=record["backend"],
               status=status,
               mode=record["mode"], pool=record["pool"], server_cpus=record["server_cpus"],
               server_memory=record["server_memory"],
               limits_enforced="yes" if record["limits_enforced"] else "no",
               users=record["users"], spawn_rate=record["spawn_rate"],
               duration_s=record["duration"], locust_workers=record["locust_workers"],
               note=note)
    try:
        total = read_locust_stats(folder)["Aggregated"]
    except (OSError, KeyError):
        row["note"] = "; ".join(filter(None, [note, "no Locust statistics"]))
    else:
        requests, failures = int(total["Request Count"]), int(total["Failure Count"])
        row.update(requests=requests, failures=failures,
                   failure_pct=round(100 * failures / requests, 2) if requests else None,
                   rps=_number(total["Requests/s"]), avg_ms=_number(total["Average Response Time"]),
                   p50_ms=_number(total["50%"]), p95_ms=_number(total["95%"]),
                   p99_ms=_number(total["99%"]), max_ms=_number(total["Max Response Time"]))
        for key in ("avg_ms", "max_ms"):
            if row[key] is not None:
                row[key] = round(row[key], 1)
        if row["rps"] is not None:
            row["rps"] = round(row["rps"], 2)
    samples = read_samples(folder / STATS_FILE)
    row.update(server_usage(samples))
    row.update(server_interpreter(samples))
    row.update(capacity_result(folder))
    generator, generator_note = generator_check(folder, row["requests"] is not None)
    row.update(generator, note="; ".join(filter(None, [row["note"], generator_note])))
    (folder / "result.json").write_text(json.dumps(row, indent=2) + "\n", encoding="utf-8")
    return row


def write_summary(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if row.get(key) is None else row[key]
                             for key in SUMMARY_COLUMNS})


def read_summary(path: Path) -> list[dict]:
    """``summary.csv`` back into rows, numbers as numbers and blanks as None."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            row = {}
            for key in SUMMARY_COLUMNS:
                value = raw.get(key, "")
                if value == "":
                    row[key] = None
                elif key in NUMERIC_COLUMNS:
                    number = float(value)
                    row[key] = int(number) if key in INTEGER_COLUMNS and number.is_integer() \
                        else number
                else:
                    row[key] = value
            rows.append(row)
    return rows
