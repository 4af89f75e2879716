//! webhookd, pg_webhook's dispatcher, as a library: the `webhookd` binary
//! (src/main.rs) is `cli::main()`.
//!
//! # Layout
//!
//! The folders follow an event on its way out of the database:
//!
//! - `pipeline`: the claim loop of `webhookd run` and its stages, one module
//!   each: `claim` (route, lease and sign, in the database) → `deliver` (one
//!   HTTP POST) → `record` (outcomes in batches); `room` (what webhookd knows
//!   of each endpoint between claims: deliveries held, permits, pacing, the
//!   breaker) and `maintain` (retention).
//! - `policy`: the pure decisions: `retry` (the schedule), `breaker` (the
//!   circuit breaker), `ssrf` (which addresses a receiver may be at).
//! - `net`: `egress` (the HTTP clients, the SSRF guard as their resolver)
//!   and `http` (the small server of /metrics, /healthz and `listen`).
//! - `observe`: `metrics` (Prometheus) and `telemetry` (logs, OTLP spans).
//! - `db`: connections to PostgreSQL: the connection string and its TLS,
//!   the settings every session gets, reconnecting with backoff, LISTEN.
//! - `cli`: the subcommands (`run`, `listen`, `status`, `healthcheck`,
//!   `console`), each its flags and its entry point. `console` runs the
//!   admin REST API and web console of the workspace's crate
//!   pg-webhook-console (folder console/), giving it the database pool and
//!   webhookd's facts (its User-Agent, its retry schedule).
//!
//! Only `cli` and the pieces other crates of the workspace use (the
//! receiver of the benchmarks uses `http`) are public; the rest is the
//! library's own, so the compiler still reports what nothing uses.

pub mod cli;
mod db;
mod net;
mod observe;
mod pipeline;
mod policy;

pub use net::http;
