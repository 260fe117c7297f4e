"""Closed-loop load: N client processes, one connection per request.

``run_point`` forks one process per client (so the clients do not share a
GIL), waits until each is ready, starts them together, and meanwhile
samples the server's CPU time and summed RSS.  Every loop is bounded: in
time (``duration``, per-request ``timeout``, collection deadline) and in
count (``max_ops`` per client).

Two ways of counting:

* ``window=True`` (LIST): after ``warmup`` seconds, requests that start
  and end inside the ``duration`` window count; ops/s = count / duration.
* ``window=False`` (transfers): each client runs whole transfers until
  ``duration`` has passed and it has done at least ``min_ops``; MB/s =
  all file bytes / (last end - start).
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import time
from array import array
from dataclasses import dataclass

import psutil

from wire import ProtocolError

from .proto import BenchError, BlockFile, Client
from .servers import ChildServer, RssSampler, cpu_seconds

__all__ = ["ClientSpec", "Plan", "run_point", "percentile", "system_busy_seconds",
           "wait_for_quiet"]

READY_TIMEOUT = 60.0
MAX_ERROR_SAMPLES = 3


@dataclass(frozen=True)
class ClientSpec:
    op: str                        # "list", "get" or "upload"
    name: str | None = None
    size: int = 0
    expected: int | None = None    # LIST: number of names expected
    seed: int = 0                  # GET, UPLOAD: the content is BlockFile(size, seed)
    # UPLOAD: the server's storage folder, from which each uploaded file is
    # removed after its upload, outside its latency (so that dirty pages do
    # not pile up)
    remove_from: str | None = None


@dataclass(frozen=True)
class Plan:
    address: tuple[str, int]
    duration: float
    warmup: float = 0.0
    window: bool = True
    min_ops: int = 1
    max_ops: int = 1_000_000
    timeout: float = 30.0


def percentile(sorted_values, p: float):
    """Nearest-rank percentile of an already sorted sequence (None if empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# --------------------------------------------------------------------------
# in the client process

def _make_op(spec: ClientSpec, plan: Plan):
    client = Client(plan.address, plan.timeout)
    if spec.op == "list":
        return lambda: client.list(spec.expected)
    if spec.op == "get":
        content = BlockFile(spec.size, spec.seed)
        return lambda: client.get(spec.name, content)
    if spec.op == "upload":
        return _UploadOp(client, spec)
    raise ValueError(f"unknown op {spec.op!r}")


class _UploadOp:
    """The upload op: every call creates a file (``fresh_upload_names``);
    ``tidy()``, called by the loop after the op's latency is taken, removes
    it from ``spec.remove_from`` if given (its time still counts in the
    point's elapsed time: a few ms per 100 MB file)."""

    def __init__(self, client: Client, spec: ClientSpec):
        self.client = client
        self.source = BlockFile(spec.size, spec.seed)
        self.names = fresh_upload_names(spec.name)
        self.folder = spec.remove_from
        self.last = None

    def __call__(self) -> int:
        self.last = next(self.names)
        return self.client.upload(self.last, self.source)

    def tidy(self) -> None:
        if self.folder and self.last:
            try:
                os.unlink(os.path.join(self.folder, self.last))
            except FileNotFoundError:
                pass    # a failed upload stored nothing (or not yet: the point's end removes it)


def fresh_upload_names(name: str):
    """``name``, then ``name`` with ``-1``, ``-2``, ... before its extension.

    Every upload of a run creates a file: on ext4 a rename over an existing
    file starts the new file's writeback inside the rename
    (``auto_da_alloc``; see ``bench.replace_cost``), which would put part
    of a disk flush into every upload after a client's first."""
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    yield name
    for count in itertools.count(1):
        yield f"{stem}-{count}{dot}{extension}"


def _client_loop(op, plan: Plan, t0: float) -> dict:
    measure_start = t0 + plan.warmup
    measure_end = measure_start + plan.duration
    latencies = array("d")
    ops = errors = attempts = 0
    moved = 0
    first_start = last_end = None
    messages: list[str] = []
    cpu_start = None
    tidy = getattr(op, "tidy", None)
    while attempts < plan.max_ops:
        now = time.monotonic()
        if now >= measure_end and (plan.window or attempts >= plan.min_ops):
            break
        if cpu_start is None and now >= measure_start:
            cpu_start = time.process_time()
        start = time.monotonic()
        try:
            size = op()
            failure = None
        except (OSError, ProtocolError, BenchError) as exc:
            failure = f"{type(exc).__name__}: {exc}"
        end = time.monotonic()
        if tidy is not None:
            try:
                tidy()
            except OSError as exc:
                if len(messages) < MAX_ERROR_SAMPLES:
                    messages.append(f"removing an upload: {exc}"[:300])
        attempts += 1
        counted = (not plan.window) or (start >= measure_start and end <= measure_end)
        if failure is None:
            if counted:
                latencies.append(end - start)
                ops += 1
                moved += size
                first_start = start if first_start is None else first_start
                last_end = end
        else:
            if counted:
                errors += 1
                if len(messages) < MAX_ERROR_SAMPLES:
                    messages.append(failure[:300])
            time.sleep(0.005)       # an error must not turn into a busy loop
    cpu = time.process_time() - cpu_start if cpu_start is not None else 0.0
    return {"latencies": latencies.tobytes(), "ops": ops, "errors": errors,
            "messages": messages, "bytes": moved, "attempts": attempts,
            "first_start": first_start, "last_end": last_end, "cpu_seconds": cpu}


def _client_main(spec: ClientSpec, plan: Plan, conn, go, start_at) -> None:
    try:
        op = _make_op(spec, plan)
        conn.send(("ready", None))
        if not go.wait(READY_TIMEOUT):
            conn.send(("failed", "never told to start"))
            return
        t0 = start_at.value
        delay = t0 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        conn.send(("done", _client_loop(op, plan, t0)))
    except BaseException as exc:       # noqa: BLE001 - reported to the parent
        try:
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        except Exception:
            pass
    finally:
        conn.close()


# --------------------------------------------------------------------------
# in the parent

def system_busy_seconds() -> float:
    """CPU seconds all cores spent not idle, outside interrupts (steal included).

    Interrupt time is left out: on loopback much of it is our own traffic's
    softirq work, which the kernel charges to no process.
    """
    times = psutil.cpu_times()
    return sum(times) - times.idle - sum(
        getattr(times, field, 0.0)
        for field in ("iowait", "guest", "guest_nice", "irq", "softirq"))


def irq_seconds() -> float:
    times = psutil.cpu_times()
    return getattr(times, "irq", 0.0) + getattr(times, "softirq", 0.0)


def wait_for_quiet(max_wait: float = 20.0, threshold_pct: float = 15.0,
                   window: float = 0.25) -> float:
    """Wait (at most ``max_wait`` s) until the machine is nearly idle; returns the wait.

    Other work on this 2-core machine (a test suite, say) would be measured
    as if it were the server's slowness.
    """
    started = time.monotonic()
    while True:
        busy0, wall0 = system_busy_seconds(), time.monotonic()
        time.sleep(window)
        busy = 100 * (system_busy_seconds() - busy0) / (time.monotonic() - wall0)
        waited = time.monotonic() - started
        if busy < threshold_pct or waited >= max_wait:
            return round(waited, 2)


def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def run_point(server: ChildServer, specs: list[ClientSpec], plan: Plan,
              sample_rss: bool = True) -> dict:
    """Run one measurement with ``len(specs)`` client processes; returns the figures."""
    context = multiprocessing.get_context("fork")
    go = context.Event()
    start_at = context.RawValue("d", 0.0)
    children = []
    try:
        for index, spec in enumerate(specs):
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=_client_main, name=f"bench-client-{index}",
                                      args=(spec, plan, sender, go, start_at), daemon=True)
            process.start()
            sender.close()
            children.append((process, receiver))
        deadline = time.monotonic() + READY_TIMEOUT
        for _process, receiver in children:
            if not receiver.poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError("a client process did not get ready in time")
            kind, detail = receiver.recv()
            if kind != "ready":
                raise RuntimeError(f"a client process failed to start: {detail}")

        server_pids = server.pids()      # workers do not change during a point
        me = psutil.Process()
        # no fork after this point: the RSS sampler is a thread
        sampler = RssSampler(server) if sample_rss else None
        if sampler:
            sampler.__enter__()
        try:
            t0 = time.monotonic() + 0.1
            start_at.value = t0
            go.set()
            measure_start = t0 + plan.warmup
            measure_end = measure_start + plan.duration
            _sleep_until(measure_start)
            before = _cpu_snapshot(server_pids, me)
            if plan.window:
                _sleep_until(measure_end)
                after = _cpu_snapshot(server_pids, me)
            results, failures = [], []
            collect_deadline = measure_end + plan.timeout * max(1, plan.min_ops) + 10.0
            for _process, receiver in children:
                try:
                    ready = receiver.poll(max(0.0, collect_deadline - time.monotonic()))
                    message = receiver.recv() if ready else ("failed", "no result in time")
                except EOFError:
                    message = ("failed", "client process ended without a result")
                if message[0] == "done":
                    results.append(message[1])
                else:
                    failures.append(message[1])
            if not plan.window:
                after = _cpu_snapshot(server_pids, me)
        finally:
            if sampler:
                sampler.__exit__(None, None, None)
    finally:
        for process, receiver in children:
            receiver.close()
            process.join(5)
            if process.is_alive():          # ours, by pid
                process.kill()
                process.join(5)

    wall = after["wall"] - before["wall"]
    server_cpu = after["server"] - before["server"]
    figures = _summarize(results, failures, plan, t0, server_cpu, wall, sampler, len(specs))
    # CPU that was neither the server's, the clients' nor this process's
    # (other programs, steal), in % of one core; interrupts are counted apart
    if wall > 0:
        client_cpu = sum(r["cpu_seconds"] for r in results)
        busy = after["busy"] - before["busy"]
        other = busy - server_cpu - client_cpu - (after["own"] - before["own"])
        figures["system_busy_pct"] = round(100 * busy / wall, 1)
        figures["other_cpu_pct"] = round(max(0.0, 100 * other / wall), 1)
        figures["irq_cpu_pct"] = round(100 * (after["irq"] - before["irq"]) / wall, 1)
    return figures


