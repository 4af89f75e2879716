//! What webhookd tells about itself: Prometheus metrics and /healthz
//! (metrics), logs and its own OTLP spans (telemetry).

pub mod metrics;
pub mod telemetry;
