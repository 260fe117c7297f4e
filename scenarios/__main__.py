"""``python -m scenarios list|validate|k8s|run|report|course``; see the package docstring."""

from __future__ import annotations

import argparse
import fnmatch
import signal
import sys
from pathlib import Path

from scenarios import k8s
from scenarios.schema import DEFAULT_FILE, ScenarioError, ScenarioFile, load

BACKEND_NAMES = ("local", "compose", "k8s")

COLUMNS = ("name", "mode", "pool", "cpus", "memory", "users", "duration")


def table(scenario_file: ScenarioFile) -> str:
    rows = [COLUMNS]
    for s in scenario_file:
        rows.append((s.name, s.mode, str(s.pool), f"{s.server_cpus:g}", s.server_memory,
                     str(s.users), s.run_time))
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) if i < 2 or i == 4 else cell.rjust(width)
                 for i, (cell, width) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def make_backend(name: str, scenario_file: ScenarioFile, args):
    from scenarios.backends import ComposeBackend, KubernetesBackend, LocalBackend
    if name == "local":
        return LocalBackend(apply_limits=not args.no_limits,
                            cpu_placement=getattr(args, "cpu_placement", None))
    if name == "compose":
        return ComposeBackend(image_tag=args.image_tag)
    from scenarios.backends.kubernetes import Kubectl
    return KubernetesBackend(scenario_file, Kubectl(context=args.context))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def run(args, scenario_file: ScenarioFile) -> int:
    from scenarios.backends import BackendError
    from scenarios.runner import Runner
    if args.all == bool(args.names):
        print("error: name scenarios to run, or give --all", file=sys.stderr)
        return 2
    chosen = list(scenario_file)
    if args.names:
        # a name may be a shell-style pattern: 'capacity-*'
        matches = {name: fnmatch.filter(scenario_file.names, name) for name in args.names}
        unknown = [name for name, found in matches.items() if not found]
        if unknown:
            print(f"error: no scenario named {', '.join(map(repr, unknown))} in "
                  f"{args.file} (see `python -m scenarios list`)", file=sys.stderr)
            return 2
        names = dict.fromkeys(found for name in args.names for found in matches[name])
        chosen = [scenario_file.get(name) for name in names]
    from scenarios.placement import PlacementError, placement_from_options
    try:
        args.cpu_placement = placement_from_options(args.server_cpuset, args.locust_cpuset,
                                                    args.backend)
    except PlacementError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    backend = make_backend(args.backend, scenario_file, args)
    searches = [s.name for s in chosen if s.capacity is not None]
    if searches and not backend.runs_capacity_searches:
        if args.names:
            print(f"error: backend {args.backend} cannot run capacity searches yet "
                  f"({', '.join(searches)}); use --backend local", file=sys.stderr)
            return 2
        print(f"note: skipping {len(searches)} capacity searches, which backend "
              f"{args.backend} cannot run yet: {', '.join(searches)}", file=sys.stderr)
        chosen = [s for s in chosen if s.capacity is None]
    runner = Runner(backend, Path(args.results))
    # SIGTERM unwinds like Ctrl-C: every backend stops what it started
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        folder, rows = runner.run(chosen, args.file, repeat=args.repeat)
    except BackendError as error:
        print(f"error: backend {args.backend}: {error}", file=sys.stderr)
        return getattr(error, "exit_status", 1)     # 2: no engine or cluster to run on
    print(f"summary: {folder / 'summary.csv'}\nreport:  make report RESULTS={folder}")
    return 1 if any(row["status"] == "error" for row in rows) else 0


def report(args) -> int:
    from scenarios.report import ReportError, write_report
    try:
        written = write_report(Path(args.results_dir))
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


def latest_results(root: Path) -> str | None:
    runs = sorted(root.glob("*/summary.csv"))
    return str(runs[-1].parent) if runs else None


