//! Telemetry: webhookd's logs (tracing-subscriber's fmt, text or JSON)
//! and, when an OTLP endpoint is configured, its own spans exported over
//! OTLP/HTTP (protobuf). Export is off by default.
//!
//! The spans: `deliver` (one per HTTP attempt, a client span whose parent
//! is the producing transaction's `traceparent` when the event has one),
//! `claim` and `record` (webhookd's database round trips) and `maintain`.
//! They are all made here, with target `webhookd::telemetry`: the log
//! output never shows them, only the exporter does, so a webhookd without
//! an OTLP endpoint pays one disabled-callsite check per span.
//!
//! Export runs on the batch processor's own thread with the blocking
//! reqwest client; its queue is bounded (`OTEL_BSP_MAX_QUEUE_SIZE`, 2,048
//! by default) and drops spans when full, so a slow or unreachable
//! collector never slows a delivery.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use clap::{Args, ValueEnum};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{filter_fn, FilterExt, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::pipeline::claim::Claimed;

/// The target of every span made here; the log layer leaves them out.
const TARGET: &str = "webhookd::telemetry";

/// How long one export may take (`OTEL_EXPORTER_OTLP_TIMEOUT`'s default).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long exiting waits for the last spans to be exported: well inside
/// a container runtime's stop grace period (10 s by default), which the
/// deliveries' own drain has used first.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where `webhookd run` exports its spans. The environment variables are
/// OpenTelemetry's own, so a collector's usual settings apply unchanged;
/// `OTEL_EXPORTER_OTLP_HEADERS` (for a collector's credentials),
/// `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG` and `OTEL_BSP_*` are
/// read by the exporter itself.
#[derive(Args, Debug, Clone, Default)]
pub struct OtlpArgs {
    /// Export webhookd's spans over OTLP/HTTP to this collector (its base
    /// URL: /v1/traces is added). Unset: no span leaves the process.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = collector_url)]
    pub otlp_endpoint: Option<url::Url>,
    /// The traces URL itself, used as given (wins over --otlp-endpoint).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", value_parser = collector_url)]
    pub otlp_traces_endpoint: Option<url::Url>,
    /// The service.name the spans carry.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "webhookd")]
    pub otlp_service_name: String,
}

fn collector_url(s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    match u.scheme() {
        "http" | "https" if u.has_host() => Ok(u),
        "http" | "https" => Err("the URL has no host".into()),
        other => Err(format!(
            "scheme {other:?}: OTLP/HTTP needs http:// or https:// (the gRPC transport is not built in)"
        )),
    }
}

impl OtlpArgs {
    /// The URL spans are POSTed to, if export is on: the traces URL as
    /// given, or the base URL with `v1/traces` added (OTLP's rule).
    pub fn traces_url(&self) -> Option<url::Url> {
        if let Some(u) = &self.otlp_traces_endpoint {
            return Some(u.clone());
        }
        let mut u = self.otlp_endpoint.clone()?;
        let path = format!("{}/v1/traces", u.path().trim_end_matches('/'));
        u.set_path(&path);
        Some(u)
    }
}

/// How often a collector that keeps failing is reported again.
const FAILING_REPORT_EVERY: Duration = Duration::from_secs(60);

/// The OTLP exporter, with its failures logged: the first one, then a
/// count at most once a minute, then the recovery (the SDK's own logs
/// would print one line per failed batch).
#[derive(Debug)]
struct Reported {
    inner: opentelemetry_otlp::SpanExporter,
    /// The collector's origin, which failures name instead of its URL
    /// (the URL may carry credentials).
    origin: String,
    url: String,
    failures: std::sync::Mutex<Failures>,
}

#[derive(Debug, Default)]
struct Failures {
    /// Batches not exported since the last report; None: exporting.
    unreported: Option<u64>,
    reported_at: Option<std::time::Instant>,
}

