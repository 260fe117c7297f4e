"""The server's memory while large files stream both ways (the memory target of
``make bench``, here on whichever interpreter runs the tests: ``make test-ft``
runs it on the free-threaded one, where 1 MiB objects made per piece grew
the server by 450-620 MiB; see ``wire.streaming``)."""

import base64
import os
import random
import threading

import pytest

import wire
from bench.servers import RssSampler, idle_rss
from bench.targets import MEMORY_TARGET_BYTES
from tests.support import ServerProcess, connect

pytestmark = [pytest.mark.integration, pytest.mark.slow]


SIZE = 100 * 1000 * 1000
TRANSFERS = 5           # GETs, and as many UPLOADs, at once
BLOCK = 3 * 256 * 1024  # the files repeat one random block (a multiple of 3)


def get_reply_size(sock) -> int:
    """Reads a whole reply without decoding it; returns its size."""
    buffer = bytearray(1 << 20)
    size, tail = 0, b""
    while not tail.endswith(wire.TERMINATOR):
        count = sock.recv_into(buffer)
        assert count, "the server closed the connection mid-reply"
        size += count
        tail = (tail + bytes(buffer[max(count - 4, 0):count]))[-4:]
    return size


def test_five_gets_and_five_uploads_of_100_mb_stay_under_the_memory_target(tmp_path):
    storage = tmp_path / "files"
    storage.mkdir()
    block = random.Random(0).randbytes(BLOCK)
    count, rest = divmod(SIZE, BLOCK)
    with open(storage / "big.bin", "wb") as file:
        for _ in range(count):
            file.write(block)
        file.write(block[:rest])
    encoded_block = base64.b64encode(block)
    encoded_rest = base64.b64encode(block[:rest])
    get_reply_bytes = len(wire.get_reply_prefix("big.bin") + wire.GET_REPLY_SUFFIX) \
        + count * len(encoded_block) + len(encoded_rest)
    results, errors = [], []

    def get():
        with connect(server.port, timeout=60) as sock:
            sock.sendall(wire.encode_request("GET", "big.bin"))
            results.append(get_reply_size(sock) == get_reply_bytes)

    def upload(name):
        with connect(server.port, timeout=60) as sock:
            sock.sendall(wire.upload_request_head(name))
            for _ in range(count):
                sock.sendall(encoded_block)
            sock.sendall(encoded_rest + wire.TERMINATOR)
            reply = sock.recv(4096)
            results.append(f"({SIZE} bytes)".encode() in reply)

    def run(target, *args):
        try:
            target(*args)
        except Exception as exc:    # reported below, with the memory figures
            errors.append(repr(exc))

    server = ServerProcess(storage, mode="thread", pool=2 * TRANSFERS)
    try:
        idle = idle_rss(server, 1.0)
        clients = [threading.Thread(target=run, args=(get,)) for _ in range(TRANSFERS)]
        clients += [threading.Thread(target=run, args=(upload, f"up{i}.bin"))
                    for i in range(TRANSFERS)]
        with RssSampler(server) as sampler:
            for client in clients:
                client.start()
            for client in clients:
                client.join(120)
        increase = sampler.peak - idle
    finally:
        assert server.stop() == 0, server.log()
    print(f"server RSS idle {idle / 2**20:.1f} MiB, +{increase / 2**20:.1f} MiB")
    assert errors == [] and results == [True] * 2 * TRANSFERS, (errors, results)
    assert increase < MEMORY_TARGET_BYTES, \
        f"RSS rose by {increase / 2**20:.0f} MiB (idle {idle / 2**20:.0f} MiB)"
    for i in range(TRANSFERS):
        assert os.path.getsize(storage / f"up{i}.bin") == SIZE
