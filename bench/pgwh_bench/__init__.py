"""The benchmarks' Python: everything scripts/bench.sh does not do in the
shell or in pgwh-bench (Rust, bench/src).

# Layout

- `goals.py`: the goal table, the one place a goal's threshold is written.
- `record.py`: the result lines bench.sh writes from its temporary files
  (B5, B8, B9, B11); standard library only.
- `report.py`: results.jsonl → BENCHMARKS.md's generated block and the
  plots in docs/bench/ (matplotlib).
- `prose.py`: BENCHMARKS.md's prose checked against the goal table.
- `__main__.py`: `python3 -m pgwh_bench COMMAND`, one command each.

Tests: bench/test_*.py (pytest, no database).
"""
