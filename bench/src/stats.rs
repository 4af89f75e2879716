//! Percentiles and the JSON lines every benchmark appends to its results
//! file (rendered into BENCHMARKS.md and plots by bench/report.py).

use std::io::Write;
use std::time::Duration;

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
