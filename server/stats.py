"""Counters every worker writes and the supervisor reads.

``WorkerTable`` is one flat array of unsigned 64-bit counters in shared
memory (``multiprocessing.RawArray``), one row per worker.  Each row has a
single writer, the worker it belongs to, so no lock is needed and the same
table works for threads and for forked processes: a pre-forked child writes
its row in memory the parent reads, not in a copy of its own.  Adding to a
counter is a read then a write, not atomic (with or without the GIL): it stays correct
only while each row has a single writer.  A reader may see one row
mid-update (``requests`` counted, its command not yet), as it always could
in process mode; each counter on its own is whole.

``StatsCollector`` runs in the supervisor: it sums the rows, keeps a short
history for requests/s over a recent window, samples CPU and memory with
psutil, and produces the ``/stats`` document and the periodic log line.
Its state (history, CPU samples, psutil handles) is guarded by a lock, so
the supervisor's loop and a metrics thread may both call it.

``interpreter_info()`` says which Python runs the server: a free-threaded
build or not, and whether the GIL is on now.
"""

from __future__ import annotations

import collections
import functools
import ipaddress
import multiprocessing
import os
import platform
import socket
import sys
import threading
import time

import psutil

from wire.streaming import FREE_THREADED_BUILD


__all__ = ["WorkerTable", "WorkerSlot", "StatsCollector", "COMMANDS", "interpreter_info",
           "describe_interpreter"]

COMMANDS = ("LIST", "GET", "UPLOAD", "DELETE", "OTHER")
STATUSES = ("OK", "ERROR")

_FIELDS = (
    "pid", "tid", "busy", "busy_since_ns", "busy_ns", "connections", "open_connections",
    "requests",
    "bytes_in", "bytes_out", "client_ip_hi", "client_ip_lo", "client_port",
    "client_since_ns", "client_bytes_in", "client_bytes_out", "client_requests",
    "accept_token", "accept_cpu_ns", "room_taken",
) + tuple(f"{cmd}_{status}" for cmd in COMMANDS for status in STATUSES)
_INDEX = {name: i for i, name in enumerate(_FIELDS)}
ROW = len(_FIELDS)
# positions in a row of the fields a worker writes on every connection
(_BUSY, _BUSY_SINCE_NS, _BUSY_NS, _CONNECTIONS, _OPEN_CONNECTIONS, _REQUESTS, _BYTES_IN,
 _BYTES_OUT, _CLIENT_IP_HI, _CLIENT_IP_LO, _CLIENT_PORT, _CLIENT_SINCE_NS, _CLIENT_BYTES_IN,
 _CLIENT_BYTES_OUT, _CLIENT_REQUESTS) = (_INDEX[name] for name in (
    "busy", "busy_since_ns", "busy_ns", "connections", "open_connections", "requests",
    "bytes_in", "bytes_out", "client_ip_hi", "client_ip_lo", "client_port", "client_since_ns",
    "client_bytes_in", "client_bytes_out", "client_requests"))
_ACCEPT_TOKEN = _INDEX["accept_token"]
_ACCEPT_CPU_NS = _INDEX["accept_cpu_ns"]
_ROOM_TAKEN = _INDEX["room_taken"]
_RESULT = {(command, ok): _INDEX[f"{command}_{'OK' if ok else 'ERROR'}"]
           for command in COMMANDS for ok in (True, False)}


