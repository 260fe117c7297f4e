"""How many Locust users one Locust process sustains against a pool-50 server.

Runs ``locust --headless`` (one process, which is what one distributed
worker is) at rising user counts.  A step passes when it has no failure and
the Locust process's CPU stays below 90 % of one core (Locust's own warning
threshold); the answer is the largest passing step and its requests/s.

    python -m bench.locust_capacity [--mode thread] [--steps 100,200,400,800] [--seconds 20]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.servers import RealServer
from server.config import MODES

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = REPO_ROOT / "locust" / "locustfile.py"
CPU_LIMIT = 90.0


def run_step(users: int, seconds: int, port: int, metrics_port: int, work: Path) -> dict:
    prefix = work / f"u{users}"
    locust = str(Path(sys.executable).parent / "locust")
    # small files: the question is what Locust sustains, not the server's bandwidth
    command = [locust, "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
               "--file-sizes", "1KB,10KB", "--upload-size", "10KB",
               "-r", str(max(users // 5, 10)), "-t", f"{seconds}s", "--only-summary",
               "--host", f"tcp://127.0.0.1:{port}",
               "--server-stats-url", f"http://127.0.0.1:{metrics_port}/stats",
               "--csv", str(prefix)]
    proc = subprocess.Popen(command, cwd=work, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    watcher = psutil.Process(proc.pid)
    watcher.cpu_percent()
    ramp = users / max(users // 5, 10)
    started = time.monotonic()
    samples = []
    while proc.poll() is None:
        time.sleep(1.0)
        try:
            value = watcher.cpu_percent()
        except psutil.Error:
            break
        # judge the steady state: skip the ramp-up and the final shutdown second
        if ramp + 1 < time.monotonic() - started < seconds:
            samples.append(value)
    proc.wait()
    with open(f"{prefix}_stats.csv", newline="") as f:
        total = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    cpu = sorted(samples)[len(samples) // 2] if samples else 0.0
    return {
        "users": users,
        "requests": int(total["Request Count"]),
        "failures": int(total["Failure Count"]),
        "requests_per_second": round(float(total["Requests/s"]), 1),
        "p95_ms": float(total["95%"] or 0),
        "locust_cpu_percent_median": round(cpu, 1),
        "locust_cpu_percent_max": round(max(samples), 1) if samples else 0.0,
        "exit_code": proc.returncode,
        # each user sends at most one request per mean wait (1 s); far less means the
        # server, not Locust, is the limit
        "server_bound": float(total["Requests/s"]) < 0.7 * users,
        "passed": int(total["Failure Count"]) == 0 and cpu < CPU_LIMIT,
    }


def measure(mode: str, steps: list[int], seconds: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="locust-capacity-") as tmp:
        work = Path(tmp)
        server = RealServer(mode, 50, str(work / "files"), str(work / "server.log"))
        server.start()
        port, metrics_port = server.port, server.metrics_port
        try:
            results = []
            for users in steps:
                result = run_step(users, seconds, port, metrics_port, work)
                results.append(result)
                print(f"  {users:5d} users: {result['requests_per_second']:7.1f} req/s, "
                      f"{result['failures']} failures, Locust CPU median "
                      f"{result['locust_cpu_percent_median']:.0f}% "
                      f"(max {result['locust_cpu_percent_max']:.0f}%), "
                      f"p95 {result['p95_ms']:.0f} ms -> "
                      f"{'ok' if result['passed'] else 'over'}"
                      f"{' (server-bound)' if result['server_bound'] else ''}", flush=True)
                if not result["passed"]:
                    break
        finally:
            server.stop()
    # server-bound steps say nothing about Locust: count only steps that still scale
    passing = [r for r in results if r["passed"] and not r["server_bound"]]
    best = passing[-1] if passing else None
    cost = [r["locust_cpu_percent_median"] * 10 / r["requests_per_second"]
            for r in results if r["requests_per_second"]]
    return {"mode": mode, "pool": 50, "step_seconds": seconds, "steps": results,
            "max_users": best["users"] if best else 0,
            "requests_per_second_at_max": best["requests_per_second"] if best else 0.0,
            "locust_cpu_ms_per_request": round(min(cost), 2) if cost else None,
            "server_bound_from_users": next((r["users"] for r in results
                                             if r["server_bound"]), None)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", default="process", choices=MODES)
    parser.add_argument("--steps", default="100,200,400,800,1200,1600")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--out", default=str(REPO_ROOT / "bench" / "results" /
                                             "locust-capacity.json"))
    args = parser.parse_args(argv)
    steps = [int(s) for s in args.steps.split(",")]
    print(f"Locust capacity: one Locust process against a {args.mode} pool of 50, "
          f"default task weights, 1-10 KB files, wait 0.5-1.5 s, {args.seconds} s per step")
    result = measure(args.mode, steps, args.seconds)
    print(f"=> one Locust process sustains {result['max_users']} users "
          f"({result['requests_per_second_at_max']} req/s) with 0 failures and CPU < "
          f"{CPU_LIMIT:.0f}%; it spends {result['locust_cpu_ms_per_request']} ms of CPU "
          f"per request")
    if result["server_bound_from_users"]:
        print(f"   from {result['server_bound_from_users']} users on, the server (sharing this "
              f"machine) was the limit, not Locust")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
