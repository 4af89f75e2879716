//! What webhookd tells about itself: Prometheus metrics (metrics), served
//! with /healthz (probes), logs and its own OTLP spans (telemetry).

pub mod metrics;
pub mod probes;
pub mod telemetry;