class WorkerSlot:
    """One worker's row; only that worker writes it.  ``_row`` is a memoryview
    of the row in the shared array: its items are read and written in place
    (several times faster than through the ctypes array, on every connection)."""

    __slots__ = ("_row", "index")

    def __init__(self, array, index: int):
        self._row = memoryview(array).cast("B").cast("Q")[index * ROW:(index + 1) * ROW]
        self.index = index

    def __getitem__(self, field: str) -> int:
        return self._row[_INDEX[field]]

    def _set(self, field: str, value: int) -> None:
        self._row[_INDEX[field]] = value

    def claim(self, pid: int, tid: int) -> None:
        self._set("pid", pid)
        self._set("tid", tid)
        self._set("busy", 0)

    def connection_opened(self) -> None:
        self._row[_CONNECTIONS] += 1

    def holding(self, connections: int) -> None:
        """How many connections this worker holds now (served, waiting or parked)."""
        self._row[_OPEN_CONNECTIONS] = connections

    def holds_accept_token(self, mark: int) -> None:
        """The accept token this worker holds or is taking, 0 for none
        (``server.workerloop.AcceptTokens.mark``); the pool returns a dead worker's."""
        self._row[_ACCEPT_TOKEN] = mark

    def add_accept_cpu(self, cpu_seconds: float) -> None:
        """CPU time this worker used holding an accept token, counted as it
        passes one on and at its ticks; the pool sums it (``Pool.adjust_acceptors``)."""
        self._row[_ACCEPT_CPU_NS] += int(cpu_seconds * 1e9)

    def took_room(self, connections: int) -> None:
        """Room this worker took (or is taking) from the shared
        ``FS_MAX_CONNECTIONS`` (``server.workerloop.ConnectionRoom``); the pool
        gives back a dead worker's."""
        self._row[_ROOM_TAKEN] = connections

    def serving(self, address) -> None:
        """The worker starts (or resumes) serving a request of ``address``."""
        now = time.monotonic_ns()
        row = self._row
        row[_CLIENT_IP_HI], row[_CLIENT_IP_LO], row[_CLIENT_PORT] = _pack_address(address)
        row[_CLIENT_SINCE_NS] = now
        row[_CLIENT_BYTES_IN] = row[_CLIENT_BYTES_OUT] = row[_CLIENT_REQUESTS] = 0
        row[_BUSY_SINCE_NS] = now
        row[_BUSY] = 1

    def received(self, count: int) -> None:
        row = self._row
        row[_BYTES_IN] += count
        row[_CLIENT_BYTES_IN] += count

    def sent(self, count: int) -> None:
        row = self._row
        row[_BYTES_OUT] += count
        row[_CLIENT_BYTES_OUT] += count

    def request_done(self, command: str, ok: bool) -> None:
        row = self._row
        try:
            row[_RESULT[command, ok]] += 1
        except KeyError:
            row[_RESULT["OTHER", ok]] += 1
        row[_REQUESTS] += 1
        row[_CLIENT_REQUESTS] += 1

    def done_serving(self) -> None:
        """The request is answered, or parked until its peer is ready."""
        row = self._row
        row[_BUSY_NS] += time.monotonic_ns() - row[_BUSY_SINCE_NS]
        row[_BUSY] = 0


class WorkerTable:
    """Rows of counters for ``size`` workers, in memory shared across fork()."""

    def __init__(self, size: int):
        self.size = size
        self._array = multiprocessing.RawArray("Q", size * ROW)

    def slot(self, index: int) -> WorkerSlot:
        return WorkerSlot(self._array, index)

    def reset_row(self, index: int) -> None:
        """Clear a dead worker's identity; its counters stay in the totals."""
        slot = self.slot(index)
        slot._set("pid", 0)
        slot._set("tid", 0)
        slot._set("busy", 0)
        slot._set("open_connections", 0)
        slot._set("accept_token", 0)
        slot._set("room_taken", 0)

    def accept_cpu_seconds(self) -> float:
        """CPU time every worker, dead or alive, used holding an accept token."""
        return sum(self._array[_ACCEPT_CPU_NS::ROW]) / 1e9

    def rows(self) -> list[dict]:
        values = self._array[:]
        return [dict(zip(_FIELDS, values[i * ROW:(i + 1) * ROW])) for i in range(self.size)]


def _pack_address(address) -> tuple[int, int, int]:
    """(high 64 bits, low 64 bits, port) of an IPv4 or IPv6 peer address."""
    try:
        return (*_pack_host(address[0]), int(address[1]))
    except (TypeError, ValueError, IndexError, OSError):
        return 0, 0, 0


@functools.lru_cache(maxsize=1024)      # clients come back: most hosts are packed once
def _pack_host(host: str) -> tuple[int, int]:
    if ":" in host:
        packed = int.from_bytes(socket.inet_pton(socket.AF_INET6, host.split("%")[0]), "big")
    else:
        # IPv4 stored as IPv4-mapped IPv6 (::ffff:a.b.c.d)
        packed = (0xFFFF << 32) | int.from_bytes(socket.inet_aton(host), "big")
    return packed >> 64, packed & (2 ** 64 - 1)


def _unpack_address(row: dict) -> str | None:
    if not row["client_port"]:
        return None
    address = ipaddress.IPv6Address((row["client_ip_hi"] << 64) | row["client_ip_lo"])
    if address.ipv4_mapped:
        return f"{address.ipv4_mapped}:{row['client_port']}"
    return f"[{address}]:{row['client_port']}"


@functools.cache
def _build() -> tuple[str, str, bool]:
    return (platform.python_implementation(), platform.python_version(),
            FREE_THREADED_BUILD)


def interpreter_info() -> dict:
    """The running Python.  ``gil_enabled`` is read each time: a free-threaded
    build turns the GIL on at start with PYTHON_GIL=1, or later when it imports
    an extension module that does not declare it can run without it."""
    implementation, version, free_threaded = _build()
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)   # Python 3.13+
    return {"implementation": implementation, "version": version,
            "free_threaded": free_threaded,
            "gil_enabled": bool(is_gil_enabled()) if is_gil_enabled else True}


