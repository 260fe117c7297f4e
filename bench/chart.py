"""The LIST chart of a bench run: ops/s and server CPU per LIST against concurrent clients.

``python -m bench`` draws it next to its JSON (``bench-<time>.json`` ->
``bench-<time>-list.png``); ``python -m bench.report --chart FILE.json [--out PNG]``
draws it again from a result.  One series per LIST server in the file's ``list``
records, whatever its label: the run's own servers (thread, process, thread-ft,
thread-ft-gil) in the scenario report's colour of their model, solid; the
references (asyncio, threadpool, prefork, ...) dashed, in their model's colour
when they stand for one (``bench.report.BARE_REFERENCES``), else grey.  A server measured at
fewer levels (thread-ft-gil: 50 clients only) is drawn where it has points.

Left panel: ops/s of the median round, error bars from the lowest to the highest
round (``rounds_ops_per_s``).  Right panel: server CPU µs per LIST of the median
round (``server_cpu_us_per_op``).  Without matplotlib, ``ChartUnavailable``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from scenarios.report import CHART_DPI, MODE_COLOURS, error_bars, model_label, pyplot

from .report import BARE_REFERENCES

__all__ = ["LIST_CHART_SUFFIX", "ChartError", "ChartUnavailable", "Series", "chart_path",
           "draw_after_run", "list_figure", "list_series", "load_result", "write_list_chart"]

LIST_CHART_SUFFIX = "-list.png"
CHART_SIZE_INCHES = (12.0, 5.5)                 # two panels and a legend below them
# references that stand for one model (a bare pool of its kind): dashed, in its colour
REFERENCE_MODELS = {reference: mode for mode, reference in BARE_REFERENCES.items()}
REFERENCE_GREYS = ("#404040", "#8c8c8c", "#bdbdbd")
REFERENCE_MARKERS = ("s", "^", "v", "D", "P")
OTHER_MODEL_COLOUR = "#7f7f7f"
DODGE = 0.05                    # horizontal shift between series, so error bars stay apart


class ChartError(ValueError):
    """The file is not a bench result that has LIST points; one line naming it."""


class ChartUnavailable(RuntimeError):
    """matplotlib is not installed."""


@dataclass
class Series:
    label: str                  # the server as the run names it: thread(50), asyncio-protocol
    model: str | None           # the report's model of our servers; None for a reference
    legend: str
    colour: str
    linestyle: str
    marker: str
    clients: list[int] = field(default_factory=list)
    ops_per_s: list[float] = field(default_factory=list)
    ops_low: list[float] = field(default_factory=list)      # lowest and highest round
    ops_high: list[float] = field(default_factory=list)
    cpu_us_per_op: list[float | None] = field(default_factory=list)
    disturbed: list[bool] = field(default_factory=list)

    @property
    def reference(self) -> bool:
        return self.model is None


def chart_path(json_path) -> Path:
    """bench/results/bench-X.json -> bench/results/bench-X-list.png"""
    path = Path(json_path)
    return path.with_name(path.stem + LIST_CHART_SUFFIX)


def load_result(path) -> dict:
    """A bench result file; ChartError naming it when it cannot be read or has no
    LIST records."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ChartError(f"{path}: cannot read it ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise ChartError(f"{path}: not a bench result (not a text file)") from None
    try:
        out = json.loads(text)
    except ValueError as error:
        raise ChartError(f"{path}: not a bench result (not JSON: {error})") from None
    list_series(out, path)          # checks the structure
    return out


def _not_a_result(source, why: str) -> ChartError:
    return ChartError(f"{source}: not a bench result ({why}; `python -m bench` writes one)")


def _checked_records(out, source) -> list[dict]:
    if not isinstance(out, dict) or not isinstance(out.get("list"), list):
        raise _not_a_result(source, 'no "list" records')
    for index, record in enumerate(out["list"]):
        if not isinstance(record, dict) or not isinstance(record.get("server"), str) \
                or not isinstance(record.get("clients"), int) \
                or not isinstance(record.get("ops_per_s"), (int, float, type(None))):
            raise _not_a_result(source, f"LIST record {index} lacks server, clients or "
                                        "ops_per_s")
    points = [r for r in out["list"] if isinstance(r["ops_per_s"], (int, float))]
    if not points:
        raise ChartError(f"{source}: no LIST point with ops/s to draw")
    return points


