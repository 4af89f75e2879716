//! Record: outcomes are reported in batches through `webhook.record()`, and
//! leases given back unattempted (paused endpoint) through
//! `webhook.release()`; a batch that cannot be written (database down) is
//! kept and retried, so an attempt is never forgotten while the process
//! lives. If the process dies first, the lease expires and the delivery is
//! attempted again (at-least-once).

use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_postgres::Client;

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

async fn write(
    client: &Client,
    batch: &[Report],
    worker: &str,
) -> Result<(), tokio_postgres::Error> {
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
        release(client, &released, &released_tokens).await?;
    }
    if !outcomes.is_empty() {
        write_outcomes(client, &outcomes, worker).await?;
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
        .execute(
            "SELECT webhook.release($1, $2)",
            &[&delivery_ids, &claim_tokens],
        )
        .await
}

async fn write_outcomes(
    client: &Client,
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
    client
        .execute(
            "SELECT webhook.record($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &ids, &tokens, &statuses, &errors, &durations, &excerpts, &retry, &worker,
            ],
        )
        .await?;
    Ok(())
}

/// Runs until `rx` is closed and drained; returns after the last write.
pub async fn run(database_url: String, worker: String, mut rx: mpsc::Receiver<Report>) {
    let mut client: Option<Client> = None;
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
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            match db::connect(&database_url, "webhookd record").await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, pending = pending.len(), "recorder cannot reach the database; retrying");
                    backoff.wait().await;
                    continue;
                }
            }
        }
        let Some(c) = client.as_ref() else { continue };
        let n = pending.len().min(MAX_BATCH);
        match write(c, &pending[..n], &worker).await {
            Ok(()) => {
                pending.drain(..n);
                backoff.reset();
            }
            Err(e) => {
                tracing::warn!(error = %e, batch = n, "recording outcomes failed; retrying");
                client = None;
                backoff.wait().await;
            }
        }
    }
}
