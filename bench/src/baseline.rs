//! The baseline of B3/B4: a Hasura-style event-trigger dispatcher, written
//! from Hasura's published algorithm, so pg_webhook is compared with the
//! design most Postgres webhook set-ups use today:
//!
//! - capture: a PL/pgSQL row trigger inserts `row_to_json(NEW)` into an event
//!   log table (no NOTIFY: the dispatcher polls);
//! - fetch: `UPDATE ... SET locked = now() WHERE id IN (SELECT ... ORDER BY
//!   created_at LIMIT 100 FOR UPDATE SKIP LOCKED) RETURNING ...`, again at
//!   once after a non-empty batch, after the 1 s fetch interval when empty;
//! - deliver: every event of the batch POSTed concurrently (HTTP pool 100),
//!   unsigned;
//! - record: per acknowledgement an invocation-log INSERT and one UPDATE
//!   marking the event delivered, each its own statement.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::connect;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS hdb_event_log (
    id            bigserial PRIMARY KEY,
    trigger_name  text NOT NULL,
    payload       jsonb NOT NULL,
    delivered     boolean NOT NULL DEFAULT false,
    error         boolean NOT NULL DEFAULT false,
    tries         int NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    locked        timestamptz,
    next_retry_at timestamptz
);
CREATE INDEX IF NOT EXISTS hdb_event_log_fetch ON hdb_event_log (created_at)
    WHERE delivered = false AND error = false;
CREATE TABLE IF NOT EXISTS hdb_event_invocation_logs (
    id         bigserial PRIMARY KEY,
    event_id   bigint NOT NULL,
    status     int,
    request    jsonb,
    response   text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS hdb_event_invocation_logs_event ON hdb_event_invocation_logs (event_id);
CREATE OR REPLACE FUNCTION hdb_insert_event_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO hdb_event_log (trigger_name, payload)
  VALUES (TG_TABLE_NAME || '_insert',
          jsonb_build_object('op', TG_OP, 'data', jsonb_build_object('old', NULL, 'new', row_to_json(NEW))));
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS hdb_insert ON bench_orders;
CREATE TRIGGER hdb_insert AFTER INSERT ON bench_orders FOR EACH ROW EXECUTE FUNCTION hdb_insert_event_log();
";

const FETCH: &str = "
UPDATE hdb_event_log SET locked = now()
 WHERE id IN (SELECT l.id FROM hdb_event_log l
               WHERE l.delivered = false AND l.error = false
                 AND (l.locked IS NULL OR l.locked < now() - interval '30 minutes')
                 AND (l.next_retry_at IS NULL OR l.next_retry_at <= now())
               ORDER BY l.created_at
               LIMIT $1
               FOR UPDATE SKIP LOCKED)
RETURNING id, trigger_name, payload::text, created_at::text";

pub struct Options {
    pub database_url: String,
    pub url: String,
    pub batch: i64,
    pub fetch_interval: Duration,
    pub pool: usize,
}

pub async fn run(o: Options) -> anyhow::Result<()> {
    let fetcher = connect(&o.database_url).await?;
    let fetch = fetcher.prepare(FETCH).await?;
    let recorder = Arc::new(connect(&o.database_url).await?);
    let log = recorder
        .prepare("INSERT INTO hdb_event_invocation_logs (event_id, status, request, response) VALUES ($1, $2, $3::text::jsonb, $4)")
        .await?;
    let done = recorder
        .prepare("UPDATE hdb_event_log SET delivered = true, next_retry_at = NULL, locked = NULL, tries = tries + 1 WHERE id = $1")
        .await?;
    let failed = recorder
        .prepare("UPDATE hdb_event_log SET tries = tries + 1, locked = NULL, next_retry_at = now() + interval '10 seconds' WHERE id = $1")
        .await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(o.pool)
        .timeout(Duration::from_secs(60))
        .build()?;
    let pool = Arc::new(Semaphore::new(o.pool));
    let started = Instant::now();
    let mut delivered = 0u64;
    loop {
        let rows = fetcher.query(&fetch, &[&o.batch]).await?;
        if rows.is_empty() {
            tokio::time::sleep(o.fetch_interval).await;
            continue;
        }
        let mut tasks = Vec::with_capacity(rows.len());
        for r in rows {
            let (id, trigger, payload, created): (i64, String, String, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            let body = format!(
                r#"{{"event":{payload},"created_at":"{created}","id":"{id}","delivery_info":{{"max_retries":0,"current_retry":0}},"trigger":{{"name":"{trigger}"}},"table":{{"schema":"public","name":"bench_orders"}}}}"#
            );
            let (http, url, pool, recorder, log, done, failed) = (
                http.clone(),
                o.url.clone(),
                pool.clone(),
                recorder.clone(),
                log.clone(),
                done.clone(),
                failed.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let _slot = pool.acquire().await;
                let res = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let (status, text) = match res {
                    Ok(r) => {
                        let s = r.status().as_u16() as i32;
                        (Some(s), r.text().await.unwrap_or_default())
                    }
                    Err(e) => (None, e.to_string()),
                };
                recorder
                    .execute(&log, &[&id, &status, &body, &text])
                    .await?;
                if status.is_some_and(|s| (200..300).contains(&s)) {
                    recorder.execute(&done, &[&id]).await?;
                    Ok::<bool, anyhow::Error>(true)
                } else {
                    recorder.execute(&failed, &[&id]).await?;
                    Ok(false)
                }
            }));
        }
        for t in tasks {
            if t.await?? {
                delivered += 1;
            }
        }
        if delivered > 0 && delivered % 10_000 < o.batch as u64 {
            eprintln!(
                "baseline: {delivered} delivered in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
}
