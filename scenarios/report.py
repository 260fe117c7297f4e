"""A results folder turned into charts, ``report.html`` and ``report.md``.

Written into the results folder itself::

    charts/capacity.png           capacity against pool size, one line per model
    charts/models.png             each model's best capacity side by side (when a
                                  free-threaded server is among the searches)
    charts/latency-vs-throughput.png  p95 against throughput of every judged step
    charts/rps-vs-pool.png        requests/s against pool size, one line per mode
    charts/p95-vs-pool.png        p95 latency against pool size, one line per mode
    charts/thread-vs-process.png  the models side by side at each pool size
    charts/failures.png           failed requests per scenario (%)
    charts/server-cpu.png         server CPU per scenario (mean and peak)
    charts/server-memory.png      server memory per scenario (peak PSS and peak summed RSS)
    report.html                   everything above in one file (charts embedded)
    report.md                     a short summary with the table

Compose runs add a table of their containers (``containers.jsonl``): CPU and
memory of the server and of every Locust container.

The pool charts use the largest group of scenarios that differ only in mode
and pool (the default matrix); every scenario appears in the per-scenario charts.
A server on a free-threaded CPython (the scenario key ``python``) is its own
model in charts and tables: "free-threaded thread" beside "thread" and "process".
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from scenarios.containers import CONTAINERS_FILE, container_table, read_container_samples
from scenarios.generator import SATURATED_NOTE, SATURATION_THRESHOLD_PCT, SMOOTHING_SAMPLES
from scenarios.placement import PlacementError, parse_cpu_list
from scenarios import findings
from scenarios.findings import marked_saturated
from scenarios.results import SCENARIO_FILE, SUMMARY_FILE, read_capacity_steps, read_summary

CHART_SIZE_INCHES = (8.0, 4.5)
CHART_DPI = 100                       # 800 x 450 pixels
CHART_PIXELS = (round(CHART_SIZE_INCHES[0] * CHART_DPI), round(CHART_SIZE_INCHES[1] * CHART_DPI))
# one colour per model (model_label), also the bench chart's (bench/chart.py)
MODE_COLOURS = {"thread": "#1f77b4", "process": "#d62728",
                "free-threaded thread": "#2ca02c", "free-threaded process": "#9467bd",
                "thread (free-threaded build, GIL on)": "#98df8a"}
LOAD_KEYS = ("users", "spawn_rate", "duration_s", "locust_workers", "server_cpus",
             "server_memory")
TABLE_COLUMNS = (("scenario", "scenario"), ("status", "status"), ("mode", "mode"),
                 ("pool", "pool"), ("python", "Python"),
                 ("server_cpus", "CPUs"), ("server_memory", "memory"),
                 ("users", "users"), ("runs", "runs"),
                 ("capacity_rps", "capacity req/s"), ("capacity_users", "at users"),
                 ("rps", "req/s"), ("p50_ms", "p50 ms"),
                 ("p95_ms", "p95 ms"), ("failure_pct", "failed %"),
                 ("server_cpu_pct_mean", "CPU % mean"), ("server_pss_mb_max", "PSS MiB max"),
                 ("busy_workers_max", "busy max"), ("locust_cpu_max_pct", "Locust CPU % max"))


def model_label(row: dict) -> str:
    """The concurrency model as the report names it: the mode, and for a server on a
    free-threaded build, "free-threaded thread" (or, with its GIL back on,
    "thread (free-threaded build, GIL on)")."""
    if row.get("free_threaded") != "yes":
        return row["mode"]
    if row.get("gil_enabled") == "no":
        return f"free-threaded {row['mode']}"
    return f"{row['mode']} (free-threaded build, GIL on)"


def with_model_labels(rows: list[dict]) -> list[dict]:
    """Rows whose ``mode`` is the model label: the charts, tables and the answer then
    keep a free-threaded thread pool apart from the GIL one."""
    return [dict(row, mode=model_label(row)) for row in rows]


class ReportError(ValueError):
    """The folder cannot be reported on; one line."""


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def pool_sweep(rows: list[dict]) -> list[dict]:
    """The largest group of rows sharing every load setting and differing in mode
    or pool size, sorted by mode and pool."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["rps"] is None or row.get("capacity_rps") is not None:
            continue        # a capacity search's overall rps mixes all its steps
        groups.setdefault(tuple(row[key] for key in LOAD_KEYS), []).append(row)
    candidates = [group for group in groups.values()
                  if len({(r["mode"], r["pool"]) for r in group}) > 1]
    if not candidates:
        return []
    return sorted(max(candidates, key=len), key=lambda r: (r["mode"], r["pool"]))


