"""The result lines scripts/bench.sh cannot write with `emit` alone: each
function reads what a benchmark left in its temporary files (a step's or a
drain's JSON line, pg_waldump's statistics, database snapshots), appends one
JSON line to the results file and prints the figures for the run's log.

Arguments arrive as bench.sh passes them, as strings (numbers included), so
that a figure the shell could not measure fails here as it did inline.
Standard library only: bench.sh runs these with the system's python3.
"""

import json
import re
import statistics

from .goals import GOAL, NEGATION


def loadavg():
    """The machine is shared: each result records its load."""
    return open("/proc/loadavg").read().split()[:3]


def last_json(path):
    """The last line of a JSON-lines file, as pgwh-bench writes one per run."""
    return json.loads(open(path).read().splitlines()[-1])


def append(path, record):
    open(path, "a").write(json.dumps(record) + "\n")


def last_fields(path, *keys):
    """Print the given fields of a JSON-lines file's last line, space-separated."""
    r = last_json(path)
    print(*(r[k] for k in keys))


def b5(drain_json, results, idle, during, store_mb, dead, peak):
    """B5: the drain's line with the producer's rates (idle and during the
    drain), the size of schema webhook, its dead tuples and webhookd's peak RSS."""
    r = last_json(drain_json)
    r.update(idle_tps=float(idle), drain_tps=float(during), store_mb=float(store_mb),
             dead_tuples=float(dead or 0), rss_peak_mb=float(peak or 0))
    append(results, r)
    print(f"  drained in {r['seconds']:.1f} s ({r['events_per_s']:.0f} events/s); producer {r['drain_tps'] / max(r['idle_tps'], 1):.2f}x idle; "
          f"schema webhook {r['store_mb']} MB, {r['dead_tuples']:.0f} dead tuples; webhookd peak RSS {r['rss_peak_mb']} MB")


# A record type's line of `pg_waldump --stats`: type, records, FPI bytes, all bytes.
WALDUMP_LINE = re.compile(r"^(\S+)\s+(\d+)\s+\(\s*[\d.]+\)\s+(\d+)\s+\(\s*[\d.]+\)\s+(\d+)\s+\(\s*[\d.]+\)\s+(\d+)")


def wal_by_type(path, n):
    """pg_waldump --stats: record type -> (records, FPI bytes, all bytes) per
    event, largest first; empty if the file is missing."""
    by = {}
    try:
        lines = open(path, errors="replace").readlines()
    except OSError:
        return by
    for line in lines:
        m = WALDUMP_LINE.match(line)
        if m and m.group(1) != "Total":
            by[m.group(1)] = {"records_per_event": int(m.group(2)) / n, "bytes_per_event": int(m.group(5)) / n,
                              "fpi_bytes_per_event": int(m.group(4)) / n}
    return dict(sorted(by.items(), key=lambda kv: -kv[1]["bytes_per_event"]))


def b9(drain_json, results, n, plain, tracked, delivery, ckpts, dump, rcv_cpu, vacuum):
    """B9: WAL bytes per event of each phase (the LSN deltas bench.sh took),
    and the delivery path's and the capture's WAL by record type. `dump` is
    the delivery path's pg_waldump --stats; the capture's (tracked and plain
    inserts) lie beside it as b9.bench_orders.waldump and
    b9.bench_orders_plain.waldump."""
    n = int(n)
    r = {"bench": "B9", "events": n, "load": loadavg()}
    try:
        d = last_json(drain_json)
        r.update(drain_s=d["seconds"], events_per_s=d["events_per_s"], bad=d["bad"])
    except (OSError, IndexError, ValueError):
        r.update(drain_s=None, events_per_s=None)
    r.update(plain_bytes_per_row=float(plain) / n, capture_bytes_per_event=(float(tracked) - float(plain)) / n,
             delivery_bytes_per_event=float(delivery) / n, checkpoints_during_delivery=int(ckpts),
             receiver_cpu_s=float(rcv_cpu), vacuum_bytes_per_event=float(vacuum) / n)
    r["wal_by_record_type"] = wal_by_type(dump, n)
    t = wal_by_type(dump.replace("b9.waldump", "b9.bench_orders.waldump"), n)
    p = wal_by_type(dump.replace("b9.waldump", "b9.bench_orders_plain.waldump"), n)
    r["capture_by_record_type"] = {k: {f: v[f] - p.get(k, {}).get(f, 0) for f in v} for k, v in t.items()}
    append(results, r)
    rate = f"{r['events_per_s']:.0f} events/s" if r["events_per_s"] else "?"
    print(f"  WAL bytes per row: plain insert {r['plain_bytes_per_row']:.0f}, capture adds {r['capture_bytes_per_event']:.0f}, "
          f"delivery path {r['delivery_bytes_per_event']:.0f} per delivered event ({ckpts} checkpoints during it); drain {rate}")
    print(f"  then a VACUUM of schema webhook: {r['vacuum_bytes_per_event']:.0f} bytes per event (autovacuum is off in this cluster)")
    top = [f"{k} {v['bytes_per_event']:.0f} ({v['records_per_event']:.1f} rec)" for k, v in r["wal_by_record_type"].items()
           if v["bytes_per_event"] >= 5]
    if top:
        print("  delivery-path WAL per event by record type: " + ", ".join(top))
    top = [f"{k} {v['bytes_per_event']:+.0f} ({v['records_per_event']:+.1f} rec, FPI {v['fpi_bytes_per_event']:+.0f})"
           for k, v in r["capture_by_record_type"].items() if abs(v["bytes_per_event"]) >= 5]
    if top:
        print("  capture's WAL per event by record type (tracked minus plain): " + ", ".join(top))


