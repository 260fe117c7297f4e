"""A capacity search's rules, apart from Locust: steps, windows, the stop rules.

``locust/capacity_shape.py`` drives Locust with them; the scenario schema
takes its defaults from here, so a scenario's ``capacity`` block and the
Locust options mean the same.  Nothing here imports Locust (or gevent), so
the tests can check the rules on their own.

Users start at ``start_users`` and grow by ``step_users`` every
``step_seconds``, up to ``max_users``.  Each step is judged on a window of
whole seconds that leaves out ``capacity_ramp_seconds`` (while its new users
start).  The search stops at the first step whose p95 passes ``slo_p95_ms``
or whose failure ratio passes ``max_failure_ratio``, when throughput grows
less than ``min_growth`` over the previous step ``flat_steps`` times in a
row, or after the ``max_users`` step.  The capacity is the highest step
throughput that met the objective.
"""

from __future__ import annotations

import math
from collections import Counter

__all__ = ["CAPACITY_DEFAULTS", "capacity_ramp_seconds", "bucket_ms", "percentile",
           "Seconds", "Search", "best_step"]

CAPACITY_DEFAULTS = {"slo_p95_ms": 100.0, "max_failure_ratio": 0.01, "start_users": 20,
                     "step_users": 20, "step_seconds": 15, "max_users": 1000,
                     "min_growth": 0.05, "flat_steps": 2}


def capacity_ramp_seconds(step_users: int, spawn_rate: float) -> int:
    """Seconds left out of a step's measured window while its new users start."""
    return math.ceil(step_users / spawn_rate) + 1


def bucket_ms(response_time: float) -> int:
    """Locust's own rounding: 1 ms below 100 ms, then two significant digits."""
    value = int(round(response_time))
    if value < 100:
        return value
    digits = len(str(value)) - 2
    return int(round(value, -digits))


class Seconds:
    """Finished requests by the wall-clock second they ended in."""

    def __init__(self):
        self.by_second: dict[int, dict] = {}

    def add(self, second: int, response_time: float, failed: bool) -> None:
        entry = self.by_second.setdefault(second, {"requests": 0, "failures": 0,
                                                   "times": Counter()})
        entry["requests"] += 1
        entry["failures"] += int(failed)
        entry["times"][bucket_ms(response_time)] += 1

    def merge(self, report: dict) -> None:
        for second, other in report.items():
            entry = self.by_second.setdefault(int(second), {"requests": 0, "failures": 0,
                                                            "times": Counter()})
            entry["requests"] += other["requests"]
            entry["failures"] += other["failures"]
            entry["times"].update({int(ms): n for ms, n in other["times"].items()})

    def take(self) -> dict:
        """Everything so far, as a report a worker sends; then start afresh."""
        report = {str(second): {"requests": e["requests"], "failures": e["failures"],
                                "times": {str(ms): n for ms, n in e["times"].items()}}
                  for second, e in self.by_second.items()}
        self.by_second = {}
        return report

    def window(self, start: int, end: int) -> dict:
        """Totals of the whole seconds ``start <= s < end``."""
        requests = failures = 0
        times: Counter = Counter()
        for second in range(start, end):
            entry = self.by_second.get(second)
            if entry:
                requests += entry["requests"]
                failures += entry["failures"]
                times.update(entry["times"])
        seconds = max(end - start, 1)
        return {"requests": requests, "failures": failures,
                "failure_ratio": round(failures / requests, 4) if requests else None,
                "rps": round(requests / seconds, 2),
                "p50_ms": percentile(times, 0.50), "p95_ms": percentile(times, 0.95),
                "p99_ms": percentile(times, 0.99)}


def percentile(times: Counter, fraction: float) -> float | None:
    total = sum(times.values())
    if not total:
        return None
    rank = math.ceil(fraction * total)
    seen = 0
    for ms in sorted(times):
        seen += times[ms]
        if seen >= rank:
            return float(ms)
    return float(max(times))


def best_step(steps: list[dict]) -> dict | None:
    """The step that sets the capacity: the highest throughput that met the objective."""
    met = [step for step in steps if step["met_objective"] == "yes"]
    return max(met, key=lambda step: step["rps"]) if met else None


class Search:
    """The steps and the stop rules, apart from Locust (``judge`` takes a window)."""

    def __init__(self, settings: dict, spawn_rate: float):
        self.settings = settings
        self.ramp_seconds = capacity_ramp_seconds(settings["step_users"], spawn_rate)
        self.steps: list[dict] = []
        self.stopped_because = ""
        self._flat = 0

    def users(self, step: int) -> int:
        return min(self.settings["start_users"] + step * self.settings["step_users"],
                   self.settings["max_users"])

    @property
    def last_step(self) -> int:
        s = self.settings
        return math.ceil((s["max_users"] - s["start_users"]) / s["step_users"])

    def judge(self, step: int, window_start: int, window_seconds: int, result: dict) -> bool:
        """Record step ``step``; True when the search goes on."""
        s = self.settings
        met = (result["requests"] > 0 and result["p95_ms"] <= s["slo_p95_ms"]
               and result["failure_ratio"] <= s["max_failure_ratio"])
        row = {"step": step, "users": self.users(step), "window_start": window_start,
               "window_seconds": window_seconds, **result,
               "met_objective": "yes" if met else "no"}
        previous = self.steps[-1] if self.steps else None
        self.steps.append(row)
        if not met:
            self.stopped_because = self._why_broken(row)
            return False
        if previous is not None and row["rps"] < previous["rps"] * (1 + s["min_growth"]):
            self._flat += 1
        else:
            self._flat = 0
        if self._flat >= s["flat_steps"]:
            self.stopped_because = (f"throughput stopped growing at {row['users']} users "
                                    f"({self._flat} steps under +{s['min_growth']:.0%})")
            return False
        if step >= self.last_step:
            self.stopped_because = f"reached max_users ({s['max_users']})"
            return False
        return True

    def _why_broken(self, row: dict) -> str:
        s = self.settings
        if not row["requests"]:
            return f"objective broken at {row['users']} users: no request finished"
        if row["p95_ms"] > s["slo_p95_ms"]:
            return (f"objective broken at {row['users']} users: p95 {row['p95_ms']:g} ms "
                    f"> {s['slo_p95_ms']:g} ms")
        return (f"objective broken at {row['users']} users: failure ratio "
                f"{row['failure_ratio']:g} > {s['max_failure_ratio']:g}")

    def outcome(self) -> dict:
        best = best_step(self.steps)
        return {"capacity_rps": best["rps"] if best else 0.0,
                "capacity_users": best["users"] if best else 0,
                "stopped_because": self.stopped_because, "steps_judged": len(self.steps),
                "settings": self.settings}
