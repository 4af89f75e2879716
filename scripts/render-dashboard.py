#!/usr/bin/env python3
"""Render deploy/grafana/webhookd.json from real data, without Grafana.

Starts a throwaway cluster, webhookd (with /metrics) and three receivers
(`webhookd listen`: one healthy, one failing a fifth of its requests, one
down half of the time), produces events for a while, scrapes /metrics
every 2 s, then evaluates each panel's own queries over the scrapes and
draws the panels where the dashboard puts them (docs/dashboard.png).

The queries are evaluated by a small PromQL subset made for exactly the
shapes the dashboard uses (rate over a window, sum/max/min by labels, a
ratio of two aggregations, histogram_quantile): a query outside it is an
error, not a blank panel.

    .venv/bin/python scripts/render-dashboard.py [--seconds 90] [--out docs/dashboard.png]

Needs `make install` and matplotlib (`make bench-setup`).
"""

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "webhookd.json"
WEBHOOKD = ROOT / "target" / "release" / "webhookd"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WINDOW = 30.0  # seconds: $__rate_interval
STEP = 2.0


# ---------------------------------------------------------------- queries

def parse_labels(s):
    out = {}
    for m in re.finditer(r'(\w+)\s*(=|!=)\s*"([^"]*)"', s or ""):
        out[m.group(1)] = (m.group(2), m.group(3))
    return out


def matches(labels, selector):
    for k, (op, v) in selector.items():
        if (labels.get(k) == v) != (op == "="):
            return False
    return True


class Series:
    """Every scrape: a list of (t, {(name, labels-tuple): value})."""

    def __init__(self):
        self.scrapes = []

    def add(self, t, text):
        values = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                values[(s.name, tuple(sorted(s.labels.items())))] = s.value
        self.scrapes.append((t, values))

    def instant(self, i, name, selector):
        t, values = self.scrapes[i]
        return {lab: v for (n, lab), v in values.items() if n == name and matches(dict(lab), selector)}

    def rate(self, i, name, selector):
        t, now = self.scrapes[i]
        j = i
        while j > 0 and t - self.scrapes[j - 1][0] <= WINDOW:
            j -= 1
        if j == i:
            return {}
        t0 = self.scrapes[j][0]
        before = self.instant(j, name, selector)
        out = {}
        for lab, v in self.instant(i, name, selector).items():
            out[lab] = max(0.0, v - before.get(lab, 0.0)) / (t - t0)
        return out


def aggregate(fn, by, vector):
    groups = defaultdict(list)
    for lab, v in vector.items():
        d = dict(lab)
        groups[tuple((k, d.get(k, "")) for k in by)].append(v)
    f = {"sum": sum, "max": max, "min": min}[fn]
    return {k: f(vs) for k, vs in groups.items() if vs}


def quantile(q, buckets):
    """histogram_quantile over {labels-without-le + le: rate}."""
    groups = defaultdict(list)
    for lab, v in buckets.items():
        d = dict(lab)
        le = float("inf") if d["le"] in ("+Inf", "inf") else float(d["le"])
        groups[tuple((k, x) for k, x in lab if k != "le")].append((le, v))
    out = {}
    for k, bs in groups.items():
        bs.sort()
        total = bs[-1][1]
        if total <= 0:
            continue
        rank = q * total
        prev_le, prev_c = 0.0, 0.0
        for le, c in bs:
            if c >= rank:
                if math.isinf(le):
                    out[k] = prev_le
                else:
                    out[k] = prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-12)
                break
            prev_le, prev_c = le, c
    return out


AGG = r"(sum|max|min)(?:\s+by\s*\(([^)]*)\))?\s*\((.*)\)"


