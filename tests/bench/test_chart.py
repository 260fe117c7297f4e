"""The LIST chart of a bench run (bench.chart): drawn next to the run's JSON, drawn again
by ``python -m bench.report --chart``, one series per LIST server whatever its label,
and one line of error for a file that is not a bench result or without matplotlib."""

import json
import sys

import pytest

from bench import chart, report
from bench import run as bench_run
from bench.plan import FT, FT_GIL, FreeThreaded, variants
from scenarios.report import MODE_COLOURS, png_size

pytestmark = pytest.mark.unit

LEVELS = (1, 10, 50)
FT_PYTHON = "/opt/ft/bin/python3.13t"
DEFAULT = {"implementation": "CPython", "version": "3.11.7", "free_threaded": False,
           "gil_enabled": True}
FREE = dict(DEFAULT, version="3.13.5", free_threaded=True, gil_enabled=False)
INTERPRETERS = {"thread": DEFAULT, "process": DEFAULT, FT: FREE,
                FT_GIL: dict(FREE, gil_enabled=True)}
# (ops/s, server CPU us per LIST) at 1, 10 and 50 clients
FIGURES = {"asyncio-protocol": ((2500, 320), (3500, 270), (3600, 230)),
           "threadpool(50)": ((3100, 240), (4000, 270), (3100, 320)),
           "prefork(50)": ((2900, 300), (3900, 310), (3800, 300)),
           "thread": ((2700, 370), (1600, 710), (2200, 470)),
           "process": ((2800, 310), (3500, 350), (2600, 420)),
           FT: ((2300, 410), (3200, 390), (3100, 350)),
           FT_GIL: ((1300, 790),)}
CHART_PIXELS = (1200, 550)


@pytest.fixture(scope="module", autouse=True)
def _fonts(fonts_loaded):
    """see tests/scenarios/conftest.py"""


def point(server, variant, clients, ops, cpu, disturbed=False):
    """A LIST record as bench.run writes it: the median round, and every round's ops/s."""
    return {"server": server, "variant": variant, "op": "LIST", "clients": clients,
            "ops": ops * 3, "errors": 0, "ops_per_s": ops, "p50_ms": 1.0, "p99_ms": 4.0,
            "server_cpu_pct": 90.0, "server_cpu_us_per_op": cpu, "disturbed": disturbed,
            "rounds": 3, "rounds_ops_per_s": [ops - 100, ops, ops + 300]}


def bench_result(free_threaded=True) -> dict:
    ft = (FreeThreaded(python=FT_PYTHON, version="3.13.5") if free_threaded
          else FreeThreaded(skipped="free-threaded points skipped (--no-ft)"))
    planned = variants(["thread", "process"], list(LEVELS), ft)
    out = {"meta": {"quick": False, "list_pool": 50, "list_rounds": 3, "list_seconds": 3.0,
                    "cpus": 2, "commit": "d398e8d6f5fe04bdb22a", "python": "3.11.7",
                    "started_at": "2026-11-25T14:50:59+0000", "modes": ["thread", "process"],
                    "variants": [v.record() for v in planned], "list_clients": list(LEVELS),
                    "list_clients_max": 50},
           "bounds": {}, "servers": [], "list": [], "transfers": [], "memory": []}
    servers = [(label, None, LEVELS) for label in ("asyncio-protocol", "threadpool(50)",
                                                   "prefork(50)")]
    servers += [(f"{v.name}(50)", v.name, v.list_levels) for v in planned]
    for label, variant, levels in servers:
        out["servers"].append({"server": label, "variant": variant,
                               "interpreter": INTERPRETERS.get(variant)})
        for clients, (ops, cpu) in zip(levels, FIGURES[variant or label]):
            out["list"].append(point(label, variant, clients, ops, cpu))
    return out


def write_result(tmp_path, out, name="bench-20261125-145059.json"):
    path = tmp_path / name
    path.write_text(json.dumps(out))
    return path


def errorbar_data(axes):
    """label -> (x, y, [(low, high)]) of every errorbar series of ``axes``."""
    data = {}
    for container in axes.containers:
        line, _caps, (bars,) = container.lines
        x, y = line.get_data()
        data[container.get_label()] = (list(x), list(y), [
            (segment[0][1], segment[1][1]) for segment in bars.get_segments()])
    return data


# -- the figure --------------------------------------------------------------------------

