"""What a results folder says: repeated runs aggregated, and the answer in words.

``aggregate(rows)`` turns summary rows (one per run) into one row per
scenario: for every number the median, the lowest and the highest of its
runs (``rps``, ``rps_min``, ``rps_max``, ...) and ``runs``.  Two scenarios
whose min–max ranges overlap show *no measurable difference*: with a
handful of runs on a shared machine, that is the honest verdict.

``answer(aggregated)`` is the report's first paragraph: from the capacity
searches, which model served more, by how much, where each broke, and how
sure the runs are; from fixed-load runs, latency at the same offered load.
Runs whose load generator was saturated never count as the server's
capacity.
"""

from __future__ import annotations

import statistics

from scenarios.results import NUMERIC_COLUMNS

__all__ = ["aggregate", "answer", "no_measurable_difference", "capacity_rows", "marked_saturated",
           "trusted_capacity_rows", "best_per_model"]

# the measured numbers; the configuration (pool, users, ...) is the same in every run
SPREAD_COLUMNS = tuple(sorted(NUMERIC_COLUMNS - {
    "run_index", "pool", "server_cpus", "users", "spawn_rate", "duration_s", "locust_workers"}))


def marked_saturated(row: dict) -> bool:
    """The run (or one of a scenario's runs) measured a saturated load generator."""
    return row.get("load_generator_saturated") == "yes"


def aggregate(rows: list[dict]) -> list[dict]:
    """One row per scenario, in first-run order: medians with ``_min``/``_max``."""
    by_scenario: dict[str, list[dict]] = {}
    for row in rows:
        by_scenario.setdefault(row["scenario"], []).append(row)
    result = []
    for runs in by_scenario.values():
        merged = dict(runs[0])
        merged["runs"] = len(runs)
        merged["saturated_runs"] = sum(1 for run in runs if marked_saturated(run))
        if merged["saturated_runs"]:
            merged["load_generator_saturated"] = "yes"     # one saturated run taints them all
        merged["status"] = ("ok" if all(run["status"] == "ok" for run in runs)
                            else ", ".join(sorted({run["status"] for run in runs})))
        for key in SPREAD_COLUMNS:
            values = [run[key] for run in runs if run.get(key) is not None]
            if not values:
                merged[key] = merged[f"{key}_min"] = merged[f"{key}_max"] = None
                continue
            median = statistics.median(values)
            merged[key] = int(median) if all(isinstance(v, int) for v in values) \
                and float(median).is_integer() else round(median, 2)
            merged[f"{key}_min"], merged[f"{key}_max"] = min(values), max(values)
        result.append(merged)
    return result


def no_measurable_difference(a: dict, b: dict, key: str) -> bool:
    """The two scenarios' min–max ranges of ``key`` overlap."""
    low_a, high_a = a.get(f"{key}_min", a.get(key)), a.get(f"{key}_max", a.get(key))
    low_b, high_b = b.get(f"{key}_min", b.get(key)), b.get(f"{key}_max", b.get(key))
    if None in (low_a, high_a, low_b, high_b):
        return False
    return low_a <= high_b and low_b <= high_a


def capacity_rows(aggregated: list[dict]) -> list[dict]:
    return [row for row in aggregated if row.get("capacity_rps") is not None]


def _spread(row: dict, key: str, unit: str, digits: int = 0) -> str:
    median = row[key]
    low, high = row.get(f"{key}_min", median), row.get(f"{key}_max", median)
    text = f"{median:,.{digits}f} {unit}".strip()
    if row.get("runs", 1) > 1 and low != high:
        text += f" (runs {low:,.{digits}f}–{high:,.{digits}f})"
    return text


def answer(aggregated: list[dict]) -> list[str]:
    """The report's first sentences: the question answered, with its spread."""
    lines = _capacity_answer(capacity_rows(aggregated))
    fixed = [row for row in aggregated if row.get("capacity_rps") is None
             and row.get("p95_ms") is not None]
    lines += _latency_answer(fixed)
    return lines


def trusted_capacity_rows(rows: list[dict]) -> list[dict]:
    """Capacity searches that count: a capacity, and a load generator not saturated."""
    return [row for row in capacity_rows(rows)
            if not marked_saturated(row) and row["capacity_rps"]]


def best_per_model(rows: list[dict]) -> list[dict]:
    """Each model's best trusted capacity search, the highest capacity first."""
    best = {}
    for row in trusted_capacity_rows(rows):
        if row["mode"] not in best or row["capacity_rps"] > best[row["mode"]]["capacity_rps"]:
            best[row["mode"]] = row
    return sorted(best.values(), key=lambda row: row["capacity_rps"], reverse=True)


def _capacity_answer(rows: list[dict]) -> list[str]:
    trusted = trusted_capacity_rows(rows)
    if not trusted:
        return ["No capacity search in this folder gave a trustworthy capacity."
                if rows else "No capacity search in this folder."]
    ranked = best_per_model(trusted)
    lines = []
    for row in ranked:
        lines.append(f"{row['mode']} pool: capacity {_spread(row, 'capacity_rps', 'req/s')} "
                     f"at pool {row['pool']} ({row['scenario']}, "
                     f"{_spread(row, 'capacity_users', 'users')}).")
    first = ranked[0]
    for other in ranked[1:]:        # the best model's best against each other model's
        if no_measurable_difference(first, other, "capacity_rps"):
            lines.append(f"Best against best: no measurable difference between the "
                         f"{first['mode']} and the {other['mode']} pool (their runs overlap).")
        else:
            ratio = first["capacity_rps"] / other["capacity_rps"] if other["capacity_rps"] \
                else float("inf")
            lines.append(f"The {first['mode']} pool served more: {ratio:.2f}× the "
                         f"{other['mode']} pool's best (medians; the runs do not overlap).")
    for row in sorted(trusted, key=lambda r: (r["mode"], r["pool"])):
        which = " (first run)" if row.get("runs", 1) > 1 else ""
        lines.append(f"{row['scenario']}{which}: stopped because {row['capacity_stopped']}.")
    runs = sorted({row.get("runs", 1) for row in trusted})
    lines.append(f"How sure: {'/'.join(map(str, runs))} run(s) per configuration"
                 + ("; one run gives no spread, so differences below the machine's "
                    "run-to-run noise cannot be told apart." if runs == [1] else
                    "; the ranges are the lowest and highest run."))
    return lines


def _latency_answer(rows: list[dict]) -> list[str]:
    lines = []
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row["users"], row["spawn_rate"], row["duration_s"], row["server_cpus"],
               row["server_memory"], row["pool"])
        groups.setdefault(key, []).append(row)
    for group in groups.values():
        modes = sorted({row["mode"]: row for row in group}.items())
        for index, (mode_a, a) in enumerate(modes):     # every pair of models
            for mode_b, b in modes[index + 1:]:
                if no_measurable_difference(a, b, "p95_ms"):
                    verdict = "no measurable difference in p95"
                else:
                    faster = a if a["p95_ms"] < b["p95_ms"] else b
                    verdict = f"{faster['mode']} has the lower p95"
                lines.append(f"Same load, pool {a['pool']}: {mode_a} p95 "
                             f"{_spread(a, 'p95_ms', 'ms')}, {mode_b} p95 "
                             f"{_spread(b, 'p95_ms', 'ms')}: {verdict}.")
    return lines
