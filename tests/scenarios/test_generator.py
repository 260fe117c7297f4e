"""The load generator checked: Locust's CPU samples, its own warning, the summary columns
and how the report shows a saturated run."""

import json
import os
import time

import pytest

from scenarios.generator import (CPU_FILE, NOT_CHECKED_NOTE, SATURATED_NOTE,
                                 SATURATION_THRESHOLD_PCT, SMOOTHING_SAMPLES, LocustCpuSampler,
                                 generator_check, read_cpu_samples, saturated, worker_peak)
from scenarios.report import markdown_table, write_markdown
from scenarios.results import (SUMMARY_COLUMNS, read_summary, scenario_record, summarise,
                               write_scenario_record, write_summary)

from tests.scenarios.test_results import SCENARIO

pytestmark = pytest.mark.unit

LOCUST_CSV = """\
Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,\
Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,\
80%,90%,95%,98%,99%,99.9%,99.99%,100%
,Aggregated,600,0,10,19.1,0.5,300.0,175000,20.0,0.0,10,13,15,16,30,60,90,120,300,300,300
"""
# what Locust 2.x logs (a process about itself; the master about a worker)
OWN_WARNING = ("[2026-11-24 10:00:05,123] host/WARNING/locust.runners: CPU usage above 90%! "
               "This may constrain your throughput and may even give inconsistent response "
               "time measurements!")
MASTER_WARNING = ("[2026-11-24 10:00:06,001] host/WARNING/locust.runners: Worker host_abc "
                  "(index 0) exceeded cpu threshold (will only log this once per worker)")


def cpu_file(folder, *samples):
    lines = [{"t": 0.0, "pids": {"master": 10, "worker-1": 11, "worker-2": 12}}]
    lines += [{"t": float(i + 1), "cpu_pct": sample} for i, sample in enumerate(samples)]
    (folder / CPU_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))


def busy(worker_1: float, worker_2: float = 10.0, master: float = 5.0) -> dict:
    return {"master": master, "worker-1": worker_1, "worker-2": worker_2}


def test_the_threshold_is_80_percent_of_a_core_on_about_3_seconds():
    assert SATURATION_THRESHOLD_PCT == 80.0 and SMOOTHING_SAMPLES == 3


def test_a_worker_over_the_threshold_sets_the_flag(tmp_path):
    cpu_file(tmp_path, busy(40), busy(85), busy(90), busy(88), busy(50))
    columns, note = generator_check(tmp_path)
    assert columns == {"locust_cpu_max_pct": 87.7, "load_generator_saturated": "yes"}
    assert note.startswith(SATURATED_NOTE)
    assert "busiest Locust worker at 87.7 % of a core, over 80 %" in note


def test_below_the_threshold_the_flag_is_no_and_the_peak_recorded(tmp_path):
    cpu_file(tmp_path, busy(40), busy(75, 60), busy(79, 70), busy(78), busy(20))
    columns, note = generator_check(tmp_path)
    assert columns == {"locust_cpu_max_pct": 77.3, "load_generator_saturated": "no"}
    assert note == ""


def test_a_single_spike_does_not_count_but_a_sustained_one_does():
    # a worker importing Locust takes a core for about a second as it starts
    start = [busy(95)] + [busy(30)] * 5
    assert worker_peak([{"cpu_pct": s} for s in start]) == pytest.approx(51.7)
    assert saturated(worker_peak([{"cpu_pct": s} for s in start]), "") is False
    sustained = [busy(30), busy(82), busy(83), busy(84), busy(30)]
    assert saturated(worker_peak([{"cpu_pct": s} for s in sustained]), "") is True


def test_the_master_does_not_count_only_workers(tmp_path):
    cpu_file(tmp_path, *[busy(20, master=99)] * 4)
    columns, _ = generator_check(tmp_path)
    assert columns == {"locust_cpu_max_pct": 20.0, "load_generator_saturated": "no"}


def test_fewer_samples_than_the_window_are_averaged(tmp_path):
    cpu_file(tmp_path, busy(90), busy(80))
    assert generator_check(tmp_path)[0]["locust_cpu_max_pct"] == 85.0


@pytest.mark.parametrize("line", [OWN_WARNING, MASTER_WARNING])
def test_locusts_own_warning_in_its_log_sets_the_flag(tmp_path, line):
    cpu_file(tmp_path, busy(30), busy(35), busy(30))
    (tmp_path / "locust.log").write_text(f"starting\n{line}\nall users spawned\n")
    columns, note = generator_check(tmp_path)
    assert columns == {"locust_cpu_max_pct": 31.7, "load_generator_saturated": "yes"}
    assert note == f"{SATURATED_NOTE} (Locust logged its CPU warning)"


def test_a_warning_counts_even_where_the_cpu_was_not_sampled(tmp_path):
    (tmp_path / "locust.log").write_text(MASTER_WARNING + "\n")
    assert generator_check(tmp_path)[0] == {"locust_cpu_max_pct": None,
                                            "load_generator_saturated": "yes"}


