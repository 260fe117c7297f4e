"""In-process speed of ``wire``'s transfer paths, no sockets: MB/s of file bytes.

* ``upload``: the whole request of a 100 MB UPLOAD (head, base64, terminator)
  through ``RequestDecoder``, fed in 64 KiB pieces with ``receive_data``;
* ``upload-into``: the same, each piece copied in by ``receive_into`` (as a
  ``recv_into`` would), when this ``wire`` has it;
* ``get``: a 100 MB GET reply built by ``get_reply_stream`` from
  ``FILE_CHUNK_BYTES`` pieces (views of the file in memory);
* with ``--socket``, ``socket-recv`` and ``socket-into``: the UPLOAD sent
  by a forked process over a socketpair and received by ``RECV_BYTES`` ``recv`` +
  ``receive_data`` or by ``receive_into`` (the receiver's CPU time).

MB/s per second of this process's CPU time (the machine is shared: wall time
would measure the neighbours too), median (and all) of ``--repeats`` runs.
It uses only ``wire``'s public names, so it also measures an older copy of
``wire``:
``PYTHONPATH=/tmp/old python bench/wire_speed.py``.
``--engine stdlib`` forces the standard library's base64 where ``wire`` has
engines.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import socket
import statistics
import time

import wire

PIECE = 64 * 1024


def _upload_request(size: int) -> bytes:
    return wire.upload_request_head("x.bin") + base64.b64encode(os.urandom(size)) \
        + wire.TERMINATOR


def decode_upload(request: bytes, size: int, into: bool) -> float:
    """Seconds to decode ``request`` in PIECE pieces; checks the decoded size."""
    decoder = wire.RequestDecoder(max_upload_bytes=size)
    view = memoryview(request)
    decoded = 0
    offset = 0

    def recv_into(buffer) -> int:
        count = min(len(buffer), PIECE, len(view) - offset)
        buffer[:count] = view[offset:offset + count]
        return count

    started = time.process_time()
    while offset < len(view):
        if into:
            offset += decoder.receive_into(recv_into, PIECE)
        else:
            decoder.receive_data(view[offset:offset + PIECE])
            offset += PIECE
        while (event := decoder.next_event()) is not wire.NEED_DATA:
            if isinstance(event, wire.UploadData):
                decoded += len(event.data)
    seconds = time.process_time() - started
    if decoded != size:
        raise AssertionError(f"decoded {decoded} bytes, expected {size}")
    return seconds


def _send(sock: socket.socket, other: socket.socket, request: bytes) -> None:
    other.close()
    with sock:
        sock.sendall(request)


def decode_upload_socket(request: bytes, size: int, into: bool) -> float:
    """Seconds of this process's CPU to receive and decode ``request`` from a socket."""
    mine, theirs = socket.socketpair()
    sender = multiprocessing.get_context("fork").Process(target=_send,
                                                         args=(theirs, mine, request))
    sender.start()
    theirs.close()
    decoder = wire.RequestDecoder(max_upload_bytes=size)
    decoded = 0
    with mine:
        mine.settimeout(60)
        started = time.process_time()
        while True:
            if into:
                count = decoder.receive_into(mine.recv_into)
            else:
                data = mine.recv(wire.RECV_BYTES)
                count = len(data)
                decoder.receive_data(data)
            while (event := decoder.next_event()) is not wire.NEED_DATA:
                if isinstance(event, wire.UploadData):
                    decoded += len(event.data)
            if not count:
                break
        seconds = time.process_time() - started
    sender.join(30)
    if decoded != size:
        raise AssertionError(f"decoded {decoded} bytes, expected {size}")
    return seconds


def encode_get(content: bytes) -> float:
    """Seconds to build the GET reply of ``content`` in FILE_CHUNK_BYTES pieces."""
    view = memoryview(content)
    step = wire.FILE_CHUNK_BYTES
    sent = 0
    started = time.process_time()
    reply = wire.get_reply_stream("x.bin")
    for start in range(0, len(view), step):
        sent += len(reply.encode(view[start:start + step]))
    sent += len(reply.finish())
    seconds = time.process_time() - started
    if sent < len(content) * 4 // 3:
        raise AssertionError(f"sent {sent} bytes for {len(content)}")
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wire_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=100, help="file size (default 100)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per path (default 5)")
    parser.add_argument("--socket", action="store_true",
                        help="also receive the upload from a socket (a forked sender)")
    parser.add_argument("--engine", choices=("default", "stdlib"), default="default",
                        help="base64 engine, where wire has a choice (default: wire's own)")
    args = parser.parse_args(argv)
    if not 1 <= args.size_mb <= 1000 or not 1 <= args.repeats <= 20:
        parser.error("--size-mb takes 1..1000 and --repeats 1..20")
    engine = getattr(getattr(wire, "streaming", None), "BASE64_ENGINE", None)
    if args.engine == "stdlib":
        if engine is None:
            parser.error("this wire has no base64 engines to choose from")
        wire.streaming.BASE64_ENGINE = engine = wire.streaming.STDLIB_ENGINE
    size = args.size_mb * 1_000_000
    content = os.urandom(size)
    request = _upload_request(size)
    paths = {"upload": lambda: decode_upload(request, size, into=False),
             "get": lambda: encode_get(content)}
    if hasattr(wire.RequestDecoder, "receive_into"):
        paths["upload-into"] = lambda: decode_upload(request, size, into=True)
    if args.socket:
        paths["socket-recv"] = lambda: decode_upload_socket(request, size, into=False)
        if hasattr(wire.RequestDecoder, "receive_into"):
            paths["socket-into"] = lambda: decode_upload_socket(request, size, into=True)
    print(f"wire from {os.path.dirname(wire.__file__)}, base64 engine "
          f"{getattr(engine, 'name', 'binascii (no choice)')}, {args.size_mb} MB, "
          f"MB/s of CPU time, median of {args.repeats}")
    runs: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.repeats):           # interleaved: drift hits every path alike
        for name, measure in paths.items():
            runs[name].append(round(size / measure() / 1e6, 1))
    for name, speeds in runs.items():
        print(f"  {name:<12} {statistics.median(speeds):8.1f} MB/s   runs {speeds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
