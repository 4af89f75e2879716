"""The result lines of bench/pgwh_bench/record.py, from small inputs written
here as scripts/bench.sh leaves them (no database, no benchmark run).

    .venv/bin/pytest bench      (or python3 -m pytest bench)
"""

import json

import pytest

from pgwh_bench import record
from pgwh_bench.__main__ import main

LOAD = ["0.50", "0.40", "0.30"]


@pytest.fixture(autouse=True)
def fixed_load(monkeypatch):
    monkeypatch.setattr(record, "loadavg", lambda: list(LOAD))


def write(path, text):
    path.write_text(text)
    return str(path)


def lines(path):
    return [json.loads(line) for line in open(path)]


def test_b5_appends_the_drain_line_with_the_producer_store_and_rss(tmp_path, capsys):
    drain = write(tmp_path / "b5.json", '{"bench":"B5","seconds":1.0}\n{"bench":"B5","count":1000,"seconds":2.0,"events_per_s":500.0}\n')
    results = tmp_path / "results.jsonl"
    record.b5(drain, str(results), "1000", "800", "12.5", "40", "6.7")
    (r,) = lines(results)
    assert r == {"bench": "B5", "count": 1000, "seconds": 2.0, "events_per_s": 500.0, "idle_tps": 1000.0,
                 "drain_tps": 800.0, "store_mb": 12.5, "dead_tuples": 40.0, "rss_peak_mb": 6.7}
    assert capsys.readouterr().out == ("  drained in 2.0 s (500 events/s); producer 0.80x idle; "
                                       "schema webhook 12.5 MB, 40 dead tuples; webhookd peak RSS 6.7 MB\n")


def test_b5_counts_an_unmeasured_dead_tuples_or_rss_as_zero(tmp_path):
    drain = write(tmp_path / "b5.json", '{"bench":"B5","seconds":2.0,"events_per_s":500.0}\n')
    results = tmp_path / "results.jsonl"
    record.b5(drain, str(results), "1000", "800", "12.5", "", "")
    (r,) = lines(results)
    assert (r["dead_tuples"], r["rss_peak_mb"]) == (0.0, 0.0)


def test_b5_fails_on_a_producer_rate_that_was_not_measured(tmp_path):
    drain = write(tmp_path / "b5.json", '{"bench":"B5","seconds":2.0,"events_per_s":500.0}\n')
    with pytest.raises(ValueError):
        record.b5(drain, str(tmp_path / "results.jsonl"), "", "800", "12.5", "0", "0")


WALDUMP = """\
Type                                           N      (%)          Record size      (%)             FPI size      (%)        Combined size      (%)
----                                           -      ---          -----------      ---             --------      ---        -------------      ---
XLOG                                           3 (  0.00)                  150 (  0.00)                    0 (  0.00)                  150 (  0.00)
Heap                                        4900 ( 35.00)               500000 ( 40.00)                27000 ( 80.00)               527000 ( 43.00)
Btree                                       9200 ( 65.00)               680000 ( 60.00)                 9000 ( 20.00)               689000 ( 57.00)
                                        --------                      --------                      --------                      --------
Total                                      14103                       1180150 [97.00%]                36000 [3.00%]              1216150 [100%]
"""


def test_wal_by_type_reads_pg_waldump_stats_per_event_largest_first(tmp_path):
    by = record.wal_by_type(write(tmp_path / "b9.waldump", WALDUMP), 1000)
    assert list(by) == ["Btree", "Heap", "XLOG"]  # no "Total", no header
    assert by["Btree"] == {"records_per_event": 9.2, "bytes_per_event": 689.0, "fpi_bytes_per_event": 9.0}
    assert record.wal_by_type(str(tmp_path / "absent"), 1000) == {}


