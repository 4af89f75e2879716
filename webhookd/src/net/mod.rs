//! The network: the HTTP clients every delivery goes out through (egress)
//! and the small HTTP server of /metrics, /healthz and `webhookd listen`
//! (http).

pub mod egress;
pub mod http;