def _figure(plt, title: str):
    figure, axes = plt.subplots(figsize=CHART_SIZE_INCHES, dpi=CHART_DPI)
    axes.set_title(title)
    axes.grid(True, axis="y", alpha=0.3)
    return figure, axes


def _save(plt, figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=CHART_DPI)
    plt.close(figure)
    return path


def error_bars(rows: list[dict], key: str) -> list[list[float]]:
    """Repeated runs: from the median down to the lowest run and up to the highest."""
    return [[row[key] - row.get(f"{key}_min", row[key]) for row in rows],
            [row.get(f"{key}_max", row[key]) - row[key] for row in rows]]


def _pool_line_chart(plt, sweep: list[dict], key: str, label: str, title: str,
                     path: Path) -> Path:
    figure, axes = _figure(plt, title)
    pools = sorted({row["pool"] for row in sweep})
    for mode in sorted({row["mode"] for row in sweep}):
        mine = sorted((row for row in sweep if row["mode"] == mode and row[key] is not None),
                      key=lambda row: row["pool"])
        if mine:
            axes.errorbar([pools.index(row["pool"]) for row in mine], [row[key] for row in mine],
                          yerr=error_bars(mine, key), capsize=4, marker="o", label=mode,
                          color=MODE_COLOURS.get(mode))
    axes.set_xticks(range(len(pools)), [str(p) for p in pools])
    axes.set_xlabel("pool size (threads or processes)")
    axes.set_ylabel(label)
    axes.set_ylim(bottom=0)
    axes.legend(title="mode")
    return _save(plt, figure, path)


def _side_by_side_chart(plt, sweep: list[dict], path: Path) -> Path:
    figure, (rps_axes, p95_axes) = plt.subplots(1, 2, figsize=CHART_SIZE_INCHES, dpi=CHART_DPI)
    figure.suptitle(" vs ".join(f"{mode} pool" for mode in sorted({r["mode"] for r in sweep})))
    pools = sorted({row["pool"] for row in sweep})
    modes = sorted({row["mode"] for row in sweep})
    width = 0.8 / max(len(modes), 1)
    for axes, key, label in ((rps_axes, "rps", "requests/s"), (p95_axes, "p95_ms", "p95 ms")):
        for offset, mode in enumerate(modes):
            values = {row["pool"]: row[key] for row in sweep if row["mode"] == mode}
            axes.bar([i + (offset - (len(modes) - 1) / 2) * width for i in range(len(pools))],
                     [values.get(pool) or 0 for pool in pools], width, label=mode,
                     color=MODE_COLOURS.get(mode))
        axes.set_xticks(range(len(pools)), [str(p) for p in pools])
        axes.set_xlabel("pool size")
        axes.set_ylabel(label)
        axes.grid(True, axis="y", alpha=0.3)
    rps_axes.legend(title="mode")
    return _save(plt, figure, path)


def _per_scenario_chart(plt, rows: list[dict], series: list[tuple[str, str]], ylabel: str,
                        title: str, path: Path) -> Path:
    figure, axes = _figure(plt, title)
    names = [row["scenario"] for row in rows]
    width = 0.8 / len(series)
    for offset, (key, label) in enumerate(series):
        axes.bar([i + (offset - (len(series) - 1) / 2) * width for i in range(len(rows))],
                 [row[key] or 0 for row in rows], width, label=label,
                 color=[MODE_COLOURS.get(row["mode"], "#7f7f7f") for row in rows],
                 alpha=1.0 if offset == 0 else 0.5)
    axes.set_xticks(range(len(rows)), names, rotation=45, ha="right", fontsize=8)
    axes.set_ylabel(ylabel)
    if len(series) > 1:
        axes.legend()
    return _save(plt, figure, path)


