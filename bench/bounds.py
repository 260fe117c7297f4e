"""Physical bounds of this machine, measured in the same run as the load.

* base64 speed of one core on 64 MiB, in MB/s of raw bytes (each of a few
  repetitions): encode and strict decode by ``wire``'s engine (pybase64, or
  binascii without it), and binascii's strict decode for reference, in the
  pieces ``wire`` uses (``FILE_CHUNK_BYTES`` of file, its base64 as text): one
  call on all 64 MiB would mostly measure the page faults of its output;
* loopback TCP bulk throughput: one sender process, one receiver, 1 MiB
  ``sendall``/``recv_into`` over 127.0.0.1.  ``loopback_now`` is a shorter
  one, taken right before and after each transfer measurement: this
  machine's speed drifts, so a transfer is compared with the loopback
  throughput of the same moment;
* file write: 100 MB written into a new file in the storage folder the way an
  upload writes it (unbuffered ``os.write`` of decoded pieces, no fsync),
  then removed.  An UPLOAD cannot be faster than this; on this machine's
  ext4 the copy into fresh page-cache pages costs more CPU than receiving
  and decoding, so it is measured next to each UPLOAD like loopback TCP.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import statistics
import time

from wire import streaming

__all__ = ["base64_speed", "loopback_now", "loopback_tcp_speed", "file_write_speed",
           "upload_write_bytes", "UPLOAD_WRITE_BYTES"]

MIB = 1 << 20
MB = 1_000_000


def upload_write_bytes(free_threaded: bool = streaming.FREE_THREADED_BUILD) -> int:
    """What Upload.write is handed once an upload's receive room is full-size (the
    decoded content of one receive), on a default or a free-threaded build."""
    return streaming.RECV_BYTES_BY_BUILD[free_threaded] * 3 // 4


UPLOAD_WRITE_BYTES = upload_write_bytes()     # this interpreter's


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
    engine = streaming.BASE64_ENGINE
    step = streaming.FILE_CHUNK_BYTES
    raw = os.urandom(size - size % step)
    raw_pieces = [memoryview(raw)[i:i + step] for i in range(0, len(raw), step)]
    text_pieces = [engine.encode(piece) for piece in raw_pieces]
    assert b"".join(engine.decode(piece) for piece in text_pieces) == raw

    def each(function, pieces):
        def run():
            for piece in pieces:        # each output dropped at once, as wire's are
                function(piece)
        return run
    return {"size_bytes": len(raw), "piece_bytes": step, "repeats": repeats,
            "engine": engine.name,
            "encode": _speeds(each(engine.encode, raw_pieces), len(raw), repeats),
            "decode_strict": _speeds(each(engine.decode, text_pieces), len(raw), repeats),
            "binascii_decode_strict": _speeds(
                each(streaming.STDLIB_ENGINE.decode, text_pieces), len(raw), repeats)}


def loopback_now(total: int = 512 * MIB) -> float | None:
    """Loopback TCP MB/s right now (a shorter run, next to a measurement)."""
    return loopback_tcp_speed(total, timeout=20.0)["mb_per_s"]


def median_of(values) -> float | None:
    values = [v for v in values if v]
    return round(statistics.median(values), 1) if values else None


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


def file_write_speed(folder: str, total: int = 100 * MB,
                     piece: int = UPLOAD_WRITE_BYTES) -> float | None:
    """MB/s of writing ``total`` bytes into a new file in ``folder`` as an upload
    does, from open to close; the file is removed.  None if it cannot be written."""
    payload = memoryview(os.urandom(piece))
    path = os.path.join(folder, f".bench-file-write-{os.getpid()}")
    try:
        started = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            written = 0
            while written < total:
                written += os.write(fd, payload[:min(piece, total - written)])
        finally:
            os.close(fd)
        seconds = time.perf_counter() - started
    except OSError:
        return None
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    return round(written / seconds / 1e6, 1) if seconds else None
