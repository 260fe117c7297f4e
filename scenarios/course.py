"""The course's stress test in one command: ``python -m scenarios course``.

The matrix: operation (upload, download) x file volume (10, 50, 100 MB) x
client workers (1, 5, 50) x server workers (pool 1, 5, 50), in every mode of
``server.config.MODES``.  ``--quick`` is the small one the tests run: 10 MB,
1 and 5 clients, pools 1 and 5.  MB is binary here, as in the rest of the
project (``client.workload.SIZE_UNITS``): 10 MB is 10,485,760 bytes.

How one combination is measured:

* One server per (mode, pool), started with ``server.launcher.ServerProcess``
  on 127.0.0.1 and reused for every combination of that pool; the files the
  downloads fetch are linked into its storage folder before it starts.
* ``client_workers`` processes (forked, so they share no GIL), each with the
  project's ``FileClient``, each doing exactly one transfer.  They wait until
  all of them are ready, then start at one moment.  An upload streams a file
  from disk; a download is decoded into a writer that only counts bytes, so
  50 clients x 100 MB never sit in memory or on disk.
* A client's time runs from that common start until it holds the server's
  whole reply (waiting in the listen backlog for a free worker included).
  Every failure (refused, timed out, an ERROR reply, a short file, a client
  process that died) is counted, never raised.
* The server's own count comes from ``/stats``: the change of
  ``totals.by_command[UPLOAD|GET][OK|ERROR]`` over the combination, read once
  the server has no connection left.

Bounds: each transfer ``--transfer-timeout`` seconds (socket timeout and a
timer in the client process), each combination ``--deadline`` seconds from
forking its clients (clients without a result by then are killed and
counted as failed).  Only processes started here are ever signalled.

Output (``--out``, default ``results/course/<timestamp>/``): ``course.csv``
(``COLUMNS``), ``course-failures.csv`` (one line per failed client and why),
``course.json`` (the plan and the machine), ``course-upload.png`` and
``course-download.png``, and one server log per (mode, pool).
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import multiprocessing.connection
import os
import platform
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from client import FileClient, FileClientError
from client.workload import SIZE_UNITS
from server.config import MAX_POOL, MIN_POOL, MODES
from server.launcher import HOST, ServerProcess, wait_until

__all__ = ["COLUMNS", "OPERATIONS", "CourseError", "CoursePlan", "ClientResult",
           "add_arguments", "parse_plan", "summarise", "run", "run_from_args", "write_charts"]

# operation -> the server's command, as counted in /stats totals.by_command
OPERATIONS = {"upload": "UPLOAD", "download": "GET"}
FILE_MB = (10, 50, 100)
CLIENT_WORKERS = (1, 5, 50)
SERVER_POOLS = (1, 5, 50)
QUICK = {"file_mb": (10,), "client_workers": (1, 5), "server_pools": (1, 5)}
MB = SIZE_UNITS["MB"]
MAX_FILE_MB = 1000                  # under the server's default upload limit (1 GiB)
MAX_CLIENT_WORKERS = 500
TRANSFER_TIMEOUT = 300.0
DEADLINE_SLACK = 60.0               # default deadline = transfer timeout + this
READY_SECONDS = 60.0                # for the client processes to start (within the deadline)
SETTLE_SECONDS = 15.0               # for the server to finish its connections after the clients
DISK_MARGIN = 1 << 30

COLUMNS = ("operation", "mode", "server_pool", "file_mb", "client_workers",
           "time_per_client_mean_s", "time_per_client_max_s", "throughput_per_client_bps",
           "clients_ok", "clients_failed", "server_ok", "server_failed")
FAILURE_COLUMNS = ("operation", "mode", "server_pool", "file_mb", "client_workers", "client",
                   "seconds", "error")
CSV_FILE = "course.csv"
FAILURES_FILE = "course-failures.csv"
INFO_FILE = "course.json"


class CourseError(ValueError):
    """Bad input: one line, exit status 2, nothing started."""


# --------------------------------------------------------------------------
# the plan

@dataclass(frozen=True)
class Combination:
    operation: str
    mode: str
    server_pool: int
    file_mb: int
    client_workers: int

    @property
    def file_bytes(self) -> int:
        return self.file_mb * MB

    @property
    def label(self) -> str:
        return (f"{self.operation} {self.mode} pool {self.server_pool}, "
                f"{self.file_mb} MB x {self.client_workers} client"
                f"{'s' if self.client_workers != 1 else ''}")


@dataclass(frozen=True)
class CoursePlan:
    operations: tuple[str, ...] = tuple(OPERATIONS)
    modes: tuple[str, ...] = MODES
    server_pools: tuple[int, ...] = SERVER_POOLS
    file_mb: tuple[int, ...] = FILE_MB
    client_workers: tuple[int, ...] = CLIENT_WORKERS
    transfer_timeout: float = TRANSFER_TIMEOUT
    deadline: float = TRANSFER_TIMEOUT + DEADLINE_SLACK

    def servers(self) -> list[tuple[str, int]]:
        return [(mode, pool) for mode in self.modes for pool in self.server_pools]

    def combinations(self, mode: str | None = None, pool: int | None = None) -> list[Combination]:
        """In run order: server by server, then operation, file volume, clients."""
        return [Combination(operation, m, p, mb, clients)
                for m, p in self.servers() if mode in (None, m) and pool in (None, p)
                for operation in self.operations
                for mb in self.file_mb
                for clients in self.client_workers]

    def disk_bytes_needed(self) -> int:
        """Sources (one file per volume), their links in one server's storage (no
        extra space), and the largest combination's uploads at once."""
        uploads = max(self.file_mb) * max(self.client_workers) if "upload" in self.operations \
            else 0
        return (sum(self.file_mb) + uploads) * MB


