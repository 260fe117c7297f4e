"""Which Python runs the server: in /stats, in /metrics and in the start line.

Run on a free-threaded build (``make test-ft``), the server must report the GIL
disabled: that also fails if one of its extension modules switches it back on.
"""

import os
import platform
import subprocess
import sys
import sysconfig

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from server.metrics import _SnapshotCollector
from server.stats import StatsCollector, WorkerTable, describe_interpreter, interpreter_info
from tests.support import REPO_ROOT

FREE_THREADED = sysconfig.get_config_var("Py_GIL_DISABLED") == 1


def expected_gil_enabled(environ) -> bool:
    """What a server started by this interpreter with ``environ`` must report."""
    return not FREE_THREADED or environ.get("PYTHON_GIL") == "1"


def metrics_line(info: dict) -> str:
    """The info line in the exposition format (labels in alphabetical order)."""
    return (f'fileserver_python_info{{free_threaded="{str(info["free_threaded"]).lower()}",'
            f'gil_enabled="{str(info["gil_enabled"]).lower()}",'
            f'implementation="{info["implementation"]}",version="{info["version"]}"}} 1.0')


@pytest.mark.unit
def test_interpreter_info_is_this_python():
    info = interpreter_info()
    assert info["implementation"] == platform.python_implementation()
    assert info["version"] == platform.python_version()
    assert info["free_threaded"] is FREE_THREADED
    is_gil_enabled = getattr(sys, "_is_gil_enabled", lambda: True)
    assert info["gil_enabled"] is is_gil_enabled()


@pytest.mark.unit
def test_a_python_without_is_gil_enabled_has_the_gil(monkeypatch):
    monkeypatch.delattr(sys, "_is_gil_enabled", raising=False)     # Python before 3.13
    assert interpreter_info()["gil_enabled"] is True


@pytest.mark.unit
@pytest.mark.parametrize("free_threaded, gil_enabled, text", [
    (False, True, "CPython 3.12.7, with the GIL"),
    (True, False, "CPython 3.12.7, free-threaded, GIL disabled"),
    (True, True, "CPython 3.12.7, free-threaded, GIL enabled"),
])
def test_describe_interpreter(free_threaded, gil_enabled, text):
    assert describe_interpreter({"implementation": "CPython", "version": "3.12.7",
                                 "free_threaded": free_threaded,
                                 "gil_enabled": gil_enabled}) == text


@pytest.mark.unit
def test_snapshot_and_metrics_carry_the_interpreter():
    snapshot = StatsCollector(WorkerTable(2), "thread", 2, "127.0.0.1:1").snapshot(2, True)
    assert snapshot["interpreter"] == interpreter_info()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(lambda: snapshot))
    assert metrics_line(snapshot["interpreter"]) in generate_latest(registry).decode()


@pytest.mark.integration
def test_the_server_reports_its_interpreter(fresh_server):
    info = fresh_server.stats()["interpreter"]
    assert info == {"implementation": platform.python_implementation(),
                    "version": platform.python_version(), "free_threaded": FREE_THREADED,
                    "gil_enabled": expected_gil_enabled(os.environ)}
    assert metrics_line(info) in fresh_server.http_text("/metrics")
    start_line = next(line for line in fresh_server.log().splitlines() if "serving files" in line)
    assert describe_interpreter(info) in start_line, start_line


@pytest.mark.integration
def test_python_gil_1_turns_the_gil_back_on(monkeypatch, server_factory):
    """The fair comparison on one binary: the same free-threaded build with the GIL."""
    monkeypatch.setenv("PYTHON_GIL", "1")       # the server inherits the environment
    info = server_factory("thread").stats()["interpreter"]
    assert (info["free_threaded"], info["gil_enabled"]) == (FREE_THREADED, True)


@pytest.mark.integration
def test_the_server_and_the_client_do_not_import_yaml():
    """PyYAML has no free-threaded wheel: only the lab (scenarios) may need it."""
    code = ("import sys, server.__main__, server.supervisor, client, client.cli, wire; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'yaml'))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
