//! Record: outcomes are reported in batches through `webhook.record()`, and
//! leases given back unattempted (paused endpoint) through
//! `webhook.release()`; a batch that cannot be written (database down) is
//! kept and retried, so an attempt is never forgotten while the process
//! lives. If the process dies first, the lease expires and the delivery is
//! attempted again (at-least-once).

use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_postgres::{Client, Statement};

use crate::db;

#[derive(Debug, Clone)]
pub struct Outcome {
    pub delivery_id: i64,
    pub claim_token: i32,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    pub duration: Duration,
    pub excerpt: Option<String>,
    /// None with a non-2xx status: no more attempts (dead).
    pub retry_at: Option<SystemTime>,
}

/// What the recorder writes back for one claimed delivery.
#[derive(Debug, Clone)]
pub enum Report {
    Attempted(Outcome),
    /// Not attempted: the lease is given back and the delivery is due again.
    Released {
        delivery_id: i64,
        claim_token: i32,
    },
}

const MAX_BATCH: usize = 1000;

const RECORD: &str = "SELECT webhook.record($1, $2, $3, $4, $5, $6, $7, $8)";
const RELEASE: &str = "SELECT webhook.release($1, $2)";

/// The recorder's connection with its statements prepared once (a query
/// by text costs a parse round trip on every batch).
struct Conn {
    client: Client,
    record: Statement,
    release: Statement,
}

impl Conn {
    async fn open(database_url: &str) -> Result<Self, tokio_postgres::Error> {
        let client = db::connect(database_url, "webhookd record").await?;
        let record = client.prepare(RECORD).await?;
        let release = client.prepare(RELEASE).await?;
        Ok(Conn {
            client,
            record,
            release,
        })
    }
}

async fn write(conn: &Conn, batch: &[Report], worker: &str) -> Result<(), tokio_postgres::Error> {
    let mut outcomes = Vec::with_capacity(batch.len());
    let (mut released, mut released_tokens) = (Vec::new(), Vec::new());
    for r in batch {
        match r {
            Report::Attempted(o) => outcomes.push(o),
            Report::Released {
                delivery_id,
                claim_token,
            } => {
                released.push(*delivery_id);
                released_tokens.push(*claim_token);
            }
        }
    }
    if !released.is_empty() {
        conn.client
            .execute(&conn.release, &[&released, &released_tokens])
            .await?;
    }
    if !outcomes.is_empty() {
        write_outcomes(conn, &outcomes, worker).await?;
    }
    Ok(())
}

/// Give leases back unattempted (`webhook.release()`): the deliveries are
/// due again at once, their attempts untouched.
pub async fn release(
    client: &Client,
    delivery_ids: &[i64],
    claim_tokens: &[i32],
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(RELEASE, &[&delivery_ids, &claim_tokens])
        .await
}

async fn write_outcomes(
    conn: &Conn,
    batch: &[&Outcome],
    worker: &str,
) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<i64> = batch.iter().map(|o| o.delivery_id).collect();
    let tokens: Vec<i32> = batch.iter().map(|o| o.claim_token).collect();
    let statuses: Vec<Option<i32>> = batch.iter().map(|o| o.http_status).collect();
    let errors: Vec<Option<String>> = batch.iter().map(|o| o.error.clone()).collect();
    let durations: Vec<f64> = batch
        .iter()
        .map(|o| o.duration.as_secs_f64() * 1000.0)
        .collect();
    let excerpts: Vec<Option<String>> = batch.iter().map(|o| o.excerpt.clone()).collect();
    let retry: Vec<Option<SystemTime>> = batch.iter().map(|o| o.retry_at).collect();
    conn.client
        .execute(
            &conn.record,
            &[
                &ids, &tokens, &statuses, &errors, &durations, &excerpts, &retry, &worker,
            ],
        )
        .await?;
    Ok(())
}

/// Runs until `rx` is closed and drained; returns after the last write.
pub async fn run(database_url: String, worker: String, mut rx: mpsc::Receiver<Report>) {
    let mut conn: Option<Conn> = None;
    let mut pending: Vec<Report> = Vec::new();
    let mut closed = false;
    let mut backoff = db::Backoff::default();
    loop {
        if pending.is_empty() {
            if closed {
                return;
            }
            match rx.recv().await {
                Some(o) => pending.push(o),
                None => return,
            }
        }
        while pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(o) => pending.push(o),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            match Conn::open(&database_url).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, pending = pending.len(), "recorder cannot reach the database; retrying");
                    backoff.wait().await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_ref() else { continue };
        let n = pending.len().min(MAX_BATCH);
        match write(c, &pending[..n], &worker).await {
            Ok(()) => {
                pending.drain(..n);
                backoff.reset();
            }
            Err(e) => {
                tracing::warn!(error = %e, batch = n, "recording outcomes failed; retrying");
                conn = None;
                backoff.wait().await;
            }
        }
    }
}