impl opentelemetry_sdk::trace::SpanExporter for Reported {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        let result = self.inner.export(batch).await;
        let Ok(mut f) = self.failures.lock() else {
            return result;
        };
        let now = std::time::Instant::now();
        match (&result, f.unreported) {
            (Ok(()), None) => {}
            (Ok(()), Some(n)) => {
                tracing::info!(collector = %self.origin, failed_batches = n, "spans are exported again");
                *f = Failures::default();
            }
            (Err(e), unreported) => {
                let n = unreported.unwrap_or(0) + 1;
                let due = f
                    .reported_at
                    .is_none_or(|at| now.duration_since(at) >= FAILING_REPORT_EVERY);
                if due {
                    let error = e.to_string().replace(&self.url, &self.origin);
                    tracing::warn!(
                        collector = %self.origin,
                        failed_batches = n,
                        error,
                        "spans could not be exported (dropped; deliveries go on)"
                    );
                    f.reported_at = Some(now);
                    f.unreported = Some(0);
                } else {
                    f.unreported = Some(n);
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(
        &mut self,
        timeout: Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Keeps the span exporter alive; dropping it flushes the spans still
/// queued (within `FLUSH_TIMEOUT`) and stops the export thread.
pub struct Guard(Option<SdkTracerProvider>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            if let Err(e) = p.shutdown_with_timeout(FLUSH_TIMEOUT) {
                tracing::warn!(error = %e, "spans still queued for the OTLP collector were not all exported");
            }
        }
    }
}

/// Install the global subscriber: logs to stdout (`to_stdout`, a service
/// whose output is its log) or stderr, filtered by `WEBHOOKD_LOG`; and the
/// OTLP span exporter when `otlp` names a collector.
pub fn init(format: LogFormat, to_stdout: bool, otlp: Option<&OtlpArgs>) -> anyhow::Result<Guard> {
    let filter = EnvFilter::try_from_env("WEBHOOKD_LOG").unwrap_or_else(|_| "info".into());
    // Colours only for a terminal: a log file or a container log collector
    // would store the escape codes.
    let ansi = if to_stdout {
        std::io::stdout().is_terminal()
    } else {
        std::io::stderr().is_terminal()
    };
    let writer = if to_stdout {
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stdout)
    } else {
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr)
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(writer);
    let not_ours = filter_fn(|m| !(m.is_span() && m.target() == TARGET));
    let logs = match format {
        LogFormat::Text => fmt.with_filter(filter.and(not_ours)).boxed(),
        LogFormat::Json => fmt.json().with_filter(filter.and(not_ours)).boxed(),
    };
    let Some(url) = otlp.and_then(OtlpArgs::traces_url) else {
        tracing_subscriber::registry().with(logs).try_init()?;
        return Ok(Guard(None));
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url.as_str())
        .with_timeout(EXPORT_TIMEOUT)
        .build()?;
    let origin = url.origin().ascii_serialization();
    let exporter = Reported {
        inner: exporter,
        origin: origin.clone(),
        url: url.to_string(),
        failures: Default::default(),
    };
    let service = otlp.map_or("webhookd", |o| o.otlp_service_name.as_str());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build();
    let tracer = provider.tracer("webhookd");
    // Our spans, and warnings and errors logged inside them (span events).
    let ours = Targets::new()
        .with_target(TARGET, tracing::Level::INFO)
        .with_target("webhookd", tracing::Level::WARN);
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(ours);
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()?;
    // The URL may carry credentials in its userinfo: only its origin is logged.
    tracing::info!(collector = %origin, service, "exporting spans over OTLP/HTTP");
    Ok(Guard(Some(provider)))
}

/// The span of one HTTP attempt. Its parent is the producing
/// transaction's trace context when the event has one (so the attempt
/// shows inside the application's trace), else it starts a trace.
pub fn deliver_span(c: &Claimed) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        parent: None,
        "deliver",
        otel.name = "POST",
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.request.method = "POST",
        server.address = tracing::field::Empty,
        server.port = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        "error.type" = tracing::field::Empty,
        webhook.delivery.id = c.delivery_id,
        webhook.event.id = c.event_id,
        webhook.endpoint.id = c.endpoint_id,
        webhook.attempt = c.attempt,
        webhook.outcome = tracing::field::Empty,
    );
    if span.is_disabled() {
        return span;
    }
    if let Some(tp) = c.traceparent.as_deref() {
        let carrier = HashMap::from([("traceparent".to_owned(), tp.to_owned())]);
        // Cannot fail here: the span was just made and is enabled.
        let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
    }
    span
}

/// The `traceparent` header of an attempt made inside `span`: the span's
/// own context when spans are exported (the receiver's spans become its
/// children), else the producer's as it was stored.
pub fn traceparent<'a>(span: &Span, stored: Option<&'a str>) -> Option<Cow<'a, str>> {
    if span.is_disabled() {
        return stored.map(Cow::Borrowed);
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return stored.map(Cow::Borrowed);
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent").map(Cow::Owned)
}

