"""``python -m bench``: the whole benchmark in one run."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from server.config import MODES

from . import bounds
from .chart import draw_after_run
from .load import ClientSpec, Plan, run_point, wait_for_quiet
from .plan import SIZES, PlanError, Variant, free_threaded_python, variants
from .proto import BlockFile, make_files
from .report import evaluate_targets, render
from .servers import (REPO_ROOT, AsyncioServer, ChildServer, PreforkServer, RealServer,
                      ThreadPoolServer, idle_rss, log_summary)

LIST_FILES = 20                     # small files in the LIST storage folder
LIST_POOL = 50
TRANSFER_POOL = 10                  # >= 5 GETs + 5 UPLOADs at once
DISTURBED_PCT = 25.0                # other CPU (% of one core) that makes a point suspect


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Load-test the file server (thread and process modes, and thread mode "
                    "on a free-threaded CPython when there is one) against the machine's "
                    "bounds and a plain asyncio LIST server.")
    parser.add_argument("--quick", action="store_true",
                        help="short run (about 2 minutes instead of about 6)")
    parser.add_argument("--out", help="JSON file to write "
                        "(default bench/results/bench-<time>.json)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"server modes to measure on this interpreter (default "
                             f"{','.join(MODES)}; empty for none)")
    ft = parser.add_mutually_exclusive_group()
    ft.add_argument("--ft-python", metavar="PATH",
                    help="free-threaded CPython for the thread-ft and thread-ft-gil points "
                         "(default .venv-ft/bin/python when it exists; `make venv-ft`)")
    ft.add_argument("--no-ft", action="store_true",
                    help="skip the free-threaded points")
    parser.add_argument("--list-seconds", type=float,
                        help="measured seconds per LIST round (default 3, quick 1.5)")
    parser.add_argument("--list-rounds", type=int,
                        help="interleaved rounds per LIST point, the median is reported "
                             "(default 3, quick 1)")
    parser.add_argument("--transfer-seconds", type=float,
                        help="seconds each 10 MB transfer point runs, at least one "
                             "transfer per client (default 5, quick 0)")
    parser.add_argument("--transfer-rounds", type=int,
                        help=f"rounds of the 100 MB points: in each, {TRANSFERS_PER_CLIENT} "
                             "transfers per client at 1 and at 5 clients, each between two "
                             "loopback measurements; medians are reported (default 5, quick 3)")
    parser.add_argument("--list-clients", default="1,10,50",
                        help="LIST concurrency levels (default 1,10,50)")
    parser.add_argument("--keep-logs", action="store_true",
                        help="copy the server logs next to the JSON file")
    args = parser.parse_args(argv)
    args.modes = list(dict.fromkeys(m.strip() for m in args.modes.split(",") if m.strip()))
    for mode in args.modes:
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    try:
        args.list_clients = [int(c) for c in args.list_clients.split(",") if c.strip()]
    except ValueError:
        parser.error("--list-clients takes integers, e.g. 1,10,50")
    if not args.list_clients or not all(1 <= c <= 200 for c in args.list_clients):
        parser.error("--list-clients: each level must be between 1 and 200")
    if args.list_seconds is None:
        args.list_seconds = 1.5 if args.quick else 3.0
    if args.list_rounds is None:
        args.list_rounds = 1 if args.quick else 3
    args.list_rounds = min(max(args.list_rounds, 1), 9)
    if args.transfer_seconds is None:
        args.transfer_seconds = 0.0 if args.quick else 5.0
    if args.transfer_rounds is None:
        args.transfer_rounds = 3 if args.quick else 5
    args.transfer_rounds = min(max(args.transfer_rounds, 1), 9)
    args.list_seconds = min(max(args.list_seconds, 0.5), 30.0)
    args.transfer_seconds = min(max(args.transfer_seconds, 0.0), 30.0)
    return args


def plan_run(args) -> None:
    """Find the free-threaded interpreter (``args.ft``) and plan the servers
    (``args.variants``); PlanError before anything starts when that cannot be done."""
    args.ft = free_threaded_python(args.ft_python, args.no_ft)
    args.variants = variants(args.modes, args.list_clients, args.ft)
    if not args.variants:
        raise PlanError("no server to measure: --modes is empty and " + args.ft.skipped)


class Workspace:
    """A temporary folder for storage and logs; removed at the end."""

    def __enter__(self):
        self.root = tempfile.mkdtemp(prefix="fs-bench-")
        self.servers: list[ChildServer] = []
        return self

    def folder(self, name: str) -> str:
        path = os.path.join(self.root, name)
        os.makedirs(path, exist_ok=True)
        return path

    def log(self, name: str) -> str:
        return os.path.join(self.folder("logs"), f"{name}.log")

    def __exit__(self, *exc):
        for server in self.servers:
            try:
                server.stop()
            except Exception as error:      # noqa: BLE001 - cleanup goes on
                print(f"bench: stopping {server.label}: {error}", file=sys.stderr)
        shutil.rmtree(self.root, ignore_errors=True)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _describe(record: dict) -> str:
    parts = [f"{record['server']:<18} {record['op']:<6} {record.get('size_label', ''):<6}"
             f" c={record['clients']:<3}"]
    if record["op"] == "LIST":
        parts.append(f"{record['ops_per_s'] or 0:9.1f} ops/s")
    else:
        parts.append(f"{record['mb_per_s'] or 0:8.1f} MB/s  n={record['ops']}")
        if record.get("loopback_ratio") is not None:
            parts.append(f"{record['loopback_ratio']:.3f} of loopback "
                         f"({record['loopback_before_mb_per_s']}/"
                         f"{record['loopback_after_mb_per_s']} MB/s)")
        if record.get("file_write_ratio") is not None:
            parts.append(f"{record['file_write_ratio']:.2f} of the file write "
                         f"({record['file_write_before_mb_per_s']}/"
                         f"{record['file_write_after_mb_per_s']} MB/s)")
    parts.append(f"p50 {record['p50_ms']} ms  p99 {record['p99_ms']} ms  err {record['errors']}")
    return "  ".join(parts)


class QuietBudget:
    """Seconds the run may spend waiting for other work on the machine to stop."""

    def __init__(self, seconds: float, retries: int = 0):
        self.left = seconds
        self.retries = retries

    def wait(self, most: float = 20.0) -> float:
        if self.left <= 0:
            return 0.0
        waited = wait_for_quiet(min(most, self.left))
        self.left -= waited
        return waited


QUIET = QuietBudget(0.0)


def measure(server, specs, plan) -> dict:
    """``run_point`` on a quiet machine; a point disturbed by other work is retried once
    (while the budget for waiting lasts)."""
    def attempt(most: float) -> dict:
        waited = QUIET.wait(most)
        figures = run_point(server, specs, plan)
        figures["waited_for_quiet_s"] = waited
        return figures

    figures = attempt(20.0)
    if (figures.get("other_cpu_pct") or 0) > DISTURBED_PCT and QUIET.left > 0 \
            and QUIET.retries > 0:
        QUIET.retries -= 1
        _say(f"    other work used {figures['other_cpu_pct']}% CPU during the point; "
             f"running it again")
        again = attempt(30.0)
        again["retried"] = True
        again["first_try_other_cpu_pct"] = figures["other_cpu_pct"]
        if (again.get("other_cpu_pct") or 0) <= figures["other_cpu_pct"]:
            figures = again
        else:
            figures["retried"] = True
    figures["disturbed"] = (figures.get("other_cpu_pct") or 0) > DISTURBED_PCT
    return figures


def _start(ws: Workspace, server: ChildServer) -> ChildServer:
    ws.servers.append(server)
    server.start()
    return server


def _real_server(variant: Variant, pool: int, storage: str, log_path: str) -> RealServer:
    return RealServer(variant.mode, pool, storage, log_path, python=variant.python,
                      wrapper=variant.wrapper, label=f"{variant.name}({pool})")


def _server_info(server: ChildServer, label: str, variant: Variant | None = None,
                 idle_seconds: float = 0.5) -> dict:
    """What the servers table records of a server just started: idle RSS, and for ours
    the interpreter it says it runs on (its /stats) next to the one it should."""
    info = {"server": label, "idle_rss_bytes": idle_rss(server, idle_seconds)}
    if variant is not None:
        info["variant"] = variant.name
        info["expected_gil_enabled"] = variant.gil_enabled
        try:
            info["interpreter"] = server.stats()["interpreter"]
        except (OSError, ValueError, KeyError):
            info["interpreter"] = None
    return info


def _finish(server: ChildServer, info: dict) -> None:
    if isinstance(server, RealServer):
        try:
            totals = server.stats()["totals"]
            info["server_totals"] = {k: totals[k] for k in ("requests", "errors", "connections")}
        except OSError:
            pass
    info["exit_code"] = server.stop()
    info["log"] = log_summary(server.log_path)


def run_list_phase(ws: Workspace, args, out: dict) -> None:
    storage = ws.folder("list-storage")
    make_files(storage, {f"file-{i:02d}.txt": 100 + i for i in range(LIST_FILES)})
    every = tuple(args.list_clients)
    # (label, factory, variant or None, the levels it is measured at)
    servers = [("asyncio-protocol", lambda log: AsyncioServer(storage, log, "protocol"),
                None, every)]
    if not args.quick:
        servers.append(("asyncio-streams", lambda log: AsyncioServer(storage, log, "streams"),
                        None, every))
    # each mode's reference: a bare pool of the same size, with none of the server's own work
    for mode, reference in (("thread", ThreadPoolServer), ("process", PreforkServer)):
        if mode in args.modes:
            servers.append((f"{reference.kind}({LIST_POOL})",
                            lambda log, reference=reference: reference(storage, log, LIST_POOL),
                            None, every))
    for variant in args.variants:
        # the real server takes one storage folder for itself: a copy each
        own = ws.folder(f"list-storage-{variant.name}")
        make_files(own, {f"file-{i:02d}.txt": 100 + i for i in range(LIST_FILES)})
        servers.append((f"{variant.name}({LIST_POOL})",
                        lambda log, variant=variant, own=own: _real_server(
                            variant, LIST_POOL, own, log),
                        variant, variant.list_levels))
    # all servers run side by side (idle ones cost nothing) and are measured in
    # turn at each concurrency level, so a drift of the machine's speed hits
    # them alike rather than whichever was measured last
    running = []
    for label, factory, variant, levels in servers:
        server = _start(ws, factory(ws.log(f"list-{label}")))
        running.append((label, server, {**_server_info(server, label, variant), "points": []},
                        levels))
    for level, clients in enumerate(args.list_clients):
        here = [entry[:3] for entry in running if clients in entry[3]]
        tries: dict[str, list[dict]] = {label: [] for label, _, _ in here}
        for round_index in range(args.list_rounds):
            turn = (level + round_index) % len(here)
            for label, server, _info in here[turn:] + here[:turn]:
                plan = Plan(server.address, duration=args.list_seconds,
                            warmup=0.3 if args.quick else 0.5, window=True, timeout=10.0,
                            max_ops=2_000_000)
                specs = [ClientSpec("list", expected=LIST_FILES) for _ in range(clients)]
                figures = measure(server, specs, plan)
                tries[label].append(figures)
                _say(f"  round {round_index + 1}: " + _describe(
                    {"server": label, "op": "LIST", **figures}))
        for label, _server, info in here:
            info["points"].append({"server": label, "variant": info.get("variant"),
                                   "op": "LIST", **_median_round(tries[label])})
    _finish_list_servers(running, out)


def _median_round(rounds: list[dict]) -> dict:
    """The round with the median ops/s (its latencies and CPU figures go with it)."""
    ordered = sorted(rounds, key=lambda r: r["ops_per_s"] or 0)
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["rounds"] = len(rounds)
    chosen["rounds_ops_per_s"] = [r["ops_per_s"] for r in rounds]
    chosen["errors"] = sum(r["errors"] for r in rounds)
    chosen["disturbed"] = any(r.get("disturbed") for r in rounds)
    return chosen


def _finish_list_servers(running, out: dict) -> None:
    for _label, server, info, _levels in running:
        out["list"].extend(info["points"])
        _finish(server, info)
        out["servers"].append(info)


def _get_file_name(size_label: str) -> str:
    return f"get-{size_label}.bin"


def write_get_files(storage: str) -> None:
    """The files the GETs ask for, one of each size: ``BlockFile(size)``
    (seed 0, as their specs say)."""
    for label, size in SIZES.items():
        BlockFile(size).write(os.path.join(storage, _get_file_name(label)))


def _transfer_specs(op: str, size_label: str, clients: int, offset: int = 0,
                    storage: str | None = None):
    """Specs of ``clients`` transfers; uploads are removed from ``storage`` after each."""
    size = SIZES[size_label]
    if op == "GET":
        return [ClientSpec("get", name=_get_file_name(size_label), size=size)
                for _ in range(clients)]
    return [ClientSpec("upload", name=f"up-{size_label}-{offset + i}.bin", size=size,
                       seed=offset + i, remove_from=storage) for i in range(clients)]


def _remove_uploads(storage: str) -> None:
    for name in os.listdir(storage):
        if name.startswith("up-"):
            os.unlink(os.path.join(storage, name))


def _transfer_plan(server, args) -> Plan:
    # a transfer may be slow on a loaded 2-core machine: allow 120 s each
    return Plan(server.address, duration=args.transfer_seconds, warmup=0.0, window=False,
                min_ops=1, max_ops=1000, timeout=120.0)


def _bound_ratio(figures: dict, bound: str, before: float | None,
                 after: float | None) -> dict:
    """Record a bound measured around a measurement (``loopback`` TCP, or the
    ``file_write`` into the storage folder) and the measurement's ratio to it."""
    figures[f"{bound}_before_mb_per_s"] = before
    figures[f"{bound}_after_mb_per_s"] = after
    both = [v for v in (before, after) if v]
    figures[f"{bound}_ratio"] = (round(figures["mb_per_s"] / statistics.mean(both), 3)
                                 if both and figures.get("mb_per_s") else None)
    return figures


