"""Render target/bench/results.jsonl (written by scripts/bench.sh) as the
goal tables of BENCHMARKS.md and one PNG plot per benchmark.

    python3 -m pgwh_bench report RESULTS --plots DIR [--splice BENCHMARKS.md]

Without --splice the markdown goes to stdout; with it, the text between
the `<!-- bench:begin -->` and `<!-- bench:end -->` markers is replaced.
Goals, their texts and the plots' dashed lines come from goals.py.
"""

import json
import os
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .goals import GOAL  # noqa: E402

VARIANTS = {
    "plain": "plain table",
    "tracked": "pg_webhook",
    "portable": "pg_webhook, portable edition",
    "naive": "naive PL/pgSQL to_jsonb trigger",
    "notify": "naive + pg_notify per row",
    "pgq": "PgQ (pgq.logutriga)",
    "stmt": "statement-level PL/pgSQL",
}
# B3/B4's systems: each edition of pg_webhook a run measured (bench.sh
# EDITIONS), then the baseline.
SYSTEMS = {
    "pg_webhook": "pg_webhook",
    "pg_webhook_portable": "pg_webhook, portable edition",
    "baseline": "baseline",
}


def edition(r):
    """The edition a result is of (results of runs before the portable
    edition was measured are all native)."""
    return r.get("edition", "native")