def _interpreters(out: dict) -> dict[str, dict]:
    """What each of our servers said it ran on (its /stats), by label."""
    return {s["server"]: s["interpreter"] for s in out.get("servers") or []
            if isinstance(s, dict) and isinstance(s.get("interpreter"), dict)
            and "server" in s}


def _variants(out: dict) -> dict[str, dict]:
    meta = out.get("meta") if isinstance(out.get("meta"), dict) else {}
    if "variants" in meta:
        return {v["name"]: v for v in meta["variants"] if isinstance(v, dict) and "name" in v}
    # older files: thread and process on the lab's interpreter
    return {mode: {"name": mode, "mode": mode, "gil_enabled": None}
            for mode in meta.get("modes") or []}


def _model(record: dict, variants: dict, interpreters: dict) -> str | None:
    """The scenario report's model label of one of our servers; None for a reference."""
    name = record.get("variant") or record["server"].split("(")[0]
    variant = variants.get(name)
    if variant is None:
        return None
    said = interpreters.get(record["server"])
    if said is not None:
        free, gil = said.get("free_threaded"), said.get("gil_enabled")
    else:           # no /stats: what the plan asked (gil_enabled is set for ft only)
        free = variant.get("gil_enabled") is not None
        gil = variant.get("gil_enabled") is not False
    return model_label({"mode": variant.get("mode", name),
                        "free_threaded": "yes" if free else "no",
                        "gil_enabled": "yes" if gil else "no"})


def _legend(label: str, model: str | None, said: dict | None) -> str:
    if model is None:
        return f"{label} (reference)"
    if said and said.get("version"):
        gil = "" if not said.get("free_threaded") else \
            (", GIL on" if said.get("gil_enabled") else ", GIL off")
        return f"{label}: Python {said['version']}{gil}"
    return f"{label}: {model}"


def list_series(out, source="bench result") -> list[Series]:
    """One series per LIST server, in the order the file first names them; ChartError
    (naming ``source``) when ``out`` is not a bench result with LIST points."""
    points = _checked_records(out, source)
    variants, interpreters = _variants(out), _interpreters(out)
    series: dict[str, Series] = {}
    references = 0
    for record in points:
        label = record["server"]
        if label not in series:
            model = _model(record, variants, interpreters)
            if model is not None:
                style = (MODE_COLOURS.get(model, OTHER_MODEL_COLOUR), "-", "o")
            else:
                stands_for = REFERENCE_MODELS.get(label.split("(")[0])
                style = (MODE_COLOURS[stands_for] if stands_for
                         else REFERENCE_GREYS[references % len(REFERENCE_GREYS)], "--",
                         REFERENCE_MARKERS[references % len(REFERENCE_MARKERS)])
                references += 1
            series[label] = Series(label, model, _legend(label, model,
                                                         interpreters.get(label)), *style)
        line = series[label]
        rounds = [v for v in record.get("rounds_ops_per_s") or []
                  if isinstance(v, (int, float))] or [record["ops_per_s"]]
        line.clients.append(record["clients"])
        line.ops_per_s.append(record["ops_per_s"])
        line.ops_low.append(min(min(rounds), record["ops_per_s"]))
        line.ops_high.append(max(max(rounds), record["ops_per_s"]))
        cpu = record.get("server_cpu_us_per_op")
        line.cpu_us_per_op.append(cpu if isinstance(cpu, (int, float)) else None)
        line.disturbed.append(bool(record.get("disturbed")))
    for line in series.values():        # by clients, whatever order the file has
        order = sorted(range(len(line.clients)), key=line.clients.__getitem__)
        for name in ("clients", "ops_per_s", "ops_low", "ops_high", "cpu_us_per_op",
                     "disturbed"):
            setattr(line, name, [getattr(line, name)[i] for i in order])
    return list(series.values())