def between_loopbacks(server, specs, plan) -> dict:
    """``measure`` put between two loopback TCP measurements.

    This machine's speed is not steady (the same work runs at one speed or
    twice it from one second to the next), so a transfer is compared with
    the loopback throughput of the same moment: two Python processes
    pushing bytes over 127.0.0.1 right before and right after it.
    """
    before = bounds.loopback_now()
    figures = measure(server, specs, plan)
    return _bound_ratio(figures, "loopback", before, bounds.loopback_now())


# transfers each client makes, one after the other, when its set runs in a round:
# one 100 MB transfer alone lasts about 0.1 s, and in a lone transfer the start of
# the client process, its first connection and the unevenly ending transfers of
# five clients weigh more than in the steady flow the rounds mean to compare
TRANSFERS_PER_CLIENT = 3


def transfer_rounds(server, sets: list[list[ClientSpec]], rounds: int,
                    storage: str | None = None,
                    write_piece: int = bounds.UPLOAD_WRITE_BYTES) -> list[dict]:
    """``rounds`` rounds in each of which every set of ``sets`` runs once:
    ``TRANSFERS_PER_CLIENT`` transfers per client, a set's clients all at
    once, each set between two
    loopback measurements (the one after a set is the one before the next).
    The sets take turns going first, so each round measures them at nearly the
    same moment.  Per set, the point is its median round by loopback ratio, with
    every round's figures in round order for the spread.  An UPLOAD is also put
    between two file writes into ``storage`` (``bounds.file_write_speed``) in the
    server's ``write_piece``."""
    plan = Plan(server.address, duration=0.0, window=False, min_ops=TRANSFERS_PER_CLIENT,
                max_ops=TRANSFERS_PER_CLIENT, timeout=120.0)
    tries: list[list[dict]] = [[] for _ in sets]
    writes = storage is not None and any(s.op == "upload" for specs in sets for s in specs)
    before = bounds.loopback_now()
    write_before = bounds.file_write_speed(storage, piece=write_piece) if writes else None
    deadline = time.monotonic() + 120.0 * len(sets)
    for turn in range(rounds):
        if turn and time.monotonic() > deadline:
            break
        order = list(range(len(sets)))
        if turn % 2:
            order.reverse()
        for index in order:
            specs = sets[index]
            figures = measure(server, specs, plan)
            after = bounds.loopback_now()
            tries[index].append(_bound_ratio(figures, "loopback", before, after))
            before = after
            if writes and specs[0].op == "upload":
                _remove_uploads(storage)     # the next round creates its files again
                write_after = bounds.file_write_speed(storage, piece=write_piece)
                _bound_ratio(figures, "file_write", write_before, write_after)
                write_before = write_after
            _say(f"    round {turn + 1}: " + _describe(
                {"server": server.label, "op": specs[0].op.upper(), **figures}))
    return [_median_of_rounds(set_tries) for set_tries in tries]


