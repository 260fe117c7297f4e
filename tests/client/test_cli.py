"""``python -m client`` as a subprocess against the real server (thread and process mode).

Every run is bounded (``--timeout`` and a subprocess timeout) and talks only
to 127.0.0.1.  Stderr is a pipe, so tqdm's bar is off by itself there; one
test gives stderr a pseudo-terminal to see the bar.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

from client import cli
from tests.support import free_port, stored_files

from .conftest import HOST

pytestmark = pytest.mark.timeout(120)

RUN_SECONDS = 60
PROG = "python -m client"
STATS_RE = r"(?P<verb>got|sent) (?P<name>\S+): (?P<size>\d+) bytes in \d+\.\d\d s \(\d+\.\d KB/s\)"


def clean_env(**extra: str) -> dict:
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", cli.ENV_HOST, cli.ENV_PORT)}
    env.update(extra)
    return env


def run_cli(cwd, *args: str, env: dict | None = None,
            input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run the CLI with no address options (the caller or env chooses the server)."""
    return subprocess.run([sys.executable, "-m", "client", *args], cwd=cwd,
                          env=env if env is not None else clean_env(), input=input,
                          capture_output=True, timeout=RUN_SECONDS)


def cli_for(server, cwd, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run the CLI against ``server``."""
    return run_cli(cwd, "--host", f"{HOST}:{server.port}", "--timeout", "10", *args, **kwargs)


def content(size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(f"cli-{seed}".encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stderr_lines(result: subprocess.CompletedProcess) -> list[str]:
    return result.stderr.decode().splitlines()


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr.decode()


def assert_one_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 1 and exactly one stderr line ``python -m client: error: ...``; returns it."""
    lines = stderr_lines(result)
    assert result.returncode == 1, result.stderr.decode()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{PROG}: error: "), lines
    assert "Traceback" not in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines
    return lines[0]


def assert_stats(result: subprocess.CompletedProcess, verb: str, name: str, size: int) -> None:
    lines = stderr_lines(result)
    assert len(lines) == 1, lines
    match = re.fullmatch(STATS_RE, lines[0])
    assert match, lines[0]
    assert (match["verb"], match["name"], int(match["size"])) == (verb, name, size)


def listing(directory) -> list[str]:
    return sorted(os.listdir(directory))


# -- the commands ---------------------------------------------------------------

@pytest.mark.integration
def test_list_get_upload_delete_round_trip(shared_server, tmp_path):
    (tmp_path / "hello.txt").write_bytes(b"hello\n")
    (tmp_path / "b.bin").write_bytes(b"")

    result = cli_for(shared_server, tmp_path, "list")
    assert_ok(result)
    assert result.stdout == b"" and result.stderr == b""

    for path in ("hello.txt", "b.bin"):
        result = cli_for(shared_server, tmp_path, "upload", path)
        assert_ok(result)
        size = (tmp_path / path).stat().st_size
        assert result.stdout.decode() == f"file {path} uploaded ({size} bytes)\n"
        assert_stats(result, "sent", path, size)

    result = cli_for(shared_server, tmp_path, "list")
    assert_ok(result)
    assert result.stdout.decode().splitlines() == ["b.bin", "hello.txt"]

    os.mkdir(tmp_path / "down")
    result = cli_for(shared_server, tmp_path / "down", "get", "hello.txt")
    assert_ok(result)
    assert result.stdout == b""
    assert_stats(result, "got", "hello.txt", 6)
    assert (tmp_path / "down" / "hello.txt").read_bytes() == b"hello\n"
    assert listing(tmp_path / "down") == ["hello.txt"]       # no temporary left over

    result = cli_for(shared_server, tmp_path, "delete", "hello.txt")
    assert_ok(result)
    assert result.stdout.decode() == "file hello.txt deleted\n"
    assert result.stderr == b""
    result = cli_for(shared_server, tmp_path, "list")
    assert result.stdout.decode().splitlines() == ["b.bin"]


@pytest.mark.integration
def test_five_megabytes_round_trip_by_sha256(shared_server, tmp_path):
    data = content(5 * 1024 * 1024 + 1, seed=5)
    (tmp_path / "big.bin").write_bytes(data)

    result = cli_for(shared_server, tmp_path, "upload", "big.bin")
    assert_ok(result)
    assert_stats(result, "sent", "big.bin", len(data))
    assert sha256((shared_server.storage / "big.bin").read_bytes()) == sha256(data)

    result = cli_for(shared_server, tmp_path, "get", "big.bin", "-o", "copy.bin")
    assert_ok(result)
    assert_stats(result, "got", "big.bin", len(data))
    assert sha256((tmp_path / "copy.bin").read_bytes()) == sha256(data)

    result = cli_for(shared_server, tmp_path, "get", "big.bin", "-o", "-")
    assert_ok(result)
    assert_stats(result, "got", "big.bin", len(data))
    assert sha256(result.stdout) == sha256(data)


@pytest.mark.integration
def test_get_to_stdout_writes_only_the_content(shared_server, tmp_path):
    data = bytes(range(256)) * 3 + b"\r\n\x00"
    (shared_server.storage / "raw.bin").write_bytes(data)
    result = cli_for(shared_server, tmp_path, "get", "raw.bin", "-o", "-")
    assert_ok(result)
    assert result.stdout == data
    assert_stats(result, "got", "raw.bin", len(data))
    assert listing(tmp_path) == []


@pytest.mark.integration
def test_get_output_options(shared_server, tmp_path):
    (shared_server.storage / "f.txt").write_bytes(b"new")
    (tmp_path / "old.txt").write_bytes(b"old content")
    os.mkdir(tmp_path / "dir")

    assert_ok(cli_for(shared_server, tmp_path, "get", "f.txt", "-o", "old.txt"))     # overwrites
    assert (tmp_path / "old.txt").read_bytes() == b"new"
    assert_ok(cli_for(shared_server, tmp_path, "get", "f.txt", "--output", "dir"))   # NAME inside
    assert (tmp_path / "dir" / "f.txt").read_bytes() == b"new"
    assert listing(tmp_path) == ["dir", "old.txt"]


@pytest.mark.integration
def test_upload_with_name(shared_server, tmp_path):
    os.mkdir(tmp_path / "sub")
    (tmp_path / "sub" / "local.txt").write_bytes(b"abc")
    result = cli_for(shared_server, tmp_path, "upload", "sub/local.txt", "--name", "remote.txt")
    assert_ok(result)
    assert_stats(result, "sent", "remote.txt", 3)
    assert result.stdout.decode() == "file remote.txt uploaded (3 bytes)\n"
    assert (shared_server.storage / "remote.txt").read_bytes() == b"abc"
    assert not (shared_server.storage / "local.txt").exists()

    result = cli_for(shared_server, tmp_path, "upload", str(tmp_path / "sub" / "local.txt"))
    assert_ok(result)                                    # basename of an absolute path
    assert (shared_server.storage / "local.txt").read_bytes() == b"abc"


@pytest.mark.integration
def test_host_forms_and_port_option(shared_server, tmp_path):
    (shared_server.storage / "a").write_bytes(b"1")
    for host in (f"tcp://{HOST}:{shared_server.port}", f"{HOST}:{shared_server.port}"):
        result = run_cli(tmp_path, "--host", host, "--no-progress", "list")
        assert_ok(result)
        assert result.stdout == b"a\n"
    result = run_cli(tmp_path, "--host", HOST, "--port", str(shared_server.port), "list")
    assert_ok(result)
    assert result.stdout == b"a\n"


@pytest.mark.integration
def test_environment_gives_the_defaults(shared_server, tmp_path):
    (shared_server.storage / "a").write_bytes(b"1")
    env = clean_env(FS_CLIENT_HOST=f"tcp://{HOST}:{shared_server.port}")
    result = run_cli(tmp_path, "list", env=env)
    assert_ok(result)
    assert result.stdout == b"a\n"

    env = clean_env(FS_CLIENT_PORT=str(shared_server.port))        # host defaults to 127.0.0.1
    result = run_cli(tmp_path, "list", env=env)
    assert_ok(result)
    assert result.stdout == b"a\n"

    # the command line beats the environment
    env = clean_env(FS_CLIENT_HOST=f"{HOST}:{free_port()}")
    result = run_cli(tmp_path, "--port", str(shared_server.port), "list", env=env)
    assert_ok(result)
    assert result.stdout == b"a\n"


# -- errors: exit 1, one line on stderr ----------------------------------------------

@pytest.mark.integration
def test_missing_remote_file(shared_server, tmp_path):
    (tmp_path / "keep").write_bytes(b"untouched")
    for args in (["get", "nope"], ["get", "nope", "-o", "keep"], ["get", "nope", "-o", "-"],
                 ["delete", "nope"]):
        result = cli_for(shared_server, tmp_path, *args)
        line = assert_one_error(result)
        assert line == f"{PROG}: error: file 'nope' not found"
        assert result.stdout == b""
    assert listing(tmp_path) == ["keep"]                     # no partial or temporary file
    assert (tmp_path / "keep").read_bytes() == b"untouched"


@pytest.mark.integration
@pytest.mark.parametrize("name, fragment", [
    (".hidden", "must not start with '.'"),                  # refused by the server
    ("a b", "does not allow ' '"),                           # refused by the client library
])
def test_bad_name(shared_server, tmp_path, name, fragment):
    (tmp_path / "local.txt").write_bytes(b"x")
    for args in (["get", name, "-o", "out"], ["delete", name],
                 ["upload", "local.txt", "--name", name]):
        result = cli_for(shared_server, tmp_path, *args)
        assert_one_error(result, repr(name), fragment)
    assert listing(tmp_path) == ["local.txt"]
    assert stored_files(shared_server) == []


@pytest.mark.integration
def test_name_with_a_slash_needs_an_output_path(shared_server, tmp_path):
    result = cli_for(shared_server, tmp_path, "get", "a/b")
    assert_one_error(result, "'a/b'", "-o PATH")
    result = cli_for(shared_server, tmp_path, "get", "a/b", "-o", "out")
    assert_one_error(result, "'a/b'", "must not contain '/'")        # the server's word
    assert listing(tmp_path) == []


@pytest.mark.integration
def test_refused_port_names_the_address(tmp_path):
    port = free_port()
    for args in (["list"], ["get", "x"], ["delete", "x"]):
        result = run_cli(tmp_path, "--host", f"{HOST}:{port}", "--timeout", "5", *args)
        assert_one_error(result, f"{HOST}:{port}", "refused")
    assert listing(tmp_path) == []


@pytest.mark.integration
def test_missing_local_file_for_upload(shared_server, tmp_path):
    result = cli_for(shared_server, tmp_path, "upload", "missing.txt")
    assert_one_error(result, "'missing.txt'", "No such file")
    os.mkdir(tmp_path / "folder")
    result = cli_for(shared_server, tmp_path, "upload", "folder")
    assert_one_error(result, "'folder'", "directory")
    assert stored_files(shared_server) == []


@pytest.mark.integration
def test_unwritable_output_path(shared_server, tmp_path):
    (shared_server.storage / "f").write_bytes(b"data")
    result = cli_for(shared_server, tmp_path, "get", "f", "-o", "no/such/dir/f")
    assert_one_error(result, "'no/such/dir/f'", "No such file")
    assert listing(tmp_path) == []


# -- usage errors: exit 2, as argparse does ----------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["get"],
    ["upload"],
    ["list", "extra"],
    ["--port", "0", "list"],
    ["--port", "http", "list"],
    ["--timeout", "-1", "list"],
    ["--host", "http://127.0.0.1:1", "list"],
    ["--host", "127.0.0.1:1", "--port", "2", "list"],
])
def test_usage_errors_exit_2(tmp_path, args):
    result = run_cli(tmp_path, *args)
    assert result.returncode == 2, result.stderr.decode()
    lines = stderr_lines(result)
    assert lines[0].startswith(f"usage: {PROG}")
    assert lines[-1].startswith(f"{PROG}") and ": error: " in lines[-1]
    assert "Traceback" not in result.stderr.decode()
    assert result.stdout == b""