def test_the_figure_has_both_panels_and_every_server_of_the_run():
    figure, series = chart.list_figure(bench_result())
    try:
        ops_axes, cpu_axes = figure.axes
        assert ops_axes.get_title().startswith("LIST ops/s (median round; bars: lowest to")
        assert cpu_axes.get_ylabel() == "server CPU µs per LIST"
        assert [tick.get_text() for tick in ops_axes.get_xticklabels()] == ["1", "10", "50"]
        assert figure.get_suptitle().startswith("LIST, one connection per request, pool 50, "
                                                "full run, 3 rounds of 3 s per point")
        legends = [line.legend for line in series]
        assert legends == ["asyncio-protocol (reference)", "threadpool(50) (reference)",
                           "prefork(50) (reference)", "thread(50): Python 3.11.7",
                           "process(50): Python 3.11.7", "thread-ft(50): Python 3.13.5, GIL off",
                           "thread-ft-gil(50): Python 3.13.5, GIL on"]
        assert [text.get_text() for text in figure.legends[0].get_texts()] == legends
        # ops/s: the median round, bars to the lowest and highest round
        drawn = errorbar_data(ops_axes)
        assert list(drawn) == legends
        x, y, bars = drawn["thread-ft(50): Python 3.13.5, GIL off"]
        assert y == [2300, 3200, 3100]
        assert bars == [(2200, 2600), (3100, 3500), (3000, 3400)]
        # thread-ft-gil has its one point at 50 clients, the third level
        x_gil, y_gil, _ = drawn["thread-ft-gil(50): Python 3.13.5, GIL on"]
        assert y_gil == [1300] and round(x_gil[0]) == 2
        # server CPU per LIST, the same series
        cpu = {line.get_label(): list(line.get_ydata()) for line in cpu_axes.get_lines()}
        assert cpu["thread(50): Python 3.11.7"] == [370, 710, 470]
        assert cpu["thread-ft-gil(50): Python 3.13.5, GIL on"] == [790]
    finally:
        figure.clear()
        chart.pyplot().close(figure)


def test_our_servers_wear_their_models_colours_and_references_are_dashed():
    series = {line.label: line for line in chart.list_series(bench_result())}
    assert {label: (line.model, line.colour, line.linestyle) for label, line in series.items()
            if not line.reference} == {
        "thread(50)": ("thread", MODE_COLOURS["thread"], "-"),
        "process(50)": ("process", MODE_COLOURS["process"], "-"),
        "thread-ft(50)": ("free-threaded thread", MODE_COLOURS["free-threaded thread"], "-"),
        "thread-ft-gil(50)": ("thread (free-threaded build, GIL on)",
                              MODE_COLOURS["thread (free-threaded build, GIL on)"], "-")}
    # a reference that stands for a model is dashed in its colour; any other label, grey
    assert (series["threadpool(50)"].colour, series["threadpool(50)"].linestyle) == \
        (MODE_COLOURS["thread"], "--")
    assert series["prefork(50)"].colour == MODE_COLOURS["process"]
    assert series["asyncio-protocol"].colour in chart.REFERENCE_GREYS
    assert all(line.reference for label, line in series.items()
               if label in ("asyncio-protocol", "threadpool(50)", "prefork(50)"))


def test_a_run_without_free_threaded_points_still_draws(tmp_path):
    out = bench_result(free_threaded=False)
    assert not any(r["server"].startswith("thread-ft") for r in out["list"])
    path = chart.write_list_chart(out, tmp_path / "x-list.png")
    assert png_size(path) == CHART_PIXELS
    assert [line.label for line in chart.list_series(out)] == [
        "asyncio-protocol", "threadpool(50)", "prefork(50)", "thread(50)", "process(50)"]


def test_an_older_file_and_a_level_missing_for_a_server_still_draw():
    """Files from before the free-threaded points: no variants in meta, no variant or
    interpreter on the records; a point without ops/s is left out."""
    out = bench_result(free_threaded=False)
    del out["meta"]["variants"]
    for record in out["list"]:
        record.pop("variant")
        record.pop("rounds_ops_per_s")
    out["servers"] = []
    out["list"][-1]["ops_per_s"] = None          # process(50) at 50 clients
    series = {line.label: line for line in chart.list_series(out)}
    assert series["thread(50)"].model == "thread" and series["process(50)"].model == "process"
    assert series["process(50)"].clients == [1, 10]
    assert series["thread(50)"].ops_low == series["thread(50)"].ops_per_s    # one round: no bar
    figure, _ = chart.list_figure(out)
    chart.pyplot().close(figure)