def test_not_sampled_leaves_the_columns_empty_and_says_not_checked(tmp_path):
    (tmp_path / "locust.log").write_text("nothing about the CPU\n")
    assert generator_check(tmp_path) == ({"locust_cpu_max_pct": None,
                                          "load_generator_saturated": None}, NOT_CHECKED_NOTE)
    # without Locust statistics there is nothing to distrust
    assert generator_check(tmp_path, has_statistics=False)[1] == ""


def test_read_cpu_samples_skips_the_header_and_a_truncated_line(tmp_path):
    path = tmp_path / CPU_FILE
    path.write_text('{"t": 0.0, "pids": {"master": 1}}\n{"t": 1.0, "cpu_pct": {"master": 2}}\n'
                    '{"t": 2.0, "cpu_')
    assert read_cpu_samples(path) == [{"t": 1.0, "cpu_pct": {"master": 2}}]
    assert read_cpu_samples(tmp_path / "missing.jsonl") is None


def test_sampler_writes_the_pids_then_one_sample_per_interval(tmp_path):
    path = tmp_path / CPU_FILE
    with LocustCpuSampler({"master": os.getpid(), "worker-1": os.getpid(),
                           "worker-2": 2 ** 22 + 1}, path, interval=0.05):
        deadline = time.monotonic() + 10
        while len(path.read_text().splitlines()) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["pids"]["master"] == os.getpid()
    samples = read_cpu_samples(path)
    assert len(samples) >= 3
    for sample in samples:
        assert set(sample["cpu_pct"]) == {"master", "worker-1"}    # no such pid: left out
        assert all(pct >= 0 for pct in sample["cpu_pct"].values())
    assert all(a["t"] < b["t"] for a, b in zip(samples, samples[1:]))


@pytest.fixture
def local_folder(tmp_path):
    folder = tmp_path / "thread-pool5"
    folder.mkdir()
    write_scenario_record(folder, scenario_record(SCENARIO, "local", True))
    (folder / "locust_stats.csv").write_text(LOCUST_CSV)
    return folder


def test_summary_gets_both_columns_before_the_note(local_folder, tmp_path):
    assert SUMMARY_COLUMNS[-3:] == ("locust_cpu_max_pct", "load_generator_saturated", "note")
    cpu_file(local_folder, busy(90), busy(95), busy(92))
    row = summarise(local_folder, "ok", "limits not applied: x")
    assert (row["locust_cpu_max_pct"], row["load_generator_saturated"]) == (92.3, "yes")
    assert row["note"].startswith(f"limits not applied: x; {SATURATED_NOTE}")
    write_summary(tmp_path / "summary.csv", [row])
    assert read_summary(tmp_path / "summary.csv") == [row]


def test_rows_without_cpu_samples_leave_the_columns_empty(tmp_path):
    # the k8s backend samples no Locust CPU (the compose one does: test_compose_backend.py)
    write_scenario_record(tmp_path, scenario_record(SCENARIO, "k8s", True))
    (tmp_path / "locust_stats.csv").write_text(LOCUST_CSV)
    row = summarise(tmp_path, "ok")
    assert (row["locust_cpu_max_pct"], row["load_generator_saturated"]) == (None, None)
    assert row["note"] == NOT_CHECKED_NOTE
    write_summary(tmp_path / "summary.csv", [row])
    text = (tmp_path / "summary.csv").read_text().splitlines()[1]
    assert text.endswith(f',,,"{NOT_CHECKED_NOTE}"') or text.endswith(f",,,{NOT_CHECKED_NOTE}")


def test_the_report_never_shows_a_saturated_run_silently(local_folder, tmp_path):
    cpu_file(local_folder, busy(90), busy(95), busy(92))
    bad = summarise(local_folder, "ok")
    good = dict(bad, scenario="process-pool5", mode="process", locust_cpu_max_pct=30.0,
                load_generator_saturated="no", note="")
    table = markdown_table([bad, good])
    assert "| thread-pool5 | ok, NOT TRUSTWORTHY: generator saturated | thread |" in table
    assert "| process-pool5 | ok | process |" in table
    assert table.splitlines()[0].endswith("| Locust CPU % max |")
    info = {"backend": "local", "machine": {"cpus": 2},
            "placement": {"server": "0", "locust": "1", "method": "taskset -c"}}
    report = write_markdown(tmp_path, info, [bad, good], []).read_text()
    assert (f"NOT TRUSTWORTHY: thread-pool5: {SATURATED_NOTE}") in report
    assert "process-pool5:" not in report.split("NOT TRUSTWORTHY")[1].split("\n")[0]
    assert "Not trustworthy: the load generator was saturated in thread-pool5." in report
    assert "CPU placement: the server pinned to CPU 0, every Locust process to CPU 1" in report
    assert "shared one machine" not in report          # placement replaces that caveat
