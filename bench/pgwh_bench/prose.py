"""BENCHMARKS.md's prose against the goal table (`make lint`).

The goal table of the generated block is written from goals.py; the prose
around it is written by hand, so it is checked: outside the generated block
every bound written as a comparison and a number ("≤ 40 µs", "p99 < 50 ms")
must stand in a benchmark's own section (a heading whose first word names
it: "### B7 dispatcher cost") and be one of that benchmark's goals, and
each goal with a threshold must be stated in its benchmark's section.
Anything else is better written without a comparison sign.
"""

import re

from .goals import GOALS

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
# A comparison sign and a number; not the ASCII arrows "->" and "=>".
BOUND = re.compile(r"(?<![-=])([≤≥<>])\s*(\d[\d,]*(?:\.\d+)?)")
HEADING = re.compile(r"^(#{1,3})\s+(\S+)")


def without_generated(text):
    """The text with the generated block's lines blanked (line numbers kept)."""
    if BEGIN not in text or END not in text:
        return text
    head, rest = text.split(BEGIN, 1)
    block, tail = rest.split(END, 1)
    return head + BEGIN + "\n" * block.count("\n") + END + tail


def sections(text):
    """(line number, benchmark or None, line) for every line: the benchmark
    whose section the line is in."""
    benches = {g.bench for g in GOALS}
    bench = None
    for n, line in enumerate(text.splitlines(), 1):
        m = HEADING.match(line)
        if m:
            bench = m.group(2) if len(m.group(1)) == 3 and m.group(2) in benches else None
        yield n, bench, line


def number(s):
    return float(s.replace(",", ""))


def check(text, name="BENCHMARKS.md"):
    """Problems of `text` (a BENCHMARKS.md), as lines to print; none: it agrees."""
    problems = []
    stated = set()
    for n, bench, line in sections(without_generated(text)):
        for m in BOUND.finditer(line):
            op, value = m.group(1), number(m.group(2))
            bound = m.group(0)
            if bench is None:
                problems.append(f"{name}:{n}: '{bound}' outside a benchmark's section: "
                                "a goal is stated in its benchmark's section, anything else without a comparison sign")
                continue
            mine = [g for g in GOALS if g.bench == bench and "{goal}" in g.template]
            same = [g for g in mine if g.op == op and g.limit == value]
            if same:
                stated.update(g.key for g in same)
                continue
            near = [g for g in mine if g.op == op]
            table = ", ".join(f"{g.key} {g.bound}" for g in near) or "no such goal"
            problems.append(f"{name}:{n}: {bench} '{bound}' is not a goal of the goal table (bench/pgwh_bench/goals.py: {table})")
    for g in GOALS:
        if "{goal}" in g.template and g.key not in stated:
            problems.append(f"{name}: {g.bench}'s section does not state its goal {g.key} ({g.bound})")
    return problems