# -- where it is written -----------------------------------------------------------------

def test_the_chart_command_draws_next_to_the_json_or_where_asked(tmp_path, capsys):
    source = write_result(tmp_path, bench_result())
    assert report.main(["--chart", str(source)]) == 0
    drawn = tmp_path / "bench-20261125-145059-list.png"
    assert capsys.readouterr().out == f"wrote {drawn}\n"
    assert png_size(drawn) == CHART_PIXELS
    assert report.main(["--chart", str(source), "--out", str(tmp_path / "elsewhere.png")]) == 0
    assert png_size(tmp_path / "elsewhere.png") == CHART_PIXELS


def test_out_must_name_a_png(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        report.main(["--chart", str(tmp_path / "x.json"), "--out", str(tmp_path / "x.svgz")])
    assert caught.value.code == 2
    assert "the chart is a PNG file" in capsys.readouterr().err


def test_a_bench_run_draws_its_chart_next_to_its_json(tmp_path, monkeypatch, capsys):
    """python -m bench, its measuring phases replaced by the synthetic result's records."""
    out_file = tmp_path / "bench-run.json"
    result = bench_result()
    planned = variants(["thread", "process"], list(LEVELS),
                       FreeThreaded(python=FT_PYTHON, version="3.13.5"))

    def plan_run(args):
        args.ft, args.variants = FreeThreaded(python=FT_PYTHON, version="3.13.5"), planned

    def list_phase(_ws, _args, out):
        out["list"] += result["list"]
        out["servers"] += result["servers"]

    for name, replacement in (("plan_run", plan_run), ("_meta", lambda args: result["meta"]),
                              ("measure_bounds", lambda *a: None),
                              ("run_list_phase", list_phase),
                              ("make_files", lambda *a: None),
                              ("run_transfer_phase", lambda *a: None),
                              ("run_memory_phase", lambda *a: None),
                              ("evaluate_targets", lambda out: []),
                              ("render", lambda out: "the table")):
        monkeypatch.setattr(bench_run, name, replacement)
    assert bench_run.main(["--out", str(out_file)]) == 0
    printed = capsys.readouterr().out
    assert printed.endswith(f"wrote {out_file}\nwrote {tmp_path / 'bench-run-list.png'}\n")
    assert json.loads(out_file.read_text())["list"] == result["list"]
    assert png_size(tmp_path / "bench-run-list.png") == CHART_PIXELS


# -- errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("content, why", [
    ('{"backend": "local", "machine": {"cpus": 2}}', 'not a bench result (no "list" records'),
    ("[1, 2, 3]", 'not a bench result (no "list" records'),
    ('{"list": [{"clients": 1, "ops_per_s": 10}]}',
     "not a bench result (LIST record 0 lacks server, clients or ops_per_s"),
    ('{"list": []}', "no LIST point with ops/s to draw"),
    ("scenario,mode\nthread-pool5,thread\n", "not a bench result (not JSON: "),
])
def test_a_file_that_is_not_a_bench_result_is_one_line_naming_it(tmp_path, capsys, content,
                                                                 why):
    source = tmp_path / "summary.json"
    source.write_text(content)
    assert report.main(["--chart", str(source)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m bench.report: error: {source}: {why}")
    assert err.count("\n") == 1
    assert not (tmp_path / "summary-list.png").exists()


def test_a_missing_file_is_one_line_naming_it(tmp_path, capsys):
    assert report.main(["--chart", str(tmp_path / "nothing.json")]) == 2
    assert capsys.readouterr().err == (f"python -m bench.report: error: {tmp_path}/nothing.json: "
                                       "cannot read it (No such file or directory)\n")


def test_without_matplotlib_the_run_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)        # import matplotlib fails
    source = write_result(tmp_path, bench_result())
    assert chart.draw_after_run(json.loads(source.read_text()), source) is None
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("no LIST chart: matplotlib is not installed (pip install -e "
                            f"'.[lab]'); `python -m bench.report --chart {source}` draws it "
                            "later\n")
    assert report.main(["--chart", str(source)]) == 2
    assert "error: matplotlib is not installed" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [source]
