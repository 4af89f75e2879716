//! What the console knows of each request before any handler: a request
//! id of its own (the `x-request-id` answer header, every audit line,
//! every 5xx answer) and the client's address; and whether the request
//! names one of the console's own host names (a page of another site that
//! rebinds its DNS name to the console's address sends its own name).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Console;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id and client address.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub id: Arc<str>,
    pub client: Option<IpAddr>,
}

impl RequestContext {
    /// A context for code reached outside `context` (tests).
    pub fn unknown() -> Self {
        RequestContext {
            id: new_id(),
            client: None,
        }
    }

    /// The client address as audit lines write it.
    pub fn client_text(&self) -> String {
        self.client
            .map_or_else(|| "unknown".into(), |ip| ip.to_canonical().to_string())
    }
}

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// The context `context` gave this request.
pub fn of_parts(parts: &axum::http::request::Parts) -> RequestContext {
    parts
        .extensions
        .get::<RequestContext>()
        .cloned()
        .or_else(current)
        .unwrap_or_else(RequestContext::unknown)
}

/// The context of the request being answered (None outside one).
pub fn current() -> Option<RequestContext> {
    CURRENT.try_with(|c| c.clone()).ok()
}

fn new_id() -> Arc<str> {
    let n: u128 = rand::random();
    // 96 bits: unique enough for a log, short enough to read out.
    format!("{:024x}", n >> 32).into()
}

/// Gives each request its context (in its extensions and, for code that
/// has no request at hand such as error answers, in `current()`), and
/// its id to the answer.
pub async fn context(mut req: Request, next: Next) -> Response {
    let ctx = RequestContext {
        id: new_id(),
        client: req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip()),
    };
    req.extensions_mut().insert(ctx.clone());
    let mut r = CURRENT.scope(ctx.clone(), next.run(req)).await;
    if let Ok(v) = HeaderValue::from_str(&ctx.id) {
        r.headers_mut().insert(REQUEST_ID, v);
    }
    r
}

/// The host names the console answers to: `--allowed-host`, the address
/// it is bound to and the loopback names. Ports are not compared (a
/// proxy or a published container port may change them); a foreign name
/// is what DNS rebinding cannot avoid sending.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    names: Vec<String>,
}

/// The name of a Host header (or an --allowed-host value): lower case,
/// without port, brackets or a trailing dot. None when it is no host.
fn host_name(h: &str) -> Option<String> {
    let a: axum::http::uri::Authority = h.trim().parse().ok()?;
    if a.as_str().contains('@') {
        return None;
    }
    let host = a.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

impl AllowedHosts {
    pub fn new(bind: SocketAddr, extra: &[String]) -> anyhow::Result<Self> {
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if !bind.ip().is_unspecified() {
            names.push(bind.ip().to_canonical().to_string());
        }
        for e in extra.iter().filter(|e| !e.trim().is_empty()) {
            let n = host_name(e)
                .ok_or_else(|| anyhow::anyhow!("--allowed-host {e:?} is not a host name"))?;
            names.push(n);
        }
        names.sort();
        names.dedup();
        Ok(AllowedHosts { names })
    }

    pub fn allows(&self, host: &str) -> bool {
        host_name(host).is_some_and(|h| self.names.contains(&h))
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Whether a refused host name should be logged now: at most once a
/// minute (seconds since the Unix epoch of the last line).
fn refusal_due() -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    (last == 0 || now >= last + 60)
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// Refuses a request whose Host is not one of the console's names.
pub async fn check_host(State(s): State<Arc<Console>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    match host {
        Some(h) if s.hosts.allows(h) => next.run(req).await,
        _ => {
            // The name is the client's: cut, and logged at most once a
            // minute, so refused requests cannot flood the log.
            if refusal_due() {
                let shown: Option<String> = host.map(|h| h.chars().take(100).collect());
                tracing::info!(host = ?shown, "console: refused a request for a host name not its own (--allowed-host); more are not logged for a minute");
            }
            (
                StatusCode::MISDIRECTED_REQUEST,
                "This console does not answer to that host name (see --allowed-host).\n",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_console_s_own_names_are_allowed() {
        let a = AllowedHosts::new(
            "127.0.0.1:8090".parse().unwrap(),
            &["Console.Example.COM".into(), "10.0.0.5:443".into()],
        )
        .unwrap();
        for ok in [
            "127.0.0.1:8090",
            "127.0.0.1",
            "localhost:8090",
            "LOCALHOST",
            "[::1]:8090",
            "console.example.com",
            "console.example.com.:8443",
            "10.0.0.5:8090",
        ] {
            assert!(a.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8090",
            "127.0.0.1.evil.example",
            "localhost@evil.example",
            "evil.example@localhost",
            "",
            "localhost:8090/x",
            "127.0.0.2:8090",
        ] {
            assert!(!a.allows(bad), "{bad}");
        }
        // A specific bind address is one of the names; 0.0.0.0 is not.
        let b = AllowedHosts::new("192.0.2.7:80".parse().unwrap(), &[]).unwrap();
        assert!(b.allows("192.0.2.7") && !b.allows("0.0.0.0"));
        let c = AllowedHosts::new("0.0.0.0:80".parse().unwrap(), &[]).unwrap();
        assert!(c.allows("localhost") && !c.allows("0.0.0.0:80"));
        assert!(AllowedHosts::new("0.0.0.0:80".parse().unwrap(), &["a b".into()]).is_err());
    }
}
