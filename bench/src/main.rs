//! pgwh-bench: end-to-end measurements of pg_webhook against a running
//! PostgreSQL and `webhookd` (started by `scripts/bench_delivery.sh`).
//!
//! It runs a verifying receiver in-process, so the commit time of each order
//! (taken when its INSERT's COMMIT returns) and its receipt time come from one
//! clock.
//!
//! - `latency`: open-loop producer at a fixed rate; commit → receipt p50/p99/p999.
//! - `drain`: N events committed while no dispatcher runs; then the time until
//!   all N arrived once the dispatcher starts (delivery capacity).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_postgres::NoTls;

#[derive(Parser)]
#[command(about = "End-to-end benchmarks for pg_webhook")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Open-loop load at --rate for --duration; report commit → receipt latency.
    Latency {
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        rate: u64,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        duration: Duration,
        #[arg(long, default_value_t = 8)]
        connections: usize,
    },
    /// Receive until --count events arrived; report the delivery rate.
    Drain {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        count: u64,
        #[arg(long)]
        secret: String,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "300s")]
        timeout: Duration,
    },
    /// Set up the schema and the endpoint; print the endpoint's secret.
    Setup {
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        port: u16,
    },
}

/// What the receiver saw: order id → receipt instant, and failures.
#[derive(Default)]
struct Seen {
    at: HashMap<i64, Instant>,
    received: u64,
    bad: u64,
}

async fn receiver(port: u16, secret: String, seen: Arc<Mutex<Seen>>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let secret = Arc::new(secret);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (seen, secret) = (seen.clone(), secret.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (seen, secret) = (seen.clone(), secret.clone());
                    async move {
                        let status = handle(req, &secret, &seen).await;
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
    Ok(addr)
}

async fn handle(req: Request<Incoming>, secret: &str, seen: &Mutex<Seen>) -> u16 {
    let now = Instant::now();
    let h = req.headers().clone();
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return 400;
    };
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ts: i64 = get("webhook-timestamp").parse().unwrap_or(0);
    let ok = webhook_signing::verify(
        secret,
        get("webhook-id"),
        ts,
        &body,
        get("webhook-signature"),
    )
    .unwrap_or(false);
    let id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.pointer("/data/new/id").and_then(|i| i.as_i64()));
    let Ok(mut s) = seen.lock() else { return 500 };
    s.received += 1;
    match (ok, id) {
        (true, Some(id)) => {
            s.at.entry(id).or_insert(now);
            204
        }
        _ => {
            s.bad += 1;
            401
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .context("connecting")?;
    tokio::spawn(conn);
    Ok(client)
}

async fn setup(url: &str, port: u16) -> anyhow::Result<String> {
    let c = connect(url).await?;
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS bench_orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL, \
           status text NOT NULL DEFAULT 'new', total numeric(12,2) NOT NULL, currency text NOT NULL DEFAULT 'EUR', \
           items int NOT NULL, note text, placed_at timestamptz NOT NULL DEFAULT now()); \
         SELECT webhook.track('bench_orders', '{insert}');",
    )
    .await?;
    let url = format!("http://127.0.0.1:{port}/hook");
    let row = c
        .query_one(
            "SELECT webhook.endpoint_secret(webhook.create_endpoint($1, '{bench_orders.insert}', max_in_flight => 64))",
            &[&url],
        )
        .await?;
    Ok(row.get(0))
}

async fn latency(
    url: &str,
    port: u16,
    rate: u64,
    duration: Duration,
    connections: usize,
) -> anyhow::Result<()> {
    let secret: String = connect(url)
        .await?
        .query_one(
            "SELECT webhook.endpoint_secret(max(id)) FROM webhook.endpoint",
            &[],
        )
        .await?
        .get(0);
    let seen = Arc::new(Mutex::new(Seen::default()));
    receiver(port, secret, seen.clone()).await?;
    let committed: Arc<Mutex<Vec<(i64, Instant)>>> = Arc::default();
    let start = Instant::now() + Duration::from_millis(200);
    let total = rate * duration.as_secs();
    let mut tasks = Vec::new();
    for k in 0..connections {
        let c = connect(url).await?;
        let committed = committed.clone();
        tasks.push(tokio::spawn(async move {
            let stmt = c
                .prepare("INSERT INTO bench_orders (customer_id, total, items, note) VALUES ($1, $2::float8::numeric, $3, 'bench') RETURNING id")
                .await?;
            let mut late = 0u64;
            // Open loop: request i is due at start + i/rate, whatever happened before.
            let mut i = k as u64;
            while i < total {
                let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                let now = Instant::now();
                if due > now {
                    tokio::time::sleep_until(due.into()).await;
                } else if now - due > Duration::from_millis(5) {
                    late += 1;
                }
                let row = c.query_one(&stmt, &[&(i as i64 % 100_000), &((i % 1000) as f64 * 0.37), &((i % 9) as i32)]).await?;
                let done = Instant::now();
                if let Ok(mut v) = committed.lock() {
                    v.push((row.get(0), done));
                }
                i += connections as u64;
            }
            Ok::<u64, anyhow::Error>(late)
        }));
    }
    let mut late = 0;
    for t in tasks {
        late += t.await??;
    }
    let produced_in = start.elapsed();
    let committed = committed.lock().map(|v| v.clone()).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = seen.lock().map(|s| s.at.len()).unwrap_or(0);
        if n >= committed.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let mut lat: Vec<Duration> = committed
        .iter()
        .filter_map(|(id, at)| s.at.get(id).map(|r| r.saturating_duration_since(*at)))
        .collect();
    lat.sort();
    let missing = committed.len() - lat.len();
    println!(
        "rate {} ev/s offered, {:.0} committed/s ({} late starts), {} delivered, {} missing, {} bad | latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        rate,
        committed.len() as f64 / produced_in.as_secs_f64(),
        late,
        lat.len(),
        missing,
        s.bad,
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.9)),
        ms(percentile(&lat, 0.99)),
        ms(percentile(&lat, 0.999)),
        ms(lat.last().copied().unwrap_or_default()),
    );
    if missing > 0 {
        bail!("{missing} events were not delivered within 60 s");
    }
    Ok(())
}

async fn drain(port: u16, count: u64, secret: String, timeout: Duration) -> anyhow::Result<()> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    receiver(port, secret, seen.clone()).await?;
    println!("ready");
    let mut first = None;
    let deadline = Instant::now() + timeout;
    loop {
        let (n, bad) = seen
            .lock()
            .map(|s| (s.at.len() as u64, s.bad))
            .unwrap_or((0, 0));
        if n > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if n >= count {
            let took = first.map(|f| f.elapsed()).unwrap_or_default();
            println!(
                "drained {count} events in {:.2} s: {:.0} events/s delivered ({} bad)",
                took.as_secs_f64(),
                count as f64 / took.as_secs_f64().max(1e-9),
                bad
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {n} of {count} events arrived within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup { database_url, port } => println!("{}", setup(&database_url, port).await?),
        Cmd::Latency {
            database_url,
            port,
            rate,
            duration,
            connections,
        } => latency(&database_url, port, rate, duration, connections).await?,
        Cmd::Drain {
            port,
            count,
            secret,
            timeout,
        } => drain(port, count, secret, timeout).await?,
    }
    Ok(())
}