def _capacity_chart(plt, rows: list[dict], path: Path) -> Path | None:
    """capacity_rps against pool size, a line per mode, min–max error bars."""
    rows = [row for row in findings.capacity_rows(rows) if row["capacity_rps"] is not None]
    if not rows:
        return None
    figure, axes = _figure(plt, "capacity: the highest step throughput that met the objective")
    pools = sorted({row["pool"] for row in rows})
    for mode in sorted({row["mode"] for row in rows}):
        mine = sorted((row for row in rows if row["mode"] == mode), key=lambda r: r["pool"])
        x = [pools.index(row["pool"]) for row in mine]
        axes.errorbar(x, [row["capacity_rps"] for row in mine],
                      yerr=error_bars(mine, "capacity_rps"), marker="o", capsize=4, label=mode,
                      color=MODE_COLOURS.get(mode))
        for xi, row in zip(x, mine):
            if marked_saturated(row):
                axes.annotate("generator saturated", (xi, row["capacity_rps"]), fontsize=7,
                              color="#b45f06", textcoords="offset points", xytext=(4, 6))
    axes.set_xticks(range(len(pools)), [str(p) for p in pools])
    axes.set_xlabel("pool size (threads or processes)")
    axes.set_ylabel("capacity (req/s within the objective)")
    axes.set_ylim(bottom=0)
    axes.legend(title="mode (median, bars: min–max)")
    return _save(plt, figure, path)


def _models_chart(plt, rows: list[dict], path: Path) -> Path | None:
    """Best against best, as the answer says it: each model's highest trusted capacity
    (at its best pool), bars from its lowest to its highest run.  Drawn when a
    free-threaded server is among them: thread (GIL), free-threaded thread, process."""
    best = findings.best_per_model(rows)
    if len(best) < 2 or not any(row.get("free_threaded") == "yes" for row in best):
        return None
    figure, axes = _figure(plt, "best against best: each model's highest capacity")
    values = [row["capacity_rps"] for row in best]
    axes.bar(range(len(best)), values, 0.6, yerr=error_bars(best, "capacity_rps"), capsize=6,
             color=[MODE_COLOURS.get(row["mode"], "#7f7f7f") for row in best])
    for index, value in enumerate(values):
        axes.annotate(f"{value:,.0f}", (index, value / 2), ha="center", color="white")
    axes.set_xticks(range(len(best)), [f"{row['mode']}\npool {row['pool']}" for row in best])
    axes.set_ylabel("capacity (req/s within the objective)")
    axes.set_ylim(bottom=0)
    return _save(plt, figure, path)


def run_folders(results: Path, row: dict) -> list[Path]:
    """The folder(s) of a scenario's runs."""
    folder = results / row["scenario"]
    return sorted(folder.glob("run-*")) or [folder]


