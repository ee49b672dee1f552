#!/usr/bin/env python3
"""Charts and tables from `switchyard bench` JSON results (written by scripts/bench.sh).

    scripts/bench_chart.py [--results bench/results] [--out bench/latency-vs-rate.svg]
        Draws latency (p50, p99, p999; log scale) against the offered rate, one panel per rate
        series (bench/results/<series>/<rate>.json), with the series' p99 target, and prints a
        Markdown table per series plus one for the idle-connection runs.

    scripts/bench_chart.py --verdict RESULT.json --p99-limit-ms 100
        Says whether one run passed (exit status 0) or why not (1): the pass rule of bench.sh.

Standard library only, so it runs wherever python3 does.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parent.parent

# Known series: display order, title and p99 target (ms). Others get the fan-out target.
SERIES = {
    "fanout-v4": ("Fan-out, embedded mode, Engine.IO v4", 100.0),
    "fanout-v3": ("Fan-out, embedded mode, Engine.IO v3", 100.0),
    "cluster-v4": ("Fan-out, cluster mode (3 NATS, 2 edges), Engine.IO v4", 100.0),
    "cluster-v4-1edge": ("Fan-out, cluster mode (3 NATS, 1 edge), Engine.IO v4", 100.0),
    "chat": ("Chat, embedded mode", 50.0),
}
DEFAULT_P99_MS = 100.0
RATE_FILE = re.compile(r"^(\d+(?:\.\d+)?)\.json$")

# ---------------------------------------------------------------------------------------------
# Pass rule


def verdict(r: dict, p99_limit_ms: float) -> tuple[bool, str]:
    """A run passes when every connection came up, the generator offered the whole rate, every
    send was accepted, every expected delivery was made, nothing errored, and p99 < the limit."""
    p, c, s, d, lat, e = (r[k] for k in ("params", "connect", "sends", "deliveries", "latency", "errors"))
    why = []
    if c["failed"]:
        kinds = ", ".join(f"{k}: {n}" for k, n in e.get("connect", {}).items())
        why.append(f"{c['failed']} of {c['attempted']} connections failed ({kinds})")
    offered = p["rate"] * p["duration_s"]
    if s["sent"] < 0.99 * offered:
        # A sender the server disconnected (slow consumer) stops sending; so does a generator
        # that cannot keep up. Either way the rate was not offered in full.
        why.append(f"only {s['sent']} of {offered:.0f} scheduled sends went out")
    if s["accepted"] < s["sent"]:
        why.append(f"{s['sent'] - s['accepted']} of {s['sent']} sends not accepted")
    if d["expected"] == 0 or d["delivered"] < d["expected"]:
        why.append(f"delivered {d['delivered']} of {d['expected']} ({share_text(d)})")
    if e.get("disconnects"):
        why.append(f"{e['disconnects']} disconnects")
    if e.get("protocol"):
        why.append(f"{e['protocol']} protocol errors")
    if lat["p99_ms"] >= p99_limit_ms:
        why.append(f"p99 {lat['p99_ms']:.1f} ms >= {p99_limit_ms:g} ms")
    if why:
        return False, "FAIL: " + "; ".join(why)
    return True, f"pass (p99 {lat['p99_ms']:.1f} ms, {share_text(d)} delivered)"


def share_text(d: dict) -> str:
    if not d["expected"]:
        return "n/a"
    share = d["delivered"] / d["expected"]
    # 99.9996 % must not print as 100 %: only a complete delivery says 100 %.
    if d["delivered"] == d["expected"]:
        return "100 %"
    return f"{math.floor(share * 1e5) / 1e3:.3f} %"


# ---------------------------------------------------------------------------------------------
# Reading


def load_series(results: Path) -> list[dict]:
    """Every results/<series>/ holding <rate>.json files, known series first."""
    found = []
    for sdir in sorted(p for p in results.iterdir() if p.is_dir()):
        runs = []
        for f in sdir.iterdir():
            m = RATE_FILE.match(f.name)
            if m:
                run = json.loads(f.read_text())
                run["_cpu"] = read_cpu(f.with_suffix(".cpu"))
                runs.append((float(m.group(1)), run))
        if not runs:
            continue
        runs.sort(key=lambda x: x[0])
        title, limit = SERIES.get(sdir.name, (sdir.name, DEFAULT_P99_MS))
        first = runs[0][1]["params"]
        if first["api"] == "chat":
            detail = f"{first['rooms']} rooms × {first['room_size']}, {first['clients']} connections"
            unit = "messages/s"
        else:
            detail = f"{first['clients']} clients, {first['senders']} senders"
            unit = "clicks/s"
        found.append({
            "best": max((rate for rate, run in runs if verdict(run, limit)[0]), default=None),
            "name": sdir.name,
            "title": title,
            "detail": detail,
            "unit": unit,
            "limit": limit,
            "runs": runs,
            "meta": read_meta(sdir / "meta.txt"),
        })
    order = list(SERIES)
    found.sort(key=lambda s: (order.index(s["name"]) if s["name"] in order else len(order), s["name"]))
    return found


def read_meta(path: Path) -> dict:
    """The `key: value` header lines of a meta.txt (machine, binary, commit, nats)."""
    meta = {}
    if path.exists():
        for line in path.read_text().splitlines():
            m = re.match(r"^(machine|binary|commit|nats):\s+(.*)$", line)
            if m:
                meta.setdefault(m.group(1), m.group(2))
    return meta


def read_cpu(path: Path) -> dict | None:
    """A run's CPU shares from bench.sh's <name>.cpu (1.0 = one whole CPU over the run):
    {"servers": Σ of the processes it started, "bench": the load generator, "other": the rest}."""
    if not path.exists():
        return None
    out = {"servers": 0.0, "bench": None, "other": None}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 4 or line.startswith("#") or parts[0] == "process":
            continue
        try:
            share = float(parts[3])
        except ValueError:
            continue
        if parts[0] in ("bench", "other"):
            out[parts[0]] = share
        else:
            out["servers"] += share
    return out


def cpu_text(cpu: dict | None) -> str:
    if not cpu:
        return "?"
    def f(v):
        # `other` can come out a little below 0: tick rounding between /proc/stat and GNU time.
        return "?" if v is None else f"{v if v > 0 else 0.0:.2f}"

    return f"{cpu['servers']:.2f} / {f(cpu['bench'])} / {f(cpu['other'])}"


def load_idle(results: Path) -> list[tuple[str, dict]]:
    """Idle-connection runs (params.idle), in any series directory."""
    out = []
    for f in sorted(results.glob("*/*.json")):
        try:
            r = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if r.get("params", {}).get("idle"):
            r["_cpu"] = read_cpu(f.with_suffix(".cpu"))
            # A series' runs that share one cluster are named after it (connections-cluster/edge1).
            name = f.stem if f.parent.name == "connections" else f"{f.parent.name}/{f.stem}"
            out.append((name, r))

    def key(item):
        name, r = item
        return (r["params"]["api"] != "frust", r["params"]["clients"], name)

    return sorted(out, key=key)


# ---------------------------------------------------------------------------------------------
# Tables


def num(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def ms(v: float) -> str:
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def series_table(s: dict) -> str:
    unit = s["unit"]
    lines = [
        f"#### {s['title']} ({s['detail']}; p99 target {s['limit']:g} ms)",
        "",
        f"| rate ({unit}) | sent/s | deliveries/s | delivered | p50 ms | p99 ms | p999 ms | max ms "
        "| CPUs: servers / bench / other | result |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for rate, r in s["runs"]:
        ok, why = verdict(r, s["limit"])
        lat, d = r["latency"], r["deliveries"]
        sent_s = r["sends"]["sent"] / r["params"]["duration_s"] if r["params"]["duration_s"] else 0.0
        lines.append(
            f"| {rate:g} | {num(sent_s)} | {num(d['per_s'])} | {share_text(d)} | {ms(lat['p50_ms'])} | "
            f"{ms(lat['p99_ms'])} | {ms(lat['p999_ms'])} | {ms(lat['max_ms'])} | {cpu_text(r.get('_cpu'))} | "
            f"{'pass' if ok else why.removeprefix('FAIL: ')} |"
        )
    lines.append("")
    lines.append(
        "CPUs: average CPUs busy over the whole run (connect, send, settle) for the server processes, the "
        "load generator, and everything else on the machine (1.00 = one whole CPU); a high `other` means "
        "the run was disturbed."
    )
    lines.append("")
    best = s["best"]
    if best is None:
        lines.append("Max passing rate: none of the rates tried passed.")
    else:
        run = dict(s["runs"])[best]
        lines.append(
            f"Max passing rate: **{best:g} {unit}** "
            f"({num(run['deliveries']['per_s'])} deliveries/s, p99 {ms(run['latency']['p99_ms'])} ms)."
        )
    return "\n".join(lines)


def mib(b) -> str:
    return "?" if b is None else f"{b / 1048576:.1f} MiB"


def idle_table(runs: list[tuple[str, dict]]) -> str:
    lines = [
        "#### Idle connections (`connections`: a fresh embedded server per row; "
        "`connections-cluster`: one edge of a cluster per row, all connecting at once)",
        "",
        "| run | API | connections | connected | all connected in | connect p50 | connect p99 | connect max "
        "| server RSS before | server RSS connected | bytes/connection | CPUs: server / bench / other | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, r in runs:
        p, c, m, e = r["params"], r["connect"], r["memory"], r["errors"]
        api = "chat" if p["api"] == "chat" else f"Socket.IO (Engine.IO {p['protocol']})"
        per = m.get("server_bytes_per_connection")
        errs = "none" if not e["total"] else ", ".join(
            [f"{k}: {n}" for k, n in e.get("connect", {}).items()]
            + ([f"disconnects: {e['disconnects']}"] if e.get("disconnects") else [])
            + ([f"protocol: {e['protocol']}"] if e.get("protocol") else []))
        lines.append(
            f"| {name} | {api} | {c['attempted']:,} | {c['connected']:,} | {c['total_ms'] / 1000:.2f} s | "
            f"{ms(c['p50_ms'])} ms | {ms(c['p99_ms'])} ms | {ms(c['max_ms'])} ms | {mib(m.get('server_rss_before'))} | "
            f"{mib(m.get('server_rss_connected'))} | {'?' if per is None else f'{per:,.0f} B'} | "
            f"{cpu_text(r.get('_cpu'))} | {errs} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# SVG

PANEL_W, PANEL_H = 560, 360
PLOT = {"left": 70, "right": 20, "top": 72, "bottom": 56}
COLUMNS = 2
HEADER_H = 70
LINES = [("p50_ms", "p50", "#1f77b4"), ("p99_ms", "p99", "#ff7f0e"), ("p999_ms", "p99.9", "#9467bd")]
TARGET_COLOR = "#d62728"
PASS_COLOR = "#2ca02c"


def nice_step(span: float, max_ticks: int = 8) -> float:
    raw = span / max_ticks
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def fmt_tick(v: float) -> str:
    if v >= 1:
        return f"{v:,.0f}" if v == int(v) else f"{v:g}"
    return f"{v:g}"


def panel(s: dict, x0: float, y0: float) -> list[str]:
    out = []
    pl, pt = x0 + PLOT["left"], y0 + PLOT["top"]
    pw = PANEL_W - PLOT["left"] - PLOT["right"]
    ph = PANEL_H - PLOT["top"] - PLOT["bottom"]
    runs = s["runs"]
    rates = [r for r, _ in runs]
    values = [run["latency"][k] for _, run in runs for k, _, _ in LINES if run["latency"][k] > 0]
    lo = 10 ** math.floor(math.log10(min(values))) if values else 0.1
    hi = 10 ** math.ceil(math.log10(max(values + [s["limit"] * 1.5])))
    xmax_raw = max(rates) * 1.05
    step = nice_step(xmax_raw)
    xmax = math.ceil(xmax_raw / step) * step

    def X(v):
        return pl + pw * v / xmax

    def Y(v):
        v = max(v, lo)
        return pt + ph * (1 - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)))

    best = s.get("best")
    out.append(f'<text x="{x0 + PANEL_W / 2}" y="{y0 + 20}" class="title">{escape(s["title"])}</text>')
    sub = s["detail"] + (f"; max passing rate {best:g} {s['unit']}" if best is not None else "; no rate passed")
    out.append(f'<text x="{x0 + PANEL_W / 2}" y="{y0 + 38}" class="sub">{escape(sub)}</text>')
    out.append(f'<rect x="{pl}" y="{pt}" width="{pw}" height="{ph}" class="frame"/>')
    # y grid: decades labelled, 2× and 5× as faint lines.
    d = math.floor(math.log10(lo))
    while 10 ** d <= hi * 1.0001:
        for m in (1, 2, 5):
            v = m * 10 ** d
            if lo <= v <= hi * 1.0001:
                y = Y(v)
                out.append(f'<line x1="{pl}" y1="{y:.1f}" x2="{pl + pw}" y2="{y:.1f}" class="{"grid" if m == 1 else "grid2"}"/>')
                if m == 1 or (math.log10(hi) - math.log10(lo)) <= 3:
                    out.append(f'<text x="{pl - 6}" y="{y + 4:.1f}" class="ytick">{fmt_tick(v)}</text>')
        d += 1
    # x grid
    v = 0.0
    while v <= xmax + 1e-9:
        x = X(v)
        out.append(f'<line x1="{x:.1f}" y1="{pt}" x2="{x:.1f}" y2="{pt + ph}" class="grid2"/>')
        out.append(f'<text x="{x:.1f}" y="{pt + ph + 16}" class="xtick">{fmt_tick(v)}</text>')
        v += step
    out.append(f'<text x="{pl + pw / 2}" y="{pt + ph + 38}" class="axis">offered rate ({escape(s["unit"])})</text>')
    out.append(f'<text x="{x0 + 16}" y="{pt + ph / 2}" class="axis" '
               f'transform="rotate(-90 {x0 + 16} {pt + ph / 2})">latency (ms, log scale)</text>')
    # Target and best rate.
    yt = Y(s["limit"])
    out.append(f'<line x1="{pl}" y1="{yt:.1f}" x2="{pl + pw}" y2="{yt:.1f}" class="target"/>')
    out.append(f'<text x="{pl + pw - 6}" y="{yt - 5:.1f}" class="targetlabel">p99 target {s["limit"]:g} ms</text>')
    if best is not None:
        xb = X(best)
        out.append(f'<line x1="{xb:.1f}" y1="{pt}" x2="{xb:.1f}" y2="{pt + ph}" class="best"/>')
        out.append(f'<text x="{xb + 4:.1f}" y="{pt + ph - 6}" class="bestlabel">max pass</text>')
    # Lines; hollow markers where the rate failed.
    passed = {rate: verdict(run, s["limit"])[0] for rate, run in runs}
    for key, _, color in LINES:
        pts = [(X(rate), Y(run["latency"][key])) for rate, run in runs]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for (x, y), (rate, _) in zip(pts, runs):
            fill = color if passed[rate] else "#ffffff"
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{fill}" stroke="{color}" stroke-width="1.5"/>')
    # Legend: one row between the subtitle and the plot, clear of the data.
    lx, ly = pl, y0 + 58
    for _, label, color in LINES:
        out.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 22}" y2="{ly - 4}" stroke="{color}" stroke-width="2"/>')
        out.append(f'<circle cx="{lx + 11}" cy="{ly - 4}" r="3.5" fill="{color}"/>')
        out.append(f'<text x="{lx + 28}" y="{ly}" class="legendtext">{label}</text>')
        lx += 80
    out.append(f'<circle cx="{lx + 11}" cy="{ly - 4}" r="3.5" fill="#ffffff" stroke="#555" stroke-width="1.5"/>')
    out.append(f'<text x="{lx + 20}" y="{ly}" class="legendtext">hollow marker: rate failed</text>')
    return out


def svg(series: list[dict]) -> str:
    rows = math.ceil(len(series) / COLUMNS)
    width = PANEL_W * min(COLUMNS, max(1, len(series)))
    height = HEADER_H + PANEL_H * rows
    meta = next((s["meta"] for s in series if s["meta"]), {})
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
        "<style>"
        ".title{font-size:15px;font-weight:bold;text-anchor:middle}"
        ".sub{font-size:12px;fill:#444;text-anchor:middle}"
        ".head{font-size:18px;font-weight:bold}.headsub{font-size:11px;fill:#444}"
        ".frame{fill:none;stroke:#333;stroke-width:1}"
        ".grid{stroke:#ccc;stroke-width:1}.grid2{stroke:#eee;stroke-width:1}"
        ".xtick{font-size:11px;text-anchor:middle}.ytick{font-size:11px;text-anchor:end}"
        ".axis{font-size:12px;text-anchor:middle}"
        f".target{{stroke:{TARGET_COLOR};stroke-width:1.5;stroke-dasharray:6 4}}"
        f".targetlabel{{font-size:11px;fill:{TARGET_COLOR};text-anchor:end}}"
        f".best{{stroke:{PASS_COLOR};stroke-width:1.5;stroke-dasharray:2 3}}"
        f".bestlabel{{font-size:11px;fill:{PASS_COLOR}}}"
        ".legendtext{font-size:11px}"
        "</style>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        '<text x="16" y="26" class="head">switchyard: end-to-end delivery latency vs offered rate</text>',
    ]
    headsub = [
        "send → receipt on every receiving client, wall clock; load generator on the same machine; "
        "filled markers: every delivery made and p99 under target",
    ]
    if meta:
        headsub.append("; ".join(f"{k} {meta[k]}" for k in ("machine", "commit") if k in meta))
    for i, line in enumerate(headsub):
        out.append(f'<text x="16" y="{46 + 14 * i}" class="headsub">{escape(line)}</text>')
    for i, s in enumerate(series):
        out.extend(panel(s, PANEL_W * (i % COLUMNS), HEADER_H + PANEL_H * (i // COLUMNS)))
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "latency-vs-rate.svg")
    ap.add_argument("--verdict", type=Path, metavar="RESULT.json", help="judge one run and exit")
    ap.add_argument("--p99-limit-ms", type=float, default=DEFAULT_P99_MS)
    args = ap.parse_args()

    if args.verdict:
        try:
            ok, why = verdict(json.loads(args.verdict.read_text()), args.p99_limit_ms)
        except (OSError, ValueError, KeyError) as e:
            print(f"FAIL: no usable result ({e})")
            return 1
        print(why)
        return 0 if ok else 1

    if not args.results.is_dir():
        print(f"no results directory {args.results}", file=sys.stderr)
        return 1
    series = load_series(args.results)
    for s in series:
        print(series_table(s))
        print()
    idle = load_idle(args.results)
    if idle:
        print(idle_table(idle))
        print()
    if not series:
        print(f"no rate series under {args.results}: no chart", file=sys.stderr)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(svg(series))
    print(f"chart: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