def _median_of_rounds(tries: list[dict]) -> dict:
    ordered = sorted(tries, key=lambda r: r["loopback_ratio"] or 0)
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["rounds"] = len(tries)
    for key in ("mb_per_s", "loopback_ratio", "server_cpu_us_per_op", "file_write_ratio"):
        chosen[f"rounds_{key}"] = [r.get(key) for r in tries]
    chosen["errors"] = sum(r["errors"] for r in tries)
    chosen["ops"] = sum(r["ops"] for r in tries)
    chosen["rss_peak_bytes"] = max(r["rss_peak_bytes"] for r in tries)
    chosen["disturbed"] = any(r.get("disturbed") for r in tries)
    return chosen


def _against_one_client(one: dict, many: dict) -> None:
    """Put into ``many`` its MB/s over ``one``'s, round by round (the two ran seconds
    apart in each round, so they are compared directly; None for a round where
    either moved nothing), and the median of those."""
    ratios = [round(many_mb / one_mb, 3) if one_mb and many_mb else None
              for one_mb, many_mb in zip(one["rounds_mb_per_s"], many["rounds_mb_per_s"])]
    many["rounds_vs_one_client"] = ratios
    known = [ratio for ratio in ratios if ratio is not None]
    many["vs_one_client"] = round(statistics.median(known), 3) if known else None


