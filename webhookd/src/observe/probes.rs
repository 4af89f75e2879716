//! `/metrics`, `/healthz` and `/readyz` (`webhookd run --metrics-addr`), on
//! axum. The caller binds the listener (tests bind 127.0.0.1:0) and stops
//! the server with a cancellation token.
//!
//! `/healthz` is liveness: 200 `ok` while the claim loop runs, connected
//! or reconnecting; 503 `stopping` from the moment it has stopped (a
//! shutdown draining, or a claim the database refuses for good) until the
//! process exits. A database outage keeps it 200 on purpose: restarting
//! webhookd would not end the outage (it reconnects by itself), and every
//! replica would restart at once.
//!
//! `/readyz` is readiness, the truth about delivering: 200 `ready` only
//! while the claim loop has a database session and its last claim round
//! succeeded, no longer ago than the bound a working loop keeps (it claims
//! at least every poll interval, or waits for room with its session open);
//! 503 with the reason otherwise (not yet connected, the database
//! unreachable, claims failing, no claim round for too long, stopping).
//!
//! Both are served on the runtime claims and outcomes run on (requests to
//! receivers run on another), so an answer also says that runtime is not
//! stuck. `webhookd healthcheck` exits 0 on a 200 of `/healthz` only,
//! `webhookd healthcheck --ready` of `/readyz`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::metrics::{self, Metrics};

/// What the claim loop last said of itself: whether it still runs (what
/// `/healthz` answers) and how its database is (what `/readyz` answers).
#[derive(Debug)]
pub struct Health {
    claiming: AtomicBool,
    state: AtomicU8,
    /// When the loop last had a working session (a claim round that
    /// succeeded, or a wait for room with its session open), in ms since
    /// `start`.
    ok_at_ms: AtomicU64,
    start: Instant,
    /// A working loop refreshes `ok_at_ms` at least this often.
    stale_after: Duration,
}

/// Why the claim loop is not ready (or that it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Readiness {
    /// Before its first claim round.
    Starting = 0,
    Ready = 1,
    /// Connecting, or reconnecting after a lost session.
    Unreachable = 2,
    /// The last claim round failed (it reconnects after a backoff).
    ClaimFailed = 3,
}

impl Readiness {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Readiness::Ready,
            2 => Readiness::Unreachable,
            3 => Readiness::ClaimFailed,
            _ => Readiness::Starting,
        }
    }
}

impl Health {
    /// Claiming, not yet ready; a working loop says so at least every
    /// `stale_after`.
    pub fn claiming(stale_after: Duration) -> Arc<Self> {
        Arc::new(Health {
            claiming: AtomicBool::new(true),
            state: AtomicU8::new(Readiness::Starting as u8),
            ok_at_ms: AtomicU64::new(0),
            start: Instant::now(),
            stale_after,
        })
    }

    pub fn stopped(&self) {
        self.claiming.store(false, Ordering::Relaxed);
    }

    fn is_claiming(&self) -> bool {
        self.claiming.load(Ordering::Relaxed)
    }

    /// A claim round succeeded, or the loop waits for room with its
    /// session open.
    pub fn ok(&self) {
        let ms = self.start.elapsed().as_millis().min(u64::MAX as u128) as u64;
        self.ok_at_ms.store(ms, Ordering::Relaxed);
        self.state.store(Readiness::Ready as u8, Ordering::Relaxed);
    }

    /// Not ready, for this reason.
    pub fn not_ready(&self, why: Readiness) {
        self.state.store(why as u8, Ordering::Relaxed);
    }

    /// `/readyz`'s answer: None when ready, else why not.
    pub(crate) fn unready_because(&self) -> Option<String> {
        if !self.is_claiming() {
            return Some("stopping".into());
        }
        match Readiness::from_u8(self.state.load(Ordering::Relaxed)) {
            Readiness::Starting => Some("starting: no claim round yet".into()),
            Readiness::Unreachable => Some("the database is unreachable".into()),
            Readiness::ClaimFailed => Some("the last claim round failed".into()),
            Readiness::Ready => {
                let ok_at = Duration::from_millis(self.ok_at_ms.load(Ordering::Relaxed));
                let since = self.start.elapsed().saturating_sub(ok_at);
                (since > self.stale_after).then(|| {
                    format!(
                        "no claim round for {} s (a working claim loop claims at least every {} s)",
                        since.as_secs(),
                        self.stale_after.as_secs()
                    )
                })
            }
        }
    }
}

#[derive(Clone)]
struct Probes {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(Probes { metrics, health })
}

async fn render(State(p): State<Probes>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        p.metrics.render(),
    )
}

async fn healthz(State(p): State<Probes>) -> impl IntoResponse {
    if p.health.is_claiming() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping\n")
    }
}

async fn readyz(State(p): State<Probes>) -> impl IntoResponse {
    match p.health.unready_because() {
        None => (StatusCode::OK, "ready\n".to_string()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

/// Serve `router` on `listener` until `shutdown`; a failing accept is
/// logged and the server goes on.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::warn!(error = %e, "the /metrics, /healthz and /readyz server stopped");
    }
}

/// The probes on 127.0.0.1:0; their address and the token that stops
/// them.
#[cfg(test)]
pub(crate) async fn serving(health: Arc<Health>) -> (std::net::SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve(
        listener,
        router(Metrics::new(10), health),
        stop.clone(),
    ));
    (addr, stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, Option<String>, String) {
        let r = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        (status, ct, r.text().await.unwrap())
    }

    #[tokio::test]
    async fn metrics_healthz_readyz_and_anything_else() {
        let health = Health::claiming(Duration::from_secs(60));
        let (addr, stop) = serving(health.clone()).await;
        let (status, ct, body) = get(addr, "/metrics").await;
        assert_eq!((status, ct.as_deref()), (200, Some(metrics::CONTENT_TYPE)));
        assert!(body.ends_with("# EOF\n"), "{body}");
        assert_eq!(get(addr, "/healthz").await.0, 200);
        assert_eq!(get(addr, "/healthz").await.2, "ok\n");
        // Alive before the first claim round, and not yet ready.
        let (status, _, body) = get(addr, "/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (503, "starting: no claim round yet\n")
        );
        health.ok();
        let (status, _, body) = get(addr, "/readyz").await;
        assert_eq!((status, body.as_str()), (200, "ready\n"));
        assert_eq!(get(addr, "/nope").await.0, 404);
        health.stopped();
        let (status, _, body) = get(addr, "/healthz").await;
        assert_eq!((status, body.as_str()), (503, "stopping\n"));
        let (status, _, body) = get(addr, "/readyz").await;
        assert_eq!((status, body.as_str()), (503, "stopping\n"));
        stop.cancel();
    }

    #[test]
    fn readiness_says_why_not() {
        let h = Health::claiming(Duration::from_secs(60));
        h.not_ready(Readiness::Unreachable);
        assert_eq!(
            h.unready_because().as_deref(),
            Some("the database is unreachable")
        );
        // Alive all the while: an outage is no reason to restart.
        assert!(h.is_claiming());
        h.ok();
        assert_eq!(h.unready_because(), None);
        h.not_ready(Readiness::ClaimFailed);
        assert_eq!(
            h.unready_because().as_deref(),
            Some("the last claim round failed")
        );
        // A loop that stopped saying it works (stuck) is not ready either.
        let stuck = Health::claiming(Duration::ZERO);
        stuck.ok();
        std::thread::sleep(Duration::from_millis(1100));
        let why = stuck.unready_because().unwrap();
        assert!(why.starts_with("no claim round for 1 s"), "{why}");
    }
}
