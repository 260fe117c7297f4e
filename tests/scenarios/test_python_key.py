"""The scenario key ``python``: which interpreter the local backend starts the server
on, the errors before anything starts, what the results record and how the report
names it."""

import json
import platform
import stat
import sys
from pathlib import Path

import pytest

from scenarios import parse
from scenarios.backends import BackendError, LocalBackend
from scenarios.backends import local
from scenarios.report import model_label, with_model_labels
from scenarios.results import server_interpreter
from scenarios.runner import Runner

BASE = {"mode": "thread", "pool": 5, "server_cpus": 1, "server_memory": "512Mi",
        "users": 10, "spawn_rate": 10, "duration": 5, "locust_workers": 1,
        "file_sizes": ["1KB"], "upload_size": "1KB", "wait": "1"}


def scenario(python=None, name="thread-pool5"):
    entry = {"name": name, **({"python": python} if python is not None else {})}
    return parse({"defaults": BASE, "scenarios": [entry]}).get(name)


def fake_python(path: Path, info: dict) -> Path:
    """An 'interpreter' that answers the probe with ``info``, whatever it is asked."""
    path.write_text(f"#!/bin/sh\necho '{json.dumps(info)}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


FREE = {"implementation": "CPython", "version": "3.13.5", "free_threaded": True,
        "gil_enabled": False}
GIL = dict(FREE, version="3.12.7", free_threaded=False, gil_enabled=True)


# -- resolving the key (no process) ------------------------------------------------------

@pytest.mark.unit
def test_default_is_the_labs_own_interpreter():
    assert local.resolve_python("default", "/opt/lab/bin/python") == "/opt/lab/bin/python"
    assert LocalBackend(python="/opt/lab/bin/python").server_python(scenario()) == \
        "/opt/lab/bin/python"


@pytest.mark.unit
def test_freethreaded_is_the_venv_ft_python(tmp_path, monkeypatch):
    venv_python = fake_python(tmp_path / "python", FREE)
    monkeypatch.setattr(local, "FREETHREADED_PYTHON", venv_python)
    assert local.resolve_python("freethreaded") == str(venv_python)
    assert local.FREETHREADED_PYTHON.name == "python"


@pytest.mark.unit
def test_a_missing_venv_ft_names_the_path_and_make_venv_ft(no_venv_ft):
    with pytest.raises(BackendError) as caught:
        local.resolve_python("freethreaded")
    assert str(caught.value) == (f"python freethreaded: {no_venv_ft} does not exist "
                                 "(run `make venv-ft` first)")


@pytest.mark.unit
def test_a_path_is_taken_from_the_repository_root_and_must_be_an_executable_file(
        tmp_path, monkeypatch):
    monkeypatch.setattr(local, "REPO_ROOT", tmp_path)
    python = fake_python(tmp_path / "py", GIL)
    assert local.resolve_python("py") == str(python)
    assert local.resolve_python(str(python)) == str(python)
    with pytest.raises(BackendError, match=f"python 'nope/python': {tmp_path}/nope/python "
                                           "does not exist"):
        local.resolve_python("nope/python")
    with pytest.raises(BackendError, match=f"python '{tmp_path}': {tmp_path} is not an "
                                           "executable file"):
        local.resolve_python(str(tmp_path))
    (tmp_path / "plain").write_text("")
    with pytest.raises(BackendError, match="plain is not an executable file"):
        local.resolve_python("plain")


@pytest.mark.unit
def test_run_starts_the_server_on_the_scenarios_interpreter(tmp_path, monkeypatch):
    started = []

    class Server:
        def __init__(self, storage, mode, pool, **options):
            started.append(options["python"])

        def start(self):
            raise RuntimeError("not starting servers in a unit test")

        def stop(self):
            return None

    monkeypatch.setattr(local, "ServerProcess", Server)
    python = fake_python(tmp_path / "python3.14t", FREE)
    backend = LocalBackend(python="/opt/lab/bin/python", apply_limits=False)
    for key, expected in ((None, "/opt/lab/bin/python"), (str(python), str(python))):
        folder = tmp_path / f"run-{len(started)}"
        folder.mkdir()
        outcome = backend.run(scenario(key), folder, lambda elapsed, stats: None)
        assert outcome.status == "error" and "not starting servers" in outcome.note
        assert started[-1] == expected


@pytest.mark.unit
def test_run_without_the_interpreter_is_an_error_outcome(tmp_path, no_venv_ft):
    outcome = LocalBackend(apply_limits=False).run(scenario("freethreaded"), tmp_path,
                                                   lambda elapsed, stats: None)
    assert (outcome.status, outcome.limits_enforced) == ("error", False)
    assert "make venv-ft" in outcome.note
    assert list(tmp_path.iterdir()) == []           # nothing started, no log opened


# -- probing it (runs the interpreter) ----------------------------------------------------

@pytest.mark.integration
def test_the_probe_imports_the_server_and_says_which_python_it_is():
    info = local.probe_python(sys.executable, sys.executable)
    assert info["version"] == platform.python_version()
    assert set(info) >= {"free_threaded", "gil_enabled"}


@pytest.mark.integration
def test_freethreaded_must_be_a_free_threaded_build(tmp_path, monkeypatch):
    monkeypatch.setattr(local, "FREETHREADED_PYTHON", fake_python(tmp_path / "python", GIL))
    backend = LocalBackend()
    with pytest.raises(BackendError) as caught:
        backend.check_scenarios([scenario(), scenario("freethreaded", "thread-ft")])
    assert str(caught.value) == (
        f"scenario 'thread-ft': python freethreaded: {tmp_path}/python is Python 3.12.7 "
        "without free threading (not built with --disable-gil); rebuild it with "
        "`make venv-ft`")
    monkeypatch.setattr(local, "FREETHREADED_PYTHON", fake_python(tmp_path / "ft", FREE))
    backend.check_scenarios([scenario("freethreaded")])
    assert backend.server_python(scenario("freethreaded")) == f"{tmp_path}/ft"


@pytest.mark.integration
def test_a_python_that_cannot_import_the_server_is_refused(tmp_path):
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named psutil' >&2\n"
                      "exit 1\n")
    broken.chmod(0o755)
    with pytest.raises(BackendError, match=f"python '{broken}': {broken} cannot run the "
                                           "server: ModuleNotFoundError: No module named "
                                           "psutil"):
        LocalBackend().check_scenarios([scenario(str(broken))])