def main(argv: list[str] | None = None) -> int:
    from scenarios.runner import RESULTS_ROOT
    parser = argparse.ArgumentParser(prog="python -m scenarios",
                                     description="Load-lab scenarios (scenarios.yaml).")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("list", "print the scenarios as a table"),
                            ("validate", "check a scenario file"),
                            ("k8s", "regenerate k8s/overlays/<scenario>/ from the file"),
                            ("run", "run scenarios and record their results")):
        command = commands.add_parser(name, help=help_text)
        if name == "run":
            command.add_argument("names", nargs="*", metavar="NAME",
                                 help="scenarios to run; shell-style patterns like "
                                      "'capacity-*' work too")
            command.add_argument("--all", action="store_true", help="run every scenario")
            command.add_argument("--repeat", type=_positive_int, default=1, metavar="N",
                                 help="run each scenario N times, interleaved (A B A B)")
            command.add_argument("--file", default=str(DEFAULT_FILE),
                                 help="scenario file (default: %(default)s)")
            command.add_argument("--backend", choices=BACKEND_NAMES, default="local",
                                 help="where to run (default: %(default)s)")
            command.add_argument("--results", default=str(RESULTS_ROOT),
                                 help="folder for results/<timestamp>/ (default: %(default)s)")
            command.add_argument("--no-limits", action="store_true",
                                 help="local: do not put the server in a cgroup")
            command.add_argument("--server-cpuset", metavar="CPUS", default=None,
                                 help="local: pin the server to these CPUs (taskset list: "
                                      "0, 0-1, 0,2); not the server_cpus limit")
            command.add_argument("--locust-cpuset", metavar="CPUS", default=None,
                                 help="local: pin every Locust process to these CPUs "
                                      "(default with --server-cpuset: the other CPUs)")
            command.add_argument("--image-tag", default="latest",
                                 help="compose: tag of the fileserver-lab images")
            command.add_argument("--context", default=None,
                                 help="k8s: kubectl context (default: the current one)")
        else:
            command.add_argument("file", nargs="?", default=str(DEFAULT_FILE),
                                 help="scenario file (default: %(default)s)")
        if name == "k8s":
            command.add_argument("--out", default=str(k8s.OVERLAYS_DIR),
                                 help="overlays folder (default: %(default)s)")
            command.add_argument("--check", action="store_true",
                                 help="write nothing; exit 1 if the overlays are out of date")
    command = commands.add_parser("report", help="charts, report.html and report.md "
                                                 "for a results folder")
    command.add_argument("results_dir", nargs="?", metavar="RESULTS_DIR",
                         help="a results/<timestamp> folder (default: the newest)")
    from scenarios import course
    course.add_arguments(commands.add_parser(
        "course", help="the course's transfer matrix: upload/download x volume x clients x "
                       "pool x mode (see scenarios/course.py)"))
    args = parser.parse_args(argv)
    if args.command == "course":
        return course.run_from_args(args)
    if args.command == "report":
        if args.results_dir is None:
            args.results_dir = latest_results(RESULTS_ROOT)
            if args.results_dir is None:
                print(f"error: no results under {RESULTS_ROOT}; run scenarios first",
                      file=sys.stderr)
                return 1
        return report(args)
    try:
        scenario_file = load(args.file)
    except ScenarioError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.command == "run":
        return run(args, scenario_file)
    if args.command == "list":
        print(table(scenario_file))
    elif args.command == "validate":
        print(f"{args.file}: {len(scenario_file)} scenarios, OK")
    elif args.check:
        stale = k8s.stale_overlays(scenario_file, Path(args.out))
        if stale:
            print(f"error: out of date with {args.file}: {', '.join(stale)} "
                  "(run `make k8s`)", file=sys.stderr)
            return 1
        print(f"{args.out}: {len(k8s.render_overlays(scenario_file))} overlays, up to date")
    else:
        written, removed = k8s.write_overlays(scenario_file, Path(args.out))
        print(f"{args.out}: {len(k8s.render_overlays(scenario_file))} overlays, "
              f"{written} files written, {removed} stale overlays removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
