"""Hostile input against a real server, both modes (issue 13, target 8).

Every attack is followed by ``assert_unharmed``: a fresh client's LIST is
answered, the files stored before the attack are intact, no temporary file
is left, and the server logged no traceback and lost no worker.  Idle,
slowloris and slow-reader clients are in test_availability.py.  The README's
"Robustness" table names a test for each attack; the last test here checks
that those tests exist.
"""

import base64
import fnmatch
import functools
import os
import random
import re
import socket
import shutil
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

import wire
from server.config import MODES
from tests.support import REPO_ROOT, ServerProcess, connect, read_reply, temp_files

integration = pytest.mark.integration      # every test here but the README check

LIST = wire.encode_request("LIST")
SEEDED = {"keep.txt": b"precious", "keep.bin": random.Random(13).randbytes(100_000)}
MAX_LINE = wire.DEFAULT_MAX_LINE_BYTES


@pytest.fixture
def server(fresh_server):
    """``fresh_server`` (pool 5, each mode) holding the ``SEEDED`` files."""
    for name, content in SEEDED.items():
        (fresh_server.storage / name).write_bytes(content)
    return fresh_server


def converse(port: int, *requests) -> list[dict]:
    """Send each request on one connection and read its reply.  A request is
    bytes, or a list of byte pieces sent one after the other (big uploads)."""
    decoder = wire.ReplyDecoder()
    replies = []
    with connect(port, timeout=30) as sock:
        for request in requests:
            for piece in [request] if isinstance(request, bytes) else request:
                sock.sendall(piece)
            replies.append(read_reply(sock, decoder))
    return replies


def assert_closed_by_server(sock, within: float = 10.0) -> None:
    """The server closes the connection (a reset counts) and sends nothing more."""
    sock.settimeout(within)
    try:
        assert sock.recv(1 << 16) == b""
    except ConnectionResetError:
        pass


def assert_unharmed(server: ServerProcess, files: dict[str, bytes] | None = None) -> None:
    """A fresh LIST works, ``files`` (default: the seeded ones) are exactly what
    is stored, no temporary file is left, and nothing broke inside the server."""
    files = SEEDED if files is None else files
    assert converse(server.port, LIST) == [{"status": "OK", "data": sorted(files)}]
    for name, content in files.items():
        reply = converse(server.port, wire.encode_request("GET", name))[0]
        assert reply.get("data_file_bytes") == content, (name, reply)
    assert temp_files(server.storage) == []
    assert server.proc.poll() is None, server.log()
    log = server.log()
    for sign in ("Traceback", "unexpected error", "replacing it"):
        assert sign not in log, log


def upload_pieces(name: bytes, body: list[bytes]) -> list[bytes]:
    return [b"UPLOAD " + name + b" ", *body, wire.TERMINATOR]


# --------------------------------------------------------------------------
# request lines

@integration
@pytest.mark.parametrize("prefix", [b"", b"GET ", b"UPLOAD "])
def test_a_10_mb_request_line_is_cut_at_the_limit(server, prefix):
    line = prefix + b"a" * (10 * 1024 * 1024)     # no terminator, no second space
    with connect(server.port, timeout=30) as sock:
        def send():
            try:
                sock.sendall(line)
            except OSError:
                pass                    # the server closes once it has answered
        sender = threading.Thread(target=send)
        sender.start()
        try:
            reply = read_reply(sock)
            assert reply == {"status": "ERROR",
                             "data": f"request line longer than {MAX_LINE} bytes"}
            assert_closed_by_server(sock)
        finally:
            sender.join(30)
    assert_unharmed(server)


def garbage(size: int, seed: int) -> bytes:
    """Random bytes with NULs and no CR (so no terminator inside)."""
    data = random.Random(seed).randbytes(size).replace(b"\r", b"\n")
    return b"\x00" + data[1:]


@integration
def test_binary_garbage_with_terminators_gets_errors_and_the_connection_goes_on(server):
    junk = [garbage(1, 1), garbage(100, 2), garbage(MAX_LINE, 3), b"\x00" * 64, b"",
            b"\xff\xfe\x00LIST", b"LIST\x00"]
    replies = converse(server.port, *(item + wire.TERMINATOR for item in junk), LIST)
    for item, reply in zip(junk, replies):
        try:
            item.decode("utf-8")
            expected = "empty request" if not item else "unknown command"
        except UnicodeDecodeError:
            expected = "request is not valid UTF-8"
        assert reply["status"] == "ERROR" and expected in reply["data"], (item[:20], reply)
    assert replies[-1] == {"status": "OK", "data": sorted(SEEDED)}
    assert_unharmed(server)


