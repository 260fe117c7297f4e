"""The scenario file's loader: what it accepts and every way it refuses."""

import dataclasses
import textwrap

import pytest

from scenarios import ScenarioError, load, parse
from scenarios.__main__ import main
from client.capacity import CAPACITY_DEFAULTS
from scenarios.schema import CAPACITY_SLACK_SECONDS, Weights

pytestmark = pytest.mark.unit

GOOD = """\
defaults:
  mode: thread
  pool: 5
  server_cpus: 2
  server_memory: 1Gi
  users: 50
  spawn_rate: 10
  duration: 2m
  locust_workers: 2
  file_sizes: ["1KB", "100KB"]
  upload_size: 100KB
  wait: "0.5-1.5"
scenarios:
  - name: thread-pool5
{scenario}
"""


def scenario_file(tmp_path, scenario="", text=None):
    """A scenario file whose one scenario 'thread-pool5' gets the extra keys."""
    if text is None:
        text = GOOD.format(scenario=textwrap.indent(textwrap.dedent(scenario), "    "))
    path = tmp_path / "scenarios.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


BROKEN = [
    # (extra keys of scenario 'thread-pool5', expected error text)
    ("pool: 0", "scenario 'thread-pool5': key 'pool': 0 is not between 1 and 1024"),
    ("pool: 1025", "scenario 'thread-pool5': key 'pool': 1025 is not between 1 and 1024"),
    ("pool: '5'", "scenario 'thread-pool5': key 'pool': '5' is not an integer"),
    ("pool: 5.5", "scenario 'thread-pool5': key 'pool': 5.5 is not an integer"),
    ("pool: true", "scenario 'thread-pool5': key 'pool': True is not an integer"),
    ("mode: fork", "scenario 'thread-pool5': key 'mode': 'fork' is not one of thread, process"),
    ("users: -5", "scenario 'thread-pool5': key 'users': -5 is negative"),
    ("users: 0", "scenario 'thread-pool5': key 'users': 0 is not between 1 and 100000"),
    ("users: many", "scenario 'thread-pool5': key 'users': 'many' is not an integer"),
    ("spawn_rate: 0", "scenario 'thread-pool5': key 'spawn_rate': 0 is not greater than 0"),
    ("spawn_rate: -2.5",
     "scenario 'thread-pool5': key 'spawn_rate': -2.5 is not greater than 0"),
    ("spawn_rate: fast", "scenario 'thread-pool5': key 'spawn_rate': 'fast' is not a number"),
    ("server_cpus: 0", "scenario 'thread-pool5': key 'server_cpus': 0 is not between 0.05 and 64"),
    ("server_cpus: two", "scenario 'thread-pool5': key 'server_cpus': 'two' is not a number"),
    ("server_cpus: 0.0005",
     "scenario 'thread-pool5': key 'server_cpus': 0.0005 is not between 0.05 and 64"),
    ("server_cpus: 0.1234",
     "scenario 'thread-pool5': key 'server_cpus': 0.1234 is finer than a millicpu"),
    ("server_memory: 1gb",
     "scenario 'thread-pool5': key 'server_memory': '1gb' is not a memory quantity"),
    ("server_memory: 512",
     "scenario 'thread-pool5': key 'server_memory': 512 is not a memory quantity"),
    ("server_memory: 1.5Gi",
     "scenario 'thread-pool5': key 'server_memory': '1.5Gi' is not a memory quantity"),
    ("server_memory: 16Mi",
     "scenario 'thread-pool5': key 'server_memory': '16Mi' is less than 32Mi"),
    ("duration: 0", "scenario 'thread-pool5': key 'duration': 0 is not between 1 second"),
    ("duration: -30", "scenario 'thread-pool5': key 'duration': -30 is not between 1 second"),
    ("duration: 2 minutes",
     "scenario 'thread-pool5': key 'duration': '2 minutes' is not a duration"),
    ("duration: 1d", "scenario 'thread-pool5': key 'duration': '1d' is not a duration"),
    ("duration: 25h", "scenario 'thread-pool5': key 'duration': '25h' is not between 1 second"),
    ("duration: ''", "scenario 'thread-pool5': key 'duration': '' is not a duration"),
    ("locust_workers: 0",
     "scenario 'thread-pool5': key 'locust_workers': 0 is not between 1 and 100"),
    ("file_sizes: [1KB, 1XB]",
     "scenario 'thread-pool5': key 'file_sizes': '1XB' is not a size like"),
    ("file_sizes: [1kb]", "scenario 'thread-pool5': key 'file_sizes': '1kb' is not a size like"),
    ("file_sizes: []", "scenario 'thread-pool5': key 'file_sizes': [] is not a non-empty list"),
    ("file_sizes: 1KB", "scenario 'thread-pool5': key 'file_sizes': '1KB' is not a non-empty list"),
    ("file_sizes: [0KB]", "scenario 'thread-pool5': key 'file_sizes': '0KB' is zero"),
    ("file_sizes: [2GB]", "scenario 'thread-pool5': key 'file_sizes': '2GB' is larger than 1GB"),
    ("file_sizes: [1KB, 1KB]", "scenario 'thread-pool5': key 'file_sizes': ['1KB', '1KB'] repeats"),
    ("upload_size: lots", "scenario 'thread-pool5': key 'upload_size': 'lots' is not a size like"),
    ("upload_size: -1KB",
     "scenario 'thread-pool5': key 'upload_size': '-1KB' is not a size like"),
    ("wait: fast", "scenario 'thread-pool5': key 'wait': 'fast' is not a wait like"),
    ("wait: '2-1'", "scenario 'thread-pool5': key 'wait': '2-1': the minimum is above"),
    ("weights: {list: 0, get: 0, upload: 0, delete: 0}",
     "scenario 'thread-pool5': key 'weights': all weights are 0"),
    ("weights: {get: -1}", "scenario 'thread-pool5': key 'weights': get: -1 is negative"),
    ("weights: {get: high}",
     "scenario 'thread-pool5': key 'weights': get: 'high' is not an integer"),
    ("weights: {post: 1}", "scenario 'thread-pool5': key 'weights': unknown weight 'post'"),
    ("weights: [1, 4, 2, 1]",
     "scenario 'thread-pool5': key 'weights': [1, 4, 2, 1] is not a mapping"),
    ("capacity: {step_users: 0}",
     "scenario 'thread-pool5': key 'capacity': step_users: 0 is not between 1 and 100000"),
    ("capacity: {start_users: 50, max_users: 10}",
     "scenario 'thread-pool5': key 'capacity': max_users: 10 is below start_users (50)"),
    ("capacity: {slo_ms: 100}", "scenario 'thread-pool5': key 'capacity': unknown key 'slo_ms'"),
    ("capacity: {slo_p95_ms: 0}",
     "scenario 'thread-pool5': key 'capacity': slo_p95_ms: 0 is not greater than 0"),
    ("capacity: {slo_p95_ms: fast}",
     "scenario 'thread-pool5': key 'capacity': slo_p95_ms: 'fast' is not a number"),
    ("capacity: {max_failure_ratio: 1.5}",
     "scenario 'thread-pool5': key 'capacity': max_failure_ratio: 1.5 is not between 0 and 1"),
    ("capacity: {step_users: 100, step_seconds: 5}",   # 100 users at 10/s take 10 s
     "scenario 'thread-pool5': key 'capacity': step_seconds: 5 leaves no window to measure"),
    ("capacity: [20, 20]", "scenario 'thread-pool5': key 'capacity': [20, 20] is not a mapping"),
    ("python: 3.13", "scenario 'thread-pool5': key 'python': 3.13 is not default or "
                     "freethreaded or the path of an interpreter"),
    ("python: ''", "scenario 'thread-pool5': key 'python': '' is not default or freethreaded"),
    ("python: [default]", "scenario 'thread-pool5': key 'python': ['default'] is not default"),
    ("python: ' /usr/bin/python3'",
     "scenario 'thread-pool5': key 'python': ' /usr/bin/python3' has leading or trailing"),
    ("pol: 5", "scenario 'thread-pool5': unknown key 'pol'"),
    ("description: 5", "scenario 'thread-pool5': key 'description': 5 is not a string"),
]