@pytest.mark.integration
def test_bad_port_in_the_environment_is_a_usage_error(tmp_path):
    result = run_cli(tmp_path, "list", env=clean_env(FS_CLIENT_PORT="66000"))
    assert result.returncode == 2
    assert "FS_CLIENT_PORT" in stderr_lines(result)[-1]


@pytest.mark.integration
def test_help_documents_the_environment(tmp_path):
    result = run_cli(tmp_path, "--help")
    assert_ok(result)
    text = result.stdout.decode()
    for word in ("FS_CLIENT_HOST", "FS_CLIENT_PORT", "--no-progress", "list", "get",
                 "upload", "delete", "tcp://H:P"):
        assert word in text


# -- the progress bar ---------------------------------------------------------------

def run_with_tty_stderr(cwd, *args: str) -> tuple[int, bytes]:
    """Run the CLI with stderr on a pseudo-terminal (80 columns); (status, stderr)."""
    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        process = subprocess.Popen([sys.executable, "-m", "client", *args], cwd=cwd,
                                   env=clean_env(), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=slave)
    finally:
        os.close(slave)
    output = b""
    deadline = time.monotonic() + RUN_SECONDS
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError as exc:             # EIO: every slave end is closed
                if exc.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            output += data
        status = process.wait(timeout=RUN_SECONDS)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
    return status, output