def b11_sessions(state):
    """The pids of webhookd's sessions in a b11_state snapshot, space-separated."""
    print(" ".join(json.load(open(state))["sessions"]))


def b11(results, before, after, wsess, tck, pg, wd, rcv, prod, wall, tx, rate, secs, sync, clients, edition):
    """B11: CPU clock ticks over the window (the cluster's, webhookd's
    process and sessions, the receiver's, the producer's backends) per
    delivered event, and webhook.* function calls per event, from the
    b11_state snapshots before and after, for one edition (native or
    portable)."""
    b, a = json.load(open(before)), json.load(open(after))
    tck, wall = float(tck), float(wall)
    delivered = a["succeeded"] - b["succeeded"]

    def us(ticks):
        return float(ticks) / tck * 1e6 / max(delivered, 1)

    sess = {}
    for pid, ticks in json.loads(wsess).items():
        name = b["sessions"].get(pid, "?")
        sess[name] = sess.get(name, 0) + ticks
    funcs = {}
    for f, (calls, total, self_) in a["functions"].items():
        c0, t0, s0 = b["functions"].get(f, (0, 0, 0))
        if calls - c0 > 0:
            funcs[f] = {"calls_per_event": (calls - c0) / max(delivered, 1), "ms_per_call": (total - t0) / (calls - c0),
                        "self_ms_per_call": (self_ - s0) / (calls - c0)}
    r = {"bench": "B11", "edition": edition, "load": loadavg(), "rate": int(rate), "secs": int(secs), "sync": sync, "clients": int(clients),
         "committed": int(tx), "delivered": delivered, "window_s": wall,
         "pg_cpu_us_per_event": us(pg), "pg_cores": float(pg) / tck / wall,
         "webhookd_sessions_us_per_event": {k: us(v) for k, v in sess.items()},
         "claim_share": sum(v for k, v in sess.items() if "claim" in k) / max(float(pg), 1),
         "webhookd_sessions_share": sum(sess.values()) / max(float(pg), 1),
         "producer_backends_us_per_event": us(prod), "webhookd_us_per_event": us(wd), "receiver_us_per_event": us(rcv),
         "functions": dict(sorted(funcs.items(), key=lambda kv: -kv[1]["calls_per_event"]))}
    append(results, r)
    print(f"  {r['committed']} commits, {delivered} delivered in {wall:.1f} s; PostgreSQL CPU {r['pg_cpu_us_per_event']:.0f} us per "
          f"delivered event ({r['pg_cores']:.2f} cores)")
    print("  of which webhookd's sessions: " + ", ".join(f"{k} {v:.0f} us" for k, v in r["webhookd_sessions_us_per_event"].items())
          + f" (claim share {100 * r['claim_share']:.0f} %); producer backends ~{r['producer_backends_us_per_event']:.0f} us")
    print(f"  webhookd process {r['webhookd_us_per_event']:.0f} us, receiver {r['receiver_us_per_event']:.0f} us per event")
    for f in ("claim", "record", "_route", "route"):
        if f in funcs:
            print(f"  webhook.{f}(): {funcs[f]['calls_per_event']:.2f} calls per event, {funcs[f]['ms_per_call']:.3f} ms per call")