def evaluate(expr, series, i):
    expr = expr.strip()
    m = re.fullmatch(r"histogram_quantile\(([\d.]+),\s*" + AGG + r"\)", expr)
    if m:
        q, fn, by, inner = float(m.group(1)), m.group(2), m.group(3), m.group(4)
        by = [b.strip() for b in (by or "").split(",") if b.strip()]
        return quantile(q, aggregate(fn, by, evaluate(inner, series, i)))
    # a / b, each an aggregation
    depth, split = 0, None
    for k, ch in enumerate(expr):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "/" and depth == 0:
            split = k
    if split is not None:
        a, b = evaluate(expr[:split], series, i), evaluate(expr[split + 1:], series, i)
        return {k: a[k] / b[k] for k in a if b.get(k)}
    m = re.fullmatch(AGG, expr)
    if m:
        fn, by, inner = m.group(1), m.group(2), m.group(3)
        by = [b.strip() for b in (by or "").split(",") if b.strip()]
        return aggregate(fn, by, evaluate(inner, series, i))
    m = re.fullmatch(r"rate\((\w+)(\{[^}]*\})?\[[^\]]+\]\)", expr)
    if m:
        return series.rate(i, m.group(1), parse_labels(m.group(2)))
    m = re.fullmatch(r"(\w+)(\{[^}]*\})?", expr)
    if m:
        return series.instant(i, m.group(1), parse_labels(m.group(2)))
    raise SystemExit(f"render-dashboard: query outside the supported subset: {expr}")


def legend(fmt, key):
    d = dict(key)
    return re.sub(r"\{\{(\w+)\}\}", lambda m: d.get(m.group(1), ""), fmt or "") or ",".join(v for _, v in key) or "value"


# ---------------------------------------------------------------- workload

def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def run_workload(seconds, port_base):
    cluster = ROOT / "target" / "dashboard-cluster"
    pg = port_base
    env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(pg), PGUSER="postgres")
    sh(str(ROOT / "scripts" / "cluster.sh"), "start", str(cluster), str(pg))
    procs = []
    try:
        psql = ["psql", "-qXtA", "-v", "ON_ERROR_STOP=1"]
        sh(*psql, "-d", "postgres", "-c", "DROP DATABASE IF EXISTS shop", "-c", "CREATE DATABASE shop", env=env)
        sh(*psql, "-d", "shop", "-c", "CREATE EXTENSION pg_webhook", "-c", "SET webhook.allow_http = on", "-c",
           f"SELECT webhook.create_endpoint('http://127.0.0.1:{pg + 1}/w', '{{orders.*}}', '{SECRET}', description => 'warehouse');"
           f"SELECT webhook.create_endpoint('http://127.0.0.1:{pg + 2}/c', '{{orders.*,reviews.*}}', '{SECRET}', description => 'crm');"
           f"SELECT webhook.create_endpoint('http://127.0.0.1:{pg + 3}/s', '{{reviews.*}}', '{SECRET}', description => 'support');",
           env=env)
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        for port, extra in [(pg + 1, []), (pg + 2, ["--fail-rate", "0.2"])]:
            procs.append(subprocess.Popen([str(WEBHOOKD), "listen", "--addr", f"127.0.0.1:{port}", "--secret", SECRET,
                                           *extra], **quiet))
        metrics = pg + 9
        procs.append(subprocess.Popen(
            [str(WEBHOOKD), "run", "--allow-private-targets", "--metrics-addr", f"127.0.0.1:{metrics}",
             "--retry-schedule", "1s,2s,4s,8s", "--breaker-threshold", "20"],
            env=dict(env, DATABASE_URL=f"postgres://postgres@127.0.0.1:{pg}/shop", WEBHOOKD_LOG="warn"), **quiet))
        # A producer: orders and reviews, about 150 events a second.
        producer = subprocess.Popen(
            ["psql", "-qX", "-d", "shop", "-c",
             "DO $$ BEGIN FOR i IN 1..100000 LOOP "
             "PERFORM webhook.emit(CASE WHEN i % 3 = 0 THEN 'reviews.insert' ELSE 'orders.insert' END, "
             "jsonb_build_object('n', i)); COMMIT; PERFORM pg_sleep(0.006); END LOOP; END $$"],
            env=env, **quiet)
        procs.append(producer)
        series = Series()
        start = time.monotonic()
        support = None
        while time.monotonic() - start < seconds:
            t = time.monotonic() - start
            # The support receiver is down for the middle third.
            up = not (seconds / 3 <= t < 2 * seconds / 3)
            if up and support is None:
                support = subprocess.Popen([str(WEBHOOKD), "listen", "--addr", f"127.0.0.1:{pg + 3}", "--secret",
                                            SECRET], **quiet)
                procs.append(support)
            elif not up and support is not None:
                support.send_signal(signal.SIGKILL)
                support.wait()
                support = None
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=2) as r:
                    series.add(t, r.read().decode())
            except OSError:
                pass
            time.sleep(STEP)
        return series
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run([str(ROOT / "scripts" / "cluster.sh"), "stop", str(cluster)], check=False)


