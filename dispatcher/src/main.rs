//! webhookd: the dispatcher of pg_webhook (run), a verifying development
//! receiver (listen) and a health report (status).

mod breaker;
mod claim;
mod db;
mod deliver;
mod dispatcher;
mod egress;
mod http;
mod listen;
mod metrics;
mod record;
mod retry;
mod ssrf;
mod status;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "webhookd",
    version,
    about = "Delivers pg_webhook's signed webhooks from PostgreSQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Claim due deliveries and POST them, until SIGTERM or Ctrl-C.
    Run(Box<RunArgs>),
    /// A development receiver that verifies and prints every webhook.
    Listen(ListenArgs),
    /// Print the backlog and each endpoint's health.
    Status(StatusArgs),
}

/// How to reach PostgreSQL; shared by every command that connects.
#[derive(Args, Debug)]
struct DatabaseArgs {
    /// PostgreSQL connection string (postgres://user@host:port/db or
    /// key=value form). TLS by libpq's sslmode (disable, allow, prefer,
    /// require, verify-ca, verify-full) and sslrootcert.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// PEM file of the certificate authority that signed the database
    /// server's certificate, when the URL names no sslrootcert.
    #[arg(long, env = "WEBHOOKD_DATABASE_CA_FILE")]
    database_ca_file: Option<std::path::PathBuf>,
}

impl DatabaseArgs {
    fn database(&self) -> anyhow::Result<db::Database> {
        db::Database::new(&self.database_url, self.database_ca_file.as_deref())
            .context("--database-url")
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    db: DatabaseArgs,
    /// Requests in flight at most, over all endpoints.
    #[arg(long, env = "WEBHOOKD_CONCURRENCY", default_value_t = 64)]
    concurrency: usize,
    /// Deliveries claimed per round trip at most.
    #[arg(long, env = "WEBHOOKD_BATCH", default_value_t = 200)]
    batch: usize,
    /// Bytes of event bodies held in memory at most (claimed and not yet
    /// finished; each body once, however many endpoints it goes to). An
    /// event larger than this is still delivered, alone.
    #[arg(long, env = "WEBHOOKD_CLAIM_MAX_BYTES", default_value_t = 16 * 1024 * 1024)]
    claim_max_bytes: usize,
    /// How long a claimed delivery stays ours; a crashed worker's deliveries
    /// are retried after it. Requests are cut at 80% of it.
    #[arg(long, env = "WEBHOOKD_LEASE", default_value = "60s", value_parser = humantime::parse_duration)]
    lease: Duration,
    /// Fallback poll when no wake-up arrives (and the only mode with --no-listen).
    #[arg(long, env = "WEBHOOKD_POLL_INTERVAL", default_value = "500ms", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
    /// After a partial batch, wait this long before claiming again (0: claim
    /// at once; a claim that finds nothing costs the database no write, and
    /// waiting measured slower and later, see BENCHMARKS.md).
    #[arg(long, env = "WEBHOOKD_LINGER", default_value = "0ms", value_parser = humantime::parse_duration)]
    linger: Duration,
    /// Do not LISTEN for wake-ups; poll only.
    #[arg(long, env = "WEBHOOKD_NO_LISTEN")]
    no_listen: bool,
    /// Serve Prometheus /metrics and /healthz here.
    #[arg(long, env = "WEBHOOKD_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Allow loopback, private and link-local targets (development and tests only).
    #[arg(long, env = "WEBHOOKD_ALLOW_PRIVATE_TARGETS")]
    allow_private_targets: bool,
    /// Address ranges (CIDR) receivers may be in though the SSRF guard
    /// would refuse them, such as a private network of receivers.
    /// Repeatable, or comma separated.
    #[arg(long = "allow-cidr", env = "WEBHOOKD_ALLOW_CIDR", value_delimiter = ',', value_parser = ssrf::parse_cidr)]
    allow_cidr: Vec<ipnet::IpNet>,
    /// Address ranges (CIDR) never connected to, whatever else is allowed
    /// (--allow-cidr, --allow-private-targets). Repeatable, or comma separated.
    #[arg(long = "deny-cidr", env = "WEBHOOKD_DENY_CIDR", value_delimiter = ',', value_parser = ssrf::parse_cidr)]
    deny_cidr: Vec<ipnet::IpNet>,
    /// Delays before the 2nd, 3rd, ... attempt, comma separated; then dead.
    #[arg(
        long,
        env = "WEBHOOKD_RETRY_SCHEDULE",
        default_value = "5s,5m,30m,2h,5h,10h,10h,10h,10h,10h,10h"
    )]
    retry_schedule: String,
    /// ± fraction of each retry delay, randomized.
    #[arg(long, env = "WEBHOOKD_RETRY_JITTER", default_value_t = 0.1)]
    retry_jitter: f64,
    /// Consecutive failures (no response, 429, 5xx) after which an endpoint
    /// is paused: its deliveries wait unattempted until a probe succeeds. 0: never.
    #[arg(long, env = "WEBHOOKD_BREAKER_THRESHOLD", default_value_t = 10)]
    breaker_threshold: u32,
    /// First pause of a failing endpoint; doubled after each failed probe.
    #[arg(long, env = "WEBHOOKD_BREAKER_COOLDOWN", default_value = "1s", value_parser = humantime::parse_duration)]
    breaker_cooldown: Duration,
    /// Longest pause between probes of a failing endpoint.
    #[arg(long, env = "WEBHOOKD_BREAKER_MAX_COOLDOWN", default_value = "30s", value_parser = humantime::parse_duration)]
    breaker_max_cooldown: Duration,
    /// On SIGTERM, how long in-flight requests may take to finish.
    #[arg(long, env = "WEBHOOKD_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// TCP connect timeout for receivers.
    #[arg(long, env = "WEBHOOKD_CONNECT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// PEM file of certificate authorities to trust besides the bundled Web
    /// PKI roots (receivers behind a private CA).
    #[arg(long, env = "WEBHOOKD_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// PEM certificate (chain) presented to receivers that require mutual
    /// TLS; with --client-key.
    #[arg(long, env = "WEBHOOKD_CLIENT_CERT", requires = "client_key")]
    client_cert: Option<std::path::PathBuf>,
    /// PEM private key (PKCS#8, RSA or SEC1) of --client-cert.
    #[arg(long, env = "WEBHOOKD_CLIENT_KEY", requires = "client_cert")]
    client_key: Option<std::path::PathBuf>,
    /// Send every request through this proxy (http:// or https://,
    /// credentials in the URL); NO_PROXY still applies. Without it,
    /// HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment apply.
    #[arg(long, env = "WEBHOOKD_PROXY")]
    proxy: Option<String>,
    /// Runtime threads. One core delivers several thousand events/s; more
    /// threads scale further at a higher CPU cost per event.
    #[arg(long, env = "WEBHOOKD_THREADS", default_value_t = 1)]
    threads: usize,
    /// Name of this worker in webhook.attempts (default: host-pid).
    #[arg(long, env = "WEBHOOKD_WORKER")]
    worker: Option<String>,
}

