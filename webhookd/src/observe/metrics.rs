//! Prometheus metrics, through prometheus-client (the registry, the types
//! and the text exposition format are the crate's).
//!
//! Per-endpoint series carry the endpoint's id as their only label
//! (`endpoint="12"`). Cardinality is bounded: the first `max_endpoints`
//! endpoints seen get series of their own, any later one is counted under
//! `endpoint="other"` (`--metrics-max-endpoints`).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Seconds: from a fast loopback answer to a timeout.
const ATTEMPT_BUCKETS: [f64; 12] = [
    0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Seconds: a database round trip of the claim or the recorder.
const ROUND_TRIP_BUCKETS: [f64; 12] = [
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];
/// What render() writes: OpenMetrics text (Prometheus scrapes it).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `--metrics-max-endpoints`' default.
pub const DEFAULT_MAX_ENDPOINTS: usize = 200;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    endpoint: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    endpoint: String,
    /// `2xx` ... `5xx`, `1xx`, or `none` (no answer: DNS, connect, TLS,
    /// timeout; or refused before sending).
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabel {
    connection: &'static str,
}

/// What an attempt's outcome was for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Retry,
    Dead,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Retry => "retry",
            Outcome::Dead => "dead",
        }
    }
}

fn class_of(status: Option<u16>) -> &'static str {
    match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => "none",
    }
}

type HistogramFamily = Family<EndpointLabel, Histogram, fn() -> Histogram>;

fn attempt_histogram() -> Histogram {
    Histogram::new(ATTEMPT_BUCKETS.iter().copied())
}

pub struct Metrics {
    registry: Registry,
    /// endpoint id -> its label (its id, or "other" past the cap).
    labels: Mutex<HashMap<i64, String>>,
    max_endpoints: usize,
    deliveries: Family<OutcomeLabels, Counter>,
    responses: Family<ClassLabels, Counter>,
    attempt_duration: HistogramFamily,
    endpoint_backlog: Family<EndpointLabel, Gauge>,
    endpoint_oldest: Family<EndpointLabel, Gauge<f64, AtomicU64>>,
    circuit_open: Family<EndpointLabel, Gauge>,
    /// Endpoints whose circuit was ever reported open (shown as 0 when closed).
    circuit_seen: Mutex<std::collections::HashSet<String>>,
    /// Endpoints that ever had a backlog (shown as 0 when it is empty).
    backlog_seen: Mutex<std::collections::HashSet<String>>,
    connected: Family<ConnectionLabel, Gauge>,
    claim_duration: Histogram,
    record_duration: Histogram,
    claims: Counter,
    circuits_opened: Counter,
    held_back: Counter,
    in_flight: Gauge,
    backlog: Gauge,
    oldest_pending: Gauge<f64, AtomicU64>,
}

