//! Deliver: one HTTP POST per claimed delivery (client.rs). Redirects are
//! not followed, the response body is read up to a cap, and every request
//! has a timeout.

use std::time::{Duration, Instant, SystemTime};

use crate::claim::Claimed;
use crate::client::Client;
use crate::retry;

pub use crate::client::HttpOptions;

/// Bytes of a response kept for `webhook.attempts`.
pub const EXCERPT_BYTES: usize = 1024;

const USER_AGENT: &str = concat!("pg_webhook/", env!("CARGO_PKG_VERSION"));

pub fn client(opts: &HttpOptions) -> anyhow::Result<Client> {
    Ok(Client::new(opts.clone())?)
}

/// What one attempt produced.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration: Duration,
    pub excerpt: Option<String>,
    pub retry_after: Option<Duration>,
}

pub async fn send(client: &Client, claimed: &Claimed) -> Attempt {
    let started = Instant::now();
    let fail = |error: String| Attempt {
        status: None,
        error: Some(error),
        duration: started.elapsed(),
        excerpt: None,
        retry_after: None,
    };
    let Some(headers) = claimed.headers.as_object() else {
        return fail("headers are not a JSON object".into());
    };
    if let Some((k, _)) = headers.iter().find(|(_, v)| !v.is_string()) {
        return fail(format!("header {k:?} is not a string"));
    }
    // The endpoint's own headers never repeat these (create_endpoint()
    // refuses the names).
    let (id, ts) = (claimed.event_id.to_string(), claimed.signed_at.to_string());
    let standard = [
        ("content-type", "application/json"),
        ("user-agent", USER_AGENT),
        ("webhook-id", id.as_str()),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", claimed.signature.as_str()),
    ];
    let headers = standard.into_iter().chain(
        headers
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v))),
    );
    let timeout = Duration::from_millis(claimed.timeout_ms.max(1) as u64);
    let response = match client
        .post(&claimed.url, headers, claimed.body.as_bytes(), timeout)
        .await
    {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    let retry_after = response
        .retry_after
        .as_deref()
        .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
    let mut body = response.body;
    body.truncate(EXCERPT_BYTES);
    let excerpt = (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned());
    Attempt {
        status: Some(response.status),
        error: response.body_error,
        duration: started.elapsed(),
        excerpt,
        retry_after,
    }
}
