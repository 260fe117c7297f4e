"""``python -m scenarios course``: the course's transfer matrix.

Unit: the options refused with one line and exit 2 before anything starts, the
plan, and the per-client aggregation.  Integration: the ``--quick`` matrix end
to end (every column, counts that add up, the server's own counts matching,
both charts, nothing left running) and failures counted rather than raised.
"""

import csv
import json
from argparse import Namespace

import psutil
import pytest

from scenarios import course
from scenarios.__main__ import main
from scenarios.course import (COLUMNS, ClientResult, Combination, CoursePlan, parse_plan,
                              run_combination, summarise)
from scenarios.report import CHART_PIXELS, png_size
from server.config import MODES
from server.launcher import ServerProcess, free_port

MB = course.MB


@pytest.fixture(scope="module", autouse=True)
def _fonts(fonts_loaded):
    """see tests/scenarios/conftest.py"""


def options(**given) -> Namespace:
    values = dict(quick=False, out=None, sizes=None, clients=None, pools=None, modes=None,
                  operations=None, transfer_timeout=None, deadline=None)
    values.update(given)
    return Namespace(**values)


# --------------------------------------------------------------------------
# bad input: one line, exit 2, nothing started

@pytest.mark.unit
@pytest.mark.parametrize("argv, message", [
    (["--sizes", "10,5x"], "sizes: '5x' is not a whole number"),
    (["--sizes", "0"], "sizes: 0 is not between 1 and"),
    (["--sizes", "5000"], "sizes: 5000 is not between 1 and"),
    (["--clients", "0"], "clients: 0 is not between 1 and"),
    (["--clients", "1,,5"], "clients: '' is not a whole number"),
    (["--pools", "0"], "pools: 0 is not between 1 and 1024"),
    (["--modes", "thread,fibre"], "modes: unknown mode 'fibre'; known: " + ", ".join(MODES)),
    (["--operations", "delete"], "operations: unknown operation 'delete'"),
    (["--transfer-timeout", "0"], "transfer-timeout: '0' must be more than 0 seconds"),
    (["--deadline", "soon"], "deadline: 'soon' is not a number of seconds"),
    (["--sizes", "1000", "--clients", "500"], "this plan needs about"),
])
def test_bad_input_is_one_line_and_exit_2_with_nothing_started(argv, message, tmp_path,
                                                               capsys):
    out = tmp_path / "out"
    assert main(["course", "--quick", *argv, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert message in captured.err
    assert not out.exists()
    assert psutil.Process().children() == []


@pytest.mark.unit
def test_out_must_be_a_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["course", "--quick", "--out", str(tmp_path / "file" / "out")]) == 2
    assert "is not a folder" in capsys.readouterr().err


# --------------------------------------------------------------------------
# the plan

@pytest.mark.unit
def test_the_full_matrix_is_the_course_one():
    plan = parse_plan(options())
    assert plan.operations == ("upload", "download")
    assert plan.modes == MODES
    assert (plan.file_mb, plan.client_workers, plan.server_pools) == ((10, 50, 100), (1, 5, 50),
                                                                      (1, 5, 50))
    combos = plan.combinations()
    assert len(combos) == 2 * 3 * 3 * 3 * len(MODES)
    assert len(set(combos)) == len(combos)
    # server by server: each (mode, pool) is one block, so one server serves it
    servers = [(c.mode, c.server_pool) for c in combos]
    assert [key for i, key in enumerate(servers) if i == 0 or servers[i - 1] != key] \
        == plan.servers()
    assert plan.deadline > plan.transfer_timeout > 0


@pytest.mark.unit
def test_quick_and_explicit_options():
    quick = parse_plan(options(quick=True))
    assert (quick.file_mb, quick.client_workers, quick.server_pools) == ((10,), (1, 5), (1, 5))
    assert quick.modes == MODES and quick.operations == ("upload", "download")
    assert len(quick.combinations()) == 2 * 2 * 2 * len(MODES)
    plan = parse_plan(options(quick=True, sizes="20", clients="3,3,2", modes="PROCESS",
                              operations="download", transfer_timeout="5"))
    assert (plan.file_mb, plan.client_workers, plan.modes) == ((20,), (3, 2), ("process",))
    assert plan.operations == ("download",)
    assert (plan.transfer_timeout, plan.deadline) == (5.0, 5.0 + course.DEADLINE_SLACK)
    assert Combination("upload", "thread", 5, 10, 3).file_bytes == 10 * 1024 * 1024


# --------------------------------------------------------------------------
# aggregation of the per-client results

@pytest.mark.unit
def test_summary_over_the_clients_that_succeeded():
    results = [ClientResult(0, True, 1.0), ClientResult(1, True, 4.0),
               ClientResult(2, False, 0.5, "ServerError: no such file"),
               ClientResult(3, False, None, "no result within the combination deadline")]
    assert summarise(results, 8 * MB) == {
        "time_per_client_mean_s": 2.5,
        "time_per_client_max_s": 4.0,
        "throughput_per_client_bps": round((8 * MB / 1.0 + 8 * MB / 4.0) / 2),
        "clients_ok": 2,
        "clients_failed": 2,
    }


@pytest.mark.unit
def test_summary_when_every_client_failed_has_no_times():
    results = [ClientResult(i, False, None, "refused") for i in range(3)]
    assert summarise(results, MB) == {
        "time_per_client_mean_s": None, "time_per_client_max_s": None,
        "throughput_per_client_bps": None, "clients_ok": 0, "clients_failed": 3}


# --------------------------------------------------------------------------
# end to end

@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("course") / "out"
    code = main(["course", "--quick", "--out", str(out)])
    children = psutil.Process().children(recursive=True)
    return out, code, children


@pytest.mark.integration
@pytest.mark.slow
def test_quick_matrix_every_combination_with_counts_that_add_up(quick_run):
    out, code, children = quick_run
    assert code == 0
    with open(out / course.CSV_FILE, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == COLUMNS
        rows = list(reader)
    expected = {(c.operation, c.mode, c.server_pool, c.file_mb, c.client_workers)
                for c in parse_plan(options(quick=True)).combinations()}
    assert {(r["operation"], r["mode"], int(r["server_pool"]), int(r["file_mb"]),
             int(r["client_workers"])) for r in rows} == expected
    assert len(rows) == len(expected) == 16
    for row in rows:
        clients = int(row["client_workers"])
        assert all(row[column] != "" for column in COLUMNS), row
        assert int(row["clients_ok"]) + int(row["clients_failed"]) == clients, row
        # the server's own /stats counters saw the same transfers
        assert int(row["server_ok"]) == int(row["clients_ok"]) == clients, row
        assert int(row["server_failed"]) == int(row["clients_failed"]) == 0, row
        assert 0 < float(row["time_per_client_mean_s"]) <= float(row["time_per_client_max_s"])
        assert float(row["time_per_client_max_s"]) < 60
        # the mean rate is at least the file over the slowest time (times are rounded)
        assert 0.99 * 10 * MB / float(row["time_per_client_max_s"]) <= \
            int(row["throughput_per_client_bps"]) < 10 * 1024 ** 3


@pytest.mark.integration
@pytest.mark.slow
def test_quick_matrix_charts_files_and_nothing_left(quick_run):
    out, code, children = quick_run
    assert code == 0
    for operation in ("upload", "download"):
        assert png_size(out / f"course-{operation}.png") == CHART_PIXELS
    with open(out / course.FAILURES_FILE, newline="") as f:
        assert list(csv.reader(f)) == [list(course.FAILURE_COLUMNS)]
    info = json.loads((out / course.INFO_FILE).read_text())
    assert info["rows"] == 16 and info["failed_clients"] == 0
    assert [(s["mode"], s["pool"]) for s in info["servers"]] == [
        (mode, pool) for mode in MODES for pool in (1, 5)]
    assert all(s["exit_code"] == 0 and s["leftover_pids"] == [] for s in info["servers"])
    assert {f"server-{mode}-pool{pool}.log" for mode in MODES for pool in (1, 5)} \
        <= {p.name for p in out.iterdir()}
    assert not (out / "work").exists()           # sources, storage and uploads removed
    assert children == []                        # no client or server process left


@pytest.mark.integration
def test_refused_connections_are_counted_not_raised(tmp_path):
    class NoServer:
        port = free_port()                       # nothing listens there
        storage = tmp_path

        def stats(self):
            raise OSError("no metrics port")

    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * MB)
    plan = CoursePlan(transfer_timeout=10, deadline=30)
    row, results = run_combination(NoServer(), Combination("upload", MODES[0], 1, 1, 3), plan,
                                   source, "unused")
    assert (row["clients_ok"], row["clients_failed"]) == (0, 3)
    assert row["server_ok"] is None and row["server_failed"] is None
    assert row["time_per_client_mean_s"] is None
    assert all("cannot connect" in r.error for r in results), results
    assert psutil.Process().children() == []


@pytest.mark.integration
def test_server_errors_are_counted_by_the_client_and_by_the_server(tmp_path):
    (tmp_path / "files").mkdir()
    server = ServerProcess(tmp_path / "files", MODES[-1], 1, log_path=tmp_path / "server.log",
                           stats_interval=0).start()
    try:
        plan = CoursePlan(transfer_timeout=10, deadline=30)
        row, results = run_combination(server, Combination("download", MODES[-1], 1, 1, 2),
                                       plan, None, "missing.bin")
    finally:
        assert server.stop() == 0
    assert (row["clients_ok"], row["clients_failed"]) == (0, 2)
    assert (row["server_ok"], row["server_failed"]) == (0, 2)
    assert all(r.error.startswith("ServerError: ") for r in results), results
    assert server.leftovers == [] and psutil.Process().children() == []