def _cpu_snapshot(server_pids: list[int], me) -> dict:
    """CPU counters, stamped with the middle of the time it took to read them."""
    started = time.monotonic()
    snapshot = {"server": cpu_seconds(server_pids), "busy": system_busy_seconds(),
                "irq": irq_seconds(), "own": sum(me.cpu_times()[:2])}
    snapshot["wall"] = (started + time.monotonic()) / 2
    return snapshot


def _summarize(results, failures, plan: Plan, t0, server_cpu, server_wall,
               sampler, clients: int) -> dict:
    latencies = array("d")
    for result in results:
        latencies.frombytes(result["latencies"])
    ordered = sorted(latencies)
    ops = sum(r["ops"] for r in results)
    moved = sum(r["bytes"] for r in results)
    errors = sum(r["errors"] for r in results) + len(failures)
    messages = [m for r in results for m in r["messages"]][:MAX_ERROR_SAMPLES] + failures[:3]
    ends = [r["last_end"] for r in results if r["last_end"] is not None]
    if plan.window:
        elapsed = plan.duration
    else:
        elapsed = (max(ends) - t0) if ends else 0.0
    client_cpu = sum(r["cpu_seconds"] for r in results)
    figures = {
        "clients": clients,
        "ops": ops,
        "errors": errors,
        "error_samples": messages,
        "elapsed_s": round(elapsed, 4),
        "ops_per_s": round(ops / elapsed, 2) if elapsed else None,
        "bytes": moved,
        "mb_per_s": round(moved / elapsed / 1e6, 2) if elapsed and moved else None,
        "p50_ms": _ms(percentile(ordered, 50)),
        "p99_ms": _ms(percentile(ordered, 99)),
        "mean_ms": _ms(sum(ordered) / len(ordered)) if ordered else None,
        "max_ms": _ms(ordered[-1] if ordered else None),
        "server_cpu_pct": round(100 * server_cpu / server_wall, 1) if server_wall else None,
        "client_cpu_pct": round(100 * client_cpu / elapsed, 1) if elapsed else None,
        # per op from the rates (the server's CPU window is not exactly the ops' window)
        "server_cpu_us_per_op": (round(1e6 * (server_cpu / server_wall) / (ops / elapsed), 1)
                                 if ops and server_wall and elapsed else None),
        "client_cpu_us_per_op": round(1e6 * client_cpu / ops, 1) if ops else None,
    }
    if sampler is not None:
        figures["rss_peak_bytes"] = sampler.peak
        figures["rss_samples"] = len(sampler.samples)
        figures["rss_first_bytes"] = sampler.samples[0][1] if sampler.samples else None
    return figures


def _ms(seconds):
    return None if seconds is None else round(seconds * 1000, 3)
