//! The subcommands of the `webhookd` binary, one module each, and the one
//! place that parses the command line and starts a runtime: `run` (the
//! dispatcher), `listen` (a verifying development receiver), `status` (a
//! health report), `healthcheck` (a container's probe), `console` (the
//! admin API and web console), and `install` / `uninstall` (the portable
//! edition, for databases that cannot load the extension). Every flag that
//! takes a value also reads an environment variable.

pub mod console;
pub mod healthcheck;
pub mod install;
pub mod listen;
pub mod run;
pub mod status;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

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
    Console(Box<console::ConsoleCommand>),
    /// Install pg_webhook's portable edition (the SQL API without the
    /// extension's library, for managed PostgreSQL) as the database's
    /// owner, or upgrade an older portable installation in place; --print
    /// writes its SQL instead.
    Install(install::InstallArgs),
    /// Remove a portable installation: the capture triggers it added, then
    /// schema webhook with every endpoint, event and delivery (--yes).
    Uninstall(install::UninstallArgs),
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
            Command::Install(a) => install::install(a).await,
            Command::Uninstall(a) => install::uninstall(a).await,
            Command::Console(a) => {
                let token = CancellationToken::new();
                tokio::spawn(terminated(token.clone()));
                console::command(*a, token).await
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use clap::{Arg, ArgAction, CommandFactory};

    use super::Cli;

    /// (flag, env, default) as docs/webhookd.md writes them: `--flag`,
    /// `ENV` or nothing, `default` or nothing (a switch has none).
    type Row = (String, String, String);

    fn code(s: &str) -> String {
        if s.is_empty() {
            String::new()
        } else {
            format!("`{s}`")
        }
    }

    fn row(a: &Arg) -> Option<Row> {
        let long = a.get_long()?;
        if matches!(long, "help" | "version") {
            return None;
        }
        let env = a
            .get_env()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        let default = if matches!(a.get_action(), ArgAction::SetTrue) {
            String::new()
        } else {
            let values: Vec<String> = a
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            values.join(",")
        };
        Some((format!("`--{long}`"), code(&env), code(&default)))
    }

    /// The rows of the table between `<!-- flags:NAME:begin -->` and its end.
    fn documented(doc: &str, name: &str) -> BTreeSet<Row> {
        let begin = format!("<!-- flags:{name}:begin -->");
        let end = format!("<!-- flags:{name}:end -->");
        let Some((_, rest)) = doc.split_once(&begin) else {
            panic!("docs/webhookd.md has no {begin}");
        };
        let Some((table, _)) = rest.split_once(&end) else {
            panic!("docs/webhookd.md has no {end}");
        };
        table
            .lines()
            .filter(|l| l.starts_with("| `--"))
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
                (cells[0].into(), cells[1].into(), cells[2].into())
            })
            .collect()
    }

    /// Each subcommand's flag table, and the table of the console's
    /// variables that have no flag (its tokens).
    #[test]
    fn the_flag_tables_of_the_docs_are_the_flags_clap_defines() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/webhookd.md");
        let doc = std::fs::read_to_string(path).expect("docs/webhookd.md");
        let cli = Cli::command();
        let mut tables = vec![(
            "global".to_string(),
            cli.get_arguments().filter_map(row).collect::<BTreeSet<_>>(),
        )];
        for sub in cli.get_subcommands() {
            let rows = sub
                .get_arguments()
                .filter(|a| !a.is_global_set())
                .filter_map(row)
                .collect();
            tables.push((sub.get_name().to_string(), rows));
        }
        for (name, defined) in tables {
            let written = documented(&doc, &name);
            let show = |rows: &BTreeSet<Row>| {
                rows.iter()
                    .map(|(f, e, d)| format!("| {f} | {e} | {d} |"))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            assert!(
                written == defined,
                "docs/webhookd.md's {name} table (flag | env | default) differs from clap's flags.\n\
                 only in clap:\n{}\nonly in the docs:\n{}",
                show(&defined.difference(&written).cloned().collect()),
                show(&written.difference(&defined).cloned().collect()),
            );
        }
        // The console's variables without a flag, beside its flags.
        let (_, rest) = doc
            .split_once("<!-- env:console:begin -->")
            .expect("docs/webhookd.md has no <!-- env:console:begin -->");
        let (table, _) = rest
            .split_once("<!-- env:console:end -->")
            .expect("docs/webhookd.md has no <!-- env:console:end -->");
        let written: BTreeSet<String> = table
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once('`'))
            .map(|(env, _)| env.to_string())
            .collect();
        let defined: BTreeSet<String> = pg_webhook_console::ENV_ONLY
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            written, defined,
            "docs/webhookd.md's console env table differs from the console's ENV_ONLY"
        );
    }
}
