"""Facts with one definition, and the copies that cannot import it kept equal.

Modes, pool bounds and ports are defined once (``server.config``, ``wire``)
and imported where Python code needs them; the deploy files (YAML, the
Dockerfiles) cannot import, so their copies are checked here, as
tests/test_readme.py does for the settings table.
"""

import dataclasses
import re

import pytest

import wire
from client.workload import DEFAULT_WEIGHTS, SIZE_UNITS
from scenarios.schema import Weights
from server import config, pools
from tests.support import REPO_ROOT

pytestmark = pytest.mark.unit

DEPLOY_FILES = ["server/Dockerfile", "compose/docker-compose.yml", "compose/headless.yml",
                "k8s/base/server.yaml", "k8s/base/locust-master.yaml", "k8s/base/locust-run.yaml"]


def test_every_mode_has_a_pool_class_and_no_more():
    assert tuple(pools.MODES) == config.MODES


def test_server_defaults_are_the_wire_defaults():
    defaults = config.ServerConfig()
    assert (defaults.port, defaults.metrics_port) == (wire.DEFAULT_PORT, wire.DEFAULT_METRICS_PORT)
    assert defaults.max_upload_bytes == wire.DEFAULT_MAX_UPLOAD_BYTES
    assert defaults.max_line_bytes == wire.DEFAULT_MAX_LINE_BYTES


def test_scenario_weights_are_the_commands():
    assert [f.name for f in dataclasses.fields(Weights)] == list(DEFAULT_WEIGHTS)
    assert [command.lower() for command in wire.COMMANDS] == list(DEFAULT_WEIGHTS)
    assert SIZE_UNITS["KB"] == 1024


@pytest.mark.parametrize("path", DEPLOY_FILES)
def test_deploy_files_name_the_default_ports(path):
    text = (REPO_ROOT / path).read_text()
    # the protocol and metrics ports are the only ones numbered 66xx and 96xx here
    named = {int(port) for port in re.findall(r"(?<![0-9])(66[0-9]{2}|96[0-9]{2})(?![0-9])", text)}
    assert named <= {wire.DEFAULT_PORT, wire.DEFAULT_METRICS_PORT}, path
    assert named, f"{path} names neither default port"
