//! `webhookd listen`: a development receiver that verifies every request
//! (Standard Webhooks signature, 5-minute timestamp tolerance) and prints it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Request;
use tokio_util::sync::CancellationToken;

use crate::net::http::{self, Reply};

pub const TOLERANCE_SECS: i64 = 300;

/// `webhookd listen`'s flags.
#[derive(Args, Debug)]
pub struct ListenArgs {
    #[arg(long, env = "WEBHOOKD_LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    #[command(flatten)]
    options: Options,
}

/// How the receiver answers and what it prints.
#[derive(Args, Debug, Clone)]
pub struct Options {
    /// The endpoint's secret (whsec_...), as returned by webhook.endpoint_secret().
    #[arg(long, env = "WEBHOOK_SECRET")]
    pub secret: String,
    /// Also print each raw body.
    #[arg(long)]
    pub json: bool,
    /// Exit 0 after N verified events.
    #[arg(long)]
    pub max: Option<u64>,
    /// Exit 1 on the first request that fails verification.
    #[arg(long)]
    pub strict: bool,
    /// Status code for verified requests.
    #[arg(long, default_value_t = 204)]
    pub status: u16,
    /// Answer this fraction of verified requests with 500.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Answer the first N verified requests with 503.
    #[arg(long, default_value_t = 0)]
    pub fail_first: u64,
    /// A label printed before each line.
    #[arg(long)]
    pub name: Option<String>,
}

/// `webhookd listen`: serve until `--max` events or the first bad one
/// with `--strict`; the process exits with the receiver's code.
pub async fn command(a: ListenArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(a.addr)
        .await
        .with_context(|| format!("binding {}", a.addr))?;
    let code = run(listener, a.options).await?;
    std::process::exit(code)
}

