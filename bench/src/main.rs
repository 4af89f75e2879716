//! pgwh-bench: the end-to-end side of `make bench` (scripts/bench.sh).
//!
//! - `setup`: the `bench_orders` table tracked by pg_webhook, endpoints.
//! - `setup-baseline` / `baseline`: the Hasura-style comparison (baseline.rs).
//! - `step`: open-loop producer at a fixed rate for a while, with a
//!   receiver in the same process, so the commit time of each order (when
//!   its COMMIT returned) and its receipt time share one clock.
//! - `drain`: receive until N orders arrived; the delivery rate.
//! - `receive`: receive (and verify) until killed.
//!
//! Every measurement is printed and appended as one JSON line to `--json`.

mod baseline;
mod receiver;
mod stats;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use tokio_postgres::NoTls;

use receiver::{Behaviour, Seen};

#[derive(Parser)]
#[command(about = "End-to-end benchmarks for pg_webhook")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create bench_orders, track it, create one endpoint per --url (all
    /// with the same secret); print the secret.
    Setup {
        #[arg(long)]
        database_url: String,
        #[arg(long, value_delimiter = ',', required = true)]
        url: Vec<String>,
        #[arg(long, default_value_t = 64)]
        max_in_flight: i32,
    },
    /// Create bench_orders with the Hasura-style capture trigger.
    SetupBaseline {
        #[arg(long)]
        database_url: String,
    },
    /// Run the Hasura-style dispatcher until killed.
    Baseline {
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 100)]
        batch: i64,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
        fetch_interval: Duration,
        #[arg(long, default_value_t = 100)]
        pool: usize,
    },
    /// Open-loop load at --rate events/s for --duration; commit → receipt latency.
    Step(StepArgs),
    /// Receive until --count orders arrived; report the delivery rate.
    Drain(DrainArgs),
    /// Receive (and verify, with --secret) until killed.
    Receive {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        secret: Option<String>,
    },
}

#[derive(clap::Args)]
struct StepArgs {
    #[arg(long)]
    database_url: String,
    #[arg(long)]
    port: u16,
    /// Events (rows) per second offered.
    #[arg(long)]
    rate: u64,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Rows per INSERT transaction.
    #[arg(long, default_value_t = 1)]
    rows_per_tx: u64,
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Verify signatures with this secret (none: the unsigned baseline).
    #[arg(long)]
    secret: Option<String>,
    /// Latency is measured for requests to this path.
    #[arg(long, default_value = "/hook")]
    path: String,
    /// PATH=SHARE: answer 500 to that share of requests to PATH.
    #[arg(long, value_parser = parse_fail)]
    fail: Vec<(String, f64)>,
    /// PORT=DURATION: a second receiver port that only starts listening
    /// after DURATION (an endpoint that is down at first).
    #[arg(long, value_parser = parse_down)]
    down: Option<(u16, Duration)>,
    /// How long to wait for stragglers after the last commit.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    settle: Duration,
    /// KEY=VALUE added to the JSON record (repeatable).
    #[arg(long, value_parser = parse_tag)]
    tag: Vec<(String, String)>,
    #[arg(long)]
    json: Option<PathBuf>,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected KEY=VALUE")?;
    Ok((k.to_string(), v.to_string()))
}

/// Tags as JSON values (numbers stay numbers).
fn tagged(mut record: serde_json::Value, tags: &[(String, String)]) -> serde_json::Value {
    if let Some(r) = record.as_object_mut() {
        for (k, v) in tags {
            let value = v
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| serde_json::Value::String(v.clone()));
            r.insert(k.clone(), value);
        }
    }
    record
}

fn parse_fail(s: &str) -> Result<(String, f64), String> {
    let (p, f) = s.split_once('=').ok_or("expected PATH=SHARE")?;
    Ok((p.to_string(), f.parse().map_err(|e| format!("{e}"))?))
}

fn parse_down(s: &str) -> Result<(u16, Duration), String> {
    let (p, d) = s.split_once('=').ok_or("expected PORT=DURATION")?;
    Ok((
        p.parse().map_err(|e| format!("{e}"))?,
        humantime::parse_duration(d).map_err(|e| format!("{e}"))?,
    ))
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .context("connecting")?;
    tokio::spawn(conn);
    Ok(client)
}

const ORDERS: &str = "CREATE TABLE IF NOT EXISTS bench_orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL, \
   status text NOT NULL DEFAULT 'new', total numeric(12,2) NOT NULL, currency text NOT NULL DEFAULT 'EUR', \
   items int NOT NULL, note text, placed_at timestamptz NOT NULL DEFAULT now())";