@pytest.mark.integration
def test_the_runner_refuses_before_anything_starts(tmp_path, no_venv_ft):
    runner = Runner(LocalBackend(), tmp_path / "results")
    with pytest.raises(BackendError, match="scenario 'thread-ft': python freethreaded: .* "
                                           r"\(run `make venv-ft` first\)"):
        runner.run([scenario(), scenario("freethreaded", "thread-ft")])
    assert not (tmp_path / "results").exists()


# -- recorded and reported (no process) ---------------------------------------------------

@pytest.mark.unit
def test_the_results_record_the_interpreter_the_server_reported():
    samples = [{"t": 0.0, "stats": {"interpreter": FREE}},
               {"t": 2.0, "stats": {"interpreter": dict(FREE, gil_enabled=True)}}]
    assert server_interpreter(samples) == {"python": "3.13.5", "free_threaded": "yes",
                                           "gil_enabled": "yes"}    # the last sample's
    assert server_interpreter(samples[:1])["gil_enabled"] == "no"
    assert server_interpreter([{"t": 0.0, "stats": {"interpreter": GIL}}]) == {
        "python": "3.12.7", "free_threaded": "no", "gil_enabled": "yes"}
    assert server_interpreter([]) == {"python": None, "free_threaded": None,
                                      "gil_enabled": None}


@pytest.mark.unit
@pytest.mark.parametrize("mode, free_threaded, gil_enabled, label", [
    ("thread", "no", "yes", "thread"),
    ("process", None, None, "process"),                 # an older summary.csv
    ("thread", "yes", "no", "free-threaded thread"),
    ("process", "yes", "no", "free-threaded process"),
    ("thread", "yes", "yes", "thread (free-threaded build, GIL on)"),
])
def test_the_report_names_the_model_with_its_interpreter(mode, free_threaded, gil_enabled,
                                                         label):
    row = {"mode": mode, "free_threaded": free_threaded, "gil_enabled": gil_enabled}
    assert model_label(row) == label
    assert with_model_labels([row]) == [dict(row, mode=label)]


# -- compose and Kubernetes: the server image of the key (no process) ---------------------

class Engine:
    """A Docker SDK client holding ``present`` images."""

    def __init__(self, present):
        self.images = self
        self.present = present

    def get(self, reference):
        import docker
        if reference not in self.present:
            raise docker.errors.ImageNotFound(f"No such image: {reference}")
        return reference

    def close(self):
        pass


@pytest.mark.unit
def test_compose_runs_freethreaded_as_the_server_ft_image(tmp_path, monkeypatch):
    from scenarios.backends import compose
    images = {key: compose.compose_variables(scenario(key), tmp_path, 1, 2, "v1")["SERVER_IMAGE"]
              for key in ("default", "freethreaded")}
    assert images == {"default": "fileserver-lab/server",
                      "freethreaded": "fileserver-lab/server-ft"}
    backend = compose.ComposeBackend(compose=["docker", "compose"], image_tag="v1")
    monkeypatch.setattr(compose, "docker_engine", lambda: Engine({"fileserver-lab/server:v1"}))
    backend.check_scenarios([scenario()])
    with pytest.raises(BackendError, match=r"^image fileserver-lab/server-ft:v1 is missing: "
                                           r"run `make image-ft`$"):
        backend.check_scenarios([scenario(), scenario("freethreaded", "thread-ft")])
    monkeypatch.setattr(compose, "docker_engine",
                        lambda: Engine({"fileserver-lab/server-ft:v1"}))
    backend.check_scenarios([scenario("freethreaded")])


@pytest.mark.unit
@pytest.mark.parametrize("backend_name", ["compose", "k8s"])
def test_containers_refuse_an_interpreter_path(backend_name):
    from scenarios.backends import ComposeBackend, KubernetesBackend
    backend = (ComposeBackend(compose=["docker", "compose"]) if backend_name == "compose"
               else KubernetesBackend())
    with pytest.raises(BackendError) as caught:
        backend.check_scenarios([scenario("/opt/py/bin/python3", "mine")])
    assert str(caught.value) == (f"scenario 'mine': python '/opt/py/bin/python3': a path runs "
                                 f"with the local backend only ({backend_name} takes default "
                                 "or freethreaded)")


@pytest.mark.unit
def test_k8s_overlays_swap_in_the_server_ft_image_and_skip_paths():
    import yaml
    from scenarios import k8s
    overlays = k8s.render_overlays(parse({"defaults": BASE, "scenarios": [
        {"name": "gil"}, {"name": "ft", "python": "freethreaded"},
        {"name": "mine", "python": "/opt/py/bin/python3"}]}))
    assert sorted(overlays) == ["ft", "gil"]
    kustomization = {name: yaml.safe_load(files["kustomization.yaml"])
                     for name, files in overlays.items()}
    assert "images" not in kustomization["gil"]
    assert kustomization["ft"]["images"] == [{"name": "fileserver-lab/server",
                                              "newName": "fileserver-lab/server-ft"}]
