//! Percentiles and the JSON lines every benchmark appends to its results
//! file (rendered into BENCHMARKS.md and plots by bench/pgwh_bench).

use std::io::Write;
use std::time::{Duration, Instant};

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50/p90/p99/p99.9/max in milliseconds, as a JSON object.
pub fn latency_json(sorted: &[Duration]) -> serde_json::Value {
    serde_json::json!({
        "p50_ms": ms(percentile(sorted, 0.5)),
        "p90_ms": ms(percentile(sorted, 0.9)),
        "p99_ms": ms(percentile(sorted, 0.99)),
        "p999_ms": ms(percentile(sorted, 0.999)),
        "max_ms": ms(sorted.last().copied().unwrap_or_default()),
    })
}

/// Latency over the run: for each `every` of commit time since `start`,
/// the p50/p99 of the events committed in it (where a disturbance starts
/// and ends, which one run-wide percentile cannot show).
pub fn timeline(
    start: Instant,
    timed: &[(Instant, Duration)],
    every: Duration,
) -> serde_json::Value {
    let mut buckets: Vec<Vec<Duration>> = Vec::new();
    for (at, lat) in timed {
        let i = (at.saturating_duration_since(start).as_secs_f64() / every.as_secs_f64()) as usize;
        if buckets.len() <= i {
            buckets.resize_with(i + 1, Vec::new);
        }
        buckets[i].push(*lat);
    }
    let rows: Vec<serde_json::Value> = buckets
        .iter_mut()
        .enumerate()
        .filter(|(_, b)| !b.is_empty())
        .map(|(i, b)| {
            b.sort();
            serde_json::json!({
                "t_s": i as f64 * every.as_secs_f64(),
                "n": b.len(),
                "p50_ms": ms(percentile(b, 0.5)),
                "p99_ms": ms(percentile(b, 0.99)),
            })
        })
        .collect();
    serde_json::Value::Array(rows)
}

pub fn append(path: Option<&std::path::Path>, record: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(path) = path {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(f, "{record}")?;
    }
    Ok(())
}