@integration
def test_binary_garbage_over_the_line_limit_without_terminator_is_cut(server):
    with connect(server.port) as sock:
        sock.sendall(garbage(64 * 1024, 4))
        assert read_reply(sock) == {"status": "ERROR",
                                    "data": f"request line longer than {MAX_LINE} bytes"}
        assert_closed_by_server(sock)
    assert_unharmed(server)


@integration
def test_binary_garbage_then_end_of_stream_is_answered(server):
    with connect(server.port) as sock:
        sock.sendall(garbage(1000, 5))
        sock.shutdown(socket.SHUT_WR)
        assert read_reply(sock) == {"status": "ERROR",
                                    "data": "connection closed in the middle of a request"}
        assert_closed_by_server(sock)
    assert_unharmed(server)


# --------------------------------------------------------------------------
# names

# (name, what the ERROR must say); "{victim}" is an absolute path outside the storage
HOSTILE_NAMES = [
    (b"a\x00b", "contains a control character"),
    (b"a\x1bb", "contains a control character"),
    (b"a\r\nb", "contains a control character"),
    (b"a\x7f", "contains a control character"),
    (b"..", "'..' is not allowed"),
    (b".", "'.' is not allowed"),
    (b"../escape.txt", "must not contain '/'"),
    (b"sub/escape.txt", "must not contain '/'"),
    (b"{victim}", "must not contain '/'"),
    (b"..\\escape.txt", "must not contain '/' or '\\'"),
    (b"n" * 300, "longer than 255 bytes"),
    ("é".encode() * 128, "longer than 255 bytes"),
    (b".fileserver.lock", "must not start with '.'"),
    (b".upload-1-x", "must not start with '.'"),
    (b"\xff\xfe", "not valid UTF-8"),
]


@integration
@pytest.mark.parametrize("verb", ["GET", "DELETE", "UPLOAD"])
def test_hostile_names_are_refused_and_nothing_is_written(server, tmp_path, verb):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_bytes(b"not yours")
    around = sorted(os.listdir(tmp_path))
    stored = sorted(os.listdir(server.storage))
    for template, reason in HOSTILE_NAMES:
        name = template.replace(b"{victim}", str(victim).encode())
        if verb == "UPLOAD":
            request = upload_pieces(name, [base64.b64encode(b"overwritten" * 1000)])
        else:
            request = verb.encode() + b" " + name + wire.TERMINATOR
        reply, listing = converse(server.port, request, LIST)
        assert reply["status"] == "ERROR" and reason in reply["data"], (name, reply)
        assert listing == {"status": "OK", "data": sorted(SEEDED)}, name
        assert sorted(os.listdir(server.storage)) == stored, name
        assert sorted(os.listdir(tmp_path)) == around, name
        assert victim.read_bytes() == b"not yours"
    assert_unharmed(server)


# --------------------------------------------------------------------------
# invalid base64 in a 50 MB upload

BLOCKS = 17                     # of 3 MiB: 51 MiB decoded


@functools.cache
def base64_block() -> bytes:
    """4 MiB of base64 without padding, encoded once and sent again and again."""
    return base64.b64encode(random.Random(6).randbytes(3 * 1024 * 1024))


def spoiled(block: bytes, at: int) -> bytes:
    return block[:at] + b"!" + block[at + 1:]