def _read(path):
    try:
        return open(path).read()
    except OSError:
        return ""


def _fmt(v, spec):
    return format(v, spec) if v is not None else "?"


def b8_record(i, dur, dbf, wallf, stepf, outf, results, samples):
    """B8: step i's line, to the results and to the soak's samples. `dbf`
    holds the database sample taken in the middle of the step (t_s, the
    seven figures of b8_sample in bench.sh, the load average), `wallf` the
    step's launch and wall time, `stepf` the step's JSON line and `outf`
    its output (quoted when it wrote no line)."""
    f = _read(dbf).split()
    if len(f) != 11:  # t_s, the seven figures of b8_sample and the load: the query failed
        f = f[:1] + [""] * 7 + f[-3:]

    def num(k):
        return (float(f[k]) if "." in f[k] else int(f[k])) if len(f) > k and f[k] not in ("", "NULL") else None

    w = _read(wallf).split()  # the step's launch (s since the soak's start) and its wall time
    start, wall = (float(w[0]), float(w[1])) if len(w) == 2 else (None, None)
    r = {"bench": "B8", "phase": "sample", "i": int(i), "t_s": num(0), "webhook_bytes": num(1), "dead_tuples": num(2),
         "live_tuples": num(3), "generations": num(4), "oldest_generation": num(5), "newest_generation": num(6),
         "backlog": num(7), "load": " ".join(f[8:11])}
    try:
        s = json.loads(_read(stepf).splitlines()[-1])
    except (IndexError, ValueError):
        s = {}
    for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms", "committed_per_s", "delivered_per_s", "missing", "late_starts", "bad"):
        r[k] = s.get(k)
    r["gap_s"] = round(wall - float(dur), 3) if wall is not None else None
    # The step's own 5 s buckets (by commit time from its start, 0.2 s after its launch).
    r["timeline"] = [dict(b, t_s=round(start + 0.2 + b["t_s"], 1)) for b in s.get("timeline", [])] if start is not None else []
    append(results, r)
    append(samples, r)
    mb = r["webhook_bytes"] / 1048576 if r["webhook_bytes"] is not None else None
    print(f"  t {_fmt(r['t_s'], '5.0f')} s: webhook {_fmt(mb, '6.1f')} MB, {_fmt(r['dead_tuples'], ',')} dead / "
          f"{_fmt(r['live_tuples'], ',')} live tuples, {_fmt(r['generations'], 'd')} generations "
          f"(k {_fmt(r['oldest_generation'], 'd')}..{_fmt(r['newest_generation'], 'd')}), backlog {_fmt(r['backlog'], ',')} | "
          f"p50 {_fmt(r['p50_ms'], '.1f')} p99 {_fmt(r['p99_ms'], '.1f')} ms, {_fmt(r['committed_per_s'], '.0f')} committed/s, "
          f"{_fmt(r['missing'], 'd')} missing, gap {_fmt(r['gap_s'], '.2f')} s")
    if not s:
        print("    (no result from step " + i + "): " + " | ".join(_read(outf).strip().splitlines()[-3:]))