/// Why a request failed verification.
pub fn verify(
    secret: &str,
    headers: &hyper::HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(String, i64), String> {
    let get = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| format!("missing {n} header"))
    };
    let id = get("webhook-id")?;
    let ts: i64 = get("webhook-timestamp")?
        .parse()
        .map_err(|_| "webhook-timestamp is not a number".to_string())?;
    let sig = get("webhook-signature")?;
    if (now - ts).abs() > TOLERANCE_SECS {
        return Err(format!(
            "timestamp {ts} is {}s away from now (tolerance {TOLERANCE_SECS}s)",
            now - ts
        ));
    }
    match webhook_signing::verify(secret, &id, ts, body, &sig) {
        Ok(true) => Ok((id, ts)),
        Ok(false) => Err("no signature matches".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// One readable line: type, table/op and the first few fields of the data.
pub fn summary(body: &[u8]) -> (String, String) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return ("?".into(), "(body is not JSON)".into());
    };
    let ty = v
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("?")
        .to_string();
    let data = v.get("data").cloned().unwrap_or(serde_json::Value::Null);
    let fields = |o: &serde_json::Value| -> String {
        o.as_object()
            .map(|m| {
                m.iter()
                    .take(4)
                    .map(|(k, v)| {
                        let v = match v {
                            serde_json::Value::String(s) => s.chars().take(40).collect::<String>(),
                            other => other.to_string().chars().take(40).collect(),
                        };
                        format!("{k}={v}")
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    let detail = match (data.get("table"), data.get("new"), data.get("old")) {
        (Some(t), new, old) => {
            let row = match new {
                Some(n) if !n.is_null() => n,
                _ => old.unwrap_or(&serde_json::Value::Null),
            };
            format!("{} {}", t.as_str().unwrap_or("?"), fields(row))
        }
        _ => fields(&data),
    };
    (ty, detail)
}

fn clock() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() % 86400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        now.subsec_millis()
    )
}

pub async fn run(listener: tokio::net::TcpListener, opts: Options) -> anyhow::Result<i32> {
    webhook_signing::decode_secret(&opts.secret).map_err(|e| anyhow::anyhow!("--secret: {e}"))?;
    let shutdown = CancellationToken::new();
    let exit_code = Arc::new(AtomicU64::new(0));
    let verified = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(AtomicU64::new(0));
    let opts = Arc::new(opts);
    let prefix = opts
        .name
        .as_ref()
        .map(|n| format!("[{n}] "))
        .unwrap_or_default();
    // One write, so several receivers sharing a terminal do not interleave.
    let banner = format!("{prefix}listening on http://{}\n", listener.local_addr()?);
    {
        use std::io::Write;
        let _ = std::io::stderr().write_all(banner.as_bytes());
    }
    let (s2, code2, verified2, seen2, opts2) = (
        shutdown.clone(),
        exit_code.clone(),
        verified.clone(),
        seen.clone(),
        opts.clone(),
    );
    let handler = move |req: Request<Incoming>| {
        let (shutdown, exit_code, verified, seen, opts, prefix) = (
            s2.clone(),
            code2.clone(),
            verified2.clone(),
            seen2.clone(),
            opts2.clone(),
            prefix.clone(),
        );
        async move { handle(req, &opts, &prefix, &shutdown, &exit_code, &verified, &seen).await }
    };
    let server = tokio::spawn(http::serve(listener, handler, shutdown.clone()));
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::signal::ctrl_c() => shutdown.cancel(),
    }
    // Let the response that triggered the exit reach the client.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    server.abort();
    Ok(exit_code.load(Ordering::SeqCst) as i32)
}

async fn handle(
    req: Request<Incoming>,
    opts: &Options,
    prefix: &str,
    shutdown: &CancellationToken,
    exit_code: &AtomicU64,
    verified: &AtomicU64,
    seen: &AtomicU64,
) -> Reply {
    let headers = req.headers().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return http::reply(400, format!("reading body: {e}\n")),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    match verify(&opts.secret, &headers, &body, now) {
        Err(why) => {
            println!("{} {prefix}✗ rejected: {why}", clock());
            if opts.strict {
                exit_code.store(1, Ordering::SeqCst);
                shutdown.cancel();
            }
            http::reply(401, format!("{why}\n"))
        }
        Ok((id, _ts)) => {
            let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
            let fail = n <= opts.fail_first
                || (opts.fail_rate > 0.0 && rand::random::<f64>() < opts.fail_rate);
            let (ty, detail) = summary(&body);
            if fail {
                let status = if n <= opts.fail_first { 503 } else { 500 };
                println!("{} {prefix}✓ {id:>6}  {ty:<24} {detail}  → answering {status} (simulated failure)", clock());
                return http::reply(status, "simulated failure\n");
            }
            println!("{} {prefix}✓ {id:>6}  {ty:<24} {detail}", clock());
            if opts.json {
                println!("{}", String::from_utf8_lossy(&body));
            }
            let done = verified.fetch_add(1, Ordering::SeqCst) + 1;
            if opts.max.is_some_and(|m| done >= m) {
                shutdown.cancel();
            }
            http::reply(opts.status, "")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn headers(id: &str, ts: i64, sig: &str) -> hyper::HeaderMap {
        let mut h = hyper::HeaderMap::new();
        h.insert("webhook-id", id.parse().unwrap());
        h.insert("webhook-timestamp", ts.to_string().parse().unwrap());
        h.insert("webhook-signature", sig.parse().unwrap());
        h
    }

    #[test]
    fn verifies_and_rejects() {
        let body = br#"{"test": 2432232314}"#;
        let sig = webhook_signing::sign(SECRET, "msg_1", 1000, body).unwrap();
        assert!(verify(SECRET, &headers("msg_1", 1000, &sig), body, 1010).is_ok());
        // Tampered body, other id, stale timestamp, missing header.
        assert!(verify(SECRET, &headers("msg_1", 1000, &sig), b"{}", 1010).is_err());
        assert!(verify(SECRET, &headers("msg_2", 1000, &sig), body, 1010).is_err());
        assert!(
            verify(SECRET, &headers("msg_1", 1000, &sig), body, 1000 + 301)
                .unwrap_err()
                .contains("tolerance")
        );
        assert!(verify(SECRET, &hyper::HeaderMap::new(), body, 1000).is_err());
    }

    #[test]
    fn summarizes_table_events() {
        let (ty, detail) = summary(
            br#"{"type":"orders.insert","data":{"table":"public.orders","op":"insert","new":{"id":5,"total":12.5},"old":null}}"#,
        );
        assert_eq!(ty, "orders.insert");
        assert_eq!(detail, "public.orders id=5 total=12.5");
    }
}