@pytest.mark.parametrize("extra, expected", BROKEN, ids=[case[0] for case in BROKEN])
def test_broken_scenario_is_refused_naming_scenario_key_and_value(tmp_path, extra, expected):
    with pytest.raises(ScenarioError) as caught:
        load(scenario_file(tmp_path, extra))
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


BROKEN_FILES = [
    # (whole file, expected error text)
    ("scenarios:\n  - name: Bad_Name\n",
     "scenario 'Bad_Name': key 'name': 'Bad_Name' is not a name"),
    ("scenarios:\n  - name: " + "a" * 41 + "\n", "is not a name of at most 40"),
    ("scenarios:\n  - name: lonely\n    mode: thread\n",
     "scenario 'lonely': missing key 'pool' (set it in the scenario or in defaults)"),
    ("scenarios:\n  - mode: thread\n", "scenario 1: missing key 'name'"),
    ("scenarios:\n  - just-a-string\n", "scenario 1: 'just-a-string' is not a mapping"),
    ("scenarios: {name: x}\n", "scenarios: {'name': 'x'} is not a list"),
    ("scenario:\n  - name: x\n", "unknown top-level key 'scenario'"),
    ("- name: x\n", "the top level is not a mapping"),
    ("", "no scenarios (add 'scenarios:' or 'matrix:')"),
    ("defaults: {}\n", "no scenarios"),
    ("defaults: [1]\nscenarios: []\n", "defaults: [1] is not a mapping"),
    ("defaults: {pools: 5}\nscenarios: []\n", "defaults: unknown key 'pools'"),
    ("defaults: {name: x}\nscenarios: []\n", "defaults: unknown key 'name'"),
    ("scenarios: [\n", "not valid YAML at line"),
    ("scenarios:\n\t- name: x\n", "not valid YAML"),
    ("matrix: 5\n", "matrix: 5 is not a mapping or a list of them"),
    ("matrix: [5]\n", "matrix entry 1: 5 is not a mapping"),
    ("matrix:\n  mode: [thread]\n",
     "matrix entry 1: key 'name': None is not a name template"),
    ("matrix:\n  name: '{mode}-{size}'\n  mode: [thread]\n",
     "matrix entry 1: key 'name': '{mode}-{size}' uses {size}, which is not a varying key"),
    ("matrix:\n  name: '{mode}'\n  mode: []\n",
     "matrix entry 1: key 'mode': [] has no values to vary over"),
    ("matrix:\n  name: x\n  colour: [red]\n", "matrix entry 1: unknown key 'colour'"),
]


