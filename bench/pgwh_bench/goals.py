"""The benchmarks' goals: the one table the report judges by, the plots draw
their dashed lines from, and BENCHMARKS.md's prose is checked against
(`prose.py`, run by `make lint`).

Each goal is stated once: its threshold is written here as BENCHMARKS.md
shows it ("0.80", "8,000"), and the text of the goal table is made from it.
"""

from dataclasses import dataclass

# The comparisons a goal can make, and their negations (for "not met" text).
COMPARE = {
    "≤": lambda value, limit: value <= limit,
    "≥": lambda value, limit: value >= limit,
    "<": lambda value, limit: value < limit,
    ">": lambda value, limit: value > limit,
}
NEGATION = {"≤": ">", "≥": "<", "<": "≥", ">": "≤"}


@dataclass(frozen=True)
class Goal:
    key: str
    bench: str
    op: str
    threshold: str
    template: str

    @property
    def limit(self):
        return float(self.threshold.replace(",", ""))

    @property
    def bound(self):
        """The comparison and threshold as written: "≤ 40"."""
        return f"{self.op} {self.threshold}"

    def text(self, **details):
        """The goal as the goal table shows it; `details` fill the template's
        other fields (the number of clients, the rate of that run)."""
        return self.template.format(goal=self.bound, **details)

    def met(self, value):
        """Whether a measured value meets the goal. A missing value (None or
        NaN) never does: NaN compares false whatever the comparison."""
        return value is not None and COMPARE[self.op](value, self.limit)


# Order: as the goal table of BENCHMARKS.md lists them.
GOALS = [
    Goal("B1.plain", "B1", "≥", "0.80", "B1 {goal}× plain (INSERT, sync off, 8 clients)"),
    Goal("B1.naive", "B1", "≥", "1.4", "B1 {goal}× the naive trigger"),
    # Judged on pg_webhook's ratio to plain minus PgQ's.
    Goal("B1.pgq", "B1", ">", "0", "B1 ahead of PgQ"),
    Goal("B1.plain_sync_on", "B1", "≥", "0.95", "B1 {goal}× plain (sync on, 8 clients)"),
    Goal("B1.bulk", "B1", "≤", "3", "B1 bulk {kind} {goal}× plain time"),
    Goal("B2.notify", "B2", "≥", "0.95", "B2 NOTIFY vs poll-only {goal}× ({clients} clients, sync on)"),
    Goal("B3.rate", "B3", "≥", "8,000", "B3 {goal} events/s"),
    Goal("B3.baseline", "B3", "≥", "3", "B3 {goal}× the baseline"),
    # Not a row of the goal table: what makes a B3 step "sustained", decided
    # by pgwh-bench (bench/src/main.rs; test_goals.py checks they agree).
    Goal("B3.sustained_p99", "B3", "<", "50", "B3 p99 commit → 2xx {goal} ms"),
    Goal("B4.p50", "B4", "≤", "2", "B4 p50 {goal} ms at 50 % load"),
    Goal("B4.p99", "B4", "≤", "10", "B4 p99 {goal} ms at 50 % load"),
    Goal("B4.baseline", "B4", "≥", "100", "B4 {goal}× lower p50 than the baseline (each at 50 % of its max)"),
    Goal("B5.drain", "B5", "≤", "60", "B5 backlog drained in {goal} s"),
    Goal("B5.producer", "B5", "≥", "0.8", "B5 producer {goal}× idle during the drain"),
    # Measured during B5's drain, judged as webhookd's cost (B7).
    Goal("B7.rss_backlog", "B7", "≤", "100", "B7 RSS {goal} MB in B5"),
    Goal("B6.isolation", "B6", "≤", "1.2", "B6 healthy p99 {goal}× all-healthy"),
    Goal("B7.rss", "B7", "≤", "50", "B7 RSS {goal} MB steady"),
    Goal("B7.cpu", "B7", "≤", "40", "B7 {goal} µs CPU per event"),
    Goal("L.latency", "L", "≤", "1", "L({case}) wanted event delivered {goal} s behind {rows:,} unwanted ones"),
    Goal("L.routing", "L", "≥", "100,000", "L routing of unmatched events {goal} events/s"),
    Goal("B8.flat", "B8", "≤", "1.2", "B8 schema size flat: max/min {goal} over the last half of the soak"),
    Goal("B9.wal", "B9", "≤", "350", "B9 delivery-path WAL {goal} bytes per delivered event"),
    Goal("B10.endpoints", "B10", "≥", "0.8", "B10 drain with 1,000 endpoints {goal}× one endpoint"),
    Goal("B11.cpu", "B11", "≤", "400", "B11 PostgreSQL CPU {goal} µs per event at {rate} commits/s"),
]

GOAL = {g.key: g for g in GOALS}
