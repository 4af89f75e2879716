//! webhookd: the dispatcher of pg_webhook (run), a verifying development
//! receiver (listen), a health report (status) and an admin API and web
//! console (console).

mod breaker;
mod claim;
mod config;
mod console;
mod db;
mod deliver;
mod dispatcher;
mod egress;
mod endpoints;
mod healthcheck;
mod http;
mod listen;
mod maintain;
mod metrics;
mod record;
mod retry;
mod ssrf;
mod status;
mod telemetry;

use std::net::SocketAddr;

use config::{DatabaseArgs, RunArgs};

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use telemetry::LogFormat;
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
    /// Log lines as text, or as one JSON object each (for log collectors).
    #[arg(long, global = true, env = "WEBHOOKD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Claim due deliveries and POST them, until SIGTERM or Ctrl-C.
    Run(Box<RunArgs>),
    /// A development receiver that verifies and prints every webhook.
    Listen(ListenArgs),
    /// Print the backlog and each endpoint's health.
    Status(StatusArgs),
    /// Exit 0 when a running webhookd's health address answers (a
    /// container's HEALTHCHECK).
    Healthcheck(HealthcheckArgs),
    /// The admin REST API (/api/v1) and web console, until SIGTERM or
    /// Ctrl-C. Tokens come from WEBHOOKD_CONSOLE_ADMIN_TOKEN,
    /// WEBHOOKD_CONSOLE_READ_TOKEN and --token-file; connect as a role
    /// granted webhook.grant_manager().
    Console(Box<console::ConsoleArgs>),
}

#[derive(Args, Debug)]
struct HealthcheckArgs {
    /// The health address of the instance (`run --metrics-addr`, from the
    /// same environment variable); 0.0.0.0 is asked on loopback.
    #[arg(long, env = "WEBHOOKD_METRICS_ADDR", default_value = "127.0.0.1:9090")]
    addr: SocketAddr,
    /// How long the answer may take.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    timeout: Duration,
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
    let cli = Cli::parse();
    // Logs go to stdout for the services (their output is their log, as a
    // container runtime collects it) and to stderr for the commands whose
    // stdout is their answer. Only `run` exports spans.
    let otlp = match &cli.command {
        Command::Run(a) => Some(&a.otlp),
        _ => None,
    };
    let _telemetry = telemetry::init(
        cli.log_format,
        matches!(cli.command, Command::Run(_) | Command::Console(_)),
        otlp,
    )?;
    if let Command::Run(a) = &cli.command {
        if a.threads == 0 {
            anyhow::bail!("--threads must be at least 1");
        }
    }
    // The control side (claims, outcomes, LISTEN, maintenance, /healthz)
    // on this thread; `webhookd run` delivers on threads of its own
    // (dispatcher::Deliveries, sized by --threads).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(a) => {
            let metrics_addr = a.metrics_addr;
            let cfg = dispatcher::Config::from_args(*a)?;
            let metrics_listener = match metrics_addr {
                Some(addr) => Some(
                    tokio::net::TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("binding --metrics-addr {addr}"))?,
                ),
                None => None,
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
        Command::Healthcheck(a) => healthcheck::run(a.addr, a.timeout).await,
        Command::Console(a) => {
            let token = CancellationToken::new();
            tokio::spawn(terminated(token.clone()));
            console::run(*a, token).await
        }
    }
}
