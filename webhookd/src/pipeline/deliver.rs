//! Deliver: one HTTP POST per claimed delivery, through the egress client
//! (net::egress: reqwest, the SSRF guard as its resolver). Redirects are not
//! followed, the response body is read up to a cap, and every request has
//! a timeout.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};

use crate::net::egress::{self, Egress};
use crate::observe::telemetry;
use crate::pipeline::claim::Claimed;
use crate::pipeline::record;
use crate::policy::retry;
use webhook_signing::headers::{self, Reserved};

/// Response body bytes read at most: a body up to this size is read to its
/// end (so the connection can carry the next request); past it, reading
/// stops and the connection is closed. What is stored is `EXCERPT_BYTES`.
pub const READ_CAP: usize = 64 * 1024;

const WEBHOOK_ID: HeaderName = HeaderName::from_static(headers::WEBHOOK_ID);
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static(headers::WEBHOOK_TIMESTAMP);
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static(headers::WEBHOOK_SIGNATURE);
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The HTTP client, and which endpoints' dropped headers were already
/// logged (once per endpoint and header set, not once per delivery).
pub struct Deliverer {
    egress: Egress,
    warned: Mutex<HashSet<(i64, String)>>,
}

pub fn client(opts: &egress::Options) -> Result<Deliverer, egress::SetupError> {
    Ok(Deliverer {
        egress: Egress::new(opts)?,
        warned: Mutex::default(),
    })
}

/// What one attempt produced.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub result: Result<Answer, Failure>,
    /// The endpoint's own headers that were not sent, named (the request
    /// went without them).
    pub dropped: Option<String>,
    pub duration: Duration,
}

/// What a receiver answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// The start of the response body, as the receiver sent it (made
    /// storable when the outcome is built).
    pub excerpt: Option<Vec<u8>>,
    /// Why the body could not be read to its end (the status stands).
    pub cut: Option<String>,
}

/// Why there is no answer, kept typed up to the retry decision and the
/// circuit breaker (`ending`): a refusal is never retried nor held against
/// the endpoint's health, a lost connection is both.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// The SSRF guard or the operator's deny list refused every address.
    #[error("{0}")]
    Refused(String),
    /// The request cannot be made as configured (URL, signature header).
    #[error("{0}")]
    Unsendable(String),
    #[error("DNS: {0}")]
    Dns(String),
    #[error("connect error: {0}")]
    Connect(String),
    #[error("TLS handshake: {0}")]
    Tls(String),
    #[error("timeout")]
    Timeout,
    /// The connection failed after the request went out (reset, closed,
    /// a protocol error).
    #[error("request error: {0}")]
    Request(String),
}

impl Failure {
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Refused(_) => "refused",
            Failure::Unsendable(_) => "unsendable",
            Failure::Dns(_) => "dns",
            Failure::Connect(_) => "connect",
            Failure::Tls(_) => "tls",
            Failure::Timeout => "timeout",
            Failure::Request(_) => "request",
        }
    }
}

impl Attempt {
    pub fn status(&self) -> Option<u16> {
        self.result.as_ref().ok().map(|a| a.status)
    }

    pub fn ending(&self) -> retry::Ending {
        match &self.result {
            Ok(a) => retry::Ending::Answered {
                status: a.status,
                retry_after: a.retry_after,
            },
            Err(Failure::Refused(_) | Failure::Unsendable(_)) => retry::Ending::Refused,
            Err(_) => retry::Ending::NoAnswer,
        }
    }

    /// The text `webhook.attempts.error` gets: the failure, or why the body
    /// was cut, and the headers not sent.
    pub fn error(&self) -> Option<String> {
        let what = match &self.result {
            Ok(a) => a.cut.clone(),
            Err(f) => Some(f.to_string()),
        };
        join(what, self.dropped.clone())
    }

    /// The failure's kind, when there is no answer (a span's error.type).
    pub fn failure_kind(&self) -> Option<&'static str> {
        self.result.as_ref().err().map(Failure::kind)
    }

    pub fn excerpt(&self) -> Option<&[u8]> {
        self.result.as_ref().ok().and_then(|a| a.excerpt.as_deref())
    }
}

