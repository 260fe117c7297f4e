"""Run scenarios one after another into ``results/<timestamp>/``.

::

    results/20261124-101500/
        run.json            backend, machine, git commit, scenarios, start and end
        summary.csv         one row per scenario run (see scenarios.results), rewritten
                            after each run so an interrupted run keeps its rows;
                            with --repeat N each scenario has N rows (run_index) and
                            its folders are thread-pool5/run-1/ ... run-N/
        thread-pool5/       scenario.json, result.json, locust_stats.csv,
                            locust_stats_history.csv, report.html, server-stats.jsonl,
                            server.log, locust.log, ...
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from scenarios.backends.base import REPO_ROOT, Backend, Outcome
from scenarios.findings import marked_saturated
from scenarios.results import (SUMMARY_FILE, scenario_record, summarise, write_scenario_record,
                               write_summary)
from scenarios.schema import Scenario

RESULTS_ROOT = REPO_ROOT / "results"
QUIET_PROGRESS_SECONDS = 10.0    # progress line interval when not on a terminal


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return ""


def new_run_folder(root: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = root / stamp
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = root / f"{stamp}-{suffix}"
    folder.mkdir(parents=True)
    return folder


class ProgressLine:
    """One status line per scenario: which one, time left, the server's live rps."""

    def __init__(self, out: TextIO, index: int, count: int, scenario: Scenario):
        self.out = out
        self.prefix = f"[{index}/{count}] {scenario.name}"
        self.duration = scenario.duration
        self.pool = scenario.pool
        self.interactive = out.isatty()
        self._last_print = 0.0

    def __call__(self, elapsed: float, stats: dict | None) -> None:
        now = time.monotonic()
        if not self.interactive and now - self._last_print < QUIET_PROGRESS_SECONDS:
            return
        self._last_print = now
        left = max(self.duration - elapsed, 0)
        text = f"{self.prefix}: {elapsed:4.0f} s, about {left:.0f} s of load left"
        if stats:
            cpu = stats.get("cpu", {}).get("percent")
            text += (f" | server {stats['requests_per_second']:.1f} req/s, "
                     f"{stats['workers_busy']}/{self.pool} busy"
                     + (f", CPU {cpu:.0f}%" if cpu is not None else ""))
        else:
            text += " | server stats not yet available"
        if self.interactive:
            self.out.write("\r\033[K" + text)
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def done(self, outcome: Outcome, row: dict) -> None:
        if self.interactive:
            self.out.write("\r\033[K")
        rps = f"{row['rps']:.1f} req/s" if row.get("rps") is not None else "no rps"
        p95 = f"p95 {row['p95_ms']:.0f} ms" if row.get("p95_ms") is not None else "no p95"
        failures = row.get("failures")
        self.out.write(f"{self.prefix}: {outcome.status} | {rps}, {p95}, "
                       f"{failures if failures is not None else '?'} failures"
                       + (f" | {outcome.note}" if outcome.note else "")
                       + (" | load generator SATURATED: not the server's numbers"
                          if marked_saturated(row) else "") + "\n")
        self.out.flush()


class Runner:
    def __init__(self, backend: Backend, results_root: Path = RESULTS_ROOT,
                 out: TextIO = sys.stdout):
        self.backend = backend
        self.results_root = results_root
        self.out = out

    def run(self, scenarios: list[Scenario], scenario_file: str = "",
            repeat: int = 1) -> tuple[Path, list[dict]]:
        """Run ``scenarios`` in order, ``repeat`` times interleaved (A B A B, so that
        drift on the machine hits every scenario alike); returns the run folder and
        the summary rows, one per run."""
        self.backend.check()
        self.backend.check_scenarios(scenarios)
        folder = new_run_folder(self.results_root)
        run_info = {
            "backend": self.backend.name, "scenario_file": scenario_file,
            "scenarios": [s.name for s in scenarios], "repeat": repeat,
            "git_commit": _git_commit(),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version()},
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "placement": getattr(self.backend, "placement", None),   # CPUs of server, Locust
        }
        self._write_run_info(folder, run_info)
        runs = [(run_index, scenario) for run_index in range(1, repeat + 1)
                for scenario in scenarios]
        self.out.write(f"{len(scenarios)} scenarios"
                       + (f" x {repeat} runs, interleaved" if repeat > 1 else "")
                       + f", backend {self.backend.name}, results in {folder}\n")
        rows: list[dict] = []
        try:
            for index, (run_index, scenario) in enumerate(runs, 1):
                rows.append(self.run_one(folder, index, len(runs), scenario,
                                         run_index if repeat > 1 else None))
                write_summary(folder / SUMMARY_FILE, rows)
        finally:
            run_info["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            run_info["completed"] = [row["scenario"] for row in rows]
            self._write_run_info(folder, run_info)
            write_summary(folder / SUMMARY_FILE, rows)
        return folder, rows

    def run_one(self, run_folder: Path, index: int, count: int, scenario: Scenario,
                run_index: int | None = None) -> dict:
        """One run into ``<scenario>/`` (``<scenario>/run-<k>/`` when repeated)."""
        folder = run_folder / scenario.name
        if run_index is not None:
            folder = folder / f"run-{run_index}"
        folder.mkdir(parents=True)
        progress = ProgressLine(self.out, index, count, scenario)
        write_scenario_record(folder, scenario_record(scenario, self.backend.name, False))
        try:
            outcome = self.backend.run(scenario, folder, progress)
        except Exception as error:           # one broken scenario must not end the matrix
            outcome = Outcome("error", f"{type(error).__name__}: {error}", False)
        write_scenario_record(folder, scenario_record(scenario, self.backend.name,
                                                      outcome.limits_enforced))
        row = summarise(folder, outcome.status, outcome.note, run_index or 1)
        progress.done(outcome, row)
        return row

    @staticmethod
    def _write_run_info(folder: Path, info: dict) -> None:
        (folder / "run.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
