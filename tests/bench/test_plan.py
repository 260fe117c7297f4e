"""``python -m bench``: which servers a run measures (the free-threaded ones when
there is a free-threaded interpreter), the errors before anything starts, and the
targets and lines the report draws from the free-threaded points."""

import json
import stat
import sys
from pathlib import Path

import pytest

from bench import plan, report
from bench import run as bench_run
from bench.plan import (ALL_TRANSFERS, FT, FT_GIL, SINGLE_100MB, FreeThreaded, PlanError,
                        free_threaded_python, variants)
from scenarios.backends import local

FT_PYTHON = "/opt/ft/bin/python3.13t"
FREE = {"implementation": "CPython", "version": "3.13.5", "free_threaded": True,
        "gil_enabled": False}
GIL_BUILD = dict(FREE, version="3.11.2", free_threaded=False, gil_enabled=True)


def fake_python(path: Path, info: dict) -> Path:
    """An 'interpreter' that answers the probe with ``info``, whatever it is asked."""
    path.write_text(f"#!/bin/sh\necho '{json.dumps(info)}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# -- options and plan (no process) ---------------------------------------------------------

@pytest.mark.unit
def test_ft_python_and_no_ft_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as caught:
        bench_run.parse_args(["--ft-python", FT_PYTHON, "--no-ft"])
    assert caught.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.unit
def test_modes_may_be_empty_and_are_taken_once():
    assert bench_run.parse_args(["--modes", ""]).modes == []
    assert bench_run.parse_args(["--modes", "thread, process,thread"]).modes == \
        ["thread", "process"]
    args = bench_run.parse_args([])
    assert (args.modes, args.ft_python, args.no_ft) == (["thread", "process"], None, False)


@pytest.mark.unit
def test_without_a_free_threaded_python_only_the_default_interpreter_is_measured():
    planned = variants(["thread", "process"], [1, 10, 50], FreeThreaded(skipped="-"))
    assert [v.name for v in planned] == ["thread", "process"]
    for variant in planned:
        assert (variant.python, variant.wrapper) == (sys.executable, [])
        assert variant.list_levels == (1, 10, 50)
        assert variant.transfers == ALL_TRANSFERS and len(ALL_TRANSFERS) == 8
        assert variant.memory and variant.gil_enabled is None


@pytest.mark.unit
def test_the_free_threaded_points():
    planned = variants(["thread", "process"], [1, 10, 50],
                       FreeThreaded(python=FT_PYTHON, version="3.13.5"))
    assert [v.name for v in planned] == ["thread", "process", FT, FT_GIL]
    ft, ft_gil = planned[2:]
    # thread-ft: everything the issue asks, on the free-threaded binary, PYTHON_GIL unset
    assert (ft.mode, ft.python, ft.gil_enabled) == ("thread", FT_PYTHON, False)
    assert ft.wrapper == ["env", "-u", "PYTHON_GIL"]
    assert ft.list_levels == (1, 10, 50)
    assert ft.transfers == SINGLE_100MB == (("GET", "100MB", 1), ("UPLOAD", "100MB", 1))
    assert ft.memory
    # thread-ft-gil: the same binary with PYTHON_GIL=1, LIST at the top level only
    assert (ft_gil.mode, ft_gil.python, ft_gil.gil_enabled) == ("thread", FT_PYTHON, True)
    assert ft_gil.wrapper == ["env", "PYTHON_GIL=1"]
    assert ft_gil.list_levels == (50,)
    assert (ft_gil.transfers, ft_gil.memory) == ((), False)
    assert ft_gil.record()["list_levels"] == [50]


@pytest.mark.unit
def test_the_gil_comparison_is_at_the_top_level_asked_for():
    planned = variants([], [10, 2], FreeThreaded(python=FT_PYTHON, version="3.13.5"))
    assert [(v.name, v.list_levels) for v in planned] == [(FT, (10, 2)), (FT_GIL, (10,))]


@pytest.mark.unit
def test_no_ft_skips_with_a_line_saying_so():
    assert free_threaded_python(skip=True) == FreeThreaded(
        skipped="free-threaded points skipped (--no-ft)")


@pytest.mark.unit
def test_a_missing_venv_ft_is_skipped_with_how_to_make_it(no_venv_ft):
    ft = free_threaded_python()
    assert ft.python is None
    assert ft.skipped == (f"free-threaded points skipped: {no_venv_ft} does not exist "
                          "(`make venv-ft` makes it, or pass --ft-python PATH)")
    assert [v.name for v in variants(["thread"], [50], ft)] == ["thread"]


@pytest.mark.unit
def test_a_missing_ft_python_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "python3.13t"
    with pytest.raises(PlanError) as caught:
        free_threaded_python(str(missing))
    assert str(caught.value) == f"--ft-python: python {str(missing)!r}: {missing} does not exist"


@pytest.mark.unit
def test_nothing_to_measure_is_an_error(no_venv_ft):
    args = bench_run.parse_args(["--modes", ""])
    with pytest.raises(PlanError, match=r"^no server to measure: --modes is empty and "
                                        r"free-threaded points skipped: "):
        bench_run.plan_run(args)


@pytest.mark.unit
def test_main_stops_on_a_bad_ft_python_before_anything_starts(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = bench_run.main(["--ft-python", str(tmp_path / "nope"), "--out", str(out)])
    assert code == 2
    assert capsys.readouterr().err == (
        f"python -m bench: error: --ft-python: python {str(tmp_path / 'nope')!r}: "
        f"{tmp_path / 'nope'} does not exist\n")
    assert not out.exists()


# -- finding the interpreter (a probe process) ------------------------------------------------

@pytest.mark.integration
def test_an_ft_python_is_probed(tmp_path):
    python = fake_python(tmp_path / "python3.13t", FREE)
    assert free_threaded_python(str(python)) == FreeThreaded(python=str(python),
                                                             version="3.13.5")


@pytest.mark.integration
def test_an_ft_python_with_the_gil_built_in_is_refused(tmp_path):
    python = fake_python(tmp_path / "python3", GIL_BUILD)
    with pytest.raises(PlanError) as caught:
        free_threaded_python(str(python))
    assert str(caught.value).startswith(f"--ft-python: python freethreaded: {python} is "
                                        "Python 3.11.2 without free threading")


@pytest.mark.integration
def test_a_venv_ft_that_is_not_free_threaded_says_how_to_rebuild_or_skip(tmp_path, monkeypatch):
    python = fake_python(tmp_path / "python", GIL_BUILD)
    monkeypatch.setattr(local, "FREETHREADED_PYTHON", python)
    with pytest.raises(PlanError) as caught:
        free_threaded_python()
    message = str(caught.value)
    assert message.startswith(f"free-threaded points: python freethreaded: {python} is ")
    assert message.endswith("(`make venv-ft` rebuilds it; --no-ft skips these points)")


@pytest.mark.integration
def test_a_server_started_for_a_variant_reports_its_interpreter(tmp_path):
    """The bench's server for a variant runs behind its PYTHON_GIL wrapper, carries the
    variant's label, and records what its /stats says; on this interpreter (a GIL build
    unless the suite runs on .venv-ft) a server labelled GIL-off is caught."""
    from server.stats import interpreter_info
    here = interpreter_info()
    variant = plan.Variant(FT, "thread", sys.executable, gil_enabled=False)
    (tmp_path / "storage").mkdir()
    server = bench_run._real_server(variant, 2, str(tmp_path / "storage"),
                                    str(tmp_path / "server.log"))
    server.start()
    try:
        assert server.label == f"{FT}(2)"
        assert server.command()[:3] == ["env", "-u", "PYTHON_GIL"]
        info = bench_run._server_info(server, server.label, variant)
    finally:
        assert server.stop() == 0
    assert info["interpreter"] == here
    assert info["expected_gil_enabled"] is False
    out = _out([], servers=[info])
    (check,) = [t for t in report.evaluate_targets(out) if "(their /stats)" in t["name"]]
    assert check["pass"] is (here["gil_enabled"] is False)


# -- report ----------------------------------------------------------------------------------

def _list(server, clients, ops):
    return {"server": server, "op": "LIST", "clients": clients, "ops_per_s": ops,
            "rounds_ops_per_s": [ops], "p50_ms": 1.0, "p99_ms": 2.0, "errors": 0,
            "server_cpu_pct": 100.0, "client_cpu_pct": 50.0, "other_cpu_pct": 0.0,
            "server_cpu_us_per_op": 300.0}


def _out(records, servers=(), ft=None, names=("thread", "process", FT, FT_GIL)):
    ft = ft or {"python": FT_PYTHON, "version": "3.13.5", "skipped": None}
    return {"meta": {"list_pool": 50, "list_clients_max": 50, "modes": ["thread", "process"],
                     "variants": [{"name": name} for name in names], "free_threaded": ft,
                     "quick": True, "seconds": 1.0, "cpus": 2, "python": "3.11.2",
                     "commit": "0123456789abc", "list_rounds": 1, "list_seconds": 1.0,
                     "transfer_pool": 10,
                     "client": "one process per client, one connection per request"},
            "bounds": {"base64": {"engine": "pybase64", "piece_bytes": 786432,
                                  **{f"{key}{best}_mb_per_s": 100.0
                                     for key in ("encode", "decode_strict",
                                                 "binascii_decode_strict")
                                     for best in ("", "_best")}},
                       "loopback_tcp": {"mb_per_s": 3000.0, "best_mb_per_s": 3500.0}},
            "list": list(records), "transfers": [], "memory": [], "servers": list(servers)}


def _servers(ft_gil_enabled=False, gil_gil_enabled=True):
    return [{"server": f"{FT}(50)", "idle_rss_bytes": 1 << 20, "exit_code": 0,
             "expected_gil_enabled": False,
             "interpreter": dict(FREE, gil_enabled=ft_gil_enabled)},
            {"server": f"{FT_GIL}(50)", "idle_rss_bytes": 1 << 20, "exit_code": 0,
             "expected_gil_enabled": True,
             "interpreter": dict(FREE, gil_enabled=gil_gil_enabled)},
            {"server": "process(50)", "idle_rss_bytes": 1 << 20, "exit_code": 0}]


def _targets(out):
    return {t["name"]: t for t in report.evaluate_targets(out)}


@pytest.mark.unit
@pytest.mark.parametrize("ft_ops, over_gil, over_process", [
    (3000, True, True),         # 2.0x the GIL, 1.2x process
    (2000, False, False),       # 1.33x the GIL, 0.8x process
    (2250, True, False),        # exactly 1.5x the GIL
])
def test_the_free_threaded_targets(ft_ops, over_gil, over_process):
    out = _out([_list("asyncio-protocol", 50, 5000), _list("thread(50)", 50, 2000),
                _list("process(50)", 50, 2500), _list(f"{FT}(50)", 50, ft_ops),
                _list(f"{FT_GIL}(50)", 50, 1500)], servers=_servers())
    targets = _targets(out)
    gil = targets[f"LIST@50 {FT} >= 1.5x the same binary with PYTHON_GIL=1"]
    assert (gil["pass"], gil["value"]) == (over_gil, round(ft_ops / 1500, 3))
    assert gil["detail"] == f"{ft_ops} vs 1500 ops/s"
    process = targets[f"LIST@50 {FT} >= 1x process mode on the default interpreter"]
    assert (process["pass"], process["value"]) == (over_process, round(ft_ops / 2500, 3))
    labelled = targets[f"{FT} servers ran without the GIL, {FT_GIL} with it (their /stats)"]
    assert labelled["pass"] and labelled["detail"] == "2 servers as labelled"
    # the asyncio ratios stay targets of the default interpreter's modes only
    assert sorted(name for name in targets if "of asyncio" in name) == [
        "LIST@50 process >= 90% of asyncio", "LIST@50 thread >= 60% of asyncio"]


@pytest.mark.unit
def test_a_free_threaded_server_that_ran_with_the_gil_fails_its_check():
    out = _out([], servers=_servers(ft_gil_enabled=True))
    check = _targets(out)[f"{FT} servers ran without the GIL, {FT_GIL} with it (their /stats)"]
    assert not check["pass"]
    assert (check["value"], check["detail"]) == (1, f"{FT}(50): gil_enabled True")


@pytest.mark.unit
def test_transfer_and_memory_targets_follow_the_variant_not_the_mode():
    def transfer(variant, op, ratio):
        return {"server": f"{variant}(10)", "variant": variant, "mode": "thread", "op": op,
                "size_label": "100MB", "clients": 1, "mb_per_s": 1000.0, "errors": 0,
                "loopback_ratio": ratio, "rounds": 3}
    out = _out([], names=("thread", FT))
    out["transfers"] = [transfer("thread", "GET", 0.5), transfer(FT, "GET", 0.1)]
    out["memory"] = [{"variant": FT, "mode": "thread", "rss_increase_bytes": 80 << 20,
                      "idle_rss_bytes": 1 << 20, "rss_peak_bytes": 81 << 20, "errors": 0}]
    targets = _targets(out)
    assert targets["GET 100MB@1 thread >= 0.25 of loopback TCP"]["value"] == 0.5
    assert targets[f"GET 100MB@1 {FT} >= 0.25 of loopback TCP"]["value"] == 0.1
    assert not targets[f"RSS increase, 5 GET + 5 UPLOAD of 100MB, {FT} < 64 MiB"]["pass"]


@pytest.mark.unit
def test_without_the_free_threaded_points_there_are_no_targets_for_them():
    out = _out([_list("process(50)", 50, 2500)], names=("thread", "process"))
    assert not [name for name in _targets(out) if FT in name]


@pytest.mark.unit
def test_the_report_names_the_free_threaded_interpreter_or_why_it_was_skipped():
    out = _out([_list("asyncio-protocol", 50, 5000), _list(f"{FT_GIL}(50)", 50, 1500)])
    out["targets"] = report.evaluate_targets(out)
    text = report.render(out)
    assert (f"free-threaded: {FT} (GIL off) and {FT_GIL} (PYTHON_GIL=1, LIST only) on "
            f"{FT_PYTHON}, Python 3.13.5") in text.splitlines()
    assert f"{FT_GIL}(50)" in text
    skipped = "free-threaded points skipped: .venv-ft/bin/python does not exist (...)"
    out = _out([], ft={"python": None, "version": None, "skipped": skipped},
               names=("thread",))
    out["targets"] = report.evaluate_targets(out)
    assert report.render(out).splitlines().count(skipped) == 1


@pytest.mark.unit
def test_each_mode_s_list_target_names_its_bare_reference_of_the_same_run():
    out = _out([_list("asyncio-protocol", 50, 4000), _list("thread(50)", 50, 2400),
                _list("process(50)", 50, 2800), _list("threadpool(50)", 50, 3400),
                _list("prefork(50)", 50, 3600)], names=("thread", "process"))
    targets = _targets(out)
    process = targets["LIST@50 process >= 90% of asyncio"]
    assert (process["pass"], process["value"]) == (False, 0.7)
    assert process["detail"] == ("2800 vs 4000 ops/s; a bare prefork(50) in the same run: "
                                 "0.90 of asyncio")
    thread = targets["LIST@50 thread >= 60% of asyncio"]
    assert thread["pass"] and thread["detail"].endswith(
        "a bare threadpool(50) in the same run: 0.85 of asyncio")
    # a run without the references (older files) says only the ratio
    out = _out([_list("asyncio-protocol", 50, 4000), _list("process(50)", 50, 2800)],
               names=("process",))
    assert _targets(out)["LIST@50 process >= 90% of asyncio"]["detail"] == \
        "2800 vs 4000 ops/s"


@pytest.mark.unit
def test_a_list_target_gives_the_spread_of_the_ratios_round_by_round():
    def rounds(server, ops, each):
        return dict(_list(server, 50, ops), rounds_ops_per_s=each)
    out = _out([rounds("asyncio-protocol", 4000, [4000, 5000, 3000]),
                rounds("process(50)", 3600, [3600, 4000, 3000]),
                rounds(f"{FT}(50)", 3000, [3000, 2500, 3300])], names=("process", FT))
    targets = _targets(out)
    # round by round 0.90, 0.80, 1.00: the median rounds' 0.90 alone hides how close it was
    process = targets["LIST@50 process >= 90% of asyncio"]
    assert process["pass"] and process["value"] == 0.9
    assert process["detail"] == "3600 vs 4000 ops/s; rounds' ratios 0.80-1.00"
    over_process = targets[f"LIST@50 {FT} >= 1x process mode on the default interpreter"]
    assert over_process["detail"] == "3000 vs 3600 ops/s; rounds' ratios 0.62-1.10"
