"""The report from a summary.csv: which rows make the pool charts, and the files written."""

import json

import pytest

from scenarios.__main__ import main
from scenarios.report import CHART_PIXELS, ReportError, png_size, pool_sweep, write_report
from scenarios.results import SUMMARY_COLUMNS, write_summary

pytestmark = pytest.mark.unit

POOLS = (1, 5, 50, 100, 200)


@pytest.fixture(scope="module", autouse=True)
def _fonts(fonts_loaded):
    """see tests/scenarios/conftest.py"""


def row(scenario, mode, pool, users=50, cpus=2.0, memory="1Gi", rps=100.0, p95=20.0,
        failures=0, status="ok"):
    values = dict.fromkeys(SUMMARY_COLUMNS)
    values.update(scenario=scenario, backend="local", status=status, mode=mode, pool=pool,
                  server_cpus=cpus, server_memory=memory, limits_enforced="yes", users=users,
                  spawn_rate=10.0, duration_s=60, locust_workers=2, requests=6000,
                  failures=failures, failure_pct=round(100 * failures / 6000, 2), rps=rps,
                  p50_ms=5.0, p95_ms=p95, server_cpu_pct_mean=40.0, server_cpu_pct_max=80.0,
                  server_rss_mb_max=30.0 * pool if mode == "process" else 40.0,
                  server_pss_mb_max=30.0 + 2 * pool if mode == "process" else 40.0,
                  busy_workers_mean=1.5, busy_workers_max=min(pool, 9), note="")
    return values


def matrix_rows():
    rows = [row("cpu-limited-half", "process", 10, users=150, cpus=0.5, rps=210.0, p95=300.0)]
    rows += [row(f"{mode}-pool{pool}", mode, pool, rps=50.0 + pool / 10 + (mode == "process"),
                 p95=500.0 / pool) for mode in ("thread", "process") for pool in POOLS]
    rows.append(row("spike", "thread", 50, users=400, rps=300.0, failures=60))
    return rows


def test_pool_sweep_takes_the_largest_group_differing_only_in_mode_and_pool():
    sweep = pool_sweep(matrix_rows())
    assert [(r["mode"], r["pool"]) for r in sweep] == \
        [("process", p) for p in POOLS] + [("thread", p) for p in POOLS]
    assert pool_sweep([row("a", "thread", 5), row("b", "thread", 5, users=10)]) == []


def test_rows_without_numbers_stay_out_of_the_sweep():
    rows = matrix_rows()
    rows[3].update(rps=None, status="error")
    assert rows[3]["scenario"] not in {r["scenario"] for r in pool_sweep(rows)}


@pytest.fixture
def results(tmp_path):
    write_summary(tmp_path / "summary.csv", matrix_rows())
    (tmp_path / "run.json").write_text(json.dumps({
        "backend": "local", "machine": {"cpus": 2, "python": "3.11"}, "git_commit": "abc1234",
        "started": "2026-11-24T10:00:00+0000", "finished": "2026-11-24T10:20:00+0000"}))
    return tmp_path