def b8_summary(samples, results, rate, sample_s, retention, gi, maintain, rows_per_tx, av):
    """B8: the soak's summary line from its samples: the size of schema
    webhook over the last half (flat or not, by goals.py), its peaks and
    the dead tuples of the last quarter against the third, p99's drift from
    the first half to the second."""
    flat = GOAL["B8.flat"]
    rows = [json.loads(line) for line in open(samples) if line.strip()]
    n = len(rows)
    first, last = rows[: n // 2], rows[n // 2 :]
    third, fourth = rows[n // 2 : n * 3 // 4], rows[n * 3 // 4 :]

    def vals(rs, k):
        return [r[k] for r in rs if r.get(k) is not None]

    def mean(xs):
        return statistics.mean(xs) if xs else None

    def median(xs):
        return statistics.median(xs) if xs else None

    sizes = vals(last, "webhook_bytes")
    size_ratio = max(sizes) / min(sizes) if sizes and min(sizes) > 0 else None
    # The size follows a sawtooth (a generation's worth of events more until
    # maintain() drops the oldest), so max/min has a floor of about
    # (retention + generation_interval + maintain interval) / retention however
    # flat the trend; growth shows as the peaks of the last quarter above those
    # of the quarter before.
    s3, s4 = vals(third, "webhook_bytes"), vals(fourth, "webhook_bytes")
    peak_ratio = max(s4) / max(s3) if s3 and s4 and max(s3) > 0 else None
    # Dead tuples accumulating: their mean over the last quarter of the samples
    # against the quarter before (both after the warm-up); about 1 or below: not.
    d3, d4 = mean(vals(third, "dead_tuples")), mean(vals(fourth, "dead_tuples"))
    dead_ratio = d4 / max(d3, 1) if d3 is not None and d4 is not None else None
    shares = [r["dead_tuples"] / (r["dead_tuples"] + r["live_tuples"]) for r in last
              if r.get("dead_tuples") is not None and r.get("live_tuples") is not None and r["dead_tuples"] + r["live_tuples"] > 0]
    p1, p2 = median(vals(first, "p99_ms")), median(vals(last, "p99_ms"))
    s = {"bench": "B8", "phase": "summary", "rate": int(rate), "samples": n, "sample_s": int(sample_s),
         "secs": n * int(sample_s), "rows_per_tx": int(rows_per_tx), "retention": retention, "generation_interval": gi,
         "maintain_interval": maintain, "autovacuum": av, "sync": "off",
         "size_ratio_last_10min": size_ratio, "bytes_min_last_half": min(sizes) if sizes else None,
         "bytes_max_last_half": max(sizes) if sizes else None, "bytes_max": max(vals(rows, "webhook_bytes"), default=None),
         "size_peak_ratio": peak_ratio,
         "dead_ratio": dead_ratio, "dead_mean_third_quarter": d3, "dead_mean_last_quarter": d4,
         "dead_share_max_last_half": max(shares, default=None),
         "p99_first_half_median": p1, "p99_second_half_median": p2,
         "p99_drift": p2 / p1 if p1 and p2 is not None else None,
         "p50_first_half_median": median(vals(first, "p50_ms")), "p50_second_half_median": median(vals(last, "p50_ms")),
         "generations_max": max(vals(rows, "generations"), default=None),
         "oldest_generation_at_end": rows[-1].get("oldest_generation") if rows else None,
         "backlog_max": max(vals(rows, "backlog"), default=None), "missing": sum(vals(rows, "missing")),
         "gap_s_max": max(vals(rows, "gap_s"), default=None),
         "flat": flat.met(size_ratio),
         "load": loadavg()}
    append(results, s)

    def mb(b):
        return b / 1048576 if b is not None else None

    print(f"  schema webhook over the last half ({len(last)} samples): {_fmt(mb(s['bytes_min_last_half']), '.1f')}–"
          f"{_fmt(mb(s['bytes_max_last_half']), '.1f')} MB, max/min {_fmt(size_ratio, '.2f')}: "
          + (f"flat ({flat.bound})" if s["flat"] else f"NOT flat ({NEGATION[flat.op]} {flat.threshold})")
          + f"; peak of the last quarter / of the third {_fmt(peak_ratio, '.2f')}")
    print(f"  dead tuples: mean {_fmt(d3, ',.0f')} over the third quarter, {_fmt(d4, ',.0f')} over the last (ratio "
          f"{_fmt(dead_ratio, '.2f')}); at most {_fmt(s['dead_share_max_last_half'] and 100 * s['dead_share_max_last_half'], '.1f')} % "
          f"of the tuples in the last half")
    print(f"  p99 commit → receipt: median {_fmt(p1, '.1f')} ms over the first half, {_fmt(p2, '.1f')} ms over the second "
          f"(x{_fmt(s['p99_drift'], '.2f')}); p50 {_fmt(s['p50_first_half_median'], '.1f')} → {_fmt(s['p50_second_half_median'], '.1f')} ms")
    print(f"  at most {_fmt(s['generations_max'], 'd')} generations, generations below k {_fmt(s['oldest_generation_at_end'], 'd')} dropped; "
          f"backlog at most {_fmt(s['backlog_max'], ',')}; {s['missing']} missing; producer gaps between steps at most "
          f"{_fmt(s['gap_s_max'], '.2f')} s")
