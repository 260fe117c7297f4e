"""``python -m scenarios run`` refuses bad requests with one clear line."""

import pytest

from scenarios.__main__ import main

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("argv, message", [
    (["run"], "name scenarios to run, or give --all"),
    (["run", "thread-pool5", "--all"], "name scenarios to run, or give --all"),
    (["run", "thread-pool7"], "no scenario named 'thread-pool7'"),
])
def test_run_refuses_bad_selections(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_run_with_a_broken_scenario_file_names_the_problem(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text("scenarios:\n  - name: x\n    pool: 0\n")
    assert main(["run", "--all", "--file", str(tmp_path / "s.yaml")]) == 1
    assert "scenario 'x'" in capsys.readouterr().err


def test_compose_backend_without_images_says_how_to_build_them(tmp_path, capsys, monkeypatch):
    from scenarios.backends import compose
    monkeypatch.setattr(compose, "compose_command", lambda: None)
    assert main(["run", "thread-pool5", "--backend", "compose",
                 "--results", str(tmp_path)]) == 1
    assert "backend compose: neither `docker compose` nor docker-compose" in \
        capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []          # no empty results folder left behind


def test_k8s_check_fails_on_drift(tmp_path, capsys):
    assert main(["k8s", "--out", str(tmp_path)]) == 0
    assert main(["k8s", "--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "thread-pool5" / "server.yaml").unlink()
    capsys.readouterr()
    assert main(["k8s", "--check", "--out", str(tmp_path)]) == 1
    assert "thread-pool5/server.yaml" in capsys.readouterr().err


def test_compose_backend_without_a_docker_engine_exits_2(tmp_path, capsys, monkeypatch):
    from scenarios.backends import compose
    monkeypatch.setattr(compose, "compose_command", lambda: ["docker", "compose"])
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert main(["run", "thread-pool5", "--backend", "compose",
                 "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: backend compose: no Docker engine answers")