/// What the receiver's address was, on the attempt's span.
pub fn record_target(span: &Span, url: &url::Url) {
    if span.is_disabled() {
        return;
    }
    if let Some(host) = url.host_str() {
        span.record("server.address", host);
    }
    if let Some(port) = url.port_or_known_default() {
        span.record("server.port", i64::from(port));
    }
}

/// How the attempt ended, on its span: the status (an error from 400 on,
/// as OpenTelemetry's HTTP conventions have it), or the failure's kind;
/// and what happens next (succeeded, retry, dead).
pub fn record_attempt(span: &Span, status: Option<u16>, failure: Option<&str>, outcome: &str) {
    if span.is_disabled() {
        return;
    }
    if let Some(s) = status {
        span.record("http.response.status_code", i64::from(s));
        if s >= 400 {
            span.record("error.type", s.to_string());
        }
    }
    if let Some(kind) = failure {
        span.record("error.type", kind);
    }
    if failure.is_some() || status.is_some_and(|s| s >= 400) {
        span.record("otel.status_code", "error");
    }
    span.record("webhook.outcome", outcome);
}

/// The span of one `webhook.claim()` round trip.
pub fn claim_span(asked: usize) -> Span {
    // Numbers as i64: the exporter records unsigned ones as text.
    tracing::info_span!(
        target: TARGET,
        parent: None,
        "claim",
        otel.name = "webhook.claim",
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        db.system.name = "postgresql",
        webhook.claim.asked = asked as i64,
        webhook.claim.got = tracing::field::Empty,
    )
}

/// The span of one write of outcomes (`webhook.record()`) and releases.
pub fn record_span(reports: usize) -> Span {
    tracing::info_span!(
        target: TARGET,
        parent: None,
        "record",
        otel.name = "webhook.record",
        otel.kind = "client",
        db.system.name = "postgresql",
        webhook.record.reports = reports as i64,
    )
}

/// The span of one `webhook.maintain()` call.
pub fn maintain_span() -> Span {
    tracing::info_span!(
        target: TARGET,
        parent: None,
        "maintain",
        otel.name = "webhook.maintain",
        otel.kind = "client",
        db.system.name = "postgresql",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(base: Option<&str>, traces: Option<&str>) -> OtlpArgs {
        OtlpArgs {
            otlp_endpoint: base.map(|s| collector_url(s).unwrap()),
            otlp_traces_endpoint: traces.map(|s| collector_url(s).unwrap()),
            otlp_service_name: "webhookd".into(),
        }
    }

    #[test]
    fn the_base_url_gets_v1_traces_and_the_traces_url_is_used_as_given() {
        assert_eq!(args(None, None).traces_url(), None);
        let u = |b, t| args(b, t).traces_url().unwrap().to_string();
        assert_eq!(
            u(Some("http://127.0.0.1:4318"), None),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            u(Some("https://otel.example/prefix/"), None),
            "https://otel.example/prefix/v1/traces"
        );
        assert_eq!(
            u(Some("http://a:4318"), Some("http://b:9/custom")),
            "http://b:9/custom"
        );
    }

    #[test]
    fn only_http_urls_name_a_collector() {
        assert!(collector_url("grpc://127.0.0.1:4317")
            .unwrap_err()
            .contains("http://"));
        assert!(collector_url("127.0.0.1:4318").is_err());
        assert!(collector_url("http://127.0.0.1:4318").is_ok());
    }

    #[test]
    fn an_exported_attempt_continues_the_producers_trace_as_its_child() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let producer = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let c = Claimed {
                traceparent: Some(producer.into()),
                ..Claimed::default()
            };
            let span = deliver_span(&c);
            let sent = traceparent(&span, c.traceparent.as_deref()).unwrap();
            let parts: Vec<&str> = sent.split('-').collect();
            assert_eq!(parts.len(), 4, "{sent}");
            // Same trace, a span of its own, sampled as its parent was.
            assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_ne!(parts[2], "00f067aa0ba902b7");
            assert_eq!(parts[3], "01");

            // Without a producer's context, the attempt starts a trace.
            let root = deliver_span(&Claimed::default());
            let sent = traceparent(&root, None).unwrap();
            assert!(!sent.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{sent}");
        });
    }

    #[test]
    fn without_an_exporter_the_stored_traceparent_is_sent_unchanged() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        // No subscriber is installed in unit tests: the span is disabled.
        let span = tracing::info_span!(target: TARGET, "deliver");
        assert_eq!(traceparent(&span, Some(tp)).as_deref(), Some(tp));
        assert_eq!(traceparent(&span, None), None);
    }
}
