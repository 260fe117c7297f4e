"""The readable table and the targets; ``python -m bench.report --chart FILE.json``
draws a result's LIST chart again (``bench.chart``)."""

from __future__ import annotations

import argparse
import statistics
import sys

from .plan import FT, FT_GIL
from .targets import (FT_OVER_GIL_TARGET, FT_OVER_PROCESS_TARGET, LIST_RATIO_TARGETS,
                      MEMORY_TARGET_BYTES, TRANSFER_RATIO_TARGETS)

__all__ = ["evaluate_targets", "render", "main"]

BASELINE = "asyncio-protocol"
# each mode's bare course-style pool of the same size (bench/threadpool_list.py,
# bench/prefork_list.py): what that model costs with none of the server's own work
BARE_REFERENCES = {"thread": "threadpool", "process": "prefork"}
MIB = 2 ** 20


def _list_point(out: dict, server: str, clients: int):
    for record in out["list"]:
        if record["server"] == server and record["clients"] == clients:
            return record
    return None


def _variant(record: dict) -> str:
    return record.get("variant") or record["mode"]


def _transfer_point(out: dict, variant: str, op: str, size_label: str, clients: int):
    for record in out["transfers"]:
        if (_variant(record), record["op"], record["size_label"], record["clients"]) == \
                (variant, op, size_label, clients):
            return record
    return None


def _list_label(out: dict, variant: str) -> str:
    return f"{variant}({out['meta']['list_pool']})"


def _variant_names(out: dict) -> list[str]:
    """The servers of the run: thread, process, thread-ft, thread-ft-gil (older
    files: their modes)."""
    meta = out["meta"]
    return [v["name"] for v in meta["variants"]] if "variants" in meta else meta["modes"]


def _list_ratio(point, base, target: float):
    """``point`` over ``base`` (median rounds), and the spread of the ratios of
    their rounds: round i of every server ran in the same turn of the run."""
    if not (point and base and base["ops_per_s"] and point["ops_per_s"] is not None):
        return None
    ratio = point["ops_per_s"] / base["ops_per_s"]
    detail = f"{point['ops_per_s']:.0f} vs {base['ops_per_s']:.0f} ops/s"
    pairs = list(zip(point.get("rounds_ops_per_s") or [], base.get("rounds_ops_per_s") or []))
    if len(pairs) > 1 and all(over for _, over in pairs):
        detail += f"; rounds' ratios {_spread([one / over for one, over in pairs], '.2f')}"
    return {"value": round(ratio, 3), "target": target, "pass": ratio >= target,
            "detail": detail}


def _list_ratio_target(out: dict, name: str, over: str, target: float, top: int):
    return _list_ratio(_list_point(out, _list_label(out, name), top),
                       _list_point(out, _list_label(out, over), top), target)


def _free_threaded_targets(out: dict, top: int) -> list[dict]:
    """Issue 11's targets, and that each free-threaded server ran with the GIL its
    label says (its /stats; an extension module may turn the GIL back on)."""
    names = _variant_names(out)
    if FT not in names:
        return []
    targets = []
    for over, target, what in ((FT_GIL, FT_OVER_GIL_TARGET, "the same binary with "
                                                            "PYTHON_GIL=1"),
                               ("process", FT_OVER_PROCESS_TARGET,
                                "process mode on the default interpreter")):
        if over not in names:
            continue
        result = _list_ratio_target(out, FT, over, target, top)
        if result:
            targets.append({"name": f"LIST@{top} {FT} >= {target:g}x {what}", **result})
    checked = [s for s in out["servers"] if s.get("expected_gil_enabled") is not None]
    wrong = [f"{s['server']}: gil_enabled {(s.get('interpreter') or {}).get('gil_enabled')}"
             for s in checked
             if (s.get("interpreter") or {}).get("gil_enabled") is not s["expected_gil_enabled"]]
    if checked:
        targets.append({"name": f"{FT} servers ran without the GIL, {FT_GIL} with it "
                                "(their /stats)",
                        "value": len(wrong), "target": 0,
                        "detail": "; ".join(wrong) or f"{len(checked)} servers as labelled",
                        "pass": not wrong})
    return targets