def _objective_ms(folder: Path) -> float | None:
    try:
        record = json.loads((folder / SCENARIO_FILE).read_text(encoding="utf-8"))
        return float(record["capacity"]["slo_p95_ms"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _latency_throughput_chart(plt, results: Path, rows: list[dict], path: Path) -> Path | None:
    """p95 against throughput of every judged step: the 'hockey stick' of each search."""
    rows = sorted(findings.capacity_rows(rows), key=lambda r: (r["mode"], r["pool"]))
    runs = [(index, run, row, steps) for index, row in enumerate(rows)
            for run, folder in enumerate(run_folders(results, row))
            if (steps := [s for s in read_capacity_steps(folder) if s["p95_ms"] is not None])]
    if not runs:
        return None
    figure, axes = _figure(plt, "latency against throughput, one line per capacity search")
    styles = ["-", "--", ":", "-."]
    for index, run, row, steps in runs:
        axes.plot([s["rps"] for s in steps], [s["p95_ms"] for s in steps],
                  marker="o", markersize=3, linestyle=styles[index % len(styles)],
                  color=MODE_COLOURS.get(row["mode"]), alpha=0.9 if run == 0 else 0.4,
                  label=row["scenario"] if run == 0 else None)
    slo = _objective_ms(run_folders(results, rows[0])[0])
    if slo:
        axes.axhline(slo, color="#555", linewidth=0.8, label=f"objective p95 {slo:g} ms")
    axes.set_xlabel("step throughput (req/s)")
    axes.set_ylabel("step p95 (ms)")
    axes.set_yscale("log")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7, ncol=2)
    return _save(plt, figure, path)


def write_charts(rows: list[dict], charts: Path, results: Path | None = None) -> list[Path]:
    """The charts of ``rows`` (one per scenario, repeated runs aggregated)."""
    plt = pyplot()
    charts.mkdir(exist_ok=True)
    written = [chart for chart in (
        _capacity_chart(plt, rows, charts / "capacity.png"),
        _models_chart(plt, rows, charts / "models.png"),
        _latency_throughput_chart(plt, results, rows, charts / "latency-vs-throughput.png")
        if results else None) if chart]
    sweep = pool_sweep(rows)
    if len({row["pool"] for row in sweep}) > 1:
        written.append(_pool_line_chart(plt, sweep, "rps", "requests/s",
                                        "throughput against pool size", charts / "rps-vs-pool.png"))
        written.append(_pool_line_chart(plt, sweep, "p95_ms", "p95 latency (ms)",
                                        "p95 latency against pool size",
                                        charts / "p95-vs-pool.png"))
    if len({row["mode"] for row in sweep}) > 1:
        written.append(_side_by_side_chart(plt, sweep, charts / "thread-vs-process.png"))
    written.append(_per_scenario_chart(plt, rows, [("failure_pct", "failed %")],
                                       "failed requests (%)", "failures per scenario",
                                       charts / "failures.png"))
    written.append(_per_scenario_chart(plt, rows, [("server_cpu_pct_mean", "mean"),
                                                   ("server_cpu_pct_max", "peak")],
                                       "server CPU (% of one core)", "server CPU per scenario",
                                       charts / "server-cpu.png"))
    written.append(_per_scenario_chart(plt, rows, [("server_pss_mb_max", "peak PSS"),
                                                   ("server_rss_mb_max", "peak RSS, summed")],
                                       "server memory (MiB)", "server memory per scenario",
                                       charts / "server-memory.png"))
    return written


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


SPREAD_IN_TABLE = ("capacity_rps", "rps", "p50_ms", "p95_ms")


def _table_cell(row: dict, key: str) -> str:
    """A table cell; a saturated run's status says it is not trustworthy, and a
    repeated scenario's main figures show the lowest and highest run."""
    if key == "status" and marked_saturated(row):
        return f"{_cell(row[key])}, NOT TRUSTWORTHY: generator saturated"
    if key in SPREAD_IN_TABLE and row.get("runs", 1) > 1 and row[key] is not None \
            and row[key + "_min"] != row[key + "_max"]:
        return f"{_cell(row[key])} ({_cell(row[key + '_min'])}–{_cell(row[key + '_max'])})"
    return _cell(row.get(key))


def _generator_caveats(info: dict, rows: list[dict]) -> list[str]:
    """Saturated runs (never silently), runs whose generator was not checked, placement."""
    notes = []
    saturated_rows = [row for row in rows if marked_saturated(row)]
    if saturated_rows:
        notes.append(
            f"NOT TRUSTWORTHY: {', '.join(row['scenario'] for row in saturated_rows)}: "
            f"{SATURATED_NOTE} (a Locust worker above {SATURATION_THRESHOLD_PCT:g} % of a core, "
            "or Locust's own CPU warning); rerun with more Locust workers or with the server "
            "and Locust on separate CPUs.")
    measured = [row for row in rows if row["rps"] is not None]
    unchecked = [row["scenario"] for row in measured
                 if row.get("load_generator_saturated") is None]
    if unchecked:
        notes.append("The load generator was not checked"
                     + ("" if len(unchecked) == len(measured)
                        else " for: " + ", ".join(unchecked))
                     + " (Locust's CPU is sampled by the local and compose backends only).")
    placement = info.get("placement")
    if placement:
        notes.append(f"CPU placement: the server pinned to CPU {placement.get('server')}, "
                     f"every Locust process to CPU {placement.get('locust')} "
                     f"(CPU affinity set with {placement.get('method', '?')}, inherited by the "
                     "server's forked workers).")
        try:
            server_cpus = len(parse_cpu_list(str(placement.get("server"))))
        except PlacementError:
            server_cpus = None
        capped = [row["scenario"] for row in rows
                  if server_cpus and (row["server_cpus"] or 0) > server_cpus]
        if capped:
            notes.append(f"The server had {server_cpus} CPU{'s' if server_cpus > 1 else ''} "
                         "to run on, less than the server_cpus limit of: "
                         + ", ".join(capped) + ".")
    return notes


def _caveats(info: dict, rows: list[dict]) -> list[str]:
    notes = _generator_caveats(info, rows)
    if info.get("backend") == "local" and not info.get("placement"):
        cpus = info.get("machine", {}).get("cpus")
        notes.append(f"Local backend: Locust and the server shared one machine ({cpus} CPUs), "
                     "so Locust's own CPU use competes with the server's.")
    unlimited = [row["scenario"] for row in rows if row["limits_enforced"] == "no"]
    if unlimited:
        notes.append("CPU and memory limits were not enforced for: " + ", ".join(unlimited) + ".")
    if any(row["mode"] == "process" for row in rows):
        notes.append("Memory is PSS (shared pages split between the processes sharing them); "
                     "the RSS sum in the memory chart counts the pages pre-forked workers "
                     "share with the supervisor once per worker.")
    broken = [f"{row['scenario']} ({row['note'] or row['status']})" for row in rows
              if row["status"] == "error"]
    if broken:
        notes.append("Did not complete: " + "; ".join(broken) + ".")
    return notes


def highlights(rows: list[dict]) -> list[str]:
    lines = []
    sweep = pool_sweep(rows)
    for mode in sorted({row["mode"] for row in sweep}):
        mine = [row for row in sweep if row["mode"] == mode]
        best = max(mine, key=lambda r: r["rps"])
        lines.append(f"{mode}: highest throughput {best['rps']:.1f} req/s at pool {best['pool']}; "
                     f"p95 from {min(r['p95_ms'] or 0 for r in mine):.0f} to "
                     f"{max(r['p95_ms'] or 0 for r in mine):.0f} ms across pools "
                     f"{', '.join(str(r['pool']) for r in mine)}."
                     + (" Not trustworthy: the load generator was saturated in "
                        + ", ".join(r["scenario"] for r in mine if marked_saturated(r)) + "."
                        if any(marked_saturated(r) for r in mine) else ""))
    failing = [row for row in rows if row["failures"]]
    if failing:
        lines.append("Failures: " + ", ".join(f"{row['scenario']} {row['failure_pct']:.1f}%"
                                              for row in failing) + ".")
    else:
        lines.append("No request failed in any scenario.")
    return lines


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(title for _, title in TABLE_COLUMNS) + " |",
             "|" + "|".join("---" if key in ("scenario", "status", "mode", "python",
                                            "server_memory")
                            else "---:" for key, _ in TABLE_COLUMNS) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_table_cell(row, key) for key, _ in TABLE_COLUMNS) + " |")
    return "\n".join(lines)


