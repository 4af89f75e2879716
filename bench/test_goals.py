"""The goal table (bench/pgwh_bench/goals.py), its copies that must agree
with it (pgwh-bench's sustained rule, BENCHMARKS.md's prose) and the goal
rows the report judges by it."""

import math
import re
from pathlib import Path

import pytest

from pgwh_bench.goals import COMPARE, GOAL, GOALS, NEGATION, Goal
from pgwh_bench.prose import check

REPO = Path(__file__).resolve().parent.parent


def test_each_goal_has_one_key_a_known_comparison_and_a_number():
    assert len(GOAL) == len(GOALS)
    for g in GOALS:
        assert g.op in COMPARE and NEGATION[NEGATION[g.op]] == g.op
        assert g.limit == float(g.threshold.replace(",", ""))
        assert g.key.split(".")[0] == g.bench


def test_a_goals_text_is_made_from_its_threshold():
    assert GOAL["B7.cpu"].text() == "B7 ≤ 40 µs CPU per event"
    assert GOAL["B1.plain"].text() == "B1 ≥ 0.80× plain (INSERT, sync off, 8 clients)"
    assert GOAL["B3.rate"].text() == "B3 ≥ 8,000 events/s"
    assert GOAL["B2.notify"].text(clients=32) == "B2 NOTIFY vs poll-only ≥ 0.95× (32 clients, sync on)"
    assert (GOAL["L.latency"].text(case="b", rows=100000)
            == "L(b) wanted event delivered ≤ 1 s behind 100,000 unwanted ones")


@pytest.mark.parametrize("op, at, past, before", [("≤", 40, 40.01, 39), ("≥", 0.8, 0.79, 0.81)])
def test_a_bound_written_with_or_equal_includes_the_threshold(op, at, past, before):
    g = Goal("X.x", "X", op, str(at), "{goal}")
    assert g.met(at) and g.met(before) and not g.met(past)


def test_a_strict_bound_excludes_the_threshold():
    assert not GOAL["B3.sustained_p99"].met(50) and GOAL["B3.sustained_p99"].met(49.99)
    assert not GOAL["B1.pgq"].met(0) and GOAL["B1.pgq"].met(0.01)


def test_a_missing_measurement_meets_no_goal():
    for g in GOALS:
        assert not g.met(None) and not g.met(math.nan)


def test_the_sustained_rule_of_pgwh_bench_is_the_goal_tables():
    main_rs = (REPO / "bench/src/main.rs").read_text()
    (bound,) = re.findall(r"let sustained = flat && p99 (<=?) ([\d.]+);", main_rs)
    g = GOAL["B3.sustained_p99"]
    assert ({"<": "<", "<=": "≤"}[bound[0]], float(bound[1])) == (g.op, g.limit)


def test_benchmarks_md_states_the_goal_tables_goals():
    assert check((REPO / "BENCHMARKS.md").read_text()) == []


DOC = """\
# Benchmarks

Prose that names no bound.

### B7 dispatcher cost

Goals: ≤ 40 µs CPU per event, RSS ≤ 50 MB steady and ≤ 100 MB during B5's drain.

<!-- bench:begin -->
| B7 ≤ 60 µs CPU per event | 53.1 µs | not met |
<!-- bench:end -->
"""


def only_b7(problems):
    return [p for p in problems if "B7" in p]


def test_the_prose_check_accepts_a_section_stating_its_goals_and_skips_the_generated_block():
    assert only_b7(check(DOC)) == []


def test_the_prose_check_names_a_bound_that_drifted_from_the_table():
    assert only_b7(check(DOC.replace("≤ 40 µs", "≤ 60 µs"))) == [
        "BENCHMARKS.md:7: B7 '≤ 60' is not a goal of the goal table "
        "(bench/pgwh_bench/goals.py: B7.rss_backlog ≤ 100, B7.rss ≤ 50, B7.cpu ≤ 40)",
        "BENCHMARKS.md: B7's section does not state its goal B7.cpu (≤ 40)",
    ]


def test_the_prose_check_names_a_goal_the_section_leaves_out():
    problems = only_b7(check(DOC.replace(", RSS ≤ 50 MB steady", "")))
    assert problems == ["BENCHMARKS.md: B7's section does not state its goal B7.rss (≤ 50)"]


def test_the_prose_check_names_a_bound_outside_any_benchmarks_section():
    problems = check(DOC.replace("Prose that names no bound.", "Runs take ≥ 5 minutes."))
    assert "BENCHMARKS.md:3: '≥ 5' outside a benchmark's section" in problems[0]


def test_the_prose_check_leaves_arrows_alone():
    assert only_b7(check(DOC.replace("Prose that names no bound.", "35.7 -> 57.0 µs, x => 2"))) == []


def test_the_report_judges_its_rows_by_the_goal_table():
    pytest.importorskip("matplotlib")
    from pgwh_bench.report import goal_rows

    r7 = {"rss_mb": 12.8, "cpu_us_per_event": 40.04}
    r8 = {"size_ratio_last_10min": 1.2}
    rows = goal_rows({}, {}, {}, {}, {}, r7, {}, r8, {}, {}, {})
    assert rows[2:] == [
        "| B7 RSS ≤ 50 MB steady | 12.8 MB | **met** |",
        "| B7 ≤ 40 µs CPU per event | 40.0 µs | not met |",
        "| B8 schema size flat: max/min ≤ 1.2 over the last half of the soak | 1.20 | **met** |",
    ]