async fn setup(url: &str, urls: &[String], max_in_flight: i32) -> anyhow::Result<String> {
    let c = connect(url).await?;
    c.batch_execute(ORDERS).await?;
    c.batch_execute("SELECT webhook.track('bench_orders', '{insert}')")
        .await?;
    let secret: String = c
        .query_one("SELECT webhook._generate_secret()", &[])
        .await?
        .get(0);
    for u in urls {
        c.execute(
            "SELECT webhook.create_endpoint($1, '{bench_orders.insert}', $2, max_in_flight => $3)",
            &[u, &secret, &max_in_flight],
        )
        .await?;
    }
    Ok(secret)
}

async fn step(a: StepArgs) -> anyhow::Result<()> {
    let seen: receiver::Shared = Arc::new(Mutex::new(Seen::default()));
    let behaviour = Behaviour {
        secret: a.secret.clone(),
        fail: a.fail.iter().cloned().collect::<HashMap<_, _>>(),
    };
    receiver::serve(a.port, behaviour.clone(), seen.clone()).await?;
    let start = Instant::now() + Duration::from_millis(200);
    if let Some((port, after)) = a.down {
        let (seen, behaviour) = (seen.clone(), behaviour.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until((start + after).into()).await;
            if let Err(e) = receiver::serve(port, behaviour, seen).await {
                eprintln!("second receiver: {e}");
            }
        });
    }
    let committed: Arc<Mutex<Vec<(i64, Instant)>>> = Arc::default();
    let k = a.rows_per_tx.max(1);
    let txs = a.rate * a.duration.as_secs() / k;
    let mut tasks = Vec::new();
    for conn in 0..a.connections {
        let c = connect(&a.database_url).await?;
        let committed = committed.clone();
        let rate = a.rate;
        let connections = a.connections as u64;
        tasks.push(tokio::spawn(async move {
            let stmt = c
                .prepare(
                    "INSERT INTO bench_orders (customer_id, total, items, note) \
                     SELECT g % 100000, (g % 1000) * 0.37, g % 9, 'bench' FROM generate_series($1::bigint, $2::bigint) g \
                     RETURNING id",
                )
                .await?;
            let mut late = 0u64;
            // Open loop: transaction i is due at start + i*k/rate, whatever
            // happened before.
            let mut i = conn as u64;
            while i < txs {
                let due = start + Duration::from_secs_f64((i * k) as f64 / rate as f64);
                let now = Instant::now();
                if due > now {
                    tokio::time::sleep_until(due.into()).await;
                } else if now - due > Duration::from_millis(5) {
                    late += 1;
                }
                let first = (i * k) as i64;
                let rows = c.query(&stmt, &[&first, &(first + k as i64 - 1)]).await?;
                let done = Instant::now();
                if let Ok(mut v) = committed.lock() {
                    v.extend(rows.iter().map(|r| (r.get::<_, i64>(0), done)));
                }
                i += connections;
            }
            Ok::<u64, anyhow::Error>(late)
        }));
    }
    let mut late = 0;
    for t in tasks {
        late += t.await??;
    }
    let produced_in = start.elapsed();
    let delivered_by_end = seen.lock().map(|s| s.count(&a.path)).unwrap_or(0);
    let committed = committed.lock().map(|v| v.clone()).unwrap_or_default();
    let deadline = Instant::now() + a.settle;
    loop {
        let n = seen.lock().map(|s| s.count(&a.path)).unwrap_or(0);
        if n >= committed.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let timed: Vec<(Instant, Duration)> = committed
        .iter()
        .filter_map(|(id, at)| {
            s.at.get(&(a.path.clone(), *id))
                .map(|r| (*at, r.saturating_duration_since(*at)))
        })
        .collect();
    let timeline = stats::timeline(start, &timed, Duration::from_secs(5));
    let mut lat: Vec<Duration> = timed.iter().map(|t| t.1).collect();
    lat.sort();
    let missing = committed.len() - lat.len();
    let secs = produced_in.as_secs_f64().max(1e-9);
    let delivered_per_s = delivered_by_end as f64 / secs;
    let mut record = serde_json::json!({
        "rate": a.rate,
        "rows_per_tx": k,
        "duration_s": a.duration.as_secs_f64(),
        "committed": committed.len(),
        "committed_per_s": committed.len() as f64 / secs,
        "late_starts": late,
        "delivered_per_s": delivered_per_s,
        "backlog_at_end": committed.len().saturating_sub(delivered_by_end),
        "missing": missing,
        "bad": s.bad,
        "failed_on_purpose": s.failed_on_purpose,
        "timeline": timeline,
    });
    if let (Some(r), serde_json::Value::Object(l)) =
        (record.as_object_mut(), stats::latency_json(&lat))
    {
        r.extend(l);
    }
    // Flat: everything arrived, the producer kept its rate and what was
    // still undelivered when it stopped was at most 1.2 s of traffic (a 1 s
    // poller's normal lag). Sustained: flat, and p99 commit → 2xx < 50 ms
    // (a 1 s poller is flat at best, never sustained).
    let p99 = record["p99_ms"].as_f64().unwrap_or(f64::MAX);
    let committed_per_s = record["committed_per_s"].as_f64().unwrap_or(0.0);
    let flat = missing == 0
        && committed_per_s >= 0.95 * a.rate as f64
        && committed.len().saturating_sub(delivered_by_end) as f64
            <= (1.2 * a.rate as f64).max(k as f64);
    let sustained = flat && p99 < 50.0;
    record["flat"] = serde_json::Value::Bool(flat);
    record["sustained"] = serde_json::Value::Bool(sustained);
    let record = tagged(record, &a.tag);
    println!(
        "{:>6} ev/s offered ({} rows/tx): {:.0} committed/s, {:.0} delivered/s, backlog at end {}, {} missing, {} bad | ms p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}{}",
        a.rate,
        k,
        record["committed_per_s"].as_f64().unwrap_or(0.0),
        delivered_per_s,
        record["backlog_at_end"],
        missing,
        s.bad,
        record["p50_ms"].as_f64().unwrap_or(0.0),
        record["p99_ms"].as_f64().unwrap_or(0.0),
        record["p999_ms"].as_f64().unwrap_or(0.0),
        record["max_ms"].as_f64().unwrap_or(0.0),
        if sustained { "" } else { "  (not sustained)" },
    );
    stats::append(a.json.as_deref(), &record)
}