CONTAINER_COLUMNS = (("scenario", "scenario"), ("container", "container"), ("role", "role"),
                     ("cpu_pct_peak", "CPU % max"), ("cpu_pct_mean", "CPU % mean"),
                     ("memory_mib_max", "memory MiB max"), ("memory_limit_mib", "limit MiB"))
CONTAINERS_TITLE = "Containers"
CONTAINERS_INTRO = (f"Every container of each compose run, from the Docker stats API about once "
                    f"a second: CPU in % of one core (max: the highest mean of "
                    f"{SMOOTHING_SAMPLES} consecutive samples, as the load-generator check "
                    "takes it), memory as `docker stats` shows it (usage less the inactive page "
                    "cache) against the container's limit.  A container counts every process in "
                    "it: the server's includes its health checks, which its /stats does not.")


def container_rows(results: Path, rows: list[dict]) -> list[dict]:
    """One row per container of every run that sampled its containers (compose)."""
    table = []
    for row in rows:
        folders = run_folders(results, row)
        for folder in folders:
            samples = read_container_samples(folder / CONTAINERS_FILE)
            if not samples:
                continue
            run = row["scenario"] + (f" {folder.name}" if folder.name.startswith("run-")
                                     else "")
            for entry in container_table(samples, SMOOTHING_SAMPLES):
                mib = {key: None if entry[source] is None else round(entry[source] / 2 ** 20, 1)
                       for key, source in (("memory_mib_max", "memory_bytes_max"),
                                           ("memory_limit_mib", "memory_limit_bytes"))}
                table.append({"scenario": run, **entry, **mib})
    return table


def markdown_container_table(table: list[dict]) -> str:
    lines = ["| " + " | ".join(title for _, title in CONTAINER_COLUMNS) + " |",
             "|" + "|".join("---" if key in ("scenario", "container", "role") else "---:"
                            for key, _ in CONTAINER_COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cell(entry[key]) for key, _ in CONTAINER_COLUMNS) + " |"
              for entry in table]
    return "\n".join(lines)


def _html_container_section(table: list[dict]) -> list[str]:
    esc = html.escape
    parts = [f"<h2>{CONTAINERS_TITLE}</h2>", f"<p>{esc(CONTAINERS_INTRO)}</p>",
             "<table><thead><tr>"]
    parts += [f"<th>{esc(title)}</th>" for _, title in CONTAINER_COLUMNS]
    parts.append("</tr></thead><tbody>")
    for entry in table:
        cells = [('<td class="n">' if isinstance(entry[key], (int, float)) else "<td>")
                 + f"{esc(_cell(entry[key]))}</td>" for key, _ in CONTAINER_COLUMNS]
        parts.append(f"<tr>{''.join(cells)}</tr>")
    parts.append("</tbody></table>")
    return parts


