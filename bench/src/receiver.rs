//! The receiving side of every benchmark: an HTTP/1.1 server on 127.0.0.1
//! (webhookd's own, `webhookd::http`) that verifies each request's
//! Standard Webhooks signature (or, for the unsigned baseline, only parses
//! it) and notes when each order arrived, per path. Faults for the isolation
//! benchmark: a path can answer 500 to a share of requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Request;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use webhookd::http;

/// What the receiver saw: (path, order id) → first receipt, and failures.
/// The counts are kept as receipts arrive: the benchmarks poll them every
/// few milliseconds, and counting a map of a million receipts each time
/// would take CPU from the system being measured.
#[derive(Default)]
pub struct Seen {
    pub at: HashMap<(String, i64), Instant>,
    per_path: HashMap<String, usize>,
    /// Count orders with ids up to this in `upto_count` (a backlog's orders,
    /// not what a concurrent producer adds).
    upto: Option<i64>,
    upto_count: usize,
    pub received: u64,
    pub bad: u64,
    pub failed_on_purpose: u64,
}

impl Seen {
    pub fn counting_upto(upto: Option<i64>) -> Self {
        Seen {
            upto,
            ..Seen::default()
        }
    }

    /// Distinct orders received on `path`.
    pub fn count(&self, path: &str) -> usize {
        self.per_path.get(path).copied().unwrap_or(0)
    }

    /// Distinct orders received on any path (with ids up to the limit, if set).
    pub fn distinct(&self) -> usize {
        match self.upto {
            Some(_) => self.upto_count,
            None => self.at.len(),
        }
    }

    fn first_receipt(&mut self, path: String, id: i64, at: Instant) {
        if let std::collections::hash_map::Entry::Vacant(v) = self.at.entry((path.clone(), id)) {
            v.insert(at);
            *self.per_path.entry(path).or_default() += 1;
            if self.upto.is_some_and(|m| id <= m) {
                self.upto_count += 1;
            }
        }
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

/// Serve on 127.0.0.1:`port` until the process ends.
pub async fn serve(port: u16, behaviour: Behaviour, seen: Shared) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let behaviour = Arc::new(behaviour);
    tokio::spawn(http::serve(
        listener,
        move |req| {
            let (seen, behaviour) = (seen.clone(), behaviour.clone());
            async move { http::reply(handle(req, &behaviour, &seen).await, "") }
        },
        CancellationToken::new(),
    ));
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
    if behaviour
        .fail
        .get(&path)
        .is_some_and(|share| rand::random::<f64>() < *share)
    {
        s.failed_on_purpose += 1;
        return 500;
    }
    s.first_receipt(path, id, now);
    204
}