#[derive(clap::Args)]
struct DrainArgs {
    #[arg(long)]
    port: u16,
    #[arg(long)]
    count: u64,
    #[arg(long)]
    secret: Option<String>,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "600s")]
    timeout: Duration,
    /// Count only orders with ids up to this (the backlog, not what a
    /// concurrent producer adds).
    #[arg(long)]
    max_id: Option<i64>,
    #[arg(long, value_parser = parse_tag)]
    tag: Vec<(String, String)>,
    #[arg(long)]
    json: Option<PathBuf>,
}

async fn drain(a: DrainArgs) -> anyhow::Result<()> {
    let seen: receiver::Shared = Arc::new(Mutex::new(Seen::counting_upto(a.max_id)));
    let behaviour = Behaviour {
        secret: a.secret,
        ..Behaviour::default()
    };
    receiver::serve(a.port, behaviour, seen.clone()).await?;
    println!("ready");
    let mut first = None;
    let (count, timeout) = (a.count, a.timeout);
    let deadline = Instant::now() + timeout;
    let mut last_report = Instant::now();
    loop {
        let (n, bad) = seen
            .lock()
            .map(|s| (s.distinct() as u64, s.bad))
            .unwrap_or((0, 0));
        if n > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if n >= count {
            let took = first.map(|f| f.elapsed()).unwrap_or_default();
            let rate = count as f64 / took.as_secs_f64().max(1e-9);
            println!(
                "drained {count} events in {:.2} s: {rate:.0} events/s delivered ({bad} bad)",
                took.as_secs_f64(),
            );
            let record = serde_json::json!({"count": count, "seconds": took.as_secs_f64(),
                                            "events_per_s": rate, "bad": bad});
            return stats::append(a.json.as_deref(), &tagged(record, &a.tag));
        }
        if Instant::now() > deadline {
            bail!("only {n} of {count} events arrived within {timeout:?}");
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!("  ... {n} of {count} received");
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup {
            database_url,
            url,
            max_in_flight,
        } => println!("{}", setup(&database_url, &url, max_in_flight).await?),
        Cmd::SetupBaseline { database_url } => {
            let c = connect(&database_url).await?;
            c.batch_execute(ORDERS).await?;
            c.batch_execute(baseline::SCHEMA).await?;
        }
        Cmd::Baseline {
            database_url,
            url,
            batch,
            fetch_interval,
            pool,
        } => {
            baseline::run(baseline::Options {
                database_url,
                url,
                batch,
                fetch_interval,
                pool,
            })
            .await?
        }
        Cmd::Step(a) => step(a).await?,
        Cmd::Drain(a) => drain(a).await?,
        Cmd::Receive { port, secret } => {
            let seen: receiver::Shared = Arc::new(Mutex::new(Seen::default()));
            receiver::serve(
                port,
                Behaviour {
                    secret,
                    ..Behaviour::default()
                },
                seen,
            )
            .await?;
            std::future::pending::<()>().await;
        }
    }
    Ok(())
}
