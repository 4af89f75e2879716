//! `webhookd run`: its flags (each with an environment variable), their
//! defaults written once (the schedule and the breaker's in the policies
//! that use them), `Config::from_args`, which validates them into the
//! `pipeline::Config` the claim loop runs with, and the command itself.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::db;
use crate::net::egress;
use crate::observe::metrics;
use crate::pipeline::{self, Config};
use crate::policy::{breaker, retry, ssrf};

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub db: db::DatabaseArgs,
    /// Requests in flight at most, over all endpoints.
    #[arg(long, env = "WEBHOOKD_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
    /// Deliveries claimed per round trip at most.
    #[arg(long, env = "WEBHOOKD_BATCH", default_value_t = 200)]
    pub batch: usize,
    /// Bytes of event bodies held in memory at most (claimed and not yet
    /// finished; each body once, however many endpoints it goes to). An
    /// event larger than this is still delivered, alone.
    #[arg(long, env = "WEBHOOKD_CLAIM_MAX_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub claim_max_bytes: usize,
    /// How long a claimed delivery stays ours; a crashed worker's deliveries
    /// are retried after it. Requests are cut at 80% of it.
    #[arg(long, env = "WEBHOOKD_LEASE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub lease: Duration,
    /// Fallback poll when no wake-up arrives (and the only mode with --no-listen).
    #[arg(long, env = "WEBHOOKD_POLL_INTERVAL", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// Do not LISTEN for wake-ups; poll only.
    #[arg(long, env = "WEBHOOKD_NO_LISTEN")]
    pub no_listen: bool,
    /// How often to run webhook.maintain() (retention: start and drop
    /// generations of partitions); 0 never (then something else must).
    #[arg(long, env = "WEBHOOKD_MAINTAIN_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub maintain_interval: Duration,
    /// Serve Prometheus /metrics and /healthz here.
    #[arg(long, env = "WEBHOOKD_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Endpoints with series of their own in /metrics (the first seen);
    /// later ones share endpoint="other".
    #[arg(long, env = "WEBHOOKD_METRICS_MAX_ENDPOINTS", default_value_t = metrics::DEFAULT_MAX_ENDPOINTS)]
    pub metrics_max_endpoints: usize,
    #[command(flatten)]
    pub otlp: crate::observe::telemetry::OtlpArgs,
    /// Allow loopback, private and link-local targets (development and tests only).
    #[arg(long, env = "WEBHOOKD_ALLOW_PRIVATE_TARGETS")]
    pub allow_private_targets: bool,
    /// Address ranges (CIDR) receivers may be in though the SSRF guard
    /// would refuse them, such as a private network of receivers.
    /// Repeatable, or comma separated.
    #[arg(long = "allow-cidr", env = "WEBHOOKD_ALLOW_CIDR", value_delimiter = ',', value_parser = ssrf::parse_cidr)]
    pub allow_cidr: Vec<ipnet::IpNet>,
    /// Address ranges (CIDR) never connected to, whatever else is allowed
    /// (--allow-cidr, --allow-private-targets). Repeatable, or comma separated.
    #[arg(long = "deny-cidr", env = "WEBHOOKD_DENY_CIDR", value_delimiter = ',', value_parser = ssrf::parse_cidr)]
    pub deny_cidr: Vec<ipnet::IpNet>,
    /// Delays before the 2nd, 3rd, ... attempt, comma separated; then dead.
    #[arg(
        long,
        env = "WEBHOOKD_RETRY_SCHEDULE",
        default_value = retry::DEFAULT_SCHEDULE
    )]
    pub retry_schedule: String,
    /// ± fraction of each retry delay, randomized.
    #[arg(long, env = "WEBHOOKD_RETRY_JITTER", default_value_t = retry::DEFAULT_JITTER)]
    pub retry_jitter: f64,
    /// Consecutive failures (no response, 429, 5xx) after which an endpoint
    /// is paused: its deliveries wait unattempted until a probe succeeds. 0: never.
    #[arg(long, env = "WEBHOOKD_BREAKER_THRESHOLD", default_value_t = breaker::DEFAULT_THRESHOLD)]
    pub breaker_threshold: u32,
    /// First pause of a failing endpoint; doubled after each failed probe.
    #[arg(long, env = "WEBHOOKD_BREAKER_COOLDOWN", default_value = breaker::DEFAULT_COOLDOWN, value_parser = humantime::parse_duration)]
    pub breaker_cooldown: Duration,
    /// Longest pause between probes of a failing endpoint.
    #[arg(long, env = "WEBHOOKD_BREAKER_MAX_COOLDOWN", default_value = breaker::DEFAULT_MAX_COOLDOWN, value_parser = humantime::parse_duration)]
    pub breaker_max_cooldown: Duration,
    /// On SIGTERM, how long in-flight requests may take to finish.
    #[arg(long, env = "WEBHOOKD_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// TCP connect timeout for receivers.
    #[arg(long, env = "WEBHOOKD_CONNECT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// PEM file of certificate authorities to trust besides the bundled Web
    /// PKI roots (receivers behind a private CA).
    #[arg(long, env = "WEBHOOKD_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM certificate (chain) presented to receivers that require mutual
    /// TLS; with --client-key.
    #[arg(long, env = "WEBHOOKD_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<std::path::PathBuf>,
    /// PEM private key (PKCS#8, RSA or SEC1) of --client-cert.
    #[arg(long, env = "WEBHOOKD_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<std::path::PathBuf>,
    /// Send every request through this proxy (http:// or https://,
    /// credentials in the URL: give those as WEBHOOKD_PROXY, since a
    /// command line is visible to every local user); NO_PROXY still
    /// applies. Without it, HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY
    /// from the environment apply.
    #[arg(long, env = "WEBHOOKD_PROXY")]
    pub proxy: Option<String>,
    /// Threads that run HTTP deliveries. One core delivers several thousand
    /// events/s; more threads scale further at a higher CPU cost per event.
    /// The database side (claims, outcomes, LISTEN, maintenance) and
    /// /healthz always have a thread of their own.
    #[arg(long, env = "WEBHOOKD_THREADS", default_value_t = 1)]
    pub threads: usize,
    /// Name of this worker in webhook.attempts (default: host-pid), at most
    /// 128 bytes.
    #[arg(long, env = "WEBHOOKD_WORKER")]
    pub worker: Option<String>,
}