def _int_list(text: str, what: str, low: int, high: int) -> tuple[int, ...]:
    values = []
    for item in text.split(","):
        item = item.strip()
        try:
            value = int(item)
        except ValueError:
            raise CourseError(f"{what}: {item!r} is not a whole number "
                              f"(a comma-separated list, e.g. --{what} 1,5)") from None
        if not low <= value <= high:
            raise CourseError(f"{what}: {value} is not between {low} and {high}")
        values.append(value)
    return tuple(dict.fromkeys(values))


def _name_list(text: str, what: str, known) -> tuple[str, ...]:
    values = []
    for item in text.split(","):
        item = item.strip().lower()
        if item not in known:
            raise CourseError(f"{what}: unknown {what[:-1]} {item!r}; known: {', '.join(known)}")
        values.append(item)
    return tuple(dict.fromkeys(values))


def _seconds(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CourseError(f"{what}: {text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise CourseError(f"{what}: {text!r} must be more than 0 seconds")
    return value


def parse_plan(args: argparse.Namespace) -> CoursePlan:
    """The plan from the parsed options; CourseError (one line) on bad input."""
    quick = getattr(args, "quick", False)
    sizes = args.sizes if args.sizes is not None else ",".join(
        map(str, QUICK["file_mb"] if quick else FILE_MB))
    clients = args.clients if args.clients is not None else ",".join(
        map(str, QUICK["client_workers"] if quick else CLIENT_WORKERS))
    pools = args.pools if args.pools is not None else ",".join(
        map(str, QUICK["server_pools"] if quick else SERVER_POOLS))
    transfer_timeout = _seconds(args.transfer_timeout, "transfer-timeout") \
        if args.transfer_timeout is not None else TRANSFER_TIMEOUT
    deadline = _seconds(args.deadline, "deadline") if args.deadline is not None \
        else transfer_timeout + DEADLINE_SLACK
    return CoursePlan(
        operations=_name_list(args.operations or ",".join(OPERATIONS), "operations",
                              tuple(OPERATIONS)),
        modes=_name_list(args.modes or ",".join(MODES), "modes", MODES),
        server_pools=_int_list(pools, "pools", MIN_POOL, MAX_POOL),
        file_mb=_int_list(sizes, "sizes", 1, MAX_FILE_MB),
        client_workers=_int_list(clients, "clients", 1, MAX_CLIENT_WORKERS),
        transfer_timeout=transfer_timeout,
        deadline=deadline,
    )


def _check_disk(plan: CoursePlan, out: Path) -> None:
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise CourseError(f"out: {existing} is not a folder")
    needed = plan.disk_bytes_needed() + DISK_MARGIN
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise CourseError(f"out: this plan needs about {needed / 1e9:.1f} GB free under "
                          f"{existing}, only {free / 1e9:.1f} GB are")


# --------------------------------------------------------------------------
# aggregation

@dataclass(frozen=True)
class ClientResult:
    index: int
    ok: bool
    seconds: float | None = None      # from the common start to the whole reply
    error: str = ""


def summarise(results: list[ClientResult], file_bytes: int) -> dict:
    """The per-client columns of one combination.  Times and throughput are over
    the clients that succeeded (None when none did); throughput per client is the
    mean of each successful client's file bytes / its own time."""
    times = [r.seconds for r in results if r.ok and r.seconds is not None and r.seconds > 0]
    ok = sum(1 for r in results if r.ok)
    return {
        "time_per_client_mean_s": round(sum(times) / len(times), 4) if times else None,
        "time_per_client_max_s": round(max(times), 4) if times else None,
        "throughput_per_client_bps": round(sum(file_bytes / t for t in times) / len(times))
        if times else None,
        "clients_ok": ok,
        "clients_failed": len(results) - ok,
    }


# --------------------------------------------------------------------------
# in a client process

@dataclass(frozen=True)
class ClientJob:
    index: int
    operation: str
    port: int
    name: str
    source: str | None              # upload: the file sent
    file_bytes: int
    timeout: float
    wait_for_start: float


class _TransferTimeout(Exception):
    pass


class _CountingSink:
    """A download's destination: counts the bytes, keeps none."""

    def __init__(self):
        self.bytes = 0

    def write(self, data) -> int:
        self.bytes += len(data)
        return len(data)


def _on_alarm(signum, frame):
    raise _TransferTimeout()


def _transfer(job: ClientJob) -> str:
    """One transfer; returns "" on success or what went wrong."""
    client = FileClient(HOST, job.port, timeout=job.timeout)
    if job.operation == "upload":
        message = client.upload(job.name, job.source)
        if f"({job.file_bytes} bytes)" not in message:
            return f"unexpected reply to the upload: {message!r}"
        return ""
    sink = _CountingSink()
    received = client.get(job.name, sink)
    if received != job.file_bytes:
        return f"received {received} bytes of {job.file_bytes}"
    return ""


def _client_main(job: ClientJob, go, start_at, sender) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent handles Ctrl-C
    try:
        sender.send(("ready", None))
        if not go.wait(job.wait_for_start):
            sender.send(("done", ClientResult(job.index, False, None, "never told to start")))
            return
        started = start_at.value
        delay = started - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, job.timeout)
        try:
            error = _transfer(job)
        except _TransferTimeout:
            error = f"transfer timed out after {job.timeout:g} s"
        except FileClientError as exc:
            error = f"{type(exc).__name__}: {exc.message}"
        except Exception as exc:        # counted, not raised
            error = f"{type(exc).__name__}: {exc}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        seconds = time.monotonic() - started
        sender.send(("done", ClientResult(job.index, not error, round(seconds, 6), error)))
    except Exception:
        pass                            # the parent counts a client without a result
    finally:
        sender.close()


# --------------------------------------------------------------------------
# in the parent

def _server_counts(server: ServerProcess, command: str) -> dict | None:
    try:
        counts = server.stats()["totals"]["by_command"][command]
        return {"OK": int(counts["OK"]), "ERROR": int(counts["ERROR"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _settle(server: ServerProcess, seconds: float) -> None:
    """Wait (at most ``seconds``) until the server serves no connection."""
    wait_until(lambda: _idle(server), seconds)


def _idle(server: ServerProcess) -> bool:
    try:
        return server.stats()["workers_busy"] == 0
    except (OSError, ValueError, KeyError):
        return True             # /stats does not answer: nothing to wait for


def _collect(children, results: dict, end: float) -> None:
    waiting = {receiver: index for index, (_process, receiver) in enumerate(children)
               if index not in results}
    while waiting:
        left = end - time.monotonic()
        if left <= 0:
            break
        for receiver in multiprocessing.connection.wait(list(waiting), timeout=left):
            index = waiting.pop(receiver)
            try:
                kind, payload = receiver.recv()
            except (EOFError, OSError):
                results[index] = ClientResult(index, False, None,
                                              "client process ended without a result")
                continue
            results[index] = payload if kind == "done" else ClientResult(
                index, False, None, f"unexpected message {kind!r}")


def run_combination(server: ServerProcess, combo: Combination, plan: CoursePlan,
                    source: Path | None, seed_name: str) -> tuple[dict, list[ClientResult]]:
    """Run one combination against ``server``; returns its CSV row and its client results."""
    context = multiprocessing.get_context("fork")
    command = OPERATIONS[combo.operation]
    go = context.Event()
    start_at = context.RawValue("d", 0.0)
    began = time.monotonic()
    end = began + plan.deadline
    names = [f"course-up-{combo.file_mb}mb-{combo.client_workers}c-{i}.bin"
             if combo.operation == "upload" else seed_name
             for i in range(combo.client_workers)]
    children, results, ready = [], {}, set()
    before = after = None
    try:
        for index in range(combo.client_workers):
            job = ClientJob(index, combo.operation, server.port, names[index],
                            str(source) if source else None, combo.file_bytes,
                            plan.transfer_timeout, plan.deadline)
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=_client_main, args=(job, go, start_at, sender),
                                      name=f"course-client-{index}", daemon=True)
            process.start()
            sender.close()
            children.append((process, receiver))
        ready_end = min(end, time.monotonic() + READY_SECONDS)
        pending = {receiver: index for index, (_p, receiver) in enumerate(children)}
        while pending and time.monotonic() < ready_end:
            for receiver in multiprocessing.connection.wait(
                    list(pending), timeout=max(0.0, ready_end - time.monotonic())):
                index = pending.pop(receiver)
                try:
                    kind, _payload = receiver.recv()
                except (EOFError, OSError):
                    kind = "ended"
                if kind == "ready":
                    ready.add(index)
                else:
                    results[index] = ClientResult(index, False, None,
                                                  "client process ended before it was ready")
        for index, (process, _receiver) in enumerate(children):
            if index not in ready and index not in results:
                process.kill()          # ours; it must not start late
                results[index] = ClientResult(index, False, None,
                                              "client process not ready in time")
        before = _server_counts(server, command)
        start_at.value = time.monotonic() + 0.05
        go.set()
        _collect(children, results, end)
    finally:
        for _process, receiver in children:
            receiver.close()
        for process, _receiver in children:
            process.join(max(0.0, min(5.0, end - time.monotonic())))
            if process.is_alive():      # ours, by its Process object
                process.kill()
                process.join(5)
            process.close()
        if combo.operation == "upload":
            for name in names:
                try:
                    (server.storage / name).unlink()
                except OSError:
                    pass
    for index in range(combo.client_workers):
        results.setdefault(index, ClientResult(
            index, False, None, f"no result within the combination deadline "
                                f"({plan.deadline:g} s)"))
    _settle(server, SETTLE_SECONDS)
    after = _server_counts(server, command)
    ordered = [results[i] for i in range(combo.client_workers)]
    row = {"operation": combo.operation, "mode": combo.mode, "server_pool": combo.server_pool,
           "file_mb": combo.file_mb, "client_workers": combo.client_workers,
           **summarise(ordered, combo.file_bytes),
           "server_ok": after["OK"] - before["OK"] if before and after else None,
           "server_failed": after["ERROR"] - before["ERROR"] if before and after else None}
    return row, ordered


def _make_source(path: Path, size: int) -> None:
    with open(path, "wb") as file:
        left = size
        while left:
            chunk = os.urandom(min(left, MB))
            file.write(chunk)
            left -= len(chunk)


def _seed(storage: Path, source: Path, name: str) -> None:
    try:
        os.link(source, storage / name)     # the server only reads it
    except OSError:
        shutil.copyfile(source, storage / name)


def _line(row: dict) -> str:
    def seconds(value):
        return "-" if value is None else f"{value:.2f} s"
    rate = row["throughput_per_client_bps"]
    server = ("server counts unavailable" if row["server_ok"] is None
              else f"server {row['server_ok']} ok, {row['server_failed']} failed")
    return (f"{row['clients_ok']} ok, {row['clients_failed']} failed; "
            f"mean {seconds(row['time_per_client_mean_s'])}, "
            f"max {seconds(row['time_per_client_max_s'])}, "
            f"{'-' if rate is None else f'{rate / MB:.1f} MB/s'} per client; {server}")


def run(plan: CoursePlan, out: Path, echo=print) -> tuple[list[dict], list[Path]]:
    """Run the plan into ``out``; returns the rows and the charts written."""
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    combos = plan.combinations()
    info = {"command": "python -m scenarios course",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "plan": {"operations": plan.operations, "modes": plan.modes,
                     "server_pools": plan.server_pools, "file_mb": plan.file_mb,
                     "client_workers": plan.client_workers,
                     "transfer_timeout_s": plan.transfer_timeout,
                     "deadline_s": plan.deadline},
            "mb_bytes": MB, "combinations": len(combos),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform()},
            "servers": []}
    rows: list[dict] = []
    started = time.monotonic()
    failed_clients = 0
    try:
        sources = {}
        for mb in plan.file_mb:
            sources[mb] = work / f"source-{mb}mb.bin"
            _make_source(sources[mb], mb * MB)
        with open(out / CSV_FILE, "w", newline="") as table, \
                open(out / FAILURES_FILE, "w", newline="") as failures:
            writer = csv.DictWriter(table, COLUMNS)
            writer.writeheader()
            failure_writer = csv.writer(failures)
            failure_writer.writerow(FAILURE_COLUMNS)
            for mode, pool in plan.servers():
                storage = work / f"storage-{mode}-pool{pool}"
                storage.mkdir()
                if "download" in plan.operations:
                    for mb, source in sources.items():
                        _seed(storage, source, f"course-{mb}mb.bin")
                server = ServerProcess(storage, mode, pool,
                                       log_path=out / f"server-{mode}-pool{pool}.log")
                echo(f"server {mode} pool {pool}: starting")
                try:
                    server.start()
                    for combo in plan.combinations(mode, pool):
                        rows_done = len(rows) + 1
                        row, results = run_combination(
                            server, combo, plan,
                            sources[combo.file_mb] if combo.operation == "upload" else None,
                            f"course-{combo.file_mb}mb.bin")
                        rows.append(row)
                        writer.writerow({key: "" if row[key] is None else row[key]
                                         for key in COLUMNS})
                        table.flush()
                        for result in results:
                            if not result.ok:
                                failed_clients += 1
                                failure_writer.writerow(
                                    [combo.operation, mode, pool, combo.file_mb,
                                     combo.client_workers, result.index,
                                     "" if result.seconds is None else result.seconds,
                                     result.error])
                        failures.flush()
                        echo(f"[{rows_done}/{len(combos)}] {combo.label}: {_line(row)}")
                finally:
                    code = server.stop()
                    info["servers"].append({"mode": mode, "pool": pool, "exit_code": code,
                                            "leftover_pids": server.leftovers})
                    if code != 0 or server.leftovers:
                        echo(f"warning: server {mode} pool {pool} exited with {code}, "
                             f"processes left: {server.leftovers or 'none'}; "
                             f"see {server.log_path}")
                    shutil.rmtree(storage, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        info["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        info["wall_seconds"] = round(time.monotonic() - started, 1)
        info["rows"] = len(rows)
        info["failed_clients"] = failed_clients
        (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    charts = write_charts(rows, out)
    echo(f"{len(rows)} combinations in {time.monotonic() - started:.0f} s, "
         f"{failed_clients} failed client transfers"
         + (f" (see {out / FAILURES_FILE})" if failed_clients else ""))
    return rows, charts


# --------------------------------------------------------------------------
# charts

POOL_STYLES = ("-", "--", ":", "-.")
POOL_MARKERS = ("o", "s", "^", "D", "v", "P")


def write_charts(rows: list[dict], out: Path) -> list[Path]:
    """``course-<operation>.png`` for each operation: throughput per client against
    client workers, one panel per file volume, one line per (mode, pool)."""
    from scenarios.report import CHART_DPI, CHART_SIZE_INCHES, MODE_COLOURS, pyplot
    plt = pyplot()
    from matplotlib import ticker
    written = []
    for operation in OPERATIONS:
        chosen = [row for row in rows if row["operation"] == operation]
        if not chosen:
            continue
        sizes = sorted({row["file_mb"] for row in chosen})
        clients = sorted({row["client_workers"] for row in chosen})
        pools = sorted({row["server_pool"] for row in chosen})
        modes = [mode for mode in MODES if any(row["mode"] == mode for row in chosen)]
        figure, panels = plt.subplots(1, len(sizes), figsize=CHART_SIZE_INCHES, dpi=CHART_DPI,
                                      sharey=True, squeeze=False, layout="constrained")
        figure.suptitle(f"{operation}: throughput per client (one transfer each, "
                        f"all started together)")
        for axes, mb in zip(panels[0], sizes):
            for mode in modes:
                for p, pool in enumerate(pools):
                    points = sorted(
                        (row["client_workers"], row["throughput_per_client_bps"])
                        for row in chosen if row["file_mb"] == mb and row["mode"] == mode
                        and row["server_pool"] == pool
                        and row["throughput_per_client_bps"])
                    axes.plot([clients.index(c) for c, _ in points],
                              [v / MB for _, v in points],
                              color=MODE_COLOURS.get(mode),
                              linestyle=POOL_STYLES[p % len(POOL_STYLES)],
                              marker=POOL_MARKERS[p % len(POOL_MARKERS)],
                              label=f"{mode}, pool {pool}" if axes is panels[0][0] else None)
            axes.set_title(f"{mb} MB files")
            axes.set_xticks(range(len(clients)), [str(c) for c in clients])
            axes.set_xlim(-0.3, len(clients) - 0.7)
            axes.set_xlabel("client workers")
            axes.set_yscale("log")
            for axis_formatter in (axes.yaxis.set_major_formatter,
                                   axes.yaxis.set_minor_formatter):
                axis_formatter(ticker.LogFormatter(labelOnlyBase=False,
                                                   minor_thresholds=(2, 0.5)))
            axes.grid(True, which="both", alpha=0.3)
        panels[0][0].set_ylabel("MB/s per client (log)")
        handles, labels = panels[0][0].get_legend_handles_labels()
        if handles:
            figure.legend(handles, labels, loc="outside lower center",
                          ncols=len(labels) if len(labels) <= 4 else -(-len(labels) // 2),
                          fontsize="small")
        path = out / f"course-{operation}.png"
        figure.savefig(path, dpi=CHART_DPI)
        plt.close(figure)
        written.append(path)
    return written


# --------------------------------------------------------------------------
# command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``course`` subcommand's options (values checked by ``parse_plan``, so a bad
    one is a single line and exit status 2)."""
    parser.add_argument("--quick", action="store_true",
                        help="the short matrix: 10 MB, 1 and 5 clients, pools 1 and 5 "
                             "(both modes, both operations)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="folder for course.csv, the charts and the server logs "
                             "(default: results/course/<timestamp>/)")
    parser.add_argument("--sizes", metavar="MB,...", default=None,
                        help=f"file volumes in MB (default: {','.join(map(str, FILE_MB))})")
    parser.add_argument("--clients", metavar="N,...", default=None,
                        help="client workers (default: "
                             f"{','.join(map(str, CLIENT_WORKERS))})")
    parser.add_argument("--pools", metavar="N,...", default=None,
                        help="server workers, the pool size (default: "
                             f"{','.join(map(str, SERVER_POOLS))})")
    parser.add_argument("--modes", metavar="MODE,...", default=None,
                        help=f"server modes (default: {','.join(MODES)})")
    parser.add_argument("--operations", metavar="OP,...", default=None,
                        help=f"operations (default: {','.join(OPERATIONS)})")
    parser.add_argument("--transfer-timeout", metavar="S", default=None,
                        help=f"seconds one transfer may take (default: {TRANSFER_TIMEOUT:g})")
    parser.add_argument("--deadline", metavar="S", default=None,
                        help="seconds one combination may take, clients included "
                             f"(default: the transfer timeout + {DEADLINE_SLACK:g})")


def run_from_args(args: argparse.Namespace) -> int:
    try:
        plan = parse_plan(args)
        if args.out is not None:
            out = Path(args.out)
            _check_disk(plan, out)
        else:
            from scenarios.runner import RESULTS_ROOT, new_run_folder
            _check_disk(plan, RESULTS_ROOT)
            out = None
    except CourseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if out is None:
        out = new_run_folder(RESULTS_ROOT / "course")
    previous = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM unwinds like Ctrl-C: the clients and the server are stopped
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        rows, charts = run(plan, out, echo=lambda text: print(text, flush=True))
    except RuntimeError as error:       # a server that would not start
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(f"table:  {out / CSV_FILE}")
    for chart in charts:
        print(f"chart:  {chart}")
    return 0
