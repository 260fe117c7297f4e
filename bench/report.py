"""The readable table and the targets."""

from __future__ import annotations

__all__ = ["evaluate_targets", "render"]

BASELINE = "asyncio-protocol"
LIST_RATIO_TARGET = 0.75
TRANSFER_RATIO_TARGET = 0.50
MEMORY_TARGET_BYTES = 64 * 2 ** 20
MIB = 2 ** 20


def _list_point(out: dict, server: str, clients: int):
    for record in out["list"]:
        if record["server"] == server and record["clients"] == clients:
            return record
    return None


def _transfer_point(out: dict, mode: str, op: str, size_label: str, clients: int):
    for record in out["transfers"]:
        if (record["mode"], record["op"], record["size_label"], record["clients"]) == \
                (mode, op, size_label, clients):
            return record
    return None


def _list_label(out: dict, mode: str) -> str:
    return f"{mode}({out['meta']['list_pool']})"


def evaluate_targets(out: dict) -> list[dict]:
    targets = []
    decode = out["bounds"]["base64"]["decode_mb_per_s"]
    top = max(out["meta"].get("list_clients_max", 50), 1)
    for mode in out["meta"]["modes"]:
        base = _list_point(out, BASELINE, top)
        point = _list_point(out, _list_label(out, mode), top)
        if base and point and base["ops_per_s"]:
            ratio = point["ops_per_s"] / base["ops_per_s"]
            targets.append({
                "name": f"LIST@{top} {mode} >= {LIST_RATIO_TARGET:.0%} of asyncio",
                "value": round(ratio, 3), "target": LIST_RATIO_TARGET,
                "detail": f"{point['ops_per_s']:.0f} vs {base['ops_per_s']:.0f} ops/s",
                "pass": ratio >= LIST_RATIO_TARGET})
    for mode in out["meta"]["modes"]:
        for op in ("GET", "UPLOAD"):
            point = _transfer_point(out, mode, op, "100MB", 1)
            if point and point["mb_per_s"]:
                run_ratio = point["mb_per_s"] / decode
                paired = (point.get("paired") or {}).get("ratio_median")
                ratio = paired if paired is not None else run_ratio
                targets.append({
                    "name": f"{op} 100MB@1 {mode} >= {TRANSFER_RATIO_TARGET:.0%} of base64 "
                            f"decode",
                    "value": round(ratio, 3), "target": TRANSFER_RATIO_TARGET,
                    "detail": f"paired median ratio {_fmt(paired, '.2f')}; the point's "
                              f"{point['mb_per_s']:.1f} MB/s vs run median {decode:.1f} MB/s: "
                              f"{run_ratio:.2f}",
                    "pass": ratio >= TRANSFER_RATIO_TARGET and point["errors"] == 0})
    for record in out["memory"]:
        increase = record["rss_increase_bytes"]
        targets.append({
            "name": f"RSS increase, 5 GET + 5 UPLOAD of 100MB, {record['mode']} < 64 MiB",
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
    decode = b64["decode_mb_per_s"]
    parts = [
        f"fileserver bench ({'quick' if meta['quick'] else 'full'} run, {meta['seconds']} s, "
        f"{meta['cpus']} CPUs, Python {meta['python']}, commit {str(meta['commit'])[:10]})",
        f"clients: {meta['client']}; servers log at INFO to a file",
        "",
        "Physical bounds (one core / one pair), median and best of the repetitions at the "
        "start and at the end of the run; the median is the reference",
        _table(["bound", "MB/s", "best"], [
            ["base64 encode (binascii, 64 MiB)", _fmt(b64["encode_mb_per_s"], ".1f"),
             _fmt(b64["encode_best_mb_per_s"], ".1f")],
            ["base64 decode (binascii, 64 MiB)", _fmt(decode, ".1f"),
             _fmt(b64["decode_best_mb_per_s"], ".1f")],
            ["base64 decode strict_mode (as the server)", _fmt(b64["decode_strict_mb_per_s"],
                                                               ".1f"),
             _fmt(b64["decode_strict_best_mb_per_s"], ".1f")],
            ["loopback TCP, 1 sender -> 1 receiver, 1 GB", _fmt(tcp["mb_per_s"], ".1f"),
             _fmt(tcp["best_mb_per_s"], ".1f")],
        ]),
        "  decode repetitions: " + "; ".join(
            f"{when} {run['base64']['decode']}"
            for when, run in out["bounds"].get("runs", {}).items()),
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
    parts += ["", f"GET / UPLOAD, MB/s of file bytes (pool {meta['transfer_pool']}; "
                  f"ratio vs base64 decode {decode:.1f} MB/s)"]
    rows = []
    for r in out["transfers"]:
        rows.append([r["server"], r["op"], r["size_label"], str(r["clients"]), str(r["ops"]),
                     _fmt(r["mb_per_s"], ".1f"), _fmt(_s(r["p50_ms"]), ".3f"),
                     _fmt(_s(r["p99_ms"]), ".3f"), str(r["errors"]),
                     _fmt(r["server_cpu_pct"], ".0f"), _fmt(r["client_cpu_pct"], ".0f"),
                     _fmt(r.get("other_cpu_pct"), ".0f") + _mark(r),
                     _fmt(r["rss_increase_bytes"] / MIB, "+.1f"),
                     _fmt(r["mb_per_s"] / decode if r["mb_per_s"] else None, ".2f"),
                     _fmt((r.get("paired") or {}).get("ratio_median"), ".2f")])
    parts.append(_table(["server", "op", "size", "clients", "n", "MB/s", "p50 s", "p99 s",
                         "err", "srv CPU%", "cli CPU%", "other%", "RSS+ MiB", "vs decode",
                         "paired"], rows))
    parts.append("  vs decode: MB/s over the run's median decode speed; paired: median over "
                 "rounds of one transfer between two decode measurements")
    for r in out["transfers"]:
        if r.get("paired"):
            parts.append(f"  paired {r['server']} {r['op']} {r['size_label']}: " + ", ".join(
                f"{row['transfer_mb_per_s']:.0f}/"
                f"{(row['decode_before'] + row['decode_after']) / 2:.0f}"
                for row in r["paired"]["rounds"]) + " (transfer/decode MB/s)")
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


def _mark(record: dict) -> str:
    return "*" if record.get("disturbed") else ""


def _s(ms):
    return None if ms is None else ms / 1000.0
