"""Concurrent UPLOAD, DELETE and GET of one name against a real server, both modes.

Issue 13's target is 10 uploaders, 10 deleters and 10 readers for 30 s; here each
mode runs for ``SECONDS`` (8 s) to keep CI bounded.  Every upload is a 16-byte token
naming it, repeated, so a GET proves it got one whole version: all tokens equal and
the size that token was uploaded with.  The only acceptable ERROR is "not found"
for a GET or DELETE.
"""

import random
import threading
import time

import pytest

import wire
from server.config import MODES
from tests.support import connect, read_reply, temp_files

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECONDS = 8.0
CLIENTS = 10                       # of each kind
NAME = "race.bin"
TOKEN_BYTES = 16
# token repetitions: tiny to past one GET chunk (wire.FILE_CHUNK_BYTES, 192 KiB)
REPEATS = [1, 3, 64, 4096, wire.FILE_CHUNK_BYTES // TOKEN_BYTES + 500]
NOT_FOUND = f"file {NAME!r} not found"


class Race:
    def __init__(self, port: int):
        self.port = port
        self.deadline = time.monotonic() + SECONDS
        self.sizes: dict[bytes, int] = {}           # token -> size it was uploaded with
        self.counts: dict[str, int] = {}
        self.problems: list[str] = []
        self.lock = threading.Lock()

    def note(self, outcome: str, problem: str | None = None) -> None:
        with self.lock:
            self.counts[outcome] = self.counts.get(outcome, 0) + 1
            if problem and len(self.problems) < 20:
                self.problems.append(problem)

    def client(self, kind: str, number: int) -> None:
        rng = random.Random(f"{kind}{number}")
        sequence = 0
        try:
            with connect(self.port, timeout=30) as sock:
                decoder = wire.ReplyDecoder()
                while time.monotonic() < self.deadline:
                    if kind == "upload":
                        sequence += 1
                        token = f"{number:02d}{sequence:014d}".encode()
                        content = token * rng.choice(REPEATS)
                        self.sizes[token] = len(content)
                        sock.sendall(wire.encode_request("UPLOAD", NAME, content))
                    else:
                        sock.sendall(wire.encode_request(kind.upper(), NAME))
                    self.check(kind, read_reply(sock, decoder))
        except Exception as exc:         # a dropped connection is a spurious error too
            self.note("exception", f"{kind} {number}: {exc!r}")

    def check(self, kind: str, reply: dict) -> None:
        if reply["status"] == "ERROR":
            if kind != "upload" and reply["data"] == NOT_FOUND:
                self.note(f"{kind} not found")
            else:
                self.note(f"{kind} error", f"{kind}: {reply['data']}")
            return
        if kind != "get":
            self.note(f"{kind} ok")
            return
        content = reply["data_file_bytes"]
        token = content[:TOKEN_BYTES]
        whole = (len(content) % TOKEN_BYTES == 0 and self.sizes.get(token) == len(content)
                 and content == token * (len(content) // TOKEN_BYTES))
        if whole:
            self.note("get ok")
        else:
            self.note("torn read", f"GET of {len(content)} bytes starting {content[:40]!r}")


@pytest.mark.parametrize("mode", MODES)
def test_upload_delete_and_get_race_on_one_name(server_factory, mode):
    server = server_factory(mode, pool=3 * CLIENTS + 2, log_level="WARNING")
    race = Race(server.port)
    threads = [threading.Thread(target=race.client, args=(kind, number))
               for number in range(CLIENTS) for kind in ("upload", "delete", "get")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECONDS + 60)
    assert not any(thread.is_alive() for thread in threads)
    counts = race.counts
    assert race.problems == [], counts
    assert not {"exception", "torn read", "upload error", "delete error", "get error"} & set(
        counts), counts
    # the race really ran: every outcome of each kind was seen
    for outcome in ("upload ok", "delete ok", "delete not found", "get ok", "get not found"):
        assert counts.get(outcome, 0) > 0, counts
    assert temp_files(server.storage) == []