def _file_write_detail(point: dict) -> str:
    """An UPLOAD's speed against the file write into its storage folder, measured
    around the same rounds: the bound no upload can pass."""
    if point.get("file_write_ratio") is None:
        return ""
    writes = [v for v in (point.get("file_write_before_mb_per_s"),
                          point.get("file_write_after_mb_per_s")) if v]
    return (f"; {point['file_write_ratio']:.2f} of the file write into the storage folder "
            f"({statistics.mean(writes):.0f} MB/s next to it; rounds "
            f"{_spread(point.get('rounds_file_write_ratio'), '.2f')})")


def _spread(values, spec: str) -> str:
    values = [v for v in values or [] if v is not None]
    return f"{min(values):{spec}}-{max(values):{spec}}" if len(values) > 1 else "-"


def evaluate_targets(out: dict) -> list[dict]:
    targets = []
    top = max(out["meta"].get("list_clients_max", 50), 1)
    names = _variant_names(out)
    for mode in names:
        base = _list_point(out, BASELINE, top)
        point = _list_point(out, _list_label(out, mode), top)
        target = LIST_RATIO_TARGETS.get(mode)
        result = _list_ratio(point, base, target) if target is not None else None
        if result:
            bare = _list_point(out, f"{BARE_REFERENCES.get(mode)}({out['meta']['list_pool']})",
                               top)
            if bare and bare["ops_per_s"]:
                result["detail"] += (f"; a bare {bare['server']} in the same run: "
                                     f"{bare['ops_per_s'] / base['ops_per_s']:.2f} of asyncio")
            targets.append({"name": f"LIST@{top} {mode} >= {target:.0%} of asyncio", **result})
    targets += _free_threaded_targets(out, top)
    for mode in names:
        for op, target in TRANSFER_RATIO_TARGETS.items():
            point = _transfer_point(out, mode, op, "100MB", 1)
            if point and point["mb_per_s"] and point.get("loopback_ratio") is not None:
                ratio = point["loopback_ratio"]
                targets.append({
                    "name": f"{op} 100MB@1 {mode} >= {target:.2f} of loopback TCP",
                    "value": ratio, "target": target,
                    "detail": f"median of {point.get('rounds', 1)} rounds: "
                              f"{point['mb_per_s']:.0f} MB/s; rounds' ratios "
                              f"{_spread(point.get('rounds_loopback_ratio'), '.3f')}"
                              + _file_write_detail(point),
                    "pass": ratio >= target and point["errors"] == 0})
    for mode in names:
        for op in TRANSFER_RATIO_TARGETS:
            one = _transfer_point(out, mode, op, "100MB", 1)
            five = _transfer_point(out, mode, op, "100MB", 5)
            if not (one and five and one["mb_per_s"] and five["mb_per_s"]):
                continue
            if five.get("vs_one_client") is not None:
                # measured in the same rounds: the median of the rounds' ratios
                value = five["vs_one_client"]
                detail = (f"median of the MB/s ratios of {len(five['rounds_vs_one_client'])} "
                          f"rounds, one client and five in turn: rounds "
                          f"{_spread(five['rounds_vs_one_client'], '.2f')}; the median "
                          f"rounds {five['mb_per_s']:.0f} vs {one['mb_per_s']:.0f} MB/s")
            else:
                # older files: measured at different moments, compared as ratios to
                # the loopback throughput of their own moment when both have one
                key = "loopback_ratio" if one.get("loopback_ratio") and five.get(
                    "loopback_ratio") else "mb_per_s"
                value = five[key] / one[key]
                detail = (f"{five['mb_per_s']:.0f} vs {one['mb_per_s']:.0f} MB/s; "
                          f"{_fmt(five.get('loopback_ratio'), '.3f')} vs "
                          f"{_fmt(one.get('loopback_ratio'), '.3f')} of loopback")
            targets.append({
                "name": f"{op} 100MB {mode}: 5 clients move at least as much as 1",
                "value": round(value, 3), "target": 1.0, "detail": detail,
                "pass": value >= 1.0 and five["errors"] == 0 and one["errors"] == 0})
    for record in out["memory"]:
        increase = record["rss_increase_bytes"]
        targets.append({
            "name": f"RSS increase, 5 GET + 5 UPLOAD of 100MB, {_variant(record)} < 64 MiB",
            "value": round(increase / MIB, 1), "target": 64,
            "detail": f"idle {record['idle_rss_bytes'] / MIB:.1f} MiB, "
                      f"peak {record['rss_peak_bytes'] / MIB:.1f} MiB",
            "pass": increase < MEMORY_TARGET_BYTES and record["errors"] == 0})
    errors = sum(r["errors"] for r in out["list"] + out["transfers"] + out["memory"])
    targets.append({"name": "no request failed", "value": errors, "target": 0,
                    "detail": "client-side errors over all points", "pass": errors == 0})
    bad_exits = [s["server"] for s in out["servers"] if s.get("exit_code") != 0]
    targets.append({"name": "every server stopped with status 0 on SIGTERM",
                    "value": len(bad_exits), "target": 0,
                    "detail": ", ".join(bad_exits) or "all 0", "pass": not bad_exits})
    return targets


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in
                       enumerate(zip(headers, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                               enumerate(zip(row, widths))))
    return "\n".join(lines)