@pytest.mark.parametrize("text, expected", BROKEN_FILES,
                         ids=[f"file{i}" for i in range(len(BROKEN_FILES))])
def test_broken_file_is_refused(tmp_path, text, expected):
    with pytest.raises(ScenarioError) as caught:
        load(scenario_file(tmp_path, text=text))
    assert expected in str(caught.value)


DEFAULTS = GOOD.split("scenarios:")[0]


def test_duplicate_names_are_refused(tmp_path):
    path = scenario_file(tmp_path, text=DEFAULTS + "scenarios:\n  - name: a\n  - name: a\n")
    with pytest.raises(ScenarioError, match="scenario 'a': key 'name': 'a' is a duplicate name"):
        load(path)


def test_matrix_names_colliding_with_a_scenario_are_refused(tmp_path):
    text = DEFAULTS + textwrap.dedent("""\
        scenarios:
          - name: thread-pool5
        matrix:
          name: "{mode}-pool{pool}"
          mode: [thread, process]
          pool: [5]
        """)
    with pytest.raises(ScenarioError, match="'thread-pool5' is a duplicate name"):
        load(scenario_file(tmp_path, text=text))


def test_a_matrix_template_missing_a_varying_key_gives_duplicates(tmp_path):
    text = DEFAULTS + "matrix:\n  name: '{mode}'\n  mode: [thread]\n  pool: [1, 5]\n"
    duplicate = "scenario 'thread': key 'name': 'thread' is a duplicate"
    with pytest.raises(ScenarioError, match=duplicate):
        load(scenario_file(tmp_path, text=text))