#[derive(Args, Debug)]
struct ListenArgs {
    #[arg(long, env = "WEBHOOKD_LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The endpoint's secret (whsec_...), as returned by webhook.endpoint_secret().
    #[arg(long, env = "WEBHOOK_SECRET")]
    secret: String,
    /// Also print each raw body.
    #[arg(long)]
    json: bool,
    /// Exit 0 after N verified events.
    #[arg(long)]
    max: Option<u64>,
    /// Exit 1 on the first request that fails verification.
    #[arg(long)]
    strict: bool,
    /// Status code for verified requests.
    #[arg(long, default_value_t = 204)]
    status: u16,
    /// Answer this fraction of verified requests with 500.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Answer the first N verified requests with 503.
    #[arg(long, default_value_t = 0)]
    fail_first: u64,
    /// A label printed before each line.
    #[arg(long)]
    name: Option<String>,
}

#[derive(Args, Debug)]
struct StatusArgs {
    #[command(flatten)]
    db: DatabaseArgs,
}

fn worker_name() -> String {
    let host =
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "webhookd".into());
    format!("{}-{}", host.trim(), std::process::id())
}

async fn terminated(token: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install the SIGTERM handler");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
    }
    token.cancel();
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEBHOOKD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Run(a) => a.threads,
        _ => 1,
    };
    // One thread by default: a delivery is I/O, and cross-thread wake-ups
    // cost more CPU per event than the work itself (BENCHMARKS.md, B7).
    let runtime = match threads {
        0 => anyhow::bail!("--threads must be at least 1"),
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(a) => {
            if a.concurrency == 0 || a.batch == 0 || a.claim_max_bytes == 0 {
                anyhow::bail!("--concurrency, --batch and --claim-max-bytes must be at least 1");
            }
            if !(0.0..=1.0).contains(&a.retry_jitter) {
                anyhow::bail!("--retry-jitter must be between 0 and 1");
            }
            let schedule = retry::parse_schedule(&a.retry_schedule)
                .map_err(|e| anyhow::anyhow!("--retry-schedule: {e}"))?;
            let metrics_listener = match a.metrics_addr {
                Some(addr) => Some(
                    tokio::net::TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("binding --metrics-addr {addr}"))?,
                ),
                None => None,
            };
            let cfg = dispatcher::Config {
                database: a.db.database()?,
                concurrency: a.concurrency,
                batch: a.batch,
                claim_max_bytes: a.claim_max_bytes,
                lease: a.lease,
                poll_interval: a.poll_interval,
                linger: a.linger,
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
            };
            let token = CancellationToken::new();
            tokio::spawn(terminated(token.clone()));
            dispatcher::run(cfg, metrics_listener, token).await
        }
        Command::Listen(a) => {
            let listener = tokio::net::TcpListener::bind(a.addr)
                .await
                .with_context(|| format!("binding {}", a.addr))?;
            let code = listen::run(
                listener,
                listen::Options {
                    secret: a.secret,
                    json: a.json,
                    max: a.max,
                    strict: a.strict,
                    status: a.status,
                    fail_rate: a.fail_rate,
                    fail_first: a.fail_first,
                    name: a.name,
                },
            )
            .await?;
            std::process::exit(code)
        }
        Command::Status(a) => status::run(&a.db.database()?).await,
    }
}