def test_full_report(results):
    written = write_report(results)
    names = {path.name for path in written}
    assert names == {"rps-vs-pool.png", "p95-vs-pool.png", "thread-vs-process.png",
                     "failures.png", "server-cpu.png", "server-memory.png",
                     "report.html", "report.md"}
    for path in written:
        if path.suffix == ".png":
            assert png_size(path) == CHART_PIXELS
    summary = (results / "report.md").read_text()
    assert "12 scenarios, backend local" in summary and "commit abc1234" in summary
    assert "thread: highest throughput 70.0 req/s at pool 200" in summary
    assert "process: highest throughput 71.0 req/s at pool 200" in summary
    assert "Failures: spike 1.0%." in summary
    assert "Locust and the server shared one machine (2 CPUs)" in summary
    assert "![rps-vs-pool](charts/rps-vs-pool.png)" in summary
    page = (results / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 6


def test_report_errors_are_one_clear_line(tmp_path, capsys):
    with pytest.raises(ReportError, match="no summary.csv"):
        write_report(tmp_path)
    write_summary(tmp_path / "summary.csv", [])
    assert main(["report", str(tmp_path)]) == 1
    assert "no scenario finished in this run" in capsys.readouterr().err


def test_png_size_refuses_other_files(tmp_path):
    (tmp_path / "x.png").write_bytes(b"GIF89a" + bytes(30))
    with pytest.raises(ValueError, match="not a PNG"):
        png_size(tmp_path / "x.png")


def capacity_row(scenario, mode, pool, capacity, run_index=1, free_threaded="no",
                 saturated="no"):
    values = row(scenario, mode, pool, rps=capacity)
    values.update(run_index=run_index, capacity_rps=capacity, capacity_users=110,
                  capacity_steps=5, capacity_stopped="objective broken",
                  free_threaded=free_threaded, gil_enabled="no" if free_threaded == "yes"
                  else "yes", load_generator_saturated=saturated)
    return values


def three_models(saturated_ft="no"):
    """Capacity searches of thread (GIL), free-threaded thread and process, 2 runs each."""
    rows = []
    for run in (1, 2):
        rows += [capacity_row("capacity-thread-pool5", "thread", 5, 300.0 + run, run),
                 capacity_row("capacity-thread-pool50", "thread", 50, 320.0 + 10 * run, run),
                 capacity_row("capacity-thread-ft-pool50", "thread", 50, 440.0 + 20 * run, run,
                              free_threaded="yes", saturated=saturated_ft),
                 capacity_row("capacity-process-pool5", "process", 5, 400.0 + 10 * run, run)]
    return rows


def drawn_models_chart(tmp_path, monkeypatch, rows):
    """write_report on ``rows``; the models chart's bars (label, height, error bar) if drawn."""
    from matplotlib.container import BarContainer

    from scenarios import report
    seen = {}
    save = report._save

    def keep(plt, figure, path):
        if path.name == "models.png":
            axes = figure.axes[0]
            seen["bars"] = [(tick.get_text(), patch.get_height(), patch.get_facecolor())
                            for tick, patch in zip(axes.get_xticklabels(), axes.patches)]
            bars = next(c for c in axes.containers if isinstance(c, BarContainer))
            seen["errors"] = [segment.tolist() for segment in
                              bars.errorbar.lines[2][0].get_segments()]
        return save(plt, figure, path)

    monkeypatch.setattr(report, "_save", keep)
    write_summary(tmp_path / "summary.csv", rows)
    written = write_report(tmp_path)
    return {path.name: path for path in written}, seen


def test_the_models_chart_draws_each_models_best_capacity(tmp_path, monkeypatch):
    from matplotlib.colors import to_rgba

    from scenarios.report import MODE_COLOURS
    written, seen = drawn_models_chart(tmp_path, monkeypatch, three_models())
    assert png_size(written["models.png"]) == CHART_PIXELS
    # best against best, as the answer ranks them: medians of the runs, bars min-max
    assert [(label, height) for label, height, _ in seen["bars"]] == [
        ("free-threaded thread\npool 50", 470.0), ("process\npool 5", 415.0),
        ("thread\npool 50", 335.0)]
    assert [colour for _, _, colour in seen["bars"]] == [
        to_rgba(MODE_COLOURS[m]) for m in ("free-threaded thread", "process", "thread")]
    assert [[y for _, y in segment] for segment in seen["errors"]] == [
        [460.0, 480.0], [410.0, 420.0], [330.0, 340.0]]
    assert "![models](charts/models.png)" in (tmp_path / "report.md").read_text()


def test_no_models_chart_without_a_trusted_free_threaded_search(tmp_path, monkeypatch):
    gil_only = [r for r in three_models() if r["free_threaded"] == "no"]
    written, seen = drawn_models_chart(tmp_path, monkeypatch, gil_only)
    assert "capacity.png" in written and "models.png" not in written and not seen
    # a saturated free-threaded search is not a capacity: thread against process only
    (tmp_path / "saturated").mkdir()
    written, seen = drawn_models_chart(tmp_path / "saturated", monkeypatch,
                                       three_models(saturated_ft="yes"))
    assert "capacity.png" in written and "models.png" not in written and not seen