@pytest.mark.integration
def test_progress_bar_on_a_terminal_only_without_no_progress(shared_server, tmp_path):
    size = 3 * 1024 * 1024
    (tmp_path / "p.bin").write_bytes(content(size, seed=3))
    address = ["--host", f"{HOST}:{shared_server.port}", "--timeout", "10"]

    status, output = run_with_tty_stderr(tmp_path, *address, "upload", "p.bin")
    assert status == 0, output
    text = output.decode()
    assert "p.bin: 100%" in text and "3.00M/3.00M" in text, text
    assert re.search(r"\r\n" + STATS_RE + r"\r\n$", text), text

    status, output = run_with_tty_stderr(tmp_path, *address, "get", "p.bin", "-o", "q.bin")
    assert status == 0, output
    assert "B/s" in output.decode()

    status, output = run_with_tty_stderr(tmp_path, *address, "--no-progress",
                                         "get", "p.bin", "-o", "r.bin")
    assert status == 0, output
    assert re.fullmatch(STATS_RE + r"\r\n", output.decode()), output


# -- in process: address resolution ----------------------------------------------------------

def resolve(argv: list[str], environ: dict) -> tuple[str, int]:
    parser = cli.build_parser()
    return cli.resolve_address(parser, parser.parse_args([*argv, "list"]), environ)