def _transfer_server(ws: Workspace, variant: Variant, storage: str,
                     phase: str) -> tuple[str, RealServer]:
    """A variant's server for a transfer or memory phase, started; (its label, it)."""
    server = _start(ws, _real_server(variant, TRANSFER_POOL, storage,
                                     ws.log(f"{phase}-{variant.name}")))
    return f"{variant.name}({TRANSFER_POOL})", server


ROUNDS_SIZE = "100MB"                # measured in rounds, both client counts together


def run_transfer_phase(ws: Workspace, args, out: dict, storage: str) -> None:
    """Each variant's transfer points.  A 10 MB point runs for ``transfer_seconds``
    between two loopback measurements.  The 100 MB points of an op are measured in
    the same rounds (``transfer_rounds``), so that five clients are compared with
    one round by round, at the same moments of this machine's drifting speed."""
    for variant in args.variants:
        if not variant.transfers:
            continue
        label, server = _transfer_server(ws, variant, storage, "transfer")
        info = {**_server_info(server, label, variant), "points": []}
        idle = info["idle_rss_bytes"]
        measured = set()
        for point in variant.transfers:
            if point in measured:
                continue
            op, size_label, clients = point
            if size_label == ROUNDS_SIZE:
                together = [p for p in variant.transfers if p[:2] == (op, size_label)]
                sets = [_transfer_specs(op, size_label, n, storage=storage)
                        for _, _, n in together]
                points = dict(zip(together, transfer_rounds(
                    server, sets, args.transfer_rounds, storage,
                    bounds.upload_write_bytes(variant.free_threaded))))
                one = points.get((op, size_label, 1))
                for (_, _, n), figures in points.items():
                    if one is not None and n > 1:
                        _against_one_client(one, figures)
            else:
                specs = _transfer_specs(op, size_label, clients, storage=storage)
                points = {point: between_loopbacks(server, specs,
                                                   _transfer_plan(server, args))}
            measured.update(points)
            for figures in points.values():
                record = {"server": label, "variant": variant.name, "mode": variant.mode,
                          "op": op, "size_label": size_label, "size_bytes": SIZES[size_label],
                          **figures}
                record["rss_increase_bytes"] = record["rss_peak_bytes"] - idle
                info["points"].append(record)
                out["transfers"].append(record)
                _say("  " + _describe(record))
            _remove_uploads(storage)
        _finish(server, info)
        out["servers"].append(info)