impl Metrics {
    pub fn new(max_endpoints: usize) -> Arc<Self> {
        let mut registry = Registry::with_prefix("webhookd");
        let deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Delivery attempts by endpoint and what became of the delivery (succeeded, retry, dead)",
            deliveries.clone(),
        );
        let responses = Family::<ClassLabels, Counter>::default();
        registry.register(
            "http_responses",
            "Attempts by endpoint and HTTP status class (none: no answer)",
            responses.clone(),
        );
        let attempt_duration: HistogramFamily = Family::new_with_constructor(attempt_histogram);
        registry.register(
            "attempt_duration_seconds",
            "HTTP attempt duration by endpoint",
            attempt_duration.clone(),
        );
        let endpoint_backlog = Family::<EndpointLabel, Gauge>::default();
        registry.register(
            "endpoint_backlog",
            "Pending deliveries by endpoint (from the database)",
            endpoint_backlog.clone(),
        );
        let endpoint_oldest = Family::<EndpointLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "endpoint_oldest_pending_seconds",
            "Age of the endpoint's oldest pending delivery (from the database)",
            endpoint_oldest.clone(),
        );
        let circuit_open = Family::<EndpointLabel, Gauge>::default();
        registry.register(
            "circuit_open",
            "1 while this webhookd holds the endpoint's deliveries back (its circuit breaker is open)",
            circuit_open.clone(),
        );
        let connected = Family::<ConnectionLabel, Gauge>::default();
        registry.register(
            "database_connected",
            "1 while the connection (claim, record, listen, metrics) is up",
            connected.clone(),
        );
        let claim_duration = Histogram::new(ROUND_TRIP_BUCKETS.iter().copied());
        registry.register(
            "claim_duration_seconds",
            "webhook.claim() round trips",
            claim_duration.clone(),
        );
        let record_duration = Histogram::new(ROUND_TRIP_BUCKETS.iter().copied());
        registry.register(
            "record_duration_seconds",
            "webhook.record() round trips (a batch of outcomes)",
            record_duration.clone(),
        );
        let claims = Counter::default();
        registry.register("claims", "Claim round trips", claims.clone());
        let circuits_opened = Counter::default();
        registry.register(
            "circuit_opened",
            "Times a failing endpoint was paused",
            circuits_opened.clone(),
        );
        let held_back = Counter::default();
        registry.register(
            "held_back",
            "Claimed deliveries released unattempted because their endpoint was paused",
            held_back.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("in_flight", "Requests in flight", in_flight.clone());
        let backlog = Gauge::default();
        registry.register(
            "backlog",
            "Pending deliveries in the database",
            backlog.clone(),
        );
        let oldest_pending = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "oldest_pending_seconds",
            "Age of the oldest pending delivery",
            oldest_pending.clone(),
        );
        Arc::new(Metrics {
            registry,
            labels: Mutex::new(HashMap::new()),
            max_endpoints,
            deliveries,
            responses,
            attempt_duration,
            endpoint_backlog,
            endpoint_oldest,
            circuit_open,
            circuit_seen: Mutex::new(std::collections::HashSet::new()),
            backlog_seen: Mutex::new(std::collections::HashSet::new()),
            connected,
            claim_duration,
            record_duration,
            claims,
            circuits_opened,
            held_back,
            in_flight,
            backlog,
            oldest_pending,
        })
    }

    /// The endpoint's label: its id while under the cap, else "other".
    fn label(&self, endpoint: i64) -> String {
        let Ok(mut labels) = self.labels.lock() else {
            return "other".into();
        };
        if let Some(l) = labels.get(&endpoint) {
            return l.clone();
        }
        let l = if labels.len() < self.max_endpoints {
            endpoint.to_string()
        } else {
            "other".to_string()
        };
        labels.insert(endpoint, l.clone());
        l
    }

    /// One HTTP attempt (or one refused before sending) and what it made of
    /// the delivery.
    pub fn attempt(&self, endpoint: i64, status: Option<u16>, took: Duration, outcome: Outcome) {
        let endpoint = self.label(endpoint);
        self.deliveries
            .get_or_create(&OutcomeLabels {
                endpoint: endpoint.clone(),
                outcome: outcome.label(),
            })
            .inc();
        self.responses
            .get_or_create(&ClassLabels {
                endpoint: endpoint.clone(),
                class: class_of(status),
            })
            .inc();
        // Every endpoint attempted shows its circuit, closed until opened.
        let _ = self.circuit_open.get_or_create(&EndpointLabel {
            endpoint: endpoint.clone(),
        });
        self.attempt_duration
            .get_or_create(&EndpointLabel { endpoint })
            .observe(took.as_secs_f64());
    }

    pub fn claim(&self, took: Duration) {
        self.claims.inc();
        self.claim_duration.observe(took.as_secs_f64());
    }

    pub fn record(&self, took: Duration) {
        self.record_duration.observe(took.as_secs_f64());
    }

    pub fn circuit_opened(&self) {
        self.circuits_opened.inc();
    }

    /// The endpoints whose circuit is open now (the others are closed).
    pub fn circuits(&self, open: &[i64]) {
        let Ok(mut seen) = self.circuit_seen.lock() else {
            return;
        };
        // Called before every claim: nothing to do while no circuit ever opened.
        if open.is_empty() && seen.is_empty() {
            return;
        }
        let open: std::collections::HashSet<String> =
            open.iter().map(|id| self.label(*id)).collect();
        seen.extend(open.iter().cloned());
        for endpoint in seen.iter() {
            let up = open.contains(endpoint);
            self.circuit_open
                .get_or_create(&EndpointLabel {
                    endpoint: endpoint.clone(),
                })
                .set(i64::from(up));
        }
    }

    pub fn held_back(&self) {
        self.held_back.inc();
    }

    pub fn in_flight(&self, delta: i64) {
        self.in_flight.inc_by(delta);
    }

    /// The backlog from the database: the total and per endpoint
    /// (endpoint id, pending, age of the oldest in seconds).
    pub fn backlog(
        &self,
        total: i64,
        oldest: Option<f64>,
        per_endpoint: &[(i64, i64, Option<f64>)],
    ) {
        self.backlog.set(total);
        self.oldest_pending.set(oldest.unwrap_or(0.0));
        let mut by_label: HashMap<String, (i64, f64)> = HashMap::new();
        for (id, n, age) in per_endpoint {
            let e = by_label.entry(self.label(*id)).or_default();
            e.0 += n;
            e.1 = e.1.max(age.unwrap_or(0.0));
        }
        // An endpoint whose backlog emptied shows 0 rather than vanishing.
        let Ok(mut seen) = self.backlog_seen.lock() else {
            return;
        };
        seen.extend(by_label.keys().cloned());
        for endpoint in seen.iter() {
            let (n, age) = by_label.get(endpoint).copied().unwrap_or((0, 0.0));
            let l = EndpointLabel {
                endpoint: endpoint.clone(),
            };
            self.endpoint_backlog.get_or_create(&l).set(n);
            self.endpoint_oldest.get_or_create(&l).set(age);
        }
    }

    pub fn render(&self) -> String {
        for (connection, up) in crate::db::connection_states() {
            self.connected
                .get_or_create(&ConnectionLabel { connection })
                .set(i64::from(up));
        }
        let mut s = String::new();
        if prometheus_client::encoding::text::encode(&mut s, &self.registry).is_err() {
            s.clear();
        }
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
            // Unnamed (parsed with the call), so that it works through any pooler.
            let r = c
                .query_typed(
                    "SELECT endpoint_id, count(*)::bigint, extract(epoch FROM now() - min(created_at))::float8 \
                       FROM webhook.deliveries WHERE status = 'pending' GROUP BY endpoint_id",
                    &[],
                )
                .await;
            match r {
                Ok(rows) => {
                    let per: Vec<(i64, i64, Option<f64>)> = rows
                        .iter()
                        .map(|r| (r.get(0), r.get(1), r.get(2)))
                        .collect();
                    let total = per.iter().map(|p| p.1).sum();
                    let oldest = per.iter().filter_map(|p| p.2).reduce(f64::max);
                    metrics.backlog(total, oldest, &per);
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