def _run_line(info: dict, rows: list[dict]) -> str:
    machine = info.get("machine", {})
    runs = sum(row.get("runs", 1) for row in rows)
    return (f"{len(rows)} scenarios" + (f" ({runs} runs)" if runs > len(rows) else "")
            + f", backend {info.get('backend', '?')}, "
            f"{info.get('started', '?')} to {info.get('finished', '?')}, "
            f"commit {info.get('git_commit') or '?'}, {machine.get('cpus', '?')} CPUs, "
            f"Python {machine.get('python', '?')}"
            + ("" if {row.get("python") for row in rows} <= {machine.get("python"), None}
               else " (the lab's; each server's is in the Python column)"))


def write_markdown(folder: Path, info: dict, rows: list[dict], charts: list[Path]) -> Path:
    parts = [f"# Load-lab report: {folder.name}", "", " ".join(findings.answer(rows)), "",
             _run_line(info, rows), ""]
    parts += [f"- {line}" for line in highlights(rows) + _caveats(info, rows)]
    parts += ["", markdown_table(rows), ""]
    containers = container_rows(folder, rows)
    if containers:
        parts += [f"## {CONTAINERS_TITLE}", "", CONTAINERS_INTRO, "",
                  markdown_container_table(containers), ""]
    parts += [f"![{chart.stem}]({chart.relative_to(folder).as_posix()})" for chart in charts]
    path = folder / "report.md"
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.error td { background: #fde8e8; }
tr.saturated td { background: #fff3cd; }
img { max-width: 100%; display: block; margin: 1em 0; }
"""


def write_html(folder: Path, info: dict, rows: list[dict], charts: list[Path]) -> Path:
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>Load-lab report {esc(folder.name)}</title>",
             f"<style>{HTML_STYLE}</style></head><body>",
             f"<h1>Load-lab report {esc(folder.name)}</h1>",
             f"<p><strong>{esc(' '.join(findings.answer(rows)))}</strong></p>",
             f"<p>{esc(_run_line(info, rows))}</p><ul>"]
    parts += [f"<li>{esc(line)}</li>" for line in highlights(rows) + _caveats(info, rows)]
    parts += ["</ul><table><thead><tr>"]
    parts += [f"<th>{esc(title)}</th>" for _, title in TABLE_COLUMNS]
    parts += ["</tr></thead><tbody>"]
    for row in rows:
        css = (' class="error"' if row["status"] == "error" else
               f' class="saturated" title="{esc(SATURATED_NOTE)}"' if marked_saturated(row) else "")
        cells = []
        for key, _ in TABLE_COLUMNS:
            numeric = ' class="n"' if isinstance(row.get(key), (int, float)) else ""
            cells.append(f"<td{numeric}>{esc(_table_cell(row, key))}</td>")
        parts.append(f"<tr{css}>{''.join(cells)}</tr>")
    parts.append("</tbody></table>")
    containers = container_rows(folder, rows)
    if containers:
        parts += _html_container_section(containers)
    for chart in charts:
        data = base64.b64encode(chart.read_bytes()).decode("ascii")
        parts.append(f'<h2>{esc(chart.stem.replace("-", " "))}</h2>'
                     f'<img alt="{esc(chart.stem)}" src="data:image/png;base64,{data}">')
    parts.append("</body></html>")
    path = folder / "report.html"
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def write_report(folder: Path) -> list[Path]:
    """Charts, report.html and report.md for ``folder``; returns the files written."""
    summary = folder / SUMMARY_FILE
    if not summary.is_file():
        raise ReportError(f"{folder}: no {SUMMARY_FILE} (is it a results/<timestamp> folder?)")
    rows = read_summary(summary)
    if not rows:
        raise ReportError(f"{summary}: no scenario finished in this run")
    try:
        info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    scenarios = with_model_labels(findings.aggregate(rows))
    charts = write_charts(scenarios, folder / "charts", folder)
    return [*charts, write_html(folder, info, scenarios, charts),
            write_markdown(folder, info, scenarios, charts)]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR; ValueError if it is not a PNG."""
    header = path.read_bytes()[:24]
    if header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG file")
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


__all__ = ["CHART_PIXELS", "ReportError", "error_bars", "png_size", "pyplot", "write_report"]