def test_a_bad_default_names_the_scenario_that_uses_it(tmp_path):
    text = GOOD.format(scenario="").replace("pool: 5", "pool: 0")
    with pytest.raises(ScenarioError,
                       match="scenario 'thread-pool5': key 'pool': 0 is not between 1 and 1024"):
        load(scenario_file(tmp_path, text=text))


def test_a_missing_file_is_a_scenario_error(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read"):
        load(tmp_path / "nope.yaml")


def test_good_file_loads_into_frozen_dataclasses(tmp_path):
    loaded = load(scenario_file(tmp_path, "duration: 1h2m3s\nserver_cpus: 0.25\n"
                                          "weights: {upload: 0}\nwait: 1\n"))
    (scenario,) = loaded.scenarios
    assert loaded.names == ("thread-pool5",)
    assert scenario.duration == 3723 and scenario.run_time == "3723s"
    assert scenario.server_cpu_quantity == "250m"
    assert scenario.weights == Weights(list=1, get=4, upload=0, delete=1)
    assert scenario.file_sizes == ("1KB", "100KB")
    assert scenario.wait == "1"
    with pytest.raises(dataclasses.FrozenInstanceError):
        scenario.pool = 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.scenarios = ()


@pytest.mark.parametrize("duration, seconds", [(30, 30), ("30s", 30), ("2m", 120),
                                               ("1h", 3600), ("1m30s", 90), ("24h", 86400)])
def test_durations(tmp_path, duration, seconds):
    scenario = load(scenario_file(tmp_path, f"duration: {duration}")).get("thread-pool5")
    assert scenario.duration == seconds


@pytest.mark.parametrize("cpus, quantity", [(2, "2"), (0.5, "500m"), (1.5, "1500m"),
                                            (0.05, "50m"), (4.0, "4")])
def test_cpu_quantities(tmp_path, cpus, quantity):
    scenario = load(scenario_file(tmp_path, f"server_cpus: {cpus}")).get("thread-pool5")
    assert scenario.server_cpu_quantity == quantity


def test_weights_merge_over_defaults_key_by_key():
    base = {"mode": "thread", "pool": 1, "server_cpus": 1, "server_memory": "1Gi",
            "users": 1, "spawn_rate": 1, "duration": 1, "locust_workers": 1,
            "file_sizes": ["1KB"], "upload_size": "1KB", "wait": "1"}
    loaded = parse({"defaults": {**base, "weights": {"list": 0, "get": 9}},
                    "scenarios": [{"name": "a"}, {"name": "b", "weights": {"upload": 7}},
                                  {"name": "c", "weights": {"get": 0}}]})
    assert loaded.get("a").weights == Weights(list=0, get=9, upload=2, delete=1)
    assert loaded.get("b").weights == Weights(list=0, get=9, upload=7, delete=1)
    assert loaded.get("c").weights == Weights(list=0, get=0, upload=2, delete=1)


def test_matrix_expands_in_key_order_with_fixed_keys(tmp_path):
    text = DEFAULTS + textwrap.dedent("""\
        matrix:
          - name: "{mode}-p{pool}-{server_cpus}cpu-{file_sizes}"
            mode: [thread, process]
            pool: [1, 50]
            server_cpus: [0.5, 2]
            file_sizes: [["1KB"], ["1MB", "10MB"]]
            users: 7
        """)
    loaded = load(scenario_file(tmp_path, text=text))
    assert len(loaded) == 16
    assert loaded.names[:3] == ("thread-p1-0p5cpu-1kb", "thread-p1-0p5cpu-1mb-10mb",
                                "thread-p1-2cpu-1kb")
    assert loaded.names[-1] == "process-p50-2cpu-1mb-10mb"
    assert {s.users for s in loaded} == {7}
    assert loaded.get("process-p50-0p5cpu-1kb").server_cpus == 0.5
    assert loaded.get("thread-p1-2cpu-1mb-10mb").file_sizes == ("1MB", "10MB")


def test_fixed_file_sizes_in_a_matrix_are_not_expanded(tmp_path):
    text = DEFAULTS + ("matrix:\n  name: 'm-{pool}'\n  pool: [1, 2]\n"
                       "  file_sizes: [1KB, 2KB]\n")
    loaded = load(scenario_file(tmp_path, text=text))
    assert loaded.names == ("m-1", "m-2")
    assert {s.file_sizes for s in loaded} == {("1KB", "2KB")}


def test_cli_validate_reports_errors_on_one_line(tmp_path, capsys):
    assert main(["validate", str(scenario_file(tmp_path, "pool: 0"))]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("error: scenario 'thread-pool5': key 'pool': "
                            "0 is not between 1 and 1024\n")


def test_cli_validate_and_list_a_good_file(tmp_path, capsys):
    path = scenario_file(tmp_path, "server_cpus: 0.5\nserver_memory: 512Mi\nduration: 90")
    assert main(["validate", str(path)]) == 0
    assert "1 scenarios, OK" in capsys.readouterr().out
    assert main(["list", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "mode", "pool", "cpus", "memory", "users", "duration"]
    assert lines[1].split() == ["thread-pool5", "thread", "5", "0.5", "512Mi", "50", "90s"]


def test_a_capacity_block_sets_users_and_duration_from_the_search(tmp_path):
    scenario = load(scenario_file(tmp_path, """
        capacity: {slo_p95_ms: 50, start_users: 10, step_users: 20, step_seconds: 10,
                   max_users: 90}
    """)).get("thread-pool5")
    assert scenario.capacity.steps == 5          # 10, 30, 50, 70, 90
    assert scenario.users == 90
    assert scenario.duration == 5 * 10 + CAPACITY_SLACK_SECONDS
    env = dict(scenario.locust_env())
    assert env["LOCUST_CAPACITY_SLO_P95_MS"] == "50" and env["LOCUST_CAPACITY_MAX_USERS"] == "90"
    assert env["LOCUST_CAPACITY_FLAT_STEPS"] == "2"          # a default
    assert load(scenario_file(tmp_path)).get("thread-pool5").capacity is None


def test_an_empty_capacity_block_takes_the_defaults(tmp_path):
    scenario = load(scenario_file(tmp_path, "capacity: {}")).get("thread-pool5")
    assert dataclasses.asdict(scenario.capacity) == CAPACITY_DEFAULTS


def test_python_defaults_to_the_labs_own_and_takes_freethreaded_or_a_path(tmp_path):
    assert load(scenario_file(tmp_path)).get("thread-pool5").python == "default"
    for value in ("default", "freethreaded", "/opt/python3.14t/bin/python3", "py/bin/python"):
        scenario = load(scenario_file(tmp_path, f"python: {value}")).get("thread-pool5")
        assert scenario.python == value
        assert scenario.server_image == {"default": "fileserver-lab/server",
                                         "freethreaded": "fileserver-lab/server-ft"}.get(value)
    assert dataclasses.asdict(scenario)["python"] == "py/bin/python"    # scenario.json


def test_a_matrix_varies_the_interpreter(tmp_path):
    text = DEFAULTS + ("matrix:\n  name: '{mode}-{python}'\n  mode: [thread, process]\n"
                       "  python: [default, freethreaded]\n")
    loaded = load(scenario_file(tmp_path, text=text))
    assert [(s.name, s.mode, s.python) for s in loaded] == [
        ("thread-default", "thread", "default"), ("thread-freethreaded", "thread", "freethreaded"),
        ("process-default", "process", "default"),
        ("process-freethreaded", "process", "freethreaded")]
