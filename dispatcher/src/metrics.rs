//! Prometheus metrics, rendered by hand in the text exposition format (a
//! handful of counters and one histogram do not justify a registry crate).

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const BUCKETS: [f64; 12] = [
    0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
pub struct Metrics {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub dead: AtomicU64,
    pub claims: AtomicU64,
    /// Times an endpoint's circuit opened (it got paused).
    pub circuits_opened: AtomicU64,
    /// Claimed deliveries given back unattempted because their endpoint was paused.
    pub held_back: AtomicU64,
    pub in_flight: AtomicI64,
    pub backlog: AtomicI64,
    /// Milliseconds; -1 when nothing is pending.
    pub oldest_pending_ms: AtomicI64,
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Metrics {
            oldest_pending_ms: AtomicI64::new(-1),
            ..Default::default()
        })
    }

    pub fn observe_attempt(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        s.push_str("# HELP webhookd_deliveries_total Delivery attempts by outcome.\n");
        s.push_str("# TYPE webhookd_deliveries_total counter\n");
        let _ = writeln!(
            s,
            "webhookd_deliveries_total{{outcome=\"succeeded\"}} {}",
            g(&self.delivered)
        );
        let _ = writeln!(
            s,
            "webhookd_deliveries_total{{outcome=\"retry\"}} {}",
            g(&self.retried)
        );
        let _ = writeln!(
            s,
            "webhookd_deliveries_total{{outcome=\"dead\"}} {}",
            g(&self.dead)
        );
        s.push_str("# HELP webhookd_claims_total Claim round trips.\n# TYPE webhookd_claims_total counter\n");
        let _ = writeln!(s, "webhookd_claims_total {}", g(&self.claims));
        s.push_str("# HELP webhookd_circuit_opened_total Times a failing endpoint was paused.\n# TYPE webhookd_circuit_opened_total counter\n");
        let _ = writeln!(
            s,
            "webhookd_circuit_opened_total {}",
            g(&self.circuits_opened)
        );
        s.push_str("# HELP webhookd_held_back_total Claimed deliveries released unattempted because their endpoint was paused.\n# TYPE webhookd_held_back_total counter\n");
        let _ = writeln!(s, "webhookd_held_back_total {}", g(&self.held_back));
        s.push_str(
            "# HELP webhookd_in_flight Requests in flight.\n# TYPE webhookd_in_flight gauge\n",
        );
        let _ = writeln!(
            s,
            "webhookd_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        s.push_str("# HELP webhookd_backlog Pending deliveries in the database.\n# TYPE webhookd_backlog gauge\n");
        let _ = writeln!(
            s,
            "webhookd_backlog {}",
            self.backlog.load(Ordering::Relaxed)
        );
        s.push_str("# HELP webhookd_oldest_pending_seconds Age of the oldest pending delivery.\n");
        s.push_str("# TYPE webhookd_oldest_pending_seconds gauge\n");
        let oldest = self.oldest_pending_ms.load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "webhookd_oldest_pending_seconds {}",
            if oldest < 0 {
                0.0
            } else {
                oldest as f64 / 1000.0
            }
        );
        s.push_str("# HELP webhookd_attempt_duration_seconds HTTP attempt latency.\n");
        s.push_str("# TYPE webhookd_attempt_duration_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "webhookd_attempt_duration_seconds_bucket{{le=\"{b}\"}} {}",
                g(&self.buckets[i])
            );
        }
        let count = g(&self.latency_count);
        let _ = writeln!(
            s,
            "webhookd_attempt_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            s,
            "webhookd_attempt_duration_seconds_sum {}",
            g(&self.latency_sum_us) as f64 / 1e6
        );
        let _ = writeln!(s, "webhookd_attempt_duration_seconds_count {count}");
        s
    }
}

/// Refresh backlog gauges from the database every `every`.
pub async fn poll_backlog(
    database: crate::db::Database,
    metrics: Arc<Metrics>,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut client = None;
    let mut backoff = crate::db::Backoff::default();
    loop {
        if client
            .as_ref()
            .is_none_or(|c: &tokio_postgres::Client| c.is_closed())
        {
            client = crate::db::connect_with_backoff("metrics", &mut backoff, &shutdown, || {
                database.connect("webhookd metrics")
            })
            .await;
        }
        if let Some(c) = client.as_ref() {
            let r = c
                .query_one(
                    "SELECT count(*)::bigint, coalesce((extract(epoch FROM now() - min(created_at)) * 1000)::bigint, -1) \
                       FROM webhook.deliveries WHERE status = 'pending'",
                    &[],
                )
                .await;
            match r {
                Ok(row) => {
                    metrics.backlog.store(row.get(0), Ordering::Relaxed);
                    metrics
                        .oldest_pending_ms
                        .store(row.get(1), Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::debug!(error = %crate::db::Report(&e), "backlog query failed");
                    client = None;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