def render(out: dict) -> str:
    meta, b64, tcp = out["meta"], out["bounds"]["base64"], out["bounds"]["loopback_tcp"]
    writes = out["bounds"].get("file_write")       # older files have none
    engine = b64.get("engine", "binascii")
    pieces = f"{b64['piece_bytes'] // 1024} KiB pieces" if b64.get("piece_bytes") else "one piece"
    nearby = [v for r in out["transfers"] for v in (r.get("loopback_before_mb_per_s"),
                                                     r.get("loopback_after_mb_per_s")) if v]
    parts = [
        f"fileserver bench ({'quick' if meta['quick'] else 'full'} run, {meta['seconds']} s, "
        f"{meta['cpus']} CPUs, Python {meta['python']}, commit {str(meta['commit'])[:10]})",
        f"clients: {meta['client']}; servers log at INFO to a file",
        *_free_threaded_line(meta),
        "",
        "Physical bounds (one core / one pair), median and best of the repetitions at the "
        "start and at the end of the run; the median is the reference",
        _table(["bound", "MB/s", "best"], [
            [f"base64 encode ({engine}, 64 MiB in {pieces})", _fmt(b64["encode_mb_per_s"],
                                                                     ".1f"),
             _fmt(b64["encode_best_mb_per_s"], ".1f")],
            [f"base64 strict decode ({engine}, as wire)", _fmt(b64["decode_strict_mb_per_s"],
                                                               ".1f"),
             _fmt(b64["decode_strict_best_mb_per_s"], ".1f")],
            ["base64 strict decode (binascii, for reference)",
             _fmt(b64["binascii_decode_strict_mb_per_s"], ".1f"),
             _fmt(b64["binascii_decode_strict_best_mb_per_s"], ".1f")],
            ["loopback TCP, 1 sender -> 1 receiver, 1 GiB", _fmt(tcp["mb_per_s"], ".1f"),
             _fmt(tcp["best_mb_per_s"], ".1f")],
            ["loopback TCP, 512 MiB, next to each transfer (median)",
             _fmt(statistics.median(nearby) if nearby else None, ".1f"),
             _fmt(max(nearby) if nearby else None, ".1f")],
            *([[f"file write, 100 MB into the storage folder ({writes.get('folder_fs')}), "
                f"{writes['piece_bytes'] // 1024} KiB writes, no fsync",
                _fmt(writes["mb_per_s"], ".1f"), _fmt(writes["best_mb_per_s"], ".1f")]]
              if writes else []),
        ]),
        "  strict decode repetitions: " + "; ".join(
            f"{when} {run['base64']['decode_strict']}"
            for when, run in out["bounds"].get("runs", {}).items())
        + (f"; loopback next to transfers {min(nearby):.0f}-{max(nearby):.0f} MB/s"
           if nearby else ""),
        "",
        "LIST, one connection per request, "
        + (f"median of {meta['list_rounds']} interleaved rounds of {meta['list_seconds']:g} s"
           if meta.get("list_rounds", 1) > 1 else f"{meta['list_seconds']:g} s")
        + f" per point (pool {meta['list_pool']}; "
        f"CPU% 100 = one core; machine has {meta['cpus']})",
    ]
    rows = []
    for record in out["list"]:
        base = _list_point(out, BASELINE, record["clients"])
        ratio = (record["ops_per_s"] / base["ops_per_s"]
                 if base and base["ops_per_s"] and record["ops_per_s"] is not None else None)
        spread = [v for v in record.get("rounds_ops_per_s", []) if v is not None]
        rows.append([record["server"], str(record["clients"]), _fmt(record["ops_per_s"], ".0f"),
                     f"{min(spread):.0f}-{max(spread):.0f}" if len(spread) > 1 else "-",
                     _fmt(record["p50_ms"], ".2f"), _fmt(record["p99_ms"], ".2f"),
                     str(record["errors"]), _fmt(record["server_cpu_pct"], ".0f"),
                     _fmt(record["client_cpu_pct"], ".0f"),
                     _fmt(record.get("other_cpu_pct"), ".0f") + _mark(record),
                     _fmt(record["server_cpu_us_per_op"], ".0f"),
                     _fmt(ratio, ".2f")])
    parts.append(_table(["server", "clients", "ops/s", "rounds", "p50 ms", "p99 ms", "err",
                         "srv CPU%",
                         "cli CPU%", "other%", "srv us/op", "vs asyncio"], rows))
    parts += ["", f"GET / UPLOAD, MB/s of file bytes (pool {meta['transfer_pool']}), and their "
                  f"ratio to loopback TCP measured right before and after each"]
    rows = []
    for r in out["transfers"]:
        rows.append([r["server"], r["op"], r["size_label"], str(r["clients"]), str(r["ops"]),
                     _fmt(r["mb_per_s"], ".1f"), _spread(r.get("rounds_mb_per_s"), ".0f"),
                     _fmt(r.get("loopback_ratio"), ".3f"),
                     _spread(r.get("rounds_loopback_ratio"), ".3f"),
                     _fmt(r.get("file_write_ratio"), ".2f"),
                     _fmt(_s(r["p50_ms"]), ".3f"), str(r["errors"]),
                     _fmt(r["server_cpu_pct"], ".0f"),
                     _fmt(_s(_ms(r.get("server_cpu_us_per_op"))), ".3f"),
                     _fmt(r["client_cpu_pct"], ".0f"),
                     _fmt(r.get("other_cpu_pct"), ".0f") + _mark(r),
                     _fmt(r["rss_increase_bytes"] / MIB, "+.1f")])
    parts.append(_table(["server", "op", "size", "clients", "n", "MB/s", "rounds",
                         "vs loopback", "rounds", "vs write", "p50 s", "err", "srv CPU%",
                         "srv CPU s/req", "cli CPU%", "other%", "RSS+ MiB"], rows))
    parts.append("  vs loopback: MB/s over the mean loopback TCP throughput right before and "
                 "after; a 100 MB point is the median of rounds with "
                 f"{meta.get('transfers_per_client', 1)} transfer(s) per "
                 "client, 1 and 5 clients in turn (rounds: their spread); vs write: an "
                 "UPLOAD's MB/s over the file write into the storage folder right before and "
                 "after it; srv CPU s/req: server CPU seconds per transfer")
    parts += ["", "Memory: peak RSS of all server processes (sampled every 50 ms) during "
                  "5 concurrent 100 MB GETs + 5 concurrent 100 MB UPLOADs, fresh server"]
    rows = [[r["server"], f"{r['idle_rss_bytes'] / MIB:.1f}", f"{r['rss_peak_bytes'] / MIB:.1f}",
             f"{r['rss_increase_bytes'] / MIB:+.1f}", _fmt(r["mb_per_s"], ".1f"),
             _fmt(_s(r["max_ms"]), ".2f"), str(r["errors"]),
             _fmt(r.get("other_cpu_pct"), ".0f") + _mark(r)] for r in out["memory"]]
    parts.append(_table(["server", "idle MiB", "peak MiB", "increase MiB", "MB/s total",
                         "slowest s", "err", "other%"], rows))
    parts += ["", "Servers (RSS when idle, log of the run, exit status)"]
    rows = []
    for s in out["servers"]:
        log = s.get("log", {})
        rows.append([s["server"], f"{s['idle_rss_bytes'] / MIB:.1f}", str(log.get("lines", "-")),
                     f"{log.get('bytes', 0) / 1e6:.1f}",
                     str(log.get("WARNING", 0) + log.get("ERROR", 0) + log.get("CRITICAL", 0)),
                     str(log.get("tracebacks", 0)), str(s.get("exit_code"))])
    parts.append(_table(["server", "idle MiB", "log lines", "log MB", "warn+err", "tracebacks",
                         "exit"], rows))
    notable = [(s["server"], line) for s in out["servers"]
               for line in s.get("log", {}).get("notable", [])]
    for server, line in notable[:10]:
        parts.append(f"  {server}: {line}")
    if any(r.get("disturbed") for r in out["list"] + out["transfers"] + out["memory"]):
        parts.append("")
        parts.append("* other work used > 25% of a core during this point even after a retry: "
                     "its figures are suspect")
    parts += ["", "Targets"]
    for t in out["targets"]:
        parts.append(f"  [{'PASS' if t['pass'] else 'FAIL'}] {t['name']}: {t['value']} "
                     f"({t['detail']})")
    return "\n".join(parts)


