"""``python -m scenarios list|validate|k8s [FILE]``; see the package docstring."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scenarios import k8s
from scenarios.schema import DEFAULT_FILE, ScenarioError, ScenarioFile, load

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenarios",
                                     description="Load-lab scenarios (scenarios.yaml).")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("list", "print the scenarios as a table"),
                            ("validate", "check a scenario file"),
                            ("k8s", "regenerate k8s/overlays/<scenario>/ from the file")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("file", nargs="?", default=str(DEFAULT_FILE),
                             help="scenario file (default: %(default)s)")
        if name == "k8s":
            command.add_argument("--out", default=str(k8s.OVERLAYS_DIR),
                                 help="overlays folder (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        scenario_file = load(args.file)
    except ScenarioError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.command == "list":
        print(table(scenario_file))
    elif args.command == "validate":
        print(f"{args.file}: {len(scenario_file)} scenarios, OK")
    else:
        written, removed = k8s.write_overlays(scenario_file, Path(args.out))
        print(f"{args.out}: {len(scenario_file)} overlays, {written} files written, "
              f"{removed} stale overlays removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
