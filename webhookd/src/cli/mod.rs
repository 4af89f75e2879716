//! The subcommands of the `webhookd` binary, one module each, and the one
//! place that parses the command line and starts a runtime: `run` (the
//! dispatcher), `listen` (a verifying development receiver), `status` (a
//! health report), `healthcheck` (a container's probe) and `console` (the
//! admin API and web console). Every flag also reads an environment
//! variable.

pub mod healthcheck;
pub mod listen;
pub mod run;
pub mod status;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::console;
use crate::observe::telemetry::{self, LogFormat};

#[derive(Parser, Debug)]
#[command(
    name = "webhookd",
    version,
    about = "Delivers pg_webhook's signed webhooks from PostgreSQL"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as text, or as one JSON object each (for log collectors).
    #[arg(long, global = true, env = "WEBHOOKD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Claim due deliveries and POST them, until SIGTERM or Ctrl-C.
    Run(Box<run::RunArgs>),
    /// A development receiver that verifies and prints every webhook.
    Listen(listen::ListenArgs),
    /// Print the backlog and each endpoint's health.
    Status(status::StatusArgs),
    /// Exit 0 when a running webhookd's health address answers (a
    /// container's HEALTHCHECK).
    Healthcheck(healthcheck::HealthcheckArgs),
    /// The admin REST API (/api/v1) and web console, until SIGTERM or
    /// Ctrl-C. Tokens come from WEBHOOKD_CONSOLE_ADMIN_TOKEN,
    /// WEBHOOKD_CONSOLE_READ_TOKEN and --token-file; connect as a role
    /// granted webhook.grant_manager().
    Console(Box<console::ConsoleArgs>),
}

/// Cancels `token` at SIGTERM or Ctrl-C (the services' shutdown).
pub(crate) async fn terminated(token: CancellationToken) {
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

/// The binary's `main`: parse the command line, set up logging, run the
/// subcommand.
pub fn main() -> anyhow::Result<()> {
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
    // (pipeline::Deliveries, sized by --threads).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run(a) => run::command(*a).await,
            Command::Listen(a) => listen::command(a).await,
            Command::Status(a) => status::command(a).await,
            Command::Healthcheck(a) => healthcheck::command(a).await,
            Command::Console(a) => {
                let token = CancellationToken::new();
                tokio::spawn(terminated(token.clone()));
                console::run(*a, token).await
            }
        }
    })
}