@integration
@pytest.mark.parametrize("where", ["start", "middle", "end", "cut short", "line break"])
def test_invalid_base64_in_a_50_mb_upload_keeps_the_old_file(server, where):
    old = b"the old big.bin"
    (server.storage / "big.bin").write_bytes(old)
    block = base64_block()
    body = [block] * BLOCKS
    if where == "start":
        body[0] = spoiled(block, 0)
    elif where == "middle":
        body[BLOCKS // 2] = spoiled(block, len(block) // 2)
    elif where == "end":
        body[-1] = spoiled(block, len(block) - 1)
    elif where == "cut short":
        body.append(b"QUI")             # a last quantum of 3 characters
    else:                               # MIME-style lines
        body[BLOCKS // 2] = block[:76] + b"\r\n" + block[76:]
    reply, listing = converse(server.port, upload_pieces(b"big.bin", body), LIST)
    reason = {"cut short": "base64 length is not a multiple of 4 (3 characters left over)",
              "line break": "a stray carriage return"}.get(where, "Only base64 data is allowed")
    assert reply == {"status": "ERROR", "data": f"upload content is not valid base64: {reason}"}
    files = {**SEEDED, "big.bin": old}
    assert listing == {"status": "OK", "data": sorted(files)}
    assert_unharmed(server, files)


# --------------------------------------------------------------------------
# what else may sit in the storage folder

@integration
def test_fifo_directory_and_outside_symlinks_are_never_served_or_followed(server, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_bytes(b"not yours")
    storage = server.storage
    os.mkfifo(storage / "pipe")
    (storage / "folder").mkdir()
    (storage / "folder" / "inner.txt").write_bytes(b"inner")
    (storage / "link").symlink_to(outside / "victim.txt")
    (storage / "dirlink").symlink_to(outside)
    specials = {"pipe": "is not a regular file", "folder": "is not a regular file",
                "link": "it is a symbolic link", "dirlink": "it is a symbolic link"}

    # LIST shows regular files only (README, "The protocol")
    assert converse(server.port, LIST) == [{"status": "OK", "data": sorted(SEEDED)}]
    for name, reason in specials.items():
        started = time.monotonic()
        reply = converse(server.port, wire.encode_request("GET", name))[0]
        assert time.monotonic() - started < 2, f"GET {name} took too long"
        assert reply["status"] == "ERROR" and reason in reply["data"], (name, reply)
        reply = converse(server.port, wire.encode_request("DELETE", name))[0]
        assert reply == {"status": "ERROR", "data": f"file {name!r} is not a regular file"}
        reply, listing = converse(server.port, wire.encode_request("UPLOAD", name, b"new"),
                                  LIST)
        assert reply == {"status": "ERROR",
                         "data": f"file {name!r} exists and is not a regular file"}
        assert listing["status"] == "OK"

    assert stat.S_ISFIFO(os.lstat(storage / "pipe").st_mode)
    assert (storage / "folder" / "inner.txt").read_bytes() == b"inner"
    assert os.readlink(storage / "link") == str(outside / "victim.txt")
    assert os.readlink(storage / "dirlink") == str(outside)
    assert sorted(os.listdir(outside)) == ["victim.txt"]
    assert (outside / "victim.txt").read_bytes() == b"not yours"
    assert_unharmed(server)


# --------------------------------------------------------------------------
# disk full

def mount_tmpfs(folder: Path, size: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                   check=True, capture_output=True, timeout=30)


def free_bytes(folder: Path) -> int:
    fs = os.statvfs(folder)
    return fs.f_bavail * fs.f_frsize


@integration
@pytest.mark.parametrize("mode", MODES)
def test_disk_full_answers_no_space_and_keeps_the_old_file(tmp_path, mode):
    if os.geteuid() != 0:
        pytest.skip("needs root: mounts a 2 MB tmpfs to fill")
    small = tmp_path / "small"
    small.mkdir()
    mount_tmpfs(small, "2m")
    try:
        old = random.Random(7).randbytes(200_000)
        (small / "f.bin").write_bytes(old)
        server = ServerProcess(small, mode=mode, pool=5, timeout=10)
        try:
            files = {"f.bin": old}
            free = free_bytes(small)
            # far over the free space, and just over it (the last write only partly fits)
            for size in (4 * 1024 * 1024, free + 1000):
                content = random.Random(size).randbytes(size)
                reply, listing = converse(server.port,
                                          wire.encode_request("UPLOAD", "f.bin", content), LIST)
                assert reply == {"status": "ERROR",
                                 "data": "cannot store 'f.bin': No space left on device"}, \
                    (size, reply)
                assert listing == {"status": "OK", "data": ["f.bin"]}
                assert (small / "f.bin").read_bytes() == old
                assert temp_files(small) == []
                assert free_bytes(small) == free, "the failed upload's space was not freed"
            small_content = b"fits" * 25_000
            assert converse(server.port, wire.encode_request(
                "UPLOAD", "small.bin", small_content))[0]["status"] == "OK"
            files["small.bin"] = small_content
            assert_unharmed(server, files)
        finally:
            assert server.stop() == 0, server.log()
            assert server.leftover_processes() == []
    finally:
        subprocess.run(["umount", str(small)], check=True, capture_output=True, timeout=30)


# --------------------------------------------------------------------------
# storage failures on a running server: answered, the connection goes on

def set_immutable(path: Path, on: bool) -> bool:
    """chattr +i / -i; False where the file system has no such flag."""
    done = subprocess.run(["chattr", "+i" if on else "-i", str(path)],
                          capture_output=True, timeout=30)
    return done.returncode == 0


@integration
@pytest.mark.parametrize("mode", MODES)
def test_an_immutable_folder_answers_every_write(tmp_path, mode):
    """Even root cannot create or remove entries in a folder marked immutable."""
    server = ServerProcess(tmp_path / "files", mode=mode, pool=2, timeout=10)
    (server.storage / "keep.txt").write_bytes(b"kept")
    try:
        if not set_immutable(server.storage, True):
            pytest.skip("the file system of the temporary folder has no chattr +i")
        try:
            delete, upload, listing, get = converse(
                server.port, wire.encode_request("DELETE", "keep.txt"),
                wire.encode_request("UPLOAD", "new.txt", b"new"), LIST,
                wire.encode_request("GET", "keep.txt"))
        finally:
            set_immutable(server.storage, False)
        assert delete == {"status": "ERROR",
                          "data": "cannot delete 'keep.txt': Operation not permitted"}
        assert upload["status"] == "ERROR" and "Operation not permitted" in upload["data"]
        assert "new.txt" in upload["data"]
        assert listing == {"status": "OK", "data": ["keep.txt"]}
        assert get["data_file_bytes"] == b"kept"
    finally:
        assert server.stop() == 0, server.log()
    assert "Traceback" not in server.log()


@integration
@pytest.mark.parametrize("mode", MODES)
def test_a_removed_storage_folder_is_answered(tmp_path, mode):
    server = ServerProcess(tmp_path / "files", mode=mode, pool=2, timeout=10)
    try:
        shutil.rmtree(server.storage)
        listing, get, upload = converse(server.port, LIST, wire.encode_request("GET", "a.txt"),
                                        wire.encode_request("UPLOAD", "a.txt", b"abc"))
        assert listing == {"status": "ERROR",
                           "data": "cannot list files: No such file or directory"}
        assert get == {"status": "ERROR", "data": "file 'a.txt' not found"}
        assert upload["status"] == "ERROR" and "No such file or directory" in upload["data"]
    finally:
        server.storage.mkdir()          # the supervisor's lock file went with the folder
        server.stop()
    assert "Traceback" not in server.log()


# --------------------------------------------------------------------------
# the README's table

def robustness_table_tests() -> list[tuple[str, str]]:
    """(file, test name or pattern) of each test the README's Robustness table names;
    ``::name`` after a ``file::name`` in one cell is in the same file."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("\n## Robustness\n", 1)[1].split("\n## ", 1)[0]
    named = []
    for row in section.splitlines():
        if not row.startswith("| ") or row.startswith("| attack "):
            continue
        last_cell = row.rstrip(" |").rsplit(" | ", 1)[-1]
        file = None
        for path, name in re.findall(r"`([\w.]*)::([\w*]+)`", last_cell):
            file = path or file
            named.append((file, name))
    return named


@pytest.mark.unit
def test_the_robustness_table_names_tests_that_exist():
    named = robustness_table_tests()
    assert len(named) >= 10
    for file, pattern in named:
        source = (REPO_ROOT / "tests" / "server" / file).read_text()
        tests = re.findall(r"^def (test_\w+)", source, re.M)
        assert fnmatch.filter(tests, pattern), f"README Robustness names {file}::{pattern}"
    listed = [pattern for file, pattern in named if file == "test_hostile.py"]
    own = re.findall(r"^def (test_\w+)", Path(__file__).read_text(), re.M)
    unlisted = [test for test in own if not any(fnmatch.fnmatch(test, p) for p in listed)]
    assert unlisted == ["test_the_robustness_table_names_tests_that_exist"]