# ---------------------------------------------------------------- drawing

def render(series, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dash = json.loads(DASHBOARD.read_text())
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dash["panels"])
    fig = plt.figure(figsize=(16, rows * 0.55), facecolor="#111217")
    grid = fig.add_gridspec(rows, 24, hspace=3.0, wspace=0.8, top=0.95, bottom=0.04)
    times = [t for t, _ in series.scrapes]
    for p in dash["panels"]:
        g = p["gridPos"]
        ax = fig.add_subplot(grid[g["y"]:g["y"] + g["h"], g["x"]:g["x"] + g["w"]])
        ax.set_facecolor("#181b1f")
        for s in ax.spines.values():
            s.set_color("#2c3235")
        ax.tick_params(colors="#9fa7b3", labelsize=7)
        ax.set_title(p["title"], color="#d8d9da", fontsize=9, loc="left")
        if p["type"] == "stat":
            v = evaluate(p["targets"][0]["expr"], series, len(times) - 1)
            value = sum(v.values()) if v else 0.0
            unit = p["fieldConfig"]["defaults"].get("unit", "")
            text = {"reqps": f"{value:.1f} req/s", "s": f"{value:.1f} s"}.get(unit, f"{value:,.0f}")
            steps = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
            color = steps[0]["color"]
            for st in steps[1:]:
                if value >= st["value"]:
                    color = st["color"]
            ax.text(0.5, 0.45, text, ha="center", va="center", fontsize=20, color="white", transform=ax.transAxes,
                    bbox=dict(boxstyle="round,pad=0.6", fc={"green": "#1a7f37", "orange": "#b35c00",
                                                             "red": "#b42318"}.get(color, "#333"), ec="none"))
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        for t in p["targets"]:
            lines = defaultdict(lambda: [math.nan] * len(times))
            for i in range(len(times)):
                for key, v in evaluate(t["expr"], series, i).items():
                    lines[key][i] = v
            for key, ys in sorted(lines.items()):
                ax.plot(times, ys, linewidth=1.2, label=legend(t.get("legendFormat"), key))
        unit = p["fieldConfig"]["defaults"].get("unit", "")
        ax.set_xlabel("seconds", color="#9fa7b3", fontsize=7)
        ax.set_ylabel(unit, color="#9fa7b3", fontsize=7)
        ax.grid(color="#2c3235", linewidth=0.5)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, facecolor="#181b1f", edgecolor="#2c3235", labelcolor="#d8d9da", loc="upper left")
    fig.suptitle(f"{dash['title']} — rendered from a live webhookd by scripts/render-dashboard.py",
                 color="#d8d9da", fontsize=11)
    fig.savefig(out, dpi=90, facecolor=fig.get_facecolor())
    print(f"render-dashboard: {out}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=90)
    ap.add_argument("--out", default=str(ROOT / "docs" / "dashboard.png"))
    ap.add_argument("--port-base", type=int, default=25490)
    a = ap.parse_args()
    series = run_workload(a.seconds, a.port_base)
    if len(series.scrapes) < 5:
        sys.exit("render-dashboard: too few scrapes of /metrics")
    render(series, a.out)


if __name__ == "__main__":
    main()
