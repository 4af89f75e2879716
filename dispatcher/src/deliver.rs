//! Deliver: one HTTP POST per claimed delivery. Redirects are not followed,
//! the response body is read up to a cap, and every request has a timeout.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use crate::claim::Claimed;
use crate::retry;

/// Bytes of a response kept for `webhook.attempts` (the rest is drained up
/// to `READ_CAP` so the connection can be reused, then dropped).
pub const EXCERPT_BYTES: usize = 1024;
const READ_CAP: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub allow_private_targets: bool,
    pub connect_timeout: Duration,
}

pub fn client(opts: &HttpOptions) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(opts.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .use_rustls_tls()
        .no_proxy();
    if !opts.allow_private_targets {
        b = b.dns_resolver(crate::ssrf::resolver());
    }
    Ok(b.build()?)
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

fn headers(claimed: &Claimed) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    let obj = claimed
        .headers
        .as_object()
        .ok_or("headers are not a JSON object")?;
    for (k, v) in obj {
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header {k:?}: {e}"))?;
        let value = v
            .as_str()
            .ok_or_else(|| format!("header {k:?} is not a string"))?;
        let value = HeaderValue::from_str(value).map_err(|e| format!("header {k:?}: {e}"))?;
        map.insert(name, value);
    }
    Ok(map)
}

fn describe(e: &reqwest::Error) -> String {
    // The chain holds the useful part ("connection refused", the SSRF refusal).
    let mut msg = if e.is_timeout() {
        "timeout".to_string()
    } else if e.is_connect() {
        "connect error".to_string()
    } else {
        "request error".to_string()
    };
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

pub async fn send(client: &reqwest::Client, opts: &HttpOptions, claimed: &Claimed) -> Attempt {
    let started = Instant::now();
    let fail = |error: String| Attempt {
        status: None,
        error: Some(error),
        duration: started.elapsed(),
        excerpt: None,
        retry_after: None,
    };
    let url = match reqwest::Url::parse(&claimed.url) {
        Ok(u) => u,
        Err(e) => return fail(format!("invalid URL: {e}")),
    };
    if !opts.allow_private_targets {
        if let Some(host) = url.host_str() {
            if let Err(refused) = crate::ssrf::check_literal(host) {
                return fail(refused.to_string());
            }
        }
    }
    let headers = match headers(claimed) {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    let timeout = Duration::from_millis(claimed.timeout_ms.max(1) as u64);
    let request = client
        .post(url)
        .headers(headers)
        .timeout(timeout)
        .body(Bytes::from(claimed.body.clone()));
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return fail(describe(&e)),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
    // Read a bounded prefix of the body, within what is left of the timeout.
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    let deadline = started + timeout;
    let mut error = None;
    while body.len() < READ_CAP {
        match tokio::time::timeout_at(deadline.into(), stream.next()).await {
            Ok(Some(Ok(chunk))) => {
                body.extend_from_slice(&chunk[..chunk.len().min(READ_CAP - body.len())])
            }
            Ok(Some(Err(e))) => {
                error = Some(format!("reading response: {}", describe(&e)));
                break;
            }
            Ok(None) => break,
            Err(_) => break,
        }
    }
    body.truncate(EXCERPT_BYTES);
    let excerpt = (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned());
    Attempt {
        status: Some(status),
        error,
        duration: started.elapsed(),
        excerpt,
        retry_after,
    }
}