/// `--worker`'s default: host-pid.
fn worker_name() -> String {
    let host =
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "webhookd".into());
    format!("{}-{}", host.trim(), std::process::id())
}

impl Config {
    /// The validated configuration of `webhookd run`.
    pub fn from_args(a: RunArgs) -> anyhow::Result<Config> {
        if a.concurrency == 0 || a.batch == 0 || a.claim_max_bytes == 0 {
            anyhow::bail!("--concurrency, --batch and --claim-max-bytes must be at least 1");
        }
        if !(0.0..=1.0).contains(&a.retry_jitter) {
            anyhow::bail!("--retry-jitter must be between 0 and 1");
        }
        // webhook.claim() refuses longer names (each lease stores it).
        if a.worker
            .as_ref()
            .is_some_and(|w| w.is_empty() || w.len() > 128)
        {
            anyhow::bail!("--worker must be 1 to 128 bytes long");
        }
        let schedule = retry::parse_schedule(&a.retry_schedule)
            .map_err(|e| anyhow::anyhow!("--retry-schedule: {e}"))?;
        Ok(Config {
            database: a.db.database()?,
            concurrency: a.concurrency,
            batch: a.batch,
            claim_max_bytes: a.claim_max_bytes,
            lease: a.lease,
            poll_interval: a.poll_interval,
            maintain_interval: a.maintain_interval,
            metrics_max_endpoints: a.metrics_max_endpoints,
            listen: !a.no_listen,
            http: egress::Options {
                targets: ssrf::Policy {
                    allow_private_targets: a.allow_private_targets,
                    allow: a.allow_cidr,
                    deny: a.deny_cidr,
                },
                connect_timeout: a.connect_timeout,
                ca_file: a.ca_file,
                client_cert: a.client_cert,
                client_key: a.client_key,
                proxy: a.proxy,
            },
            retry: retry::Policy {
                schedule,
                jitter: a.retry_jitter,
                ..retry::Policy::default()
            },
            breaker: breaker::BreakerPolicy {
                threshold: a.breaker_threshold,
                cooldown: a.breaker_cooldown,
                max_cooldown: a.breaker_max_cooldown.max(a.breaker_cooldown),
            },
            shutdown_grace: a.shutdown_grace,
            worker: a.worker.unwrap_or_else(worker_name),
            delivery_threads: a.threads,
        })
    }
}

/// `webhookd run`: claim and deliver until SIGTERM or Ctrl-C.
pub async fn command(a: RunArgs) -> anyhow::Result<()> {
    let metrics_addr = a.metrics_addr;
    let cfg = Config::from_args(a)?;
    let metrics_listener = match metrics_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding --metrics-addr {addr}"))?,
        ),
        None => None,
    };
    let token = CancellationToken::new();
    tokio::spawn(super::terminated(token.clone()));
    pipeline::run(cfg, metrics_listener, token).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Run {
        #[command(flatten)]
        args: RunArgs,
    }

    fn config(args: &[&str]) -> anyhow::Result<Config> {
        let mut argv = vec!["run", "--database-url", "postgres://webhookd@db/shop"];
        argv.extend_from_slice(args);
        Config::from_args(Run::try_parse_from(argv)?.args)
    }

    #[test]
    fn the_defaults_are_the_modules_own() {
        let c = config(&[]).unwrap();
        let policy = retry::Policy::default();
        assert_eq!(c.retry.schedule, policy.schedule);
        assert_eq!(c.retry.jitter, policy.jitter);
        assert_eq!(c.retry.max_retry_after, policy.max_retry_after);
        assert_eq!(c.breaker, breaker::BreakerPolicy::default());
        assert_eq!(c.retry.schedule.len(), 11);
        assert_eq!((c.concurrency, c.batch), (64, 200));
        assert_eq!(c.lease, Duration::from_secs(60));
        assert!(c.listen && !c.http.targets.allow_private_targets);
        assert!(c.http.proxy.is_none() && c.http.client_cert.is_none());
    }

    #[test]
    fn flags_are_validated() {
        let c = config(&[
            "--retry-schedule",
            "1s,2s",
            "--breaker-cooldown",
            "10s",
            "--breaker-max-cooldown",
            "1s",
            "--deny-cidr",
            "10.0.0.0/8,fd00::/8",
            "--no-listen",
        ])
        .unwrap();
        assert_eq!(
            c.retry.schedule,
            vec![Duration::from_secs(1), Duration::from_secs(2)]
        );
        // The longest pause is never shorter than the first.
        assert_eq!(c.breaker.max_cooldown, Duration::from_secs(10));
        assert_eq!(c.http.targets.deny.len(), 2);
        assert!(!c.listen);
        for bad in [
            &["--concurrency", "0"][..],
            &["--retry-jitter", "2"],
            &["--retry-schedule", "5 parsecs"],
            &["--deny-cidr", "not-a-range"],
            &["--client-cert", "/x.pem"],
        ] {
            assert!(config(bad).is_err(), "{bad:?}");
        }
    }
}