def run_memory_phase(ws: Workspace, args, out: dict, storage: str) -> None:
    """5 concurrent 100 MB GETs + 5 concurrent 100 MB UPLOADs on a fresh server."""
    for variant in args.variants:
        if not variant.memory:
            continue
        label, server = _transfer_server(ws, variant, storage, "memory")
        time.sleep(0.3)
        info = _server_info(server, label + " memory", variant, idle_seconds=1.0)
        idle = info["idle_rss_bytes"]
        specs = (_transfer_specs("GET", "100MB", 5)
                 + _transfer_specs("UPLOAD", "100MB", 5, storage=storage))
        figures = measure(server, specs, _transfer_plan(server, args))
        _remove_uploads(storage)
        record = {"server": label, "variant": variant.name, "mode": variant.mode,
                  "op": "GET+UPLOAD", "size_label": "100MB",
                  "idle_rss_bytes": idle, **figures,
                  "rss_increase_bytes": figures["rss_peak_bytes"] - idle}
        out["memory"].append(record)
        _say(f"  {label:<18} 5 GET + 5 UPLOAD of 100MB: idle {idle / 2**20:.1f} MiB, "
             f"peak {record['rss_peak_bytes'] / 2**20:.1f} MiB, "
             f"+{record['rss_increase_bytes'] / 2**20:.1f} MiB, err {record['errors']}")
        _finish(server, info)
        out["servers"].append(info)


