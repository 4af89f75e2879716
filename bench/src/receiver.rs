//! The receiving side of every benchmark: a hyper HTTP/1.1 server on
//! 127.0.0.1 that verifies each request's Standard Webhooks signature (or,
//! for the unsigned baseline, only parses it) and notes when each order
//! arrived, per path. Faults for the isolation benchmark: a path can answer
//! 500 to a share of requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the receiver saw: (path, order id) → first receipt, and failures.
#[derive(Default)]
pub struct Seen {
    pub at: HashMap<(String, i64), Instant>,
    pub received: u64,
    pub bad: u64,
    pub failed_on_purpose: u64,
}

impl Seen {
    pub fn count(&self, path: &str) -> usize {
        self.at.keys().filter(|(p, _)| p == path).count()
    }
}

#[derive(Clone, Default)]
pub struct Behaviour {
    /// None: accept unsigned requests (the baseline does not sign).
    pub secret: Option<String>,
    /// path → share of requests answered 500.
    pub fail: HashMap<String, f64>,
}

pub type Shared = Arc<Mutex<Seen>>;

pub async fn serve(port: u16, behaviour: Behaviour, seen: Shared) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let behaviour = Arc::new(behaviour);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (seen, behaviour) = (seen.clone(), behaviour.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (seen, behaviour) = (seen.clone(), behaviour.clone());
                    async move {
                        let status = handle(req, &behaviour, &seen).await;
                        let mut r = Response::new(Full::new(bytes::Bytes::new()));
                        *r.status_mut() = hyper::StatusCode::from_u16(status)
                            .unwrap_or(hyper::StatusCode::BAD_REQUEST);
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(())
}

/// The order id in a pg_webhook envelope or a Hasura-style event body.
pub fn order_id(body: &[u8]) -> Option<i64> {
    let v = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    v.pointer("/data/new/id")
        .or_else(|| v.pointer("/event/data/new/id"))
        .and_then(|i| i.as_i64())
}

async fn handle(req: Request<Incoming>, behaviour: &Behaviour, seen: &Mutex<Seen>) -> u16 {
    let now = Instant::now();
    let path = req.uri().path().to_string();
    let h = req.headers().clone();
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return 400;
    };
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let verified = match &behaviour.secret {
        None => true,
        Some(secret) => {
            let ts: i64 = get("webhook-timestamp").parse().unwrap_or(0);
            webhook_signing::verify(
                secret,
                get("webhook-id"),
                ts,
                &body,
                get("webhook-signature"),
            )
            .unwrap_or(false)
        }
    };
    let id = order_id(&body);
    let Ok(mut s) = seen.lock() else { return 500 };
    s.received += 1;
    let Some(id) = id.filter(|_| verified) else {
        s.bad += 1;
        return 401;
    };
    if let Some(share) = behaviour.fail.get(&path) {
        if rand_unit() < *share {
            s.failed_on_purpose += 1;
            return 500;
        }
    }
    s.at.entry((path, id)).or_insert(now);
    204
}

/// A uniform number in [0, 1) without another dependency: xorshift on a
/// thread-local state seeded from the clock.
fn rand_unit() -> f64 {
    use std::cell::Cell;
    thread_local!(static STATE: Cell<u64> = Cell::new(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1));
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}
