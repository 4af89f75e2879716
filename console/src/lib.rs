//! `webhookd console`: an admin REST API (/api/v1, OpenAPI 3.1 at
//! /api/v1/openapi.json) and a web console for endpoints, deliveries,
//! events and repairs, served by one process with its own database role
//! (one granted `webhook.grant_manager`; `webhookd run` keeps its narrow
//! dispatcher role). Every action is a call of the SQL API of schema
//! `webhook` (store.rs).
//!
//! # Layout
//!
//! - `api/` and `pages/`, the two front ends, one file a resource in each
//!   (`endpoints`, `secrets`, `deliveries`, `events`; the pages' `login`
//!   too); `pages/session.rs` holds the browser's session, its cookies and
//!   the CSRF checks of every form.
//! - `actions.rs`: the one layer both front ends change anything through
//!   (create, alter, enable, disable, delete, rotate, reveal, test, replay,
//!   redeliver); it writes each action's one audit line.
//! - `store.rs`: the calls of the SQL API, rows read by column name.
//! - `auth.rs` (tokens), `throttle.rs` (wrong tokens' backoff),
//!   `request.rs` (request ids, the Host check); this file: the flags and
//!   the HTTP server.
//!
//! A crate of its own, which knows nothing of webhookd: webhookd's
//! `console` subcommand parses [`ConsoleArgs`] beside its database flags
//! and calls [`run`] with a way to open the connection pool and the
//! [`Facts`] of the dispatcher the console describes.

mod actions;
mod api;
mod auth;
mod pages;
mod request;
mod store;
mod throttle;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use clap::Args;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::add_extension::AddExtension;
use tower_http::timeout::TimeoutLayer;

use auth::{LoginForms, Tokens};
use pages::session::Sessions;
use request::AllowedHosts;
use store::Store;
use throttle::Throttle;

/// The variables the console reads from the environment only, never from
/// a flag: its tokens (a command line is visible to every user of the
/// host).
pub const ENV_ONLY: &[&str] = &[auth::ADMIN_TOKEN_ENV, auth::READ_TOKEN_ENV];

/// The console's own flags; webhookd adds its database flags beside them.
#[derive(Args, Debug)]
pub struct ConsoleArgs {
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
    /// Longest wait for a request's head, and for the next one on an idle
    /// kept-alive connection: a client that sends nothing, or half a head,
    /// is disconnected after it.
    #[arg(long, env = "WEBHOOKD_CONSOLE_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// Longest time a request may take once its head is in, its body and
    /// the answer included (408 after it).
    #[arg(long, env = "WEBHOOKD_CONSOLE_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Connections served at once; one more is closed as soon as it is
    /// accepted.
    #[arg(long, env = "WEBHOOKD_CONSOLE_MAX_CONNECTIONS", default_value_t = 256)]
    pub max_connections: usize,
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

/// What the console says of the dispatcher that delivers what it manages,
/// and reads as it does: webhookd's own, passed in so that each stays
/// written in one place.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    /// The User-Agent of every delivery.
    pub user_agent: &'static str,
    /// The retry schedule of a webhookd run without --retry-schedule.
    pub default_retry_schedule: &'static str,
    /// Reads a retry schedule as `--retry-schedule` is read.
    pub parse_schedule: fn(&str) -> Result<Vec<Duration>, String>,
}

/// What a console's HTTP server allows one client.
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_timeout: Duration,
    request_timeout: Duration,
    max_connections: usize,
}

/// How often, at most, refused connections are logged.
const REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(60);

/// What every handler shares.
pub struct Console {
    store: Store,
    tokens: Tokens,
    sessions: Sessions,
    login_forms: LoginForms,
    throttle: Throttle,
    hosts: AllowedHosts,
    secure_cookie: bool,
    facts: Facts,
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
        Ok(found) => {
            pages::found(&found);
            (
                axum::http::StatusCode::OK,
                Json(serde_json::json!({
                    "status": "ok",
                    "edition": found.edition,
                    "extension_version": found.version,
                })),
            )
        }
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

/// The console's routes; a request that takes longer than
/// `request_timeout` is answered 408 (with the security headers too).
pub fn app(console: Arc<Console>, request_timeout: Duration) -> Router {
    Router::new()
        .merge(api::router())
        .merge(pages::router())
        .route("/healthz", get(healthz))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
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

/// Serve `app` on `listener` until `shutdown`: HTTP/1.1 with a deadline
/// for each request head (hyper's header read timeout, which also ends
/// idle kept-alive connections) and at most `max_connections` at once, so
/// slow or idle clients cannot hold the console. On shutdown, no new
/// connection; those open get `request_timeout` to finish.
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut refusal_logged: Option<Instant> = None;
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "console: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if refusal_logged.is_none_or(|t| t.elapsed() >= REFUSALS_LOGGED_EVERY) {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "console: connection refused, as many as --max-connections are open"
                );
                refusal_logged = Some(Instant::now());
            }
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        // ConnectInfo as axum's own serve gives it, for handlers that
        // want the peer's address.
        let service = TowerToHyperService::new(AddExtension::new(app.clone(), ConnectInfo(peer)));
        let conn = graceful.watch(http.serve_connection(TokioIo::new(tcp), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "console: connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.request_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("console: connections still open at shutdown were closed");
    }
    Ok(())
}

/// Serve the console until `shutdown`; `pool` opens the database pool of
/// `--pool` connections at most, once the flags have been checked.
pub async fn run(
    args: ConsoleArgs,
    pool: impl FnOnce(usize) -> anyhow::Result<deadpool_postgres::Pool>,
    facts: Facts,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if args.header_timeout.is_zero() || args.request_timeout.is_zero() || args.max_connections == 0
    {
        anyhow::bail!("--header-timeout, --request-timeout and --max-connections must be above 0");
    }
    let limits = Limits {
        header_timeout: args.header_timeout,
        request_timeout: args.request_timeout,
        max_connections: args.max_connections,
    };
    let tokens = load_tokens(args.token_file.as_deref())?;
    let hosts = AllowedHosts::new(args.addr, &args.allowed_hosts)?;
    let store = Store::new(pool(args.pool)?);
    match store.ping().await {
        // The console calls the SQL API of its own release.
        Ok(found) if found.version != env!("CARGO_PKG_VERSION") => {
            pages::found(&found);
            tracing::warn!(
                edition = %found.edition,
                extension_version = %found.version,
                console_version = env!("CARGO_PKG_VERSION"),
                "console: the database has another version of pg_webhook; update it (native: ALTER EXTENSION pg_webhook UPDATE; portable: webhookd install)"
            )
        }
        Ok(found) => {
            pages::found(&found);
            tracing::info!(edition = %found.edition, extension_version = %found.version, "console: database reachable")
        }
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
        facts,
    });
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding --addr {}", args.addr))?;
    tracing::info!(addr = %args.addr, "console: serving /api/v1 and the web console");
    serve(
        listener,
        app(console, limits.request_timeout),
        limits,
        shutdown,
    )
    .await
    .context("serving the console")
}