def measure_bounds(out: dict, when: str, quick: bool, folder: str) -> None:
    """Measure the bounds (the file write in ``folder``, where uploads are stored);
    the reference is the median over all measurements so far."""
    QUIET.wait()
    runs = out["bounds"].setdefault("runs", {})
    runs[when] = {"base64": bounds.base64_speed(repeats=3 if quick else 5),
                  "loopback_tcp": bounds.loopback_tcp_speed(),
                  "file_write": [bounds.file_write_speed(folder) for _ in range(3)]}
    _say(f"  {when}: {runs[when]}")
    b64 = {key: runs[when]["base64"][key] for key in ("size_bytes", "piece_bytes", "engine")}
    for key in ("encode", "decode_strict", "binascii_decode_strict"):
        values = [v for run in runs.values() for v in run["base64"][key]]
        b64[f"{key}_mb_per_s"] = round(statistics.median(values), 1)
        b64[f"{key}_best_mb_per_s"] = max(values)
    tcp = [run["loopback_tcp"]["mb_per_s"] for run in runs.values()
           if run["loopback_tcp"]["mb_per_s"]]
    out["bounds"]["base64"] = b64
    out["bounds"]["loopback_tcp"] = {"mb_per_s": round(statistics.median(tcp), 1) if tcp else None,
                                     "best_mb_per_s": max(tcp) if tcp else None}
    writes = [v for run in runs.values() for v in run.get("file_write", []) if v]
    out["bounds"]["file_write"] = {
        "mb_per_s": round(statistics.median(writes), 1) if writes else None,
        "best_mb_per_s": max(writes) if writes else None, "folder_fs": _fs_type(folder),
        "piece_bytes": bounds.UPLOAD_WRITE_BYTES}