/// Why an endpoint's own header is not sent, if it is not: it is reserved
/// (`webhook_signing::headers`: webhookd sets it, or it is hop-by-hop) or
/// it is not valid HTTP. The SQL API refuses all of these
/// (`_check_headers`); rows edited by hand are checked here again.
fn refused_header(name: &str, value: &serde_json::Value) -> Option<&'static str> {
    let Some(value) = value.as_str() else {
        return Some("not a string");
    };
    if name.is_empty() || !name.bytes().all(is_token) {
        return Some("not a valid header name");
    }
    match headers::reserved(name) {
        Some(Reserved::SetByWebhookd) => Some("set by webhookd"),
        Some(Reserved::HopByHop) => Some("hop-by-hop"),
        None if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) => {
            Some("control character in the value")
        }
        None => None,
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
    let fail = |failure: Failure| Attempt {
        result: Err(failure),
        dropped: note.clone(),
        duration: started.elapsed(),
    };
    let span = tracing::Span::current();
    let target = match deliverer.egress.url(&claimed.url) {
        Ok(t) => t,
        Err(egress::UrlError::Refused(r)) => return fail(Failure::Refused(r.to_string())),
        Err(e) => return fail(Failure::Unsendable(e.to_string())),
    };
    telemetry::record_target(&span, &target.url);
    let Ok(signature) = HeaderValue::from_str(&claimed.signature) else {
        return fail(Failure::Unsendable(
            "the signature is not a valid header value".into(),
        ));
    };
    // The signed headers exactly as the extension returned them, then the
    // endpoint's own (user-agent is the client's default).
    let mut headers = HeaderMap::with_capacity(4 + own.len());
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(headers::JSON));
    headers.insert(WEBHOOK_ID, HeaderValue::from(claimed.event_id));
    headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(claimed.signed_at));
    headers.insert(WEBHOOK_SIGNATURE, signature);
    for (name, value) in own {
        // Checked by endpoint_headers; a name or value http still refuses
        // is dropped the same way rather than failing the delivery.
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
    // The trace context (the producing transaction's, checked by the
    // extension when it was written, or this attempt's span's when spans
    // are exported); it replaces an endpoint header of that name.
    if let Some(tp) = telemetry::traceparent(&span, claimed.traceparent.as_deref()) {
        if let Ok(v) = HeaderValue::from_str(&tp) {
            headers.insert(TRACEPARENT, v);
        }
    }
    let timeout = Duration::from_millis(claimed.timeout_ms.max(1) as u64);
    let deadline = tokio::time::Instant::now() + timeout;
    let request = target
        .client
        .post(target.url)
        .headers(headers)
        // Shared with the event's other deliveries: nothing is copied.
        .body(reqwest::Body::from(claimed.body.clone()))
        .send();
    let response = match tokio::time::timeout_at(deadline, request).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return fail(failure(&e)),
        Err(_) => return fail(Failure::Timeout),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
    let (excerpt, cut) = read_excerpt(response, deadline).await;
    Attempt {
        result: Ok(Answer {
            status,
            retry_after,
            excerpt,
            cut,
        }),
        dropped: note,
        duration: started.elapsed(),
    }
}

/// The start of the body (`EXCERPT_BYTES`), reading at most `READ_CAP`
/// bytes and never past the deadline; why it could not be read to its
/// end, if it could not (the status stands either way).
async fn read_excerpt(
    mut response: reqwest::Response,
    deadline: tokio::time::Instant,
) -> (Option<Vec<u8>>, Option<String>) {
    let mut kept = Vec::new();
    let mut read = 0usize;
    let mut error = None;
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                let room = record::EXCERPT_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                read = read.saturating_add(chunk.len());
                if read >= READ_CAP {
                    break;
                }
            }
            Ok(Ok(None)) => break,
            Err(_) => {
                error = Some("timeout: the body was still arriving".to_string());
                break;
            }
            Ok(Err(e)) => {
                error = Some(format!("reading response: {}", causes(&e)));
                break;
            }
        }
    }
    ((!kept.is_empty()).then_some(kept), error)
}

/// What kind of failure a request error is (its text without the URL).
fn failure(e: &reqwest::Error) -> Failure {
    if let Some(refused) = egress::refusal(e) {
        return Failure::Refused(refused.to_string());
    }
    if e.is_timeout() {
        return Failure::Timeout;
    }
    let text = causes(e);
    if egress::is_dns(e) {
        Failure::Dns(text)
    } else if egress::is_tls(e) {
        Failure::Tls(text)
    } else if e.is_connect() {
        Failure::Connect(text)
    } else {
        Failure::Request(text)
    }
}

/// The chain of causes below a reqwest error, each said once.
fn causes(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for err in egress::chain(e).skip(1) {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    if parts.is_empty() {
        parts.push(if e.is_body() { "body" } else { "unknown" }.into());
    }
    parts.join(": ")
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