def describe_interpreter(info: dict) -> str:
    """``CPython 3.13.5, free-threaded, GIL disabled`` (or ``..., with the GIL``)."""
    text = f"{info['implementation']} {info['version']}"
    if not info["free_threaded"]:
        return text + ", with the GIL"
    return text + f", free-threaded, GIL {'enabled' if info['gil_enabled'] else 'disabled'}"


class CpuSampler:
    """CPU % between two calls, per key, from cumulative CPU seconds."""

    def __init__(self):
        self._previous: dict = {}

    def percent(self, key, cpu_seconds: float, now: float) -> float:
        before = self._previous.get(key)
        self._previous[key] = (cpu_seconds, now)
        if before is None or now <= before[1]:
            return 0.0
        return round(100.0 * (cpu_seconds - before[0]) / (now - before[1]), 1)


class StatsCollector:
    """Aggregates the table for /stats, /metrics and the stats log line.

    ``tick()``, ``snapshot()`` and ``requests_per_second()`` may be called from
    several threads: one lock serializes them (a snapshot takes a few ms).
    """

    RATE_WINDOW = 10.0   # seconds of history behind requests/s
    # PSS reads every process's smaps (about 0.5 ms each), so it is refreshed
    # at most this often
    PSS_MAX_AGE = 5.0

    def __init__(self, table: WorkerTable, mode: str, pool_size: int, address: str):
        self.table = table
        self.mode = mode
        self.pool_size = pool_size
        self.address = address
        self.started = time.time()
        self._started_monotonic = time.monotonic()
        self._history: collections.deque = collections.deque()
        self._cpu = CpuSampler()
        self._processes: dict[int, psutil.Process] = {}
        self._pss: tuple[float, int | None] = (float("-inf"), None)
        self._lock = threading.Lock()

    def tick(self) -> None:
        """Record the request total now; call about once a second."""
        with self._lock:
            now = time.monotonic()
            total = sum(row["requests"] for row in self.table.rows())
            self._history.append((now, total))
            while self._history and now - self._history[0][0] > self.RATE_WINDOW:
                self._history.popleft()

    def requests_per_second(self) -> float:
        with self._lock:
            return self._requests_per_second()

    def _requests_per_second(self) -> float:
        if len(self._history) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._history[0], self._history[-1]
        return round((n1 - n0) / (t1 - t0), 2) if t1 > t0 else 0.0

    def _process(self, pid: int) -> psutil.Process | None:
        proc = self._processes.get(pid)
        if proc is None:
            try:
                proc = self._processes[pid] = psutil.Process(pid)
            except psutil.Error:
                return None
        return proc

    def _resources(self, rows: list[dict], now: float) -> tuple[dict, dict, float]:
        """Per-row CPU/RSS, the server's memory, and the CPU seconds of every live
        server process (all threads included), from psutil."""
        per_row, pids = {}, {os.getpid()} | {row["pid"] for row in rows if row["pid"]}
        threads, rss = {}, {}
        for pid in pids:
            proc = self._process(pid)
            if proc is None:
                continue
            try:
                with proc.oneshot():
                    rss[pid] = proc.memory_info().rss
                    times = proc.cpu_times()
                    cpu = times.user + times.system
                    if pid == os.getpid():
                        threads = {t.id: t.user_time + t.system_time for t in proc.threads()}
                per_row[("process", pid)] = cpu
            except psutil.Error:
                self._processes.pop(pid, None)
        result = {}
        for row in rows:
            pid, tid = row["pid"], row["tid"]
            if not pid:
                continue
            if pid == os.getpid():      # a thread of this process
                seconds = threads.get(tid)
                memory = None
            else:
                seconds = per_row.get(("process", pid))
                memory = rss.get(pid)
            if seconds is None:
                continue
            result[(pid, tid)] = {
                "cpu_seconds": round(seconds, 3),
                "cpu_percent": self._cpu.percent((pid, tid), seconds, now),
                "rss_bytes": memory,
            }
        for pid in list(self._processes):
            if pid not in pids:
                del self._processes[pid]
        memory = {"rss_bytes_total": sum(rss.values()),
                  "rss_bytes_supervisor": rss.get(os.getpid()),
                  "pss_bytes_total": self._pss_total(now, rss)}
        return result, memory, round(sum(per_row.values()), 3)

    def _pss_total(self, now: float, rss: dict[int, int]) -> int | None:
        """Proportional set size of all server processes: shared pages counted once
        overall, which the RSS sum counts once per pre-forked worker."""
        measured_at, total = self._pss
        if now - measured_at < self.PSS_MAX_AGE:
            return total
        total = 0
        for pid in rss:
            try:
                total += self._processes[pid].memory_full_info().pss
            except (psutil.Error, AttributeError, KeyError):
                total = None         # no smaps here (not Linux, or not permitted)
                break
        self._pss = (now, total)
        return total

    def snapshot(self, alive_workers: int, ready: bool) -> dict:
        with self._lock:
            return self._snapshot(alive_workers, ready)

    def _snapshot(self, alive_workers: int, ready: bool) -> dict:
        now = time.monotonic()
        rows = self.table.rows()
        resources, memory, cpu_seconds = self._resources(rows, now)
        workers = [self._worker_view(i, row, resources) for i, row in enumerate(rows)]
        busy = sum(1 for row in rows if row["busy"])
        by_command = {cmd: {status: sum(row[f"{cmd}_{status}"] for row in rows)
                            for status in STATUSES} for cmd in COMMANDS}
        return {
            "mode": self.mode,
            "pool": self.pool_size,
            "address": self.address,
            "pid": os.getpid(),
            "ready": ready,
            "started_at": self.started,
            "uptime_seconds": round(now - self._started_monotonic, 3),
            "interpreter": interpreter_info(),
            "requests_per_second": self._requests_per_second(),
            "rate_window_seconds": self.RATE_WINDOW,
            "workers_alive": alive_workers,
            "workers_busy": busy,
            "workers_idle": max(alive_workers - busy, 0),
            "open_connections": sum(row["open_connections"] for row in rows),
            "totals": {
                "requests": sum(row["requests"] for row in rows),
                "errors": sum(by_command[cmd]["ERROR"] for cmd in COMMANDS),
                "connections": sum(row["connections"] for row in rows),
                "bytes_in": sum(row["bytes_in"] for row in rows),
                "bytes_out": sum(row["bytes_out"] for row in rows),
                "by_command": by_command,
            },
            "cpu": {"seconds_total": cpu_seconds,
                    "percent": self._cpu.percent("server", cpu_seconds, now)},
            "memory": memory,
            "workers": workers,
        }

    def _worker_view(self, index: int, row: dict, resources: dict) -> dict:
        usage = resources.get((row["pid"], row["tid"]), {})
        view = {
            "worker": f"Worker-{index + 1}",
            "pid": row["pid"] or None,
            "tid": row["tid"] or None,
            "state": "busy" if row["busy"] else ("idle" if row["pid"] else "not started"),
            "connections": row["connections"],
            "open_connections": row["open_connections"],
            "accepting": bool(row["accept_token"]),
            "requests": row["requests"],
            "bytes_in": row["bytes_in"],
            "bytes_out": row["bytes_out"],
            "busy_seconds": round(self._busy_ns(row) / 1e9, 3),
            "cpu_percent": usage.get("cpu_percent"),
            "cpu_seconds": usage.get("cpu_seconds"),
            "rss_bytes": usage.get("rss_bytes"),
            "client": None,
        }
        if row["busy"]:
            elapsed = max(time.monotonic_ns() - row["client_since_ns"], 1) / 1e9
            moved = row["client_bytes_in"] + row["client_bytes_out"]
            view["client"] = {
                "address": _unpack_address(row),
                "requests": row["client_requests"],
                "bytes_in": row["client_bytes_in"],
                "bytes_out": row["client_bytes_out"],
                "seconds": round(elapsed, 3),
                "kb_per_second": round(moved / 1024 / elapsed, 1),
            }
        return view

    @staticmethod
    def _busy_ns(row: dict) -> int:
        if row["busy"]:
            return row["busy_ns"] + max(time.monotonic_ns() - row["busy_since_ns"], 0)
        return row["busy_ns"]

    @staticmethod
    def log_line(snapshot: dict) -> str:
        totals = snapshot["totals"]
        cpu = [w["cpu_percent"] for w in snapshot["workers"] if w["cpu_percent"] is not None]
        return (f"stats: {snapshot['requests_per_second']:.1f} req/s, "
                f"{totals['requests']} requests ({totals['errors']} errors), "
                f"workers {snapshot['workers_busy']} busy / {snapshot['workers_idle']} idle / "
                f"{snapshot['workers_alive']} alive, "
                f"in {totals['bytes_in'] / 1e6:.1f} MB, out {totals['bytes_out'] / 1e6:.1f} MB, "
                f"worker CPU {sum(cpu):.0f}%, "
                f"RSS {(snapshot['memory']['rss_bytes_total'] or 0) / 1e6:.0f} MB, "
                f"uptime {snapshot['uptime_seconds']:.0f}s")
