//! `webhookd console`: an admin REST API (/api/v1, OpenAPI 3.1 at
//! /api/v1/openapi.json) and a web console for endpoints, deliveries,
//! events and repairs, served by one process with its own database role
//! (one granted `webhook.grant_manager`; `webhookd run` keeps its narrow
//! dispatcher role). Every action is a call of the SQL API of schema
//! `webhook` (store.rs).

mod actions;
pub mod api;
mod auth;
mod pages;
mod request;
mod session;
mod store;
mod throttle;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::config::DatabaseArgs;
use auth::{LoginForms, Tokens};
use request::AllowedHosts;
use session::Sessions;
use store::Store;
use throttle::Throttle;

#[derive(Args, Debug)]
pub struct ConsoleArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Address to serve the API and the console on.
    #[arg(long, env = "WEBHOOKD_CONSOLE_ADDR", default_value = "127.0.0.1:8090")]
    pub addr: SocketAddr,
    /// Database connections at most.
    #[arg(long, env = "WEBHOOKD_CONSOLE_POOL", default_value_t = 4)]
    pub pool: usize,
    /// Mark the console's cookies Secure and give them the `__Host-`
    /// prefix (the console is reached over HTTPS, through a proxy that
    /// terminates TLS).
    #[arg(long, env = "WEBHOOKD_CONSOLE_SECURE_COOKIE")]
    pub secure_cookie: bool,
    /// Named tokens, one a line: `name role token` (role `admin` or
    /// `read`; `#` starts a comment), besides (or instead of) the tokens
    /// of WEBHOOKD_CONSOLE_ADMIN_TOKEN and WEBHOOKD_CONSOLE_READ_TOKEN.
    #[arg(long, env = "WEBHOOKD_CONSOLE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Host names the console answers to besides the loopback names and
    /// the --addr address (requests naming any other host are refused:
    /// DNS rebinding). Repeatable, or comma separated.
    #[arg(
        long = "allowed-host",
        env = "WEBHOOKD_CONSOLE_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,
}

/// What every handler shares.
pub struct Console {
    store: Store,
    tokens: Tokens,
    sessions: Sessions,
    login_forms: LoginForms,
    throttle: Throttle,
    hosts: AllowedHosts,
    secure_cookie: bool,
}

/// The console's tokens: the environment's and the token file's.
fn load_tokens(file: Option<&Path>) -> anyhow::Result<Tokens> {
    let mut sources = auth::env_tokens(
        std::env::var(auth::ADMIN_TOKEN_ENV).ok(),
        std::env::var(auth::READ_TOKEN_ENV).ok(),
    );
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --token-file {}", path.display()))?;
        warn_if_readable_by_others(path);
        sources.extend(auth::parse_token_file(&path.display().to_string(), &text)?);
    }
    let tokens = Tokens::new(sources)?;
    for who in tokens.identities() {
        tracing::info!(token = %who.name, role = who.role.name(), "console: token");
    }
    Ok(tokens)
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %path.display(),
                "console: the token file may be read by other users; chmod 600 it");
        }
    }
}

async fn healthz(axum::extract::State(s): axum::extract::State<Arc<Console>>) -> impl IntoResponse {
    match s.store.ping().await {
        Ok(version) => (
            axum::http::StatusCode::OK,
            Json(serde_json::json!({"status": "ok", "extension_version": version})),
        ),
        Err(_) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable"})),
        ),
    }
}

/// Headers on every answer: no framing by other sites, no sniffing, no
/// referrer leaving the console, and nothing loaded from anywhere else.
async fn security_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

pub fn app(console: Arc<Console>) -> Router {
    Router::new()
        .merge(api::router())
        .merge(pages::router())
        .route("/healthz", get(healthz))
        // Outermost last: every answer has the security headers and a
        // request id, a refused host name included.
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            request::check_host,
        ))
        .layer(axum::middleware::from_fn(request::context))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(console)
}

pub async fn run(args: ConsoleArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let tokens = load_tokens(args.token_file.as_deref())?;
    let hosts = AllowedHosts::new(args.addr, &args.allowed_hosts)?;
    let database = args.db.database()?;
    let pool = database.pool("webhookd console", args.pool)?;
    let store = Store::new(pool);
    match store.ping().await {
        // The console calls the SQL API of its own release.
        Ok(v) if v != env!("CARGO_PKG_VERSION") => tracing::warn!(
            extension_version = %v,
            console_version = env!("CARGO_PKG_VERSION"),
            "console: the database has another version of pg_webhook; run ALTER EXTENSION pg_webhook UPDATE"
        ),
        Ok(v) => tracing::info!(extension_version = %v, "console: database reachable"),
        // Served anyway: the console says so on each page until it is.
        Err(e) => tracing::warn!(error = %e, "console: the database is not reachable yet"),
    }
    tracing::info!(hosts = ?hosts.names(), "console: answering to these host names");
    let console = Arc::new(Console {
        store,
        tokens,
        sessions: Sessions::default(),
        login_forms: LoginForms::new(),
        throttle: Throttle::default(),
        hosts,
        secure_cookie: args.secure_cookie,
    });
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding --addr {}", args.addr))?;
    tracing::info!(addr = %args.addr, "console: serving /api/v1 and the web console");
    // With each connection's address: per-client backoff and audit lines.
    let app = app(console).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("serving the console")
}
