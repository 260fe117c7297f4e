import subprocess
import sys

import pytest

from server.config import ConfigError, ServerConfig, load_config
from tests.support import REPO_ROOT


@pytest.mark.unit
def test_defaults_match_the_documented_ones():
    config = load_config([], {})
    assert config == ServerConfig()
    assert (config.mode, config.pool, config.host, config.port) == ("thread", 5, "0.0.0.0", 6665)
    assert (config.metrics_port, config.max_upload_bytes, config.max_line_bytes) == (
        9665, 1024 ** 3, 4096)
    assert (config.timeout, config.grace_seconds, config.stats_interval) == (60.0, 10.0, 10.0)


@pytest.mark.unit
def test_environment_is_read_and_flags_win():
    env = {"FS_MODE": "process", "FS_POOL": "50", "FS_PORT": "7000", "FS_TIMEOUT": "2.5",
           "FS_LOG_LEVEL": "debug", "FS_STORAGE_DIR": "/tmp/x"}
    config = load_config(["--pool", "200", "--ip", "127.0.0.1"], env)
    assert config.mode == "process"
    assert config.pool == 200
    assert config.port == 7000
    assert config.host == "127.0.0.1"
    assert config.timeout == 2.5
    assert config.log_level == "DEBUG"
    assert config.storage_dir == "/tmp/x"


@pytest.mark.unit
@pytest.mark.parametrize("pool", ["1", "5", "50", "100", "200"])
def test_course_pool_sizes_are_valid(pool):
    assert load_config(["--pool", pool], {}).pool == int(pool)


@pytest.mark.unit
@pytest.mark.parametrize("argv, env, message", [
    ([], {"FS_MODE": "fiber"}, "FS_MODE='fiber': must be one of thread, process"),
    (["--pool", "0"], {}, "--pool='0': must be between 1"),
    ([], {"FS_POOL": "abc"}, "FS_POOL='abc': must be an integer"),
    (["--port", "70000"], {}, "--port='70000': must be between 0 and 65535"),
    ([], {"FS_TIMEOUT": "-1"}, "FS_TIMEOUT='-1': must be a finite number"),
    ([], {"FS_TIMEOUT": "nan"}, "FS_TIMEOUT='nan'"),
    ([], {"FS_LOG_LEVEL": "LOUD"}, "FS_LOG_LEVEL='LOUD'"),
    ([], {"FS_MAX_UPLOAD_BYTES": "1GB"}, "FS_MAX_UPLOAD_BYTES='1GB': must be an integer"),
    ([], {"FS_STORAGE_DIR": " "}, "FS_STORAGE_DIR=' ': must not be empty"),
])
def test_bad_values_name_the_setting_and_value(argv, env, message):
    with pytest.raises(ConfigError) as error:
        load_config(argv, env)
    assert message in str(error.value)


@pytest.mark.integration
def test_bad_setting_stops_the_server_with_status_2():
    result = subprocess.run([sys.executable, "-m", "server", "--pool", "0"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--pool='0'" in result.stderr
    assert result.stderr.count("\n") == 1        # one clear line, no traceback
