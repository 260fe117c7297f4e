"""CPU placement (--server-cpuset, --locust-cpuset): parsing, validation, the commands."""

import pytest

from scenarios.__main__ import main
from scenarios.backends import LocalBackend
from scenarios.placement import (Placement, PlacementError, format_cpu_list, parse_cpu_list,
                                 placement_from_options, usable_cpus)
from scenarios.report import write_markdown
from scenarios.results import SUMMARY_COLUMNS

pytestmark = pytest.mark.unit

ONE_SCENARIO = """\
scenarios:
  - name: one
    mode: thread
    pool: 5
    server_cpus: 1
    server_memory: 512Mi
    users: 5
    spawn_rate: 5
    duration: 5s
    locust_workers: 1
    file_sizes: ["1KB"]
    upload_size: 1KB
    wait: "1"
"""
TWO = frozenset({0, 1})
FOUR = frozenset({0, 1, 2, 3})


@pytest.mark.parametrize("text, cpus", [
    ("0", {0}), ("0-1", {0, 1}), ("0,2", {0, 2}), (" 1 , 3-4", {1, 3, 4}),
    ("0-6:2", {0, 2, 4, 6}), ("3-3", {3}),
])
def test_cpu_lists_in_tasksets_syntax(text, cpus):
    assert parse_cpu_list(text) == cpus


@pytest.mark.parametrize("text", ["", "a", "1-", "-1", "2-1", "0,,1", "0-4:0", "1.5"])
def test_malformed_cpu_lists_are_refused(text):
    with pytest.raises(PlacementError):
        parse_cpu_list(text)


def test_format_cpu_list_is_compact():
    assert format_cpu_list({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert format_cpu_list([3]) == "3"


def test_no_option_no_placement():
    assert placement_from_options(None, None, "compose") is None


def test_both_sets_given():
    placement = placement_from_options("0", "1", "local", TWO, taskset="/usr/bin/taskset")
    assert placement == Placement(frozenset({0}), frozenset({1}))
    assert placement.server_prefix() == ["taskset", "-c", "0"]
    assert placement.locust_prefix() == ["taskset", "-c", "1"]
    assert placement.record()["server"] == "0" and placement.record()["locust"] == "1"


@pytest.mark.parametrize("server, locust, expected", [
    ("0", None, ({0}, {1, 2, 3})), (None, "3", ({0, 1, 2}, {3})), ("0-1", "3", ({0, 1}, {3})),
])
def test_one_set_given_the_other_side_gets_the_rest(server, locust, expected):
    placement = placement_from_options(server, locust, "local", FOUR, taskset="taskset")
    assert (placement.server, placement.locust) == tuple(map(frozenset, expected))


@pytest.mark.parametrize("server, locust, backend, message", [
    ("0", "1", "compose", "CPU placement (--server-cpuset and --locust-cpuset) works with the "
                          "local backend only, not compose"),
    (None, "1", "k8s", "CPU placement (--locust-cpuset) works with the local backend only"),
    ("0", "2", "local", "--locust-cpuset 2: CPU 2 is not available on this machine "
                        "(usable: 0-1)"),
    ("0-7", "1", "local", "--server-cpuset 0-7: CPU 2-7 is not available"),
    ("0-1", "1", "local", "--server-cpuset 0-1 and --locust-cpuset 1 overlap on CPU 1; "
                          "give them separate CPUs"),
    ("0,1", None, "local", "--server-cpuset 0-1 leaves no CPU for Locust on this machine; "
                           "give --locust-cpuset as well"),
    ("x", "1", "local", "--server-cpuset: 'x' is not a CPU list"),
])
def test_bad_placements_are_one_line_errors(server, locust, backend, message):
    with pytest.raises(PlacementError) as error:
        placement_from_options(server, locust, backend, TWO, taskset="taskset")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_without_taskset_placement_is_refused():
    with pytest.raises(PlacementError, match="needs taskset"):
        placement_from_options("0", "1", "local", TWO, taskset=None)


@pytest.mark.parametrize("argv, message", [
    (["--server-cpuset", "4096"], "--server-cpuset 4096: CPU 4096 is not available"),
    (["--server-cpuset", "0", "--locust-cpuset", "0"], "overlap on CPU 0"),
    (["--server-cpuset", "0", "--backend", "compose"], "works with the local backend only"),
    (["--locust-cpuset", "0", "--backend", "k8s"], "works with the local backend only"),
    (["--locust-cpuset", "1-0"], "--locust-cpuset: '1-0' is not a CPU range"),
])
def test_run_refuses_bad_placements_before_anything_starts(argv, message, tmp_path, capsys):
    (tmp_path / "one.yaml").write_text(ONE_SCENARIO)
    results = tmp_path / "results"
    assert main(["run", "one", "--file", str(tmp_path / "one.yaml"),
                 "--results", str(results), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1
    assert not results.exists()                     # no results folder: nothing started


def test_the_local_backend_prefixes_server_and_locust_with_taskset():
    placement = Placement(frozenset({0}), frozenset({1}))
    backend = LocalBackend(cpu_placement=placement)
    assert backend.placement == placement.record()
    assert LocalBackend().placement is None
    assert usable_cpus() >= {min(usable_cpus())}


def test_the_report_says_when_pinning_leaves_the_server_fewer_cpus_than_its_limit(tmp_path):
    row = dict.fromkeys(SUMMARY_COLUMNS)
    row.update(scenario="process-pool5", status="ok", mode="process", pool=5, server_cpus=2.0,
               rps=100.0, p95_ms=10.0, failures=0, limits_enforced="yes",
               load_generator_saturated="no")
    info = {"backend": "local", "machine": {"cpus": 2},
            "placement": Placement(frozenset({0}), frozenset({1})).record()}
    report = write_markdown(tmp_path, info, [row], []).read_text()
    assert "CPU placement: the server pinned to CPU 0, every Locust process to CPU 1" in report
    assert "The server had 1 CPU to run on, less than the server_cpus limit of: " \
           "process-pool5." in report