@pytest.mark.unit
@pytest.mark.parametrize("argv, environ, expected", [
    ([], {}, ("127.0.0.1", 6665)),
    (["--host", "example.org"], {}, ("example.org", 6665)),
    (["--host", "tcp://h:7"], {}, ("h", 7)),
    (["--host", "h:7", "--port", "7"], {}, ("h", 7)),
    (["--host", "[::1]:8"], {}, ("::1", 8)),
    (["--port", "9"], {}, ("127.0.0.1", 9)),
    ([], {"FS_CLIENT_HOST": "e", "FS_CLIENT_PORT": "10"}, ("e", 10)),
    ([], {"FS_CLIENT_HOST": "e:11", "FS_CLIENT_PORT": "10"}, ("e", 11)),
    (["--port", "12"], {"FS_CLIENT_HOST": "e:11"}, ("e", 12)),
    (["--host", "c"], {"FS_CLIENT_HOST": "e:11", "FS_CLIENT_PORT": "10"}, ("c", 10)),
    ([], {"FS_CLIENT_HOST": "", "FS_CLIENT_PORT": ""}, ("127.0.0.1", 6665)),
])
def test_resolve_address(argv, environ, expected):
    assert resolve(argv, environ) == expected


@pytest.mark.unit
def test_stats_line_format():
    assert cli.stats_line("got", "big.bin", 52428800, 0.61) == \
        "got big.bin: 52428800 bytes in 0.61 s (83934.4 KB/s)"
    assert re.fullmatch(STATS_RE, cli.stats_line("sent", "e", 0, 0.0))


@pytest.mark.unit
def test_resolve_address_conflict_is_a_usage_error():
    with pytest.raises(SystemExit) as exc_info:
        resolve(["--host", "h:1", "--port", "2"], {})
    assert exc_info.value.code == 2