def _fs_type(folder: str) -> str | None:
    """The file system of ``folder`` (from /proc/mounts: the longest mount point above it)."""
    try:
        with open("/proc/mounts") as mounts:
            entries = [line.split()[1:3] for line in mounts]
    except OSError:
        return None
    real = os.path.realpath(folder)
    above = [(point, fs) for point, fs in entries
             if real == point or real.startswith(point.rstrip("/") + "/")]
    return max(above, key=lambda entry: len(entry[0]))[1] if above else None


def _meta(args) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, timeout=10,
                                capture_output=True, text=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "server", "wire"],
                               cwd=REPO_ROOT, timeout=10, capture_output=True,
                               text=True).stdout.split("\n")
        dirty = [line.strip() for line in dirty if line.strip()]
    except (OSError, subprocess.SubprocessError):
        dirty = None
    return {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": args.quick,
            "uncommitted_server_or_wire_changes": dirty,
            "python": sys.version.split()[0], "platform": platform.platform(),
            "cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg(), "commit": commit,
            "list_seconds": args.list_seconds, "list_rounds": args.list_rounds,
            "transfer_seconds": args.transfer_seconds, "transfer_rounds": args.transfer_rounds,
            "transfers_per_client": TRANSFERS_PER_CLIENT,
            "base64_engine": bounds.streaming.BASE64_ENGINE.name,
            "list_pool": LIST_POOL, "transfer_pool": TRANSFER_POOL,
            "list_files": LIST_FILES, "modes": args.modes,
            "variants": [variant.record() for variant in args.variants],
            "free_threaded": {"python": args.ft.python, "version": args.ft.version,
                              "skipped": args.ft.skipped},
            "list_clients": args.list_clients, "list_clients_max": max(args.list_clients),
            "client": "one process per client, one connection per request",
            "server_logging": "default level (INFO), stdout/stderr to a file"}


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        plan_run(args)
    except PlanError as error:
        print(f"python -m bench: error: {error}", file=sys.stderr)
        return 2
    _say(args.ft.skipped or f"free-threaded points: {args.ft.python} "
                            f"(Python {args.ft.version})")
    out_path = args.out or os.path.join(
        REPO_ROOT, "bench", "results", time.strftime("bench-%Y%m%d-%H%M%S.json"))
    started = time.monotonic()
    QUIET.left, QUIET.retries = (20.0, 3) if args.quick else (90.0, 10)
    out = {"meta": _meta(args), "bounds": {}, "servers": [], "list": [], "transfers": [],
           "memory": []}
    with Workspace() as ws:
        _say("bounds: base64 (64 MiB, one core), loopback TCP (1 GiB), file write (100 MB)")
        storage = ws.folder("transfer-storage")
        measure_bounds(out, "start", args.quick, storage)
        _say(f"LIST: {args.list_rounds} rounds of {args.list_seconds:g} s per point, "
             f"clients {args.list_clients}")
        run_list_phase(ws, args, out)
        write_get_files(storage)
        _say("GET/UPLOAD: 10 MB and 100 MB at 1 and 5 clients, each between two loopback "
             "TCP measurements")
        run_transfer_phase(ws, args, out, storage)
        _say("memory: 5 concurrent 100 MB GETs + 5 concurrent 100 MB UPLOADs")
        run_memory_phase(ws, args, out, storage)
        _say("bounds again (the best of both measurements is used)")
        measure_bounds(out, "end", args.quick, storage)
        if args.keep_logs:
            logs_dir = os.path.splitext(out_path)[0] + ".logs"
            shutil.copytree(ws.folder("logs"), logs_dir, dirs_exist_ok=True)
            out["meta"]["logs"] = logs_dir
    out["meta"]["seconds"] = round(time.monotonic() - started, 1)
    out["meta"]["quiet_wait_budget_left_s"] = round(QUIET.left, 1)
    out["targets"] = evaluate_targets(out)
    print(render(out))
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w") as handle:
        json.dump(out, handle, indent=1)
    print(f"\nwrote {out_path}")
    draw_after_run(out, out_path)
    return 0