def load(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    by = defaultdict(list)
    for r in rows:
        by[r.get("bench")].append(r)
    return by


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def verdict(ok):
    return "**met**" if ok else "not met"


def fmt(x, nd=2):
    return "–" if x != x else f"{x:,.{nd}f}"


def save(fig, plots, name):
    fig.tight_layout()
    fig.savefig(os.path.join(plots, name), dpi=110)
    plt.close(fig)


def bars(plots, name, labels, values, ylabel, title, goal=None, xlabel=None):
    """A small bar chart, with the goal as a dashed line if there is one."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(labels, values)
    if goal is not None:
        ax.axhline(goal, color="grey", linestyle="--", linewidth=0.8)
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    save(fig, plots, name)


def b1(by, out, plots):
    rows = by.get("B1", [])
    if not rows:
        return {}
    groups = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[(r["op"], r["sync"], r["clients"])][r["variant"]].append(r)
    present = {r["variant"] for r in rows}
    variants = [v for v in ["plain", "tracked", "portable", "naive", "notify", "pgq"] if v in present]
    editions = [v for v in ["tracked", "portable"] if v in present]
    out.append("### B1 capture cost (pgbench, single-row transactions, median TPS and ratio to plain)\n")
    out.append("| op | sync | clients | " + " | ".join(VARIANTS[v] for v in variants) + " | "
               + " | ".join(f"{VARIANTS[v]} / naive" for v in editions) + " |")
    out.append("|---|---|---:|" + "---:|" * (len(variants) + len(editions)))
    ratios = {}
    fig, axes = plt.subplots(1, 1, figsize=(11, 4.5))
    labels, series = [], defaultdict(list)
    for key in sorted(groups):
        g = groups[key]

        # Paired ratios: each repetition against the plain run beside it.
        def paired(v):
            by_rep = {r["rep"]: r["tps"] for r in g["plain"]}
            return med([r["tps"] / by_rep[r["rep"]] for r in g[v] if by_rep.get(r["rep"])])

        cells = []
        for v in variants:
            t = med([r["tps"] for r in g[v]])
            ratio = paired(v) if v != "plain" else 1.0
            ratios[(key, v)] = ratio
            cells.append(f"{fmt(t, 0)} ({fmt(ratio)}×)")
            if v != "plain":
                series[v].append(ratio)
        naive = med([r["tps"] for r in g["naive"]])
        # The native edition's ratio keeps its old key (the goal reads it).
        vs_naive = {v: (key, "vs_naive" if v == "tracked" else f"{v}_vs_naive") for v in editions}
        for v in editions:
            ratios[vs_naive[v]] = med([r["tps"] for r in g[v]]) / naive
        out.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " | "
                   + " | ".join(f"{fmt(ratios[vs_naive[v]])}×" for v in editions) + " |")
        labels.append(f"{key[0]}\n{key[2]}c sync {key[1]}")
    shown = variants[1:]
    width = 0.8 / len(shown)
    for i, v in enumerate(shown):
        axes.bar([x + i * width for x in range(len(labels))], series[v], width, label=VARIANTS[v])
    axes.axhline(GOAL["B1.plain"].limit, color="grey", linestyle="--", linewidth=0.8)
    axes.set_xticks([x + (len(shown) - 1) / 2 * width for x in range(len(labels))], labels, fontsize=7)
    axes.set_ylabel("TPS ratio to the plain table")
    axes.set_title("B1 capture cost (higher is better)")
    axes.legend(fontsize=8)
    save(fig, plots, "b1_capture.png")
    out.append("")
    bulk = by.get("B1bulk", [])
    if bulk:
        present = {r["variant"] for r in bulk}
        variants = [v for v in ["plain", "tracked", "portable", "naive", "stmt", "pgq"] if v in present]
        out.append(f"Bulk ({bulk[0]['rows']:,} rows, median of 3, ms and ratio to the plain table's time):\n")
        out.append("| statement | " + " | ".join(VARIANTS[v] for v in variants) + " |")
        out.append("|---|" + "---:|" * len(variants))
        for kind in ["insert", "copy"]:
            ms = {r["variant"]: r["ms"] for r in bulk if r["kind"] == kind}
            p = ms.get("plain", float("nan"))
            ratios[("bulk", kind)] = ms.get("tracked", float("nan")) / p
            out.append(f"| {'INSERT … SELECT' if kind == 'insert' else 'COPY'} | "
                       + " | ".join(f"{fmt(ms.get(v, float('nan')), 0)} ({fmt(ms.get(v, float('nan')) / p)}×)"
                                    for v in variants) + " |")
        out.append("")
    return ratios


def b2(by, out, plots):
    rows = by.get("B2", [])
    if not rows:
        return {}
    out.append("### B2 wake-up cost (dispatcher running, synchronous_commit = on, median TPS)\n")
    out.append("| edition | clients | NOTIFY wake-ups | poll-only | ratio |")
    out.append("|---|---:|---:|---:|---:|")
    # res: the native edition's ratios, which the goal judges; every
    # edition's in the table and the plot.
    res, shown = {}, {}
    for e in [e for e in ["native", "portable"] if any(edition(r) == e for r in rows)]:
        for c in sorted({r["clients"] for r in rows if edition(r) == e}):
            n = med([r["tps"] for r in rows if edition(r) == e and r["clients"] == c and r["mode"] == "notify"])
            p = med([r["tps"] for r in rows if edition(r) == e and r["clients"] == c and r["mode"] == "poll"])
            shown[f"{e}, {c}"] = n / p
            if e == "native":
                res[c] = n / p
            out.append(f"| {e} | {c} | {fmt(n, 0)} | {fmt(p, 0)} | {fmt(n / p)}× |")
    bars(plots, "b2_wakeup.png", list(shown), list(shown.values()), "TPS with NOTIFY / poll-only",
         "B2 wake-up cost", goal=GOAL["B2.notify"].limit, xlabel="edition, clients")
    out.append("")
    return res


def flat(r):
    """Recomputed from the raw fields (the rule of bench/src/main.rs): all
    delivered, producer at rate, at most 1.2 s of traffic undelivered when
    the producer stopped."""
    return (r["missing"] == 0 and r["committed_per_s"] >= 0.95 * r["rate"]
            and r["backlog_at_end"] <= max(1.2 * r["rate"], r["rows_per_tx"]))


def b3_b4(by, out, plots):
    res = {}
    steps = by.get("B3", [])
    if steps:
        p99 = f"p99 {GOAL['B3.sustained_p99'].bound} ms"
        out.append(f"### B3 throughput ramp (open loop, highest rate with a flat backlog and {p99})\n")
        out.append(f"| system | offered ev/s | committed ev/s | delivered ev/s | backlog at end | p50 ms | p99 ms | flat backlog | sustained (flat, {p99}) |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---|---|")
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        systems = [sy for sy in SYSTEMS if any(r.get("system") == sy for r in steps)]
        for system in systems:
            s = [r for r in steps if r.get("system") == system]
            for r in s:
                out.append(f"| {SYSTEMS[system]} | {r['rate']:,} | {fmt(r['committed_per_s'], 0)} | {fmt(r['delivered_per_s'], 0)} | "
                           f"{r['backlog_at_end']} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {'yes' if flat(r) else 'no'} | "
                           f"{'yes' if r['sustained'] else 'no'} |")
            ok = [r["rate"] for r in s if (flat(r) if system == "baseline" else r["sustained"])]
            res[system] = max(ok) if ok else 0
            a1.plot([r["rate"] for r in s], [r["delivered_per_s"] for r in s], marker="o", label=SYSTEMS[system])
            a2.plot([r["rate"] for r in s], [r["p99_ms"] for r in s], marker="o", label=SYSTEMS[system])
        lim = max(r["rate"] for r in steps)
        a1.plot([0, lim], [0, lim], color="grey", linestyle=":", linewidth=0.8)
        a1.set_xlabel("offered events/s")
        a1.set_ylabel("delivered events/s")
        a1.legend()
        a2.set_xlabel("offered events/s")
        a2.set_ylabel("p99 commit → 2xx (ms)")
        a2.set_yscale("log")
        a2.axhline(GOAL["B3.sustained_p99"].limit, color="grey", linestyle="--", linewidth=0.8)
        a2.legend()
        fig.suptitle("B3 end-to-end throughput")
        save(fig, plots, "b3_throughput.png")
        out.append("")
        portable = (f"; its portable edition {res['pg_webhook_portable']:,} events/s"
                    if "pg_webhook_portable" in res else "")
        out.append(f"Highest sustained: pg_webhook **{res.get('pg_webhook', 0):,} events/s**{portable}; the baseline's highest "
                   f"rate with a flat backlog: {res.get('baseline', 0):,} events/s (its 1 s poll puts every p99 near 1 s).\n")
    lat = by.get("B4", [])
    if lat:
        out.append("### B4 latency, commit → receipt (ms)\n")
        out.append("| system | load | rate ev/s | p50 | p99 | p99.9 | max |")
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        fig, ax = plt.subplots(figsize=(8, 4))
        systems = [sy for sy in SYSTEMS if any(r.get("system") == sy for r in lat)]
        width = 0.8 / len(systems)
        for i, system in enumerate(systems):
            s = sorted([r for r in lat if r.get("system") == system], key=lambda r: r["load_pct"])
            for r in s:
                out.append(f"| {SYSTEMS[system]} | {int(r['load_pct'])} % | {r['rate']:,} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | "
                           f"{fmt(r['p999_ms'])} | {fmt(r['max_ms'])} |")
                res[(system, int(r["load_pct"]))] = r
            xs = [j + i * width for j in range(len(s))]
            ax.bar(xs, [r["p50_ms"] for r in s], width, label=f"{SYSTEMS[system]} p50")
            ax.scatter(xs, [r["p99_ms"] for r in s], marker="_", s=300, color="black", zorder=3,
                       label="p99" if i == 0 else None)
        ax.set_xticks([j + (len(systems) - 1) / 2 * width for j in range(3)], ["10 %", "50 %", "80 %"])
        ax.set_yscale("log")
        ax.set_ylabel("ms (log)")
        ax.set_title("B4 commit → receipt latency at % of each system's max")
        ax.legend(fontsize=8)
        save(fig, plots, "b4_latency.png")
        out.append("")
    return res


def b5(by, out, plots):
    rows = by.get("B5", [])
    if not rows:
        return {}
    r = rows[-1]
    out.append("### B5 backlog\n")
    out.append("| backlog | drain time | events/s | producer during drain / idle | schema webhook | dead tuples | webhookd peak RSS |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|")
    ratio = r["drain_tps"] / max(r["idle_tps"], 1)
    out.append(f"| {r['count']:,} | {fmt(r['seconds'], 1)} s | {fmt(r['events_per_s'], 0)} | {fmt(r['drain_tps'], 0)} / {fmt(r['idle_tps'], 0)} tps = {fmt(ratio)}× | "
               f"{fmt(r['store_mb'], 1)} MB | {fmt(r['dead_tuples'], 0)} | {fmt(r['rss_peak_mb'], 1)} MB |")
    out.append("")
    bars(plots, "b5_backlog.png", ["idle", "during drain"], [r["idle_tps"], r["drain_tps"]], "producer TPS",
         f"B5: {r['count']:,} events drained in {r['seconds']:.0f} s")
    return {"seconds": r["seconds"], "producer": ratio, "rss": r["rss_peak_mb"]}


def b6(by, out, plots):
    rows = {r["scenario"]: r for r in by.get("B6", [])}
    if len(rows) < 2:
        return {}
    h, f = rows["healthy"], rows["faulty"]
    out.append("### B6 isolation: the healthy endpoint's latency (ms)\n")
    out.append("| scenario | p50 | p99 | p99.9 | failed on purpose |")
    out.append("|---|---:|---:|---:|---:|")
    for name, r in [("all healthy", h), ("/b 10 % 500, /c down", f)]:
        out.append(f"| {name} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['p999_ms'])} | {r['failed_on_purpose']} |")
    out.append("")
    bars(plots, "b6_isolation.png", ["all healthy", "neighbours failing"], [h["p99_ms"], f["p99_ms"]],
         "healthy endpoint p99 (ms)", "B6 isolation")
    return {"ratio": f["p99_ms"] / h["p99_ms"] if h["p99_ms"] else float("nan")}


def b7(by, out):
    rows = by.get("B7", [])
    if not rows:
        return {}
    r = rows[-1]
    out.append("### B7 dispatcher cost (webhookd at 50 % of B3's maximum)\n")
    out.append(f"{fmt(r['cpu_us_per_event'], 1)} µs CPU per delivered event; RSS {r['rss_mb']} MB "
               f"(peak {r['rss_peak_mb']} MB) over {r['events']:,} events.\n")
    return r


def liveness(by, out, plots):
    rows = {r["variant"]: r for r in by.get("L", [])}
    if not rows:
        return {}
    out.append("### L liveness: an event an endpoint wants, behind events nobody wants\n")
    out.append("| case | events ahead | commit → receipt |")
    out.append("|---|---:|---:|")
    names = {"a": "endpoint subscribed to another type only", "b": "the events' endpoint disabled while they commit"}
    res = {}
    for v in ["a", "b"]:
        if v in rows:
            r = rows[v]
            lat = f"{fmt(r['latency_s'], 3)} s" if r.get("arrived") else f"> {r['timeout_s']} s"
            out.append(f"| ({v}) {names[v]} | {r['rows']:,} | {lat} |")
            res[v] = r
    if "c" in rows:
        r = rows["c"]
        out.append("")
        out.append(f"Routing throughput of events that match nothing (`webhook.route()` until it returns 0): "
                   f"**{fmt(r['events_per_s'], 0)} events/s** ({r['rows']:,} events, {r['calls']} calls, "
                   f"{fmt(r['seconds'], 2)} s{'' if r.get('complete', True) else ', gave up'}).")
        res["c"] = r
    out.append("")
    return res


def b9(by, out, plots):
    rows = by.get("B9", [])
    if not rows:
        return {}
    r = rows[-1]
    out.append("### B9 WAL per event (a cluster of its own, synchronous_commit = off, autovacuum off, one endpoint, "
               "webhookd stopped while the events commit)\n")
    out.append("| events | plain insert, bytes/row | capture adds, bytes/event | delivery path, bytes/delivered event | then VACUUM, bytes/event | drain events/s |")
    out.append("|---:|---:|---:|---:|---:|---:|")
    out.append(f"| {r['events']:,} | {fmt(r['plain_bytes_per_row'], 0)} | {fmt(r['capture_bytes_per_event'], 0)} | "
               f"{fmt(r['delivery_bytes_per_event'], 0)} | {fmt(r.get('vacuum_bytes_per_event', float('nan')), 0)} | "
               f"{fmt(r['events_per_s'] or float('nan'), 0)} |")
    top = [f"{k} {fmt(v['bytes_per_event'], 0)}" for k, v in r.get("wal_by_record_type", {}).items() if v["bytes_per_event"] >= 5]
    if top:
        out.append("")
        out.append("Delivery-path WAL by record type (bytes per delivered event, pg_waldump --stats): " + ", ".join(top) + ".")
    out.append("")
    bars(plots, "b9_wal.png", ["plain row", "capture", "delivery path"],
         [r["plain_bytes_per_row"], r["capture_bytes_per_event"], r["delivery_bytes_per_event"]],
         "WAL bytes per event", "B9 write amplification", goal=GOAL["B9.wal"].limit)
    return r


def b10(by, out, plots):
    rows = sorted(by.get("B10", []), key=lambda r: r["endpoints"])
    if not rows:
        return {}
    out.append("### B10 many endpoints (each its own event type; one webhookd, one receiver)\n")
    out.append("| endpoints | events | delivered | seconds | events/s | vs 1 endpoint | receiver cores | webhookd cores | PostgreSQL cores |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    one = next((r["events_per_s"] for r in rows if r["endpoints"] == 1), float("nan"))
    for r in rows:
        out.append(f"| {r['endpoints']:,} | {r['events']:,} | {r['delivered']:,}{'' if r['complete'] else ' (gave up)'} | "
                   f"{fmt(r['seconds'], 1)} | {fmt(r['events_per_s'], 0)} | {fmt(r['events_per_s'] / one)}× | "
                   f"{fmt(r['receiver_cores'])} | {fmt(r['webhookd_cores'])} | {fmt(r['postgres_cores'])} |")
    out.append("")
    bars(plots, "b10_endpoints.png", [f"{r['endpoints']:,}" for r in rows], [r["events_per_s"] for r in rows],
         "events/s", "B10 drain rate by number of endpoints", goal=GOAL["B10.endpoints"].limit * one, xlabel="endpoints")
    return {r["endpoints"]: r["events_per_s"] / one for r in rows}


def b11(by, out, plots):
    rows = by.get("B11", [])
    if not rows:
        return {}
    # The last row of each edition; the native edition's is judged.
    last = {edition(r): r for r in rows}
    r = last.get("native") or rows[-1]
    out.append(f"### B11 PostgreSQL CPU at ordinary rates ({r['rate']} single-row commits/s, {r['clients']} clients, "
               f"{r['secs']} s, synchronous_commit = {r['sync']})\n")
    out.append("| edition | delivered | PostgreSQL CPU per event | cores | webhookd sessions per event | claim share | producer backends (approx.) |")
    out.append("|---|---:|---:|---:|---|---:|---:|")
    calls = []
    for e in [e for e in ["native", "portable"] if e in last]:
        x = last[e]
        sess = ", ".join(f"{k} {fmt(v, 0)} µs" for k, v in x["webhookd_sessions_us_per_event"].items())
        out.append(f"| {e} | {x['delivered']:,} | {fmt(x['pg_cpu_us_per_event'], 0)} µs | {fmt(x['pg_cores'])} | {sess} | "
                   f"{fmt(100 * x['claim_share'], 0)} % | {fmt(x['producer_backends_us_per_event'], 0)} µs |")
        funcs = [f"`{k}` {fmt(v['calls_per_event'])} × {fmt(v['ms_per_call'], 3)} ms" for k, v in x["functions"].items()
                 if v["calls_per_event"] >= 0.05]
        if funcs:
            calls.append(f"{e}: " + ", ".join(funcs))
    if calls:
        out.append("")
        out.append("Calls per delivered event × time per call (pg_stat_user_functions), " + "; ".join(calls) + ".")
    out.append("")
    return r if edition(r) == "native" else {}


def b8(by):
    """B8 is not rendered (it runs only when asked for); its summary line
    gives the goal table a row."""
    rows = [r for r in by.get("B8", []) if r.get("phase") == "summary"]
    return rows[-1] if rows else {}


def goal_rows(r1, r2, r34, r5, r6, r7, rl, r8, r9, r10, r11):
    """The goal table: one row per goal measured in this run, judged by goals.py."""
    rows = ["| goal | measured | |", "|---|---|---|"]

    def goal(key, shown, value, **details):
        g = GOAL[key]
        rows.append(f"| {g.text(**details)} | {shown} | {verdict(g.met(value))} |")

    k = ("insert", "off", 8)
    if (k, "tracked") in r1:
        goal("B1.plain", f"{fmt(r1[(k, 'tracked')])}×", r1[(k, "tracked")])
        goal("B1.naive", f"{fmt(r1[(k, 'vs_naive')])}×", r1[(k, "vs_naive")])
        goal("B1.pgq", f"{fmt(r1[(k, 'tracked')])}× vs {fmt(r1[(k, 'pgq')])}×", r1[(k, "tracked")] - r1[(k, "pgq")])
    k_on = ("insert", "on", 8)
    if (k_on, "tracked") in r1:
        goal("B1.plain_sync_on", f"{fmt(r1[(k_on, 'tracked')])}×", r1[(k_on, "tracked")])
    for kind in ["insert", "copy"]:
        if ("bulk", kind) in r1:
            goal("B1.bulk", f"{fmt(r1[('bulk', kind)])}×", r1[("bulk", kind)], kind=kind)
    for c, v in r2.items():
        goal("B2.notify", f"{fmt(v)}×", v, clients=c)
    if "pg_webhook" in r34:
        pw, base = r34["pg_webhook"], r34.get("baseline", 0)
        ratio = pw / base if base else float("nan")
        goal("B3.rate", f"{pw:,} events/s", pw)
        goal("B3.baseline", f"{fmt(ratio)}× ({base:,} events/s)", ratio)
    if ("pg_webhook", 50) in r34:
        r = r34[("pg_webhook", 50)]
        goal("B4.p50", f"{fmt(r['p50_ms'])} ms", r["p50_ms"])
        goal("B4.p99", f"{fmt(r['p99_ms'])} ms", r["p99_ms"])
        if ("baseline", 50) in r34:
            b = r34[("baseline", 50)]
            f = b["p50_ms"] / r["p50_ms"] if r["p50_ms"] else float("nan")
            goal("B4.baseline", f"{fmt(f, 0)}×", f)
    if r5:
        goal("B5.drain", f"{fmt(r5['seconds'], 1)} s", r5["seconds"])
        goal("B5.producer", f"{fmt(r5['producer'])}×", r5["producer"])
        goal("B7.rss_backlog", f"{fmt(r5['rss'], 1)} MB", r5["rss"])
    if r6:
        goal("B6.isolation", f"{fmt(r6['ratio'])}×", r6["ratio"])
    if r7:
        goal("B7.rss", f"{r7['rss_mb']} MB", r7["rss_mb"])
        goal("B7.cpu", f"{fmt(r7['cpu_us_per_event'], 1)} µs", r7["cpu_us_per_event"])
    for v in ["a", "b"]:
        if v in rl:
            r = rl[v]
            arrived = bool(r.get("arrived"))
            goal("L.latency", f"{fmt(r['latency_s'], 3)} s" if arrived else f"> {r['timeout_s']} s",
                 r["latency_s"] if arrived else None, case=v, rows=r["rows"])
    if "c" in rl:
        goal("L.routing", f"{fmt(rl['c']['events_per_s'], 0)} events/s", rl["c"]["events_per_s"])
    if r8:
        ratio = r8.get("size_ratio_last_10min")
        goal("B8.flat", fmt(ratio if ratio is not None else float("nan")), ratio)
    if r9:
        goal("B9.wal", f"{fmt(r9['delivery_bytes_per_event'], 0)} bytes", r9["delivery_bytes_per_event"])
    if 1000 in r10:
        goal("B10.endpoints", f"{fmt(r10[1000])}×", r10[1000])
    if r11:
        goal("B11.cpu", f"{fmt(r11['pg_cpu_us_per_event'], 0)} µs", r11["pg_cpu_us_per_event"], rate=r11["rate"])
    return rows


def measured(editions):
    """Which editions the run measured, and where."""
    if editions == ["native"]:
        return ""
    if len(editions) == 1:
        return f"Every benchmark measures the {editions[0]} edition. "
    return (f"B1, B2, B3, B4 and B11 measure the {' and '.join(editions)} editions side by side; the others the "
            f"{editions[0]} edition. ")


def render(results, plots, splice=None):
    os.makedirs(plots, exist_ok=True)
    by = load(results)
    meta = (by.get("meta") or [{}])[-1]
    out = [f"Run of {meta.get('date')}: {meta.get('machine')}; PostgreSQL {meta.get('postgres')}; "
           f"pg_test_fsync fdatasync {meta.get('fsync_ops_per_s')} ops/s; {meta.get('reps')} interleaved repetitions "
           f"of {meta.get('secs')} s for pgbench figures; end-to-end producer commits {meta.get('rows_per_tx')} rows per "
           f"transaction; B5 backlog {meta.get('backlog', '?'):,} events; B6 {meta.get('iso_s', '?')} s with /c down for the "
           f"first {meta.get('down_s', '?')} s. {measured(meta.get('editions', 'native').split())}"
           f"Plots: `docs/bench/`.\n"]
    body = []
    r1 = b1(by, body, plots)
    r2 = b2(by, body, plots)
    r34 = b3_b4(by, body, plots)
    r5 = b5(by, body, plots)
    r6 = b6(by, body, plots)
    r7 = b7(by, body)
    rl = liveness(by, body, plots)
    r9 = b9(by, body, plots)
    r10 = b10(by, body, plots)
    r11 = b11(by, body, plots)
    goals = goal_rows(r1, r2, r34, r5, r6, r7, rl, b8(by), r9, r10, r11)

    text = "\n".join(out + ["### Goals\n"] + goals + [""] + body)
    if splice:
        doc = open(splice).read()
        begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
        if begin not in doc or end not in doc:
            sys.exit(f"{splice} has no {begin} ... {end} section")
        head, rest = doc.split(begin, 1)
        _, tail = rest.split(end, 1)
        open(splice, "w").write(f"{head}{begin}\n{text}\n{end}{tail}")
    else:
        print(text)
