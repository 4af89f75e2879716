//! Deliver: one HTTP POST per claimed delivery (client.rs). Redirects are
//! not followed, the response body is read up to a cap, and every request
//! has a timeout.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::claim::Claimed;
use crate::client::Client;
use crate::{record, retry};

pub use crate::client::HttpOptions;

const USER_AGENT: &str = concat!("pg_webhook/", env!("CARGO_PKG_VERSION"));

/// The HTTP client, and which endpoints' dropped headers were already
/// logged (once per endpoint and header set, not once per delivery).
pub struct Deliverer {
    client: Client,
    warned: Mutex<HashSet<(i64, String)>>,
}

pub fn client(opts: &HttpOptions) -> anyhow::Result<Deliverer> {
    Ok(Deliverer {
        client: Client::new(opts.clone())?,
        warned: Mutex::default(),
    })
}

/// What one attempt produced.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration: Duration,
    /// The start of the response body, as the receiver sent it (made
    /// storable when the outcome is built).
    pub excerpt: Option<Vec<u8>>,
    pub retry_after: Option<Duration>,
}

/// Why an endpoint's own header is not sent, if it is not: webhookd sets
/// it (the Standard Webhooks request and its framing), it is hop-by-hop
/// (about the connection, not the request), or it is not valid HTTP. The
/// SQL API refuses the names webhookd sets (`_check_headers`); rows edited
/// by hand are checked here again.
fn refused_header(name: &str, value: &serde_json::Value) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let Some(value) = value.as_str() else {
        return Some("not a string");
    };
    if name.is_empty() || !name.bytes().all(is_token) {
        Some("not a valid header name")
    } else if matches!(
        lower.as_str(),
        "host" | "content-length" | "content-type" | "user-agent" | "transfer-encoding"
    ) || lower.starts_with("webhook-")
    {
        Some("set by webhookd")
    } else if matches!(
        lower.as_str(),
        "connection" | "te" | "upgrade" | "keep-alive" | "trailer" | "expect"
    ) || lower.starts_with("proxy-")
    {
        Some("hop-by-hop")
    } else if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        Some("control character in the value")
    } else {
        None
    }
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The endpoint's own headers that may be sent, and a note naming those
/// that may not (recorded as the attempt's error; the request goes anyway).
fn endpoint_headers(headers: &serde_json::Value) -> (Vec<(&str, &str)>, Option<String>) {
    let Some(map) = headers.as_object() else {
        let note = (!headers.is_null())
            .then(|| "endpoint headers not sent: not a JSON object".to_string());
        return (Vec::new(), note);
    };
    let mut sent = Vec::with_capacity(map.len());
    let mut dropped = Vec::new();
    for (name, value) in map {
        match (refused_header(name, value), value.as_str()) {
            (None, Some(v)) => sent.push((name.as_str(), v)),
            (why, _) => dropped.push(format!("{name:?} ({})", why.unwrap_or("not a string"))),
        }
    }
    let note =
        (!dropped.is_empty()).then(|| format!("endpoint headers not sent: {}", dropped.join(", ")));
    (sent, note)
}

/// Two error texts as one.
fn join(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    }
}

pub async fn send(deliverer: &Deliverer, claimed: &Claimed) -> Attempt {
    let started = Instant::now();
    let (own, note) = endpoint_headers(&claimed.headers);
    if let Some(note) = &note {
        let first = deliverer
            .warned
            .lock()
            .is_ok_and(|mut w| w.insert((claimed.endpoint_id, note.clone())));
        if first {
            tracing::warn!(
                endpoint = claimed.endpoint_id,
                headers = %note,
                "an endpoint's headers are dropped from its requests (edited past the SQL API's checks?)"
            );
        }
    }
    let fail = |error: String| Attempt {
        status: None,
        error: join(Some(error), note.clone()),
        duration: started.elapsed(),
        excerpt: None,
        retry_after: None,
    };
    let (id, ts) = (claimed.event_id.to_string(), claimed.signed_at.to_string());
    let standard = [
        ("content-type", "application/json"),
        ("user-agent", USER_AGENT),
        ("webhook-id", id.as_str()),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", claimed.signature.as_str()),
    ];
    let headers = standard.into_iter().chain(own);
    let client = &deliverer.client;
    let timeout = Duration::from_millis(claimed.timeout_ms.max(1) as u64);
    let response = match client
        .post(&claimed.url, headers, &claimed.body, timeout)
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
    body.truncate(record::EXCERPT_BYTES);
    let excerpt = (!body.is_empty()).then_some(body);
    Attempt {
        status: Some(response.status),
        error: join(response.body_error, note),
        duration: started.elapsed(),
        excerpt,
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_hop_by_hop_and_invalid_headers_are_dropped_and_named() {
        let headers = serde_json::json!({
            "Host": "x", "content-length": "0", "transfer-encoding": "chunked",
            "Webhook-Signature": "v1,forged", "te": "trailers", "Proxy-Authorization": "x",
            "x bad": "1", "x-ctl": "a\u{1}b", "x-num": 5, "x-tab": "a\tb", "authorization": "Bearer t"
        });
        let (sent, note) = endpoint_headers(&headers);
        assert_eq!(sent, vec![("x-tab", "a\tb"), ("authorization", "Bearer t")]);
        let note = note.unwrap();
        for part in [
            "\"Host\" (set by webhookd)",
            "\"content-length\" (set by webhookd)",
            "\"transfer-encoding\" (set by webhookd)",
            "\"Webhook-Signature\" (set by webhookd)",
            "\"te\" (hop-by-hop)",
            "\"Proxy-Authorization\" (hop-by-hop)",
            "\"x bad\" (not a valid header name)",
            "\"x-ctl\" (control character in the value)",
            "\"x-num\" (not a string)",
        ] {
            assert!(note.contains(part), "{part} in {note}");
        }
        assert_eq!(endpoint_headers(&serde_json::json!({})), (vec![], None));
        assert!(endpoint_headers(&serde_json::json!([1])).1.is_some());
    }
}