def test_b9_divides_each_phase_by_the_events_and_subtracts_the_plain_capture(tmp_path, capsys):
    write(tmp_path / "b9.waldump", WALDUMP)
    write(tmp_path / "b9.bench_orders.waldump",
          "Heap   2000 ( 60.00)  300000 ( 60.00)  1000 ( 80.00)  301000 ( 50.00)\n"
          "Btree  3000 ( 40.00)  200000 ( 35.00)     0 ( 20.00)  200000 ( 47.00)\n")
    write(tmp_path / "b9.bench_orders_plain.waldump",
          "Heap   1000 ( 60.00)  150000 ( 60.00)  1000 ( 80.00)  151000 ( 50.00)\n")
    drain = write(tmp_path / "b9.json", '{"seconds":0.5,"events_per_s":2000.0,"bad":0}\n')
    results = tmp_path / "results.jsonl"
    record.b9(drain, str(results), "1000", "1100000", "1636000", "1242000", "0", str(tmp_path / "b9.waldump"), "0.25", "80000")
    (r,) = lines(results)
    assert r["bench"] == "B9" and r["events"] == 1000 and r["load"] == LOAD
    assert (r["drain_s"], r["events_per_s"], r["bad"]) == (0.5, 2000.0, 0)
    assert (r["plain_bytes_per_row"], r["capture_bytes_per_event"], r["delivery_bytes_per_event"]) == (1100.0, 536.0, 1242.0)
    assert (r["checkpoints_during_delivery"], r["receiver_cpu_s"], r["vacuum_bytes_per_event"]) == (0, 0.25, 80.0)
    assert r["capture_by_record_type"] == {
        "Heap": {"records_per_event": 1.0, "bytes_per_event": 150.0, "fpi_bytes_per_event": 0.0},
        "Btree": {"records_per_event": 3.0, "bytes_per_event": 200.0, "fpi_bytes_per_event": 0.0},
    }
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("  WAL bytes per row: plain insert 1100, capture adds 536, delivery path 1242 per delivered event "
                      "(0 checkpoints during it); drain 2000 events/s")
    assert out[2] == "  delivery-path WAL per event by record type: Btree 689 (9.2 rec), Heap 527 (4.9 rec)"
    # In the order of the tracked inserts' own WAL, largest first.
    assert out[3] == ("  capture's WAL per event by record type (tracked minus plain): "
                      "Heap +150 (+1.0 rec, FPI +0), Btree +200 (+3.0 rec, FPI +0)")


