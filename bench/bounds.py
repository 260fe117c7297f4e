"""Physical bounds of this machine, measured in the same run as the load.

* base64 speed of one core: ``binascii`` on 64 MiB, in MB/s of raw bytes
  (each of a few repetitions), for encode, decode, and decode with
  ``strict_mode=True`` (what the server's decoder uses);
* loopback TCP bulk throughput: one sender process, one receiver, 1 MiB
  ``sendall``/``recv_into`` over 127.0.0.1.
"""

from __future__ import annotations

import binascii
import multiprocessing
import os
import socket
import statistics
import time

__all__ = ["base64_speed", "decode_speed_now", "loopback_tcp_speed"]

MIB = 1 << 20


def _speeds(function, size: int, repeats: int) -> list[float]:
    speeds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        speeds.append(round(size / (time.perf_counter() - started) / 1e6, 1))
    return speeds


def base64_speed(size: int = 64 * MIB, repeats: int = 5) -> dict:
    """MB/s of raw bytes, each repetition kept: this machine's single-core speed
    varies from one second to the next, so the median is the reference and
    the best is shown beside it."""
    raw = os.urandom(size)
    text = binascii.b2a_base64(raw, newline=False)
    assert binascii.a2b_base64(text, strict_mode=True) == raw
    return {"size_bytes": size, "repeats": repeats,
            "encode": _speeds(lambda: binascii.b2a_base64(raw, newline=False), size, repeats),
            "decode": _speeds(lambda: binascii.a2b_base64(text), size, repeats),
            "decode_strict": _speeds(lambda: binascii.a2b_base64(text, strict_mode=True),
                                     size, repeats)}


def decode_speed_now(size: int = 64 * MIB, repeats: int = 3) -> float:
    """Median base64 decode MB/s right now (a short check next to a measurement)."""
    text = binascii.b2a_base64(os.urandom(size), newline=False)
    return statistics.median(_speeds(lambda: binascii.a2b_base64(text), size, repeats))


def _send_bulk(port: int, total: int, piece: int) -> None:
    payload = b"\x00" * piece
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sent = 0
        while sent < total:
            sock.sendall(payload)
            sent += piece


def loopback_tcp_speed(total: int = 1 << 30, piece: int = MIB, timeout: float = 60.0) -> dict:
    """MB/s from the first byte received to the last (bounded by ``timeout``)."""
    total -= total % piece
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        port = listener.getsockname()[1]
        sender = multiprocessing.get_context("fork").Process(
            target=_send_bulk, args=(port, total, piece), daemon=True)
        sender.start()
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(10)
                buffer = memoryview(bytearray(piece))
                received, first = 0, None
                deadline = time.monotonic() + timeout
                while received < total and time.monotonic() < deadline:
                    count = conn.recv_into(buffer)
                    if not count:
                        break
                    if first is None:
                        first = time.perf_counter()
                    received += count
                seconds = time.perf_counter() - first if first else 0.0
        finally:
            sender.join(10)
            if sender.is_alive():
                sender.kill()
                sender.join(5)
    return {"bytes": received, "complete": received == total,
            "mb_per_s": round(received / seconds / 1e6, 1) if seconds else None}
