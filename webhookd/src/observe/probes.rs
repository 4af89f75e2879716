//! `/metrics` and `/healthz` (`webhookd run --metrics-addr`), on axum. The
//! caller binds the listener (tests bind 127.0.0.1:0) and stops the server
//! with a cancellation token.
//!
//! What `/healthz` promises: 200 `ok` while the claim loop runs, connected
//! or reconnecting; 503 `stopping` from the moment it has stopped (a
//! shutdown draining, or a claim the database refuses for good) until the
//! process exits. A database outage keeps it 200 on purpose: restarting
//! webhookd would not end the outage (it reconnects by itself), and every
//! replica would restart at once; it shows as `webhookd_database_connected`.
//! It is served on the runtime claims and outcomes run on (requests to
//! receivers run on another), so an answer also says that runtime is not
//! stuck. `webhookd healthcheck` exits 0 on a 200 only.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::metrics::{self, Metrics};

/// Whether the claim loop still runs (what `/healthz` answers).
#[derive(Debug)]
pub struct Health(AtomicBool);

impl Health {
    /// Claiming, until `stopped`.
    pub fn claiming() -> Arc<Self> {
        Arc::new(Health(AtomicBool::new(true)))
    }

    pub fn stopped(&self) {
        self.0.store(false, Ordering::Relaxed);
    }

    fn is_claiming(&self) -> bool {
        self.0.load(Ordering::Relaxed)
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
        tracing::warn!(error = %e, "the /metrics and /healthz server stopped");
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
    async fn metrics_healthz_and_anything_else() {
        let health = Health::claiming();
        let (addr, stop) = serving(health.clone()).await;
        let (status, ct, body) = get(addr, "/metrics").await;
        assert_eq!((status, ct.as_deref()), (200, Some(metrics::CONTENT_TYPE)));
        assert!(body.ends_with("# EOF\n"), "{body}");
        assert_eq!(get(addr, "/healthz").await.0, 200);
        assert_eq!(get(addr, "/healthz").await.2, "ok\n");
        assert_eq!(get(addr, "/nope").await.0, 404);
        health.stopped();
        let (status, _, body) = get(addr, "/healthz").await;
        assert_eq!((status, body.as_str()), (503, "stopping\n"));
        stop.cancel();
    }
}
