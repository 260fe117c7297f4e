"""A capacity search: Locust users raised in steps until the server breaks its objective.

Load it next to the users (headless or from the web UI alike):

    locust -f locust/locustfile.py,locust/capacity_shape.py --host tcp://127.0.0.1:6665

The rules (steps, windows, when to stop, what the capacity is) are in
``client.capacity``; the options are ``--capacity-<key>`` with
``LOCUST_CAPACITY_<KEY>`` variables.  This file feeds the rules: every load
process files each finished request under the wall-clock second it ended in;
workers send those per-second histograms to the master with their regular
reports, so a step's window is exact however late a report arrives (the
master judges a step once the reports covering it are in, a few seconds into
the next step).

Results, next to Locust's own CSV files (``--csv PREFIX``; else in the
current folder): ``PREFIX_capacity_steps.csv``, one row per judged step,
written as each step is judged (so an interrupted search keeps its steps),
and ``PREFIX_capacity.json`` with the outcome, written when the search ends.

This file defines no users, so it never runs without ``locustfile.py``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time

from locust import LoadTestShape, events
from locust.runners import WORKER_REPORT_INTERVAL, MasterRunner, WorkerRunner

from client.capacity import CAPACITY_DEFAULTS, Search, Seconds

log = logging.getLogger("capacity")

REPORT_KEY = "capacity_seconds"       # our part of a worker's report to the master
STEP_COLUMNS = ("step", "users", "window_start", "window_seconds", "requests", "failures",
                "failure_ratio", "rps", "p50_ms", "p95_ms", "p99_ms", "met_objective")


@events.init_command_line_parser.add_listener
def add_options(parser):
    for key, default in CAPACITY_DEFAULTS.items():
        flag = "--capacity-" + key.replace("_", "-")
        parser.add_argument(flag, type=type(default), default=default,
                            env_var="LOCUST_" + flag.lstrip("-").replace("-", "_").upper(),
                            help=f"capacity search: {key.replace('_', ' ')} "
                                 f"(default {default})")


SECONDS = Seconds()


@events.request.add_listener
def file_request(response_time, exception, **_):
    SECONDS.add(int(time.time()), response_time, exception is not None)


@events.report_to_master.add_listener
def send_seconds(client_id, data):
    data[REPORT_KEY] = SECONDS.take()


@events.worker_report.add_listener
def receive_seconds(client_id, data):
    SECONDS.merge(data.get(REPORT_KEY, {}))


class CapacityShape(LoadTestShape):
    """Raises the users step by step; see the module docstring."""

    def __init__(self):
        super().__init__()
        self.search: Search | None = None
        self.step = 0
        self.step_started = 0.0
        self.finished = False

    def _begin(self) -> None:
        options = self.runner.environment.parsed_options
        settings = {key: getattr(options, "capacity_" + key) for key in CAPACITY_DEFAULTS}
        self.search = Search(settings, options.spawn_rate)
        self.spawn_rate = options.spawn_rate
        self.report_lag = WORKER_REPORT_INTERVAL + 1 if isinstance(self.runner, MasterRunner) else 1
        self.out = ResultFiles(options)
        self.step, self.step_started = 0, time.time()
        log.info("capacity search: %s", settings)

    def tick(self):
        if self.search is None:
            self._begin()
        if self.finished:
            return None
        now = time.time()
        settings = self.search.settings
        if now >= self.step_started + settings["step_seconds"] + self.report_lag:
            if not self._judge_step():
                return None
        return self.search.users(self._current_step(now)), self.spawn_rate

    def _current_step(self, now: float) -> int:
        """The step whose users run now: the next one begins once a step's time is up."""
        elapsed_steps = int((now - self.step_started) // self.search.settings["step_seconds"])
        return min(self.step + min(elapsed_steps, 1), self.search.last_step)

    def _judge_step(self) -> bool:
        settings = self.search.settings
        window_start = int(math.ceil(self.step_started)) + self.search.ramp_seconds
        window_end = int(self.step_started) + settings["step_seconds"]
        result = SECONDS.window(window_start, max(window_end, window_start + 1))
        going_on = self.search.judge(self.step, window_start, window_end - window_start,
                                     result)
        row = self.search.steps[-1]
        self.out.add_step(row)
        log.info("capacity step %d: %d users, %.1f req/s, p95 %s ms, failures %d -> %s",
                 row["step"], row["users"], row["rps"], row["p95_ms"], row["failures"],
                 "met" if row["met_objective"] == "yes" else "broken")
        if going_on:
            self.step += 1
            self.step_started += settings["step_seconds"]
            return True
        self.finish()
        return False

    def finish(self) -> None:
        self.finished = True
        outcome = self.search.outcome()
        self.out.write_outcome(outcome)
        log.info("capacity: %.1f req/s at %d users (%s)", outcome["capacity_rps"],
                 outcome["capacity_users"], outcome["stopped_because"])


class ResultFiles:
    def __init__(self, options):
        prefix = getattr(options, "csv_prefix", None) or "capacity"
        self.steps_path = f"{prefix}_capacity_steps.csv"
        self.outcome_path = f"{prefix}_capacity.json"
        with open(self.steps_path, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow(STEP_COLUMNS)

    def add_step(self, row: dict) -> None:
        with open(self.steps_path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, fieldnames=STEP_COLUMNS, extrasaction="ignore").writerow(
                {key: "" if row.get(key) is None else row[key] for key in STEP_COLUMNS})

    def write_outcome(self, outcome: dict) -> None:
        with open(self.outcome_path, "w", encoding="utf-8") as f:
            json.dump(outcome, f, indent=2)
            f.write("\n")


@events.quitting.add_listener
def search_outcome_is_the_exit_status(environment, **_):
    """A search that ended by its own rule succeeded, although its last step may
    have failed requests (that is how it found the limit)."""
    if isinstance(environment.runner, WorkerRunner):
        return
    shape = environment.shape_class
    if isinstance(shape, CapacityShape) and shape.finished \
            and environment.process_exit_code is None:
        environment.process_exit_code = 0