def _free_threaded_line(meta: dict) -> list[str]:
    ft = meta.get("free_threaded")
    if not ft:
        return []
    if ft.get("skipped"):
        return [ft["skipped"]]
    return [f"free-threaded: {FT} (GIL off) and {FT_GIL} (PYTHON_GIL=1, LIST only) on "
            f"{ft['python']}, Python {ft['version']}"]


def _mark(record: dict) -> str:
    return "*" if record.get("disturbed") else ""


def _s(ms):
    return None if ms is None else ms / 1000.0


def _ms(us):
    return None if us is None else us / 1000.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        description="Draw the LIST chart of a bench result again (python -m bench draws it "
                    "after each run).")
    parser.add_argument("--chart", metavar="JSON", required=True,
                        help="a result of python -m bench (bench/results/bench-*.json)")
    parser.add_argument("--out", metavar="PNG",
                        help="where to write it (default: next to the JSON, <name>-list.png)")
    args = parser.parse_args(argv)
    if args.out is not None and not args.out.lower().endswith(".png"):
        parser.error(f"--out {args.out}: the chart is a PNG file (name it *.png)")
    from .chart import ChartError, ChartUnavailable, chart_path, load_result, write_list_chart
    try:
        path = write_list_chart(load_result(args.chart), args.out or chart_path(args.chart),
                                source=args.chart)
    except (ChartError, ChartUnavailable) as error:
        print(f"python -m bench.report: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