def _title(out: dict) -> str:
    meta = out.get("meta") if isinstance(out.get("meta"), dict) else {}
    rounds, seconds = meta.get("list_rounds", 1), meta.get("list_seconds")
    parts = [f"LIST, one connection per request, pool {meta.get('list_pool', '?')}",
             ("quick" if meta.get("quick") else "full") + " run",
             f"{rounds} round{'s' if rounds != 1 else ''} of "
             f"{format(seconds, 'g') if isinstance(seconds, (int, float)) else '?'} s per point",
             f"{meta.get('cpus', '?')} CPUs shared with the clients",
             f"commit {str(meta.get('commit') or '?')[:10]}",
             str(meta.get("started_at", ""))[:10]]
    return ", ".join(part for part in parts if part)


def _pyplot_or_unavailable():
    try:
        return pyplot()
    except ImportError:
        raise ChartUnavailable("matplotlib is not installed (pip install -e '.[lab]')") \
            from None


def list_figure(out, source="bench result"):
    """The figure (two panels, a legend below) and its series; the caller saves or
    closes it."""
    series = list_series(out, source)
    plt = _pyplot_or_unavailable()
    figure, (ops_axes, cpu_axes) = plt.subplots(1, 2, figsize=CHART_SIZE_INCHES, dpi=CHART_DPI,
                                                layout="constrained")
    figure.suptitle(_title(out), fontsize=10)
    levels = sorted({c for line in series for c in line.clients})
    any_disturbed = False
    for index, line in enumerate(series):
        shift = (index - (len(series) - 1) / 2) * DODGE
        x = [levels.index(c) + shift for c in line.clients]
        bars = error_bars([{"ops": v, "ops_min": lo, "ops_max": hi} for v, lo, hi in
                            zip(line.ops_per_s, line.ops_low, line.ops_high)], "ops")
        ops_axes.errorbar(x, line.ops_per_s, yerr=bars, capsize=3, marker=line.marker,
                          linestyle=line.linestyle, color=line.colour, label=line.legend)
        cpu = [(xi, v) for xi, v in zip(x, line.cpu_us_per_op) if v is not None]
        cpu_axes.plot([xi for xi, _ in cpu], [v for _, v in cpu], marker=line.marker,
                      linestyle=line.linestyle, color=line.colour, label=line.legend)
        for xi, value, disturbed in zip(x, line.ops_per_s, line.disturbed):
            if disturbed:
                any_disturbed = True
                ops_axes.annotate("*", (xi, value), color=line.colour, fontsize=12,
                                  textcoords="offset points", xytext=(4, 2))
    ops_axes.set_title("LIST ops/s (median round; bars: lowest to highest round)", fontsize=10)
    ops_axes.set_ylabel("LIST ops/s")
    cpu_axes.set_title("server CPU per LIST (median round)", fontsize=10)
    cpu_axes.set_ylabel("server CPU µs per LIST")
    for axes in (ops_axes, cpu_axes):
        axes.set_xticks(range(len(levels)), [str(c) for c in levels])
        axes.set_xlabel("concurrent clients")
        axes.set_ylim(bottom=0)
        axes.grid(True, axis="y", alpha=0.3)
    handles, labels = ops_axes.get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=8,
                  title="* a point disturbed by other work on the machine"
                  if any_disturbed else None, title_fontsize=8)
    return figure, series


def write_list_chart(out, path, source="bench result") -> Path:
    """Draw ``out``'s LIST chart into ``path`` (a PNG)."""
    path = Path(path)
    figure, _series = list_figure(out, source)
    plt = pyplot()
    try:
        figure.savefig(path, dpi=CHART_DPI)
    except OSError as error:
        raise ChartError(f"{path}: cannot write the chart ({error.strerror or error})") \
            from None
    finally:
        plt.close(figure)
    return path


def draw_after_run(out: dict, json_path) -> Path | None:
    """The run's chart next to its JSON; when it cannot be drawn (no matplotlib), one
    line says why and the run goes on."""
    try:
        path = write_list_chart(out, chart_path(json_path), source=json_path)
    except ChartUnavailable as error:
        print(f"no LIST chart: {error}; `python -m bench.report --chart {json_path}` draws "
              "it later", file=sys.stderr)
        return None
    except ChartError as error:
        print(f"no LIST chart: {error}", file=sys.stderr)
        return None
    print(f"wrote {path}")
    return path