def test_b9_without_a_drain_line_or_dumps_records_none_and_no_breakdown(tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    record.b9(str(tmp_path / "absent.json"), str(results), "10", "1000", "1500", "2000", "1",
              str(tmp_path / "b9.waldump"), "0", "0")
    (r,) = lines(results)
    assert (r["drain_s"], r["events_per_s"]) == (None, None) and "bad" not in r
    assert r["wal_by_record_type"] == {} and r["capture_by_record_type"] == {}
    assert capsys.readouterr().out.splitlines()[0].endswith("(1 checkpoints during it); drain ?")


def b11_state(succeeded, functions):
    return json.dumps({"succeeded": succeeded, "functions": functions,
                       "sessions": {"11": "webhookd claim", "12": "webhookd record", "13": "webhookd claim"}})


def test_b11_charges_cpu_ticks_per_delivered_event_and_names_the_sessions(tmp_path, capsys):
    before = write(tmp_path / "before", b11_state(100, {"claim": [10, 5.0, 4.0], "emit": [3, 1.0, 1.0]}))
    after = write(tmp_path / "after", b11_state(1100, {"claim": [1260, 655.0, 504.0], "record": [1000, 250.0, 200.0],
                                                       "emit": [3, 1.0, 1.0]}))
    results = tmp_path / "results.jsonl"
    # 100 ticks/s: 100 ticks are 1 s, over 1,000 delivered events 1,000 µs each.
    record.b11(str(results), before, after, '{"11": 20, "12": 10, "13": 20, "99": 5}', "100", "100", "15", "5", "30",
               "10.0", "1000", "100", "10", "on", "8", "portable")
    (r,) = lines(results)
    assert (r["rate"], r["secs"], r["sync"], r["clients"], r["committed"], r["delivered"]) == (100, 10, "on", 8, 1000, 1000)
    assert r["edition"] == "portable"
    assert r["pg_cpu_us_per_event"] == 1000.0 and r["pg_cores"] == 0.1
    assert r["webhookd_sessions_us_per_event"] == {"webhookd claim": 400.0, "webhookd record": 100.0, "?": 50.0}
    assert r["claim_share"] == 0.4 and r["webhookd_sessions_share"] == 0.55
    assert (r["producer_backends_us_per_event"], r["webhookd_us_per_event"], r["receiver_us_per_event"]) == (300.0, 150.0, 50.0)
    # Only functions called in the window, most calls per event first.
    assert list(r["functions"]) == ["claim", "record"]
    assert r["functions"]["claim"] == {"calls_per_event": 1.25, "ms_per_call": 0.52, "self_ms_per_call": 0.4}
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "  1000 commits, 1000 delivered in 10.0 s; PostgreSQL CPU 1000 us per delivered event (0.10 cores)"
    assert out[-2:] == ["  webhook.claim(): 1.25 calls per event, 0.520 ms per call",
                        "  webhook.record(): 1.00 calls per event, 0.250 ms per call"]


def test_b11_sessions_prints_the_pids_of_webhookds_sessions(tmp_path, capsys):
    record.b11_sessions(write(tmp_path / "state", b11_state(0, {})))
    assert capsys.readouterr().out == "11 12 13\n"


def b8_files(tmp_path, i, db, wall, step, out="step output\n"):
    names = [tmp_path / f"b8.{k}.{i}" for k in ("db", "wall", "step")] + [tmp_path / f"b8.step.{i}.out"]
    for path, text in zip(names, (db, wall, step, out)):
        if text is not None:
            path.write_text(text)
    return [str(p) for p in names]


STEP = json.dumps({"p50_ms": 3.25, "p99_ms": 20.5, "p999_ms": 40.0, "max_ms": 50.0, "committed_per_s": 1999.5,
                   "delivered_per_s": 1998.0, "missing": 0, "late_starts": 0, "bad": 0,
                   "timeline": [{"t_s": 0, "p99_ms": 20.0}, {"t_s": 5, "p99_ms": 21.0}]})


def test_b8_record_writes_a_sample_to_the_results_and_the_soaks_samples(tmp_path, capsys):
    files = b8_files(tmp_path, 3, "75.5 209715200 100 900 9 2 10 30 0.52 0.61 0.70\n", "60.000000 30.250000\n",
                     "{}\n" + STEP + "\n")
    results, samples = tmp_path / "results.jsonl", tmp_path / "samples.jsonl"
    record.b8_record("3", "30", *files, str(results), str(samples))
    (r,) = lines(results)
    assert lines(samples) == [r]
    assert (r["bench"], r["phase"], r["i"], r["t_s"], r["webhook_bytes"]) == ("B8", "sample", 3, 75.5, 209715200)
    assert (r["dead_tuples"], r["live_tuples"], r["generations"], r["backlog"]) == (100, 900, 9, 30)
    assert (r["oldest_generation"], r["newest_generation"], r["load"]) == (2, 10, "0.52 0.61 0.70")
    assert (r["p50_ms"], r["p99_ms"], r["missing"], r["gap_s"]) == (3.25, 20.5, 0, 0.25)
    # The step's buckets on the soak's clock: its launch, 0.2 s, then the bucket's own time.
    assert r["timeline"] == [{"t_s": 60.2, "p99_ms": 20.0}, {"t_s": 65.2, "p99_ms": 21.0}]
    assert capsys.readouterr().out == (
        "  t    76 s: webhook  200.0 MB, 100 dead / 900 live tuples, 9 generations (k 2..10), backlog 30 | "
        "p50 3.2 p99 20.5 ms, 2000 committed/s, 0 missing, gap 0.25 s\n")


def test_b8_record_of_a_failed_query_and_a_step_without_a_line(tmp_path, capsys):
    files = b8_files(tmp_path, 4, "105.5 0.52 0.61 0.70\n", "90.0 30.5\n", "",
                     "one\ntwo\nerror: connection refused\nlast\n")
    results = tmp_path / "results.jsonl"
    record.b8_record("4", "30", *files, str(results), str(tmp_path / "samples.jsonl"))
    (r,) = lines(results)
    assert r["t_s"] == 105.5 and r["load"] == "0.52 0.61 0.70"
    assert [r[k] for k in ("webhook_bytes", "dead_tuples", "backlog", "p99_ms", "missing")] == [None] * 5
    assert r["timeline"] == []
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("  t   106 s: webhook ? MB, ? dead / ? live tuples")
    assert out[1] == "    (no result from step 4): two | error: connection refused | last"


def test_b8_record_with_no_files_at_all(tmp_path):
    results = tmp_path / "results.jsonl"
    record.b8_record("1", "30", *[str(tmp_path / n) for n in ("db", "wall", "step", "out")], str(results),
                     str(tmp_path / "samples.jsonl"))
    (r,) = lines(results)
    assert (r["t_s"], r["gap_s"], r["timeline"], r["load"]) == (None, None, [], "")


def soak(tmp_path, sizes, dead=1000, live=9000):
    rows = [{"i": i + 1, "webhook_bytes": s, "dead_tuples": dead, "live_tuples": live, "generations": 9,
             "oldest_generation": i, "backlog": 10 * i, "missing": 0, "gap_s": 0.1, "p50_ms": 3.0,
             "p99_ms": 20.0 if i < len(sizes) // 2 else 30.0} for i, s in enumerate(sizes)]
    return write(tmp_path / "samples.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def summary(tmp_path, samples):
    results = tmp_path / "results.jsonl"
    record.b8_summary(samples, str(results), "2000", "30", "2 minutes", "00:00:15", "5s", "10", "on")
    return lines(results)[-1]


MB = 1048576


def test_b8_summary_judges_the_last_half_flat_by_the_goal_table(tmp_path, capsys):
    s = summary(tmp_path, soak(tmp_path, [10 * MB, 100 * MB, 200 * MB, 210 * MB, 200 * MB, 220 * MB, 200 * MB, 240 * MB]))
    assert (s["bench"], s["phase"], s["samples"], s["secs"], s["autovacuum"]) == ("B8", "summary", 8, 240, "on")
    assert s["size_ratio_last_10min"] == 1.2 and s["flat"] is True  # the goal's bound is in
    assert s["size_peak_ratio"] == 240 / 220
    assert (s["bytes_min_last_half"], s["bytes_max_last_half"], s["bytes_max"]) == (200 * MB, 240 * MB, 240 * MB)
    assert (s["dead_ratio"], s["dead_share_max_last_half"]) == (1.0, 0.1)
    assert (s["p99_first_half_median"], s["p99_second_half_median"], s["p99_drift"]) == (20.0, 30.0, 1.5)
    assert (s["generations_max"], s["oldest_generation_at_end"], s["backlog_max"], s["missing"]) == (9, 7, 70, 0)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("  schema webhook over the last half (4 samples): 200.0–240.0 MB, max/min 1.20: flat (≤ 1.2); "
                      "peak of the last quarter / of the third 1.09")
    assert out[2] == "  p99 commit → receipt: median 20.0 ms over the first half, 30.0 ms over the second (x1.50); p50 3.0 → 3.0 ms"


def test_b8_summary_past_the_goal_is_not_flat(tmp_path, capsys):
    s = summary(tmp_path, soak(tmp_path, [200 * MB, 200 * MB, 200 * MB, 250 * MB]))
    assert s["size_ratio_last_10min"] == 1.25 and s["flat"] is False
    assert "max/min 1.25: NOT flat (> 1.2);" in capsys.readouterr().out


def test_b8_summary_of_no_samples_is_not_flat_and_has_no_figures(tmp_path, capsys):
    s = summary(tmp_path, write(tmp_path / "samples.jsonl", ""))
    assert s["samples"] == 0 and s["flat"] is False and s["missing"] == 0
    assert s["size_ratio_last_10min"] is None and s["p99_drift"] is None and s["load"] == LOAD
    assert "max/min ?: NOT flat" in capsys.readouterr().out


def test_last_fields_prints_fields_of_the_last_line(tmp_path, capsys):
    record.last_fields(write(tmp_path / "b10.json", '{"seconds": 1}\n{"seconds": 2.25, "events_per_s": 8886.7}\n'),
                       "seconds", "events_per_s")
    assert capsys.readouterr().out == "2.25 8886.7\n"


def test_the_command_line_passes_arguments_in_the_functions_order(tmp_path, capsys):
    drain = write(tmp_path / "b5.json", '{"seconds":2.0,"events_per_s":500.0}\n')
    results = tmp_path / "results.jsonl"
    assert main(["b5", drain, str(results), "1000", "800", "12.5", "", "6.7"]) == 0
    (r,) = lines(results)
    assert (r["idle_tps"], r["drain_tps"], r["dead_tuples"], r["rss_peak_mb"]) == (1000.0, 800.0, 0.0, 6.7)
    assert main(["last-fields", drain, "events_per_s", "seconds"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "500.0 2.0"
    with pytest.raises(SystemExit):
        main(["b5", drain, str(results)])  # too few arguments: a usage error, nothing written
    assert len(lines(results)) == 1
